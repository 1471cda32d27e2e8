import kafkajs from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  IncompatibleSchemaError,
  SchemaRegistry,
  subjectForTopic,
  UnknownSchemaIdError,
} from "../../src/dataplane/avro/registry.js";
import { testEnv, uniqueName } from "../support/env.js";

const v1 = {
  type: "record",
  name: "PageView",
  namespace: "dev.tributary.test",
  fields: [
    { name: "path", type: "string" },
    { name: "at", type: "long" },
  ],
};
// Adds a field with a default: readers on v2 can read v1 data (BACKWARD).
const v2 = { ...v1, fields: [...v1.fields, { name: "referrer", type: ["null", "string"], default: null }] };
// Adds a field without a default: v3 cannot read v2 data.
const v3 = { ...v1, fields: [...v2.fields, { name: "country", type: "string" }] };

async function eventually<T>(attempt: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe("schema registry on a compacted Kafka topic", () => {
  const schemasTopic = uniqueName("test-schemas");
  const subject = subjectForTopic(uniqueName("pageviews"));
  let registry: SchemaRegistry;
  let other: SchemaRegistry | undefined;

  beforeAll(async () => {
    registry = await SchemaRegistry.connect({ brokers: testEnv().kafkaBrokers, topic: schemasTopic });
  });

  afterAll(async () => {
    await other?.close();
    await registry?.close();
    const admin = new kafkajs.Kafka({
      brokers: testEnv().kafkaBrokers,
      logLevel: kafkajs.logLevel.NOTHING,
    }).admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it("creates the topic compacted with one partition", async () => {
    const admin = new kafkajs.Kafka({
      brokers: testEnv().kafkaBrokers,
      logLevel: kafkajs.logLevel.NOTHING,
    }).admin();
    await admin.connect();
    try {
      // Another broker may learn of the topic a moment after the one the registry asked.
      const metadata = await eventually(() => admin.fetchTopicMetadata({ topics: [schemasTopic] }));
      expect(metadata.topics[0]?.partitions).toHaveLength(1);
      const configs = await eventually(() =>
        admin.describeConfigs({
          includeSynonyms: false,
          resources: [
            { type: kafkajs.ConfigResourceTypes.TOPIC, name: schemasTopic, configNames: ["cleanup.policy"] },
          ],
        }),
      );
      expect(configs.resources[0]?.configEntries[0]?.configValue).toBe("compact");
    } finally {
      await admin.disconnect();
    }
  });

  it("registers versions, is idempotent and refuses a backward-incompatible schema", async () => {
    const first = await registry.register(subject, v1);
    expect(first.version).toBe(1);
    const again = await registry.register(subject, JSON.stringify(v1));
    expect(again).toMatchObject({ version: 1, id: first.id });

    const second = await registry.register(subject, v2);
    expect(second.version).toBe(2);
    expect(second.id).not.toBe(first.id);

    const refused = registry.register(subject, v3);
    await expect(refused).rejects.toBeInstanceOf(IncompatibleSchemaError);
    await expect(refused).rejects.toThrow(/not BACKWARD-compatible with version 2.*country/);
    expect(registry.latest(subject).version).toBe(2);

    // NONE lets it through, as an operator would after migrating every reader.
    const forced = await registry.register(subject, v3, { compatibility: "NONE" });
    expect(forced.version).toBe(3);
  });

  it("encodes in the Confluent wire format and decodes with the writer's or a reader's schema", async () => {
    const writer = registry.version(subject, 1);
    const message = registry.encode(writer, { path: "/watch/42", at: 1_700_000_000_000 });
    expect(message[0]).toBe(0);
    expect(message.readUInt32BE(1)).toBe(writer.id);
    expect(await registry.decode(message)).toEqual({ path: "/watch/42", at: 1_700_000_000_000 });
    // Resolved into v2: the added field takes its default.
    const reader = registry.version(subject, 2).type;
    expect(await registry.decode(message, reader)).toEqual({
      path: "/watch/42",
      at: 1_700_000_000_000,
      referrer: null,
    });
    expect(() => registry.encode(writer, { path: 42 })).toThrow();
  });

  it("a second registry reads what the first registered, and names unknown ids", async () => {
    other = await SchemaRegistry.connect({ brokers: testEnv().kafkaBrokers, topic: schemasTopic });
    expect(other.versions(subject).map((v) => v.version)).toEqual([1, 2, 3]);
    const message = registry.encode(registry.version(subject, 2), {
      path: "/",
      at: 1,
      referrer: "https://x.test/",
    });
    expect(await other.decode(message)).toEqual({ path: "/", at: 1, referrer: "https://x.test/" });

    const unknown = Buffer.from([0, 0x12, 0x34, 0x56, 0x78, 2, 0x61]);
    await expect(other.decode(unknown)).rejects.toBeInstanceOf(UnknownSchemaIdError);
    await expect(other.decode(unknown)).rejects.toThrow(/schema id 305419896 is not registered/);
    await expect(other.decode(Buffer.from([1, 0, 0, 0, 1]))).rejects.toThrow(/magic byte 1, expected 0/);
  });

  it("registrations racing from two registries end with distinct versions in both", async () => {
    const raceSubject = subjectForTopic(uniqueName("race"));
    const a = { ...v1, fields: [...v1.fields, { name: "a", type: "int", default: 0 }] };
    const b = { ...v1, fields: [...v1.fields, { name: "b", type: "int", default: 0 }] };
    await registry.register(raceSubject, v1);
    await other!.sync();
    const [ra, rb] = await Promise.all([
      registry.register(raceSubject, a, { compatibility: "NONE" }),
      other!.register(raceSubject, b, { compatibility: "NONE" }),
    ]);
    expect(new Set([ra.version, rb.version])).toEqual(new Set([2, 3]));
    await registry.sync();
    await other!.sync();
    expect(registry.versions(raceSubject).map((v) => v.id)).toEqual(
      other!.versions(raceSubject).map((v) => v.id),
    );
  });
});
