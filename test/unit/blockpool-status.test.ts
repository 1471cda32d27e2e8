/**
 * BlockPool status from the name nodes' reports, and the rack table from pods and nodes: pure.
 */
import { describe, expect, it } from "vitest";
import { blockPoolSpecSchema } from "../../src/api/blockpool.js";
import type { ScaleDecision } from "../../src/controllers/blockpool/decommission.js";
import type { NameNodeAnswer, NameNodeStatus } from "../../src/controllers/blockpool/nameNodeClient.js";
import {
  blockPoolHealth,
  nameNodeFigures,
  nameNodeView,
  neededDataNodes,
  type RoleState,
} from "../../src/controllers/blockpool/status.js";
import { topologyTable } from "../../src/controllers/blockpool/topology.js";
import { type PodProblem, podProblem } from "../../src/controllers/podHealth.js";
import type { KubeObject } from "../../src/operator/kube.js";

const spec = blockPoolSpecSchema.parse({
  dataNodes: { replicas: 5 },
  erasureCoding: [{ path: "/cold", policy: "RS-3-2" }],
});
const steady: ScaleDecision = { phase: "steady", replicas: 5 };
const settled: RoleState[] = [
  { role: "name nodes", desired: 2, ready: 2, settled: true },
  { role: "data nodes", desired: 5, ready: 5, settled: true },
];
const rollingOut: RoleState[] = [
  { role: "name nodes", desired: 2, ready: 2, settled: true },
  { role: "data nodes", desired: 5, ready: 4, settled: false },
];

const report = (fields: Partial<NameNodeStatus> = {}): NameNodeStatus => ({
  haState: "active",
  liveDataNodes: 5,
  deadDataNodes: 0,
  capacity: 5_000_000,
  used: 12_345,
  files: 7,
  blocks: 4,
  underReplicatedBlocks: 0,
  missingBlocks: 0,
  erasureCodingPolicies: [
    { path: "/cold", policy: "RS-3-2-1024k" },
    { path: "/archive", policy: "RS-3-2-1024k" },
  ],
  datanodes: [
    { hostName: "lake-datanode-0.lake-datanode.data.svc", adminState: "NORMAL" },
    { hostName: "lake-datanode-4.lake-datanode.data.svc", adminState: "DECOMMISSION_INPROGRESS" },
  ],
  ...fields,
});
const answers = (active: Partial<NameNodeStatus> = {}): NameNodeAnswer[] => [
  { pod: "lake-namenode-0", url: "http://nn-0", status: report({ haState: "standby" }) },
  { pod: "lake-namenode-1", url: "http://nn-1", status: report(active) },
];
const health = (view: ReturnType<typeof nameNodeView>, roles = settled) =>
  blockPoolHealth({ roles, stopped: false, spec, nameNodes: view, scale: steady });

describe("status figures from the name nodes", () => {
  it("takes the active name node's report; the standby is named", () => {
    const view = nameNodeView(answers());
    expect(nameNodeFigures(view, spec)).toEqual({
      activeNameNode: "lake-namenode-1",
      standbyNameNode: "lake-namenode-0",
      liveDataNodes: 5,
      deadDataNodes: 0,
      decommissioningDataNodes: 1,
      capacityBytes: 5_000_000,
      usedBytes: 12_345,
      files: 7,
      blocks: 4,
      underReplicatedBlocks: 0,
      missingBlocks: 0,
      erasureCodingPolicies: ["RS-3-2-1024k"],
    });
  });

  it("falls back to the spec's policies, and leaves figures out, without an active name node", () => {
    const view = nameNodeView([
      { pod: "lake-namenode-0", url: "http://nn-0", status: report({ haState: "standby" }) },
      { pod: "lake-namenode-1", url: "http://nn-1", error: "ECONNREFUSED" },
    ]);
    expect(nameNodeFigures(view, spec)).toEqual({
      standbyNameNode: "lake-namenode-0",
      erasureCodingPolicies: ["RS-3-2"],
    });
    expect(nameNodeFigures(nameNodeView([]), spec)).toEqual({ erasureCodingPolicies: ["RS-3-2"] });
  });

  it("needs the replication's data nodes, or k+m of the widest code", () => {
    expect(neededDataNodes(spec)).toEqual({ count: 5, why: "RS-3-2 on /cold" });
    expect(neededDataNodes(blockPoolSpecSchema.parse({}))).toEqual({ count: 3, why: "replication 3" });
  });
});

describe("health from the name nodes", () => {
  it("Ready Serving with an active name node and enough live data nodes, even mid-rollout", () => {
    const result = health(nameNodeView(answers()), rollingOut);
    expect(result.ready).toEqual({
      status: "True",
      reason: "Serving",
      message:
        "active name node lake-namenode-1, standby lake-namenode-0, 5 live data nodes, 7 files and directories, 4 blocks",
    });
    expect(result.progressing).toMatchObject({ status: "True", reason: "WaitingForChildren" });
    expect(result.degraded.status).toBe("False");
  });

  it("under-replicated blocks: still Ready, and said", () => {
    const result = health(nameNodeView(answers({ underReplicatedBlocks: 3 })));
    expect(result.ready).toMatchObject({ status: "True", reason: "UnderReplicated" });
    expect(result.ready.message).toContain("3 blocks under-replicated, being re-replicated");
    expect(result.degraded.status).toBe("False");
  });

  it("an active name node without a standby to take over: Ready, and said", () => {
    const result = health(
      nameNodeView([
        { pod: "lake-namenode-0", url: "http://nn-0", status: report() },
        { pod: "lake-namenode-1", url: "http://nn-1", status: report({ haState: "stopped" }) },
      ]),
    );
    expect(result.ready).toMatchObject({ status: "True", reason: "Serving" });
    expect(result.ready.message).toMatch(/; no standby to take over \(lake-namenode-1 is stopped\)$/);
  });

  it("missing blocks: Degraded MissingBlocks, and not Ready", () => {
    const result = health(nameNodeView(answers({ missingBlocks: 1, underReplicatedBlocks: 2 })));
    expect(result.degraded).toMatchObject({ status: "True", reason: "MissingBlocks" });
    expect(result.degraded.message).toMatch(/^1 block missing: .*cannot be read/);
    expect(result.ready).toMatchObject({ status: "False", reason: "MissingBlocks" });
  });

  it("no active name node: not Ready, naming what each one is", () => {
    const result = health(
      nameNodeView([
        { pod: "lake-namenode-0", url: "http://nn-0", status: report({ haState: "standby" }) },
        { pod: "lake-namenode-1", url: "http://nn-1", error: "no answer within 2000 ms" },
      ]),
    );
    expect(result.ready).toEqual({
      status: "False",
      reason: "NoActiveNameNode",
      message:
        "no name node is active (lake-namenode-0 is standby; lake-namenode-1: no answer within 2000 ms): the pool cannot serve until one takes over",
    });
  });

  it("too few live data nodes for the pool's widest policy: not Ready", () => {
    const result = health(nameNodeView(answers({ liveDataNodes: 4 })));
    expect(result.ready).toMatchObject({ status: "False", reason: "InsufficientDataNodes" });
    expect(result.ready.message).toMatch(/^4 live data nodes, but RS-3-2 on \/cold needs 5/);
  });

  it("no name node reachable: the StatefulSets' health, saying why", () => {
    const result = health(
      nameNodeView([
        { pod: "lake-namenode-0", url: "http://nn-0", error: "GET http://nn-0/status: ENOTFOUND" },
        { pod: "lake-namenode-1", url: "http://nn-1", error: "GET http://nn-1/status: ENOTFOUND" },
      ]),
    );
    expect(result.ready).toMatchObject({ status: "True", reason: "ChildrenReady" });
    expect(result.ready.message).toBe(
      "ready: 2/2 name nodes, 5/5 data nodes; name nodes not reachable from the operator (lake-namenode-0: GET http://nn-0/status: ENOTFOUND; lake-namenode-1: GET http://nn-1/status: ENOTFOUND), so health comes from the StatefulSets alone",
    );
  });

  it("stopped: the StatefulSets' Stopped health, the name nodes not asked", () => {
    const result = blockPoolHealth({
      roles: settled.map((role) => ({ ...role, desired: 0, ready: 0 })),
      stopped: true,
      spec,
      nameNodes: undefined,
      scale: { phase: "steady", replicas: 0 },
    });
    expect(result.ready).toMatchObject({ status: "True", reason: "Stopped" });
  });
});

describe("health from the pods", () => {
  /** A data-node pod whose container cannot pull its image, as the kubelet reports it. */
  const imagePullBackOff: KubeObject = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "lake-datanode-4",
      namespace: "data",
      labels: { "app.kubernetes.io/name": "blockpool", "app.kubernetes.io/instance": "lake" },
    },
    spec: { containers: [{ name: "datanode", image: "registry.example/tributary:0.3.0" }] },
    status: {
      phase: "Pending",
      conditions: [
        { type: "PodScheduled", status: "True" },
        { type: "Ready", status: "False", reason: "ContainersNotReady" },
      ],
      containerStatuses: [
        {
          name: "datanode",
          ready: false,
          restartCount: 0,
          image: "registry.example/tributary:0.3.0",
          imageID: "",
          state: {
            waiting: {
              reason: "ImagePullBackOff",
              message: 'Back-off pulling image "registry.example/tributary:0.3.0"',
            },
          },
        },
      ],
    },
  };
  const failing = podProblem([imagePullBackOff]);
  const message =
    'pod lake-datanode-4, container datanode: ImagePullBackOff: Back-off pulling image "registry.example/tributary:0.3.0"';
  const unreachable = nameNodeView([
    { pod: "lake-namenode-0", url: "http://nn-0", error: "GET http://nn-0/status: ENOTFOUND" },
    { pod: "lake-namenode-1", url: "http://nn-1", error: "GET http://nn-1/status: ENOTFOUND" },
  ]);
  const withPods = (
    view: ReturnType<typeof nameNodeView>,
    roles: RoleState[],
    pods: PodProblem | undefined,
  ) => blockPoolHealth({ roles, stopped: false, spec, nameNodes: view, scale: steady, pods });

  it("a pod that cannot run: Degraded with its reason, not Progressing, Ready from what still serves", () => {
    const result = withPods(nameNodeView(answers()), rollingOut, failing);
    expect(result.degraded).toEqual({ status: "True", reason: "PodsFailing", message });
    expect(result.progressing).toEqual({
      status: "False",
      reason: "PodsFailing",
      message: `the rollout cannot finish: ${message}`,
    });
    // The active name node still serves five live data nodes: the pool is Ready, and Degraded says why it limps.
    expect(result.ready).toMatchObject({ status: "True", reason: "Serving" });
  });

  it("with the StatefulSets alone to go by: not Ready, for the pod's reason", () => {
    const result = withPods(unreachable, rollingOut, failing);
    expect(result.ready).toEqual({ status: "False", reason: "PodsFailing", message });
    expect(result.degraded).toMatchObject({ status: "True", reason: "PodsFailing" });
  });

  it("recovered pods: Degraded False again, Ready and Progressing as the workloads say", () => {
    expect(withPods(unreachable, rollingOut, undefined)).toEqual(
      blockPoolHealth({ roles: rollingOut, stopped: false, spec, nameNodes: unreachable, scale: steady }),
    );
    const settledAgain = withPods(nameNodeView(answers()), settled, podProblem([]));
    expect(settledAgain.degraded.status).toBe("False");
    expect(settledAgain.ready).toMatchObject({ status: "True", reason: "Serving" });
    expect(settledAgain.progressing).toMatchObject({ status: "False", reason: "Reconciled" });
  });

  it("missing blocks stay the Degraded reason; a waiting decommission stays Progressing", () => {
    const missing = withPods(nameNodeView(answers({ missingBlocks: 1 })), rollingOut, failing);
    expect(missing.degraded).toMatchObject({ status: "True", reason: "MissingBlocks" });
    const decommissioning = blockPoolHealth({
      roles: settled,
      stopped: false,
      spec,
      nameNodes: nameNodeView(answers()),
      scale: {
        phase: "decommissioning",
        replicas: 5,
        desired: 4,
        retiring: [{ pod: "lake-datanode-4", state: "DECOMMISSION_INPROGRESS", done: false }],
      },
      pods: failing,
    });
    expect(decommissioning.progressing).toMatchObject({ status: "True", reason: "Decommissioning" });
    expect(decommissioning.degraded).toMatchObject({ status: "True", reason: "PodsFailing" });
  });
});

describe("the rack table", () => {
  const pod = (name: string, nodeName?: string): KubeObject => ({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "data" },
    spec: nodeName ? { nodeName } : {},
  });
  const node = (name: string, labels: Record<string, string> = {}): KubeObject => ({
    apiVersion: "v1",
    kind: "Node",
    metadata: { name, labels },
  });
  const zone = "topology.kubernetes.io/zone";

  it("one line per scheduled pod, in ordinal order, the zone as its rack", () => {
    const pods = [
      pod("lake-datanode-10", "n3"),
      pod("lake-datanode-2", "n2"),
      pod("lake-datanode-0", "n1"),
      pod("lake-datanode-1"),
    ];
    const nodes = [node("n1", { [zone]: "eu-west-1a" }), node("n2", { [zone]: "eu-west-1b" }), node("n3")];
    expect(topologyTable(pods, nodes, zone)).toBe(
      "lake-datanode-0 /eu-west-1a\nlake-datanode-2 /eu-west-1b\nlake-datanode-10 /default-rack\n",
    );
  });

  it("reads the configured label; a node not seen yet is /default-rack; no pods, an empty table", () => {
    const nodes = [node("n1", { [zone]: "a", "example.com/rack": "r7" })];
    expect(topologyTable([pod("p-0", "n1"), pod("p-1", "n9")], nodes, "example.com/rack")).toBe(
      "p-0 /r7\np-1 /default-rack\n",
    );
    expect(topologyTable([], nodes, zone)).toBe("");
  });
});
