/**
 * The name node's topology table (`--topology-table`, HDFS's TableMapping) with real processes:
 * four data nodes that all report the same rack, and a table, written after they start (their
 * ports are their own choice), that puts them in two zones. Placement follows the table, and a
 * rewritten table moves them.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { type DataNodeProcess, StorageCluster } from "./storage-cluster.js";

const MiB = 1024 * 1024;

describe("BlockPool storage: racks from the name node's topology table", () => {
  let cluster: StorageCluster;
  let client: WebHdfsClient;
  let dir: string;
  let table: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-topology-"));
    // Missing at start: no mapping, every node in the rack it reports.
    table = join(dir, "topology.table");
    cluster = await StorageCluster.start({
      dataNodes: 4,
      racks: ["/default-rack"],
      nameNodeArgs: ["--topology-table", table],
    });
    client = cluster.client();
  });

  afterAll(async () => {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Replaces the table the way a ConfigMap update does: a new file swapped in. */
  async function writeTable(lines: string[]): Promise<void> {
    await writeFile(join(dir, "next"), `${lines.join("\n")}\n`);
    await rename(join(dir, "next"), table);
  }

  async function racksInStatus(): Promise<string[]> {
    const status = await cluster.status();
    return cluster.dataNodes.map(
      (dn) => status.datanodes.find((node) => node.datanodeUuid === dn.datanodeUuid)!.networkLocation,
    );
  }

  /** Writes a multi-block file and returns, per block, the data nodes holding it. */
  async function writeAndLocate(path: string): Promise<DataNodeProcess[][]> {
    await client.create(path, randomBytes(4 * MiB + 1), { blockSize: MiB });
    const located = await cluster.blockLocations(path);
    return located.blocks.map((block) =>
      block.locations.map((node) => cluster.dataNodes.find((dn) => dn.datanodeUuid === node.datanodeUuid)!),
    );
  }

  it("takes each node's rack from the table and spreads every block's replicas over its racks", async () => {
    expect(await racksInStatus()).toEqual(Array(4).fill("/default-rack"));
    const [alone, ...rest] = cluster.dataNodes as [DataNodeProcess, ...DataNodeProcess[]];
    await writeTable([
      "# host[:xferPort]  rack",
      `127.0.0.1:${alone.xferPort} /zone-a`,
      "127.0.0.1:1 zone-without-slash",
      ...rest.map((dn) => `127.0.0.1:${dn.xferPort} /zone-b`),
    ]);
    await cluster.waitFor(
      async () => (await racksInStatus()).join() === ["/zone-a", "/zone-b", "/zone-b", "/zone-b"].join(),
      "the table's racks in /status",
    );
    // The malformed line is reported by its number, and skipped.
    expect(cluster.nameNodes[0]!.log.some((line) => line.includes("topology table line 3: skipped"))).toBe(
      true,
    );

    // Three replicas over two racks: the one node alone in /zone-a holds every block.
    for (const holders of await writeAndLocate("/topology/first")) {
      expect(holders).toHaveLength(3);
      expect(holders).toContain(alone);
      expect(new Set(holders.map((dn) => dn.xferPort)).size).toBe(3);
    }
  });

  it("follows the table when it is rewritten", async () => {
    const moved = cluster.dataNodes[2]!;
    await writeTable(
      cluster.dataNodes.map((dn) => `127.0.0.1:${dn.xferPort} ${dn === moved ? "/zone-c" : "/zone-d"}`),
    );
    // Every node on its new rack, not just the moved one: a node still on its old rack until its
    // next heartbeat would be a third rack to place on.
    const expected = cluster.dataNodes.map((dn) => (dn === moved ? "/zone-c" : "/zone-d"));
    await cluster.waitFor(
      async () => (await racksInStatus()).join() === expected.join(),
      "the rewritten table's racks in /status",
    );
    for (const holders of await writeAndLocate("/topology/second")) expect(holders).toContain(moved);
  });
});
