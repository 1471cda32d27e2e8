/**
 * The topology table (HDFS's TableMapping): parsing, re-reading the file when it changes, and
 * placement spreading replicas over the racks it gives rather than the ones data nodes report.
 */
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BlockManager } from "../../src/dataplane/storage/namenode/blockManager.js";
import { Namespace } from "../../src/dataplane/storage/namenode/namespace.js";
import { parseTopologyTable, TopologyTable } from "../../src/dataplane/storage/namenode/topology.js";

describe("parseTopologyTable", () => {
  it("reads host, host:port and short-name entries, skips comments, and reports bad lines by number", () => {
    const { racks, warnings } = parseTopologyTable(
      [
        "# written by the operator from topology.kubernetes.io/zone",
        "",
        "pool-datanode-0   /zone-a",
        "10.0.0.7:9866\t/zone-b   # a second data node on the same host",
        "pool-datanode-1 zone-c",
        "pool-datanode-2 /zone-a extra",
        "POOL-DATANODE-3.pool-datanode.ns.svc /zone-c",
        "pool-datanode-0 /zone-b",
      ].join("\n"),
    );
    expect(Object.fromEntries(racks)).toEqual({
      "pool-datanode-0": "/zone-b",
      "10.0.0.7:9866": "/zone-b",
      "pool-datanode-3.pool-datanode.ns.svc": "/zone-c",
    });
    expect(warnings.map(({ line, problem }) => [line, problem])).toEqual([
      [5, 'skipped: rack "zone-c" must start with "/" (e.g. /zone-c)'],
      [6, 'skipped: expected "<host> <rack>", found 3 field(s)'],
      [8, "pool-datanode-0 is also on line 3; this later line wins"],
    ]);
  });
});

describe("TopologyTable", () => {
  let dir: string;
  let logs: { msg: string; line?: number }[];
  const logger = () =>
    pino({ level: "info" }, { write: (line: string) => logs.push(JSON.parse(line) as { msg: string }) });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-topology-"));
    logs = [];
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is empty while the file is missing, and follows the file as it is replaced", async () => {
    const path = join(dir, "topology.table");
    const table = new TopologyTable(path, logger());
    const node = { hostName: "pool-datanode-0.pool-datanode.ns.svc", xferPort: 9866 };
    await table.refresh();
    expect(table.rackOf(node)).toBeUndefined();

    await writeFile(path, "pool-datanode-0 /zone-a\nbroken-line\n");
    await table.refresh();
    expect(table.rackOf(node)).toBe("/zone-a");
    expect(logs.find((entry) => entry.line === 2)?.msg).toMatch(/topology table line 2: skipped/);

    // A ConfigMap update swaps the file for a new one (a new inode), as rename does here.
    await writeFile(join(dir, "next"), "pool-datanode-0.pool-datanode.ns.svc:9866 /zone-b\n");
    await rename(join(dir, "next"), path);
    await table.refresh();
    expect(table.rackOf(node)).toBe("/zone-b");

    await rm(path);
    await table.refresh();
    expect(table.rackOf(node)).toBeUndefined();
  });

  it("gives the most specific entry: host:port over host over short name", async () => {
    const path = join(dir, "topology.table");
    await writeFile(
      path,
      "dn /short\ndn.example /host-prefix\ndn.example.org /host\ndn.example.org:2 /port\n",
    );
    const table = new TopologyTable(path, logger());
    await table.refresh();
    expect(table.rackOf({ hostName: "dn.example.org", xferPort: 2 })).toBe("/port");
    expect(table.rackOf({ hostName: "dn.example.org", xferPort: 3 })).toBe("/host");
    expect(table.rackOf({ hostName: "dn.example.net", xferPort: 3 })).toBe("/host-prefix");
    expect(table.rackOf({ hostName: "dn.other", xferPort: 3 })).toBe("/short");
    expect(table.rackOf({ hostName: "dnx.example.org", xferPort: 3 })).toBeUndefined();
  });

  it("places replicas across the table's racks, not the one the data nodes report", async () => {
    const path = join(dir, "topology.table");
    // One node alone in /zone-a: with three replicas over two racks, every block must use it.
    await writeFile(path, "127.0.0.1:1000 /zone-a\n127.0.0.1:1001 /zone-b\n127.0.0.1:1002 /zone-b\n");
    const table = new TopologyTable(path, logger());
    await table.refresh();
    const manager = new BlockManager(new Namespace(), {
      heartbeatExpiryMs: 60_000,
      pendingReplicationTimeoutMs: 60_000,
      rackOf: (node) => table.rackOf(node),
    });
    for (let i = 0; i < 4; i++) {
      manager.heartbeat(
        {
          datanode: { datanodeUuid: `dn${i}`, hostName: "127.0.0.1", xferPort: 1000 + i, infoPort: 2000 + i },
          networkLocation: "/zone-b",
          capacity: 1,
          dfsUsed: 0,
          remaining: 1,
          numBlocks: 0,
        },
        true,
      );
    }
    expect(manager.report().map((node) => node.networkLocation)).toEqual([
      "/zone-a",
      "/zone-b",
      "/zone-b",
      "/zone-b", // no entry: the rack it reported
    ]);
    for (let trial = 0; trial < 50; trial++) {
      const targets = manager.chooseTargets(3, undefined, []);
      expect(targets.map((node) => node.datanodeUuid)).toContain("dn0");
    }
  });
});
