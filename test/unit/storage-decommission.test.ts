/**
 * The name node's decommissioning (HDFS's DatanodeAdminManager) on a BlockManager fed by hand:
 * heartbeats, block reports and block-received calls stand in for data nodes, and commands are
 * read back from heartbeat replies.
 */
import { describe, expect, it } from "vitest";
import { BlockManager } from "../../src/dataplane/storage/namenode/blockManager.js";
import { hostEntryKeys, parseDecommissionRequest } from "../../src/dataplane/storage/namenode/hosts.js";
import { Namespace } from "../../src/dataplane/storage/namenode/namespace.js";
import type { DatanodeCommand, DatanodeID } from "../../src/dataplane/storage/protocol.js";
import { RemoteException } from "../../src/dataplane/storage/protocol.js";
import { groupLayout, internalBlockLength } from "../../src/dataplane/storage/striped.js";

const MiB = 1024 * 1024;

function dataNode(i: number, hostName = "127.0.0.1"): DatanodeID {
  return { datanodeUuid: `dn${i}`, hostName, xferPort: 1000 + i, infoPort: 2000 + i };
}

function heartbeat(manager: BlockManager, node: DatanodeID, rack = "/default-rack"): DatanodeCommand[] {
  return manager.heartbeat(
    { datanode: node, networkLocation: rack, capacity: 100, dfsUsed: 10, remaining: 90, numBlocks: 0 },
    true,
  );
}

/** A closed file of one complete block; returns the block's id. */
function closedFile(
  namespace: Namespace,
  path: string,
  numBytes: number,
  options: { replication?: number; ecPolicy?: string } = {},
): number {
  namespace.apply({
    op: "ADD",
    path,
    owner: "tester",
    group: "supergroup",
    permission: 0o644,
    mtime: 1,
    replication: options.replication ?? 3,
    blockSize: MiB,
    clientName: "writer",
    ecPolicy: options.ecPolicy,
  });
  const blockId = options.ecPolicy
    ? Math.ceil((namespace.lastBlockId + 1) / 16) * 16
    : namespace.lastBlockId + 1;
  namespace.apply({ op: "ADD_BLOCK", path, blockId, generationStamp: 1001 });
  namespace.apply({ op: "CLOSE", path, mtime: 2, last: { blockId, numBytes } });
  return blockId;
}

function cluster(nodes: number, hostName?: (i: number) => string) {
  const namespace = new Namespace();
  const manager = new BlockManager(namespace, {
    heartbeatExpiryMs: 60_000,
    pendingReplicationTimeoutMs: 60_000,
  });
  const ids = Array.from({ length: nodes }, (_, i) => dataNode(i, hostName?.(i)));
  for (const node of ids) {
    heartbeat(manager, node);
    manager.blockReport(node, [], true);
  }
  const hold = (node: DatanodeID, blockId: number, numBytes: number) =>
    manager.blocksReceived(node, [{ blockId, generationStamp: 1001, numBytes }], true);
  const adminState = (i: number) =>
    manager.report().find((node) => node.datanodeUuid === `dn${i}`)!.adminState;
  /** Every node's pending commands, by node index. */
  const commands = () => ids.map((node) => heartbeat(manager, node));
  return { namespace, manager, ids, hold, adminState, commands };
}

describe("BlockManager decommissioning", () => {
  it("copies a decommissioning node's replicas from in-service holders, then marks it DECOMMISSIONED", () => {
    const { namespace, manager, ids, hold, adminState, commands } = cluster(4);
    const blockId = closedFile(namespace, "/f", 100);
    for (const node of ids.slice(0, 3)) hold(node, blockId, 100);

    const matched = manager.setDecommissionSet(["127.0.0.1:1000"]);
    expect(matched.map((node) => [node.datanodeUuid, node.adminState])).toEqual([
      ["dn0", "DECOMMISSION_INPROGRESS"],
    ]);
    // Never a target, wherever the writer is.
    for (let trial = 0; trial < 30; trial++) {
      const targets = manager.chooseTargets(3, "dn0", []);
      expect(targets.map((node) => node.datanodeUuid).sort()).toEqual(["dn1", "dn2", "dn3"]);
    }
    // Still a read source, after the in-service holders.
    expect(
      manager
        .goodReplicas(blockId)
        .map((node) => node.datanodeUuid)
        .at(-1),
    ).toBe("dn0");

    manager.computeReplicationWork();
    // Its replica does not count: two of three.
    expect(manager.stats.underReplicatedBlocks).toBe(1);
    const sent = commands();
    expect(sent[0]).toEqual([]);
    const transfers = sent.flat().filter((command) => command.action === "transfer");
    expect(transfers).toEqual([
      {
        action: "transfer",
        block: { blockId, generationStamp: 1001, numBytes: 100 },
        targets: [ids[3]],
      },
    ]);
    expect(adminState(0)).toBe("DECOMMISSION_INPROGRESS");

    hold(ids[3]!, blockId, 100);
    manager.computeReplicationWork();
    expect(adminState(0)).toBe("DECOMMISSIONED");
    expect(manager.stats.underReplicatedBlocks).toBe(0);
    // Decommissioned: still not a target; back in service once the set no longer names it.
    expect(manager.chooseTargets(4, undefined, []).map((node) => node.datanodeUuid)).not.toContain("dn0");
    expect(manager.setDecommissionSet([])).toEqual([]);
    expect(adminState(0)).toBe("NORMAL");
    expect(manager.chooseTargets(4, undefined, [])).toHaveLength(4);
  });

  it("copies from the decommissioning node when it holds the only replica", () => {
    const { namespace, manager, ids, hold, adminState, commands } = cluster(3);
    const blockId = closedFile(namespace, "/only-here", 42, { replication: 1 });
    hold(ids[0]!, blockId, 42);
    manager.setDecommissionSet(["127.0.0.1:1000"]);
    manager.computeReplicationWork();
    const [onDecommissioning, ...others] = commands();
    expect(others.flat()).toEqual([]);
    expect(onDecommissioning).toMatchObject([{ action: "transfer", block: { blockId } }]);
    expect(adminState(0)).toBe("DECOMMISSION_INPROGRESS");
  });

  it("finishes when fewer in-service nodes remain than a file's replication, as HDFS does", () => {
    const { namespace, manager, ids, hold, adminState } = cluster(3);
    const blockId = closedFile(namespace, "/f", 100);
    for (const node of ids) hold(node, blockId, 100);
    manager.setDecommissionSet(["127.0.0.1:1002"]);
    manager.computeReplicationWork();
    expect(adminState(2)).toBe("DECOMMISSIONED");
    // Still short of three on in-service nodes, and said so.
    expect(manager.stats.underReplicatedBlocks).toBe(1);
  });

  it("waits for a block still being written before declaring the node decommissioned", () => {
    const { namespace, manager, ids, adminState } = cluster(4);
    namespace.apply({
      op: "ADD",
      path: "/open",
      owner: "tester",
      group: "supergroup",
      permission: 0o644,
      mtime: 1,
      replication: 3,
      blockSize: MiB,
      clientName: "writer",
    });
    const blockId = namespace.lastBlockId + 1;
    namespace.apply({ op: "ADD_BLOCK", path: "/open", blockId, generationStamp: 1001 });
    manager.pipelineAcknowledged(blockId, ["dn0", "dn1", "dn2"]);
    manager.setDecommissionSet(["127.0.0.1:1000"]);
    manager.computeReplicationWork();
    expect(adminState(0)).toBe("DECOMMISSION_INPROGRESS");
    namespace.apply({ op: "CLOSE", path: "/open", mtime: 2, last: { blockId, numBytes: 7 } });
    manager.blocksReceived(ids[3]!, [{ blockId, generationStamp: 1001, numBytes: 7 }], true);
    manager.computeReplicationWork();
    expect(adminState(0)).toBe("DECOMMISSIONED");
  });

  it("applies the set to nodes that register later, by short name, and waits for their block report", () => {
    const { manager } = cluster(0);
    manager.setDecommissionSet(["pool-datanode-3"]);
    const leaving = { ...dataNode(3), hostName: "pool-datanode-3.pool-datanode.ns.svc" };
    const staying = { ...dataNode(30), hostName: "pool-datanode-30.pool-datanode.ns.svc" };
    expect(heartbeat(manager, leaving)).toEqual([{ action: "register" }]);
    heartbeat(manager, staying);
    const state = (uuid: string) => manager.report().find((node) => node.datanodeUuid === uuid)!.adminState;
    expect(state("dn3")).toBe("DECOMMISSION_INPROGRESS");
    expect(state("dn30")).toBe("NORMAL");
    // It looks empty only because it has not reported its blocks yet.
    manager.computeReplicationWork();
    expect(state("dn3")).toBe("DECOMMISSION_INPROGRESS");
    manager.blockReport(leaving, [], true);
    manager.computeReplicationWork();
    expect(state("dn3")).toBe("DECOMMISSIONED");
  });

  it("reports a silent node DEAD whatever its admin state", () => {
    const { manager } = cluster(2);
    manager.setDecommissionSet(["127.0.0.1:1001"]);
    manager.datanodes.get("dn1")!.info.lastUpdate = 0;
    expect(manager.report().find((node) => node.datanodeUuid === "dn1")!.adminState).toBe("DEAD");
    expect(manager.setDecommissionSet(["127.0.0.1:1001"])).toMatchObject([{ adminState: "DEAD" }]);
  });

  it("moves an erasure-coded internal block off a decommissioning node by a plain transfer outside its group", () => {
    const { namespace, manager, ids, hold, adminState, commands } = cluster(6);
    const numBytes = 2 * MiB + MiB / 2;
    const groupId = closedFile(namespace, "/ec-file", numBytes, { ecPolicy: "RS-3-2-1024k" });
    const layout = groupLayout("RS-3-2-1024k", numBytes);
    for (let i = 0; i < 5; i++) hold(ids[i]!, groupId + i, internalBlockLength(layout, i));

    manager.setDecommissionSet(["127.0.0.1:1002"]);
    manager.computeReplicationWork();
    expect(manager.stats.underReplicatedBlocks).toBe(1);
    const sent = commands();
    // Internal block 2 holds the last, half-full data cell: 512 KiB, not the group's length.
    expect(internalBlockLength(layout, 2)).toBe(MiB / 2);
    expect(sent.map((list, i) => [i, list])).toEqual([
      [0, []],
      [1, []],
      [
        2,
        [
          {
            action: "transfer",
            block: { blockId: groupId + 2, generationStamp: 1001, numBytes: MiB / 2 },
            targets: [ids[5]],
          },
        ],
      ],
      [3, []],
      [4, []],
      [5, []],
    ]);
    expect(adminState(2)).toBe("DECOMMISSION_INPROGRESS");
    hold(ids[5]!, groupId + 2, MiB / 2);
    manager.computeReplicationWork();
    expect(adminState(2)).toBe("DECOMMISSIONED");
    expect(manager.stats.underReplicatedBlocks).toBe(0);
  });
});

describe("host entries", () => {
  it("name a node by host, host:xferPort, or a short name up to a dot, but not an IP's prefixes", () => {
    expect(hostEntryKeys({ hostName: "Pool-DataNode-3.pool-datanode.ns.svc", xferPort: 9866 })).toEqual([
      "pool-datanode-3.pool-datanode.ns.svc:9866",
      "pool-datanode-3.pool-datanode.ns.svc",
      "pool-datanode-3.pool-datanode.ns",
      "pool-datanode-3.pool-datanode",
      "pool-datanode-3",
    ]);
    expect(hostEntryKeys({ hostName: "127.0.0.1", xferPort: 9866 })).toEqual(["127.0.0.1:9866", "127.0.0.1"]);
  });

  it("parses PUT /admin/decommission bodies and refuses malformed ones with a 400", () => {
    expect(parseDecommissionRequest(Buffer.from('{"hosts": ["a", "b:1"]}'))).toEqual(["a", "b:1"]);
    expect(parseDecommissionRequest(Buffer.from('{"hosts": []}'))).toEqual([]);
    for (const [body, problem] of [
      ["not json", /not JSON/],
      ["[]", /"hosts" must be a list/],
      ["null", /"hosts" must be a list/],
      ['{"hosts": "a"}', /"hosts" must be a list/],
      ['{"hosts": ["a", 3]}', /hosts\[1\] is 3/],
      ['{"hosts": ["a b"]}', /hosts\[0\] is "a b"/],
      ['{"hosts": [""]}', /hosts\[0\] is ""/],
    ] as const) {
      let error: unknown;
      try {
        parseDecommissionRequest(Buffer.from(body));
      } catch (caught) {
        error = caught;
      }
      expect(error, body).toBeInstanceOf(RemoteException);
      expect((error as RemoteException).status, body).toBe(400);
      expect((error as RemoteException).exception, body).toBe("IllegalArgumentException");
      expect((error as RemoteException).message, body).toMatch(problem);
    }
  });
});

describe("BlockManager excess replicas", () => {
  it("deletes replicas beyond the replication, keeping both racks", () => {
    const { namespace, manager, ids, hold, commands } = cluster(4);
    ids.forEach((node, i) => {
      heartbeat(manager, node, i < 3 ? "/rack-a" : "/rack-b");
    });
    const blockId = closedFile(namespace, "/lowered", 100, { replication: 2 });
    for (const node of ids) hold(node, blockId, 100);

    manager.computeReplicationWork();
    manager.computeReplicationWork();
    const invalidated = commands().flatMap((list, i) =>
      list.some((command) => command.action === "invalidate") ? [i] : [],
    );
    expect(invalidated).toHaveLength(2);
    // The replica on rack-b is the only one there: it stays.
    expect(invalidated).not.toContain(3);
    manager.blocksDeleted(ids[invalidated[0]!]!, [blockId]);
    manager.blocksDeleted(ids[invalidated[1]!]!, [blockId]);
    manager.computeReplicationWork();
    const kept = manager.goodReplicas(blockId).map((node) => node.datanodeUuid);
    expect(kept).toHaveLength(2);
    expect(kept).toContain("dn3");
    expect(commands().flat()).toEqual([]);
  });
});

describe("BlockManager erasure-coded repair", () => {
  it("rebuilds a corrupt internal block elsewhere, then tells its holder to delete it", () => {
    const { namespace, manager, ids, hold, commands } = cluster(6);
    const numBytes = 3 * MiB;
    const groupId = closedFile(namespace, "/coded", numBytes, { ecPolicy: "RS-3-2-1024k" });
    const layout = groupLayout("RS-3-2-1024k", numBytes);
    ids.slice(0, 5).forEach((node, i) => {
      hold(node, groupId + i, internalBlockLength(layout, i));
    });
    manager.markCorrupt(groupId + 1, "dn1");

    manager.computeReplicationWork();
    const first = commands();
    const reconstruct = first.flat().find((command) => command.action === "reconstruct");
    expect(reconstruct).toMatchObject({ missing: [1], targets: [{ datanodeUuid: "dn5" }] });
    expect(first[1]!.some((command) => command.action === "invalidate")).toBe(false);
    expect(manager.stats.corruptReplicas).toBe(1);

    hold(ids[5]!, groupId + 1, internalBlockLength(layout, 1));
    manager.computeReplicationWork();
    expect(commands()[1]).toContainEqual({
      action: "invalidate",
      blocks: [{ blockId: groupId + 1, generationStamp: 1001, numBytes: internalBlockLength(layout, 1) }],
    });
    manager.blocksDeleted(ids[1]!, [groupId + 1]);
    manager.computeReplicationWork();
    expect(manager.stats).toMatchObject({ corruptReplicas: 0, underReplicatedBlocks: 0 });
  });
});
