/**
 * The data-plane half of `npm run demo`: the Kafka topic the operator made for the demo Topic, a
 * clickstream collector and a Parquet sink on loopback (the same roles the operator's pods run),
 * events posted over HTTP and read back from the Parquet files, and an RS-6-3 stripe rebuilt
 * after three of its nine fragments are lost.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { parquetReadObjects } from "hyparquet";
import { Kafka, logLevel } from "kafkajs";
import { createErasureCoder } from "../src/dataplane/storage/erasure/index.js";
import { StorageCluster, stopRole } from "../test/integration/storage-cluster.js";

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through scripts/demo`);
  return value;
};

const brokers = env("TRIBUTARY_TESTENV_KAFKA_BROKERS");
const run = env("TRIBUTARY_TESTENV_RUN");
const namespace = process.argv[2] ?? "tributary-demo";
const topic = "demo.clickstream.v1";
const collectorPort = 18090;
const lake = join(run, "demo", "lake");
const children: ChildProcess[] = [];

function say(text: string): void {
  console.log(`\n\u001b[1m== ${text}\u001b[0m`);
}

function startRole(role: string, args: string[], log: string): ChildProcess {
  // node --import tsx, not npx: a signal must reach the role itself, not a wrapper around it.
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", role, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TRIBUTARY_LOG_LEVEL: "warn" },
  });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => lines.push(chunk.toString());
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  child.on("exit", (code, signal) => {
    if (code !== 0 && signal !== "SIGTERM")
      console.error(`${log} exited (${code ?? signal}):\n${lines.join("")}`);
  });
  children.push(child);
  return child;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, seconds = 60): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${seconds}s`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

async function showTopic(): Promise<void> {
  say(`Kafka topic ${topic} (made by the Topic controller in namespace ${namespace})`);
  const admin = new Kafka({
    clientId: "tributary-demo",
    brokers: brokers.split(","),
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    const metadata = await waitFor("the topic to exist", async () => {
      const found = await admin.fetchTopicMetadata({ topics: [topic] });
      return found.topics[0];
    });
    for (const partition of metadata.partitions) {
      console.log(
        `partition ${partition.partitionId}: leader ${partition.leader}, replicas [${partition.replicas}], in sync [${partition.isr}]`,
      );
    }
  } finally {
    await admin.disconnect();
  }
}

async function collectAndSink(): Promise<void> {
  say("a clickstream collector and a Parquet sink on loopback");
  await rm(lake, { recursive: true, force: true });
  await mkdir(lake, { recursive: true });
  const collector = startRole(
    "collector",
    [
      "--brokers",
      brokers,
      "--topic",
      topic,
      "--dlq-topic",
      `${topic}.dlq`,
      "--host",
      "127.0.0.1",
      "--port",
      String(collectorPort),
    ],
    "collector",
  );
  await waitFor("the collector to be ready", async () =>
    (await fetch(`http://127.0.0.1:${collectorPort}/readyz`)).ok ? true : undefined,
  );

  const sessions = ["session-alice", "session-bob", "session-carol"];
  const events = Array.from({ length: 300 }, (_, i) => ({
    eventTime: new Date(Date.now() - (300 - i) * 1000).toISOString(),
    eventType: i % 10 === 0 ? "play" : "page_view",
    sessionId: sessions[i % 3],
    userId: i % 3 === 0 ? "alice" : null,
    userAgent: "Mozilla/5.0 (demo)",
    request: { method: "GET", url: `/watch?v=${i % 7}&t=${i}`, videoId: `v${i % 7}` },
  }));
  // Two events the collector must refuse, and say why; they go to the dead-letter topic.
  const bad = [
    { ...events[0], eventTime: "yesterday" },
    { ...events[1], eventType: "teleport", request: { url: "watch" } },
  ];
  const response = await fetch(`http://127.0.0.1:${collectorPort}/v1/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ events: [...events, ...bad] }),
  });
  const body = (await response.json()) as {
    accepted: number;
    refused: number;
    results: { status: string; errors?: { field: string; message: string }[] }[];
  };
  console.log(`POST /v1/events: HTTP ${response.status}, accepted ${body.accepted}, refused ${body.refused}`);
  for (const result of body.results.filter((r) => r.status === "refused").slice(0, 5)) {
    console.log(`  refused: ${result.errors?.map((e) => `${e.field}: ${e.message}`).join("; ")}`);
  }

  const sink = startRole(
    "sink",
    [
      "--brokers",
      brokers,
      "--topic",
      topic,
      "--group-id",
      "tributary-demo-lake",
      "--format",
      "parquet",
      "--target-dir",
      lake,
      "--roll-max-age-ms",
      "2000",
      "--metrics-host",
      "127.0.0.1",
      "--metrics-port",
      "0",
    ],
    "sink",
  );
  const files = await waitFor(
    "Parquet files with every accepted event",
    async () => {
      const found = await parquetFiles(lake);
      let rows = 0;
      for (const file of found) rows += (await readParquet(file)).length;
      return rows >= body.accepted ? found : undefined;
    },
    90,
  );
  await stop(sink);
  await stop(collector);

  let rows: Record<string, unknown>[] = [];
  for (const file of files) rows = rows.concat(await readParquet(file));
  console.log(`${files.length} Parquet file(s) under ${lake}, ${rows.length} rows, for example:`);
  for (const file of files.slice(0, 3)) console.log(`  ${file.slice(lake.length + 1)}`);
  const first = rows[0] ?? {};
  console.log(
    `  ${JSON.stringify(first, (_key, value) => (typeof value === "bigint" ? Number(value) : value)).slice(0, 300)}`,
  );
  const bySession = new Map<string, number>();
  for (const row of rows)
    bySession.set(String(row.sessionId), (bySession.get(String(row.sessionId)) ?? 0) + 1);
  console.log(`  events per session: ${[...bySession].map(([s, n]) => `${s}=${n}`).join(", ")}`);
}

async function blockStorage(): Promise<void> {
  say("BlockPool roles on loopback: a name node, four data nodes on two racks, replication 3");
  const cluster = await StorageCluster.start({ dataNodes: 4, racks: ["/rack-a", "/rack-b"] });
  try {
    const client = cluster.client("demo");
    const files = await parquetFiles(lake);
    await client.mkdirs("/lake/clickstream");
    for (const file of files) {
      await client.create(`/lake/clickstream/${file.split("/").pop()}`, await readFile(file), {
        blockSize: 1024 * 1024,
      });
    }
    const listing = await client.list("/lake/clickstream");
    console.log(
      `WebHDFS LISTSTATUS /lake/clickstream: ${listing.map((f) => `${f.pathSuffix} (${f.length} B)`).join(", ")}`,
    );
    const refused = await cluster
      .client("mallory")
      .delete("/lake", { recursive: true })
      .catch((error: Error) => error);
    console.log(`mallory deleting /lake: ${refused instanceof Error ? refused.message : "allowed!"}`);
    const first = `/lake/clickstream/${listing[0]!.pathSuffix}`;
    const { blocks } = await cluster.blockLocations(first);
    console.log(
      `${first}: ${blocks.length} block(s) of up to 1 MiB, ${blocks[0]?.locations.length} replicas each`,
    );
    await stopRole(cluster.dataNodes[0]!, "SIGKILL");
    console.log("kill -9 of one data node ...");
    await cluster.waitFor(
      async () => {
        const status = await cluster.status();
        return status.liveDataNodes === 3 && status.underReplicatedBlocks === 0;
      },
      "replication back to 3",
      90_000,
    );
    const copy = await client.open(first);
    const original = await readFile(files[0]!);
    console.log(
      `replication back to 3 on the three live nodes; read back ${copy.length} B, identical: ${copy.equals(original)}`,
    );
  } finally {
    await cluster.stop();
  }
}

async function parquetFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith(".parquet") && !entry.name.startsWith("."))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

async function readParquet(file: string): Promise<Record<string, unknown>[]> {
  const bytes = await readFile(file);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return parquetReadObjects({ file: buffer });
}

function erasureCoding(): void {
  say("Reed-Solomon RS-6-3: lose three of nine fragments, read the data back");
  const coder = createErasureCoder("RS-6-3");
  const cell = 1024 * 1024;
  const data = Array.from({ length: 6 }, () => new Uint8Array(randomBytes(cell)));
  // Copies: the fast coder may hand back views of its own memory, reused by the next call.
  const parity = coder.encode(data).map((cell) => cell.slice());
  const fragments: (Uint8Array | null)[] = [...data, ...parity];
  const lost = [0, 4, 7];
  for (const index of lost) fragments[index] = null;
  const rebuilt = coder.reconstruct(fragments, lost);
  const intact = lost.every((index, i) =>
    Buffer.from(rebuilt[i]!).equals(Buffer.from(index < 6 ? data[index]! : parity[index - 6]!)),
  );
  console.log(
    `fragments ${lost.join(", ")} lost and rebuilt from the other six: ${intact ? "identical" : "DIFFERENT"}`,
  );
  if (!intact) process.exitCode = 1;
}

try {
  await showTopic();
  await collectAndSink();
  await blockStorage();
  erasureCoding();
} finally {
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
}
