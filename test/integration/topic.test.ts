/**
 * The Topic controller against the real kube-apiserver (with its controller manager) and the
 * real three-broker Kafka of the test environment. The operator runs in-process with only the
 * Topic controller, watching this file's namespace; every Kafka topic name is unique to the run.
 */
import kafkajs from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockPoolDefinition } from "../../src/api/blockpool.js";
import { topicDefinition } from "../../src/api/topic.js";
import { resourceType } from "../../src/controllers/common.js";
import { createTopic } from "../../src/controllers/topic/kafka.js";
import { createTopicController, topicIdAnnotation } from "../../src/controllers/topic/reconcile.js";
import { finalizerName } from "../../src/operator/finalizer.js";
import { ApiError, builtin, type KubeObject } from "../../src/operator/kube.js";
import type { Operator } from "../../src/operator/operator.js";
import { testEnv, uniqueName } from "../support/env.js";
import {
  applyCrds,
  condition,
  createNamespace,
  deleteNamespace,
  playKubelet,
  startOperator,
  testClient,
  waitFor,
} from "./operator-harness.js";

const { Kafka, ConfigResourceTypes, ConfigSource, logLevel } = kafkajs;

const client = testClient();
const namespace = uniqueName("topic-it");
const topics = resourceType(topicDefinition);
const blockPools = resourceType(blockPoolDefinition);
const brokers = testEnv().kafkaBrokers;
const admin = new Kafka({ clientId: "topic-it", brokers, logLevel: logLevel.NOTHING }).admin();
/** Kafka topics of this run; whatever a test leaves behind is removed at the end. */
const kafkaTopic = (label: string) => uniqueName(`it-${label}`);
const leftovers = new Set<string>();
let operator: Operator;

const topic = (
  name: string,
  spec: Record<string, unknown>,
  annotations?: Record<string, string>,
): KubeObject => ({
  apiVersion: topicDefinition.apiVersion,
  kind: "Topic",
  metadata: { name, namespace, ...(annotations ? { annotations } : {}) },
  spec,
});

type TopicStatus = {
  observedGeneration?: number;
  topicName?: string;
  topicId?: string;
  partitions?: number;
  replicationFactor?: number;
  collector?: { replicas?: number; readyReplicas?: number; endpoint?: string };
};
const statusOf = (object: KubeObject) => (object.status ?? {}) as TopicStatus;
const getTopic = (name: string) => client.get(topics, namespace, name);

/** Waits until the Topic reports `type` with `status` (and `reason`) for its current generation. */
function waitForCondition(name: string, type: string, status: string, reason?: string, timeoutMs = 90_000) {
  return waitFor(
    `Topic ${name} ${type}=${status}${reason ? ` (${reason})` : ""}`,
    async () => {
      const stored = await getTopic(name);
      const found = condition(stored, type);
      const current = statusOf(stored).observedGeneration === stored.metadata.generation;
      return current && found?.status === status && (!reason || found.reason === reason) ? stored : undefined;
    },
    { timeoutMs, intervalMs: 250 },
  );
}

/**
 * What Kafka itself says of a topic: partitions, replication factor, configs set on it. A broker
 * may learn of a new topic a moment after another one listed it: such answers are asked again.
 */
async function inKafka(name: string) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await describeInKafka(name);
    } catch (error) {
      const type = (error as { type?: string }).type;
      if (attempt >= 20 || (type !== "UNKNOWN_TOPIC_OR_PARTITION" && type !== "LEADER_NOT_AVAILABLE"))
        throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

async function describeInKafka(name: string) {
  const listed = await admin.listTopics();
  if (!listed.includes(name)) return undefined;
  const metadata = await admin.fetchTopicMetadata({ topics: [name] });
  const partitions = metadata.topics[0]!.partitions;
  const configs = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name }],
    includeSynonyms: false,
  });
  const config: Record<string, string> = {};
  for (const entry of configs.resources[0]!.configEntries) {
    if (entry.configSource === ConfigSource.TOPIC_CONFIG) config[entry.configName] = entry.configValue;
  }
  return {
    partitions: partitions.length,
    replicationFactor: Math.max(...partitions.map((partition) => partition.replicas.length)),
    config,
  };
}

async function deleteAndWait(name: string) {
  await client.delete(topics, namespace, name);
  await waitFor(`Topic ${name} gone`, async () => !(await client.find(topics, namespace, name)), {
    timeoutMs: 90_000,
    intervalMs: 250,
  });
}

beforeAll(async () => {
  await admin.connect();
  await applyCrds(client);
  await createNamespace(client, namespace);
  // The default cluster, as the operator's --kafka-bootstrap flag sets it.
  operator = await startOperator("topic-test", namespace, [
    createTopicController({ defaultBootstrap: brokers }),
  ]);
});

afterAll(async () => {
  // Topics carry the finalizer: delete them while the operator still runs to release it.
  const remaining = await client.list(topics, namespace).catch(() => ({ items: [] as KubeObject[] }));
  await Promise.all(remaining.items.map((item) => deleteAndWait(item.metadata.name).catch(() => undefined)));
  await operator?.stop();
  await deleteNamespace(client, namespace).catch(() => undefined);
  const existing = new Set(await admin.listTopics());
  const ours = [...leftovers].flatMap((name) => [name, `${name}.dlq`]).filter((name) => existing.has(name));
  if (ours.length > 0) await admin.deleteTopics({ topics: ours }).catch(() => undefined);
  await admin.disconnect();
  client.close();
});

/**
 * Creates a Topic owning a new Kafka topic (a name of this run) and waits until it is Ready;
 * answers the Kafka topic's name and the Ready resource.
 */
async function createReadyTopic(name: string, spec: Record<string, unknown>) {
  const kafkaName = kafkaTopic(name);
  leftovers.add(kafkaName);
  await client.create(topics, topic(name, { topicName: kafkaName, ...spec }));
  return { kafkaName, ready: await waitForCondition(name, "Ready", "True") };
}

/** A Kafka topic with `partitions` that a Retain Topic created and left behind; answers its id. */
async function retainedTopic(name: string, partitions: number) {
  const { kafkaName, ready } = await createReadyTopic(name, {
    partitions,
    replicationFactor: 3,
    deletionPolicy: "Retain",
  });
  const topicId = statusOf(ready).topicId;
  expect(topicId).toMatch(/^[A-Za-z0-9_-]{22}$/);
  await deleteAndWait(name);
  return { kafkaName, topicId: topicId! };
}

describe("Topic controller against Kafka", () => {
  it("creates the Kafka topic with partitions, replication factor and config, and reports them", async () => {
    const managed = kafkaTopic("managed");
    leftovers.add(managed);
    await client.create(
      topics,
      topic("managed", {
        topicName: managed,
        partitions: 3,
        replicationFactor: 3,
        config: { "retention.ms": "3600000", "cleanup.policy": "delete", "min.insync.replicas": "2" },
        deletionPolicy: "Retain",
      }),
    );
    const ready = await waitForCondition("managed", "Ready", "True");
    expect(await inKafka(managed)).toEqual({
      partitions: 3,
      replicationFactor: 3,
      config: { "retention.ms": "3600000", "cleanup.policy": "delete", "min.insync.replicas": "2" },
    });
    const status = statusOf(ready);
    expect(status).toMatchObject({ topicName: managed, partitions: 3, replicationFactor: 3 });
    // Kafka prints topic ids as 22 characters of unpadded base64url.
    expect(status.topicId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(ready.metadata.annotations?.[topicIdAnnotation]).toBe(status.topicId);
    expect(ready.metadata.finalizers).toContain(finalizerName);
  });

  it("applies a config change: the broker shows the new value and a removed key returns to its default", async () => {
    const { kafkaName } = await createReadyTopic("configured", {
      partitions: 1,
      replicationFactor: 3,
      config: { "retention.ms": "3600000", "cleanup.policy": "delete", "min.insync.replicas": "2" },
      deletionPolicy: "Delete",
    });
    await client.mergePatch(topics, namespace, "configured", {
      spec: { config: { "retention.ms": "7200000", "cleanup.policy": null, "min.insync.replicas": "2" } },
    });
    await waitFor(
      "retention.ms=7200000 on the broker",
      async () => {
        // Brokers apply a config change from the metadata log one after another, and a describe
        // may reach any of them: wait until the answer is the whole new config.
        const seen = await inKafka(kafkaName);
        return seen?.config["retention.ms"] === "7200000" &&
          seen.config["min.insync.replicas"] === "2" &&
          Object.keys(seen.config).length === 2
          ? seen
          : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
    await waitForCondition("configured", "Ready", "True");
  });

  it("grows the partitions to 6", async () => {
    const { kafkaName, ready: created } = await createReadyTopic("growing", {
      partitions: 3,
      replicationFactor: 3,
      deletionPolicy: "Delete",
    });
    const { topicId } = statusOf(created);
    await client.mergePatch(topics, namespace, "growing", { spec: { partitions: 6 } });
    await waitFor("6 partitions in Kafka", async () => (await inKafka(kafkaName))?.partitions === 6, {
      timeoutMs: 90_000,
      intervalMs: 250,
    });
    const ready = await waitForCondition("growing", "Ready", "True");
    expect(statusOf(ready)).toMatchObject({ partitions: 6, replicationFactor: 3, topicId });
  });

  it("refuses a lower spec.partitions at the API server (the CRD's transition rule)", async () => {
    // The API server alone decides: the Topic need not be reconciled first.
    const shrinking = kafkaTopic("shrinking");
    leftovers.add(shrinking);
    await client.create(
      topics,
      topic("shrinking", {
        topicName: shrinking,
        partitions: 3,
        replicationFactor: 1,
        deletionPolicy: "Delete",
      }),
    );
    const refused = await client
      .mergePatch(topics, namespace, "shrinking", { spec: { partitions: 2 } })
      .then(() => undefined)
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).statusCode).toBe(422);
    expect((refused as ApiError).message).toContain("Kafka cannot remove partitions");
  });

  it("keeps the Kafka topic when a Retain Topic is deleted", async () => {
    const { kafkaName } = await createReadyTopic("retained", {
      partitions: 6,
      replicationFactor: 3,
      deletionPolicy: "Retain",
    });
    await deleteAndWait("retained");
    expect(await inKafka(kafkaName)).toMatchObject({ partitions: 6, replicationFactor: 3 });
  });

  it("reports a shrink of a taken-over topic as Degraded PartitionsCannotShrink and leaves Kafka at 6", async () => {
    const { kafkaName, topicId } = await retainedTopic("shrunk-predecessor", 6);
    // A new Topic takes over the retained topic by its id, asking for fewer partitions: the
    // CRD cannot see this one (there is no old spec), the controller compares with Kafka.
    await client.create(
      topics,
      topic(
        "shrunk-successor",
        { topicName: kafkaName, partitions: 3, replicationFactor: 3, deletionPolicy: "Delete" },
        { [topicIdAnnotation]: topicId },
      ),
    );
    const degraded = await waitForCondition("shrunk-successor", "Degraded", "True", "PartitionsCannotShrink");
    expect(condition(degraded, "Degraded")?.message).toContain("Kafka cannot remove partitions");
    expect(condition(degraded, "Ready")?.status).toBe("False");
    // The status keeps what Kafka really has.
    expect(statusOf(degraded)).toMatchObject({ partitions: 6, replicationFactor: 3, topicId });
    expect((await inKafka(kafkaName))?.partitions).toBe(6);
  });

  it("deletes the Kafka topic when a Delete Topic that owns it is deleted", async () => {
    // Owned by taking it over by its id, as a successor of a Retain Topic does.
    const { kafkaName, topicId } = await retainedTopic("owned-predecessor", 3);
    await client.create(
      topics,
      topic(
        "owned-successor",
        { topicName: kafkaName, partitions: 3, replicationFactor: 3, deletionPolicy: "Delete" },
        { [topicIdAnnotation]: topicId },
      ),
    );
    const ready = await waitForCondition("owned-successor", "Ready", "True");
    expect(statusOf(ready).topicId).toBe(topicId);
    await deleteAndWait("owned-successor");
    await waitFor("Kafka topic deleted", async () => !(await admin.listTopics()).includes(kafkaName), {
      timeoutMs: 60_000,
      intervalMs: 250,
    });
  });

  it("reports a pre-existing topic of another shape as Degraded TopicExistsWithDifferentShape and leaves it as it is", async () => {
    const foreign = kafkaTopic("foreign");
    leftovers.add(foreign);
    await admin.createTopics({
      waitForLeaders: false,
      topics: [
        {
          topic: foreign,
          numPartitions: 2,
          replicationFactor: 1,
          configEntries: [{ name: "retention.ms", value: "1000000" }],
        },
      ],
    });
    await waitFor("foreign topic visible", () => inKafka(foreign), { intervalMs: 250 });
    // Creating it again says it was not created (kafkajs answers false rather than throwing), so a
    // reconcile whose metadata missed the topic never takes it for its own.
    expect(await createTopic(admin, { name: foreign, partitions: 3, replicationFactor: 3, config: {} })).toBe(
      false,
    );
    await client.create(
      topics,
      topic("foreign", {
        topicName: foreign,
        partitions: 3,
        replicationFactor: 3,
        config: { "retention.ms": "5000" },
        deletionPolicy: "Delete",
      }),
    );
    const degraded = await waitForCondition("foreign", "Degraded", "True", "TopicExistsWithDifferentShape");
    expect(condition(degraded, "Degraded")?.message).toContain("2 partitions and replication factor 1");
    expect(degraded.metadata.annotations?.[topicIdAnnotation]).toBeUndefined();
    expect(await inKafka(foreign)).toEqual({
      partitions: 2,
      replicationFactor: 1,
      config: { "retention.ms": "1000000" },
    });
    // Even with deletionPolicy Delete, a topic the resource does not own survives its deletion.
    await deleteAndWait("foreign");
    expect((await inKafka(foreign))?.partitions).toBe(2);
  });

  it("manages a topic on the cluster named in spec.kafka and deletes it with deletionPolicy Delete", async () => {
    const explicit = kafkaTopic("explicit");
    leftovers.add(explicit);
    await client.create(
      topics,
      topic("explicit", {
        kafka: { bootstrapServers: brokers },
        topicName: explicit,
        partitions: 1,
        replicationFactor: 2,
        deletionPolicy: "Delete",
      }),
    );
    await waitForCondition("explicit", "Ready", "True");
    // The broker that answers may learn of the new topic a moment after the one that created it.
    const seen = await waitFor("the explicit topic in Kafka", () => inKafka(explicit), {
      timeoutMs: 30_000,
      intervalMs: 250,
    });
    expect(seen).toMatchObject({ partitions: 1, replicationFactor: 2 });
    await deleteAndWait("explicit");
    await waitFor("explicit topic deleted", async () => !(await admin.listTopics()).includes(explicit), {
      timeoutMs: 60_000,
      intervalMs: 250,
    });
  });

  it("reports config keys the broker refuses as Degraded InvalidTopicConfig", async () => {
    const invalid = kafkaTopic("invalid");
    leftovers.add(invalid);
    await client.create(
      topics,
      topic("invalid", { topicName: invalid, replicationFactor: 1, config: { "no.such.setting": "1" } }),
    );
    const degraded = await waitForCondition("invalid", "Degraded", "True", "InvalidTopicConfig");
    expect(condition(degraded, "Degraded")?.message).toContain("no.such.setting");
    expect(await inKafka(invalid)).toBeUndefined();
    await deleteAndWait("invalid");
  });

  it("reports an unreachable cluster as Degraded KafkaUnavailable and keeps retrying", async () => {
    await client.create(
      topics,
      topic("unreachable", {
        kafka: { bootstrapServers: ["127.0.0.1:1"] },
        topicName: kafkaTopic("unreachable"),
        replicationFactor: 1,
      }),
    );
    const stored = await waitFor(
      "Degraded KafkaUnavailable",
      async () => {
        const seen = await getTopic("unreachable");
        return condition(seen, "Degraded")?.reason === "KafkaUnavailable" ? seen : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
    expect(condition(stored, "Degraded")?.message).toContain("127.0.0.1:1");
    // The finalizer's cleanup of a Retain topic needs no Kafka, so the resource can still go.
    await deleteAndWait("unreachable");
  });

  it("spawns the clickstream collector Deployment and Service, owned by the Topic, and reports them ready", async () => {
    const clicks = kafkaTopic("clicks");
    leftovers.add(clicks);
    await client.create(
      topics,
      topic("clicks", {
        topicName: clicks,
        partitions: 2,
        replicationFactor: 3,
        deletionPolicy: "Delete",
        ingest: { clickstream: { replicas: 2, port: 8080 } },
      }),
    );
    const deployment = await waitFor("collector Deployment", () =>
      client.find(builtin.deployment, namespace, "clicks-collector"),
    );
    const service = await waitFor("collector Service", () =>
      client.find(builtin.service, namespace, "clicks-collector"),
    );
    const owner = await getTopic("clicks");
    for (const child of [deployment, service]) {
      expect(child.metadata.ownerReferences).toEqual([
        expect.objectContaining({ kind: "Topic", name: "clicks", uid: owner.metadata.uid, controller: true }),
      ]);
    }
    const container = (
      deployment.spec as {
        template: { spec: { containers: { args: string[]; env: { name: string; value?: string }[] }[] } };
      }
    ).template.spec.containers[0]!;
    expect(container.args).toEqual(["collector"]);
    expect(container.env).toContainEqual({ name: "TRIBUTARY_COLLECTOR_TOPIC", value: clicks });
    expect(container.env).toContainEqual({ name: "TRIBUTARY_COLLECTOR_BROKERS", value: brokers.join(",") });
    // The dead-letter topic exists before any collector starts.
    expect(await waitFor("dead-letter topic", () => inKafka(`${clicks}.dlq`))).toMatchObject({
      replicationFactor: 3,
    });
    expect(condition(await waitForCondition("clicks", "Progressing", "True"), "Ready")?.status).toBe("False");

    // No kubelet here: the test reports the collector pods ready, as a kubelet would.
    const ready = await waitFor(
      "Topic Ready with 2 ready collectors",
      async () => {
        await playKubelet(client, namespace, "app.kubernetes.io/component=collector");
        const seen = await getTopic("clicks");
        return condition(seen, "Ready")?.status === "True" ? seen : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    expect(statusOf(ready).collector).toEqual({
      replicas: 2,
      readyReplicas: 2,
      endpoint: `http://clicks-collector.${namespace}.svc:8080/v1/events`,
    });
    await deleteAndWait("clicks");
    await waitFor("clicks topic and its dead-letter topic deleted", async () => {
      const listed = await admin.listTopics();
      return !listed.includes(clicks) && !listed.includes(`${clicks}.dlq`);
    });
  });

  it("points a BlockPool sink at the pool's own WebHDFS port, and reports a pool that does not exist", async () => {
    const lake = kafkaTopic("lake");
    leftovers.add(lake);
    await client.create(
      topics,
      topic("lake", {
        topicName: lake,
        replicationFactor: 1,
        deletionPolicy: "Delete",
        sinks: [
          { name: "raw", format: "avro", target: { blockPool: { blockPool: "archive", path: "/raw" } } },
        ],
      }),
    );
    const degraded = await waitForCondition("lake", "Degraded", "True", "DependencyNotFound");
    expect(condition(degraded, "Degraded")?.message).toContain(
      `BlockPool ${namespace}/archive does not exist`,
    );
    const webHdfsOf = async () => {
      const deployment = await client.find(builtin.deployment, namespace, "lake-sink-raw");
      if (!deployment) return undefined;
      const { containers } = (
        deployment.spec as {
          template: { spec: { containers: { env: { name: string; value?: string }[] }[] } };
        }
      ).template.spec;
      const env = containers[0]?.env;
      return env?.find((variable) => variable.name === "TRIBUTARY_SINK_TARGET_WEBHDFS")?.value;
    };
    expect(await waitFor("sink Deployment", webHdfsOf)).toBe(`archive.${namespace}.svc:9870`);

    // The pool appears, on another port: the watch wakes the Topic, which follows it.
    await client.create(blockPools, {
      apiVersion: blockPoolDefinition.apiVersion,
      kind: "BlockPool",
      metadata: { name: "archive", namespace },
      spec: { webHdfs: { port: 50070 } },
    });
    await waitFor("sink following port 50070", async () => (await webHdfsOf())?.endsWith(":50070"), {
      timeoutMs: 20_000,
      intervalMs: 250,
    });
    await waitForCondition("lake", "Degraded", "False");
    await deleteAndWait("lake");
    await client.delete(blockPools, namespace, "archive");
  });
});
