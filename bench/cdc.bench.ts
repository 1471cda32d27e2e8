/**
 * The CDC connector from commit to Kafka acknowledgement, beside the source's own write rate, in
 * the same run, against the test environment's PostgreSQL 15 and Kafka (a database and topics of
 * its own: 6 partitions, replication 3, acks=-1, idempotent producer, JSON).
 *
 * - reference: the same inserts (transactions of 1,000 rows of 5 columns, INSERT ... SELECT) into
 *   a table no publication captures, with no connector running: what the source writes alone.
 * - raw producer: a kafkajs producer (idempotent, acks=-1) sending messages of the connector's
 *   size in sends of maxBatchSize, one after another, to a topic of the same shape: what Kafka
 *   and kafkajs take on this machine with nothing else to do; the connector cannot beat it.
 * - connector: the same inserts into a captured table while the connector streams them (in this
 *   process). Sustained changes/s is rows over the time from the first commit to Kafka's
 *   acknowledgement of the last event; commit-to-ack is per transaction, from PostgreSQL's commit
 *   timestamp to the acknowledgement of its last event. Lag is the largest WAL distance between
 *   the server and the slot's confirmed flush LSN seen while it ran.
 *
 * - CPU ceiling: pgoutput Insert frames decoded, converted and encoded as JSON envelopes in a loop,
 *   no I/O: the events/s one core gives the connector's own work.
 *
 *   npm run bench -- cdc        (BENCH_CDC_ROWS=200000, BENCH_CDC_BATCH=2048,8192)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import kafkajs from "kafkajs";
import pg from "pg";
import { parseCdcConfig } from "../src/dataplane/cdc/config.js";
import { Connector } from "../src/dataplane/cdc/connector.js";
import { TableCodec } from "../src/dataplane/cdc/events.js";
import { CdcMetrics } from "../src/dataplane/cdc/metrics.js";
import { decodePgOutput } from "../src/dataplane/cdc/pgoutput.js";
import { TypeCatalog } from "../src/dataplane/cdc/values.js";
import { createKafkaClient } from "../src/dataplane/kafkaClient.js";
import { createLogger } from "../src/log.js";
import { connectorEnv, createDatabase } from "../test/support/cdc.js";
import { testEnv } from "../test/support/env.js";
import { createTopics } from "../test/support/kafka.js";

const ROWS = Number(process.env.BENCH_CDC_ROWS ?? 200_000);
const PER_TX = 1_000;
const BATCHES = (process.env.BENCH_CDC_BATCH ?? "2048,8192").split(",").map(Number);

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function insertAll(
  client: pg.Client,
  table: string,
  start: number,
): Promise<{ firstCommit: number; seconds: number }> {
  const began = performance.now();
  let firstCommit = 0;
  for (let from = start; from < start + ROWS; from += PER_TX) {
    await client.query(
      `INSERT INTO ${table} SELECT g, g % 1000, (g % 100000) / 100.0, 'note ' || g, now() FROM generate_series($1::bigint, $2::bigint) g`,
      [from, from + PER_TX - 1],
    );
    if (firstCommit === 0) firstCommit = Date.now();
  }
  return { firstCommit, seconds: (performance.now() - began) / 1000 };
}

/** Raw kafkajs producer: `count` messages of `size` bytes in sends of `batch`, one in flight. */
async function rawProducer(count: number, size: number, batch: number): Promise<number> {
  const kafka = new kafkajs.Kafka({ brokers: testEnv().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  const topic = `bench-cdc-raw-${Date.now().toString(36)}`;
  const deleteTopic = await createTopics(testEnv().kafkaBrokers, [{ topic, numPartitions: 6 }]);
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  const value = "x".repeat(size);
  const messages = Array.from({ length: count }, (_, i) => ({ key: `{"id":${i}}`, value }));
  // Warm the metadata and connections.
  await producer.send({ topic, acks: -1, messages: messages.slice(0, 10) });
  const began = performance.now();
  for (let i = 0; i < count; i += batch) {
    await producer.sendBatch({
      acks: -1,
      topicMessages: [{ topic, messages: messages.slice(i, i + batch) }],
    });
  }
  const seconds = (performance.now() - began) / 1000;
  await producer.disconnect();
  await deleteTopic();
  return count / seconds;
}

/**
 * The decoder evaluated for this role, `pg-logical-replication`, beside the connector's own on the
 * same Insert frames, when it is installed (`npm install --no-save pg-logical-replication`; it is
 * not a dependency). Its parse converts values with `pg`'s type parsers, so both sides decode and
 * convert.
 */
async function compareDecoders(codec: TableCodec, frames: Buffer[]): Promise<void> {
  const name = "pg-logical-replication";
  const library = (await import(name).catch(() => undefined)) as
    | { PgoutputPlugin: new (o: object) => { parse(b: Buffer): unknown } }
    | undefined;
  if (!library) {
    console.log(`(${name} is not installed: npm install --no-save ${name} to compare decoders)\n`);
    return;
  }
  const relation = (oid: number) => {
    const columns: [string, number][] = [
      ["id", 20],
      ["account", 23],
      ["amount", 1700],
      ["note", 25],
      ["at", 1184],
    ];
    const parts: Buffer[] = [
      Buffer.from("R"),
      Buffer.alloc(4),
      Buffer.from("public\0bench\0f"),
      Buffer.alloc(2),
    ];
    parts[1]!.writeInt32BE(oid);
    parts[3]!.writeInt16BE(columns.length);
    for (const [index, [column, type]] of columns.entries()) {
      const tail = Buffer.alloc(8);
      tail.writeInt32BE(type);
      tail.writeInt32BE(-1, 4);
      parts.push(Buffer.from([index === 0 ? 1 : 0]), Buffer.from(`${column}\0`), tail);
    }
    return Buffer.concat(parts);
  };
  const plugin = new library.PgoutputPlugin({ protoVersion: 1, publicationNames: ["bench"] });
  plugin.parse(relation(0x4000));
  const count = 300_000;
  const rounds: { library: number; own: number }[] = [];
  for (let round = 0; round < 5; round++) {
    let began = performance.now();
    for (let i = 0; i < count; i++) plugin.parse(frames[i % frames.length]!);
    const libraryRate = count / ((performance.now() - began) / 1000);
    began = performance.now();
    for (let i = 0; i < count; i++) {
      const message = decodePgOutput(frames[i % frames.length]!);
      if (message.tag === "insert") codec.tupleRow(message.after);
    }
    rounds.push({ library: libraryRate, own: count / ((performance.now() - began) / 1000) });
  }
  const median = (values: number[]) => values.sort((a, b) => a - b)[2]!;
  const own = median(rounds.map((r) => r.own));
  const theirs = median(rounds.map((r) => r.library));
  console.log(
    `decode + convert of Insert frames (median of 5): own ${fmt(own)}/s, ${name} ${fmt(theirs)}/s, ratio ${fmt(own / theirs, 2)}\n`,
  );
}

/** The connector's own work per event, no I/O: decode an Insert frame, convert, encode the envelope. */
async function cpuCeiling(client: pg.Client): Promise<{ perSecond: number; bytes: number }> {
  const catalog = new TypeCatalog();
  await catalog.load(client);
  const oids = { int8: 20, int4: 23, numeric: 1700, text: 25, timestamptz: 1184 };
  const codec = new TableCodec("public", "bench", "bench", "json", catalog, ["id"]);
  codec.adopt([
    { name: "id", typeOid: oids.int8 },
    { name: "account", typeOid: oids.int4 },
    { name: "amount", typeOid: oids.numeric },
    { name: "note", typeOid: oids.text },
    { name: "at", typeOid: oids.timestamptz },
  ]);
  const frame = (id: number) => {
    const values = [String(id), String(id % 1000), "123.45", `note ${id}`, "2026-12-06 03:50:00.123456+00"];
    const parts: Buffer[] = [Buffer.from([0x49, 0, 0, 0x40, 0, 0x4e]), Buffer.from([0, values.length])];
    for (const v of values) {
      const text = Buffer.from(v);
      const head = Buffer.alloc(5);
      head[0] = 0x74;
      head.writeInt32BE(text.length, 1);
      parts.push(head, text);
    }
    return Buffer.concat(parts);
  };
  const frames = Array.from({ length: 1000 }, (_, i) => frame(i + 1));
  await compareDecoders(codec, frames);
  const count = 200_000;
  let bytes = 0;
  const began = performance.now();
  for (let i = 0; i < count; i++) {
    const message = decodePgOutput(frames[i % 1000]!);
    if (message.tag !== "insert") throw new Error("not an insert");
    const after = codec.tupleRow(message.after);
    const value = codec.encodeValue({
      before: null,
      after,
      source: {
        version: "x",
        connector: "postgresql",
        name: "bench",
        ts_ms: 0,
        snapshot: "false",
        db: "bench",
        sequence: '["1","2"]',
        schema: "public",
        table: "bench",
        txId: 1,
        lsn: i,
        xmin: null,
      },
      op: "c",
      ts_ms: Date.now(),
      transaction: null,
    }) as string;
    codec.encodeKey(codec.key(after));
    bytes += value.length;
  }
  return { perSecond: count / ((performance.now() - began) / 1000), bytes: bytes / count };
}

export async function run(): Promise<void> {
  const db = await createDatabase("bench_cdc");
  const kafka = new kafkajs.Kafka({ brokers: testEnv().kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const writer = new pg.Client({ connectionString: db.url });
  await writer.connect();
  const rows: string[][] = [];
  let cpuCeilingOnce = async () => ({ perSecond: 0, bytes: 0 });
  try {
    const measured = await cpuCeiling(writer);
    cpuCeilingOnce = async () => measured;
    for (const [index, maxBatchSize] of BATCHES.entries()) {
      const captured = `captured_${index}`;
      const reference = `reference_${index}`;
      for (const table of [captured, reference]) {
        await db.query(
          `CREATE TABLE ${table} (id bigint PRIMARY KEY, account int, amount numeric(12,2), note text, at timestamptz)`,
        );
      }
      // Reference first, alone.
      const alone = await insertAll(writer, reference, 1);

      const stateDir = mkdtempSync(join(tmpdir(), "bench-cdc-"));
      const env = connectorEnv(db, {
        SLOT: `${db.name.slice(0, 40)}_${index}`,
        PUBLICATION: `${db.name.slice(0, 40)}_${index}`,
        TABLES_INCLUDE: `public.${captured}`,
        SNAPSHOT_MODE: "never",
        PARTITIONS: "6",
        MAX_BATCH_SIZE: String(maxBatchSize),
        STATE_DIR: stateDir,
      });
      const config = parseCdcConfig([], env);
      const log = createLogger("bench-cdc");
      log.level = "silent";
      const metrics = new CdcMetrics();
      const connector = new Connector({
        config,
        kafka: createKafkaClient({ clientId: "bench-cdc", brokers: config.kafkaBootstrap }),
        metrics,
        log,
      });
      const running = connector.run();
      const status = () =>
        connector.status() as { state: string; eventsTotal: number; lagBytes: number | null };
      while (status().state !== "streaming") await new Promise((r) => setTimeout(r, 100));
      let maxLag = 0;
      const lagPoll = setInterval(() => {
        void db
          .query(
            "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint AS lag FROM pg_replication_slots WHERE slot_name = $1",
            [config.slot],
          )
          .then((r) => {
            maxLag = Math.max(maxLag, Number(r.rows[0]?.lag ?? 0));
          })
          .catch(() => undefined);
      }, 250);
      const before = status().eventsTotal;
      connector.latencies.length = 0;
      const streamed = await insertAll(writer, captured, 1);
      while (status().eventsTotal - before < ROWS) await new Promise((r) => setTimeout(r, 20));
      const lastAck = Date.now();
      clearInterval(lagPoll);
      const sustained = ROWS / ((lastAck - streamed.firstCommit) / 1000);
      const latencies = connector.latencies.slice();
      await connector.stop();
      await running;
      rmSync(stateDir, { recursive: true, force: true });
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(config.topicPrefix));
      await admin.deleteTopics({ topics }).catch(() => undefined);
      const sourceRate = ROWS / alone.seconds;
      const raw = await rawProducer(ROWS, 520, maxBatchSize);
      rows.push([
        `maxBatchSize ${maxBatchSize}`,
        fmt(sourceRate),
        fmt(ROWS / streamed.seconds),
        fmt(sustained),
        fmt(sustained / sourceRate, 2),
        fmt(raw),
        fmt(sustained / raw, 2),
        fmt(percentile(latencies, 50)),
        fmt(percentile(latencies, 99)),
        fmt(maxLag / 1024 / 1024, 1),
      ]);
    }
  } finally {
    await writer.end();
    await admin.disconnect();
    await db.drop();
  }
  const ceiling = await cpuCeilingOnce();
  console.log(
    `${fmt(ROWS)} inserted rows in transactions of ${fmt(PER_TX)}; Kafka 6 partitions × RF 3, acks=-1, JSON\n`,
  );
  const header = [
    "connector",
    "source alone rows/s",
    "source while streaming",
    "commit→ack changes/s",
    "ratio to source",
    "raw producer msg/s",
    "ratio to raw",
    "p50 commit→ack ms",
    "p99 commit→ack ms",
    "max lag MiB",
  ];
  console.log(header.map((h, i) => (i === 0 ? h.padEnd(22) : h.padStart(i === 1 ? 20 : 24))).join(""));
  for (const row of rows) {
    console.log(row.map((c, i) => (i === 0 ? c.padEnd(22) : c.padStart(i === 1 ? 20 : 24))).join(""));
  }
  console.log(
    `\nCPU ceiling, one core, no I/O: decode pgoutput Insert + convert + JSON envelope ${fmt(ceiling.perSecond)} events/s (${fmt(ceiling.bytes)} bytes/event)`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
