/**
 * A Topic's health from its Deployments and its pods: pure.
 */
import { describe, expect, it } from "vitest";
import { podProblem } from "../../src/controllers/podHealth.js";
import { deploymentState, topicHealth } from "../../src/controllers/topic/status.js";
import type { KubeObject } from "../../src/operator/kube.js";

const deployment = (status: Record<string, number>): KubeObject => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "clicks-collector", namespace: "web", generation: 2 },
  status: { observedGeneration: 2, ...status },
});

/** A rollout to a new image: one new pod cannot start, the two old ones still serve. */
const rollingOut = deploymentState(
  "collectors",
  2,
  deployment({ replicas: 3, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2 }),
);
const settled = deploymentState(
  "collectors",
  2,
  deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 }),
);

const newPod: KubeObject = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name: "clicks-collector-7c9b5d4f6-q8j2m",
    namespace: "web",
    labels: { "app.kubernetes.io/name": "topic", "app.kubernetes.io/instance": "clicks" },
  },
  spec: { containers: [{ name: "collector", image: "registry.example/tributary:0.3.0" }] },
  status: {
    phase: "Running",
    conditions: [
      { type: "PodScheduled", status: "True" },
      { type: "Ready", status: "False", reason: "ContainersNotReady" },
    ],
    containerStatuses: [
      {
        name: "collector",
        ready: false,
        restartCount: 5,
        state: {
          waiting: {
            reason: "CrashLoopBackOff",
            message:
              "back-off 2m40s restarting failed container=collector pod=clicks-collector-7c9b5d4f6-q8j2m_web(8d1e)",
          },
        },
        lastState: { terminated: { exitCode: 1, reason: "Error" } },
      },
    ],
  },
};
const message =
  "pod clicks-collector-7c9b5d4f6-q8j2m, container collector: CrashLoopBackOff: back-off 2m40s restarting failed container=collector pod=clicks-collector-7c9b5d4f6-q8j2m_web(8d1e) (last exit 1)";

describe("Topic health", () => {
  it("a rollout waiting for its pods: Progressing, not Degraded", () => {
    const health = topicHealth([], [rollingOut], false, podProblem([]));
    expect(health.ready).toMatchObject({ status: "False", reason: "WaitingForChildren" });
    expect(health.ready.message).toBe("the Kafka topic matches; waiting for collectors 2/2 ready");
    expect(health.progressing).toMatchObject({ status: "True", reason: "WaitingForChildren" });
    expect(health.degraded.status).toBe("False");
  });

  it("a collector pod in CrashLoopBackOff: Degraded PodsFailing with the pod's words, no longer Progressing", () => {
    const health = topicHealth([], [rollingOut], false, podProblem([newPod]));
    expect(health).toEqual({
      ready: { status: "False", reason: "PodsFailing", message },
      progressing: {
        status: "False",
        reason: "PodsFailing",
        message: `the rollout cannot finish: ${message}`,
      },
      degraded: { status: "True", reason: "PodsFailing", message },
    });
  });

  it("recovered: Degraded False, Ready as the Deployments say", () => {
    const health = topicHealth([], [settled], false, podProblem([]));
    expect(health.ready).toMatchObject({ status: "True", reason: "Reconciled" });
    expect(health.ready.message).toBe("the Kafka topic matches the spec; 2/2 collectors");
    expect(health.degraded).toMatchObject({ status: "False", reason: "Reconciled" });
  });

  it("a problem of the Topic itself comes before its pods'", () => {
    const health = topicHealth(
      [{ reason: "PartitionsCannotShrink", message: "spec.partitions is 3 but Kafka topic clicks has 6" }],
      [rollingOut],
      false,
      podProblem([newPod]),
    );
    expect(health.degraded).toMatchObject({ status: "True", reason: "PartitionsCannotShrink" });
    expect(health.ready.reason).toBe("PartitionsCannotShrink");
  });
});
