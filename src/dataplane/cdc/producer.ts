/**
 * Change events on their way to Kafka, in the order they were read: one batch in flight at a
 * time (idempotent producer, acks=-1) while the next one fills, so per-key order holds and
 * throughput comes from batching. A transaction's commit LSN becomes confirmable only once every
 * event queued before it was acknowledged: that is the rule that lets the slot advance.
 */
import type { Message } from "kafkajs";
import type { ProducerLike } from "../idempotentProducer.js";
import type { Lsn } from "./lsn.js";

export interface OutRecord {
  topic: string;
  partition?: number;
  key: string | Buffer | null;
  value: string | Buffer | null;
}

interface Mark {
  seq: number;
  lsn: Lsn;
  commitTimeMs: number;
}

export interface ProducerObserver {
  /** Events acknowledged by Kafka. */
  acked(count: number): void;
  /** Every event up to `lsn` (the end of the last transaction acknowledged whole) is acknowledged. */
  confirmed(lsn: Lsn): void;
  /** Every event of a transaction committed at `commitTimeMs` is acknowledged. */
  transactionAcked(commitTimeMs: number): void;
}

export class ChangeProducer {
  private queue: OutRecord[] = [];
  private head = 0;
  private pushed = 0;
  private acked = 0;
  private readonly marks: Mark[] = [];
  private sending = false;
  private scheduled = false;
  private error: unknown;
  private readonly idleWaiters: (() => void)[] = [];
  private failHandlers: ((error: unknown) => void)[] = [];
  private roomWaiters: { limit: number; resolve: () => void }[] = [];

  constructor(
    private readonly producer: ProducerLike,
    private readonly maxBatchSize: number,
    private readonly observer: ProducerObserver,
  ) {}

  push(record: OutRecord): void {
    this.queue.push(record);
    this.pushed++;
    this.schedule();
  }

  /** Everything pushed so far belongs to transactions committed at or before `lsn`. */
  mark(lsn: Lsn, commitTimeMs: number): void {
    this.marks.push({ seq: this.pushed, lsn, commitTimeMs });
    this.schedule();
  }

  /** Events queued or in flight, not yet acknowledged. */
  get pending(): number {
    return this.pushed - this.acked;
  }

  /** Resolves once fewer than `limit` events wait for Kafka: readers pace themselves on it. */
  room(limit: number): Promise<void> {
    if (this.pending < limit || this.error !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push({ limit, resolve }));
  }

  onFailure(handler: (error: unknown) => void): void {
    if (this.error !== undefined) handler(this.error);
    else this.failHandlers.push(handler);
  }

  /** Resolves when every event pushed so far is acknowledged (rejects if producing failed). */
  drained(): Promise<void> {
    if (this.error !== undefined) return Promise.reject(this.error);
    if (this.pending === 0 && this.marks.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.idleWaiters.push(() => (this.error !== undefined ? reject(this.error) : resolve()));
    });
  }

  private schedule(): void {
    if (this.sending || this.scheduled || this.error !== undefined) return;
    this.scheduled = true;
    // Let the frames of the socket read that is being decoded join the batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.run();
    });
  }

  private confirmMarks(): void {
    let last: Mark | undefined;
    while (this.marks.length > 0 && this.marks[0]!.seq <= this.acked) {
      last = this.marks.shift()!;
      this.observer.transactionAcked(last.commitTimeMs);
    }
    if (last) this.observer.confirmed(last.lsn);
  }

  private async run(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      for (;;) {
        this.confirmMarks();
        const count = Math.min(this.maxBatchSize, this.queue.length - this.head);
        if (count === 0) break;
        const batch = this.queue.slice(this.head, this.head + count);
        this.head += count;
        if (this.head > 65_536) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
        await this.send(batch);
        this.acked += count;
        this.observer.acked(count);
        if (this.roomWaiters.length > 0) {
          const waiting = this.roomWaiters;
          this.roomWaiters = waiting.filter((w) => this.pending >= w.limit);
          for (const w of waiting) if (this.pending < w.limit) w.resolve();
        }
      }
    } catch (error) {
      this.error = error;
      for (const handler of this.failHandlers) handler(error);
      this.failHandlers = [];
      for (const w of this.roomWaiters.splice(0)) w.resolve();
    } finally {
      this.sending = false;
      if (this.error !== undefined || (this.pending === 0 && this.marks.length === 0)) {
        for (const wake of this.idleWaiters.splice(0)) wake();
      }
    }
  }

  private async send(batch: OutRecord[]): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    for (const record of batch) {
      let messages = byTopic.get(record.topic);
      if (!messages) {
        messages = [];
        byTopic.set(record.topic, messages);
      }
      messages.push(
        record.partition === undefined
          ? { key: record.key, value: record.value }
          : { key: record.key, value: record.value, partition: record.partition },
      );
    }
    await this.producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
    });
  }
}
