/**
 * The clickstream collector over HTTP on loopback beside a raw kafkajs producer in the same run,
 * against the test environment's Kafka (a topic of its own: 6 partitions, replication 3; acks=all,
 * idempotent producers, keyed by session, the same 20,000 events).
 *
 * - reference: the raw producer sending pre-encoded messages in sends of 1000, back to back — what
 *   kafkajs reaches when nothing but producing happens; the collector's ratio is taken against it.
 * - collector: HTTP clients (a child process, so their CPU is not counted as the collector's) post
 *   JSON; per scenario `concurrency` clients each send `batch` events and wait for the answer.
 *   Latency is ingest-to-ack per request: request written to response read.
 * - "one send per client batch": a raw producer called once per client batch, as a service that
 *   produces inside each request would, for comparison.
 * - single events: beside the collector, a plain Node HTTP server that answers every POST with a
 *   fixed 200 (no Kafka at all), driven by the same client process: the ceiling of Node's HTTP
 *   server on this machine, and the single-event scenario's reference.
 * Reference and collector rounds are interleaved and the medians printed, because the machine is
 * shared; CPU µs/event is this process's CPU time (collector or raw producer) per event.
 * Then Avro encoding (avsc, one cached Type; the collector's hand-written encoder from the validated
 * input) beside JSON.stringify on the same rows, and a Produce request of 1,000 of them written by
 * kafkajs's encoder (what the raw producer's sends cost) and by the collector's (recordBatch.ts).
 *
 *   npx tsx -e 'import("./bench/collector.bench.ts").then(m => m.run())'
 *
 * Brokers: TRIBUTARY_BENCH_KAFKA_BROKERS, else the test environment's (scripts/testenv up kafka).
 * BENCH_SCENARIO=<index> runs one scenario only; BENCH_IN_FLIGHT=<n> sets the collector's
 * maxInFlightBatches, BENCH_LINGER_MS=<ms> its lingerMs.
 */

import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import kafkajs from "kafkajs";
import { pino } from "pino";
import { encodeWith } from "../src/dataplane/avro/registry.js";
import { collectorConfigSchema } from "../src/dataplane/clickstream/config.js";
import { encodeClickEvent } from "../src/dataplane/clickstream/encode.js";
import { startCollector } from "../src/dataplane/clickstream/main.js";
import type { CollectorMetrics } from "../src/dataplane/clickstream/metrics.js";
import { PreparedMessage, type ProduceRequestArgs } from "../src/dataplane/clickstream/recordBatch.js";
import {
  type ClickEvent,
  checkEvent,
  clickEventType,
  EVENT_TYPES,
  validateEvent,
} from "../src/dataplane/clickstream/schema.js";
import { testEnv } from "../test/support/env.js";

const { Kafka, Partitioners, logLevel } = kafkajs;

const SESSIONS = 2_000;
const ROUNDS = 5;
const ROWS = 20_000;

interface Scenario {
  name: string;
  batch: number;
  concurrency: number;
  requests: number;
}

// 20 clients × 50 events keep 1000 events waiting for Kafka, as the reference's sends of 1000 do:
// with acks=all, throughput is events in flight over acknowledgement latency on both sides.
const SCENARIOS: Scenario[] = [
  { name: "batches of 50, 40 clients", batch: 50, concurrency: 40, requests: 1_000 },
  { name: "batches of 50, 20 clients", batch: 50, concurrency: 20, requests: 1_000 },
  { name: "batches of 50, 8 clients", batch: 50, concurrency: 8, requests: 600 },
  { name: "single events, 128 clients", batch: 1, concurrency: 128, requests: 10_000 },
];

interface Figure {
  eventsPerSecond: number;
  p50: number;
  p99: number;
}

/** Client-side events, as a browser tracker sends them. */
function clientEvents(count: number): Record<string, unknown>[] {
  const now = Date.now();
  return Array.from({ length: count }, (_, i) => ({
    eventId: randomUUID(),
    eventType: EVENT_TYPES[i % EVENT_TYPES.length],
    eventTime: new Date(now - (count - i) * 10).toISOString(),
    sessionId: `bench-session-${i % SESSIONS}`,
    userId: i % 3 === 0 ? null : `user-${i % 997}`,
    userAgent:
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    referrer: i % 4 === 0 ? "https://www.search.example/?q=cat+videos" : null,
    request: {
      method: "GET",
      url: `https://tube.example/watch?v=vid${i % 5000}&t=${i % 600}`,
      videoId: `vid${i % 5000}`,
    },
  }));
}

/** The same events as the collector completes them, for the raw producer and the encode figures. */
function serverEvents(input: Record<string, unknown>[]): ClickEvent[] {
  return input.map((raw) => {
    const result = validateEvent(raw, {
      receivedAt: Date.now(),
      collectorId: "bench-collector",
      clientIp: "127.0.0.1",
      sessionId: "unused-session",
    });
    if (!result.ok) throw new Error(`bench event refused: ${JSON.stringify(result.errors)}`);
    return result.event;
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Runs `requests` calls of `one` with `concurrency` callers; events/s and per-call latency in ms. */
async function drive(scenario: Scenario, one: (index: number) => Promise<void>): Promise<Figure> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: scenario.concurrency }, async () => {
      for (let index = next++; index < scenario.requests; index = next++) {
        const t0 = performance.now();
        await one(index);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    eventsPerSecond: (scenario.requests * scenario.batch) / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}

/**
 * The HTTP clients run in a child process, as the collector's clients run elsewhere in production:
 * their request writing and response parsing must not be counted as the collector's CPU time.
 * Plain JavaScript, so it needs no TypeScript loader; bodies come one per line from a file.
 */
const CLIENT_SCRIPT = `
const { readFileSync } = require("node:fs");
const { Agent, request } = require("node:http");
const [file, port, concurrency] = process.argv.slice(1);
const bodies = readFileSync(file, "utf8").split("\\n").filter(Boolean).map((line) => Buffer.from(line));
const agent = new Agent({ keepAlive: true, maxSockets: Number(concurrency) });
function post(body) {
  return new Promise((resolve, reject) => {
    const req = request({ agent, host: "127.0.0.1", port: Number(port), path: "/v1/events", method: "POST",
      headers: { "content-type": "application/json", "content-length": body.length } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("error", reject);
    req.end(body);
  });
}
(async () => {
  const latencies = [];
  let next = 0;
  let refused = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: Number(concurrency) }, async () => {
    for (let i = next++; i < bodies.length; i = next++) {
      const t0 = performance.now();
      if ((await post(bodies[i])) !== 200) refused++;
      latencies.push(performance.now() - t0);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  process.stdout.write(JSON.stringify({ latencies, seconds, refused }));
})();
`;

interface Measured extends Figure {
  /** CPU time of this process (user + system) per event: the collector's, or the raw producer's. */
  cpuMicrosPerEvent: number;
}

async function driveHttp(
  scenario: Scenario,
  port: number,
  bodiesFile: string,
  count: number,
): Promise<Measured & { refused: number }> {
  const cpu = process.cpuUsage();
  const output = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ["-e", CLIENT_SCRIPT, bodiesFile, String(port), String(scenario.concurrency)],
      { maxBuffer: 64 * 1024 * 1024 },
      (error, stdout) => (error ? reject(error) : resolve(stdout)),
    );
  });
  const used = process.cpuUsage(cpu);
  const result = JSON.parse(output) as { latencies: number[]; seconds: number; refused: number };
  const latencies = result.latencies.sort((a, b) => a - b);
  return {
    eventsPerSecond: (count * scenario.batch) / result.seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuMicrosPerEvent: (used.user + used.system) / (count * scenario.batch),
    refused: result.refused,
  };
}

/** `drive` with this process's CPU time per event. */
async function driveRaw(scenario: Scenario, one: (index: number) => Promise<void>): Promise<Measured> {
  const cpu = process.cpuUsage();
  const figure = await drive(scenario, one);
  const used = process.cpuUsage(cpu);
  return { ...figure, cpuMicrosPerEvent: (used.user + used.system) / (scenario.requests * scenario.batch) };
}

/** Mean events per Kafka send and mean send latency since the last call, from the collector's own metrics. */
async function collectorBatches(metrics: CollectorMetrics): Promise<{ events: number; ms: number }> {
  const sum = async (
    metric: { get(): Promise<{ values: { metricName?: string; value: number }[] }> },
    suffix: string,
  ) => (await metric.get()).values.find((v) => v.metricName?.endsWith(suffix))?.value ?? 0;
  const batchCount = await sum(metrics.batchEvents, "_count");
  const result = {
    events: (await sum(metrics.batchEvents, "_sum")) / batchCount,
    ms: ((await sum(metrics.produceLatency, "_sum")) / batchCount) * 1000,
  };
  metrics.batchEvents.reset();
  metrics.produceLatency.reset();
  return result;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function medianFigure(figures: Measured[]): Measured {
  return {
    eventsPerSecond: median(figures.map((f) => f.eventsPerSecond)),
    p50: median(figures.map((f) => f.p50)),
    p99: median(figures.map((f) => f.p99)),
    cpuMicrosPerEvent: median(figures.map((f) => f.cpuMicrosPerEvent)),
  };
}

/**
 * CPU µs per record of a Produce request body of 1,000 encoded rows over 6 partitions, as a send
 * of the collector or the raw producer makes it: kafkajs's encoder for plain messages, the
 * collector's own for PreparedMessages, through the one kafkajs request definition both take.
 */
async function produceRequestFigures(
  encoded: { key: string; value: Buffer }[],
): Promise<{ kafkajs: number; collector: number; bytes: number }> {
  const require = createRequire(import.meta.url);
  const { requests } = require("kafkajs/src/protocol/requests/index.js");
  const Long = require("kafkajs/src/utils/long.js");
  const produce = requests.Produce.protocol({ version: 7 });
  const args = (prepared: boolean): ProduceRequestArgs => ({
    acks: -1,
    timeout: 30_000,
    producerId: Long.fromValue(1),
    producerEpoch: 0,
    compression: 0,
    topicData: [
      {
        topic: "bench-clicks",
        partitions: Array.from({ length: 6 }, (_, partition) => ({
          partition,
          firstSequence: 0,
          messages: encoded
            .slice(0, 1000)
            .filter((_, i) => i % 6 === partition)
            .map((m) => (prepared ? new PreparedMessage(m.key, m.value, partition) : { ...m })),
        })),
      },
    ],
  });
  const perRecord = async (prepared: boolean) => {
    const request = args(prepared);
    const rounds: number[] = [];
    let bytes = 0;
    for (let round = -1; round < 5; round++) {
      const cpu = process.cpuUsage();
      for (let k = 0; k < 20; k++) bytes = (await produce(request).request.encode()).offset;
      const used = process.cpuUsage(cpu);
      if (round >= 0) rounds.push((used.user + used.system) / 20 / 1000);
    }
    return { micros: median(rounds), bytes };
  };
  const kafkajsFigure = await perRecord(false);
  const collectorFigure = await perRecord(true);
  if (kafkajsFigure.bytes !== collectorFigure.bytes)
    throw new Error("the two Produce requests differ in size");
  return { kafkajs: kafkajsFigure.micros, collector: collectorFigure.micros, bytes: collectorFigure.bytes };
}

/** Median records/s of `encode` over the rows, and the bytes each record took. */
function encodeFigure(
  rows: ClickEvent[],
  encode: (row: ClickEvent) => number,
): { perSecond: number; bytes: number } {
  const rates: number[] = [];
  let bytes = 0;
  for (let round = -1; round < 5; round++) {
    bytes = 0;
    const t0 = performance.now();
    for (const row of rows) bytes += encode(row);
    if (round >= 0) rates.push(rows.length / ((performance.now() - t0) / 1000));
  }
  rates.sort((a, b) => a - b);
  return { perSecond: rates[2]!, bytes: bytes / rows.length };
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

export async function run(): Promise<void> {
  const brokers = process.env.TRIBUTARY_BENCH_KAFKA_BROKERS?.split(",") ?? testEnv().kafkaBrokers;
  const topic = `bench-clicks-${Date.now().toString(36)}`;
  const kafka = new Kafka({ clientId: "bench-raw", brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    waitForLeaders: false,
    topics: [
      { topic, numPartitions: 6, replicationFactor: Math.min(3, brokers.length) },
      { topic: `${topic}.dlq`, numPartitions: 1, replicationFactor: Math.min(3, brokers.length) },
    ],
  });
  for (let i = 0; i < 100; i++) {
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
    if (metadata?.topics[0]?.partitions.every((p) => p.leader >= 0)) break;
    await new Promise((r) => setTimeout(r, 100));
  }

  const input = clientEvents(ROWS);
  const rows = serverEvents(input);
  const logger = pino({ level: "silent" });
  const collector = await startCollector(
    collectorConfigSchema.parse({
      brokers,
      topic,
      // A schemas topic of its own, removed at the end: the bench leaves no subjects behind.
      schemasTopic: `${topic}-schemas`,
      host: "127.0.0.1",
      port: 0,
      collectorId: "bench-collector",
      ...(process.env.BENCH_IN_FLIGHT ? { maxInFlightBatches: process.env.BENCH_IN_FLIGHT } : {}),
      ...(process.env.BENCH_LINGER_MS ? { lingerMs: process.env.BENCH_LINGER_MS } : {}),
    }),
    logger,
  );
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  const encoded = rows.map((row) => ({
    key: row.sessionId,
    value: encodeWith(collector.schemaId, clickEventType, row),
  }));

  const sendRaw = (messages: { key: string; value: Buffer }[]) =>
    producer.send({ topic, acks: -1, messages });
  const reference: Scenario = {
    name: "sends of 1000, back to back",
    batch: 1000,
    concurrency: 1,
    requests: 30,
  };
  const referenceMessages = Array.from({ length: reference.requests }, (_, r) => {
    const start = (r * 1000) % (ROWS - 1000);
    return encoded.slice(start, start + 1000);
  });
  await drive({ ...reference, requests: 5 }, async (i) => void (await sendRaw(referenceMessages[i]!)));

  console.log(
    `\nclickstream collector vs raw kafkajs producer — ${brokers.length} brokers, topic of 6 partitions, acks=all, idempotent, loopback`,
  );
  console.log(
    `reference: raw kafkajs, pre-encoded messages in ${reference.name}; median of ${ROUNDS} interleaved rounds`,
  );
  console.log(
    `${"scenario".padEnd(44)}${"events/s".padStart(12)}${"p50 ms".padStart(10)}${"p99 ms".padStart(10)}${"CPU µs/event".padStart(14)}  ratio`,
  );
  const line = (name: string, f: Measured, ratio = "") =>
    console.log(
      `${name.padEnd(44)}${fmt(f.eventsPerSecond).padStart(12)}${fmt(f.p50, 2).padStart(10)}${fmt(f.p99, 2).padStart(10)}${fmt(f.cpuMicrosPerEvent, 1).padStart(14)}  ${ratio}`,
    );
  const dir = mkdtempSync(join(tmpdir(), "tributary-bench-collector-"));
  const plainServer = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json", "content-length": 2 });
      res.end("{}");
    });
  });
  plainServer.listen(0, "127.0.0.1");
  await once(plainServer, "listening");
  const plainPort = (plainServer.address() as AddressInfo).port;
  try {
    for (const [index, scenario] of SCENARIOS.entries()) {
      if (process.env.BENCH_SCENARIO && process.env.BENCH_SCENARIO !== String(index)) continue;
      const bodies = Array.from({ length: scenario.requests }, (_, r) => {
        const start = (r * scenario.batch) % (ROWS - scenario.batch);
        const slice = input.slice(start, start + scenario.batch);
        return JSON.stringify(scenario.batch === 1 ? slice[0] : { events: slice });
      });
      const bodiesFile = join(dir, `bodies-${index}.ndjson`);
      writeFileSync(bodiesFile, `${bodies.join("\n")}\n`);
      const warmFile = join(dir, `warm-${index}.ndjson`);
      writeFileSync(warmFile, `${bodies.slice(0, 200).join("\n")}\n`);
      const sameShape = Array.from({ length: scenario.requests }, (_, r) => {
        const start = (r * scenario.batch) % (ROWS - scenario.batch);
        return encoded.slice(start, start + scenario.batch);
      });
      await driveHttp(scenario, collector.port, warmFile, Math.min(200, bodies.length));
      await collectorBatches(collector.metrics);
      const references: Measured[] = [];
      const collectors: Measured[] = [];
      const plains: Measured[] = [];
      const single = scenario.batch === 1;
      if (single) await driveHttp(scenario, plainPort, warmFile, Math.min(200, bodies.length));
      let refused = 0;
      // Interleaved rounds: the machine is shared, so both sides see the same neighbours.
      for (let round = 0; round < ROUNDS; round++) {
        references.push(await driveRaw(reference, async (i) => void (await sendRaw(referenceMessages[i]!))));
        if (single) plains.push(await driveHttp(scenario, plainPort, bodiesFile, bodies.length));
        const http = await driveHttp(scenario, collector.port, bodiesFile, bodies.length);
        refused += http.refused;
        collectors.push(http);
      }
      const batches = await collectorBatches(collector.metrics);
      const ref = medianFigure(references);
      const http = medianFigure(collectors);
      // A service calling producer.send() once per client request, for comparison.
      const naive = await driveRaw(scenario, async (i) => void (await sendRaw(sameShape[i]!)));
      console.log(`-- ${scenario.name}`);
      line("raw kafkajs reference", ref);
      line(
        "raw kafkajs, one send per client batch",
        naive,
        `${fmt(naive.eventsPerSecond / ref.eventsPerSecond, 2)} of reference`,
      );
      line(
        "collector over HTTP",
        http,
        `${fmt(http.eventsPerSecond / ref.eventsPerSecond, 2)} of reference${refused ? ` (${refused} requests not 200)` : ""}`,
      );
      if (single) {
        const plain = medianFigure(plains);
        line("plain Node HTTP server, fixed 200", plain);
        console.log(
          `   collector: ${fmt(http.eventsPerSecond / plain.eventsPerSecond, 2)} of the plain server's requests/s`,
        );
      }
      console.log(
        `   collector's Kafka sends: ${fmt(batches.events)} events each on average, ${fmt(batches.ms, 1)} ms each (reference: 1,000 events, ${fmt(ref.p50, 1)} ms p50)`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    plainServer.close();
    await producer.disconnect();
    await collector.close();
    await admin.deleteTopics({ topics: [topic, `${topic}.dlq`, `${topic}-schemas`] }).catch(() => undefined);
    await admin.disconnect();
  }

  const avro = encodeFigure(rows, (row) => clickEventType.toBuffer(row).length);
  const framed = encodeFigure(rows, (row) => encodeWith(1, clickEventType, row).length);
  const json = encodeFigure(rows, (row) => Buffer.byteLength(JSON.stringify(row)));
  // The collector's own path: the validated input straight into the wire format (encode.ts).
  const context = {
    receivedAt: Date.now(),
    collectorId: "bench-collector",
    clientIp: "127.0.0.1",
    sessionId: "unused-session",
  };
  const checked = input.map((raw) => {
    const result = checkEvent(raw, context);
    if (!result.ok) throw new Error("bench event refused");
    return result;
  });
  let next = 0;
  const hand = encodeFigure(rows, () => {
    const { input: valid, eventId } = checked[next++ % checked.length]!;
    return encodeClickEvent(1, valid, eventId, context).length;
  });
  console.log(`\nencode ${fmt(ROWS)} clickstream rows (median of 5 rounds)`);
  console.log(`${"encoder".padEnd(40)}${"records/s".padStart(12)}${"bytes/record".padStart(14)}`);
  for (const [name, f] of [
    ["avsc toBuffer (cached Type)", avro],
    ["avsc wire format (scratch buffer)", framed],
    ["collector's encoder (from the input)", hand],
    ["JSON.stringify", json],
  ] as const) {
    console.log(`${name.padEnd(40)}${fmt(f.perSecond).padStart(12)}${fmt(f.bytes, 1).padStart(14)}`);
  }
  const request = await produceRequestFigures(encoded);
  console.log(
    `\nProduce request of 1,000 encoded rows, 6 partitions (${fmt(request.bytes)} bytes), CPU µs per record, median of 5 rounds`,
  );
  console.log(
    `${"kafkajs's encoder (the raw producer's sends)".padEnd(48)}${fmt(request.kafkajs, 2).padStart(8)}`,
  );
  console.log(
    `${"the collector's (recordBatch.ts)".padEnd(48)}${fmt(request.collector, 2).padStart(8)}  ${fmt(request.collector / request.kafkajs, 2)} of kafkajs's`,
  );
}
