/**
 * An Avro schema registry kept in a compacted Kafka topic, in the manner of Confluent's `_schemas`
 * topic, and the Confluent wire format that carries a schema id in front of every message.
 *
 * - Subjects are named `<topic>-value` (Confluent's TopicNameStrategy) and hold numbered versions.
 * - Schema ids are content-addressed: the first 31 bits of the SHA-256 of the schema's JSON
 *   (with defaults, docs and other attributes). Every collector replica registers its schema
 *   when it starts, often at the same moment; a content id needs no coordination between them,
 *   and the same schema gets the same id in every subject and every registry process.
 * - The log order of the single-partition topic serialises registrations: the first record for a
 *   (subject, version) wins. A writer that reads back another schema at the version it claimed
 *   lost a race and retries on top of the winner, re-checking compatibility. Record keys carry a
 *   per-attempt nonce so compaction never removes a winning record in favour of a later loser.
 * - Compatibility is checked with avsc's resolver: `reader.createResolver(writer)` throws when the
 *   reader cannot decode what the writer wrote. BACKWARD (the default) means the new schema reads
 *   data written with the latest one, so consumers can upgrade first.
 *
 * Wire format of an encoded message: byte 0 = magic 0, bytes 1-4 = schema id (big endian),
 * then the Avro binary encoding of the value.
 */
import { createHash, randomBytes } from "node:crypto";
import { hostname } from "node:os";
import avro from "avsc";
import type { Admin, Consumer, Kafka, Producer } from "kafkajs";
import kafkajs from "kafkajs";
import type { Logger } from "../../log.js";
import { kafkaLogCreator } from "./kafka-log.js";

const { Kafka: KafkaClient, Partitioners, logLevel } = kafkajs;

/** The compacted topic that holds every registered schema. */
export const SCHEMAS_TOPIC = "_tributary_schemas";

/** Confluent wire format: magic byte 0, then a 4-byte big-endian schema id. */
export const WIRE_MAGIC = 0;
export const WIRE_HEADER_BYTES = 5;

export const COMPATIBILITY_LEVELS = [
  "NONE",
  "BACKWARD",
  "BACKWARD_TRANSITIVE",
  "FORWARD",
  "FORWARD_TRANSITIVE",
  "FULL",
  "FULL_TRANSITIVE",
] as const;
export type Compatibility = (typeof COMPATIBILITY_LEVELS)[number];

export type AvroType = avro.Type;
export type AvroSchema = avro.schema.AvroSchema;

/** One version of a subject. `type` is the parsed schema, ready to encode. */
export interface RegisteredSchema {
  subject: string;
  version: number;
  id: number;
  /** The schema as JSON text, with defaults and docs (what is stored and hashed). */
  schema: string;
  type: avro.Type;
}

export class SchemaRegistryError extends Error {
  override name = "SchemaRegistryError";
}

export class InvalidSchemaError extends SchemaRegistryError {
  override name = "InvalidSchemaError";
}

export class IncompatibleSchemaError extends SchemaRegistryError {
  override name = "IncompatibleSchemaError";
  constructor(
    readonly subject: string,
    readonly compatibility: Compatibility,
    readonly againstVersion: number,
    readonly reason: string,
  ) {
    super(
      `schema for subject '${subject}' is not ${compatibility}-compatible with version ${againstVersion}: ${reason}`,
    );
  }
}

export class UnknownSchemaIdError extends SchemaRegistryError {
  override name = "UnknownSchemaIdError";
  constructor(readonly id: number) {
    super(
      `schema id ${id} is not registered in '${SCHEMAS_TOPIC}' (message written by an unknown registry?)`,
    );
  }
}

export class SubjectNotFoundError extends SchemaRegistryError {
  override name = "SubjectNotFoundError";
  constructor(
    readonly subject: string,
    readonly version?: number,
  ) {
    super(
      version === undefined
        ? `subject '${subject}' has no registered schema`
        : `subject '${subject}' has no version ${version}`,
    );
  }
}

export class WireFormatError extends SchemaRegistryError {
  override name = "WireFormatError";
}

/** Confluent's TopicNameStrategy: the value schema of topic `t` lives under subject `t-value`. */
export function subjectForTopic(topic: string): string {
  return `${topic}-value`;
}

/** Parses a schema (JSON text, object or Type); an invalid schema is an InvalidSchemaError. */
export function parseSchema(schema: string | object | avro.Type): avro.Type {
  if (avro.Type.isType(schema)) return schema as avro.Type;
  let json: unknown = schema;
  if (typeof schema === "string") {
    try {
      json = JSON.parse(schema);
    } catch (error) {
      throw new InvalidSchemaError(`schema is not valid JSON: ${(error as Error).message}`);
    }
  }
  try {
    return avro.Type.forSchema(json as AvroSchema);
  } catch (error) {
    throw new InvalidSchemaError(`schema is not a valid Avro schema: ${(error as Error).message}`);
  }
}

/** The stored form of a schema: JSON with every attribute that matters to a reader (defaults). */
export function schemaText(type: avro.Type): string {
  return JSON.stringify(type.schema({ exportAttrs: true }));
}

/** The content-addressed id of a schema text: 31 bits of its SHA-256, never 0. */
export function schemaIdOf(text: string): number {
  const id = createHash("sha256").update(text).digest().readUInt32BE(0) & 0x7fffffff;
  return id === 0 ? 1 : id;
}

/** Splits a framed message into its schema id and the offset of the Avro body. */
export function readFrame(message: Buffer): { id: number; bodyOffset: number } {
  if (message.length < WIRE_HEADER_BYTES) {
    throw new WireFormatError(
      `message of ${message.length} bytes is shorter than the ${WIRE_HEADER_BYTES}-byte wire header`,
    );
  }
  if (message[0] !== WIRE_MAGIC) {
    throw new WireFormatError(`message starts with magic byte ${message[0]}, expected ${WIRE_MAGIC}`);
  }
  return { id: message.readUInt32BE(1), bodyOffset: WIRE_HEADER_BYTES };
}

/** Frames an already encoded Avro body. */
export function frame(id: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(WIRE_HEADER_BYTES + body.length);
  out[0] = WIRE_MAGIC;
  out.writeUInt32BE(id, 1);
  body.copy(out, WIRE_HEADER_BYTES);
  return out;
}

// One scratch buffer for every encode: avsc writes into it and we copy out exactly the bytes used,
// which saves the intermediate buffer that `toBuffer` + frame would allocate.
let scratch = Buffer.allocUnsafe(64 * 1024);

/** Encodes `value` with `type` in the wire format under schema `id`. Throws on an invalid value. */
export function encodeWith(id: number, type: avro.Type, value: unknown): Buffer {
  scratch[0] = WIRE_MAGIC;
  scratch.writeUInt32BE(id, 1);
  let end = type.encode(value, scratch, WIRE_HEADER_BYTES);
  if (end < 0) {
    scratch = Buffer.allocUnsafe(Math.max(scratch.length * 2, scratch.length - end));
    scratch[0] = WIRE_MAGIC;
    scratch.writeUInt32BE(id, 1);
    end = type.encode(value, scratch, WIRE_HEADER_BYTES);
  }
  const out = Buffer.allocUnsafe(end);
  scratch.copy(out, 0, 0, end);
  return out;
}

/** Checks that `reader` can decode data written with `writer`; returns the reason when not. */
export function canRead(reader: avro.Type, writer: avro.Type): string | undefined {
  try {
    reader.createResolver(writer);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

interface SchemaKey {
  keytype: "SCHEMA";
  subject: string;
  version: number;
  id: number;
  nonce: string;
}
interface ConfigKey {
  keytype: "CONFIG";
  subject: string;
}
interface SchemaValue {
  subject: string;
  version: number;
  id: number;
  schema: string;
}
interface ConfigValue {
  compatibilityLevel: Compatibility;
}

export interface SchemaRegistryOptions {
  /** Bootstrap brokers; ignored when `kafka` is given. */
  brokers?: string[];
  /** A client to share with the caller (the collector passes its own). */
  kafka?: Kafka;
  clientId?: string;
  topic?: string;
  /** Compatibility of subjects that have no level of their own. */
  defaultCompatibility?: Compatibility;
  /** How long a read-to-the-end of the topic may take before it is an error. */
  syncTimeoutMs?: number;
  logger?: Logger;
}

export interface RegisterOptions {
  /** Overrides the subject's level for this registration only. */
  compatibility?: Compatibility;
}

const MAX_REGISTER_ATTEMPTS = 8;

export class SchemaRegistry {
  readonly topic: string;
  readonly defaultCompatibility: Compatibility;
  private readonly byId = new Map<number, { text: string; type: avro.Type }>();
  private readonly subjects = new Map<string, Map<number, RegisteredSchema>>();
  private readonly configs = new Map<string, Compatibility>();
  private readonly resolvers = new WeakMap<avro.Type, Map<number, avro.Resolver>>();
  /** The next offset of the schemas topic to apply (its single partition). */
  private nextOffset = 0n;
  private readonly waiters: { offset: bigint; resolve: () => void }[] = [];
  private registerChain: Promise<unknown> = Promise.resolve();
  private closed = false;

  private readonly syncTimeoutMs: number;
  private readonly logger: Logger | undefined;

  private constructor(
    private readonly admin: Admin,
    private readonly producer: Producer,
    private readonly consumer: Consumer,
    options: SchemaRegistryOptions,
  ) {
    this.topic = options.topic ?? SCHEMAS_TOPIC;
    this.defaultCompatibility = options.defaultCompatibility ?? "BACKWARD";
    this.syncTimeoutMs = options.syncTimeoutMs ?? 30_000;
    this.logger = options.logger;
  }

  /**
   * Connects, creates the schemas topic when missing (compacted, one partition so the log order
   * is the registration order) and reads it to the end.
   */
  static async connect(options: SchemaRegistryOptions): Promise<SchemaRegistry> {
    let kafka = options.kafka;
    if (!kafka) {
      if (!options.brokers?.length)
        throw new SchemaRegistryError("schema registry needs `brokers` or `kafka`");
      kafka = new KafkaClient({
        clientId: options.clientId ?? "tributary-schema-registry",
        brokers: options.brokers,
        ...(options.logger
          ? { logLevel: logLevel.INFO, logCreator: kafkaLogCreator(options.logger) }
          : { logLevel: logLevel.NOTHING }),
      });
    }
    const topic = options.topic ?? SCHEMAS_TOPIC;
    const admin = kafka.admin();
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    const groupId = `tributary-schemas-${hostname()}-${randomBytes(6).toString("hex")}`;
    const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 250, allowAutoTopicCreation: false });
    const registry = new SchemaRegistry(admin, producer, consumer, options);
    try {
      await admin.connect();
      await ensureSchemasTopic(admin, topic);
      await producer.connect();
      await consumer.connect();
      await whileTopicUnknown(topic, () => consumer.subscribe({ topic, fromBeginning: true }));
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ message }) =>
          registry.apply(message.key, message.value, BigInt(message.offset)),
      });
      await registry.sync();
    } catch (error) {
      await registry.close().catch(() => undefined);
      throw error;
    }
    return registry;
  }

  /** Reads the schemas topic up to its current end, so every schema registered before is known. */
  async sync(): Promise<void> {
    const offsets = await this.endOffsets();
    const high = BigInt(offsets[0]?.high ?? "0");
    if (this.nextOffset >= high) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(
          new SchemaRegistryError(
            `reading '${this.topic}' to offset ${high} took more than ${this.syncTimeoutMs} ms (at ${this.nextOffset})`,
          ),
        );
      }, this.syncTimeoutMs);
      const waiter = {
        offset: high,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
  }

  /**
   * The end of the topic. Right after the topic was created, a broker may still answer that it
   * does not know it (KRaft metadata reaches brokers one by one): retried for a few seconds.
   */
  private async endOffsets(): Promise<{ partition: number; high: string }[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.admin.fetchTopicOffsets(this.topic);
      } catch (error) {
        const type = (error as { type?: string }).type;
        if (attempt >= 50 || (type !== "UNKNOWN_TOPIC_OR_PARTITION" && type !== "LEADER_NOT_AVAILABLE"))
          throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /**
   * Registers `schema` under `subject` and returns its version and id. Registering a schema the
   * subject already holds returns the existing version (idempotent, as collectors register at
   * every start). Throws IncompatibleSchemaError when the subject's compatibility level refuses it.
   */
  register(
    subject: string,
    schema: string | object | avro.Type,
    options: RegisterOptions = {},
  ): Promise<RegisteredSchema> {
    // Registrations from one process run one at a time; other processes are handled by the log.
    const next = this.registerChain.then(() => this.registerOnce(subject, schema, options));
    this.registerChain = next.catch(() => undefined);
    return next;
  }

  private async registerOnce(
    subject: string,
    schema: string | object | avro.Type,
    options: RegisterOptions,
  ): Promise<RegisteredSchema> {
    this.assertOpen();
    const type = parseSchema(schema);
    const text = schemaText(type);
    const id = schemaIdOf(text);
    for (let attempt = 1; attempt <= MAX_REGISTER_ATTEMPTS; attempt++) {
      await this.sync();
      const versions = this.subjects.get(subject);
      for (const registered of versions?.values() ?? []) {
        if (registered.schema === text) return registered;
      }
      const known = this.byId.get(id);
      if (known && known.text !== text) {
        throw new SchemaRegistryError(
          `schema id ${id} of subject '${subject}' collides with another registered schema; change the schema's doc to get another id`,
        );
      }
      this.assertCompatible(subject, type, options.compatibility ?? this.compatibilityOf(subject));
      const version = latestVersion(versions) + 1;
      const key: SchemaKey = {
        keytype: "SCHEMA",
        subject,
        version,
        id,
        nonce: randomBytes(8).toString("hex"),
      };
      const value: SchemaValue = { subject, version, id, schema: text };
      await this.producer.send({
        topic: this.topic,
        acks: -1,
        messages: [{ key: JSON.stringify(key), value: JSON.stringify(value) }],
      });
      await this.sync();
      const winner = this.subjects.get(subject)?.get(version);
      if (winner?.schema === text) {
        this.logger?.info({ subject, version, id }, "registered schema");
        return winner;
      }
      this.logger?.info(
        { subject, version, attempt },
        "another registry claimed the version first; retrying",
      );
    }
    throw new SchemaRegistryError(
      `could not register a schema under subject '${subject}' after ${MAX_REGISTER_ATTEMPTS} attempts: other registries kept claiming the next version`,
    );
  }

  /** Sets the compatibility level of one subject (stored in the topic, like Confluent's CONFIG records). */
  async setCompatibility(subject: string, level: Compatibility): Promise<void> {
    this.assertOpen();
    const key: ConfigKey = { keytype: "CONFIG", subject };
    const value: ConfigValue = { compatibilityLevel: level };
    await this.producer.send({
      topic: this.topic,
      acks: -1,
      messages: [{ key: JSON.stringify(key), value: JSON.stringify(value) }],
    });
    await this.sync();
  }

  compatibilityOf(subject: string): Compatibility {
    return this.configs.get(subject) ?? this.defaultCompatibility;
  }

  /** Throws IncompatibleSchemaError when `schema` may not follow the subject's versions. */
  checkCompatibility(subject: string, schema: string | object | avro.Type, level?: Compatibility): void {
    this.assertCompatible(subject, parseSchema(schema), level ?? this.compatibilityOf(subject));
  }

  private assertCompatible(subject: string, candidate: avro.Type, level: Compatibility): void {
    if (level === "NONE") return;
    const versions = [...(this.subjects.get(subject)?.values() ?? [])].sort((a, b) => b.version - a.version);
    if (versions.length === 0) return;
    const against = level.endsWith("_TRANSITIVE") ? versions : versions.slice(0, 1);
    const backward = level.startsWith("BACKWARD") || level.startsWith("FULL");
    const forward = level.startsWith("FORWARD") || level.startsWith("FULL");
    for (const previous of against) {
      if (backward) {
        const reason = canRead(candidate, previous.type);
        if (reason) {
          throw new IncompatibleSchemaError(
            subject,
            level,
            previous.version,
            `the new schema cannot read data written with it (${reason})`,
          );
        }
      }
      if (forward) {
        const reason = canRead(previous.type, candidate);
        if (reason) {
          throw new IncompatibleSchemaError(
            subject,
            level,
            previous.version,
            `it cannot read data written with the new schema (${reason})`,
          );
        }
      }
    }
  }

  /** The latest version of a subject, or SubjectNotFoundError. */
  latest(subject: string): RegisteredSchema {
    const versions = this.subjects.get(subject);
    const registered = versions?.get(latestVersion(versions));
    if (!registered) throw new SubjectNotFoundError(subject);
    return registered;
  }

  version(subject: string, version: number): RegisteredSchema {
    const registered = this.subjects.get(subject)?.get(version);
    if (!registered) throw new SubjectNotFoundError(subject, version);
    return registered;
  }

  /** Versions of a subject, oldest first. */
  versions(subject: string): RegisteredSchema[] {
    return [...(this.subjects.get(subject)?.values() ?? [])].sort((a, b) => a.version - b.version);
  }

  subjectNames(): string[] {
    return [...this.subjects.keys()].sort();
  }

  /** The writer type of a schema id; reads the topic again once before giving up on an unknown id. */
  async typeById(id: number): Promise<avro.Type> {
    let known = this.byId.get(id);
    if (!known) {
      await this.sync();
      known = this.byId.get(id);
    }
    if (!known) throw new UnknownSchemaIdError(id);
    return known.type;
  }

  /** Encodes `value` under a registered schema in the wire format. Throws on an invalid value. */
  encode(registered: RegisteredSchema, value: unknown): Buffer {
    return encodeWith(registered.id, registered.type, value);
  }

  /**
   * Decodes a framed message. Without `reader` the value comes out as the writer wrote it; with a
   * reader type it is resolved into that type (fields added with defaults, removed fields dropped).
   */
  async decode(message: Buffer, reader?: avro.Type): Promise<unknown> {
    const { id } = readFrame(message);
    if (!this.byId.has(id)) await this.typeById(id);
    return this.decodeKnown(message, reader);
  }

  /**
   * Synchronous decode for hot loops: throws UnknownSchemaIdError when the id was not read yet
   * (call `decode` or `sync` then). Resolvers are cached per (reader type, writer id).
   */
  decodeKnown(message: Buffer, reader?: avro.Type): unknown {
    const { id, bodyOffset } = readFrame(message);
    const writer = this.byId.get(id);
    if (!writer) throw new UnknownSchemaIdError(id);
    const body = message.subarray(bodyOffset);
    if (!reader || reader === writer.type) return writer.type.fromBuffer(body);
    let perWriter = this.resolvers.get(reader);
    if (!perWriter) {
      perWriter = new Map();
      this.resolvers.set(reader, perWriter);
    }
    let resolver = perWriter.get(id);
    if (!resolver) {
      const reason = canRead(reader, writer.type);
      if (reason) {
        throw new SchemaRegistryError(
          `reader schema cannot read messages written with schema id ${id}: ${reason}`,
        );
      }
      resolver = reader.createResolver(writer.type);
      perWriter.set(id, resolver);
    }
    return reader.fromBuffer(body, resolver);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([
      this.consumer.disconnect(),
      this.producer.disconnect(),
      this.admin.disconnect(),
    ]);
    for (const waiter of this.waiters.splice(0)) waiter.resolve();
  }

  private assertOpen(): void {
    if (this.closed) throw new SchemaRegistryError("schema registry is closed");
  }

  /** Applies one record of the schemas topic; malformed records are logged and skipped, never fatal. */
  private apply(rawKey: Buffer | null, rawValue: Buffer | null, offset: bigint): void {
    try {
      if (rawKey) this.applyRecord(rawKey, rawValue);
    } catch (error) {
      this.logger?.warn(
        { offset: String(offset), error: (error as Error).message },
        "skipping malformed schema record",
      );
    }
    this.nextOffset = offset + 1n;
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const waiter = this.waiters[i]!;
      if (this.nextOffset >= waiter.offset) {
        this.waiters.splice(i, 1);
        waiter.resolve();
      }
    }
  }

  private applyRecord(rawKey: Buffer, rawValue: Buffer | null): void {
    const key = JSON.parse(rawKey.toString("utf8")) as SchemaKey | ConfigKey;
    if (key.keytype === "CONFIG") {
      if (rawValue === null) this.configs.delete(key.subject);
      else
        this.configs.set(
          key.subject,
          (JSON.parse(rawValue.toString("utf8")) as ConfigValue).compatibilityLevel,
        );
      return;
    }
    if (key.keytype !== "SCHEMA" || rawValue === null) return;
    const value = JSON.parse(rawValue.toString("utf8")) as SchemaValue;
    let versions = this.subjects.get(value.subject);
    // First record wins: a later record for a taken version is a writer that lost a race.
    if (versions?.has(value.version)) return;
    let known = this.byId.get(value.id);
    if (!known) {
      known = { text: value.schema, type: parseSchema(value.schema) };
      this.byId.set(value.id, known);
    } else if (known.text !== value.schema) {
      return;
    }
    if (!versions) {
      versions = new Map();
      this.subjects.set(value.subject, versions);
    }
    versions.set(value.version, {
      subject: value.subject,
      version: value.version,
      id: value.id,
      schema: value.schema,
      type: known.type,
    });
  }
}

function latestVersion(versions: Map<number, RegisteredSchema> | undefined): number {
  let latest = 0;
  for (const version of versions?.keys() ?? []) latest = Math.max(latest, version);
  return latest;
}

async function ensureSchemasTopic(admin: Admin, topic: string): Promise<void> {
  const existing = await admin.listTopics();
  if (existing.includes(topic)) return;
  const { brokers } = await admin.describeCluster();
  const replicationFactor = Math.min(3, brokers.length);
  try {
    await admin.createTopics({
      waitForLeaders: false,
      topics: [
        {
          topic,
          numPartitions: 1,
          replicationFactor,
          configEntries: [
            { name: "cleanup.policy", value: "compact" },
            { name: "min.insync.replicas", value: String(Math.max(1, replicationFactor - 1)) },
          ],
        },
      ],
    });
  } catch (error) {
    // Another registry created it between our list and our create.
    if (!/already exists/i.test((error as Error).message)) throw error;
  }
  await waitForLeaders(admin, topic);
}

/**
 * Runs `call` again while a broker answers UNKNOWN_TOPIC_OR_PARTITION: KRaft brokers apply a new
 * topic from the metadata log one after another, so the broker that showed a leader above may not
 * be the one the consumer asks next.
 */
async function whileTopicUnknown<T>(topic: string, call: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      const unknown = (error as { type?: string }).type === "UNKNOWN_TOPIC_OR_PARTITION";
      if (!unknown || Date.now() > deadline) {
        if (unknown)
          throw new SchemaRegistryError(
            `topic '${topic}' is still unknown to a broker after ${timeoutMs} ms`,
          );
        throw error;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * kafkajs's own `waitForLeaders` gives up on the UNKNOWN_TOPIC_OR_PARTITION that a KRaft broker
 * answers for a topic created a moment ago; poll the metadata until the partition has a leader.
 */
async function waitForLeaders(admin: Admin, topic: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      const partitions = topics[0]?.partitions ?? [];
      if (partitions.length > 0 && partitions.every((p) => p.leader >= 0)) return;
      last = "no leader yet";
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new SchemaRegistryError(`topic '${topic}' has no leader after ${timeoutMs} ms (${last})`);
}
