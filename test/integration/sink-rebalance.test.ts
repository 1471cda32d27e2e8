/**
 * Two sinks in one consumer group, the second joining while the first is writing: partitions
 * move, the first drops the open files of the partitions it lost, and the new owner starts from
 * the committed offsets. Every record must be in the closed files exactly once.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Admin, Kafka } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SchemaRegistry } from "../../src/dataplane/avro/registry.js";
import { ConfluentAvroDecoder } from "../../src/dataplane/sink/decode.js";
import { SinkMetrics } from "../../src/dataplane/sink/metrics.js";
import { parquetFileWriterFactory } from "../../src/dataplane/sink/parquetFile.js";
import { Sink } from "../../src/dataplane/sink/sink.js";
import { LocalDirectoryTarget } from "../../src/dataplane/sink/target.js";
import { createLogger } from "../../src/log.js";
import { clickEvents } from "../support/click-events.js";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics } from "../support/kafka.js";
import {
  committedToEnd,
  kafkaClient,
  produceClickEvents,
  readSinkOutput,
  waitFor,
} from "../support/sink-kafka.js";

describe("two sinks in one group while partitions move", () => {
  const brokers = testEnv().kafkaBrokers;
  const topic = uniqueName("sink-rebalance");
  const schemasTopic = uniqueName("sink-rebalance-schemas");
  const groupId = uniqueName("sink-rebalance-group");
  const first = clickEvents(3_000, { seed: 3, startMs: Date.UTC(2026, 10, 26, 7), spanMs: 30 * 60_000 });
  const second = clickEvents(2_000, {
    seed: 4,
    startMs: Date.UTC(2026, 10, 26, 7, 30),
    spanMs: 20 * 60_000,
  }).map((event, i) => ({
    ...event,
    eventId: `22222222-0000-4000-8000-${i.toString(16).padStart(12, "0")}`,
  }));
  let dir: string;
  let kafka: Kafka;
  let admin: Admin;
  let registry: SchemaRegistry;
  let deleteTopics: () => Promise<void> = async () => undefined;
  const sinks: Sink[] = [];

  const metrics = new Map<string, SinkMetrics>();
  const newSink = (writerId: string) => {
    metrics.set(writerId, new SinkMetrics());
    return new Sink({
      brokers,
      topic,
      groupId,
      format: "parquet",
      target: new LocalDirectoryTarget(dir),
      writerFactory: parquetFileWriterFactory({ rowGroupRows: 100 }),
      roll: { maxBytes: 16 * 1024, maxAgeMs: 1_500 },
      decoder: new ConfluentAvroDecoder(registry),
      deadLetterTopic: `${topic}.dlq`,
      eventTimeField: "eventTime",
      writerId,
      metrics: metrics.get(writerId)!,
      log: createLogger("sink-rebalance-test", { writerId }),
    });
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "sink-rebalance-"));
    deleteTopics = await createTopics(brokers, [
      { topic, numPartitions: 4 },
      { topic: `${topic}.dlq`, numPartitions: 1 },
    ]);
    kafka = kafkaClient(brokers, "sink-rebalance-test");
    admin = kafka.admin();
    await admin.connect();
    registry = await SchemaRegistry.connect({ brokers, topic: schemasTopic });
  });

  afterAll(async () => {
    for (const sink of sinks) await sink.stop().catch(() => undefined);
    await registry?.close();
    await admin?.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
    await admin?.disconnect();
    await deleteTopics();
    await rm(dir, { recursive: true, force: true });
  });

  it("writes every record exactly once across both members", async () => {
    await produceClickEvents(kafka, registry, topic, first);
    const a = newSink("member_a");
    sinks.push(a);
    await a.start();
    await waitFor("the first member to close some files", async () => {
      const files = (await readdir(dir, { recursive: true })).map(String);
      return files.filter((f) => f.endsWith(".parquet")).length >= 4;
    });

    const b = newSink("member_b");
    sinks.push(b);
    await b.start();
    await produceClickEvents(kafka, registry, topic, second);
    await waitFor("both members to be in the group and every partition committed to its end", async () => {
      return a.ready() && b.ready() && (await committedToEnd(admin, groupId, topic));
    });
    await Promise.all([a.stop(), b.stop()]);

    const output = await readSinkOutput(dir, "parquet");
    expect(output.temporary).toEqual([]);
    const ids = output.files.flatMap((file) => file.rows.map((row) => row.eventId as string));
    expect(ids).toHaveLength(first.length + second.length);
    expect(new Set(ids)).toEqual(new Set([...first, ...second].map((event) => event.eventId)));
    expect(new Set(output.files.map((file) => file.path.split("/").pop()!.split("-").length))).toHaveLength(
      1,
    );
  }, 240_000);
});
