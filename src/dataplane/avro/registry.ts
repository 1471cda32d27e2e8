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
 *   data written with the latest one, so consumers can upgrade first. A subject's level, else the
 *   global level (a CONFIG record with subject null, as Confluent's), else `defaultCompatibility`.
 * - Deletion follows Confluent's Schema Registry: a soft delete appends a DELETED record for the
 *   winning registration (keyed by its nonce), after which the version is hidden from listings and
 *   compatibility checks but its id still decodes old messages; a permanent delete of a soft-deleted
 *   version writes tombstones for every key of that (subject, version), so compaction removes it
 *   and the version number becomes free again.
 *
 * Wire format of an encoded message: byte 0 = magic 0, bytes 1-4 = schema id (big endian),
 * then the Avro binary encoding of the value.
 */
import { createHash, randomBytes } from "node:crypto";
import { hostname } from "node:os";
import avro from "avsc";
import type { Admin, Consumer, Kafka } from "kafkajs";
import kafkajs from "kafkajs";
import type { Logger } from "../../log.js";
import { IdempotentProducer, type ProducerLike } from "../idempotentProducer.js";
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
  /** Soft-deleted: hidden from listings and compatibility checks; its id still decodes. */
  deleted?: boolean;
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

/**
 * A delete that Confluent's rules refuse: soft-deleting what is already soft-deleted, or deleting
 * permanently what was not soft-deleted first. `code` is Confluent's error code for it.
 */
export class DeletionRefusedError extends SchemaRegistryError {
  override name = "DeletionRefusedError";
  constructor(
    readonly code: 40404 | 40405 | 40406 | 40407,
    message: string,
  ) {
    super(message);
  }
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

/** Keys of a schema object that the underlying type exports itself. */
const OWN_SCHEMA_KEYS = new Set([
  "type",
  "logicalType",
  "name",
  "namespace",
  "aliases",
  "doc",
  "size",
  "symbols",
  "fields",
  "items",
  "values",
  "default",
  "order",
]);

/**
 * A logical type that changes nothing about values: it only keeps `logicalType` and its
 * attributes (a decimal's precision and scale) in the exported schema. avsc drops a logical type
 * it has no implementation for, so without this the stored schema of a `timestamp-millis` field
 * would say `long`, and a consumer outside Tributary (confluent-kafka, Spark) would read a number
 * where the writer meant a timestamp, and bytes where it meant a decimal.
 */
class KeptLogicalType extends avro.types.LogicalType {
  private readonly extraAttributes: [string, unknown][];

  constructor(schema: Record<string, unknown>, opts?: avro.ForSchemaOptions) {
    super(schema as unknown as avro.schema.AvroSchema, opts);
    this.extraAttributes = Object.keys(schema)
      .filter((key) => !OWN_SCHEMA_KEYS.has(key))
      .sort()
      .map((key) => [key, schema[key]]);
  }

  protected override _fromValue(value: unknown): unknown {
    return value;
  }

  protected override _toValue(value: unknown): unknown {
    return value;
  }

  protected override _resolve(type: avro.Type): ((value: unknown) => unknown) | undefined {
    const writer = avro.Type.isType(type, "logical") ? (type as avro.types.LogicalType).underlyingType : type;
    try {
      this.underlyingType.createResolver(writer);
    } catch {
      return undefined;
    }
    return (value) => value;
  }

  protected override _export(schema: avro.Schema): void {
    const exported = schema as unknown as Record<string, unknown>;
    for (const [key, value] of this.extraAttributes) {
      if (!(key in exported)) exported[key] = value;
    }
  }
}

/** Every logical type name maps to KeptLogicalType: known ones and custom ones alike. */
const keptLogicalTypes = new Proxy({} as Record<string, new (...args: never[]) => avro.types.LogicalType>, {
  get: () => KeptLogicalType,
});

/**
 * The stored form of a schema given as JSON text, object or Type: `schemaText`, keeping its
 * logical types (the runtime Type of `parseSchema` encodes their underlying values, as before).
 * Registration, lookup and ids use this text.
 */
export function storedSchemaText(schema: string | object | avro.Type): string {
  if (avro.Type.isType(schema)) return schemaText(schema as avro.Type);
  parseSchema(schema);
  const json = typeof schema === "string" ? JSON.parse(schema) : schema;
  return schemaText(
    avro.Type.forSchema(json as AvroSchema, {
      logicalTypes: keptLogicalTypes as unknown as avro.ForSchemaOptions["logicalTypes"],
    }),
  );
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
/** Soft delete of the registration whose SCHEMA record carried `nonce`. */
interface DeletedKey {
  keytype: "DELETED";
  subject: string;
  version: number;
  nonce: string;
}
/** A subject's level, or the global level when `subject` is null. A tombstone removes it. */
interface ConfigKey {
  keytype: "CONFIG";
  subject: string | null;
}

/** What the log holds for one (subject, version): the winner's nonce and every key to tombstone. */
interface VersionRecords {
  nonce: string;
  keys: Set<string>;
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
  private globalLevel: Compatibility | undefined;
  /** Per subject and version: the keys written for it, so a permanent delete can tombstone them all. */
  private readonly records = new Map<string, Map<number, VersionRecords>>();
  private consumerFailure: string | undefined;
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
    private readonly producer: ProducerLike,
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
    const producer = IdempotentProducer.of(kafka, { createPartitioner: Partitioners.DefaultPartitioner });
    const groupId = `tributary-schemas-${hostname()}-${randomBytes(6).toString("hex")}`;
    const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 250, allowAutoTopicCreation: false });
    const registry = new SchemaRegistry(admin, producer, consumer, options);
    try {
      await admin.connect();
      await ensureSchemasTopic(admin, topic);
      await producer.connect();
      await consumer.connect();
      await whileTopicUnknown(topic, () => consumer.subscribe({ topic, fromBeginning: true }));
      consumer.on(consumer.events.CRASH, ({ payload }) => {
        // kafkajs restarts the consumer after a retriable crash; one it does not restart leaves
        // this registry's view frozen, which a server must report as not ready.
        if (!payload.restart) registry.consumerFailure = payload.error.message;
      });
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

  /** The offset after the last record of the schemas topic, as the brokers know it now. */
  async logEnd(): Promise<bigint> {
    const offsets = await this.endOffsets();
    return BigInt(offsets[0]?.high ?? "0");
  }

  /** The next offset of the schemas topic this registry will apply: everything before it is known. */
  get appliedOffset(): bigint {
    return this.nextOffset;
  }

  /** Why the registry stopped reading its topic for good (a consumer crash kafkajs gave up on). */
  failure(): string | undefined {
    return this.consumerFailure;
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
    return this.serialized(() => this.registerOnce(subject, schema, options));
  }

  /** Writes from one process run one at a time; other processes are handled by the log. */
  private serialized<T>(write: () => Promise<T>): Promise<T> {
    const next = this.registerChain.then(write);
    this.registerChain = next.catch(() => undefined);
    return next;
  }

  private async registerOnce(
    subject: string,
    schema: string | object | avro.Type,
    options: RegisterOptions,
  ): Promise<RegisteredSchema> {
    this.assertOpen();
    const text = storedSchemaText(schema);
    const type = parseSchema(text);
    const id = schemaIdOf(text);
    for (let attempt = 1; attempt <= MAX_REGISTER_ATTEMPTS; attempt++) {
      await this.sync();
      const versions = this.subjects.get(subject);
      for (const registered of versions?.values() ?? []) {
        if (registered.schema === text && !registered.deleted) return registered;
      }
      const known = this.byId.get(id);
      if (known && known.text !== text) {
        throw new SchemaRegistryError(
          `schema id ${id} of subject '${subject}' collides with another registered schema; change the schema's doc to get another id`,
        );
      }
      this.assertCompatible(subject, type, options.compatibility ?? this.compatibilityOf(subject));
      // After a soft delete the numbering goes on past the deleted versions, as Confluent's does.
      const version = latestVersion(versions, true) + 1;
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

  /** The global level (Confluent's `PUT /config`), stored as a CONFIG record with subject null. */
  async setGlobalCompatibility(level: Compatibility): Promise<void> {
    await this.writeConfig(null, { compatibilityLevel: level });
  }

  /** Removes a subject's own level, so the global one applies again; returns the level it had. */
  async deleteSubjectCompatibility(subject: string): Promise<Compatibility | undefined> {
    const previous = this.configs.get(subject);
    await this.writeConfig(subject, null);
    return previous;
  }

  private async writeConfig(subject: string | null, value: ConfigValue | null): Promise<void> {
    this.assertOpen();
    const key: ConfigKey = { keytype: "CONFIG", subject };
    await this.producer.send({
      topic: this.topic,
      acks: -1,
      messages: [{ key: JSON.stringify(key), value: value === null ? null : JSON.stringify(value) }],
    });
    await this.sync();
  }

  compatibilityOf(subject: string): Compatibility {
    return this.configs.get(subject) ?? this.globalCompatibility();
  }

  /** The level set for this subject alone, if any. */
  subjectCompatibility(subject: string): Compatibility | undefined {
    return this.configs.get(subject);
  }

  /** The level of subjects without their own: the global one from the log, else the default. */
  globalCompatibility(): Compatibility {
    return this.globalLevel ?? this.defaultCompatibility;
  }

  /**
   * Why `schema` may not follow the subject's versions under `level` (the subject's by default):
   * one message per version it conflicts with, none when compatible. With `version`, checks
   * against that one version only (Confluent's `/compatibility/subjects/{s}/versions/{v}`).
   */
  compatibilityProblems(
    subject: string,
    schema: string | object | avro.Type,
    options: { level?: Compatibility; version?: number } = {},
  ): string[] {
    const candidate = parseSchema(schema);
    const level = options.level ?? this.compatibilityOf(subject);
    if (level === "NONE") return [];
    const live = this.versions(subject).reverse();
    const against =
      options.version !== undefined
        ? live.filter((registered) => registered.version === options.version)
        : level.endsWith("_TRANSITIVE")
          ? live
          : live.slice(0, 1);
    const backward = level.startsWith("BACKWARD") || level.startsWith("FULL");
    const forward = level.startsWith("FORWARD") || level.startsWith("FULL");
    const problems: string[] = [];
    for (const previous of against) {
      if (backward) {
        const reason = canRead(candidate, previous.type);
        if (reason) {
          problems.push(
            `${level}: the new schema cannot read data written with version ${previous.version} (${reason})`,
          );
        }
      }
      if (forward) {
        const reason = canRead(previous.type, candidate);
        if (reason) {
          problems.push(
            `${level}: version ${previous.version} cannot read data written with the new schema (${reason})`,
          );
        }
      }
    }
    return problems;
  }

  /**
   * The version of `subject` that holds exactly `schema` (after the same normalisation as
   * registration), or undefined. Soft-deleted versions count only with `includeDeleted`.
   */
  lookup(
    subject: string,
    schema: string | object | avro.Type,
    options: { includeDeleted?: boolean } = {},
  ): RegisteredSchema | undefined {
    const text = storedSchemaText(schema);
    const matches = [...(this.subjects.get(subject)?.values() ?? [])].filter(
      (registered) => registered.schema === text && (options.includeDeleted || !registered.deleted),
    );
    return matches.sort((a, b) => a.version - b.version)[0];
  }

  /**
   * Soft-deletes one version (permanent: false) or permanently deletes a soft-deleted one, as
   * Confluent's `DELETE /subjects/{s}/versions/{v}`. Returns the version.
   */
  deleteVersion(subject: string, version: number, options: { permanent?: boolean } = {}): Promise<number> {
    return this.serialized(async () => {
      this.assertOpen();
      await this.sync();
      const registered = this.subjects.get(subject)?.get(version);
      if (!registered) {
        if (!this.subjects.has(subject)) throw new SubjectNotFoundError(subject);
        throw new SubjectNotFoundError(subject, version);
      }
      if (options.permanent) {
        if (!registered.deleted) {
          throw new DeletionRefusedError(
            40407,
            `Subject '${subject}' Version ${version} was not deleted first before being permanently deleted`,
          );
        }
        await this.tombstone(subject, [version]);
      } else {
        if (registered.deleted) {
          throw new DeletionRefusedError(
            40406,
            `Subject '${subject}' Version ${version} was soft deleted. Set permanent=true to delete permanently`,
          );
        }
        await this.markDeleted(subject, [version]);
      }
      return version;
    });
  }

  /**
   * Soft-deletes every version of a subject, or permanently deletes a soft-deleted subject, as
   * Confluent's `DELETE /subjects/{s}`. Returns the versions deleted, oldest first.
   */
  deleteSubject(subject: string, options: { permanent?: boolean } = {}): Promise<number[]> {
    return this.serialized(async () => {
      this.assertOpen();
      await this.sync();
      const all = [...(this.subjects.get(subject)?.values() ?? [])].sort((a, b) => a.version - b.version);
      if (all.length === 0) throw new SubjectNotFoundError(subject);
      const live = all.filter((registered) => !registered.deleted).map((registered) => registered.version);
      if (options.permanent) {
        if (live.length > 0) {
          throw new DeletionRefusedError(
            40405,
            `Subject '${subject}' was not deleted first before being permanently deleted`,
          );
        }
        const versions = all.map((registered) => registered.version);
        await this.tombstone(subject, versions);
        return versions;
      }
      if (live.length === 0) {
        throw new DeletionRefusedError(
          40404,
          `Subject '${subject}' was soft deleted. Set permanent=true to delete permanently`,
        );
      }
      await this.markDeleted(subject, live);
      return live;
    });
  }

  private async markDeleted(subject: string, versions: number[]): Promise<void> {
    const messages = versions.map((version) => {
      const nonce = this.records.get(subject)?.get(version)?.nonce ?? "";
      const key: DeletedKey = { keytype: "DELETED", subject, version, nonce };
      return { key: JSON.stringify(key), value: JSON.stringify({ deleted: true }) };
    });
    await this.producer.send({ topic: this.topic, acks: -1, messages });
    await this.sync();
  }

  /** Tombstones every key written for these versions: compaction then removes them for good. */
  private async tombstone(subject: string, versions: number[]): Promise<void> {
    const messages: { key: string; value: null }[] = [];
    for (const version of versions) {
      const records = this.records.get(subject)?.get(version);
      if (!records) continue;
      const deletedKey: DeletedKey = { keytype: "DELETED", subject, version, nonce: records.nonce };
      messages.push({ key: JSON.stringify(deletedKey), value: null });
      for (const key of records.keys) messages.push({ key, value: null });
    }
    if (messages.length === 0) return;
    await this.producer.send({ topic: this.topic, acks: -1, messages });
    await this.sync();
  }

  /** Throws IncompatibleSchemaError when `schema` may not follow the subject's versions. */
  checkCompatibility(subject: string, schema: string | object | avro.Type, level?: Compatibility): void {
    this.assertCompatible(subject, parseSchema(schema), level ?? this.compatibilityOf(subject));
  }

  private assertCompatible(subject: string, candidate: avro.Type, level: Compatibility): void {
    if (level === "NONE") return;
    const versions = this.versions(subject).reverse();
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

  /** The latest version of a subject that is not soft-deleted, or SubjectNotFoundError. */
  latest(subject: string): RegisteredSchema {
    const versions = this.subjects.get(subject);
    const registered = versions?.get(latestVersion(versions, false));
    if (!registered) throw new SubjectNotFoundError(subject);
    return registered;
  }

  /** One version; a soft-deleted one only with `includeDeleted`. */
  version(subject: string, version: number, options: { includeDeleted?: boolean } = {}): RegisteredSchema {
    const registered = this.subjects.get(subject)?.get(version);
    if (!registered || (registered.deleted && !options.includeDeleted)) {
      throw new SubjectNotFoundError(subject, version);
    }
    return registered;
  }

  /** Versions of a subject, oldest first; soft-deleted ones only with `includeDeleted`. */
  versions(subject: string, options: { includeDeleted?: boolean } = {}): RegisteredSchema[] {
    return [...(this.subjects.get(subject)?.values() ?? [])]
      .filter((registered) => options.includeDeleted || !registered.deleted)
      .sort((a, b) => a.version - b.version);
  }

  /** Subjects with a version that is not soft-deleted (any version with `includeDeleted`). */
  subjectNames(options: { includeDeleted?: boolean } = {}): string[] {
    return [...this.subjects.entries()]
      .filter(([, versions]) => [...versions.values()].some((v) => options.includeDeleted || !v.deleted))
      .map(([subject]) => subject)
      .sort();
  }

  /** The schema text of an id (soft-deleted ones too, so old messages decode), or undefined. */
  schemaById(id: number): { schema: string; type: avro.Type } | undefined {
    const known = this.byId.get(id);
    return known ? { schema: known.text, type: known.type } : undefined;
  }

  /** Every (subject, version) that holds schema `id`. */
  versionsOfId(id: number, options: { includeDeleted?: boolean } = {}): RegisteredSchema[] {
    const out: RegisteredSchema[] = [];
    for (const versions of this.subjects.values()) {
      for (const registered of versions.values()) {
        if (registered.id === id && (options.includeDeleted || !registered.deleted)) out.push(registered);
      }
    }
    return out.sort((a, b) => a.subject.localeCompare(b.subject) || a.version - b.version);
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
    const rawKeyText = rawKey.toString("utf8");
    const key = JSON.parse(rawKeyText) as SchemaKey | DeletedKey | ConfigKey;
    if (key.keytype === "CONFIG") {
      const level =
        rawValue === null
          ? undefined
          : (JSON.parse(rawValue.toString("utf8")) as ConfigValue).compatibilityLevel;
      if (key.subject === null) this.globalLevel = level;
      else if (level === undefined) this.configs.delete(key.subject);
      else this.configs.set(key.subject, level);
      return;
    }
    if (key.keytype === "DELETED") {
      const registered = this.subjects.get(key.subject)?.get(key.version);
      const records = this.records.get(key.subject)?.get(key.version);
      if (rawValue !== null && registered && records?.nonce === key.nonce && !registered.deleted) {
        this.subjects.get(key.subject)!.set(key.version, { ...registered, deleted: true });
      }
      return;
    }
    if (key.keytype !== "SCHEMA") return;
    if (rawValue === null) {
      this.applySchemaTombstone(key, rawKeyText);
      return;
    }
    const value = JSON.parse(rawValue.toString("utf8")) as SchemaValue;
    let versions = this.subjects.get(value.subject);
    let perVersion = this.records.get(value.subject);
    if (!perVersion) {
      perVersion = new Map();
      this.records.set(value.subject, perVersion);
    }
    // First record wins: a later record for a taken version is a writer that lost a race. Its key
    // is kept, so that a permanent delete tombstones it too and compaction cannot revive it.
    if (versions?.has(value.version)) {
      perVersion.get(value.version)?.keys.add(rawKeyText);
      return;
    }
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
    perVersion.set(value.version, { nonce: key.nonce, keys: new Set([rawKeyText]) });
  }

  /** A permanent delete: the winner's tombstone removes the version, and its id when no longer used. */
  private applySchemaTombstone(key: SchemaKey, rawKeyText: string): void {
    const records = this.records.get(key.subject)?.get(key.version);
    if (!records) return;
    records.keys.delete(rawKeyText);
    if (records.nonce !== key.nonce) return;
    const versions = this.subjects.get(key.subject);
    const removed = versions?.get(key.version);
    versions?.delete(key.version);
    if (versions?.size === 0) this.subjects.delete(key.subject);
    // Losers' keys stay known until their own tombstones arrive; a version freed here may be
    // claimed again, and its new winner starts a fresh set of keys.
    this.records.get(key.subject)!.delete(key.version);
    if (this.records.get(key.subject)!.size === 0) this.records.delete(key.subject);
    if (removed && this.versionsOfId(removed.id, { includeDeleted: true }).length === 0) {
      this.byId.delete(removed.id);
    }
  }
}

/** The highest version number, counting soft-deleted versions only with `includeDeleted`. */
function latestVersion(versions: Map<number, RegisteredSchema> | undefined, includeDeleted: boolean): number {
  let latest = 0;
  for (const registered of versions?.values() ?? []) {
    if (includeDeleted || !registered.deleted) latest = Math.max(latest, registered.version);
  }
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
