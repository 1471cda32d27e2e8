import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics } from "../support/kafka.js";

// Proves kafkajs against the real KRaft brokers of the test environment.
describe("kafka smoke", () => {
  const topic = uniqueName("smoke");
  const kafka = new Kafka({
    clientId: "tributary-smoke",
    brokers: testEnv().kafkaBrokers,
    logLevel: logLevel.ERROR,
  });
  const admin = kafka.admin();

  beforeAll(async () => {
    await admin.connect();
  });

  afterAll(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it("sees three brokers", async () => {
    const cluster = await admin.describeCluster();
    expect(cluster.brokers).toHaveLength(3);
  });

  it("creates a replicated topic, produces and consumes 10,000 messages in a consumer group", async () => {
    // kafkajs's own waitForLeaders gives up on the UNKNOWN_TOPIC_OR_PARTITION that a KRaft broker
    // answers until it has applied the new topic; the shared helper waits for the leaders instead.
    await createTopics(testEnv().kafkaBrokers, [{ topic, numPartitions: 3 }]);
    // A broker may learn of the new topic a moment after the controller created it: ask again.
    let metadata = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
    for (let attempt = 0; !metadata && attempt < 40; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      metadata = await admin.fetchTopicMetadata({ topics: [topic] }).catch((error: { type?: string }) => {
        if (error.type !== "UNKNOWN_TOPIC_OR_PARTITION" && error.type !== "LEADER_NOT_AVAILABLE") throw error;
        return undefined;
      });
    }
    if (!metadata) throw new Error(`no broker reported metadata for ${topic}`);
    expect(metadata.topics[0]!.partitions).toHaveLength(3);
    for (const partition of metadata.topics[0]!.partitions) expect(partition.replicas).toHaveLength(3);

    const total = 10_000;
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    for (let start = 0; start < total; start += 1000) {
      await producer.send({
        topic,
        acks: -1,
        messages: Array.from({ length: 1000 }, (_, i) => ({
          key: `k${(start + i) % 17}`,
          value: String(start + i),
        })),
      });
    }
    await producer.disconnect();

    const consumer = kafka.consumer({ groupId: uniqueName("smoke-group") });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const received = new Set<string>();
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachBatch: async ({ batch }) => {
            for (const message of batch.messages) received.add(message.value!.toString());
            if (received.size >= total) resolve();
          },
        })
        .catch(reject);
    });
    await consumer.disconnect();
    expect(received.size).toBe(total);
    expect(received.has("0") && received.has(String(total - 1))).toBe(true);
  });
});
