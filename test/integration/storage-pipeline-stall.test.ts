/**
 * A data node that hangs rather than dies, with real processes: one name node and four data
 * nodes, all (and the writer) with a 5 s stall timeout. The writer's source stops once mid-block;
 * the test SIGSTOPs a node of the pipeline the name node handed out for that block, once that
 * node holds the block's rbw file, then lets the source go on. The kernel keeps the stopped
 * node's connections open, so only the stall timeout can end the pipeline: the write must finish
 * on a new pipeline that excludes exactly the stopped node, and read back whole. A healthy
 * pipeline fed by a source slower than the timeout must not fail.
 */
import { createHash, randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pipelineTimeoutMs, readFile, writeFile } from "../../src/dataplane/storage/dfsClient.js";
import type { LocatedBlocks } from "../../src/dataplane/storage/protocol.js";
import { type DataNodeProcess, PipelineRecordingRpc, StorageCluster, stopRole } from "./storage-cluster.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const USER = "tester";
// Each node waits half of this longer per node below it (pipelineTimeoutMs), so the node next to
// the hung one gives up first and names it. With 2 s that margin was 1 s, within the scheduling
// delays of a loaded 2-core machine: an upstream node sometimes woke first and named a healthy
// node, giving a fifth pipeline. 5 s leaves a 2.5 s margin.
const STALL_TIMEOUT_MS = 5_000;
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** `data` in 64 KiB chunks, awaiting `pause(at)` before the chunk at each offset in `pauses`. */
async function* paced(data: Buffer, pauses: number[], pause: () => Promise<void>): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.length; at += 64 * KiB) {
    if (pauses.includes(at)) await pause();
    yield Buffer.from(data.subarray(at, at + 64 * KiB));
    await sleep(1);
  }
  if (pauses.includes(data.length)) await pause();
}

describe("BlockPool storage: a hung data node", () => {
  let cluster: StorageCluster;
  let rpc: PipelineRecordingRpc;
  let attempts = 0;

  beforeAll(async () => {
    cluster = await StorageCluster.start({
      dataNodes: 4,
      dataNodeArgs: ["--stall-timeout-ms", String(STALL_TIMEOUT_MS)],
    });
    rpc = new PipelineRecordingRpc([`127.0.0.1:${cluster.nameNodes[0]!.rpcPort}`]);
  });

  afterAll(async () => {
    // A stopped node cannot act on SIGTERM.
    for (const dn of cluster?.dataNodes ?? []) dn.child.kill("SIGCONT");
    await cluster?.stop();
  });

  const dataNode = (uuid: string) => cluster.dataNodes.find((dn) => dn.datanodeUuid === uuid)!;
  const locations = (path: string) => rpc.call<LocatedBlocks>("getBlockLocations", { path, user: USER });

  async function readBack(path: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of readFile(await locations(path))) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  it.each([
    // The rest of the block likely fits in the sockets' buffers: the acknowledgement is what stalls.
    ["the first node of the pipeline", 0, MiB],
    ["the middle node of the pipeline", 1, MiB],
    ["the last node of the pipeline", 2, MiB],
    // Far more than the buffers hold is still to go: the forwarding writes are what stall.
    ["the middle node, most of a large block still to send,", 1, 32 * MiB],
  ])("finishes a write when %s hangs mid-block", async (_, position, blockSize) => {
    // A path and writer of their own per attempt: a retried case must not meet the file it left.
    const attempt = ++attempts;
    const path = `/stall/hang-${position}-${blockSize}-${attempt}`;
    const data = randomBytes(2 * blockSize + 12_345);
    const before = rpc.pipelines.length;
    let victim: DataNodeProcess | undefined;
    const written = await writeFile(
      rpc,
      path,
      // In the second block, a quarter of the way through.
      paced(data, [blockSize + Math.floor(blockSize / 4 / (64 * KiB)) * 64 * KiB], async () => {
        const current = rpc.pipelines.at(-1)!.located;
        victim = dataNode(current.locations[position]!.datanodeUuid);
        const rbw = join(victim.dir, "current", "rbw");
        await cluster.waitFor(
          async () => (await readdir(rbw)).includes(`blk_${current.block.blockId}`),
          `blk_${current.block.blockId} being written on ${victim.datanodeUuid}`,
        );
        victim.child.kill("SIGSTOP");
      }),
      {
        clientName: `stall-test-${position}-${blockSize}-${attempt}`,
        owner: USER,
        blockSize,
        replication: 3,
        stallTimeoutMs: STALL_TIMEOUT_MS,
      },
    );
    try {
      expect(written).toBe(data.length);
      const hung = victim!.datanodeUuid;
      // One pipeline per block, plus exactly one after the hang, asked for without just the hung node.
      const pipelines = rpc.pipelines.slice(before);
      const seen = pipelines.map((pipeline) => ({
        excluded: pipeline.excluded,
        nodes: pipeline.located.locations.map((node) => node.datanodeUuid),
      }));
      // On a failure, what the data nodes warned of says which node was blamed for what.
      const warnings = () =>
        cluster.dataNodes
          .flatMap((dn) =>
            dn.log.filter((line) => /"level":(40|50)/.test(line)).map((line) => `${dn.datanodeUuid} ${line}`),
          )
          .join("\n");
      expect(pipelines, `hung ${hung}; pipelines ${JSON.stringify(seen)}\n${warnings()}`).toHaveLength(4);
      expect(pipelines[2]!.excluded).toEqual([hung]);
      for (const later of pipelines.slice(2)) {
        expect(later.located.locations.map((node) => node.datanodeUuid)).not.toContain(hung);
        expect(later.located.locations).toHaveLength(3);
      }
      const located = await locations(path);
      expect(located).toMatchObject({ fileLength: data.length, underConstruction: false });
      expect(sha(await readBack(path))).toBe(sha(data));
    } finally {
      victim?.child.kill("SIGCONT");
    }
    // Continued, it shuts down cleanly, and comes back for the next case.
    await stopRole(victim!);
    expect(victim!.child.exitCode).toBe(0);
    await cluster.startDataNode(cluster.dataNodes.indexOf(victim!));
    await cluster.waitFor(
      async () => (await cluster.status()).liveDataNodes === cluster.dataNodes.length,
      "the hung data node back",
    );
  });

  it("does not fail a healthy pipeline whose source pauses longer than the stall timeout", async () => {
    const path = "/stall/slow-source";
    const data = randomBytes(2 * MiB + 12_345);
    const before = rpc.pipelines.length;
    // Longer than even the writer's own wait on a three-node pipeline.
    const pause = pipelineTimeoutMs(STALL_TIMEOUT_MS, 3) + 1_000;
    let paused = 0;
    const written = await writeFile(
      rpc,
      path,
      // Mid-block, and after the last byte before the source ends.
      paced(data, [MiB / 2, data.length], async () => {
        paused++;
        await sleep(pause);
      }),
      {
        clientName: "stall-test-slow-source",
        owner: USER,
        blockSize: MiB,
        replication: 3,
        stallTimeoutMs: STALL_TIMEOUT_MS,
      },
    );
    expect(written).toBe(data.length);
    expect(paused).toBe(2);
    const pipelines = rpc.pipelines.slice(before);
    expect(pipelines).toHaveLength(3);
    for (const pipeline of pipelines) expect(pipeline.excluded).toEqual([]);
    expect(sha(await readBack(path))).toBe(sha(data));
  }, 120_000);
});
