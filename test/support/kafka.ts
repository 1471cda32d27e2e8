/**
 * A private single-node KRaft Kafka for fault tests: a test may `kill -9`, pause or restart it
 * without touching the shared brokers of `scripts/testenv` that other test files use. It runs
 * the same jars (`~/.cache/tributary/kafka-<version>/libs`) and the same java command as
 * `scripts/testenv`'s kafka_java, on ports of its own (39092 and up) and a temporary directory.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import kafkajs from "kafkajs";

const KAFKA_VERSION = "3.9.1";
const ROOT = resolve(import.meta.dirname, "../..");

function kafkaLibs(): string {
  const cache =
    process.env.TRIBUTARY_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "tributary");
  const libs = join(cache, `kafka-${KAFKA_VERSION}`, "libs");
  if (!existsSync(join(libs, ".complete"))) {
    throw new Error(`Kafka jars are not cached in ${libs}: run 'scripts/testenv up kafka' once`);
  }
  return libs;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const probe = createServer();
    probe.once("error", () => resolvePort(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolvePort(true)));
  });
}

/** Two free consecutive ports from 39092 up, picked at random so parallel test files rarely collide. */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 39092 + 2 * Math.floor(Math.random() * 400);
    if ((await portFree(port)) && (await portFree(port + 1))) return port;
  }
  throw new Error("no two free consecutive ports between 39092 and 39892 for a private Kafka broker");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class PrivateKafka {
  private process: ChildProcess | undefined;
  private readonly onExit = () => this.process?.kill("SIGKILL");

  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly libs: string,
  ) {}

  get brokers(): string[] {
    return [`127.0.0.1:${this.port}`];
  }

  get pid(): number | undefined {
    return this.process?.pid;
  }

  /** Formats a fresh log directory and starts the broker; resolves once it accepts clients. */
  static async start(): Promise<PrivateKafka> {
    const libs = kafkaLibs();
    const dir = mkdtempSync(join(tmpdir(), "tributary-private-kafka-"));
    const port = await freePortPair();
    const kafka = new PrivateKafka(dir, port, libs);
    writeFileSync(join(dir, "server.properties"), kafka.properties());
    const clusterId = randomBytes(16).toString("base64url").slice(0, 22);
    await promisify(execFile)(
      "java",
      [
        ...kafka.javaArgs(),
        "kafka.tools.StorageTool",
        "format",
        "--ignore-formatted",
        // `=` form: a base64url id may start with '-', which argparse would take for a flag.
        `--cluster-id=${clusterId}`,
        "-c",
        join(dir, "server.properties"),
      ],
      { timeout: 120_000 },
    );
    process.once("exit", kafka.onExit);
    await kafka.launch();
    return kafka;
  }

  /** `kill -9`: the broker gets no chance to flush or close its logs. */
  async kill(): Promise<void> {
    await this.signal("SIGKILL");
  }

  /** Starts the broker again on the same log directory and port (after `kill`). */
  async restart(): Promise<void> {
    if (this.process) throw new Error("the private Kafka broker is still running; kill it first");
    await this.launch();
  }

  /** SIGSTOP: the broker keeps its sockets open but answers nothing, as a hung broker does. */
  pause(): void {
    this.process?.kill("SIGSTOP");
  }

  resume(): void {
    this.process?.kill("SIGCONT");
  }

  /** Kills the broker and removes its directory. */
  async stop(): Promise<void> {
    this.resume();
    await this.signal("SIGKILL");
    process.off("exit", this.onExit);
    rmSync(this.dir, { recursive: true, force: true });
  }

  private properties(): string {
    const controller = this.port + 1;
    return `process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${controller}
listeners=PLAINTEXT://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${controller}
advertised.listeners=PLAINTEXT://127.0.0.1:${this.port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=${join(this.dir, "data")}
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
log.segment.bytes=67108864
`;
  }

  private javaArgs(): string[] {
    return [
      "-Xms128m",
      "-Xmx512m",
      "-XX:+UseG1GC",
      "-XX:MaxGCPauseMillis=20",
      "-XX:TieredStopAtLevel=1",
      "-Djava.awt.headless=true",
      `-Dkafka.logs.dir=${join(this.dir, "logs")}`,
      `-Dlog4j.configuration=file:${join(ROOT, "testenv/kafka/log4j.properties")}`,
      "-cp",
      `${this.libs}/*`,
    ];
  }

  private async launch(): Promise<void> {
    const logFile = join(this.dir, "logs", "server.log");
    rmSync(logFile, { force: true });
    const out = openSync(join(this.dir, "stdout.log"), "a");
    const child = spawn("java", [...this.javaArgs(), "kafka.Kafka", join(this.dir, "server.properties")], {
      stdio: ["ignore", out, out],
    });
    this.process = child;
    child.once("exit", () => {
      if (this.process === child) this.process = undefined;
    });
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      if (!this.process) {
        throw new Error(
          `the private Kafka broker exited while starting (see ${join(this.dir, "stdout.log")})`,
        );
      }
      const log = existsSync(logFile) ? readFileSync(logFile, "utf8") : "";
      if (/Kafka Server started|KafkaRaftServer.*started/.test(log) && !(await portFree(this.port))) return;
      await sleep(200);
    }
    throw new Error(`the private Kafka broker did not start within 120 s (see ${logFile})`);
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.process;
    if (!child) return;
    const exited = new Promise<void>((resolveExit) => child.once("exit", () => resolveExit()));
    child.kill(signal);
    await exited;
    this.process = undefined;
  }
}

export interface ReadMessage {
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer;
}

/**
 * Reads every message of a topic, up to the end offsets it has when called, in partition order.
 * Uses a throw-away consumer group and commits nothing.
 */
export async function readTopic(
  brokers: string[],
  topic: string,
  timeoutMs = 60_000,
): Promise<ReadMessage[]> {
  const kafka = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map<number, bigint>();
  try {
    for (const { partition, high, low } of await admin.fetchTopicOffsets(topic)) {
      if (BigInt(high) > BigInt(low)) ends.set(partition, BigInt(high));
    }
  } finally {
    await admin.disconnect();
  }
  const messages: ReadMessage[] = [];
  if (ends.size === 0) return messages;
  const consumer = kafka.consumer({
    groupId: `test-read-${randomBytes(6).toString("hex")}`,
    maxWaitTimeInMs: 200,
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolveRead, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`reading ${topic}: ${ends.size} partitions not read to their end in ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
      consumer
        .run({
          autoCommit: false,
          eachMessage: async ({ partition, message }) => {
            const end = ends.get(partition);
            if (end === undefined || BigInt(message.offset) >= end) return;
            messages.push({
              partition,
              offset: message.offset,
              key: message.key?.toString("utf8") ?? null,
              value: message.value ?? Buffer.alloc(0),
            });
            if (BigInt(message.offset) === end - 1n) ends.delete(partition);
            if (ends.size === 0) {
              clearTimeout(timer);
              resolveRead();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return messages.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
}

/** Creates topics (replication factor capped by the cluster size) and returns a function that deletes them. */
export async function createTopics(
  brokers: string[],
  topics: { topic: string; numPartitions: number }[],
): Promise<() => Promise<void>> {
  const kafka = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { brokers: members } = await admin.describeCluster();
    const replicationFactor = Math.min(3, members.length);
    await admin.createTopics({
      waitForLeaders: false,
      topics: topics.map(({ topic, numPartitions }) => ({ topic, numPartitions, replicationFactor })),
    });
    // kafkajs's waitForLeaders gives up on the UNKNOWN_TOPIC_OR_PARTITION of a topic just created.
    const deadline = Date.now() + 30_000;
    for (const { topic, numPartitions } of topics) {
      for (;;) {
        const metadata = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
        const partitions = metadata?.topics[0]?.partitions ?? [];
        if (partitions.length === numPartitions && partitions.every((p) => p.leader >= 0)) break;
        if (Date.now() > deadline) throw new Error(`topic ${topic} has no leaders after 30 s`);
        await sleep(100);
      }
    }
  } finally {
    await admin.disconnect();
  }
  return async () => {
    const cleanup = kafka.admin();
    await cleanup.connect();
    try {
      await cleanup.deleteTopics({ topics: topics.map((t) => t.topic) }).catch(() => undefined);
    } finally {
      await cleanup.disconnect();
    }
  };
}
