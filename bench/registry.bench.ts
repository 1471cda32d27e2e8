/**
 * The schema registry's REST API beside references measured in the same run, against the test
 * environment's Kafka (a schemas topic of its own):
 *
 * - reads: `GET /schemas/ids/{id}` (what every consumer's deserializer asks once per id) and
 *   `GET /subjects/{s}/versions/latest`, from 16 keep-alive clients in a child process (so their
 *   CPU is not the server's), beside a bare node:http server answering the same bytes: the ratio
 *   is what routing, lookup and JSON cost over Node's HTTP itself.
 * - writes: `POST /subjects/{s}/versions` of new schemas one after another (each is a read of the
 *   topic to its end, a compatibility check, an acks=all produce and a read back), beside a raw
 *   kafkajs producer sending one acks=all message at a time to the same topic (a record the
 *   registry skips): the ratio is what
 *   a registration costs over the one Kafka round trip it cannot avoid.
 *
 *   npm run bench -- registry
 *
 * Brokers: TRIBUTARY_BENCH_KAFKA_BROKERS, else the test environment's.
 */
import { execFile } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import kafkajs from "kafkajs";
import { pino } from "pino";
import { schemaRegistryConfigSchema } from "../src/dataplane/registry/config.js";
import { startSchemaRegistryServer } from "../src/dataplane/registry/main.js";
import { testEnv } from "../test/support/env.js";

const execFileAsync = promisify(execFile);
const CLIENTS = 16;
const READ_SECONDS = 4;
const REGISTRATIONS = 100;
const ROUNDS = 3;

/** A child process that keeps CLIENTS keep-alive requests in flight for `seconds`; prints requests/s and p50/p99 ms. */
const LOAD = String.raw`
const http = require("node:http");
const [url, seconds, clients] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
const latencies = [];
let done = 0;
const end = Date.now() + seconds * 1000;
function one() {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    http.get(url, { agent }, (res) => {
      res.resume();
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error("status " + res.statusCode));
        latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
        done++;
        resolve();
      });
    }).on("error", reject);
  });
}
async function loop() { while (Date.now() < end) await one(); }
const started = Date.now();
Promise.all(Array.from({ length: clients }, loop)).then(() => {
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  console.log(JSON.stringify({ rate: done / ((Date.now() - started) / 1000), p50: at(0.5), p99: at(0.99) }));
  agent.destroy();
}, (error) => { console.error(error.message); process.exit(1); });
`;

interface Load {
  rate: number;
  p50: number;
  p99: number;
}

async function load(url: string): Promise<Load> {
  const { stdout } = await execFileAsync(
    process.execPath,
    ["-e", LOAD, url, String(READ_SECONDS), String(CLIENTS)],
    {
      timeout: 60_000,
    },
  );
  return JSON.parse(stdout) as Load;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

export async function run(): Promise<void> {
  const brokers = process.env.TRIBUTARY_BENCH_KAFKA_BROKERS?.split(",") ?? testEnv().kafkaBrokers;
  const schemasTopic = `bench-schemas-${Date.now().toString(36)}`;
  const logger = pino({ level: "silent" });
  const registry = await startSchemaRegistryServer(
    schemaRegistryConfigSchema.parse({ brokers, schemasTopic, host: "127.0.0.1", port: 0 }),
    logger,
  );
  await registry.ready;
  const kafka = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const bare = createServer();
  try {
    const schema = (i: number) =>
      JSON.stringify({
        type: "record",
        name: "Bench",
        namespace: "dev.tributary.bench",
        fields: [
          { name: "id", type: "long" },
          ...Array.from({ length: i }, (_, n) => ({
            name: `f${n}`,
            type: ["null", "string"],
            default: null,
          })),
        ],
      });
    const post = async (subject: string, text: string) => {
      const response = await fetch(`${registry.url}/subjects/${subject}/versions`, {
        method: "POST",
        headers: { "content-type": "application/vnd.schemaregistry.v1+json" },
        body: JSON.stringify({ schema: text }),
      });
      if (!response.ok) throw new Error(`register: ${response.status} ${await response.text()}`);
      return (await response.json()) as { id: number };
    };
    // A subject with 20 versions, so a lookup is not of the only entry.
    let id = 0;
    for (let i = 0; i < 20; i++) id = (await post("bench-value", schema(i))).id;
    const idBody = await (await fetch(`${registry.url}/schemas/ids/${id}`)).text();
    bare.on("request", (_req, res) => {
      res.writeHead(200, {
        "Content-Type": "application/vnd.schemaregistry.v1+json",
        "Content-Length": Buffer.byteLength(idBody),
      });
      res.end(idBody);
    });
    await new Promise<void>((resolve) => bare.listen(0, "127.0.0.1", resolve));
    const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/`;

    const reads: Record<string, Load[]> = { bare: [], byId: [], latest: [] };
    for (let round = 0; round < ROUNDS; round++) {
      reads.bare!.push(await load(bareUrl));
      reads.byId!.push(await load(`${registry.url}/schemas/ids/${id}`));
      reads.latest!.push(await load(`${registry.url}/subjects/bench-value/versions/latest`));
    }

    const writes = { raw: [] as number[], register: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      let started = performance.now();
      for (let i = 0; i < REGISTRATIONS; i++) {
        await producer.send({
          topic: schemasTopic,
          acks: -1,
          messages: [{ key: JSON.stringify({ keytype: "NOOP", i }), value: "{}" }],
        });
      }
      writes.raw.push(REGISTRATIONS / ((performance.now() - started) / 1000));
      started = performance.now();
      for (let i = 0; i < REGISTRATIONS; i++) await post(`bench-${round}-${i}-value`, schema(i % 5));
      writes.register.push(REGISTRATIONS / ((performance.now() - started) / 1000));
    }

    const bareRate = median(reads.bare!.map((r) => r.rate));
    const row = (name: string, loads: Load[]) => {
      const rate = median(loads.map((r) => r.rate));
      return `| ${name} | ${Math.round(rate).toLocaleString("en")} | ${median(loads.map((r) => r.p50)).toFixed(2)} | ${median(loads.map((r) => r.p99)).toFixed(2)} | ${(rate / bareRate).toFixed(2)} |`;
    };
    console.log(
      `reads: ${CLIENTS} keep-alive clients, ${READ_SECONDS} s per round, median of ${ROUNDS} rounds\n`,
    );
    console.log("| what | requests/s | p50 ms | p99 ms | ratio to bare node:http |");
    console.log("| --- | --- | --- | --- | --- |");
    console.log(row("bare node:http, same body (reference)", reads.bare!));
    console.log(row("GET /schemas/ids/{id}", reads.byId!));
    console.log(row("GET /subjects/{s}/versions/latest", reads.latest!));
    const raw = median(writes.raw);
    const register = median(writes.register);
    console.log(`\nwrites: ${REGISTRATIONS} one after another, median of ${ROUNDS} rounds\n`);
    console.log("| what | per second | ms each | ratio to raw produce |");
    console.log("| --- | --- | --- | --- |");
    console.log(
      `| raw kafkajs acks=all send of one message (reference) | ${raw.toFixed(0)} | ${(1000 / raw).toFixed(1)} | 1.00 |`,
    );
    console.log(
      `| POST /subjects/{s}/versions (new subject) | ${register.toFixed(0)} | ${(1000 / register).toFixed(1)} | ${(register / raw).toFixed(2)} |`,
    );
  } finally {
    bare.close();
    await producer.disconnect();
    await registry.close();
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
    await admin.disconnect();
  }
}
