/**
 * Reads around a data node killed with -9, as a WebHDFS client sees them: 150 files written by 6
 * writers through WebHDFS, one of 4 data nodes killed after the 50th is acknowledged. Every OPEN
 * is sent to the name node and its 307 followed by hand, so a redirect to the killed node is
 * counted instead of being retried away. The name node finds a node stale (probably gone) after
 * 1 s and declares it dead after 45 s, room for a loaded machine to read every file in between.
 */
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NameNodeRpc, readFile } from "../../src/dataplane/storage/dfsClient.js";
import { type LocatedBlocks, RemoteException } from "../../src/dataplane/storage/protocol.js";
import { type DataNodeProcess, type NameNodeStatus, StorageCluster, stopRole } from "./storage-cluster.js";

const MiB = 1024 * 1024;
const FILES = 150;
const WRITERS = 6;
const KILL_AFTER = 50;
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("BlockPool storage: reads after a data node is killed", () => {
  let cluster: StorageCluster;
  const acknowledged = new Map<string, string>();

  beforeAll(async () => {
    cluster = await StorageCluster.start({
      dataNodes: 4,
      nameNodeArgs: ["--heartbeat-expiry-ms", "45000", "--stale-datanode-interval-ms", "1000"],
    });
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  const reportOf = (status: NameNodeStatus, node: DataNodeProcess) =>
    status.datanodes.find((info) => info.datanodeUuid === node.datanodeUuid);

  /** OPENs every acknowledged file through the name node's redirect; counts where each went. */
  async function openEveryFile(killed: DataNodeProcess) {
    const base = `http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}/webhdfs/v1`;
    let redirectedToKilled = 0;
    let served = 0;
    const wrong: string[] = [];
    for (const [path, digest] of acknowledged) {
      const answer = await fetch(`${base}${path}?op=OPEN&user.name=tester`, { redirect: "manual" });
      expect(answer.status, path).toBe(307);
      const location = new URL(answer.headers.get("location")!);
      if (Number(location.port) === killed.infoPort) {
        redirectedToKilled++;
        continue;
      }
      const response = await fetch(location);
      const bytes = Buffer.from(await response.arrayBuffer());
      if (response.status === 200 && sha(bytes) === digest) served++;
      else wrong.push(`${path}: HTTP ${response.status}, ${bytes.length} bytes`);
    }
    return { redirectedToKilled, served, wrong };
  }

  it("writes 150 files with 6 writers while a data node is killed -9 after 50: every acknowledged one reads back", async () => {
    const victim = cluster.dataNodes[1]!;
    const client = cluster.client();
    let next = 0;
    let killed: Promise<void> | undefined;
    const failed: string[] = [];
    const writer = async () => {
      for (let i = next++; i < FILES; i = next++) {
        const path = `/dead-node/file-${i}`;
        // Every tenth file spans two 1 MiB blocks; the rest fit in one.
        const data = randomBytes(i % 10 === 0 ? MiB + 4321 : 1 + ((i * 7919) % 65_536));
        try {
          await client.create(path, data, { blockSize: MiB });
          acknowledged.set(path, sha(data));
        } catch (error) {
          // Its data node was the one killed mid-file: never acknowledged, so nothing is promised.
          failed.push(`${path}: ${(error as Error).message}`);
        }
        if (acknowledged.size >= KILL_AFTER) killed ??= stopRole(victim, "SIGKILL");
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, writer));
    await killed;
    expect(acknowledged.size + failed.length).toBe(FILES);
    expect(acknowledged.size, failed.join("\n")).toBeGreaterThanOrEqual(FILES - WRITERS);

    await cluster.waitFor(
      async () => reportOf(await cluster.status(), victim)?.adminState === "DEAD",
      "the name node to declare the killed data node dead",
      120_000,
    );
    const { redirectedToKilled, served, wrong } = await openEveryFile(victim);
    expect(redirectedToKilled).toBe(0);
    expect(wrong).toEqual([]);
    expect(served).toBe(acknowledged.size);
  }, 240_000);

  it("sends no read to a data node killed a moment ago once the name node finds it stale, before it is dead", async () => {
    // Three live nodes with three replicas: every block has one on the node about to go.
    await cluster.waitFor(async () => {
      const status = await cluster.status();
      return (
        status.underReplicatedBlocks === 0 &&
        status.missingBlocks === 0 &&
        status.pendingReplicationBlocks === 0
      );
    }, "the dead node's blocks copied back to three replicas");
    const victim = cluster.dataNodes[2]!;
    await stopRole(victim, "SIGKILL");
    await cluster.waitFor(
      async () => reportOf(await cluster.status(), victim)?.stale === true,
      "the name node to find the killed data node stale",
    );
    const { redirectedToKilled, served, wrong } = await openEveryFile(victim);
    expect(redirectedToKilled).toBe(0);
    expect(wrong).toEqual([]);
    expect(served).toBe(acknowledged.size);
    // All of that happened inside the window this test is about.
    expect(reportOf(await cluster.status(), victim)?.adminState).toBe("NORMAL");
  });

  it("reads every file whole when the first replica a reader tries refuses the connection", async () => {
    // What a data node serving an OPEN does with located blocks that name a node which has just
    // died: the killed node is put first on purpose, and the read falls over to the next replica.
    const victim = cluster.dataNodes[2]!;
    const rpc = new NameNodeRpc([`127.0.0.1:${cluster.nameNodes[0]!.rpcPort}`]);
    const dead = {
      datanodeUuid: victim.datanodeUuid,
      hostName: "127.0.0.1",
      xferPort: victim.xferPort,
      infoPort: victim.infoPort,
    };
    let read = 0;
    for (const [path, digest] of acknowledged) {
      const located = await rpc.call<LocatedBlocks>("getBlockLocations", { path, user: "tester" });
      const deadFirst: LocatedBlocks = {
        ...located,
        blocks: located.blocks.map((block) => ({
          ...block,
          locations: [dead, ...block.locations.filter((node) => node.datanodeUuid !== dead.datanodeUuid)],
        })),
      };
      const chunks: Buffer[] = [];
      for await (const chunk of readFile(deadFirst)) chunks.push(chunk);
      expect(sha(Buffer.concat(chunks)), path).toBe(digest);
      read++;
    }
    expect(read).toBe(acknowledged.size);
    // With no live replica left to fall over to, the reader is told which block it could not get.
    const [path] = acknowledged.keys();
    const located = await rpc.call<LocatedBlocks>("getBlockLocations", { path, user: "tester" });
    const onlyDead = { ...located, blocks: located.blocks.map((block) => ({ ...block, locations: [dead] })) };
    const failure = await (async () => {
      for await (const _ of readFile(onlyDead)) {
        // Nothing can be read.
      }
    })().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(RemoteException);
    expect((failure as RemoteException).exception).toBe("BlockMissingException");
  });
});
