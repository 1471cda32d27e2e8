/**
 * The operator against the real kube-apiserver and kube-controller-manager of the test
 * environment: BlockPool children, drift repair, spec changes, pause/stop, failures with
 * backoff and events, finalizers, garbage collection, probes and metrics. The operator runs
 * in-process, watching only this file's namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockPoolDefinition } from "../../src/api/blockpool.js";
import { dagDefinition } from "../../src/api/dag.js";
import { yarnQueueDefinition } from "../../src/api/yarnqueue.js";
import { resourceType } from "../../src/controllers/common.js";
import { createControllers } from "../../src/controllers/index.js";
import { createLogger } from "../../src/log.js";
import { finalizerName } from "../../src/operator/finalizer.js";
import { builtin, type KubeObject } from "../../src/operator/kube.js";
import { Operator } from "../../src/operator/operator.js";
import { testEnv, uniqueName } from "../support/env.js";
import {
  applyCrds,
  condition,
  createNamespace,
  deleteNamespace,
  deleteTributaryResources,
  isSettled,
  playKubelet,
  testClient,
  waitFor,
} from "./operator-harness.js";

const client = testClient();
const namespace = uniqueName("op-it");
const blockPools = resourceType(blockPoolDefinition);
const dags = resourceType(dagDefinition);
const yarnQueues = resourceType(yarnQueueDefinition);
const cleanups: string[] = [];
let operator: Operator;

const pool = (name: string, spec: Record<string, unknown> = {}): KubeObject => ({
  apiVersion: blockPoolDefinition.apiVersion,
  kind: "BlockPool",
  metadata: { name, namespace },
  spec,
});

const getPool = (name: string) => client.get(blockPools, namespace, name);
const statefulSet = (name: string) => client.find(builtin.statefulSet, namespace, name);
const replicasOf = (object: KubeObject | undefined) =>
  (object?.spec as { replicas?: number } | undefined)?.replicas;

/**
 * Creates a BlockPool of its own for one test and waits until the operator has applied its
 * children (both StatefulSets and the client Service), so no test depends on another's pool.
 */
async function createPoolWithChildren(name: string, spec: Record<string, unknown> = {}): Promise<KubeObject> {
  await client.create(blockPools, pool(name, spec));
  await waitFor(`${name}'s StatefulSets and Service`, async () => {
    const [nameNodes, dataNodes, service] = await Promise.all([
      statefulSet(`${name}-namenode`),
      statefulSet(`${name}-datanode`),
      client.find(builtin.service, namespace, name),
    ]);
    return nameNodes && dataNodes && service;
  });
  return getPool(name);
}

beforeAll(async () => {
  await applyCrds(client);
  await createNamespace(client, namespace);
  operator = new Operator({
    client: testClient(),
    log: createLogger("operator-test"),
    image: "registry.example/tributary:test",
    namespaces: [namespace],
    // Recorded so the deletion test sees that the finalizer's cleanup really ran.
    controllers: createControllers({ dagRedisUrl: testEnv().redisUrl }).map((definition) =>
      definition.type.kind === "BlockPool"
        ? {
            ...definition,
            cleanup: async (resource, context) => {
              cleanups.push(resource.metadata.name);
              await definition.cleanup?.(resource, context);
            },
          }
        : definition,
    ),
    healthPort: 0,
    // A short cap keeps retries of the failure test quick; the backoff still doubles.
    baseBackoffMs: 100,
    maxBackoffMs: 2_000,
    defaultMetrics: false,
  });
  await operator.start();
  await operator.whenSynced();
});

afterAll(async () => {
  await deleteTributaryResources(client, namespace);
  await operator?.stop();
  await deleteNamespace(client, namespace);
  client.close();
});

describe("BlockPool through the operator", () => {
  it("creates owned children, reports Progressing, then Ready once the pods are ready", async () => {
    await client.create(blockPools, pool("lake"));
    const nameNodes = await waitFor("name-node StatefulSet", () => statefulSet("lake-namenode"));
    const dataNodes = await waitFor("data-node StatefulSet", () => statefulSet("lake-datanode"));
    const stored = await getPool("lake");
    // One reconcile applies the children one after another: wait for each, not only the first.
    const child = (type: typeof builtin.service, name: string) =>
      waitFor(`${type.kind} ${name}`, () => client.get(type, namespace, name));
    for (const owned of [
      nameNodes,
      dataNodes,
      await child(builtin.service, "lake"),
      await child(builtin.service, "lake-namenode"),
      await child(builtin.podDisruptionBudget, "lake-datanode"),
    ]) {
      expect(owned.metadata.ownerReferences).toEqual([
        expect.objectContaining({
          kind: "BlockPool",
          name: "lake",
          uid: stored.metadata.uid,
          controller: true,
        }),
      ]);
    }
    expect(stored.metadata.finalizers).toContain(finalizerName);
    expect(replicasOf(nameNodes)).toBe(2);
    expect(replicasOf(dataNodes)).toBe(3);
    const container = (
      nameNodes.spec as { template: { spec: { containers: { image: string; command: string[] }[] } } }
    ).template.spec.containers[0]!;
    expect(container.image).toBe("registry.example/tributary:test");
    expect(container.command).toEqual(["tributary", "namenode"]);

    const progressing = await waitFor("Progressing", async () => {
      const current = await getPool("lake");
      return condition(current, "Progressing")?.status === "True" ? current : undefined;
    });
    expect(condition(progressing, "Ready")).toMatchObject({ status: "False", reason: "WaitingForChildren" });
    expect((progressing.status as { observedGeneration?: number }).observedGeneration).toBe(
      progressing.metadata.generation,
    );

    // The kubelet's part (see playKubelet): the StatefulSet controller creates the pods, the
    // test reports them running and ready, the controller counts them, the operator sees it.
    const ready = await waitFor(
      "Ready",
      async () => {
        await playKubelet(client, namespace, "app.kubernetes.io/instance=lake");
        const current = await getPool("lake");
        return condition(current, "Ready")?.status === "True" ? current : undefined;
      },
      { intervalMs: 500 },
    );
    expect(condition(ready, "Ready")?.reason).toBe("ChildrenReady");
    expect(condition(ready, "Progressing")?.status).toBe("False");
    expect(condition(ready, "Degraded")?.status).toBe("False");
    expect((ready.status as { liveDataNodes?: number }).liveDataNodes).toBe(3);
  });

  it("updates children when the spec changes", async () => {
    await createPoolWithChildren("resized");
    expect(replicasOf(await statefulSet("resized-datanode"))).toBe(3);
    await client.mergePatch(blockPools, namespace, "resized", {
      spec: { dataNodes: { replicas: 4, podOverrides: { metadata: { annotations: { team: "lake" } } } } },
    });
    await waitFor(
      "data nodes scaled to 4",
      async () => replicasOf(await statefulSet("resized-datanode")) === 4,
    );
    const dataNodes = await client.get(builtin.statefulSet, namespace, "resized-datanode");
    const template = (dataNodes.spec as { template: { metadata: { annotations?: Record<string, string> } } })
      .template;
    expect(template.metadata.annotations?.team).toBe("lake");
    await waitFor("status follows the new generation", async () => {
      const current = await getPool("resized");
      return condition(current, "Ready")?.observedGeneration === current.metadata.generation;
    });
  });

  it("restores a child edited or deleted by hand", async () => {
    await createPoolWithChildren("edited", { dataNodes: { replicas: 4 } });
    await client.mergePatch(builtin.statefulSet, namespace, "edited-datanode", { spec: { replicas: 1 } });
    await waitFor("hand edit reverted", async () => replicasOf(await statefulSet("edited-datanode")) === 4);
    const before = await client.get(builtin.service, namespace, "edited");
    await client.delete(builtin.service, namespace, "edited");
    await waitFor("client Service recreated", async () => {
      const service = await client.find(builtin.service, namespace, "edited");
      return service && service.metadata.uid !== before.metadata.uid;
    });
  });

  it("ignores the spec while reconciliation is paused but still writes status, and scales to 0 when stopped", async () => {
    await createPoolWithChildren("paused", { dataNodes: { replicas: 4 } });
    await waitFor("4 data nodes", async () => replicasOf(await statefulSet("paused-datanode")) === 4);
    await client.mergePatch(blockPools, namespace, "paused", {
      spec: { clusterOperation: { reconciliationPaused: true }, dataNodes: { replicas: 5 } },
    });
    const paused = await waitFor("paused status", async () => {
      const current = await getPool("paused");
      const progressing = condition(current, "Progressing");
      return progressing?.reason === "ReconciliationPaused" &&
        progressing.observedGeneration === current.metadata.generation
        ? current
        : undefined;
    });
    expect(paused).toBeDefined();
    expect(replicasOf(await statefulSet("paused-datanode"))).toBe(4);

    await client.mergePatch(blockPools, namespace, "paused", {
      spec: { clusterOperation: { reconciliationPaused: false, stopped: true } },
    });
    await waitFor("stopped", async () => {
      const [nameNodes, dataNodes] = await Promise.all([
        statefulSet("paused-namenode"),
        statefulSet("paused-datanode"),
      ]);
      return replicasOf(nameNodes) === 0 && replicasOf(dataNodes) === 0;
    });
    await client.mergePatch(blockPools, namespace, "paused", {
      spec: { clusterOperation: { stopped: false } },
    });
    await waitFor(
      "started again with the paused change applied",
      async () => replicasOf(await statefulSet("paused-datanode")) === 5,
    );
  });

  it("backs off a failing reconcile, reports Degraded with a Warning event, and recovers when fixed", async () => {
    await createPoolWithChildren("failing");
    // A label key the API server refuses: the StatefulSet apply fails on every attempt.
    await client.mergePatch(blockPools, namespace, "failing", {
      spec: { nameNodes: { podOverrides: { metadata: { labels: { "not a valid key!": "x" } } } } },
    });
    const degraded = await waitFor("Degraded", async () => {
      const current = await getPool("failing");
      return condition(current, "Degraded")?.status === "True" ? current : undefined;
    });
    const reported = condition(degraded, "Degraded")!;
    expect(reported.reason).toBe("ReconcileFailed");
    expect(reported.message).toContain(`BlockPool ${namespace}/failing`);
    expect(reported.message).toContain("not a valid key!");
    const controller = operator.controller("BlockPool")!;
    // Retried with growing delays: the failure count keeps climbing while the cause stays.
    await waitFor("several retries", async () => controller.queue.failures(`${namespace}/failing`) >= 3);
    const event = await waitFor("Warning event", async () => {
      const events = await client.list(builtin.event, namespace);
      return events.items.find(
        (item) =>
          item.type === "Warning" &&
          item.reason === "ReconcileFailed" &&
          (item.regarding as { name?: string }).name === "failing" &&
          ((item.series as { count?: number } | undefined)?.count ?? 1) >= 2,
      );
    });
    expect(String(event.note)).toContain("not a valid key!");

    await client.mergePatch(blockPools, namespace, "failing", {
      spec: { nameNodes: { podOverrides: null } },
    });
    await waitFor("recovered", async () => {
      const current = await getPool("failing");
      return (
        condition(current, "Degraded")?.status === "False" &&
        condition(current, "Degraded")?.observedGeneration === current.metadata.generation
      );
    });
    // The success that wrote this status also resets the key's backoff (just after the write).
    await waitFor("backoff reset", async () => controller.queue.failures(`${namespace}/failing`) === 0);
  });

  it("runs the finalizer's cleanup on deletion, removes the finalizer, and the children are garbage-collected", async () => {
    const stored = await createPoolWithChildren("doomed");
    expect(stored.metadata.finalizers).toContain(finalizerName);
    await client.delete(blockPools, namespace, "doomed");
    await waitFor("BlockPool gone", async () => !(await client.find(blockPools, namespace, "doomed")));
    expect(cleanups).toContain("doomed");
    // The garbage collector (kube-controller-manager) removes what the owner reference names.
    await waitFor(
      "children garbage-collected",
      async () => {
        const [sets, services] = await Promise.all([
          client.list(builtin.statefulSet, namespace),
          client.list(builtin.service, namespace),
        ]);
        const owned = [...sets.items, ...services.items].filter((child) =>
          child.metadata.ownerReferences?.some((owner) => owner.uid === stored.metadata.uid),
        );
        return owned.length === 0;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
  });
});

describe("validation the schema cannot express", () => {
  it("reports a BlockPool whose replication exceeds its data nodes as Degraded, without children", async () => {
    // The CRD's CEL rule refuses this at the door; the controller checks again for objects that
    // got past it. Here both agree: the API server refuses, naming the field.
    await expect(
      client.create(blockPools, pool("tiny", { replication: 4, dataNodes: { replicas: 2 } })),
    ).rejects.toThrow(/replication/);
  });

  it("reports a Dag cycle as Degraded DagCycle and accepts the Dag when fixed", async () => {
    const tasks = [
      { id: "extract", command: ["true"], dependsOn: ["load"] },
      { id: "transform", command: ["true"], dependsOn: ["extract"] },
      { id: "load", command: ["true"], dependsOn: ["transform"] },
    ];
    await client.create(dags, {
      apiVersion: dagDefinition.apiVersion,
      kind: "Dag",
      metadata: { name: "etl", namespace },
      spec: { tasks },
    });
    const degraded = await waitFor("DagCycle", async () => {
      const current = await client.get(dags, namespace, "etl");
      return condition(current, "Degraded")?.reason === "DagCycle" ? current : undefined;
    });
    expect(condition(degraded, "Degraded")?.message).toMatch(/cycle .* -> /);
    expect(condition(degraded, "Ready")?.status).toBe("False");
    await client.mergePatch(dags, namespace, "etl", {
      spec: { tasks: [{ ...tasks[0], dependsOn: [] }, tasks[1], tasks[2]] },
    });
    // Accepted: no longer Degraded, its scheduler made; not Ready while its pods do not run.
    const accepted = await waitFor("Dag accepted", async () => {
      const current = await client.get(dags, namespace, "etl");
      return isSettled(current) ? current : undefined;
    });
    expect(condition(accepted, "Ready")?.status).toBe("False");
    expect(condition(accepted, "Ready")?.reason).not.toBe("DagCycle");
  });

  it("reports a Dag schedule the API server let through but cron refuses as Degraded InvalidSchedule", async () => {
    // Five tokens pass the CRD's pattern; only the operator's cron parser reads what they hold.
    await client.create(dags, {
      apiVersion: dagDefinition.apiVersion,
      kind: "Dag",
      metadata: { name: "nightly", namespace },
      spec: { schedule: "a b c d e", tasks: [{ id: "only", command: ["true"] }] },
    });
    const degraded = await waitFor("InvalidSchedule", async () => {
      const current = await client.get(dags, namespace, "nightly");
      return condition(current, "Degraded")?.reason === "InvalidSchedule" ? current : undefined;
    });
    expect(condition(degraded, "Degraded")?.message).toMatch(
      /^spec\.schedule: "a b c d e" is not a valid cron expression: /,
    );
    expect(condition(degraded, "Ready")?.status).toBe("False");
    await client.mergePatch(dags, namespace, "nightly", { spec: { schedule: "0 0 31 2 *" } });
    await waitFor("a date that never comes refused", async () => {
      const degradedAgain = condition(await client.get(dags, namespace, "nightly"), "Degraded");
      return degradedAgain?.message.includes('"0 0 31 2 *"') ? degradedAgain : undefined;
    });
    await client.mergePatch(dags, namespace, "nightly", { spec: { schedule: "@daily" } });
    await waitFor("Dag accepted", async () => isSettled(await client.get(dags, namespace, "nightly")));
  });

  it("reports YarnQueue children whose capacities exceed 100% and clears it when a sibling shrinks", async () => {
    const queue = (name: string, spec: Record<string, unknown>): KubeObject => ({
      apiVersion: yarnQueueDefinition.apiVersion,
      kind: "YarnQueue",
      metadata: { name, namespace },
      spec,
    });
    await client.create(yarnQueues, queue("root", { root: {} }));
    await client.create(yarnQueues, queue("etl", { capacity: 60 }));
    await client.create(yarnQueues, queue("adhoc", { capacity: 50 }));
    for (const name of ["etl", "adhoc"]) {
      await waitFor(`${name} CapacityExceeded`, async () => {
        const current = await client.get(yarnQueues, namespace, name);
        return condition(current, "Degraded")?.reason === "CapacityExceeded";
      });
    }
    // Fixing one sibling clears the other too: siblings are reconciled together.
    await client.mergePatch(yarnQueues, namespace, "adhoc", { spec: { capacity: 40 } });
    // Valid again: Degraded clears (Ready waits for the resource manager's pods, which never run here).
    await waitFor("etl no longer Degraded", async () => {
      const current = await client.get(yarnQueues, namespace, "etl");
      const degraded = condition(current, "Degraded");
      return degraded?.status === "False" && degraded.observedGeneration === current?.metadata.generation;
    });
  });
});

describe("runtime", () => {
  it("keeps its cache through a broken watch and a 410 Gone", async () => {
    const informer = operator.controller("Dag")!.primaryInformers[0]!;
    const before = { ...informer.stats };
    informer.interruptWatch();
    await client.create(dags, {
      apiVersion: dagDefinition.apiVersion,
      kind: "Dag",
      metadata: { name: "after-break", namespace },
      spec: { tasks: [{ id: "only", command: ["true"] }] },
    });
    await waitFor("reconciled after the watch broke", async () =>
      isSettled(await client.get(dags, namespace, "after-break")),
    );
    expect(informer.stats.watches).toBeGreaterThan(before.watches);

    // Resuming from resourceVersion 1, long gone from the API server's watch cache, is
    // refused with 410 Gone: the informer must list again and carry on.
    informer.interruptWatch("1");
    await waitFor(
      "relisted after 410",
      async () => informer.stats.expired > before.expired && informer.stats.lists > before.lists,
    );
    await client.create(dags, {
      apiVersion: dagDefinition.apiVersion,
      kind: "Dag",
      metadata: { name: "after-gone", namespace },
      spec: { tasks: [{ id: "only", command: ["true"] }] },
    });
    await waitFor("reconciled after the relist", async () =>
      isSettled(await client.get(dags, namespace, "after-gone")),
    );
  });

  it("serves /healthz, /readyz and /metrics", async () => {
    const base = `http://127.0.0.1:${operator.healthPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    // A BlockPool of its own whose reconciles fail (a label key the API server refuses), so the
    // error counter has something to count whatever the other tests did.
    await client.create(
      blockPools,
      pool("counted", { nameNodes: { podOverrides: { metadata: { labels: { "not a valid key!": "x" } } } } }),
    );
    const metrics = await waitFor("a BlockPool reconcile error counted", async () => {
      const text = await (await fetch(`${base}/metrics`)).text();
      // Both in one scrape: the reconcile is counted after its error, when the event is out.
      return /tributary_reconcile_errors_total\{kind="BlockPool"\} [1-9]/.test(text) &&
        /tributary_reconcile_total\{kind="BlockPool",result="error"\} [1-9]/.test(text)
        ? text
        : undefined;
    });
    expect(metrics).toMatch(/tributary_reconcile_total\{kind="BlockPool",result="error"\} [1-9]/);
    // Fixed, it reconciles without error: counted as a success (or a success that asks to be
    // called again to refresh its status).
    await client.mergePatch(blockPools, namespace, "counted", {
      spec: { nameNodes: { podOverrides: null } },
    });
    await waitFor("a BlockPool reconcile without error counted", async () =>
      /tributary_reconcile_total\{kind="BlockPool",result="(success|requeue)"\} [1-9]/.test(
        await (await fetch(`${base}/metrics`)).text(),
      ),
    );
    expect(metrics).toContain("tributary_reconcile_duration_seconds_bucket");
    expect(metrics).toMatch(/tributary_workqueue_depth\{kind="Dag"\} \d+/);
    expect(metrics).toMatch(/tributary_leader 1/);
  });
});
