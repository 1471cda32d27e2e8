import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Admin, Kafka } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SchemaRegistry } from "../../src/dataplane/avro/registry.js";
import type { ClickEvent } from "../../src/dataplane/clickstream/schema.js";
import { avroFileWriterFactory } from "../../src/dataplane/sink/avroFile.js";
import { ConfluentAvroDecoder } from "../../src/dataplane/sink/decode.js";
import { type SinkFormat, timeBucket } from "../../src/dataplane/sink/layout.js";
import { SinkMetrics } from "../../src/dataplane/sink/metrics.js";
import { parquetFileWriterFactory } from "../../src/dataplane/sink/parquetFile.js";
import { DEAD_LETTER_HEADERS, Sink } from "../../src/dataplane/sink/sink.js";
import { LocalDirectoryTarget } from "../../src/dataplane/sink/target.js";
import { createLogger } from "../../src/log.js";
import { clickEvents } from "../support/click-events.js";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics } from "../support/kafka.js";
import {
  committedToEnd,
  kafkaClient,
  produceClickEvents,
  readDeadLetters,
  readSinkOutput,
  waitFor,
} from "../support/sink-kafka.js";

/** The Parquet reader gives timestamps as Date; the events carry epoch milliseconds. */
function normalise(row: Record<string, unknown>): ClickEvent {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) {
    out[key] =
      value instanceof Date ? value.getTime() : value && typeof value === "object" ? { ...value } : value;
  }
  return out as unknown as ClickEvent;
}

describe.each<SinkFormat>(["parquet", "avro"])("sink to %s files against real Kafka", (format) => {
  const brokers = testEnv().kafkaBrokers;
  const topic = uniqueName(`sink-${format}`);
  const schemasTopic = uniqueName("sink-schemas");
  const groupId = uniqueName("sink-group");
  const deadLetterTopic = `${topic}.dlq`;
  const events = clickEvents(3_000, { startMs: Date.UTC(2026, 10, 26, 6, 40), spanMs: 90 * 60_000 });
  let dir: string;
  let kafka: Kafka;
  let admin: Admin;
  let registry: SchemaRegistry;
  let deleteTopics: () => Promise<void> = async () => undefined;
  let sink: Sink | undefined;
  const metrics = new SinkMetrics();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `sink-${format}-`));
    deleteTopics = await createTopics(brokers, [
      { topic, numPartitions: 3 },
      { topic: deadLetterTopic, numPartitions: 1 },
    ]);
    kafka = kafkaClient(brokers, "sink-test");
    admin = kafka.admin();
    await admin.connect();
    registry = await SchemaRegistry.connect({ brokers, topic: schemasTopic });
  });

  afterAll(async () => {
    await sink?.stop();
    await registry?.close();
    await admin?.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
    await admin?.disconnect();
    await deleteTopics();
    await rm(dir, { recursive: true, force: true });
  });

  it("writes every record once into dt=/hr= files, dead-letters the undecodable, commits to the end", async () => {
    const undecodable = [
      { key: "garbage", value: Buffer.from("not avro at all") },
      { key: "unknown-id", value: Buffer.from([0, 0x7f, 0xff, 0xff, 0xfe, 1, 2, 3]) },
      { key: "tombstone", value: null },
    ];
    await produceClickEvents(kafka, registry, topic, events, undecodable);

    sink = new Sink({
      brokers,
      topic,
      groupId,
      format,
      target: new LocalDirectoryTarget(dir),
      writerFactory:
        format === "parquet"
          ? parquetFileWriterFactory({ rowGroupRows: 200, timestampFields: ["eventTime", "receivedAt"] })
          : avroFileWriterFactory("deflate"),
      roll: { maxBytes: 48 * 1024, maxAgeMs: 1_000 },
      decoder: new ConfluentAvroDecoder(registry),
      deadLetterTopic,
      eventTimeField: "eventTime",
      writerId: "itest",
      metrics,
      log: createLogger("sink-test"),
    });
    await sink.start();
    await waitFor("the sink to commit every partition to its end", () =>
      committedToEnd(admin, groupId, topic),
    );
    expect(sink.ready()).toBe(true);
    await sink.stop();
    sink = undefined;

    const output = await readSinkOutput(dir, format);
    expect(output.temporary).toEqual([]);
    // Every event exactly once, each in the directory of its event hour.
    const written = output.files.flatMap((file) => file.rows.map(normalise));
    expect(written).toHaveLength(events.length);
    const byId = new Map(events.map((event) => [event.eventId, event]));
    for (const row of written) expect(row).toEqual(byId.get(row.eventId));
    for (const file of output.files) {
      for (const row of file.rows)
        expect(file.path.startsWith(timeBucket(normalise(row).eventTime).directory)).toBe(true);
    }
    expect(new Set(output.files.map((file) => file.path.split("/").slice(0, 2).join("/")))).toEqual(
      new Set(["dt=2026-11-26/hr=06", "dt=2026-11-26/hr=07", "dt=2026-11-26/hr=08"]),
    );
    // Rolled by size: several files per partition, offset ranges that never overlap.
    expect(output.files.length).toBeGreaterThan(6);
    for (const partition of [0, 1, 2]) {
      const ranges = output.files.filter((file) => file.partition === partition);
      for (let i = 1; i < ranges.length; i++)
        expect(ranges[i]!.firstOffset).toBeGreaterThan(ranges[i - 1]!.lastOffset);
    }

    const dead = await readDeadLetters(kafka, deadLetterTopic, 3);
    expect(dead.map((message) => message.key).sort()).toEqual(["garbage", "tombstone", "unknown-id"]);
    const reasons = Object.fromEntries(dead.map((m) => [m.key, m.headers[DEAD_LETTER_HEADERS.reason]]));
    expect(reasons.garbage).toMatch(/magic byte/);
    expect(reasons["unknown-id"]).toMatch(/schema id 2147483646 is not registered/);
    expect(reasons.tombstone).toMatch(/no value/);
    for (const message of dead) expect(message.headers[DEAD_LETTER_HEADERS.topic]).toBe(topic);

    const text = await metrics.registry.metrics();
    const total = (name: string) =>
      [...text.matchAll(new RegExp(`^${name}\\{[^}]*\\} (\\d+)`, "gm"))].reduce(
        (sum, m) => sum + Number(m[1]),
        0,
      );
    expect(total("tributary_sink_records_written_total")).toBe(events.length);
    expect(total("tributary_sink_dead_letters_total")).toBe(3);
    expect(total("tributary_sink_files_closed_total")).toBe(output.files.length);
  }, 240_000);
});
