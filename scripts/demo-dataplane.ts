/**
 * The data half of `npm run demo`, all through the pods the operator made from the demo's Topic
 * and BlockPool: events posted to the collector's Service (kubectl port-forward), counted in
 * Kafka, read back from the Parquet sink's files inside its pod, and found as Avro files in the
 * BlockPool through WebHDFS; then a refused event and a data node deleted and brought back.
 */
import { Kafka, logLevel } from "kafkajs";
import { kubectl, kubectlJson, portForward, webHdfs } from "../test/e2e/cluster.js";
import { clickEvents } from "../test/support/click-events.js";

const namespace = process.argv[2] ?? "tributary-demo";
const topic = "demo.clickstream.v1";
const brokers = (process.env.TRIBUTARY_TESTENV_KAFKA_BROKERS ?? "").split(",");

function say(text: string): void {
  console.log(`\n\u001b[1m== ${text}\u001b[0m`);
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, seconds = 180): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`${what} did not happen within ${seconds}s (${last ?? "no answer"})`);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

const events = clickEvents(2000, { seed: 11, startMs: Date.now() - 3_600_000, spanMs: 3_600_000 });

async function postEvents(): Promise<void> {
  say("2,000 events POSTed to the collector Service (kubectl port-forward service/clickstream-collector)");
  const forward = await portForward(namespace, "service/clickstream-collector", 8080);
  try {
    let accepted = 0;
    for (let start = 0; start < events.length; start += 500) {
      const response = await fetch(`http://127.0.0.1:${forward.port}/v1/events`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(events.slice(start, start + 500)),
      });
      const body = (await response.json()) as { accepted: number };
      accepted += body.accepted;
      console.log(`POST /v1/events (500 events): HTTP ${response.status}, accepted ${body.accepted}`);
    }
    const bad = { ...events[0], eventId: "not-a-uuid", eventType: "teleport" };
    const response = await fetch(`http://127.0.0.1:${forward.port}/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([bad]),
    });
    const body = (await response.json()) as { results: { errors?: { field: string; message: string }[] }[] };
    console.log(
      `a malformed event: HTTP ${response.status}, ${body.results[0]?.errors?.map((e) => `${e.field}: ${e.message}`).join("; ")} (kept in ${topic}.dlq)`,
    );
    console.log(`${accepted} events acknowledged, each only after Kafka had it`);
  } finally {
    forward.close();
  }
}

async function showKafka(): Promise<void> {
  say(`Kafka topic ${topic}, made by the Topic controller`);
  const admin = new Kafka({ clientId: "tributary-demo", brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    for (const partition of offsets)
      console.log(`partition ${partition.partition}: ${partition.high} events`);
    console.log(`total ${offsets.reduce((sum, partition) => sum + Number(partition.high), 0)}`);
  } finally {
    await admin.disconnect();
  }
}

// Runs in the sink's pod with the image's own Node.js and hyparquet.
const readParquetFiles = `
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parquetReadObjects } from "hyparquet";
const root = "/var/lib/tributary/sink";
const files = readdirSync(root, { recursive: true }).map(String).filter((f) => f.endsWith(".parquet")).sort();
let rows = 0, first;
for (const file of files) {
  const bytes = readFileSync(join(root, file));
  const read = await parquetReadObjects({ file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  rows += read.length;
  first ??= read[0];
}
console.log(JSON.stringify({ files, rows, first }, (_k, v) => (typeof v === "bigint" ? Number(v) : v)));
`;

async function showParquet(): Promise<void> {
  say(
    "Parquet files on the sink's volume (read in the sink's pod: kubectl exec deploy/clickstream-sink-lake-parquet)",
  );
  const listed = await waitFor("the Parquet sink to commit every event", async () => {
    const out = await kubectl([
      "exec",
      "-n",
      namespace,
      "deployment/clickstream-sink-lake-parquet",
      "--",
      "node",
      "--input-type=module",
      "-e",
      readParquetFiles,
    ]);
    const parsed = JSON.parse(out) as { files: string[]; rows: number; first: unknown };
    return parsed.rows >= events.length ? parsed : undefined;
  });
  for (const file of listed.files.slice(0, 4)) console.log(`  ${file}`);
  if (listed.files.length > 4) console.log(`  ... ${listed.files.length} files`);
  console.log(`${listed.rows} rows; the first: ${JSON.stringify(listed.first).slice(0, 240)}...`);
}

interface FileStatus {
  pathSuffix: string;
  type: string;
  length: number;
  replication: number;
}

async function listPool(path: string): Promise<FileStatus[]> {
  const listed = await webHdfs(namespace, "lake", "GET", path, "op=LISTSTATUS");
  if (listed.status !== 200) throw new Error(`LISTSTATUS ${path}: HTTP ${listed.status}`);
  return (JSON.parse(listed.body.toString()) as { FileStatuses: { FileStatus: FileStatus[] } }).FileStatuses
    .FileStatus;
}

async function walkPool(path: string): Promise<{ path: string; status: FileStatus }[]> {
  const found: { path: string; status: FileStatus }[] = [];
  for (const entry of await listPool(path)) {
    const child = `${path}/${entry.pathSuffix}`;
    if (entry.type === "DIRECTORY") found.push(...(await walkPool(child)));
    else found.push({ path: child, status: entry });
  }
  return found;
}

async function showBlockPool(): Promise<void> {
  say("Avro files in the BlockPool lake (WebHDFS through the name node's Service, with curl)");
  const files = await waitFor("the Avro sink to commit a file into the pool", async () => {
    const found = (await walkPool("/lake/clickstream")).filter((file) => file.path.endsWith(".avro"));
    return found.length > 0 ? found : undefined;
  });
  for (const file of files.slice(0, 4))
    console.log(`  ${file.path}  ${file.status.length} B, replication ${file.status.replication}`);

  const status = async () =>
    (
      await kubectlJson<{
        status?: { activeNameNode?: string; liveDataNodes?: number; underReplicatedBlocks?: number };
      }>(["get", "blockpool", "lake", "-n", namespace])
    ).status ?? {};
  const before = await status();
  console.log(`active name node ${before.activeNameNode}, ${before.liveDataNodes} live data nodes`);
  say("a data-node pod deleted: the StatefulSet brings it back, status shows replication whole again");
  const victim = "lake-datanode-1";
  const uid = async () =>
    (await kubectlJson<{ metadata: { uid: string } }>(["get", "pod", victim, "-n", namespace])).metadata.uid;
  const old = await uid();
  await kubectl(["delete", "pod", victim, "-n", namespace]);
  await waitFor(`a new ${victim}`, async () => ((await uid()) !== old ? true : undefined));
  await kubectl(["wait", "-n", namespace, `pod/${victim}`, "--for=condition=Ready", "--timeout=300s"]);
  console.log(`${victim} is back, a new pod on the same volume`);
  const after = await waitFor(
    "three live data nodes and no under-replicated block",
    async () => {
      const current = await status();
      return current.liveDataNodes === 3 && current.underReplicatedBlocks === 0 ? current : undefined;
    },
    300,
  );
  console.log(
    `${after.liveDataNodes} live data nodes, ${after.underReplicatedBlocks} under-replicated blocks`,
  );
  const first = files[0]!;
  const read = await webHdfs(namespace, "lake", "GET", first.path, "op=OPEN");
  console.log(`read ${first.path} back: ${read.body.length} B (HTTP ${read.status})`);
}

function summary(): void {
  say("what runs where");
  console.log(`the operator (2 replicas, one leading): namespace tributary-system, kubectl logs -n tributary-system deploy/tributary
the collector, the two sinks, 2 name nodes and 3 data nodes: pods in ${namespace}, from the same image
Kafka, PostgreSQL and Redis of the test environment: on this machine (bash scripts/testenv status)
look further:
  kubectl get tributary,pods -n ${namespace}            kubectl describe topic clickstream -n ${namespace}
  kubectl port-forward -n ${namespace} service/clickstream-collector 8080   then POST http://127.0.0.1:8080/v1/events`);
}

await postEvents();
await showKafka();
await showParquet();
await showBlockPool();
summary();
