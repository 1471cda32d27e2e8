/**
 * The name node's operations, the way HDFS's NNThroughputBenchmark measures them:
 *
 * - file create + complete in process (each call validated and run as the RPC server runs it,
 *   no transport; each edit fsynced, group-committed), beside the edit log alone taking the same
 *   edits from the same number of callers (no namespace, no checks): the ratio is what the
 *   namesystem costs over its durable log;
 * - the same over RPC from another process at 16 concurrent callers, on the framed connection
 *   the name node's clients use, beside `POST /rpc/<method>` JSON over keep-alive HTTP (what they
 *   used before) to the same name node in the same run; and a no-op RPC round trip both ways.
 *
 * Then its namespace in memory, 200,000 inodes (2,000 directories of 100 one-block files):
 *
 * - /status's figures: the counters every edit keeps, beside the walk of the whole tree that
 *   /status and /metrics made on every call before (the reference, same namespace, same run);
 * - a checkpoint's longest hold of the event loop: the longest slice of the image (4,096 inodes),
 *   beside serialising the whole image in one go as checkpoints did before (the reference). What
 *   an RPC arriving during a checkpoint waits at most is the slice.
 *
 *   npm run bench -- namenode
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NameNodeRpc } from "../src/dataplane/storage/dfsClient.js";
import { EditLog } from "../src/dataplane/storage/namenode/editLog.js";
import { NameNode } from "../src/dataplane/storage/namenode/namenode.js";
import { type INode, Namespace } from "../src/dataplane/storage/namenode/namespace.js";
import { invokeRpc } from "../src/dataplane/storage/namenode/rpcServer.js";
import { CALL_ID_HEADER, CLIENT_ID_HEADER, postJson } from "../src/dataplane/storage/protocol.js";
import { closeNameNodeChannels } from "../src/dataplane/storage/rpcConnection.js";
import { createLogger } from "../src/log.js";
import { StorageCluster } from "../test/integration/storage-cluster.js";
import { inProcessNameNodeConfig } from "../test/support/namenode.js";

const DIRECTORIES = Number(process.env.NAMENODE_BENCH_DIRECTORIES ?? 2000);
const FILES_PER_DIRECTORY = 100;
/** Files per round in process, and the concurrent callers (NNThroughputBenchmark's -threads). */
const FILES = Number(process.env.NAMENODE_BENCH_FILES ?? 20_000);
const IN_PROCESS_CALLERS = Number(process.env.NAMENODE_BENCH_CALLERS ?? 256);
/** Files and no-op calls per round over RPC, at the 16 callers. */
const RPC_FILES = Number(process.env.NAMENODE_BENCH_RPC_FILES ?? 4_000);
const RPC_CALLERS = 16;
const ROUNDS = Number(process.env.NAMENODE_BENCH_ROUNDS ?? 3);

/** Runs `total` tasks from `callers` concurrent callers; returns tasks per second. */
async function rate(total: number, callers: number, task: (i: number, caller: number) => Promise<unknown>) {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async (_, caller) => {
      while (next < total) await task(next++, caller);
    }),
  );
  return total / ((performance.now() - started) / 1000);
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const figure = (values: number[], unit: string) =>
  `${Math.round(median(values)).toLocaleString("en")} ${unit} (${Math.round(Math.min(...values)).toLocaleString("en")}–${Math.round(Math.max(...values)).toLocaleString("en")})`;
const ratio = (values: number[], references: number[]) => (median(values) / median(references)).toFixed(2);

/**
 * The edit log's synchronous writes during the measured rounds: how many edits each carried and
 * how long each took. With every caller waiting for its edit, `callers` edits at most share a
 * sync, and a file takes two edits one after the other: files/s is at most
 * callers / (2 × the mean sync) however fast everything else is.
 */
class SyncCounter {
  private syncs = 0;
  private seconds = 0;
  private edits = 0;

  add(before: { syncs: number; seconds: number }, after: { syncs: number; seconds: number }, edits: number) {
    this.syncs += after.syncs - before.syncs;
    this.seconds += after.seconds - before.seconds;
    this.edits += edits;
  }

  describe(callers: number): string {
    const meanMs = (1000 * this.seconds) / this.syncs;
    const bound = callers / (2 * (meanMs / 1000));
    return `${(this.edits / this.syncs).toFixed(1)} edits per sync, mean sync ${meanMs.toFixed(2)} ms (bound ${Math.round(bound).toLocaleString("en")} files/s at ${callers} callers)`;
  }
}

/** The edit log's sync counters from a name node's /metrics. */
async function metricsSyncs(httpAddress: string): Promise<{ syncs: number; seconds: number }> {
  const text = await (await fetch(`http://${httpAddress}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  return {
    syncs: value("tributary_namenode_edit_log_syncs"),
    seconds: value("tributary_namenode_edit_log_sync_seconds"),
  };
}

async function inProcess(): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-namenode-bench-"));
  const nameNode = new NameNode(
    inProcessNameNodeConfig(join(dir, "name"), {
      replication: 3,
      blockSize: 128 * 1024 * 1024,
      maxBlockSize: 512 * 1024 * 1024,
      checkpointTxns: 100_000_000,
    }),
    createLogger("namenode-bench"),
  );
  await nameNode.start();
  const log = new EditLog(join(dir, "log-alone"));
  await mkdir(log.dir);
  await log.startWriting((await log.claimEpoch(0))!, 1);
  try {
    const fs = nameNode.fs;
    let txid = 0;
    const logAlone = (round: number, callers: number) =>
      rate(FILES, callers, async (i) => {
        const path = `/alone/r${round}-${callers}/f${i}`;
        const common = { path, owner: "bench", group: "supergroup", permission: 0o644, mtime: Date.now() };
        await log.appendEdit(
          { op: "ADD", ...common, replication: 3, blockSize: 1 << 27, clientName: "bench" },
          ++txid,
          1,
        );
        await log.appendEdit({ op: "CLOSE", path, mtime: Date.now() }, ++txid, 1);
      });
    const namesystem = (round: number, callers: number) =>
      rate(FILES, callers, async (i, caller) => {
        const path = `/bench/r${round}-${callers}/f${i}`;
        const clientName = `bench-${caller}`;
        await invokeRpc(
          fs,
          "create",
          { path, clientName, owner: "bench" },
          { clientId: clientName, callId: 2 * i },
        );
        await invokeRpc(fs, "complete", { path, clientName }, { clientId: clientName, callId: 2 * i + 1 });
      });
    const rows: string[] = [];
    for (const callers of [IN_PROCESS_CALLERS, RPC_CALLERS]) {
      await logAlone(-1, callers); // warm both sides alike
      await namesystem(-1, callers);
      const alone: number[] = [];
      const files: number[] = [];
      const sync = new SyncCounter();
      for (let round = 0; round < ROUNDS; round++) {
        alone.push(await logAlone(round, callers));
        const before = { syncs: fs.editLog.syncs, seconds: fs.editLog.syncMs / 1000 };
        files.push(await namesystem(round, callers));
        sync.add(before, { syncs: fs.editLog.syncs, seconds: fs.editLog.syncMs / 1000 }, 2 * FILES);
      }
      rows.push(
        `| create + complete in process, ${callers} callers | ${figure(files, "files/s")}; ${sync.describe(callers)} | the edit log alone, same edits and callers: ${figure(alone, "files/s")} | ${ratio(files, alone)} |`,
      );
    }
    return rows;
  } finally {
    await log.close();
    await nameNode.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function overRpc(): Promise<string[]> {
  const cluster = await StorageCluster.start({
    nameNodes: 1,
    dataNodes: 0,
    nameNodeArgs: ["--checkpoint-txns", "100000000"],
  });
  try {
    const address = `127.0.0.1:${cluster.nameNodes[0]!.rpcPort}`;
    const clients = Array.from({ length: RPC_CALLERS }, () => new NameNodeRpc([address]));
    let httpCallId = 0;
    const http = <T>(client: NameNodeRpc, method: string, body: unknown) =>
      postJson<T>(address, `/rpc/${method}`, body, 10_000, {
        [CLIENT_ID_HEADER]: client.clientId,
        [CALL_ID_HEADER]: String(1_000_000_000 + httpCallId++),
      });
    const noop = {
      framed: () => rate(RPC_FILES, RPC_CALLERS, (_, c) => clients[c]!.call("getServiceState", {})),
      http: () => rate(RPC_FILES, RPC_CALLERS, (_, c) => http(clients[c]!, "getServiceState", {})),
    };
    const creates = (how: "framed" | "http", round: number) =>
      rate(RPC_FILES, RPC_CALLERS, async (i, c) => {
        const client = clients[c]!;
        const path = `/bench/${how}-${round}/f${i}`;
        const call =
          how === "framed" ? client.call.bind(client) : (m: string, b: unknown) => http(client, m, b);
        await call("create", { path, clientName: client.clientId, owner: "bench" });
        await call("complete", { path, clientName: client.clientId });
      });
    await noop.framed();
    await noop.http();
    await creates("framed", -1);
    await creates("http", -1);
    const results = {
      noopFramed: [] as number[],
      noopHttp: [] as number[],
      framed: [] as number[],
      http: [] as number[],
    };
    const metrics = `127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}`;
    const sync = new SyncCounter();
    for (let round = 0; round < ROUNDS; round++) {
      results.noopFramed.push(await noop.framed());
      results.noopHttp.push(await noop.http());
      const before = await metricsSyncs(metrics);
      results.framed.push(await creates("framed", round));
      sync.add(before, await metricsSyncs(metrics), 2 * RPC_FILES);
      results.http.push(await creates("http", round));
    }
    return [
      `| create + complete over RPC, ${RPC_CALLERS} callers | ${figure(results.framed, "files/s")}; ${sync.describe(RPC_CALLERS)} | the same as POST /rpc/<method> (HTTP keep-alive): ${figure(results.http, "files/s")} | ${ratio(results.framed, results.http)} |`,
      `| no-op RPC round trip, ${RPC_CALLERS} callers | ${figure(results.noopFramed, "calls/s")} | POST /rpc/getServiceState: ${figure(results.noopHttp, "calls/s")} | ${ratio(results.noopFramed, results.noopHttp)} |`,
    ];
  } finally {
    closeNameNodeChannels();
    await cluster.stop();
  }
}

function bigNamespace(): Namespace {
  const ns = new Namespace();
  for (let d = 0; d < DIRECTORIES; d++) {
    ns.apply({
      op: "MKDIR",
      path: `/d${d}`,
      owner: "hdfs",
      group: "supergroup",
      permission: 0o755,
      mtime: 1,
    });
    for (let f = 0; f < FILES_PER_DIRECTORY; f++) {
      const path = `/d${d}/f${f}`;
      ns.apply({
        op: "ADD",
        path,
        owner: "hdfs",
        group: "supergroup",
        permission: 0o644,
        mtime: 2,
        replication: 3,
        blockSize: 1 << 27,
        clientName: "bench",
      });
      const blockId = ns.lastBlockId + 1;
      ns.apply({ op: "ADD_BLOCK", path, blockId, generationStamp: ns.generationStamp + 1 });
      ns.apply({ op: "CLOSE", path, mtime: 3, last: { blockId, numBytes: 1000 } });
    }
  }
  return ns;
}

/** What /status did per call before the counters: count every inode (and /metrics did it again). */
function walk(ns: Namespace): number {
  let inodes = 0;
  const visit = (node: INode) => {
    inodes++;
    if (node.kind === "DIRECTORY") for (const child of node.children.values()) visit(child);
  };
  visit(ns.root);
  return inodes;
}

function timeMs(times: number, work: () => unknown): number {
  const started = performance.now();
  for (let i = 0; i < times; i++) work();
  return (performance.now() - started) / times;
}

export async function run(): Promise<void> {
  const operations = [...(await inProcess()), ...(await overRpc())];
  console.log(
    `name-node operations: median of ${ROUNDS} rounds (range); each edit fsynced before its answer`,
  );
  console.log("| measure | Tributary | reference in the same run | ratio |");
  console.log("| --- | --- | --- | --- |");
  for (const row of operations) console.log(row);
  console.log("");
  const ns = bigNamespace();
  const inodes = ns.counts.files + ns.counts.directories;
  const walkMs = timeMs(20, () => walk(ns));
  const countersMs = timeMs(20_000, () => ns.counts.files + ns.counts.directories + ns.counts.bytes);
  // The same serialisation in one piece: how long the loop was held when checkpoints ran inline.
  const wholeImageMs = timeMs(3, () => [...ns.beginImage(Number.POSITIVE_INFINITY)].join(""));
  let longestSliceMs = 0;
  let slices = 0;
  const slicesStarted = performance.now();
  const image = ns.beginImage();
  for (;;) {
    const started = performance.now();
    const next = image.next();
    longestSliceMs = Math.max(longestSliceMs, performance.now() - started);
    if (next.done) break;
    slices++;
  }
  const allSlicesMs = performance.now() - slicesStarted;
  console.log(`namespace: ${inodes.toLocaleString()} inodes`);
  console.log("| measure | Tributary | reference | ratio |");
  console.log("| --- | --- | --- | --- |");
  console.log(
    `| /status figures | counters ${countersMs.toFixed(5)} ms | walk of the tree ${walkMs.toFixed(1)} ms | ${(walkMs / countersMs).toFixed(0)}x faster |`,
  );
  console.log(
    `| checkpoint: longest event-loop hold | one slice ${longestSliceMs.toFixed(1)} ms (${slices} slices, ${allSlicesMs.toFixed(0)} ms in all) | whole image at once ${wholeImageMs.toFixed(0)} ms | ${(wholeImageMs / longestSliceMs).toFixed(0)}x shorter |`,
  );
}
