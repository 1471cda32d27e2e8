import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from "kafkajs";
import type { Logger } from "../../log.js";
import { IdempotentProducer } from "../idempotentProducer.js";
import { createKafkaClient, type KafkaSecurity } from "../kafkaClient.js";
import type { RecordDecoder } from "./decode.js";
import { type RecordFileWriterFactory, RecordRejectedError } from "./format.js";
import type { RollPolicy, SinkFormat } from "./layout.js";
import type { SinkMetrics } from "./metrics.js";
import { PartitionWriter } from "./partitionWriter.js";
import type { SinkTarget } from "./target.js";

export interface SinkOptions {
  brokers: string[];
  /** A client to use instead of one made from `brokers` and `security`. */
  kafka?: Kafka;
  /** TLS and SASL towards the brokers. */
  security?: KafkaSecurity;
  topic: string;
  groupId: string;
  clientId?: string;
  format: SinkFormat;
  target: SinkTarget;
  writerFactory: RecordFileWriterFactory;
  roll: RollPolicy;
  decoder: RecordDecoder;
  /** Where undecodable records go, with the reason in a header. */
  deadLetterTopic: string;
  /** Top-level field with the event time (epoch ms, Date or ISO string); the Kafka timestamp otherwise. */
  eventTimeField?: string;
  writerId: string;
  metrics: SinkMetrics;
  log: Logger;
  /** How long the group waits for a silent member before giving its partitions to others. */
  sessionTimeoutMs?: number;
  /** How often open files are checked for age; defaults to a quarter of maxAgeMs, at most 5 s. */
  ageCheckIntervalMs?: number;
}

/** Headers of a dead-letter record. */
export const DEAD_LETTER_HEADERS = {
  reason: "tributary.dlq.reason",
  topic: "tributary.dlq.topic",
  partition: "tributary.dlq.partition",
  offset: "tributary.dlq.offset",
  group: "tributary.dlq.group",
} as const;

/**
 * A consumer group member that rolls its partitions of one topic into files. Offsets are
 * committed by hand (autoCommit off) and only up to the first offset of each partition's open
 * file, so the group's committed offsets always point at records that are not yet durable.
 */
export class Sink {
  private readonly kafka: Kafka;
  private readonly consumer: Consumer;
  private readonly producer: IdempotentProducer;
  private readonly partitions = new Map<number, PartitionWriter>();
  private readonly eventTimeField: string | undefined;
  /** Batches, the age timer and shutdown touch the same files: they run one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  private ageTimer: NodeJS.Timeout | undefined;
  private joined = false;
  /** Between kafkajs noticing a rebalance and the new assignment: no file is closed by age then. */
  private rebalancing = false;
  private running = false;
  private stopping: Promise<void> | undefined;
  private crashed: Error | undefined;
  private reportFailure: (error: Error) => void = () => undefined;
  /** Settles when the sink can no longer work (its consumer gave up); the process should exit. */
  readonly failed = new Promise<Error>((resolve) => {
    this.reportFailure = resolve;
  });

  constructor(private readonly options: SinkOptions) {
    this.eventTimeField = options.eventTimeField;
    this.kafka =
      options.kafka ??
      createKafkaClient({
        clientId: options.clientId ?? `tributary-sink-${options.writerId}`,
        brokers: options.brokers,
        security: options.security,
        logger: options.log,
      });
    const sessionTimeout = options.sessionTimeoutMs ?? 30_000;
    this.consumer = this.kafka.consumer({
      groupId: options.groupId,
      allowAutoTopicCreation: false,
      sessionTimeout,
      heartbeatInterval: Math.min(3_000, Math.floor(sessionTimeout / 3)),
    });
    // Idempotent with acks from all in-sync replicas: a dead letter is acknowledged before the
    // offset that passes its record is committed.
    this.producer = IdempotentProducer.of(this.kafka);
  }

  live(): boolean {
    return this.crashed === undefined;
  }

  ready(): boolean {
    return this.running && this.joined && this.crashed === undefined;
  }

  async start(): Promise<void> {
    const { consumer, options } = this;
    consumer.on(consumer.events.REBALANCING, () => {
      this.rebalancing = true;
    });
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      this.joined = true;
      // The revoked partitions leave `partitions` before anything already queued runs: an age roll
      // queued during the rebalance must not close a file of a partition another member now reads
      // again from the committed offset. Their open files are dropped in turn.
      const revoked = this.takeRevoked(new Set(payload.memberAssignment[options.topic] ?? []));
      this.rebalancing = false;
      void this.exclusive(() => this.dropRevoked(revoked)).catch((error: unknown) =>
        options.log.error({ err: error }, "dropping revoked partitions failed"),
      );
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!payload.restart) this.fail(payload.error);
    });
    await this.producer.connect();
    await consumer.connect();
    await consumer.subscribe({ topic: options.topic, fromBeginning: true });
    this.running = true;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.exclusive(() => this.handleBatch(payload)),
    });
    const interval = options.ageCheckIntervalMs ?? Math.min(5_000, Math.max(100, options.roll.maxAgeMs / 4));
    this.ageTimer = setInterval(() => {
      void this.exclusive(() => this.rollAgedFiles()).catch((error: unknown) =>
        options.log.error({ err: error }, "rolling aged files failed"),
      );
    }, interval);
    options.log.info(
      {
        topic: options.topic,
        groupId: options.groupId,
        target: options.target.location,
        format: options.format,
      },
      "sink started",
    );
  }

  /**
   * Graceful stop: stop taking batches, close every open file durably, commit, leave the group.
   * Records fetched but not yet written are simply not committed and go to the next owner.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.running = false;
      if (this.ageTimer) clearInterval(this.ageTimer);
      await this.exclusive(async () => {
        for (const writer of this.partitions.values()) {
          try {
            await writer.closeOpenFile("shutdown");
          } catch (error) {
            this.options.log.error(
              { err: error, partition: writer.partition },
              "closing the open file at shutdown failed; its records will be read again",
            );
          }
        }
      });
      await this.consumer.disconnect();
      await this.producer.disconnect();
      this.options.log.info({ topic: this.options.topic }, "sink stopped");
    })();
    return this.stopping;
  }

  private fail(error: Error): void {
    this.crashed ??= error;
    this.reportFailure(error);
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async handleBatch({
    batch,
    resolveOffset,
    heartbeat,
    isRunning,
    isStale,
  }: EachBatchPayload): Promise<void> {
    if (!this.running || batch.isEmpty()) return;
    const { topic, partition } = batch;
    let rejoin: unknown;
    try {
      let writer = this.partitions.get(partition);
      if (!writer) {
        writer = this.newPartitionWriter(partition);
        await writer.recover(BigInt(batch.messages[0]!.offset));
        this.partitions.set(partition, writer);
      }
      for (const message of batch.messages) {
        if (!this.running || !isRunning() || isStale()) break;
        await this.handleMessage(writer, message);
        resolveOffset(message.offset);
        // kafkajs heartbeats on its own only between batches, and a batch that closes many files
        // (each written durably and renamed) can outlast the session timeout: the group would
        // give the partition to another member and every commit of this one would fail.
        // heartbeat() sends at most one request per heartbeatInterval, so asking after each
        // record costs nothing (kafkajs's eachMessage does the same).
        try {
          await heartbeat();
        } catch (error) {
          if (!mustRejoin(error)) throw error;
          rejoin = error;
          break;
        }
      }
      if (rejoin === undefined) {
        await writer.commitIfAdvanced();
        this.options.metrics.setLag(
          topic,
          partition,
          Number(BigInt(batch.highWatermark) - writer.nextOffset),
        );
      }
    } catch (error) {
      // The partition's file state can no longer be trusted: drop it and read again from the
      // committed offset; closed files tell the new writer what is already durable.
      this.options.log.error(
        { err: error, topic, partition },
        "sink partition failed; restarting it from the committed offset",
      );
      await this.resetPartition(partition);
    }
    // The group is rebalancing: the batch ends here, and kafkajs rejoins on this error. The
    // partition's open file stays as it is: kept, the partition goes on from it (the records read
    // again are passed over); revoked, the join drops it.
    if (rejoin !== undefined) throw rejoin;
  }

  private async handleMessage(writer: PartitionWriter, message: KafkaMessage): Promise<void> {
    const offset = BigInt(message.offset);
    if (writer.alreadyHandled(offset)) {
      this.options.metrics.recordSkipped(writer.topic, writer.partition);
      return;
    }
    const decoded = await this.options.decoder.decode(message.value);
    if (!decoded.ok) {
      await this.deadLetter(writer.partition, message, decoded.reason);
      writer.deadLettered(offset);
      return;
    }
    const eventTimeMs = this.eventTimeOf(decoded.record, message.timestamp);
    try {
      await writer.append(offset, eventTimeMs, decoded, message.value?.byteLength ?? 0);
    } catch (error) {
      if (!(error instanceof RecordRejectedError)) throw error;
      await this.deadLetter(writer.partition, message, error.message);
      writer.deadLettered(offset);
    }
  }

  private eventTimeOf(record: unknown, kafkaTimestamp: string): number {
    if (this.eventTimeField && record !== null && typeof record === "object") {
      const value = (record as Record<string, unknown>)[this.eventTimeField];
      const ms =
        typeof value === "number"
          ? value
          : value instanceof Date
            ? value.getTime()
            : typeof value === "string"
              ? Date.parse(value)
              : Number.NaN;
      if (Number.isFinite(ms)) return ms;
    }
    return Number(kafkaTimestamp);
  }

  private async deadLetter(partition: number, message: KafkaMessage, reason: string): Promise<void> {
    const { topic, groupId, deadLetterTopic } = this.options;
    await this.producer.send({
      topic: deadLetterTopic,
      acks: -1,
      messages: [
        {
          key: message.key,
          value: message.value,
          headers: {
            [DEAD_LETTER_HEADERS.reason]: reason,
            [DEAD_LETTER_HEADERS.topic]: topic,
            [DEAD_LETTER_HEADERS.partition]: String(partition),
            [DEAD_LETTER_HEADERS.offset]: message.offset,
            [DEAD_LETTER_HEADERS.group]: groupId,
          },
        },
      ],
    });
    this.options.metrics.deadLettered(topic, partition);
    this.options.log.warn(
      { topic, partition, offset: message.offset, reason },
      "record sent to the dead-letter topic",
    );
  }

  private newPartitionWriter(partition: number): PartitionWriter {
    const { topic, target, format, writerFactory, roll, writerId, metrics, log } = this.options;
    return new PartitionWriter({
      topic,
      partition,
      target,
      format,
      writerFactory,
      roll,
      writerId,
      observer: metrics,
      log,
      commit: (nextOffset) =>
        this.consumer.commitOffsets([{ topic, partition, offset: nextOffset.toString() }]),
    });
  }

  private async rollAgedFiles(): Promise<void> {
    for (const writer of this.partitions.values()) {
      // A partition may be moving to another member: closing its file now could race the new
      // owner, which starts from the committed offset. Asked before each file, as a rebalance may
      // begin while an earlier one closes; batches (and sizes) resume after the join.
      if (!this.running || this.rebalancing) return;
      try {
        await writer.rollIfAged();
      } catch (error) {
        this.options.log.error({ err: error, partition: writer.partition }, "rolling an aged file failed");
        await this.resetPartition(writer.partition);
      }
    }
  }

  private async resetPartition(partition: number): Promise<void> {
    const writer = this.partitions.get(partition);
    this.partitions.delete(partition);
    await writer?.abort().catch(() => undefined);
    const { topic } = this.options;
    try {
      // Seek to the group's committed offset: everything after it is either in a closed file
      // (recover() skips it) or must be written again.
      const committed = await this.committedOffset(partition);
      if (committed !== undefined) this.consumer.seek({ topic, partition, offset: committed });
    } catch (error) {
      this.options.log.error({ err: error, topic, partition }, "could not seek back to the committed offset");
      this.fail(error as Error);
    }
  }

  private async committedOffset(partition: number): Promise<string | undefined> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const [topicOffsets] = await admin.fetchOffsets({
        groupId: this.options.groupId,
        topics: [this.options.topic],
      });
      const entry = topicOffsets?.partitions.find((p) => p.partition === partition);
      if (!entry || entry.offset === "-1") return undefined;
      return entry.offset;
    } finally {
      await admin.disconnect();
    }
  }

  /** Removes the writers of partitions no longer assigned to this member and returns them. */
  private takeRevoked(assigned: Set<number>): PartitionWriter[] {
    const revoked = [...this.partitions.values()].filter((writer) => !assigned.has(writer.partition));
    for (const writer of revoked) this.partitions.delete(writer.partition);
    return revoked;
  }

  private async dropRevoked(revoked: PartitionWriter[]): Promise<void> {
    const { topic, metrics, log } = this.options;
    for (const writer of revoked) {
      metrics.forgetPartition(topic, writer.partition);
      // Not closed: the new owner starts from the committed offset, which is this file's first.
      await writer.abort();
      log.info({ topic, partition: writer.partition }, "partition revoked; open file dropped");
    }
  }
}

/**
 * Whether a heartbeat failed because this member must join the group again, the errors on which
 * kafkajs's runner rejoins (its own isRebalancing, and an unknown member id after a session
 * expiry).
 */
function mustRejoin(error: unknown): boolean {
  const type = (error as { type?: unknown } | undefined)?.type;
  return (
    type === "REBALANCE_IN_PROGRESS" ||
    type === "NOT_COORDINATOR_FOR_GROUP" ||
    type === "ILLEGAL_GENERATION" ||
    type === "UNKNOWN_MEMBER_ID"
  );
}
