/**
 * Write-pipeline recovery with real processes: one name node and four data nodes, 1 MiB blocks.
 * The writer is the HDFS client itself (dfsClient.writeFile), outside the pool, so any node of a
 * pipeline can be killed under it. Its source stops once mid-block; the test kills -9 a node of
 * the pipeline the name node handed out for that block, once that node holds the block's rbw
 * file, then lets the source go on. The write must finish on a new pipeline, read back whole, and
 * the pool must get back to three replicas (or, for a block group, rebuild the lost internal
 * block). With every data node dead, the write must fail naming them, its file left incomplete.
 */
import { createHash, randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFile, writeFile } from "../../src/dataplane/storage/dfsClient.js";
import type { LocatedBlocks } from "../../src/dataplane/storage/protocol.js";
import { RemoteException } from "../../src/dataplane/storage/protocol.js";
import {
  type DataNodeProcess,
  DECLARED_DEAD_WITHIN_MS,
  PipelineRecordingRpc,
  StorageCluster,
  stopRole,
} from "./storage-cluster.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const USER = "tester";
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** `data` in 64 KiB chunks, a little at a time, stopping once at `pauseAt` until `paused()` is done. */
async function* slowly(data: Buffer, pauseAt: number, paused: () => Promise<void>): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.length; at += 64 * KiB) {
    if (at === pauseAt) await paused();
    yield Buffer.from(data.subarray(at, at + 64 * KiB));
    await sleep(2);
  }
}

// A case waits for the name node to declare the killed node dead (DECLARED_DEAD_WITHIN_MS), then
// for its blocks to be copied and for it to come back.
describe("BlockPool storage: write pipeline recovery", { timeout: 300_000 }, () => {
  let cluster: StorageCluster;
  let rpc: PipelineRecordingRpc;

  beforeAll(async () => {
    cluster = await StorageCluster.start({
      dataNodes: 4,
      // Kills data nodes and waits for them to be declared dead: 10 s of silence, a third of the
      // loopback cluster's default, still far above a busy machine's stalls.
      nameNodeArgs: [
        "--heartbeat-expiry-ms",
        "10000",
        "--erasure-coding",
        JSON.stringify([{ path: "/pipeline-ec", policy: "XOR-2-1", cellSize: "64Ki" }]),
      ],
    });
    rpc = new PipelineRecordingRpc([`127.0.0.1:${cluster.nameNodes[0]!.rpcPort}`]);
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  const alive = (dn: DataNodeProcess) => dn.child.exitCode === null && dn.child.signalCode === null;
  const liveUuids = () => new Set(cluster.dataNodes.filter(alive).map((dn) => dn.datanodeUuid));
  const dataNode = (uuid: string) => cluster.dataNodes.find((dn) => dn.datanodeUuid === uuid)!;
  const locations = (path: string) => rpc.call<LocatedBlocks>("getBlockLocations", { path, user: USER });

  async function readBack(path: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of readFile(await locations(path))) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  /** Kills -9 the node once its rbw/ holds `blockId`: the block is streaming through it. */
  async function killWhileStreaming(victim: DataNodeProcess, blockId: number): Promise<void> {
    await cluster.waitFor(
      async () => (await readdir(join(victim.dir, "current", "rbw"))).includes(`blk_${blockId}`),
      `blk_${blockId} being written on ${victim.datanodeUuid}`,
    );
    await stopRole(victim, "SIGKILL");
  }

  async function restart(victim: DataNodeProcess): Promise<void> {
    await cluster.startDataNode(cluster.dataNodes.indexOf(victim));
    await cluster.waitFor(
      async () => (await cluster.status()).liveDataNodes === cluster.dataNodes.length,
      "the killed data node back",
    );
  }

  it.each([
    ["first", 0],
    ["middle", 1],
    ["last", 2],
  ])("finishes a write when the %s node of the pipeline dies mid-block", async (_, position) => {
    const path = `/pipeline/kill-${position}`;
    const data = randomBytes(3 * MiB + 12_345);
    const before = rpc.pipelines.length;
    let victim: DataNodeProcess | undefined;
    let killedPipeline = -1;
    const written = await writeFile(
      rpc,
      path,
      // Half-way through the second block.
      slowly(data, MiB + MiB / 2, async () => {
        killedPipeline = rpc.pipelines.length - 1;
        const current = rpc.pipelines[killedPipeline]!.located;
        victim = dataNode(current.locations[position]!.datanodeUuid);
        await killWhileStreaming(victim, current.block.blockId);
      }),
      { clientName: `pipeline-test-${position}`, owner: USER, blockSize: MiB, replication: 3 },
    );
    expect(written).toBe(data.length);
    expect(victim).toBeDefined();
    const dead = victim!.datanodeUuid;
    // Exactly one new pipeline: the failed node was named right the first time, and left out after.
    const pipelines = rpc.pipelines.slice(before);
    const seen = pipelines.map((pipeline) => ({
      excluded: pipeline.excluded,
      nodes: pipeline.located.locations.map((node) => node.datanodeUuid),
    }));
    const failures = () =>
      cluster.dataNodes.flatMap((dn) => dn.log.filter((line) => /"level":(40|50)/.test(line))).join("\n");
    expect(pipelines, `killed ${dead}; pipelines ${JSON.stringify(seen)}\n${failures()}`).toHaveLength(5);
    for (const later of rpc.pipelines.slice(killedPipeline + 1)) {
      expect(later.located.locations.map((node) => node.datanodeUuid)).not.toContain(dead);
      expect(later.located.locations).toHaveLength(3);
    }

    const located = await locations(path);
    expect(located).toMatchObject({ fileLength: data.length, underConstruction: false });
    expect(located.blocks).toHaveLength(4);
    expect(sha(await readBack(path))).toBe(sha(data));

    // Once the name node has the node for dead, every block it held is copied to the survivors.
    await cluster.waitFor(
      async () => (await cluster.status()).liveDataNodes === cluster.dataNodes.length - 1,
      "the name node to find the node dead",
      DECLARED_DEAD_WITHIN_MS,
    );
    await cluster.waitFor(async () => {
      const live = liveUuids();
      const now = await locations(path);
      const replicated = now.blocks.every(
        (block) => block.locations.filter((node) => live.has(node.datanodeUuid)).length === 3,
      );
      const status = await cluster.status();
      return replicated && status.underReplicatedBlocks === 0 && status.missingBlocks === 0;
    }, "three live replicas of every block");
    expect(sha(await readBack(path))).toBe(sha(data));
    await restart(victim!);
  });

  it("carries an erasure-coded write past a lost internal block and rebuilds it", async () => {
    // XOR-2-1 with 64 KiB cells and 1 MiB blocks: a group holds 2 MiB of data on three nodes.
    const path = "/pipeline-ec/striped";
    const data = randomBytes(5 * MiB + 1234);
    let victim: DataNodeProcess | undefined;
    const written = await writeFile(
      rpc,
      path,
      // Half-way through the second block group.
      slowly(data, 3 * MiB, async () => {
        const group = rpc.pipelines.at(-1)!.located;
        victim = dataNode(group.locations[0]!.datanodeUuid);
        // Internal block 0 of the group (its id is the group's).
        await killWhileStreaming(victim, group.block.blockId);
      }),
      { clientName: "pipeline-test-ec", owner: USER, blockSize: MiB },
    );
    expect(written).toBe(data.length);
    const dead = victim!.datanodeUuid;
    const after = rpc.pipelines.at(-1)!.located;
    expect(after.locations.map((node) => node.datanodeUuid)).not.toContain(dead);

    // Readable at once: the group decodes its lost data block from the other two. What the killed
    // node held of the other groups is rebuilt once it is declared dead.
    expect(sha(await readBack(path))).toBe(sha(data));
    await cluster.waitFor(
      async () => {
        const live = liveUuids();
        const now = await locations(path);
        const whole = now.blocks.every((group) =>
          (group.internal ?? []).every((node) => node !== null && live.has(node.datanodeUuid)),
        );
        return whole && (await cluster.status()).underReplicatedBlocks === 0;
      },
      "the lost internal block rebuilt on the fourth node",
      DECLARED_DEAD_WITHIN_MS,
    );
    expect(sha(await readBack(path))).toBe(sha(data));
    await restart(victim!);
  });

  it("fails with the failed nodes named when no data node is left, leaving the file incomplete", async () => {
    const path = "/pipeline/too-many";
    const data = randomBytes(3 * MiB);
    const failure = await writeFile(
      rpc,
      path,
      slowly(data, MiB + MiB / 2, async () => {
        const current = rpc.pipelines.at(-1)!.located;
        await killWhileStreaming(dataNode(current.locations[0]!.datanodeUuid), current.block.blockId);
        await Promise.all(cluster.dataNodes.map((dn) => stopRole(dn, "SIGKILL")));
      }),
      { clientName: "pipeline-test-too-many", owner: USER, blockSize: MiB, replication: 3 },
    ).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(RemoteException);
    const message = (failure as RemoteException).message;
    expect(message).toContain(`Cannot write ${path} past ${MiB} bytes`);
    const named = cluster.dataNodes.filter((dn) => message.includes(`127.0.0.1:${dn.xferPort}`));
    expect(named.length, message).toBeGreaterThan(0);

    // Only the block acknowledged before the failure is visible; the file stays under construction.
    const located = await locations(path);
    expect(located).toMatchObject({ fileLength: MiB, underConstruction: true });
    expect(located.blocks).toHaveLength(1);
  });
});
