/**
 * The Kafka side of a Topic: which cluster to talk to, one cached admin client per cluster,
 * and the few admin operations the reconciler needs (describe, create, alter config, add
 * partitions, delete), each turning Kafka's refusals into errors a condition can carry.
 *
 * Config changes use AlterConfigs (API 33) with the whole desired set: kafkajs 2.2 has no
 * IncrementalAlterConfigs. AlterConfigs replaces every dynamic config of the topic, so a key
 * removed from `spec.config` goes back to the broker's default, and a key someone set by hand
 * outside the spec is reverted too: the spec is the whole truth, as in Strimzi's
 * unidirectional topic operator. Keys never named in the spec are left to the broker defaults.
 */
import { createHash } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import type { Admin, SASLOptions } from "kafkajs";
import kafkajs from "kafkajs";
import type { KafkaClusterRef } from "../../api/common.js";
import { Reason } from "../../api/conditions.js";
import { kafkaLogCreator } from "../../dataplane/avro/kafka-log.js";
import type { Logger } from "../../log.js";
import { ReconcileError } from "../../operator/controller.js";
import { builtin, type KubeClient } from "../../operator/kube.js";

const { Kafka, ConfigResourceTypes, ConfigSource, logLevel } = kafkajs;

/** What it takes to reach a cluster: brokers and, from the referenced Secrets, TLS and SASL. */
export interface KafkaConnection {
  brokers: string[];
  ssl?: tls.ConnectionOptions;
  sasl?: SASLOptions;
  /** Identifies the cluster and credentials: a changed Secret gives a new client. */
  key: string;
  /**
   * `<secret>@<resourceVersion>` of each Secret read, for the pods' template: a rotated Secret
   * rolls the collector and sinks, which read their credentials once at start. Versions, not a
   * hash of the contents, so nothing derived from a password is written into a pod spec.
   */
  secretVersions: string[];
}

/**
 * The operator's default cluster (its `--kafka-bootstrap` flag, from the chart values), used by
 * every Topic without `spec.kafka`. `TRIBUTARY_KAFKA_BOOTSTRAP` is read when the flag is absent.
 */
let defaultBootstrap: string[] | undefined;

export function setDefaultKafkaBootstrap(brokers: readonly string[] | undefined): void {
  defaultBootstrap = brokers && brokers.length > 0 ? [...brokers] : undefined;
}

export function parseBootstrap(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((broker) => broker.trim())
    .filter(Boolean);
}

function defaultBrokers(): string[] {
  return defaultBootstrap ?? parseBootstrap(process.env.TRIBUTARY_KAFKA_BOOTSTRAP);
}

/** The bootstrap brokers a Topic's pods and admin use: the spec's, else the operator's default. */
export function bootstrapServers(kafka: KafkaClusterRef | undefined, what: string): string[] {
  if (kafka) return kafka.bootstrapServers;
  const brokers = defaultBrokers();
  if (brokers.length === 0) {
    throw new ReconcileError(
      Reason.KafkaUnavailable,
      `${what}: spec.kafka is not set and the operator has no default cluster (start it with --kafka-bootstrap or TRIBUTARY_KAFKA_BOOTSTRAP, the chart's kafka.bootstrapServers)`,
    );
  }
  return brokers;
}

async function secretData(
  client: KubeClient,
  namespace: string,
  name: string,
  what: string,
  versions: string[],
): Promise<Record<string, string>> {
  const secret = await client.find(builtin.secret, namespace, name);
  if (!secret) {
    throw new ReconcileError(Reason.SecretNotFound, `${what}: Secret ${namespace}/${name} does not exist`);
  }
  versions.push(`${name}@${secret.metadata.resourceVersion ?? ""}`);
  const data = (secret as { data?: Record<string, string> }).data ?? {};
  return Object.fromEntries(
    Object.entries(data).map(([key, value]) => [key, Buffer.from(value, "base64").toString("utf8")]),
  );
}

function secretKey(data: Record<string, string>, key: string, where: string): string {
  const value = data[key];
  if (value === undefined) throw new ReconcileError(Reason.SecretNotFound, `${where} has no key '${key}'`);
  return value;
}

/** Resolves a Topic's cluster reference, reading its TLS and SASL Secrets in `namespace`. */
export async function resolveConnection(
  client: KubeClient,
  namespace: string,
  kafka: KafkaClusterRef | undefined,
  what: string,
): Promise<KafkaConnection> {
  const brokers = bootstrapServers(kafka, what);
  let ssl: tls.ConnectionOptions | undefined;
  let sasl: SASLOptions | undefined;
  const secretVersions: string[] = [];
  if (kafka?.tls?.enabled) {
    ssl = {};
    const { caSecret, clientCertificateSecret } = kafka.tls;
    if (caSecret) {
      const data = await secretData(
        client,
        namespace,
        caSecret.name,
        `${what}: spec.kafka.tls.caSecret`,
        secretVersions,
      );
      ssl.ca = [secretKey(data, caSecret.key, `Secret ${namespace}/${caSecret.name}`)];
    }
    if (clientCertificateSecret) {
      const where = `Secret ${namespace}/${clientCertificateSecret.name}`;
      const data = await secretData(
        client,
        namespace,
        clientCertificateSecret.name,
        `${what}: spec.kafka.tls.clientCertificateSecret`,
        secretVersions,
      );
      ssl.cert = secretKey(data, "tls.crt", where);
      ssl.key = secretKey(data, "tls.key", where);
    }
  }
  if (kafka?.sasl) {
    const { mechanism, credentialsSecret } = kafka.sasl;
    const where = `Secret ${namespace}/${credentialsSecret.name}`;
    const data = await secretData(
      client,
      namespace,
      credentialsSecret.name,
      `${what}: spec.kafka.sasl.credentialsSecret`,
      secretVersions,
    );
    const username = secretKey(data, "username", where);
    const password = secretKey(data, "password", where);
    sasl = { mechanism, username, password } as SASLOptions;
  }
  const key = createHash("sha256")
    .update(JSON.stringify([brokers, ssl ?? null, sasl ?? null]))
    .digest("hex");
  return { brokers, ssl, sasl, key, secretVersions };
}

/**
 * One connected admin client per cluster (and credentials), shared by every Topic on it; a
 * client whose connect failed is dropped so the next reconcile starts afresh.
 */
export class KafkaAdmins {
  private readonly admins = new Map<string, Promise<Admin>>();

  constructor(private readonly log?: Logger) {}

  get(connection: KafkaConnection): Promise<Admin> {
    let admin = this.admins.get(connection.key);
    if (!admin) {
      const kafka = new Kafka({
        clientId: "tributary-operator",
        brokers: connection.brokers,
        ssl: connection.ssl,
        sasl: connection.sasl,
        logLevel: logLevel.WARN,
        ...(this.log ? { logCreator: kafkaLogCreator(this.log) } : {}),
        // A reconcile should fail fast and retry with the work queue's backoff, not block a worker.
        connectionTimeout: 3_000,
        requestTimeout: 15_000,
        retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 2_000 },
      });
      const client = kafka.admin();
      admin = client.connect().then(() => client);
      admin.catch(() => {
        this.admins.delete(connection.key);
        void client.disconnect().catch(() => undefined);
      });
      this.admins.set(connection.key, admin);
    }
    return admin;
  }

  /** Disconnects every client; the operator calls it on shutdown. */
  async close(): Promise<void> {
    const admins = [...this.admins.values()];
    this.admins.clear();
    await Promise.all(
      admins.map((admin) => admin.then((client) => client.disconnect()).catch(() => undefined)),
    );
  }
}

/** The operator's admin clients. */
export const kafkaAdmins = new KafkaAdmins();

export function closeKafkaAdmins(): Promise<void> {
  return kafkaAdmins.close();
}

/** A topic as Kafka has it. */
export interface ObservedTopic {
  name: string;
  /** Kafka's topic id (base64url, as `kafka-topics.sh` prints it); undefined when unavailable. */
  topicId?: string;
  partitions: number;
  replicationFactor: number;
  /** Configs set on the topic itself (source DYNAMIC_TOPIC_CONFIG), not inherited defaults. */
  config: Record<string, string>;
  /** Every topic config name the broker knows: what `spec.config` keys are checked against. */
  knownConfigNames: Set<string>;
}

interface KafkaError {
  name?: string;
  cause?: unknown;
}

/** The errors inside a kafkajs error: an aggregate's (one per topic), else the error itself. */
function innerErrors(error: unknown): unknown[] {
  if (error instanceof kafkajs.KafkaJSAggregateError) return error.errors.flatMap(innerErrors);
  const retries = error as KafkaError | undefined;
  if (retries?.name === "KafkaJSNumberOfRetriesExceeded" && retries.cause) return innerErrors(retries.cause);
  return [error];
}

/** The protocol error type (`TOPIC_ALREADY_EXISTS`, `INVALID_CONFIG`…) of an error, if any. */
export function protocolErrorType(error: unknown): string | undefined {
  for (const inner of innerErrors(error)) {
    // kafkajs's subclasses (KafkaJSCreateTopicError…) carry the broker's error type too.
    if (inner instanceof kafkajs.KafkaJSProtocolError) return inner.type;
  }
  return undefined;
}

/** The broker's own words: an aggregate's message is only "Topic creation errors". */
export function kafkaMessage(error: unknown): string {
  return innerErrors(error)
    .map((inner) => (inner instanceof Error ? inner.message : String(inner)))
    .join("; ");
}

/**
 * A Kafka failure as a reconcile error: a protocol refusal keeps its message; anything else
 * (connection refused, timeout, no broker) means the cluster cannot be reached.
 */
export function kafkaError(error: unknown, what: string, connection: KafkaConnection): ReconcileError {
  if (error instanceof ReconcileError) return error;
  const message = kafkaMessage(error);
  if (protocolErrorType(error)) {
    return new ReconcileError(Reason.ReconcileFailed, `${what}: Kafka refused: ${message}`, { cause: error });
  }
  return new ReconcileError(
    Reason.KafkaUnavailable,
    `${what}: Kafka at ${connection.brokers.join(",")} is unavailable: ${message}`,
    { cause: error },
  );
}

/** Describes a topic: metadata, its own configs and the known config names; undefined when absent. */
export async function describeTopic(
  admin: Admin,
  connection: KafkaConnection,
  name: string,
): Promise<ObservedTopic | undefined> {
  const shape = await topicShape(admin, connection, name);
  if (!shape) return undefined;
  const described = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name }],
    includeSynonyms: false,
  });
  const entries = described.resources[0]?.configEntries ?? [];
  const config: Record<string, string> = {};
  for (const entry of entries) {
    if (entry.configSource === ConfigSource.TOPIC_CONFIG) config[entry.configName] = entry.configValue;
  }
  return { name, ...shape, config, knownConfigNames: new Set(entries.map((entry) => entry.configName)) };
}

type TopicShape = Pick<ObservedTopic, "topicId" | "partitions" | "replicationFactor">;

/**
 * Partitions, replication factor and id of a topic. The Metadata v12 request answers all three
 * and never creates the topic; with SASL (which that request does not speak) kafkajs's metadata
 * gives the shape without the id.
 */
async function topicShape(
  admin: Admin,
  connection: KafkaConnection,
  name: string,
): Promise<TopicShape | undefined> {
  const described = await fetchTopicMetadataV12(connection, [name]);
  if (described) return described.get(name);
  const topics = await admin.listTopics();
  if (!topics.includes(name)) return undefined;
  const metadata = await admin.fetchTopicMetadata({ topics: [name] });
  const topic = metadata.topics.find((entry) => entry.name === name);
  if (!topic) return undefined;
  return {
    partitions: topic.partitions.length,
    replicationFactor: Math.max(0, ...topic.partitions.map((partition) => partition.replicas.length)),
  };
}

export interface DesiredTopic {
  name: string;
  partitions: number;
  replicationFactor: number;
  config: Record<string, string>;
}

/**
 * Creates a topic; answers false when it appeared meanwhile (another reconcile, another tool).
 * kafkajs itself resolves false for TOPIC_ALREADY_EXISTS: ignoring its answer would adopt a
 * topic that a metadata lookup on a lagging broker missed, and delete it with the resource.
 */
export async function createTopic(admin: Admin, topic: DesiredTopic): Promise<boolean> {
  try {
    return await admin.createTopics({
      // kafkajs waits on the broker it calls the controller, which under KRaft may not have the new
      // topic yet and answers UNKNOWN_TOPIC_OR_PARTITION; the caller polls metadata instead.
      waitForLeaders: false,
      topics: [
        {
          topic: topic.name,
          numPartitions: topic.partitions,
          replicationFactor: topic.replicationFactor,
          configEntries: Object.entries(topic.config).map(([name, value]) => ({ name, value })),
        },
      ],
    });
  } catch (error) {
    if (protocolErrorType(error) === "TOPIC_ALREADY_EXISTS") return false;
    throw error;
  }
}

/**
 * The entries of `config` the broker refuses, each tried alone in a validate-only creation:
 * kafkajs reports a refused creation with the generic "Configuration is invalid", and a user
 * needs to know which key (unknown name or bad value) to fix.
 */
export async function refusedConfigEntries(admin: Admin, topic: DesiredTopic): Promise<string[]> {
  const refused: string[] = [];
  for (const [name, value] of Object.entries(topic.config)) {
    try {
      await admin.createTopics({
        validateOnly: true,
        topics: [
          {
            topic: topic.name,
            numPartitions: topic.partitions,
            replicationFactor: topic.replicationFactor,
            configEntries: [{ name, value }],
          },
        ],
      });
    } catch (error) {
      const type = protocolErrorType(error);
      if (type === "INVALID_CONFIG" || type === "INVALID_REQUEST" || type === "POLICY_VIOLATION") {
        refused.push(`${name}=${value}`);
      } else {
        throw error;
      }
    }
  }
  return refused;
}

/** Sets the topic's dynamic configs to exactly `config` (see the file comment for why). */
export async function replaceTopicConfig(
  admin: Admin,
  name: string,
  config: Record<string, string>,
): Promise<void> {
  await admin.alterConfigs({
    validateOnly: false,
    resources: [
      {
        type: ConfigResourceTypes.TOPIC,
        name,
        configEntries: Object.entries(config).map(([configName, value]) => ({ name: configName, value })),
      },
    ],
  });
}

/** Whether the topic's own configs differ from the desired set, in either direction. */
export function configDiffers(observed: Record<string, string>, desired: Record<string, string>): boolean {
  const keys = new Set([...Object.keys(observed), ...Object.keys(desired)]);
  for (const key of keys) if (observed[key] !== desired[key]) return true;
  return false;
}

export async function addPartitions(admin: Admin, name: string, count: number): Promise<void> {
  await admin.createPartitions({ topicPartitions: [{ topic: name, count }] });
}

/** Deletes a topic; one that is already gone counts as deleted. */
export async function deleteTopic(admin: Admin, name: string): Promise<void> {
  try {
    await admin.deleteTopics({ topics: [name] });
  } catch (error) {
    if (protocolErrorType(error) === "UNKNOWN_TOPIC_OR_PARTITION") return;
    throw error;
  }
}

export async function brokerCount(admin: Admin): Promise<number> {
  return (await admin.describeCluster()).brokers.length;
}

/**
 * Topics as a Metadata v12 request describes them, by name (absent topics are left out).
 * kafkajs speaks Metadata up to v6, before topic ids existed (v10), so this sends the request
 * itself over a plain or TLS socket. With SASL it would have to authenticate first, which is
 * left out: it answers undefined, and the caller falls back to kafkajs (without the id). An old
 * broker or a failing socket on every bootstrap broker answers undefined too.
 */
export async function fetchTopicMetadataV12(
  connection: KafkaConnection,
  names: string[],
  timeoutMs = 5_000,
): Promise<Map<string, TopicShape> | undefined> {
  if (connection.sasl) return undefined;
  for (const broker of connection.brokers) {
    try {
      const response = await exchange(broker, connection.ssl, metadataRequest(names), timeoutMs);
      return parseMetadataResponse(response);
    } catch {
      // try the next bootstrap broker
    }
  }
  return undefined;
}

const METADATA_API_KEY = 3;
const METADATA_VERSION = 12;
const CORRELATION_ID = 1;

function uvarint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** A Metadata v12 request (request header v2: its client id is a classic int16 string). */
export function metadataRequest(names: string[]): Buffer {
  const clientId = Buffer.from("tributary-operator");
  const header = Buffer.alloc(10);
  header.writeInt16BE(METADATA_API_KEY, 0);
  header.writeInt16BE(METADATA_VERSION, 2);
  header.writeInt32BE(CORRELATION_ID, 4);
  header.writeInt16BE(clientId.length, 8);
  const parts: Buffer[] = [header, clientId, uvarint(0), uvarint(names.length + 1)];
  for (const name of names) {
    const encoded = Buffer.from(name);
    // topic_id (zero: look up by name), name as a compact string, no tagged fields
    parts.push(Buffer.alloc(16), uvarint(encoded.length + 1), encoded, uvarint(0));
  }
  // allow_auto_topic_creation=false, include_topic_authorized_operations=false, no tagged fields
  parts.push(Buffer.from([0, 0]), uvarint(0));
  const body = Buffer.concat(parts);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length, 0);
  return Buffer.concat([size, body]);
}

class Reader {
  offset = 0;
  constructor(private readonly buffer: Buffer) {}
  int8() {
    return this.buffer.readInt8(this.advance(1));
  }
  int16() {
    return this.buffer.readInt16BE(this.advance(2));
  }
  int32() {
    return this.buffer.readInt32BE(this.advance(4));
  }
  uvarint(): number {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = this.buffer.readUInt8(this.advance(1));
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
      shift += 7;
    }
  }
  bytes(length: number): Buffer {
    const start = this.advance(length);
    return this.buffer.subarray(start, start + length);
  }
  compactString(): string | null {
    const length = this.uvarint();
    return length === 0 ? null : this.bytes(length - 1).toString("utf8");
  }
  compactArray<T>(item: () => T): T[] {
    const length = this.uvarint();
    return Array.from({ length: Math.max(0, length - 1) }, item);
  }
  taggedFields(): void {
    const count = this.uvarint();
    for (let index = 0; index < count; index++) {
      this.uvarint();
      this.bytes(this.uvarint());
    }
  }
  private advance(length: number): number {
    const start = this.offset;
    if (start + length > this.buffer.length) throw new RangeError("truncated Metadata response");
    this.offset += length;
    return start;
  }
}

/** The topics of a Metadata v12 response (after its size prefix), by name; erroneous ones left out. */
export function parseMetadataResponse(response: Buffer): Map<string, TopicShape> {
  const reader = new Reader(response);
  if (reader.int32() !== CORRELATION_ID) throw new Error("Metadata response for another request");
  reader.taggedFields();
  reader.int32(); // throttle_time_ms
  reader.compactArray(() => {
    reader.int32();
    reader.compactString();
    reader.int32();
    reader.compactString();
    reader.taggedFields();
  });
  reader.compactString(); // cluster_id
  reader.int32(); // controller_id
  const topics = new Map<string, TopicShape>();
  reader.compactArray(() => {
    const errorCode = reader.int16();
    const name = reader.compactString();
    const id = Buffer.from(reader.bytes(16));
    reader.int8(); // is_internal
    const replicaCounts = reader.compactArray(() => {
      reader.int16(); // error_code
      reader.int32(); // partition_index
      reader.int32(); // leader_id
      reader.int32(); // leader_epoch
      const replicas = reader.compactArray(() => reader.int32()).length;
      reader.compactArray(() => reader.int32()); // isr_nodes
      reader.compactArray(() => reader.int32()); // offline_replicas
      reader.taggedFields();
      return replicas;
    });
    reader.int32(); // topic_authorized_operations
    reader.taggedFields();
    if (errorCode !== 0 || !name) return;
    topics.set(name, {
      // Kafka prints a Uuid as unpadded base64url; the all-zero id means "none".
      topicId: id.some((byte) => byte !== 0) ? id.toString("base64url") : undefined,
      partitions: replicaCounts.length,
      replicationFactor: Math.max(0, ...replicaCounts),
    });
  });
  return topics;
}

function exchange(
  broker: string,
  ssl: tls.ConnectionOptions | undefined,
  request: Buffer,
  timeoutMs: number,
): Promise<Buffer> {
  const separator = broker.lastIndexOf(":");
  const host = broker.slice(0, separator);
  const port = Number(broker.slice(separator + 1));
  return new Promise((resolve, reject) => {
    const socket = ssl
      ? tls.connect({ ...ssl, host, port, servername: net.isIP(host) ? undefined : host })
      : net.connect({ host, port });
    const chunks: Buffer[] = [];
    let received = 0;
    const timer = setTimeout(() => socket.destroy(new Error(`no Metadata answer from ${broker}`)), timeoutMs);
    const finish = (error: Error | undefined, value?: Buffer) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value!);
    };
    socket.once(ssl ? "secureConnect" : "connect", () => socket.write(request));
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < 4) return;
      const all = Buffer.concat(chunks);
      const size = all.readInt32BE(0);
      if (all.length >= size + 4) finish(undefined, all.subarray(4, 4 + size));
    });
    socket.on("error", (error) => finish(error));
    socket.on("close", () => finish(new Error(`${broker} closed the connection`)));
  });
}
