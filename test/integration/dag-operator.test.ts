/**
 * The Dag controller against the real API server: a cyclic Dag refused naming the cycle; a valid
 * one gets its scheduler and workers (restricted pods, Job RBAC only when a task runs as a Job),
 * is Ready only once both are ready, and shows the scheduler's run state in its status. The
 * scheduler is a real one on loopback against the real Redis, reached as the pod would be.
 */
import amqplib from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockPoolDefinition } from "../../src/api/blockpool.js";
import { dagDefinition } from "../../src/api/dag.js";
import { yarnQueueDefinition } from "../../src/api/yarnqueue.js";
import { resourceType } from "../../src/controllers/common.js";
import { createDagController } from "../../src/controllers/dag/reconcile.js";
import { openTaskQueue } from "../../src/dataplane/dag/queue.js";
import { type SchedulerService, startSchedulerService } from "../../src/dataplane/dag/schedulerMain.js";
import { connectRedis, DagStore, defaultKeyPrefix } from "../../src/dataplane/dag/store.js";
import { DagWorker } from "../../src/dataplane/dag/worker.js";
import { createLogger } from "../../src/log.js";
import { builtin, type KubeObject } from "../../src/operator/kube.js";
import type { Operator } from "../../src/operator/operator.js";
import { testEnv, uniqueName } from "../support/env.js";
import { dagSpec, rabbitmqUrl } from "./dag-cluster.js";
import {
  applyCrds,
  condition,
  createNamespace,
  deleteNamespace,
  deleteTributaryResources,
  playKubelet,
  startOperator,
  testClient,
  waitFor,
} from "./operator-harness.js";

const dags = resourceType(dagDefinition);
const roles = { group: "rbac.authorization.k8s.io", version: "v1", kind: "Role", plural: "roles" };

describe("Dag controller", () => {
  const client = testClient();
  const namespace = uniqueName("dag-operator");
  const log = createLogger("dag-operator-test");
  log.level = "warn";
  let operator: Operator;
  let schedulerPort = 0;

  beforeAll(async () => {
    await applyCrds(client);
    await createNamespace(client, namespace);
    operator = await startOperator("dag-operator", namespace, [
      createDagController({
        defaultRedisUrl: testEnv().redisUrl,
        schedulerUrl: () => `http://127.0.0.1:${schedulerPort}`,
        refreshMs: 500,
      }),
    ]);
  });

  afterAll(async () => {
    await deleteTributaryResources(client, namespace);
    await operator.stop();
    await deleteNamespace(client, namespace);
  });

  it("refuses a cycle naming it, and duplicate ids at the door", async () => {
    await client.create(dags, {
      apiVersion: dagDefinition.apiVersion,
      kind: "Dag",
      metadata: { name: "cyclic", namespace },
      spec: {
        tasks: [
          { id: "extract", command: ["true"], dependsOn: ["load"] },
          { id: "transform", command: ["true"], dependsOn: ["extract"] },
          { id: "load", command: ["true"], dependsOn: ["transform"] },
        ],
      },
    });
    const degraded = await waitFor("DagCycle", async () => {
      const current = await client.get(dags, namespace, "cyclic");
      return condition(current, "Degraded")?.reason === "DagCycle" ? current : undefined;
    });
    expect(condition(degraded, "Degraded")?.message).toMatch(
      /cycle (extract|transform|load) -> (extract|transform|load) -> (extract|transform|load) -> (extract|transform|load)/,
    );
    // Nothing runs for it.
    expect(await client.find(builtin.deployment, namespace, "cyclic-scheduler")).toBeUndefined();
    await expect(
      client.create(dags, {
        apiVersion: dagDefinition.apiVersion,
        kind: "Dag",
        metadata: { name: "twice", namespace },
        spec: {
          tasks: [
            { id: "a", command: ["true"] },
            { id: "a", command: ["false"] },
          ],
        },
      }),
    ).rejects.toThrow(/Duplicate value/);
    await expect(
      client.create(dags, {
        apiVersion: dagDefinition.apiVersion,
        kind: "Dag",
        metadata: { name: "two-actions", namespace },
        spec: { tasks: [{ id: "a", command: ["true"], http: { url: "http://example.invalid/" } }] },
      }),
    ).rejects.toThrow(/one action/);
  });

  it("runs the scheduler and workers, Ready only when both are, with run state in status", async () => {
    const name = "nightly";
    const spec = {
      tasks: [
        { id: "extract", command: ["true"] },
        { id: "report", dependsOn: ["extract"], image: "registry.example/report:1", command: ["report"] },
      ],
      workers: { replicas: 2, concurrency: 2 },
    };
    const created = await client.create(dags, {
      apiVersion: dagDefinition.apiVersion,
      kind: "Dag",
      metadata: { name, namespace },
      spec,
    });
    const scheduler = await waitFor("the scheduler Deployment", () =>
      client.find(builtin.deployment, namespace, `${name}-scheduler`),
    );
    const workers = await waitFor("the worker Deployment", () =>
      client.find(builtin.deployment, namespace, `${name}-workers`),
    );
    const workerPod = (workers.spec as { template: { spec: Record<string, unknown> } }).template.spec;
    expect(workerPod.serviceAccountName).toBe(`${name}-workers`);
    expect(workerPod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: "RuntimeDefault" },
    });
    const container = (
      workerPod.containers as { args: string[]; env: { name: string; value?: string }[] }[]
    )[0]!;
    expect(container.args).toEqual(["worker"]);
    expect(container.env).toContainEqual({ name: "TRIBUTARY_WORKER_JOBS", value: "true" });
    expect(container.env).toContainEqual({
      name: "TRIBUTARY_WORKER_KEY_PREFIX",
      value: defaultKeyPrefix(namespace, name),
    });
    const role = await waitFor("the workers' Role", () => client.find(roles, namespace, `${name}-workers`));
    expect(JSON.stringify(role.rules)).toContain("jobs");
    expect((scheduler.spec as { strategy: { type: string } }).strategy.type).toBe("Recreate");

    // Pods pending: not Ready.
    const waiting = await waitFor("Ready False while pods wait", async () => {
      const current = await client.get(dags, namespace, name);
      return condition(current, "Ready")?.reason === "WaitingForChildren" ? current : undefined;
    });
    expect(condition(waiting, "Ready")?.status).toBe("False");

    // The scheduler the pod would run, on loopback, with the Dag's spec and key prefix.
    const prefix = defaultKeyPrefix(namespace, name);
    const parsed = dagSpec(spec);
    let service: SchedulerService | undefined;
    const redis = connectRedis(testEnv().redisUrl);
    const store = new DagStore(redis, prefix);
    const queue = await openTaskQueue({ backend: "redis", prefix, redisUrl: testEnv().redisUrl, log });
    const worker = new DagWorker({
      store,
      queue,
      queues: ["default"],
      concurrency: 2,
      identity: "worker-test",
      log,
      heartbeatMs: 500,
      heartbeatTtlMs: 1500,
      maxResultBytes: 1024,
      logLinesPerTry: 100,
    });
    try {
      service = await startSchedulerService(
        {
          redisUrl: testEnv().redisUrl,
          keyPrefix: prefix,
          queueBackend: "redis",
          identity: "nightly-scheduler-0",
          port: 0,
          heartbeatSeconds: 1,
          specFile: "-",
          dag: name,
          tickMs: 200,
          requeueAfterSeconds: 300,
        },
        parsed,
        log,
      );
      schedulerPort = service.port;
      await worker.start();
      // A manual run: extract succeeds; report runs as a Job, which this worker cannot start (no cluster access).
      await store.request({ type: "trigger", runId: "manual__first", params: {} });
      await waitFor("the run to end", async () => {
        const record = await store.readRun("manual__first");
        return record && (record.run.state === "failed" || record.run.state === "success");
      });
      const ready = await waitFor("Ready with run state", async () => {
        // Inside the wait: a pod the ReplicaSet creates late is marked running too.
        await playKubelet(client, namespace, `app.kubernetes.io/instance=${name}`);
        const current = await client.get(dags, namespace, name);
        const status = current.status as Record<string, unknown> | undefined;
        return condition(current, "Ready")?.status === "True" && status?.lastRunId === "manual__first"
          ? current
          : undefined;
      });
      const status = ready.status as Record<string, unknown>;
      expect(status).toMatchObject({
        lastRunId: "manual__first",
        lastRunState: "failed",
        runs: { queued: 0, running: 0, success: 0, failed: 1 },
        scheduler: expect.stringContaining("nightly-scheduler-0"),
        tasks: 2,
      });
      expect(status.failingTasks).toEqual([
        expect.objectContaining({ taskId: "report", runId: "manual__first", state: "failed" }),
      ]);
      expect(condition(ready, "Degraded")).toMatchObject({ status: "True", reason: "RunFailed" });
      expect(condition(ready, "Ready")?.observedGeneration).toBe(created.metadata.generation);
    } finally {
      await worker.stop();
      await service?.stop();
      await store.deleteAll();
      redis.disconnect();
    }
  });

  it("removes the Job RBAC when no task runs as a Job any more", async () => {
    const name = "nightly";
    await client.mergePatch(dags, namespace, name, {
      spec: { tasks: [{ id: "extract", command: ["true"] }] },
    });
    await waitFor("the workers' Role pruned", async () =>
      (await client.find(roles, namespace, `${name}-workers`)) === undefined ? true : undefined,
    );
    const workers = (await client.get(builtin.deployment, namespace, `${name}-workers`)) as KubeObject;
    expect(
      (workers.spec as { template: { spec: Record<string, unknown> } }).template.spec.serviceAccountName,
    ).toBe("default");
  });

  it("tells the workers where the YarnQueues and BlockPools its platform tasks name are", async () => {
    const yarnQueues = resourceType(yarnQueueDefinition);
    const blockPools = resourceType(blockPoolDefinition);
    await client.create(yarnQueues, {
      apiVersion: "tributary.dev/v1alpha1",
      kind: "YarnQueue",
      metadata: { name: "batch-root", namespace },
      spec: { cluster: "batch", root: {} },
    });
    await client.create(yarnQueues, {
      apiVersion: "tributary.dev/v1alpha1",
      kind: "YarnQueue",
      metadata: { name: "etl", namespace },
      spec: { cluster: "batch", parent: "batch-root", capacity: 100 },
    });
    await client.create(blockPools, {
      apiVersion: "tributary.dev/v1alpha1",
      kind: "BlockPool",
      metadata: { name: "lake", namespace },
      spec: { webHdfs: { port: 14000 } },
    });
    const name = "platform";
    await client.create(dags, {
      apiVersion: "tributary.dev/v1alpha1",
      kind: "Dag",
      metadata: { name, namespace },
      spec: {
        tasks: [
          { id: "landed", platform: { waitForFile: { blockPool: "lake", path: "/in/_SUCCESS" } } },
          {
            id: "aggregate",
            dependsOn: ["landed"],
            platform: { yarnApplication: { queue: "etl", command: ["true"] } },
          },
        ],
      },
    });
    const workers = await waitFor("the workers' Deployment", () =>
      client.find(builtin.deployment, namespace, `${name}-workers`),
    );
    const template = (
      workers.spec as {
        template: {
          metadata: { labels: Record<string, string> };
          spec: { containers: { env: { name: string; value?: string }[] }[] };
        };
      }
    ).template;
    const env = Object.fromEntries(
      template.spec.containers[0]!.env.map((variable) => [variable.name, variable.value]),
    );
    expect(JSON.parse(env.TRIBUTARY_WORKER_RESOURCE_MANAGERS!)).toEqual({
      "batch-root": `batch-root-resourcemanager.${namespace}.svc:8088`,
      etl: `batch-root-resourcemanager.${namespace}.svc:8088`,
    });
    expect(JSON.parse(env.TRIBUTARY_WORKER_BLOCK_POOLS!)).toEqual({ lake: `lake.${namespace}.svc:14000` });
    // The pool's NetworkPolicy admits them.
    expect(template.metadata.labels["tributary.dev/blockpool-client"]).toBe("lake");
    await client.delete(dags, namespace, name);
  });

  it.skipIf(!rabbitmqUrl())("removes the Dag's RabbitMQ queues when it is deleted", async () => {
    const name = "rabbit-fed";
    const url = rabbitmqUrl()!;
    await client.create(dags, {
      apiVersion: "tributary.dev/v1alpha1",
      kind: "Dag",
      metadata: { name, namespace },
      spec: {
        queueBackend: "rabbitmq",
        rabbitmq: { url },
        workers: { queues: ["default", "heavy"] },
        tasks: [
          { id: "extract", command: ["true"] },
          { id: "load", command: ["true"], queue: "heavy", dependsOn: ["extract"] },
        ],
      },
    });
    await waitFor("the workers' Deployment", () =>
      client.find(builtin.deployment, namespace, `${name}-workers`),
    );
    // The queues as the scheduler and workers declare them, with a message left in one.
    const queue = await openTaskQueue({
      backend: "rabbitmq",
      prefix: defaultKeyPrefix(namespace, name),
      redisUrl: testEnv().redisUrl,
      rabbitmqUrl: url,
      log,
    });
    await queue.send("heavy", { left: true }, "left-behind");
    await queue.send("default", { left: true }, "left-behind");
    await queue.close();
    const connection = await amqplib.connect(url);
    try {
      const exists = async (queueName: string) => {
        const channel = await connection.createChannel();
        channel.on("error", () => {});
        try {
          await channel.checkQueue(queueName);
          await channel.close();
          return true;
        } catch {
          return false; // 404 NOT_FOUND closes the channel
        }
      };
      const names = ["default", "heavy"].map((q) => `${defaultKeyPrefix(namespace, name)}${q}`);
      for (const queueName of names) expect(await exists(queueName)).toBe(true);
      await client.delete(dags, namespace, name);
      await waitFor("the Dag's queues gone from RabbitMQ", async () => {
        for (const queueName of names) if (await exists(queueName)) return undefined;
        return true;
      });
    } finally {
      await connection.close();
    }
  });

  it("removes the Dag's state from Redis when it is deleted (deletionPolicy Delete)", async () => {
    const name = "nightly";
    const redis = connectRedis(testEnv().redisUrl);
    const store = new DagStore(redis, defaultKeyPrefix(namespace, name));
    try {
      await store.request({ type: "trigger", runId: "manual__left", params: {} });
      await client.delete(dags, namespace, name);
      await waitFor("the Dag's keys gone", async () =>
        (await redis.exists(store.keys.requests)) === 0 ? true : undefined,
      );
    } finally {
      await store.deleteAll();
      redis.disconnect();
    }
  });
});
