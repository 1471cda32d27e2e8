import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Admin, Kafka } from "kafkajs";
import kafkajs from "kafkajs";
import { encodeWith, type SchemaRegistry, subjectForTopic } from "../../src/dataplane/avro/registry.js";
import { type ClickEvent, clickEventType } from "../../src/dataplane/clickstream/schema.js";
import { parseClosedFile } from "../../src/dataplane/sink/layout.js";
import { readAvro, readParquet } from "./sink-files.js";

const { Kafka: KafkaClient, logLevel } = kafkajs;

export function kafkaClient(brokers: string[], clientId: string): Kafka {
  return new KafkaClient({ clientId, brokers, logLevel: logLevel.NOTHING });
}

/** Registers the clickstream schema for `topic` and produces `events` keyed by session, as the collector does. */
export async function produceClickEvents(
  kafka: Kafka,
  registry: SchemaRegistry,
  topic: string,
  events: readonly ClickEvent[],
  extra: { key: string | null; value: Buffer | null }[] = [],
): Promise<void> {
  const registered = await registry.register(subjectForTopic(topic), clickEventType);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let start = 0; start < events.length; start += 500) {
      await producer.send({
        topic,
        acks: -1,
        messages: events.slice(start, start + 500).map((event) => ({
          key: event.sessionId,
          value: encodeWith(registered.id, registered.type, event),
        })),
      });
    }
    if (extra.length) await producer.send({ topic, acks: -1, messages: extra });
  } finally {
    await producer.disconnect();
  }
}

/** Whether the group's committed offsets reached the end of every partition of `topic`. */
export async function committedToEnd(admin: Admin, groupId: string, topic: string): Promise<boolean> {
  const ends = await admin.fetchTopicOffsets(topic);
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
  return ends.every((end) => {
    const entry = committed?.partitions.find((p) => p.partition === end.partition);
    return entry !== undefined && BigInt(entry.offset) >= BigInt(end.high);
  });
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 150_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface SinkOutput {
  /** Every closed file, with the rows an independent reader found in it. */
  files: {
    path: string;
    partition: number;
    firstOffset: bigint;
    lastOffset: bigint;
    rows: Record<string, unknown>[];
  }[];
  /** Temporary files still present. */
  temporary: string[];
}

export async function readSinkOutput(dir: string, format: "parquet" | "avro"): Promise<SinkOutput> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const output: SinkOutput = { files: [], temporary: [] };
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const relativePath = path.slice(dir.length + 1);
    if (entry.name.endsWith(".tmp")) {
      output.temporary.push(relativePath);
      continue;
    }
    const closed = parseClosedFile(relativePath);
    if (!closed) throw new Error(`unexpected file in the sink's target: ${relativePath}`);
    const { rows } = format === "parquet" ? await readParquet(path) : await readAvro(path);
    output.files.push({
      path: relativePath,
      partition: closed.partition,
      firstOffset: closed.firstOffset,
      lastOffset: closed.lastOffset,
      rows,
    });
  }
  output.files.sort((a, b) => a.partition - b.partition || Number(a.firstOffset - b.firstOffset));
  return output;
}

/** Reads `count` messages of a dead-letter topic with their headers as strings. */
export async function readDeadLetters(
  kafka: Kafka,
  topic: string,
  count: number,
): Promise<{ key: string | null; headers: Record<string, string> }[]> {
  const consumer = kafka.consumer({ groupId: `dlq-reader-${Date.now().toString(36)}`, maxWaitTimeInMs: 200 });
  const read: { key: string | null; headers: Record<string, string> }[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(message.headers ?? {})) headers[name] = String(value);
        read.push({ key: message.key?.toString("utf8") ?? null, headers });
      },
    });
    await waitFor(`${count} dead letters in ${topic}`, () => read.length >= count, 60_000);
  } finally {
    await consumer.disconnect();
  }
  return read;
}
