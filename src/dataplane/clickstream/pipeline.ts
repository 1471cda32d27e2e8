/**
 * The bounded buffer between HTTP requests and the Kafka producer.
 *
 * A request submits its messages and waits for all of them to be acknowledged (acks=all); only
 * then does it answer 2xx. One batch is in flight at a time: while it is, the next requests'
 * messages gather into the next batch, so batches grow with load by themselves, and a session's
 * messages reach their partition in the order they were submitted (a later batch never overtakes
 * an earlier one, even across the producer's retries). A short linger after an idle period lets
 * the first requests of a burst share a batch.
 *
 * The buffer is bounded by messages and bytes, counting those in flight: a submission that does
 * not fit is refused whole (429) rather than half-accepted. When the batch in flight has been
 * waiting longer than `stallTimeoutMs`, or the producer lost its connection, Kafka counts as
 * unavailable and submissions are refused (503) until a send completes again.
 */
import type { Producer, TopicMessages } from "kafkajs";
import type { Logger } from "../../log.js";
import type { CollectorMetrics } from "./metrics.js";

export interface OutboundMessage {
  topic: string;
  key: string | null;
  value: Buffer;
}

export interface PipelineLimits {
  maxBufferedEvents: number;
  maxBufferedBytes: number;
  maxBatchEvents: number;
  maxBatchBytes: number;
  lingerMs: number;
  stallTimeoutMs: number;
}

export class BufferFullError extends Error {
  override name = "BufferFullError";
}

/** A submission larger than the whole buffer: waiting would never help. */
export class SubmissionTooLargeError extends Error {
  override name = "SubmissionTooLargeError";
}

export class KafkaUnavailableError extends Error {
  override name = "KafkaUnavailableError";
}

/** Per-message bookkeeping that Kafka adds (record header, offsets, timestamps), for the byte budget. */
const RECORD_OVERHEAD_BYTES = 70;

interface Submission {
  remaining: number;
  settled: boolean;
  resolve: () => void;
  reject: (error: Error) => void;
}

interface Queued {
  message: OutboundMessage;
  bytes: number;
  submission: Submission;
}

export class ProducePipeline {
  private queue: Queued[] = [];
  private bufferedEvents = 0;
  private bufferedBytes = 0;
  private sending = false;
  private drained: (() => void)[] = [];
  private inFlightSince: number | undefined;
  private connected = false;
  private closing = false;
  private lastFailure: string | undefined;

  constructor(
    private readonly producer: Producer,
    private readonly limits: PipelineLimits,
    private readonly metrics: CollectorMetrics,
    private readonly logger: Logger,
  ) {
    producer.on(producer.events.CONNECT, () => {
      this.connected = true;
      this.updateGauges();
    });
    producer.on(producer.events.DISCONNECT, () => {
      this.connected = false;
      this.updateGauges();
    });
  }

  async connect(): Promise<void> {
    await this.producer.connect();
    this.connected = true;
    this.updateGauges();
  }

  /** Why Kafka counts as unavailable, or undefined when it is available. */
  unavailableReason(): string | undefined {
    if (this.closing) return "the collector is shutting down";
    if (!this.connected) return "the Kafka producer is not connected";
    if (this.inFlightSince !== undefined) {
      const waiting = Date.now() - this.inFlightSince;
      if (waiting > this.limits.stallTimeoutMs) {
        return `Kafka has not acknowledged a batch for ${waiting} ms${this.lastFailure ? ` (${this.lastFailure})` : ""}`;
      }
    }
    return undefined;
  }

  /** The fuller of the two budgets, 0..1. */
  fill(): number {
    return Math.max(
      this.bufferedEvents / this.limits.maxBufferedEvents,
      this.bufferedBytes / this.limits.maxBufferedBytes,
    );
  }

  /**
   * Queues `messages` and resolves when Kafka acknowledged every one of them. Throws
   * synchronously (BufferFullError, KafkaUnavailableError) when they cannot be taken at all.
   * `signal` withdraws what has not been sent yet (the request gave up waiting).
   */
  submit(messages: OutboundMessage[], signal?: AbortSignal): Promise<void> {
    const unavailable = this.unavailableReason();
    if (unavailable) throw new KafkaUnavailableError(unavailable);
    if (messages.length === 0) return Promise.resolve();
    let bytes = 0;
    const sizes = messages.map((message) => {
      const size = message.value.length + (message.key?.length ?? 0) + RECORD_OVERHEAD_BYTES;
      bytes += size;
      return size;
    });
    if (messages.length > this.limits.maxBufferedEvents || bytes > this.limits.maxBufferedBytes) {
      throw new SubmissionTooLargeError(
        `the request's ${messages.length} messages of ${bytes} bytes exceed the whole buffer (${this.limits.maxBufferedEvents} events, ${this.limits.maxBufferedBytes} bytes)`,
      );
    }
    if (
      this.bufferedEvents + messages.length > this.limits.maxBufferedEvents ||
      this.bufferedBytes + bytes > this.limits.maxBufferedBytes
    ) {
      throw new BufferFullError(
        `buffer full: ${this.bufferedEvents}/${this.limits.maxBufferedEvents} events, ${this.bufferedBytes}/${this.limits.maxBufferedBytes} bytes waiting for Kafka`,
      );
    }
    const done = new Promise<void>((resolve, reject) => {
      const submission: Submission = { remaining: messages.length, settled: false, resolve, reject };
      messages.forEach((message, i) => {
        this.queue.push({ message, bytes: sizes[i]!, submission });
      });
      signal?.addEventListener("abort", () => this.withdraw(submission), { once: true });
    });
    this.bufferedEvents += messages.length;
    this.bufferedBytes += bytes;
    this.updateGauges();
    void this.pump();
    return done;
  }

  /** Resolves once every queued message was sent (or failed); used at shutdown. */
  flush(): Promise<void> {
    if (!this.sending && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /** Stops taking submissions, sends what is queued (up to `timeoutMs`), then disconnects. */
  async close(timeoutMs: number): Promise<void> {
    this.closing = true;
    let timer: NodeJS.Timeout | undefined;
    const flushed = await Promise.race([
      this.flush().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!flushed) {
      this.logger.warn(
        { bufferedEvents: this.bufferedEvents },
        "Kafka did not acknowledge the buffered events before the shutdown deadline; their requests were not answered 2xx",
      );
    }
    await this.producer.disconnect();
    this.connected = false;
    this.updateGauges();
  }

  private withdraw(submission: Submission): void {
    if (submission.settled) return;
    // Messages still queued are dropped here; those in the batch in flight may still land
    // (the client was told 503 and will retry: at-least-once, deduplicated by eventId downstream).
    const kept: Queued[] = [];
    for (const queued of this.queue) {
      if (queued.submission === submission) this.release(queued);
      else kept.push(queued);
    }
    this.queue = kept;
    this.updateGauges();
  }

  private release(queued: Queued): void {
    this.bufferedEvents -= 1;
    this.bufferedBytes -= queued.bytes;
  }

  private async pump(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      // Linger only when starting from idle: under load the batch in flight already gave the
      // next requests time to gather, and a timer per batch would only add latency.
      if (this.limits.lingerMs > 0 && this.queue.length < this.limits.maxBatchEvents) {
        await new Promise((resolve) => setTimeout(resolve, this.limits.lingerMs));
      }
      while (this.queue.length > 0) {
        const batch = this.takeBatch();
        if (batch.length > 0) await this.send(batch);
      }
    } finally {
      this.sending = false;
      for (const resolve of this.drained.splice(0)) resolve();
    }
  }

  private takeBatch(): Queued[] {
    let bytes = 0;
    let count = 0;
    while (count < this.queue.length && count < this.limits.maxBatchEvents) {
      const next = this.queue[count]!;
      if (count > 0 && bytes + next.bytes > this.limits.maxBatchBytes) break;
      bytes += next.bytes;
      count++;
    }
    return this.queue.splice(0, count);
  }

  private async send(batch: Queued[]): Promise<void> {
    const byTopic = new Map<string, TopicMessages>();
    for (const { message } of batch) {
      let topicMessages = byTopic.get(message.topic);
      if (!topicMessages) {
        topicMessages = { topic: message.topic, messages: [] };
        byTopic.set(message.topic, topicMessages);
      }
      topicMessages.messages.push({ key: message.key, value: message.value });
    }
    const started = performance.now();
    this.inFlightSince = Date.now();
    this.metrics.batchEvents.observe(batch.length);
    try {
      await this.producer.sendBatch({ acks: -1, topicMessages: [...byTopic.values()] });
      this.metrics.produceLatency.observe((performance.now() - started) / 1000);
      this.lastFailure = undefined;
      for (const queued of batch) {
        const { submission } = queued;
        submission.remaining -= 1;
        if (submission.remaining === 0 && !submission.settled) {
          submission.settled = true;
          submission.resolve();
        }
      }
    } catch (error) {
      const reason = (error as Error).message;
      this.lastFailure = reason;
      this.logger.error(
        { error: reason, messages: batch.length },
        "Kafka refused a batch; its requests get 503",
      );
      for (const { submission } of batch) {
        if (!submission.settled) {
          submission.settled = true;
          submission.reject(new KafkaUnavailableError(`Kafka did not acknowledge the events: ${reason}`));
        }
      }
    } finally {
      this.inFlightSince = undefined;
      for (const queued of batch) this.release(queued);
      this.updateGauges();
    }
  }

  private updateGauges(): void {
    this.metrics.bufferedEvents.set(this.bufferedEvents);
    this.metrics.bufferedBytes.set(this.bufferedBytes);
    this.metrics.bufferFill.set(this.fill());
    this.metrics.kafkaAvailable.set(this.connected && !this.closing ? 1 : 0);
  }
}
