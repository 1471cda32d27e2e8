import { describe, expect, it } from "vitest";
import { dagDefinition } from "../../src/api/dag.js";
import { desiredChildren, workerHeapMiB } from "../../src/controllers/dag/build.js";
import { dagHealth } from "../../src/controllers/dag/reconcile.js";
import { validateDag } from "../../src/controllers/dag/validate.js";
import { secretEnvName } from "../../src/dataplane/dag/worker.js";
import type { KubeObject } from "../../src/operator/kube.js";

const resource = (spec: Record<string, unknown>): KubeObject => ({
  apiVersion: dagDefinition.apiVersion,
  kind: "Dag",
  metadata: {
    name: "etl",
    namespace: "data",
    uid: "u-1",
    generation: 1,
    creationTimestamp: "2026-01-01T00:00:00Z",
  },
  spec,
});

function build(spec: Record<string, unknown>) {
  const parsed = dagDefinition.spec.parse(spec);
  return desiredChildren({
    resource: resource(spec),
    spec: parsed,
    image: "tributary:1",
    redisUrl: "redis://redis:6379",
  });
}

type Container = {
  name: string;
  args: string[];
  env: { name: string; value?: string; valueFrom?: unknown }[];
};
function containerOf(deployment: KubeObject | undefined): Container {
  if (!deployment) throw new Error("no such Deployment");
  return (deployment.spec as { template: { spec: { containers: Container[] } } }).template.spec
    .containers[0]!;
}

describe("Dag build", () => {
  it("makes the spec ConfigMap, the scheduler with its Service, and restricted workers without an API token", () => {
    const children = build({
      tasks: [{ id: "a", command: ["true"] }],
      workers: { replicas: 3, concurrency: 2 },
    });
    expect(children.map((child) => `${child.kind}/${child.metadata.name}`)).toEqual([
      "ConfigMap/etl-dag-spec",
      "Service/etl-scheduler",
      "Deployment/etl-scheduler",
      "Deployment/etl-workers",
    ]);
    const workers = children.find((child) => child.metadata.name === "etl-workers")!;
    const pod = workers.spec as { replicas: number; template: { spec: Record<string, unknown> } };
    expect(pod.replicas).toBe(3);
    expect(pod.template.spec.automountServiceAccountToken).toBe(false);
    const env = containerOf(workers).env;
    expect(env).toContainEqual({ name: "TRIBUTARY_WORKER_CONCURRENCY", value: "2" });
    expect(env).toContainEqual({ name: "TRIBUTARY_WORKER_JOBS", value: "false" });
    expect(env).toContainEqual({ name: "NODE_OPTIONS", value: "--max-old-space-size=256" });
    const scheduler = children.find(
      (child) => child.kind === "Deployment" && child.metadata.name === "etl-scheduler",
    )!;
    expect(containerOf(scheduler).args).toEqual(["dag-scheduler"]);
    expect(containerOf(scheduler).env).toContainEqual({
      name: "TRIBUTARY_DAG_SCHEDULER_KEY_PREFIX",
      value: "tributary:data:etl:",
    });
  });

  it("adds the Job RBAC only when a task runs as a Job, and mounts worker tasks' Secrets under hashed names", () => {
    const children = build({
      tasks: [
        {
          id: "a",
          command: ["run"],
          env: [{ name: "PASSWORD", secretKeyRef: { name: "db", key: "password" } }],
        },
        { id: "b", image: "example/job:1", dependsOn: ["a"] },
      ],
    });
    expect(children.map((child) => child.kind)).toContain("Role");
    expect(children.map((child) => child.kind)).toContain("RoleBinding");
    const env = containerOf(
      children.find((child) => child.kind === "Deployment" && child.metadata.name === "etl-workers"),
    ).env;
    expect(env).toContainEqual({
      name: secretEnvName("db", "password"),
      valueFrom: { secretKeyRef: { name: "db", key: "password" } },
    });
  });

  it("sizes the workers' heap from their memory limit and scales to zero when stopped", () => {
    expect(
      workerHeapMiB(
        dagDefinition.spec.parse({
          tasks: [{ id: "a", command: ["x"] }],
          workers: { resources: { limits: { memory: "1Gi" } } },
        }),
      ),
    ).toBe(768);
    const children = build({ tasks: [{ id: "a", command: ["true"] }], clusterOperation: { stopped: true } });
    for (const child of children.filter((each) => each.kind === "Deployment")) {
      expect((child.spec as { replicas: number }).replicas).toBe(0);
    }
  });

  it("refuses duplicate ids, unknown pools and queues no worker consumes, naming the task", () => {
    const spec = dagDefinition.spec.parse({
      tasks: [
        { id: "a", command: ["true"], queue: "heavy" },
        { id: "a", command: ["true"], pool: "warehouse" },
      ],
    });
    const messages = validateDag(spec).map((problem) => problem.message);
    expect(messages).toEqual([
      expect.stringContaining("spec.tasks[1]: the id 'a' is used by an earlier task"),
      expect.stringContaining("spec.tasks[0] (a) is sent to queue 'heavy', which no worker consumes"),
      expect.stringContaining("spec.tasks[1] (a) names pool 'warehouse'"),
    ]);
  });

  it("is Ready only when the scheduler and every worker are", () => {
    const summary = { runs: { queued: 0, running: 0, success: 1, failed: 0 }, failingTasks: [] };
    const settled = { ready: 1, desired: 1, settled: true };
    expect(dagHealth(settled, { ready: 1, desired: 2, settled: false }, false, summary).ready).toMatchObject({
      status: "False",
      message: "waiting for workers (1/2 ready)",
    });
    expect(dagHealth(settled, { ready: 2, desired: 2, settled: true }, false, summary).ready.status).toBe(
      "True",
    );
    const failed = dagHealth(settled, settled, false, {
      ...summary,
      lastRun: { id: "r1", logicalDate: "2026-01-01T00:00:00Z", state: "failed" },
      failingTasks: [{ runId: "r1", taskId: "load", state: "failed", try: 2, error: "exit 1" }],
    });
    expect(failed.degraded).toMatchObject({ status: "True", reason: "RunFailed" });
    expect(failed.degraded.message).toContain("load (r1, try 2): exit 1");
  });
});
