/**
 * The data-node scale-down decision, pure: desired and current replicas and the name node's
 * answers in, the replicas to apply, what to send and the condition out.
 */
import { describe, expect, it } from "vitest";
import { blockPoolSpecSchema } from "../../src/api/blockpool.js";
import {
  decommissionRequest,
  retiringPods,
  type ScaleInput,
  scaleDataNodes,
  scaleDownMessage,
} from "../../src/controllers/blockpool/decommission.js";
import type { DataNodeReport } from "../../src/controllers/blockpool/nameNodeClient.js";
import { blockPoolHealth, nameNodeView, roleState } from "../../src/controllers/blockpool/status.js";

const node = (hostName: string, adminState: string): DataNodeReport => ({
  hostName,
  xferPort: 9866,
  datanodeUuid: `uuid-${hostName}`,
  adminState,
});
const fqdn = (ordinal: number) => `lake-datanode-${ordinal}.lake-datanode.data.svc`;
const normal = (count: number) => Array.from({ length: count }, (_, i) => node(fqdn(i), "NORMAL"));

const decide = (input: Partial<ScaleInput>) =>
  scaleDataNodes({
    pool: "lake",
    desired: 3,
    current: 4,
    stopped: false,
    answer: { datanodes: [] },
    registeredDataNodes: 4,
    readyPods: new Set(),
    ...input,
  });

describe("what the name node is told", () => {
  it("scaling down: the pods with ordinal >= desired, in ordinal order, every time", () => {
    expect(decommissionRequest("lake", 3, 5, normal(5))).toEqual({
      hosts: ["lake-datanode-3", "lake-datanode-4"],
      send: true,
    });
    // Ordinals sort as numbers, not text.
    expect(decommissionRequest("lake", 9, 11, undefined).hosts).toEqual([
      "lake-datanode-9",
      "lake-datanode-10",
    ]);
    // Unreachable name node: still asked for (the caller reports it cannot be sent).
    expect(decommissionRequest("lake", 3, 4, undefined)).toEqual({ hosts: ["lake-datanode-3"], send: true });
  });

  it("steady, with the name node excluding nothing: nothing to send", () => {
    expect(decommissionRequest("lake", 4, 4, normal(4))).toEqual({ hosts: [], send: false });
    expect(decommissionRequest("lake", 4, undefined, [])).toEqual({ hosts: [], send: false });
    expect(decommissionRequest("lake", 4, 4, undefined)).toEqual({ hosts: [], send: false });
  });

  it("scaling back up before the decommission finished takes it back: [] (or the smaller set)", () => {
    const midway = [
      ...normal(3),
      node(fqdn(3), "DECOMMISSION_INPROGRESS"),
      node(fqdn(4), "DECOMMISSION_INPROGRESS"),
    ];
    expect(decommissionRequest("lake", 5, 5, midway)).toEqual({ hosts: [], send: true });
    expect(decommissionRequest("lake", 4, 5, midway)).toEqual({ hosts: ["lake-datanode-4"], send: true });
  });

  it("after a scale-down, a pod on its way out stays excluded; once dead it is left alone", () => {
    const leaving = [...normal(3), node(fqdn(3), "DECOMMISSIONED")];
    expect(decommissionRequest("lake", 3, 3, leaving)).toEqual({ hosts: ["lake-datanode-3"], send: false });
    const gone = [...normal(3), node(fqdn(3), "DEAD")];
    expect(decommissionRequest("lake", 3, 3, gone)).toEqual({ hosts: [], send: false });
    // Scaled up again, the pod returns DECOMMISSIONED (the name node kept its exclude entry).
    expect(decommissionRequest("lake", 4, 3, leaving)).toEqual({ hosts: [], send: true });
  });

  it("only this pool's data-node pods count", () => {
    const others = [node("127.0.0.1", "DECOMMISSIONED"), node("other-datanode-7.x", "NORMAL"), ...normal(3)];
    const request = decommissionRequest("lake", 3, 3, others);
    expect(request.hosts).toEqual([]);
    // 127.0.0.1 is excluded on the name node but not wanted: corrected with the whole set.
    expect(request.send).toBe(true);
  });
});

describe("the replicas applied", () => {
  it("no scale-down: the spec's count at once; stopped: 0 without any decommission", () => {
    expect(decide({ desired: 5, current: 4 })).toEqual({ phase: "steady", replicas: 5 });
    expect(decide({ desired: 4, current: 4 })).toEqual({ phase: "steady", replicas: 4 });
    expect(decide({ desired: 4, current: undefined })).toEqual({ phase: "steady", replicas: 4 });
    expect(decide({ desired: 3, current: 4, stopped: true, answer: { error: "down" } })).toEqual({
      phase: "steady",
      replicas: 0,
    });
  });

  it("holds the current count while a retiring node is NORMAL or DECOMMISSION_INPROGRESS", () => {
    const decision = decide({
      desired: 2,
      current: 4,
      answer: { datanodes: [node(fqdn(2), "DECOMMISSION_INPROGRESS"), node(fqdn(3), "DECOMMISSIONED")] },
    });
    expect(decision).toMatchObject({ phase: "decommissioning", replicas: 4, desired: 2 });
    expect(retiringPods(decision)).toEqual(["lake-datanode-2", "lake-datanode-3"]);
    expect(scaleDownMessage(decision)).toBe(
      "decommissioning before scaling data nodes from 4 to 2: 1/2 done (lake-datanode-2 DECOMMISSION_INPROGRESS, lake-datanode-3 DECOMMISSIONED); the StatefulSet keeps 4 replicas until every one is DECOMMISSIONED",
    );
  });

  it("applies the lower count once every retiring node is DECOMMISSIONED, DEAD or unknown to the name node", () => {
    for (const datanodes of [
      [node(fqdn(3), "DECOMMISSIONED")],
      [node(fqdn(3), "DEAD")],
      [],
      // An old, dead registration of the pod beside its decommissioned one.
      [node(fqdn(3), "DEAD"), { ...node(fqdn(3), "DECOMMISSIONED"), datanodeUuid: "new" }],
    ]) {
      const decision = decide({ answer: { datanodes } });
      expect(decision, JSON.stringify(datanodes)).toMatchObject({
        phase: "decommissioned",
        replicas: 3,
        from: 4,
      });
      expect(retiringPods(decision)).toEqual([]);
    }
  });

  it("a node registered twice is done only when every registration is", () => {
    const decision = decide({
      answer: {
        datanodes: [node(fqdn(3), "DECOMMISSIONED"), { ...node(fqdn(3), "NORMAL"), datanodeUuid: "b" }],
      },
    });
    expect(decision).toMatchObject({ phase: "decommissioning", replicas: 4 });
  });

  it("a name node that knows no data node at all (just started) is not taken at its word", () => {
    expect(decide({ answer: { datanodes: [] }, registeredDataNodes: 0 })).toMatchObject({
      phase: "decommissioning",
      replicas: 4,
      retiring: [{ pod: "lake-datanode-3", state: "unregistered", done: false }],
    });
  });

  it("waits for a running pod the name node does not know yet: it has not re-registered since a restart", () => {
    expect(
      decide({ answer: { datanodes: [] }, registeredDataNodes: 3, readyPods: new Set(["lake-datanode-3"]) }),
    ).toMatchObject({
      phase: "decommissioning",
      retiring: [{ pod: "lake-datanode-3", state: "unregistered", done: false }],
    });
    expect(decide({ answer: { datanodes: [] }, registeredDataNodes: 3 })).toMatchObject({
      phase: "decommissioned",
      replicas: 3,
    });
  });

  it("never shrinks when the name node cannot be asked, and says why", () => {
    const decision = decide({ desired: 3, current: 5, answer: { error: "lake-namenode-0: ECONNREFUSED" } });
    expect(decision).toEqual({
      phase: "blocked",
      replicas: 5,
      desired: 3,
      pods: ["lake-datanode-3", "lake-datanode-4"],
      error: "lake-namenode-0: ECONNREFUSED",
    });
    expect(scaleDownMessage(decision)).toContain("data nodes stay at 5 (spec.dataNodes.replicas is 3)");
    expect(scaleDownMessage(decision)).toContain("lake-namenode-0: ECONNREFUSED");
  });
});

describe("the conditions of a scale-down", () => {
  const spec = blockPoolSpecSchema.parse({ dataNodes: { replicas: 3 } });
  const settled = (desired: number) =>
    roleState("data nodes", desired, {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: "lake-datanode", generation: 1 },
      status: { observedGeneration: 1, replicas: desired, readyReplicas: desired, updatedReplicas: desired },
    });
  const active = nameNodeView([
    {
      pod: "lake-namenode-0",
      url: "http://x",
      status: {
        haState: "active",
        liveDataNodes: 4,
        missingBlocks: 0,
        underReplicatedBlocks: 0,
        datanodes: normal(4),
      },
    },
  ]);

  it("Progressing Decommissioning names the nodes and their progress; Ready stays as the name node says", () => {
    const scale = decide({ answer: { datanodes: [node(fqdn(3), "DECOMMISSION_INPROGRESS")] } });
    const health = blockPoolHealth({ roles: [settled(4)], stopped: false, spec, nameNodes: active, scale });
    expect(health.progressing).toMatchObject({ status: "True", reason: "Decommissioning" });
    expect(health.progressing.message).toContain("lake-datanode-3 DECOMMISSION_INPROGRESS");
    expect(health.ready).toMatchObject({ status: "True", reason: "Serving" });
  });

  it("Progressing NameNodeUnreachable when the scale-down cannot start", () => {
    const scale = decide({ answer: { error: "lake-namenode-0: ENOTFOUND" } });
    const unreachable = nameNodeView([{ pod: "lake-namenode-0", url: "http://x", error: "ENOTFOUND" }]);
    const health = blockPoolHealth({
      roles: [settled(4)],
      stopped: false,
      spec,
      nameNodes: unreachable,
      scale,
    });
    expect(health.progressing).toMatchObject({ status: "True", reason: "NameNodeUnreachable" });
    expect(health.progressing.message).toContain("must be decommissioned first");
  });
});
