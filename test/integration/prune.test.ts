/**
 * Children the spec stops asking for are deleted, against the real kube-apiserver (with its
 * garbage collector) and the real Kafka of the test environment: a Topic's removed and renamed
 * sinks, its removed collector, a BlockPool's rack table once rackAwareness goes. What is not the
 * resource's own (no owner reference) stays; a claim stays; a paused resource changes nothing.
 * The operator runs in-process with the Topic and BlockPool controllers, watching this file's
 * namespace.
 */
import kafkajs from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockPoolDefinition } from "../../src/api/blockpool.js";
import { topicDefinition } from "../../src/api/topic.js";
import { blockPoolController } from "../../src/controllers/blockpool/reconcile.js";
import { resourceType } from "../../src/controllers/common.js";
import { createTopicController } from "../../src/controllers/topic/reconcile.js";
import { builtin, type KubeObject, type ResourceType } from "../../src/operator/kube.js";
import type { Operator } from "../../src/operator/operator.js";
import { testEnv, uniqueName } from "../support/env.js";
import {
  applyCrds,
  condition,
  createNamespace,
  deleteNamespace,
  deleteTributaryResources,
  startOperator,
  testClient,
  waitFor,
} from "./operator-harness.js";

const { Kafka, logLevel } = kafkajs;

const client = testClient();
const namespace = uniqueName("prune-it");
const topics = resourceType(topicDefinition);
const blockPools = resourceType(blockPoolDefinition);
const brokers = testEnv().kafkaBrokers;
const kafkaTopic = uniqueName("it-prune");
let operator: Operator;

const find = (type: ResourceType, name: string) => client.find(type, namespace, name);
const sink = (name: string) => ({ name, format: "avro", target: { volume: { claimName: "files" } } });

/** Polls until the object is gone (a Deployment deleted in the background goes at once). */
const gone = (type: ResourceType, name: string) =>
  waitFor(`${type.kind} ${name} deleted`, async () => !(await find(type, name)), {
    timeoutMs: 60_000,
    intervalMs: 250,
  });

const there = (type: ResourceType, name: string) =>
  waitFor(`${type.kind} ${name}`, () => find(type, name), { timeoutMs: 90_000, intervalMs: 250 });

/** Waits until the resource's status is written for its current generation, Progressing as `reason` says. */
function settled(type: ResourceType, name: string, reason?: string) {
  return waitFor(
    `${type.kind} ${name} reconciled at its current generation${reason ? ` (${reason})` : ""}`,
    async () => {
      const stored = await client.get(type, namespace, name);
      const progressing = condition(stored, "Progressing");
      if (!progressing || progressing.observedGeneration !== stored.metadata.generation) return undefined;
      return !reason || progressing.reason === reason ? stored : undefined;
    },
    { timeoutMs: 90_000, intervalMs: 250 },
  );
}

beforeAll(async () => {
  await applyCrds(client);
  await createNamespace(client, namespace);
  // The default cluster, as the operator's --kafka-bootstrap flag gives it.
  const topicController = createTopicController({ defaultBootstrap: brokers });
  operator = await startOperator("prune-test", namespace, [topicController, blockPoolController]);
});

afterAll(async () => {
  await deleteTributaryResources(client, namespace).catch(() => undefined);
  // Stopping the operator stops the Topic controller, which disconnects its Kafka admin clients.
  await operator?.stop();
  await deleteNamespace(client, namespace).catch(() => undefined);
  // deletionPolicy Delete removes the Kafka topic with the Topic; this catches a failed run.
  const admin = new Kafka({ clientId: "prune-it", brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const ours = (await admin.listTopics()).filter(
    (name) => name === kafkaTopic || name === `${kafkaTopic}.dlq`,
  );
  if (ours.length > 0) await admin.deleteTopics({ topics: ours }).catch(() => undefined);
  await admin.disconnect();
  client.close();
});

describe("a Topic's children follow its spec", () => {
  let handMade: KubeObject;

  it("creates the collector and one Deployment per sink", async () => {
    await client.create(topics, {
      apiVersion: topicDefinition.apiVersion,
      kind: "Topic",
      metadata: { name: "clicks", namespace },
      spec: {
        topicName: kafkaTopic,
        replicationFactor: 1,
        deletionPolicy: "Delete",
        ingest: { clickstream: { replicas: 1 } },
        sinks: [sink("raw"), sink("daily"), sink("spare")],
      },
    });
    for (const name of ["clicks-collector", "clicks-sink-raw", "clicks-sink-daily", "clicks-sink-spare"]) {
      await there(builtin.deployment, name);
    }
    await there(builtin.service, "clicks-collector");
    // A Deployment someone made with the Topic's labels but no owner reference: not the Topic's.
    const labels = {
      "app.kubernetes.io/managed-by": "tributary",
      "app.kubernetes.io/name": "topic",
      "app.kubernetes.io/instance": "clicks",
    };
    handMade = await client.create(builtin.deployment, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "clicks-sink-by-hand", namespace, labels },
      spec: {
        replicas: 0,
        selector: { matchLabels: labels },
        template: { metadata: { labels }, spec: { containers: [{ name: "main", image: "tributary:test" }] } },
      },
    });
  });

  it("deletes a removed sink's Deployment and leaves the others as they are", async () => {
    const daily = await there(builtin.deployment, "clicks-sink-daily");
    await client.mergePatch(topics, namespace, "clicks", { spec: { sinks: [sink("daily"), sink("spare")] } });
    await gone(builtin.deployment, "clicks-sink-raw");
    expect((await find(builtin.deployment, "clicks-sink-daily"))?.metadata.uid).toBe(daily.metadata.uid);
    expect(await find(builtin.deployment, "clicks-collector")).toBeDefined();
  });

  it("replaces a renamed sink's Deployment", async () => {
    await client.mergePatch(topics, namespace, "clicks", {
      spec: { sinks: [sink("hourly"), sink("spare")] },
    });
    await there(builtin.deployment, "clicks-sink-hourly");
    await gone(builtin.deployment, "clicks-sink-daily");
  });

  it("deletes the collector's Deployment and Service when ingest.clickstream is removed", async () => {
    await client.mergePatch(topics, namespace, "clicks", { spec: { ingest: null } });
    await gone(builtin.deployment, "clicks-collector");
    await gone(builtin.service, "clicks-collector");
    expect(await find(builtin.deployment, "clicks-sink-hourly")).toBeDefined();
  });

  it("deletes nothing while paused, nor when stopped; the pause's change lands when it ends", async () => {
    await client.mergePatch(topics, namespace, "clicks", {
      spec: { clusterOperation: { reconciliationPaused: true }, sinks: [sink("hourly")] },
    });
    await settled(topics, "clicks", "ReconciliationPaused");
    expect(await find(builtin.deployment, "clicks-sink-spare")).toBeDefined();

    // Unpaused and stopped at once: the removal of "spare" applies, every other child stays at 0.
    await client.mergePatch(topics, namespace, "clicks", {
      spec: { clusterOperation: { reconciliationPaused: false, stopped: true } },
    });
    await gone(builtin.deployment, "clicks-sink-spare");
    await settled(topics, "clicks");
    const hourly = await find(builtin.deployment, "clicks-sink-hourly");
    expect((hourly?.spec as { replicas?: number } | undefined)?.replicas).toBe(0);
  });

  it("never deletes what is not the Topic's own, even with its labels", async () => {
    const kept = await find(builtin.deployment, "clicks-sink-by-hand");
    expect(kept?.metadata.uid).toBe(handMade.metadata.uid);
    await client.delete(builtin.deployment, namespace, "clicks-sink-by-hand");
  });
});

describe("a BlockPool's children follow its spec", () => {
  it("deletes the rack table when rackAwareness is removed, and keeps the shared edit-log claim", async () => {
    await client.create(blockPools, {
      apiVersion: blockPoolDefinition.apiVersion,
      kind: "BlockPool",
      metadata: { name: "lake", namespace },
      spec: { rackAwareness: {}, deletionPolicy: "Delete" },
    });
    const table = await there(builtin.configMap, "lake-topology");
    const claim = await there(builtin.persistentVolumeClaim, "lake-namenode-edits");
    const pool = await client.get(blockPools, namespace, "lake");
    for (const child of [table, claim]) {
      expect(child.metadata.ownerReferences).toEqual([
        expect.objectContaining({ kind: "BlockPool", uid: pool.metadata.uid, controller: true }),
      ]);
    }

    // One name node needs no shared edit log, but the claim holds it: it is never pruned.
    await client.mergePatch(blockPools, namespace, "lake", {
      spec: { rackAwareness: null, nameNodes: { replicas: 1 } },
    });
    await gone(builtin.configMap, "lake-topology");
    await settled(blockPools, "lake");
    const nameNodes = await find(builtin.statefulSet, "lake-namenode");
    expect((nameNodes?.spec as { replicas?: number } | undefined)?.replicas).toBe(1);
    const kept = await find(builtin.persistentVolumeClaim, "lake-namenode-edits");
    expect(kept?.metadata.uid).toBe(claim.metadata.uid);
    expect(kept?.metadata.deletionTimestamp).toBeUndefined();
    expect(await find(builtin.service, "lake")).toBeDefined();
  });
});
