/**
 * The YarnQueue controller against the real API server, with a real resource manager process on
 * loopback standing in for the one in the root's pods (the test namespace's pods stay Pending;
 * the test plays the kubelet for them): the root queue sizes the cluster, the queue tree reaches
 * the resource manager and changes there live, sums that do not make 100 turn the queues
 * Degraded naming the parent while the resource manager keeps its last good tree, and each
 * queue's status carries the resource manager's figures.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { yarnQueueDefinition } from "../../src/api/yarnqueue.js";
import { resourceType } from "../../src/controllers/common.js";
import { createYarnQueueController } from "../../src/controllers/yarnqueue/reconcile.js";
import type { QueueDefinition } from "../../src/dataplane/yarn/scheduler.js";
import { builtin, type KubeObject } from "../../src/operator/kube.js";
import type { Operator } from "../../src/operator/operator.js";
import { uniqueName } from "../support/env.js";
import { reservedPort } from "../support/ports.js";
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
import { type Role, startRole, stopRole } from "./yarn-harness.js";

const client = testClient();
const namespace = uniqueName("yarn-op");
const yarnQueues = resourceType(yarnQueueDefinition);
let operator: Operator;
let rmProcess: Role;
let rmPort = 0;
let stateDir = "";
const nodeManagers: Role[] = [];

const startNodeManager = (i: number) =>
  startRole("nodemanager", [
    "--resource-manager",
    `127.0.0.1:${rmPort}`,
    "--host",
    "127.0.0.1",
    "--advertised-host",
    "127.0.0.1",
    "--port",
    "0",
    "--memory",
    "4096",
    "--vcores",
    "4",
    "--local-dir",
    join(stateDir, `nm${i}`, "local"),
    "--log-dir",
    join(stateDir, `nm${i}`, "logs"),
  ]);

const queue = (name: string, spec: Record<string, unknown>): KubeObject => ({
  apiVersion: yarnQueueDefinition.apiVersion,
  kind: "YarnQueue",
  metadata: { name, namespace },
  spec,
});

const getQueue = (name: string) => client.get(yarnQueues, namespace, name);

async function rmQueues(): Promise<QueueDefinition[]> {
  const response = await fetch(`http://127.0.0.1:${rmPort}/ws/v1/cluster/scheduler-conf`);
  return ((await response.json()) as { queues: QueueDefinition[] }).queues;
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "tributary-yarn-op-"));
  rmPort = await reservedPort();
  rmProcess = await startRole("resourcemanager", [
    "--host",
    "127.0.0.1",
    "--port",
    String(rmPort),
    "--state-dir",
    stateDir,
  ]);
  await applyCrds(client);
  await createNamespace(client, namespace);
  operator = await startOperator("yarn-operator-test", namespace, [
    createYarnQueueController({ resourceManagerUrl: () => `http://127.0.0.1:${rmPort}`, refreshMs: 1_000 }),
  ]);
}, 180_000);

afterAll(async () => {
  await deleteTributaryResources(client, namespace);
  await operator?.stop();
  await deleteNamespace(client, namespace);
  client.close();
  await Promise.all(nodeManagers.map((nm) => stopRole(nm)));
  if (rmProcess) await stopRole(rmProcess);
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 120_000);

describe("YarnQueue through the operator", () => {
  it("the root sizes the cluster; the tree reaches the resource manager; Ready once it runs", async () => {
    await client.create(
      yarnQueues,
      queue("analytics", {
        cluster: "analytics",
        root: {
          nodeManagers: { replicas: 2, vcores: 4, memory: "4Gi" },
          minimumAllocation: { memory: "256Mi" },
        },
      }),
    );
    await client.create(
      yarnQueues,
      queue("etl", { cluster: "analytics", capacity: 60, maximumCapacity: 100, userLimitFactor: 2 }),
    );
    await client.create(
      yarnQueues,
      queue("adhoc", { cluster: "analytics", capacity: 40, maximumCapacity: 80 }),
    );
    const rm = await waitFor("resource-manager StatefulSet", () =>
      client.find(builtin.statefulSet, namespace, "analytics-resourcemanager"),
    );
    const nm = await waitFor("node-manager StatefulSet", () =>
      client.find(builtin.statefulSet, namespace, "analytics-nodemanager"),
    );
    await waitFor("resource-manager Service", () =>
      client.find(builtin.service, namespace, "analytics-resourcemanager"),
    );
    const nmSpec = nm.spec as {
      replicas: number;
      template: {
        spec: {
          securityContext: { runAsNonRoot: boolean };
          containers: Array<{ command: string[]; env: Array<{ name: string; value?: string }> }>;
        };
      };
    };
    expect(nmSpec.replicas).toBe(2);
    expect(nmSpec.template.spec.securityContext.runAsNonRoot).toBe(true);
    const env = Object.fromEntries(nmSpec.template.spec.containers[0]!.env.map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      TRIBUTARY_NODEMANAGER_VCORES: "4",
      TRIBUTARY_NODEMANAGER_MEMORY: "4096",
      TRIBUTARY_NODEMANAGER_RESOURCE_MANAGER: `analytics-resourcemanager.${namespace}.svc:8088`,
    });
    expect(nmSpec.template.spec.containers[0]!.command).toEqual(["tributary", "nodemanager"]);
    expect((rm.spec as { replicas: number }).replicas).toBe(1);
    // Not Ready while the pods are not.
    const before = await getQueue("etl");
    expect(condition(before, "Ready")?.status).not.toBe("True");
    await waitFor(
      "every pod of the cluster marked ready",
      async () => {
        await playKubelet(client, namespace, "app.kubernetes.io/instance=analytics");
        const sets = await client.list(builtin.statefulSet, namespace);
        return sets.items.every(
          (set) =>
            (set.status as { readyReplicas?: number } | undefined)?.readyReplicas ===
            (set.spec as { replicas: number }).replicas,
        );
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    // The StatefulSets are ready, but Ready waits for the node managers to register.
    await waitFor("Ready waiting for node managers", async () =>
      condition(await getQueue("analytics"), "Ready")?.message.includes("0/2 node managers registered"),
    );
    nodeManagers.push(...(await Promise.all([0, 1].map((i) => startNodeManager(i)))));
    await waitFor("the tree in the resource manager", async () => {
      const queues = await rmQueues();
      return (
        queues.some((q) => q.path === "root.etl" && q.capacity === 60) &&
        queues.some((q) => q.path === "root.adhoc" && q.maximumCapacity === 80)
      );
    });
    for (const name of ["analytics", "etl", "adhoc"])
      await waitFor(
        `${name} Ready`,
        async () => condition(await getQueue(name), "Ready")?.status === "True",
        { timeoutMs: 60_000 },
      );
    const etl = (await getQueue("etl")).status as Record<string, unknown>;
    expect(etl).toMatchObject({
      queuePath: "root.etl",
      guaranteedCapacity: 60,
      runningApplications: 0,
      pendingApplications: 0,
      pendingContainers: 0,
      usedCapacity: 0,
    });
    const root = (await getQueue("analytics")).status as { cluster: Record<string, unknown> };
    expect(root.cluster).toMatchObject({
      resourceManagerAddress: `analytics-resourcemanager.${namespace}.svc:8088`,
      liveNodeManagers: 2,
      totalVcores: 8,
      totalMemoryBytes: 2 * 4096 * 1024 * 1024,
    });
  });

  it("a queue change applies live, as refreshQueues", async () => {
    await client.mergePatch(yarnQueues, namespace, "adhoc", {
      spec: { state: "STOPPED", maximumCapacity: 50 },
    });
    await waitFor("adhoc STOPPED in the resource manager", async () =>
      (await rmQueues()).some(
        (q) => q.path === "root.adhoc" && q.state === "STOPPED" && q.maximumCapacity === 50,
      ),
    );
    await waitFor(
      "adhoc reports QueueStopped",
      async () => condition(await getQueue("adhoc"), "Ready")?.reason === "QueueStopped",
    );
  });

  it("siblings that do not add up to 100 turn Degraded naming the parent; the resource manager keeps its tree", async () => {
    await client.mergePatch(yarnQueues, namespace, "etl", { spec: { capacity: 50 } });
    for (const name of ["etl", "adhoc"])
      await waitFor(`${name} Degraded`, async () => {
        const degraded = condition(await getQueue(name), "Degraded");
        return (
          degraded?.status === "True" &&
          degraded.message.includes("children of 'root'") &&
          degraded.message.includes("add up to 90%")
        );
      });
    expect((await rmQueues()).find((q) => q.path === "root.etl")?.capacity).toBe(60);
    await client.mergePatch(yarnQueues, namespace, "etl", { spec: { capacity: 60 } });
    await waitFor(
      "etl Ready again",
      async () => condition(await getQueue("etl"), "Ready")?.status === "True",
    );
  });
});
