/**
 * The first problem among a resource's pods, from Pod objects as the kubelet and the scheduler
 * leave them, and what it does to the resource's conditions: pure.
 */
import { describe, expect, it } from "vitest";
import {
  podHealthFingerprint,
  podProblem,
  podWatch,
  unschedulableGraceMs,
  withPodProblem,
} from "../../src/controllers/podHealth.js";
import type { Health } from "../../src/operator/conditions.js";
import type { KubeObject } from "../../src/operator/kube.js";

type ContainerStatus = Record<string, unknown> & { name: string };

const started = "2026-12-05T10:00:00Z";

/** A collector pod of Topic web/clicks as the API server returns it, with the given status. */
function pod(
  name: string,
  status: {
    phase?: string;
    conditions?: Record<string, unknown>[];
    containerStatuses?: ContainerStatus[];
    initContainerStatuses?: ContainerStatus[];
  },
  { memoryLimit, deleting }: { memoryLimit?: string; deleting?: boolean } = {},
): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: "web",
      uid: `${name}-uid`,
      labels: {
        "app.kubernetes.io/name": "topic",
        "app.kubernetes.io/instance": "clicks",
        "app.kubernetes.io/component": "collector",
        "pod-template-hash": "5d9f7c6b8",
      },
      ownerReferences: [
        {
          apiVersion: "apps/v1",
          kind: "ReplicaSet",
          name: "clicks-collector-5d9f7c6b8",
          uid: "rs-uid",
          controller: true,
        },
      ],
      ...(deleting ? { deletionTimestamp: "2026-12-05T10:05:00Z" } : {}),
    },
    spec: {
      containers: [
        {
          name: "collector",
          image: "registry.example/tributary:0.2.0",
          args: ["collector"],
          ...(memoryLimit ? { resources: { limits: { memory: memoryLimit } } } : {}),
        },
      ],
      nodeName: "node-a",
    },
    status: {
      phase: "Running",
      hostIP: "10.0.0.5",
      podIP: "10.244.0.17",
      startTime: started,
      qosClass: "BestEffort",
      ...status,
    },
  };
}

const conditions = (ready: boolean) => [
  { type: "PodReadyToStartContainers", status: "True", lastTransitionTime: started },
  { type: "Initialized", status: "True", lastTransitionTime: started },
  {
    type: "Ready",
    status: ready ? "True" : "False",
    lastTransitionTime: started,
    ...(ready
      ? {}
      : { reason: "ContainersNotReady", message: "containers with unready status: [collector]" }),
  },
  {
    type: "ContainersReady",
    status: ready ? "True" : "False",
    lastTransitionTime: started,
    ...(ready
      ? {}
      : { reason: "ContainersNotReady", message: "containers with unready status: [collector]" }),
  },
  { type: "PodScheduled", status: "True", lastTransitionTime: started },
];

const running: ContainerStatus = {
  name: "collector",
  image: "registry.example/tributary:0.2.0",
  imageID: "registry.example/tributary@sha256:4f1c",
  containerID: "containerd://a1b2",
  ready: true,
  started: true,
  restartCount: 0,
  state: { running: { startedAt: started } },
};

const healthy = (name: string) => pod(name, { conditions: conditions(true), containerStatuses: [running] });

const waiting = (reason: string, message: string, extra: Record<string, unknown> = {}): ContainerStatus => ({
  name: "collector",
  image: "registry.example/tributary:0.2.0",
  imageID: "",
  ready: false,
  started: false,
  restartCount: 0,
  state: { waiting: { reason, message } },
  ...extra,
});

const crashLooping = (name: string, exitCode = 1, restartCount = 4) =>
  pod(name, {
    conditions: conditions(false),
    containerStatuses: [
      waiting(
        "CrashLoopBackOff",
        `back-off 40s restarting failed container=collector pod=${name}_web(${name}-uid)`,
        {
          restartCount,
          lastState: {
            terminated: {
              exitCode,
              reason: "Error",
              startedAt: "2026-12-05T10:03:10Z",
              finishedAt: "2026-12-05T10:03:11Z",
              containerID: "containerd://c3d4",
            },
          },
        },
      ),
    ],
  });

const unschedulable = (name: string, ready = false) =>
  pod(name, {
    phase: "Pending",
    conditions: [
      ...(ready ? [{ type: "Ready", status: "True", lastTransitionTime: started }] : []),
      {
        type: "PodScheduled",
        status: "False",
        lastProbeTime: null,
        lastTransitionTime: started,
        reason: "Unschedulable",
        message:
          "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
      },
    ],
  });

describe("podProblem", () => {
  it("finds nothing wrong with running, ready pods, or with pods that are still starting", () => {
    const creating = pod("clicks-collector-5d9f7c6b8-c", {
      phase: "Pending",
      conditions: conditions(false),
      containerStatuses: [waiting("ContainerCreating", "")],
    });
    const scheduling = pod("clicks-collector-5d9f7c6b8-d", { phase: "Pending" });
    expect(
      podProblem([healthy("clicks-collector-5d9f7c6b8-a"), healthy("clicks-collector-5d9f7c6b8-b")]),
    ).toBeUndefined();
    expect(podProblem([creating, scheduling])).toBeUndefined();
    expect(podProblem([])).toBeUndefined();
  });

  it("names the pod, the container, the kubelet's reason and message, and the last exit of a crash loop", () => {
    expect(podProblem([crashLooping("clicks-collector-5d9f7c6b8-x2x7q")])).toEqual({
      reason: "PodsFailing",
      pod: "clicks-collector-5d9f7c6b8-x2x7q",
      container: "collector",
      cause: "CrashLoopBackOff",
      message:
        "pod clicks-collector-5d9f7c6b8-x2x7q, container collector: CrashLoopBackOff: back-off 40s restarting failed container=collector pod=clicks-collector-5d9f7c6b8-x2x7q_web(clicks-collector-5d9f7c6b8-x2x7q-uid) (last exit 1)",
    });
  });

  it("quotes what the process said when it ended, cut short when it is long", () => {
    const said = `Error: TRIBUTARY_COLLECTOR_BROKERS: expected host:port\n${"    at parse (config.js:1:1)\n".repeat(40)}`;
    const failing = crashLooping("clicks-collector-5d9f7c6b8-x2x7q");
    const status = failing.status as { containerStatuses: { lastState: { terminated: object } }[] };
    status.containerStatuses[0]!.lastState.terminated = {
      ...status.containerStatuses[0]!.lastState.terminated,
      message: said,
    };
    const message = podProblem([failing])!.message;
    expect(message).toContain("(last exit 1: Error: TRIBUTARY_COLLECTOR_BROKERS: expected host:port");
    expect(message.length).toBeLessThan(900);
    expect(message.endsWith("…)")).toBe(true);
  });

  it.each([
    ["ImagePullBackOff", 'Back-off pulling image "registry.example/tributary:0.2.0"'],
    [
      "ErrImagePull",
      'failed to pull and unpack image "registry.example/tributary:0.2.0": failed to resolve reference "registry.example/tributary:0.2.0": registry.example/tributary:0.2.0: not found',
    ],
    ["CreateContainerConfigError", 'secret "kafka-user" not found'],
    [
      "InvalidImageName",
      'Failed to apply default image tag "registry.example/Tributary:0.2.0": invalid reference format',
    ],
    ["CreateContainerError", 'failed to create containerd container: mount "/var/lib/tributary" not allowed'],
    [
      "RunContainerError",
      'failed to start containerd task "collector": exec: "tributary": executable file not found in $PATH',
    ],
  ])("reports a container waiting with %s", (reason, message) => {
    const failing = pod("clicks-collector-5d9f7c6b8-x2x7q", {
      phase: "Pending",
      conditions: conditions(false),
      containerStatuses: [waiting(reason, message)],
    });
    expect(podProblem([failing])).toMatchObject({
      reason: "PodsFailing",
      cause: reason,
      message: `pod clicks-collector-5d9f7c6b8-x2x7q, container collector: ${reason}: ${message}`,
    });
  });

  it("calls a container killed for memory and restarting OOMKilled, with its limit", () => {
    const failing = pod(
      "clicks-collector-5d9f7c6b8-x2x7q",
      {
        conditions: conditions(false),
        containerStatuses: [
          waiting(
            "CrashLoopBackOff",
            "back-off 20s restarting failed container=collector pod=clicks-collector-5d9f7c6b8-x2x7q_web(uid)",
            {
              restartCount: 3,
              lastState: { terminated: { exitCode: 137, reason: "OOMKilled", finishedAt: started } },
            },
          ),
        ],
      },
      { memoryLimit: "256Mi" },
    );
    expect(podProblem([failing])).toMatchObject({
      reason: "PodsFailing",
      cause: "OOMKilled",
      message:
        "pod clicks-collector-5d9f7c6b8-x2x7q, container collector: OOMKilled: killed for using more memory than its limit of 256Mi (raise the role's resources.limits.memory), restarted 3 times; CrashLoopBackOff: back-off 20s restarting failed container=collector pod=clicks-collector-5d9f7c6b8-x2x7q_web(uid)",
    });
  });

  it("lets a container that was killed for memory once, and runs again, be", () => {
    const recovered = pod("clicks-collector-5d9f7c6b8-x2x7q", {
      conditions: conditions(true),
      containerStatuses: [
        {
          ...running,
          restartCount: 1,
          lastState: { terminated: { exitCode: 137, reason: "OOMKilled", finishedAt: started } },
        },
      ],
    });
    expect(podProblem([recovered])).toBeUndefined();
  });

  it("reports a pod no node fits with the scheduler's message, unless it runs anyway", () => {
    expect(podProblem([unschedulable("clicks-collector-5d9f7c6b8-x2x7q")])).toEqual({
      reason: "PodsUnschedulable",
      pod: "clicks-collector-5d9f7c6b8-x2x7q",
      cause: "Unschedulable",
      message:
        "pod clicks-collector-5d9f7c6b8-x2x7q: Unschedulable: 0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    });
    expect(podProblem([unschedulable("clicks-collector-5d9f7c6b8-x2x7q", true)])).toBeUndefined();
  });

  it("gives an unschedulable pod time for a node to be added before calling it a problem", () => {
    const since = Date.parse(started);
    const pending = [unschedulable("clicks-collector-5d9f7c6b8-x2x7q")];
    expect(podProblem(pending, since + unschedulableGraceMs - 1)).toBeUndefined();
    expect(podProblem(pending, since + unschedulableGraceMs)?.reason).toBe("PodsUnschedulable");
  });

  it("reports an init container before the containers that wait for it", () => {
    const failing = pod("lake-datanode-0", {
      phase: "Pending",
      initContainerStatuses: [
        { ...waiting("CreateContainerConfigError", 'configmap "lake-topology" not found'), name: "wait" },
      ],
      containerStatuses: [waiting("PodInitializing", "")],
    });
    expect(podProblem([failing])?.message).toBe(
      'pod lake-datanode-0, container wait: CreateContainerConfigError: configmap "lake-topology" not found',
    );
  });

  it("ignores pods on their way out: being deleted, evicted, completed", () => {
    const evicted = pod("clicks-collector-5d9f7c6b8-e", {
      phase: "Failed",
      containerStatuses: [
        { ...running, ready: false, state: { terminated: { exitCode: 137, reason: "OOMKilled" } } },
      ],
    });
    (evicted.status as Record<string, unknown>).reason = "Evicted";
    const deleting = pod(
      "clicks-collector-5d9f7c6b8-a",
      { conditions: conditions(false), containerStatuses: [waiting("CrashLoopBackOff", "back-off 5m0s")] },
      { deleting: true },
    );
    expect(podProblem([evicted, deleting, healthy("clicks-collector-5d9f7c6b8-b")])).toBeUndefined();
  });

  it("takes pods by name, so the message stays on one pod, and counts the others", () => {
    const problem = podProblem([
      crashLooping("clicks-collector-5d9f7c6b8-zz"),
      healthy("clicks-collector-5d9f7c6b8-aa"),
      unschedulable("clicks-collector-5d9f7c6b8-mm"),
      crashLooping("clicks-collector-5d9f7c6b8-bb"),
    ]);
    expect(problem?.pod).toBe("clicks-collector-5d9f7c6b8-bb");
    expect(problem?.message).toMatch(
      /^pod clicks-collector-5d9f7c6b8-bb, container collector: CrashLoopBackOff: /,
    );
    expect(problem?.message).toMatch(/; 2 more pods failing$/);
  });
});

describe("podHealthFingerprint", () => {
  it("changes when a container starts or stops waiting, not when the back-off message counts up", () => {
    const first = crashLooping("clicks-collector-5d9f7c6b8-x2x7q");
    const later = structuredClone(first);
    const status = later.status as { containerStatuses: { state: { waiting: { message: string } } }[] };
    status.containerStatuses[0]!.state.waiting.message = "back-off 1m20s restarting failed container";
    expect(podHealthFingerprint(later)).toEqual(podHealthFingerprint(first));
    expect(podHealthFingerprint(healthy("clicks-collector-5d9f7c6b8-x2x7q"))).not.toEqual(
      podHealthFingerprint(first),
    );
    expect(podHealthFingerprint(unschedulable("clicks-collector-5d9f7c6b8-x2x7q"))).not.toEqual(
      podHealthFingerprint(pod("clicks-collector-5d9f7c6b8-x2x7q", { phase: "Pending" })),
    );
  });
});

describe("podWatch", () => {
  const topic = (name: string): KubeObject => ({
    apiVersion: "tributary.dev/v1alpha1",
    kind: "Topic",
    metadata: { name, namespace: "web" },
  });

  it("watches only the kind's generated pods and wakes the resource their instance label names", () => {
    const watch = podWatch("Topic");
    expect(watch.labelSelector).toBe("app.kubernetes.io/managed-by=tributary,app.kubernetes.io/name=topic");
    const failing = crashLooping("clicks-collector-5d9f7c6b8-x2x7q");
    expect(watch.map(failing, () => [topic("views"), topic("clicks")])).toEqual(["web/clicks"]);
    expect(watch.map(failing, () => [topic("views")])).toEqual([]);
  });

  it("fingerprints the pod's health and what else the controller reads of it", () => {
    const watch = podWatch("BlockPool", (pod) => (pod.spec as { nodeName?: string }).nodeName);
    const onA = healthy("lake-datanode-0");
    const onB = structuredClone(onA);
    (onB.spec as { nodeName: string }).nodeName = "node-b";
    expect(watch.fingerprint!(onA)).not.toEqual(watch.fingerprint!(onB));
  });
});

describe("withPodProblem", () => {
  const waitingForPods: Health = {
    ready: { status: "False", reason: "WaitingForChildren", message: "waiting for collectors 1/2 ready" },
    progressing: {
      status: "True",
      reason: "WaitingForChildren",
      message: "waiting for collectors 1/2 ready",
    },
    degraded: { status: "False", reason: "Reconciling", message: "" },
  };
  const problem = podProblem([crashLooping("clicks-collector-5d9f7c6b8-x2x7q")])!;

  it("turns a rollout that waits for a failing pod Degraded, and no longer Progressing", () => {
    expect(withPodProblem(waitingForPods, problem)).toEqual({
      ready: { status: "False", reason: "PodsFailing", message: problem.message },
      progressing: {
        status: "False",
        reason: "PodsFailing",
        message: `the rollout cannot finish: ${problem.message}`,
      },
      degraded: { status: "True", reason: "PodsFailing", message: problem.message },
    });
  });

  it("returns the health unchanged without a problem", () => {
    expect(withPodProblem(waitingForPods, undefined)).toBe(waitingForPods);
  });

  it("keeps a Degraded the resource already reports, and conditions that wait on something else", () => {
    const missing: Health = {
      ready: { status: "False", reason: "MissingBlocks", message: "1 block missing" },
      progressing: { status: "True", reason: "Decommissioning", message: "decommissioning lake-datanode-3" },
      degraded: { status: "True", reason: "MissingBlocks", message: "1 block missing" },
    };
    expect(withPodProblem(missing, problem)).toEqual(missing);
  });
});
