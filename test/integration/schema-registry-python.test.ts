/**
 * The proof that consumers outside Tributary decode its Avro messages: confluent-kafka's Python
 * `AvroDeserializer` with a `SchemaRegistryClient` pointed at `tributary schema-registry` reads
 *   - the clickstream events a real Tributary collector produced, and
 *   - change-event-like rows with decimals, timestamps, enums, unions, arrays, maps, uuids and bytes
 *     written with registry.ts's wire format (as the CDC connector writes them),
 * and, the other way round, Tributary's registry decodes what confluent-kafka's `AvroSerializer`
 * registered through the REST API and produced.
 *
 * confluent-kafka (with fastavro and its Schema Registry client) is installed with pip into a venv
 * this test creates. pip reaches PyPI where these tests run: a venv or install that fails is a
 * failure that says so, never a skip.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import kafkajs from "kafkajs";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SchemaRegistry, subjectForTopic } from "../../src/dataplane/avro/registry.js";
import { collectorConfigSchema } from "../../src/dataplane/clickstream/config.js";
import { type RunningCollector, startCollector } from "../../src/dataplane/clickstream/main.js";
import { schemaRegistryConfigSchema } from "../../src/dataplane/registry/config.js";
import { type RunningSchemaRegistry, startSchemaRegistryServer } from "../../src/dataplane/registry/main.js";
import { connectorEnv, createDatabase, startConnector, waitUntil } from "../support/cdc.js";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics, readTopic } from "../support/kafka.js";

const run = promisify(execFile);
const logger = pino({ level: process.env.TRIBUTARY_LOG_LEVEL ?? "silent" });

/** Consumes `count` messages of a topic with confluent-kafka's AvroDeserializer; prints JSON lines. */
const CONSUME = String.raw`
import datetime, decimal, json, sys, time, uuid
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, registry_url, topic, count, group = sys.argv[1:6]
registry = SchemaRegistryClient({"url": registry_url})
deserializer = AvroDeserializer(registry)
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
consumer.subscribe([topic])

def plain(value):
    if isinstance(value, datetime.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": value.hex()}
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(repr(value))

seen = 0
deadline = time.time() + 90
while seen < int(count) and time.time() < deadline:
    message = consumer.poll(1.0)
    if message is None:
        continue
    if message.error():
        raise SystemExit("consumer error: %s" % message.error())
    value = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))
    print(json.dumps({"partition": message.partition(), "offset": message.offset(), "value": value}, default=plain))
    seen += 1
consumer.close()
if seen < int(count):
    raise SystemExit("read %d of %d messages in 90 s" % (seen, int(count)))
`;

/** Registers a schema through AvroSerializer (auto.register.schemas) and produces records with it. */
const PRODUCE = String.raw`
import json, sys
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, registry_url, topic, schema, records = sys.argv[1:6]
registry = SchemaRegistryClient({"url": registry_url})
serializer = AvroSerializer(registry, schema)
producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
for record in json.loads(records):
    producer.produce(topic, value=serializer(record, SerializationContext(topic, MessageField.VALUE)))
if producer.flush(60) != 0:
    raise SystemExit("messages not delivered")
print(json.dumps({"id": registry.get_latest_version(topic + "-value").schema_id}))
`;

/** The kind of row a CDC connector writes: the types that matter to a faithful mapping. */
const changeSchema = {
  type: "record",
  name: "Row",
  namespace: "dev.tributary.cdc.test",
  fields: [
    { name: "id", type: "long" },
    { name: "amount", type: { type: "bytes", logicalType: "decimal", precision: 10, scale: 2 } },
    { name: "updatedAt", type: { type: "long", logicalType: "timestamp-micros" } },
    { name: "status", type: { type: "enum", name: "Status", symbols: ["ACTIVE", "GONE"] } },
    { name: "note", type: ["null", "string"], default: null },
    { name: "tags", type: { type: "array", items: "string" } },
    { name: "attrs", type: { type: "map", values: "long" } },
    { name: "uid", type: { type: "string", logicalType: "uuid" } },
    { name: "payload", type: "bytes" },
  ],
};

/** The unscaled value of a decimal, big-endian two's complement, as Avro's decimal stores it. */
function decimalBytes(unscaled: bigint): Buffer {
  let bytes = 1;
  const bound = () => 1n << BigInt(8 * bytes - 1);
  while (unscaled < -bound() || unscaled >= bound()) bytes++;
  return Buffer.from(
    BigInt.asUintN(8 * bytes, unscaled)
      .toString(16)
      .padStart(2 * bytes, "0"),
    "hex",
  );
}

describe("schema-registry: confluent-kafka's Python Avro clients decode Tributary's messages", () => {
  const brokers = testEnv().kafkaBrokers;
  const schemasTopic = uniqueName("schemas-py");
  const clicks = uniqueName("clicks-py");
  const changes = uniqueName("changes-py");
  const fromPython = uniqueName("from-py");
  const venv = mkdtempSync(join(tmpdir(), "tributary-registry-py-"));
  let python: string;
  let server: RunningSchemaRegistry;
  let collector: RunningCollector;
  let registry: SchemaRegistry;
  let deleteTopics: () => Promise<void>;

  beforeAll(async () => {
    const step = async (what: string, file: string, args: string[], timeout: number) => {
      try {
        await run(file, args, { timeout });
      } catch (error) {
        const { message, stderr } = error as Error & { stderr?: string };
        throw new Error(
          `cannot ${what} (python3 with venv and pip reaching PyPI are this test's dependencies; ` +
            `a failure here is a failure, not a skip): ${message.split("\n")[0]}\n${stderr ?? ""}`,
        );
      }
    };
    await step(
      "create a Python venv (python3 -m venv; Debian needs python3-venv)",
      "python3",
      ["-m", "venv", venv],
      120_000,
    );
    await step(
      "install confluent-kafka[avro,schemaregistry] with pip",
      join(venv, "bin", "pip"),
      ["install", "--quiet", "confluent-kafka[avro,schemaregistry]"],
      300_000,
    );
    python = join(venv, "bin", "python");

    deleteTopics = await createTopics(brokers, [
      { topic: clicks, numPartitions: 3 },
      { topic: `${clicks}.dlq`, numPartitions: 1 },
      { topic: changes, numPartitions: 2 },
      { topic: fromPython, numPartitions: 1 },
    ]);
    server = await startSchemaRegistryServer(
      schemaRegistryConfigSchema.parse({ brokers, schemasTopic, host: "127.0.0.1", port: 0 }),
      logger,
    );
    await server.ready;
    collector = await startCollector(
      collectorConfigSchema.parse({
        brokers,
        topic: clicks,
        schemasTopic,
        host: "127.0.0.1",
        port: 0,
        collectorId: "collector-py-0",
      }),
      logger,
    );
    registry = await SchemaRegistry.connect({ brokers, topic: schemasTopic });
  }, 480_000);

  afterAll(async () => {
    await Promise.allSettled([collector?.close(), server?.close(), registry?.close()]);
    await deleteTopics?.();
    const kafka = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
    await admin.disconnect();
    rmSync(venv, { recursive: true, force: true });
  });

  async function consumeWithPython(topic: string, count: number) {
    const { stdout } = await run(
      python,
      ["-c", CONSUME, brokers.join(","), server.url, topic, String(count), uniqueName("py-group")],
      { timeout: 150_000 },
    );
    return stdout
      .trim()
      .split("\n")
      .map(
        (line) => JSON.parse(line) as { partition: number; offset: number; value: Record<string, unknown> },
      );
  }

  it("decodes the clickstream events a Tributary collector produced", async () => {
    const sent = Array.from({ length: 12 }, (_, i) => ({
      eventType: i % 2 ? "click" : "page_view",
      eventTime: new Date(Date.UTC(2026, 11, 6, 3, 0, i, 250)).toISOString(),
      sessionId: `session-${i % 4}`,
      request: { method: "GET", url: `https://tube.example/watch?v=v${i}`, videoId: `v${i}` },
    }));
    const response = await fetch(`${collector.url}/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "registry-test/1.0" },
      body: JSON.stringify({ events: sent }),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ accepted: 12, refused: 0 });

    const decoded = await consumeWithPython(clicks, 12);
    const written = await readTopic(brokers, clicks);
    expect(decoded).toHaveLength(written.length);
    for (const message of written) {
      const reference = (await registry.decode(message.value)) as Record<string, unknown> & {
        eventTime: number;
        receivedAt: number;
      };
      const python = decoded.find(
        (d) => d.partition === message.partition && String(d.offset) === message.offset,
      );
      expect(python, `message ${message.partition}/${message.offset} not read by Python`).toBeDefined();
      const value = python!.value as Record<string, unknown> & {
        eventTime: { datetime: string };
        receivedAt: { datetime: string };
      };
      expect(Date.parse(value.eventTime.datetime)).toBe(reference.eventTime);
      expect(Date.parse(value.receivedAt.datetime)).toBe(reference.receivedAt);
      const { eventTime: _a, receivedAt: _b, ...rest } = value;
      const { eventTime: _c, receivedAt: _d, ...expected } = reference;
      expect(rest).toEqual(expected);
    }
    expect(decoded.map((d) => (d.value.request as { videoId: string }).videoId).sort()).toEqual(
      sent.map((e) => e.request.videoId).sort(),
    );
    // The id in every message is the one the REST API serves for the topic's subject.
    const latest = (await (
      await fetch(`${server.url}/subjects/${subjectForTopic(clicks)}/versions/latest`)
    ).json()) as {
      id: number;
    };
    expect(latest.id).toBe(collector.schemaId);
  });

  it("decodes the Avro change events of a CDC connector streaming a real table", async () => {
    const db = await createDatabase("registry_py_cdc");
    let connector: Awaited<ReturnType<typeof startConnector>> | undefined;
    try {
      await db.query(
        "CREATE TABLE public.accounts (id bigint PRIMARY KEY, balance numeric(12,2), opened timestamptz, tags text[], owner uuid, active boolean)",
      );
      await db.query(
        "INSERT INTO public.accounts VALUES (1, 1234.50, '2026-12-06T03:00:00.123456Z', '{a,b}', '6f1c2a3e-0000-4000-8000-000000000001', true)",
      );
      const env = connectorEnv(db, { FORMAT: "avro", SCHEMAS_TOPIC: schemasTopic });
      connector = await startConnector(env);
      await waitUntil(
        "the connector streaming",
        async () => (await connector!.status()).state === "streaming",
      );
      await db.query("UPDATE public.accounts SET balance = 99.95, active = false WHERE id = 1");
      await db.query("DELETE FROM public.accounts WHERE id = 1");
      const topic = `${env.TRIBUTARY_CDC_TOPIC_PREFIX}.public.accounts`;
      // The snapshot read, the update and the delete (the delete's tombstone has no value).
      const decoded = (await consumeWithPython(topic, 3)).filter((message) => message.value !== null);
      const ops = decoded.map((message) => message.value.op);
      expect(ops).toEqual(["r", "u", "d"]);
      const update = decoded[1]!.value as {
        before: Record<string, unknown>;
        after: Record<string, unknown>;
        source: Record<string, unknown>;
      };
      expect(update.source).toMatchObject({ connector: "postgresql", schema: "public", table: "accounts" });
      expect(update.after).toMatchObject({ id: 1, active: false, tags: ["a", "b"] });
      expect(update.before).toMatchObject({ id: 1, active: true });
      // Each value decodes to the same record through Tributary's own registry.
      const written = (await readTopic(brokers, topic)).filter((message) => message.value.length > 0);
      expect(written).toHaveLength(3);
      const reference = (await registry.decode(written[1]!.value)) as { op: string };
      expect(reference.op).toBe("u");
    } finally {
      await connector?.stop();
      await db.drop();
    }
  });

  it("decodes decimals, timestamps, enums, unions, arrays, maps, uuids and bytes written with registry.ts", async () => {
    const registered = await registry.register(subjectForTopic(changes), changeSchema);
    const rows = [
      {
        id: 1,
        amount: decimalBytes(1234567n),
        updatedAt: 1_765_000_000_123_456,
        status: "ACTIVE",
        note: null,
        tags: ["a", "b"],
        attrs: { x: 1, y: -2 },
        uid: "0b5e2a5c-6a8e-4c4b-9d0f-1f2e3d4c5b6a",
        payload: Buffer.from([0, 255, 16]),
      },
      {
        id: 2,
        amount: decimalBytes(-5n),
        updatedAt: 0,
        status: "GONE",
        note: "gone, with a note: é",
        tags: [],
        attrs: {},
        uid: "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        payload: Buffer.alloc(0),
      },
    ];
    const kafka = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING });
    const producer = kafka.producer();
    await producer.connect();
    try {
      await producer.send({
        topic: changes,
        acks: -1,
        messages: rows.map((row) => ({ key: String(row.id), value: registry.encode(registered, row) })),
      });
    } finally {
      await producer.disconnect();
    }

    const decoded = (await consumeWithPython(changes, 2))
      .map((d) => d.value)
      .sort((a, b) => Number(a.id) - Number(b.id));
    expect(decoded).toEqual([
      {
        id: 1,
        amount: { decimal: "12345.67" },
        updatedAt: { datetime: "2025-12-06T05:46:40.123456+00:00" },
        status: "ACTIVE",
        note: null,
        tags: ["a", "b"],
        attrs: { x: 1, y: -2 },
        uid: "0b5e2a5c-6a8e-4c4b-9d0f-1f2e3d4c5b6a",
        payload: { bytes: "00ff10" },
      },
      {
        id: 2,
        amount: { decimal: "-0.05" },
        updatedAt: { datetime: "1970-01-01T00:00:00+00:00" },
        status: "GONE",
        note: "gone, with a note: é",
        tags: [],
        attrs: {},
        uid: "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        payload: { bytes: "" },
      },
    ]);
  });

  it("Tributary decodes what confluent-kafka's AvroSerializer registered through the REST API and produced", async () => {
    const schema = JSON.stringify({
      type: "record",
      name: "Purchase",
      namespace: "com.example",
      fields: [
        { name: "sku", type: "string" },
        { name: "quantity", type: "int" },
        { name: "coupon", type: ["null", "string"], default: null },
      ],
    });
    const records = [
      { sku: "tv-55", quantity: 1, coupon: null },
      { sku: "hdmi", quantity: 3, coupon: "SAVE10" },
    ];
    const { stdout } = await run(
      python,
      ["-c", PRODUCE, brokers.join(","), server.url, fromPython, schema, JSON.stringify(records)],
      { timeout: 120_000 },
    );
    const { id } = JSON.parse(stdout.trim().split("\n").at(-1)!) as { id: number };
    const messages = await readTopic(brokers, fromPython);
    expect(messages).toHaveLength(2);
    for (const message of messages) expect(message.value.readUInt32BE(1)).toBe(id);
    const values = await Promise.all(messages.map((message) => registry.decode(message.value)));
    expect(values).toEqual(records);
    await registry.sync();
    expect(registry.latest(subjectForTopic(fromPython)).id).toBe(id);
  });
});
