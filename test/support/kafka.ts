/**
 * A private single-node KRaft Kafka for fault tests: a test may `kill -9`, pause or restart it
 * without touching the shared brokers of `scripts/testenv` that other test files use. It runs
 * the same jars (`~/.cache/tributary/kafka-<version>/libs`) and the same java command as
 * `scripts/testenv`'s kafka_java, on ports of its own (test/support/ports.ts: below the ephemeral
 * range, so a restart finds them free) and a temporary directory.
 *
 * With `sasl`, the broker also listens with SASL_PLAINTEXT (SCRAM-SHA-512) on `saslBrokers`, the
 * user's SCRAM credentials written at format time. With `tls`, it listens with SSL on `tlsBrokers`,
 * requiring a client certificate; openssl makes a CA, the broker's PEM keystore and a client
 * certificate (`tlsFiles`) in the broker's directory. `brokers` stays plaintext for test helpers.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import kafkajs, { type KafkaMessage } from "kafkajs";
import { listening, releasePorts, reservedPorts } from "./ports.js";

const KAFKA_VERSION = "4.4.0";
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

/** The broker could not bind one of its ports: something took it after the probe. */
class PortTakenError extends Error {}

export interface PrivateKafkaOptions {
  /** A SCRAM-SHA-512 user the SASL listener accepts. */
  sasl?: { username: string; password: string };
  /** An SSL listener that requires a client certificate signed by the test's own CA. */
  tls?: boolean;
}

/** The PEM files of a TLS-enabled private broker's CA and client. */
export interface PrivateKafkaTlsFiles {
  ca: string;
  clientCert: string;
  clientKey: string;
}

async function makeCertificates(dir: string): Promise<PrivateKafkaTlsFiles & { serverPem: string }> {
  const run = (args: string[]) => promisify(execFile)("openssl", args, { cwd: dir, timeout: 60_000 });
  await run([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=tributary-test-ca",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
  ]);
  const leaf = async (name: string, subject: string, extensions: string) => {
    writeFileSync(join(dir, `${name}.ext`), extensions);
    await run([
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      subject,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
    ]);
    await run([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.crt`,
    ]);
  };
  await leaf(
    "server",
    "/CN=127.0.0.1",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  await leaf("client", "/CN=tributary-test-client", "extendedKeyUsage=clientAuth\n");
  // Kafka's PEM keystore: the PKCS#8 key followed by the certificate chain.
  await run(["pkcs8", "-topk8", "-nocrypt", "-in", "server.key", "-out", "server.pk8"]);
  writeFileSync(
    join(dir, "server.pem"),
    readFileSync(join(dir, "server.pk8"), "utf8") + readFileSync(join(dir, "server.crt"), "utf8"),
  );
  return {
    ca: join(dir, "ca.crt"),
    clientCert: join(dir, "client.crt"),
    clientKey: join(dir, "client.key"),
    serverPem: join(dir, "server.pem"),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class PrivateKafka {
  private process: ChildProcess | undefined;
  private readonly onExit = () => this.process?.kill("SIGKILL");

  private constructor(
    readonly dir: string,
    private firstPort: number,
    private readonly libs: string,
    private readonly options: PrivateKafkaOptions,
  ) {}

  /** The PLAINTEXT port; the controller, SASL and SSL listeners take the next ones. */
  get port(): number {
    return this.firstPort;
  }

  private static portCount(options: PrivateKafkaOptions): number {
    return options.tls ? 4 : options.sasl ? 3 : 2;
  }

  get brokers(): string[] {
    return [`127.0.0.1:${this.port}`];
  }

  /** The SASL_PLAINTEXT listener (when started with `sasl`). */
  /** The SSL listener (when started with `tls`). */
  get tlsBrokers(): string[] {
    if (!this.options.tls) throw new Error("this private Kafka broker was started without tls");
    return [`127.0.0.1:${this.port + 3}`];
  }

  get tlsFiles(): PrivateKafkaTlsFiles {
    if (!this.options.tls) throw new Error("this private Kafka broker was started without tls");
    return {
      ca: join(this.dir, "ca.crt"),
      clientCert: join(this.dir, "client.crt"),
      clientKey: join(this.dir, "client.key"),
    };
  }

  get saslBrokers(): string[] {
    if (!this.options.sasl) throw new Error("this private Kafka broker was started without sasl");
    return [`127.0.0.1:${this.port + 2}`];
  }

  get pid(): number | undefined {
    return this.process?.pid;
  }

  /** Formats a fresh log directory and starts the broker; resolves once it accepts clients. */
  static async start(options: PrivateKafkaOptions = {}): Promise<PrivateKafka> {
    const libs = kafkaLibs();
    const dir = mkdtempSync(join(tmpdir(), "tributary-private-kafka-"));
    const count = PrivateKafka.portCount(options);
    const kafka = new PrivateKafka(dir, await reservedPorts(count), libs, options);
    if (options.tls) await makeCertificates(dir);
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
        ...(options.sasl
          ? ["--add-scram", `SCRAM-SHA-512=[name=${options.sasl.username},password=${options.sasl.password}]`]
          : []),
      ],
      { timeout: 120_000 },
    );
    process.once("exit", kafka.onExit);
    // The ports were free when probed; a server that bound one since then makes the broker
    // exit, and the first start may then move to other ports (a restart may not: clients know them).
    for (let attempt = 1; ; attempt++) {
      try {
        await kafka.launch();
        return kafka;
      } catch (error) {
        if (!(error instanceof PortTakenError) || attempt === 5) throw error;
        releasePorts(kafka.firstPort, count);
        kafka.firstPort = await reservedPorts(count);
        writeFileSync(join(dir, "server.properties"), kafka.properties());
      }
    }
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
    const sasl =
      (this.options.sasl ? `,SASL_PLAINTEXT://127.0.0.1:${this.port + 2}` : "") +
      (this.options.tls ? `,SSL://127.0.0.1:${this.port + 3}` : "");
    return `process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${controller}
listeners=PLAINTEXT://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${controller}${sasl}
advertised.listeners=PLAINTEXT://127.0.0.1:${this.port}${sasl}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
${
  this.options.tls
    ? `listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=${join(this.dir, "server.pem")}
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=${join(this.dir, "ca.crt")}
listener.name.ssl.ssl.client.auth=required
`
    : ""
}${
  this.options.sasl
    ? `sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
`
    : ""
}controller.listener.names=CONTROLLER
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
      `-Dlog4j2.configurationFile=file:${join(ROOT, "testenv/kafka/log4j2.properties")}`,
      "-cp",
      `${this.libs}/*`,
    ];
  }

  private async launch(): Promise<void> {
    const logFile = join(this.dir, "logs", "server.log");
    rmSync(logFile, { force: true });
    const stdoutFile = join(this.dir, "stdout.log");
    // Appended to across restarts: what this start wrote begins here.
    const stdoutFrom = existsSync(stdoutFile) ? statSync(stdoutFile).size : 0;
    const out = openSync(stdoutFile, "a");
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
        const output =
          (existsSync(logFile) ? readFileSync(logFile, "utf8") : "") +
          readFileSync(stdoutFile).subarray(stdoutFrom).toString("utf8");
        const message = `the private Kafka broker exited while starting (see ${stdoutFile})`;
        throw /Address already in use/.test(output) ? new PortTakenError(message) : new Error(message);
      }
      const log = existsSync(logFile) ? readFileSync(logFile, "utf8") : "";
      if (/Kafka Server started|KafkaRaftServer.*started/.test(log) && (await listening(this.port))) return;
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
  return readTopicAs(
    brokers,
    topic,
    (partition, message) => ({
      partition,
      offset: message.offset,
      key: message.key?.toString("utf8") ?? null,
      value: message.value ?? Buffer.alloc(0),
    }),
    timeoutMs,
  );
}

/** As readTopic, each message as `as` makes it (raw keys, tombstones as null, ...). */
export async function readTopicAs<T>(
  brokers: string[],
  topic: string,
  as: (partition: number, message: KafkaMessage) => T,
  timeoutMs = 60_000,
): Promise<T[]> {
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
  const messages: { partition: number; offset: bigint; item: T }[] = [];
  if (ends.size === 0) return [];
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
            messages.push({ partition, offset: BigInt(message.offset), item: as(partition, message) });
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
  return messages
    .sort((x, y) => x.partition - y.partition || Number(x.offset - y.offset))
    .map(({ item }) => item);
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
    // Each broker learns of a new topic on its own, and a client may ask any of them first, so
    // every broker is asked (a client whose only seed is that broker).
    const deadline = Date.now() + 30_000;
    const seeds = members.map((member) => `${member.host}:${member.port}`);
    for (const seed of seeds) {
      const single = new kafkajs.Kafka({ brokers: [seed], logLevel: kafkajs.logLevel.NOTHING }).admin();
      await single.connect();
      try {
        for (const { topic, numPartitions } of topics) {
          for (;;) {
            const metadata = await single.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
            const partitions = metadata?.topics[0]?.partitions ?? [];
            if (partitions.length === numPartitions && partitions.every((p) => p.leader >= 0)) break;
            if (Date.now() > deadline) throw new Error(`topic ${topic} has no leaders on ${seed} after 30 s`);
            await sleep(100);
          }
        }
      } finally {
        await single.disconnect();
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
