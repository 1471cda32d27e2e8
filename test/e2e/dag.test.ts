/**
 * A Dag on a real node: `helm install` with the test environment's Redis as the default for Dags,
 * a Dag applied with kubectl whose schedule is due at once, its scheduler and worker pods Ready,
 * and the scheduled run carried to success through a task run in the worker, one run as a
 * Kubernetes Job the worker creates (from the project's image), and one after it; the run's
 * tree read with `tributary dag` from the scheduler's pod.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../integration/operator-harness.js";
import { testEnv, uniqueName } from "../support/env.js";
import {
  e2eCluster,
  installChart,
  kubectl,
  kubectlJson,
  pods,
  uninstallChart,
  uniqueRelease,
} from "./cluster.js";

const release = uniqueRelease("tributary-dag");
const operatorNamespace = uniqueName("e2e-dag-operator");
const namespace = uniqueName("e2e-dag");

/** The test environment's Redis at the node's address, where pods reach it. */
function podRedisUrl(): string {
  const nodeIp = e2eCluster().podKafkaBrokers[0]!.split(":")[0]!;
  const url = new URL(testEnv().redisUrl);
  url.hostname = nodeIp;
  return url.toString().replace(/\/$/, "");
}

const install = { release, namespace: operatorNamespace, watch: namespace };

beforeAll(async () => {
  await installChart({ ...install, set: [`dag.redisUrl=${podRedisUrl()}`] });
}, 600_000);

afterAll(() => uninstallChart(install), 600_000);

interface DagStatus {
  lastRunId?: string;
  lastRunState?: string;
  conditions?: { type: string; status: string; reason: string; message: string }[];
}

describe("a Dag on the node", () => {
  it("runs its scheduled run to success through worker pods and a Kubernetes Job", async () => {
    const small = { requests: { cpu: "20m", memory: "64Mi" }, limits: { memory: "512Mi" } };
    const startDate = new Date(Date.UTC(new Date().getUTCFullYear() - 2, 0, 1));
    await kubectl(
      ["apply", "--server-side", "-n", namespace, "-f", "-"],
      JSON.stringify({
        apiVersion: "tributary.dev/v1alpha1",
        kind: "Dag",
        metadata: { name: "etl" },
        spec: {
          // Yearly from two years ago, without catch-up: the latest interval runs at once, and
          // no other run starts beside it or after it to change the Dag's last run.
          schedule: "0 0 1 1 *",
          startDate: startDate.toISOString().replace(/\.\d{3}Z$/, "Z"),
          catchup: false,
          maxActiveRuns: 1,
          tasks: [
            { id: "extract", command: ["sh", "-c", "echo extracted rows for $TRIBUTARY_DS"] },
            {
              id: "transform",
              runAs: "job",
              image: e2eCluster().image,
              command: ["node", "-e", "console.log('transformed in a Job')"],
              resources: small,
              dependsOn: ["extract"],
            },
            { id: "load", command: ["sh", "-c", "echo loaded"], dependsOn: ["transform"] },
          ],
          scheduler: { resources: small },
          workers: { replicas: 1, concurrency: 2, resources: small },
          deletionPolicy: "Delete",
        },
      }),
    );
    const describeState = async () => {
      const dag = await kubectlJson<{ status?: DagStatus }>(["get", "dag", "etl", "-n", namespace]).catch(
        () => ({}) as { status?: DagStatus },
      );
      const seen = await pods(namespace, "").catch(() => []);
      return `${JSON.stringify(dag.status)}\n${seen
        .map(
          (pod) =>
            `${pod.metadata.name}: ${pod.status?.phase} ${JSON.stringify(pod.status?.containerStatuses?.map((c) => c.state))}`,
        )
        .join("\n")}`;
    };
    try {
      await kubectl(["wait", "-n", namespace, "dag/etl", "--for=condition=Ready", "--timeout=300s"]);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await describeState()}`);
    }
    const finished = await waitFor(
      "the scheduled run's success in the Dag's status",
      async () => {
        const dag = await kubectlJson<{ status?: DagStatus }>(["get", "dag", "etl", "-n", namespace]);
        if (dag.status?.lastRunState === "failed")
          throw new Error(`the run failed: ${await describeState()}`);
        return dag.status?.lastRunState === "success" ? dag.status : undefined;
      },
      { timeoutMs: 300_000, intervalMs: 2_000 },
    ).catch(async (error: Error) => {
      throw new Error(`${error.message}\n${await describeState()}`);
    });
    expect(finished.lastRunId).toMatch(/^scheduled__/);

    // The transform task ran as a Job of the project's image, created by the worker.
    const jobs = await kubectlJson<{
      items: { metadata: { name: string }; status?: { succeeded?: number } }[];
    }>(["get", "jobs", "-n", namespace, "-l", "tributary.dev/dag=etl"]);
    expect(jobs.items.length).toBeGreaterThanOrEqual(1);
    expect(jobs.items.some((job) => job.status?.succeeded === 1)).toBe(true);

    // The run's tree, as an operator reads it with the CLI from the scheduler's pod.
    const [scheduler] = await pods(namespace, "app.kubernetes.io/component=scheduler");
    expect(scheduler).toBeDefined();
    const tree = await kubectl([
      "exec",
      "-n",
      namespace,
      scheduler!.metadata.name,
      "--",
      "tributary",
      "dag",
      "tree",
      finished.lastRunId!,
      "--redis-url",
      podRedisUrl(),
      "--namespace",
      namespace,
      "--dag",
      "etl",
    ]);
    expect(tree).toMatch(/extract.*success/);
    expect(tree).toMatch(/transform.*success/);
    expect(tree).toMatch(/load.*success/);
  });
});
