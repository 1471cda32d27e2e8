/**
 * The bounded buffer between HTTP requests and the Kafka producer.
 *
 * A request submits its messages and waits for all of them to be acknowledged (acks=all); only
 * then does it answer 2xx. Messages queue per partition (the producer's own choice for their key,
 * see partitioner.ts), and each partition has at most one batch in flight: while it is, the next
 * requests' messages for that partition gather into its next batch, so batches grow with load by
 * themselves, and a session's messages reach their partition in the order they were submitted (a
 * later batch never overtakes an earlier one, even across the producer's retries, and the
 * idempotent producer's per-partition sequence numbers stay in order). Up to `maxInFlightBatches`
 * batches are in flight at once, each of the partitions one broker leads (as Kafka's own producer
 * sends one request per broker), so a slow broker does not hold back the partitions it does not
 * lead; the batch limits are per partition, as Kafka's record batches are. With nothing in
 * flight, a short linger lets a batch fill (pump). Until the producer has sent to a topic its
 * partition count is unknown: those messages queue together and go in a batch with nothing else
 * of the topic in flight.
 *
 * The buffer is bounded by messages and bytes, counting those in flight: a submission that does
 * not fit is refused whole (429) rather than half-accepted. When the batch in flight has been
 * waiting longer than `stallTimeoutMs`, or the producer lost its connection, Kafka counts as
 * unavailable and submissions are refused (503) until a send completes again.
 */
import type { TopicMessages } from "kafkajs";
import type { Logger } from "../../log.js";
import type { ProducerLike } from "../idempotentProducer.js";
import type { CollectorMetrics } from "./metrics.js";
import { PreparedMessage } from "./recordBatch.js";

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
  /** Batches in flight at once, each of partitions no other has in flight (default 1). */
  maxInFlightBatches?: number;
}

/** Tells a message's partition before it is sent (KnownPartitions); undefined while unknown. */
export interface PartitionOracle {
  partitionOf(topic: string, key: string): number | undefined;
  /** The partition's leader broker, if known: a batch takes partitions of one leader. */
  leaderOf(topic: string, partition: number): number | undefined;
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
  /** When a request that gave `timeoutMs` stops waiting (epoch ms); 0 for none. */
  deadline: number;
  timeoutMs: number;
}

interface Queued {
  /**
   * Handed to kafkajs as it is; its partition is set once the lane knows it. kafkajs's Produce
   * requests of these are written by the collector's own encoder (recordBatch.ts).
   */
  message: PreparedMessage;
  topic: string;
  bytes: number;
  submission: Submission;
}

/** A queue per partition, or per topic while its partitions are unknown; kept once made. */
interface Lane {
  readonly key: string;
  readonly topic: string;
  /** False for the lane of a topic whose partitions are not known yet. */
  readonly known: boolean;
  readonly partition: number | undefined;
  queue: Queued[];
  /** Index of the first message not yet taken (the queue is compacted as it drains). */
  head: number;
  /** A batch of this lane is in flight. */
  busy: boolean;
}

/** A topic's lanes: by partition, and the one for messages sent before its partitions are known. */
interface TopicLanes {
  byPartition: Lane[];
  unknown: Lane;
  /** Batches of the topic in flight (a topic whose partitions are unknown waits for zero). */
  busy: number;
}

/**
 * One by default: one send then holds every free partition's batch (one request per broker, a
 * record batch per partition). On the shared 2-core bench machine, a send per leader broker made
 * sends 4-5 times smaller and cost more CPU per event (single events: 190 against 145 µs), so more
 * in flight pays only where the collector has CPU to spare and a broker is slow. kafkajs's
 * idempotent producer holds one request per broker in flight anyway.
 */
const DEFAULT_MAX_IN_FLIGHT_BATCHES = 1;

export class ProducePipeline {
  /** Lanes with queued messages, in the order they became non-empty (so batches take turns). */
  private readonly lanes = new Map<string, Lane>();
  private readonly topics = new Map<string, TopicLanes>();
  private queuedEvents = 0;
  private bufferedEvents = 0;
  private bufferedBytes = 0;
  /** When each batch in flight was sent, oldest first. */
  private readonly inFlightSince: number[] = [];
  /** Set while the pipeline waits for a batch to fill (`lingerMs`). */
  private lingerTimer: NodeJS.Timeout | undefined;
  /** Some lane holds a full batch: lingering would not make it larger. */
  private fullLane = false;
  /** Requests the last completed batch answered, and submissions that arrived since. */
  private answered = 0;
  private arrivedSinceAnswered = 0;
  private drained: (() => void)[] = [];
  private connected = false;
  private closing = false;
  private lastFailure: string | undefined;
  private readonly maxInFlight: number;
  /**
   * Submissions that wait with a deadline, in the order they came (so by deadline, as every
   * request of a server waits as long): one timer for the oldest instead of one per request.
   */
  private waiting: Submission[] = [];
  private waitingHead = 0;
  private deadlineTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly producer: ProducerLike,
    private readonly limits: PipelineLimits,
    private readonly metrics: CollectorMetrics,
    private readonly logger: Logger,
    private readonly partitions: PartitionOracle = {
      partitionOf: () => undefined,
      leaderOf: () => undefined,
    },
  ) {
    this.maxInFlight = limits.maxInFlightBatches ?? DEFAULT_MAX_IN_FLIGHT_BATCHES;
    producer.on(producer.events.CONNECT, () => {
      this.connected = true;
    });
    producer.on(producer.events.DISCONNECT, () => {
      this.connected = false;
    });
    metrics.watchBuffer(() => ({
      bufferedEvents: this.bufferedEvents,
      bufferedBytes: this.bufferedBytes,
      fill: this.fill(),
      kafkaAvailable: this.connected && !this.closing,
    }));
  }

  async connect(): Promise<void> {
    await this.producer.connect();
    this.connected = true;
  }

  /** Why Kafka counts as unavailable, or undefined when it is available. */
  unavailableReason(): string | undefined {
    if (this.closing) return "the collector is shutting down";
    if (!this.connected) return "the Kafka producer is not connected";
    const oldest = this.inFlightSince[0];
    if (oldest !== undefined) {
      const waiting = Date.now() - oldest;
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
   * `signal` withdraws what has not been sent yet (the request gave up waiting); so does
   * `timeoutMs` passing first, which rejects with KafkaUnavailableError.
   */
  submit(messages: OutboundMessage[], signal?: AbortSignal, timeoutMs?: number): Promise<void> {
    const unavailable = this.unavailableReason();
    if (unavailable) throw new KafkaUnavailableError(unavailable);
    const count = messages.length;
    if (count === 0) return Promise.resolve();
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const message = messages[i]!;
      bytes += message.value.length + (message.key?.length ?? 0) + RECORD_OVERHEAD_BYTES;
    }
    if (count > this.limits.maxBufferedEvents || bytes > this.limits.maxBufferedBytes) {
      throw new SubmissionTooLargeError(
        `the request's ${count} messages of ${bytes} bytes exceed the whole buffer (${this.limits.maxBufferedEvents} events, ${this.limits.maxBufferedBytes} bytes)`,
      );
    }
    if (
      this.bufferedEvents + count > this.limits.maxBufferedEvents ||
      this.bufferedBytes + bytes > this.limits.maxBufferedBytes
    ) {
      throw new BufferFullError(
        `buffer full: ${this.bufferedEvents}/${this.limits.maxBufferedEvents} events, ${this.bufferedBytes}/${this.limits.maxBufferedBytes} bytes waiting for Kafka`,
      );
    }
    const submission: Submission = {
      remaining: count,
      settled: false,
      resolve: noop,
      reject: noop,
      deadline: timeoutMs === undefined ? 0 : Date.now() + timeoutMs,
      timeoutMs: timeoutMs ?? 0,
    };
    const done = new Promise<void>((resolve, reject) => {
      submission.resolve = resolve;
      submission.reject = reject;
    });
    for (let i = 0; i < count; i++) this.enqueue(messages[i]!, submission);
    if (signal) signal.addEventListener("abort", () => this.withdraw(submission), { once: true });
    if (timeoutMs !== undefined) this.waitFor(submission);
    this.arrivedSinceAnswered++;
    this.queuedEvents += count;
    this.bufferedEvents += count;
    this.bufferedBytes += bytes;
    this.pump();
    return done;
  }

  private enqueue(message: OutboundMessage, submission: Submission): void {
    const { topic, key, value } = message;
    const partition = key === null ? undefined : this.partitions.partitionOf(topic, key);
    let lanes = this.topics.get(topic);
    if (lanes === undefined) {
      lanes = { byPartition: [], unknown: newLane(topic, undefined), busy: 0 };
      this.topics.set(topic, lanes);
    }
    let lane: Lane;
    if (partition === undefined) lane = lanes.unknown;
    else {
      lane = lanes.byPartition[partition] ?? newLane(topic, partition);
      lanes.byPartition[partition] = lane;
    }
    if (lane.head === lane.queue.length) {
      lane.queue.length = 0;
      lane.head = 0;
      this.lanes.set(lane.key, lane);
    }
    const bytes = value.length + (key?.length ?? 0) + RECORD_OVERHEAD_BYTES;
    if (lane.queue.length - lane.head >= this.limits.maxBatchEvents) this.fullLane = true;
    lane.queue.push({
      // The partition its lane stands for, even if the topic has grown by the time it is sent.
      message: new PreparedMessage(key, value, partition),
      topic,
      bytes,
      submission,
    });
  }

  /** Resolves once every queued message was sent (or failed); used at shutdown. */
  flush(): Promise<void> {
    if (this.inFlightSince.length === 0 && this.queuedEvents === 0) return Promise.resolve();
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
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    await this.producer.disconnect();
    this.connected = false;
  }

  /** Keeps `submission` among those the deadline timer looks at. */
  private waitFor(submission: Submission): void {
    this.waiting.push(submission);
    if (this.deadlineTimer === undefined) this.armDeadline();
  }

  /** Arms the timer for the oldest unsettled submission's deadline, dropping settled ones. */
  private armDeadline(): void {
    this.deadlineTimer = undefined;
    while (this.waitingHead < this.waiting.length && this.waiting[this.waitingHead]!.settled)
      this.waitingHead++;
    if (this.waitingHead >= this.waiting.length) {
      this.waiting = [];
      this.waitingHead = 0;
      return;
    }
    if (this.waitingHead > 1024) {
      this.waiting = this.waiting.slice(this.waitingHead);
      this.waitingHead = 0;
    }
    const oldest = this.waiting[this.waitingHead]!;
    this.deadlineTimer = setTimeout(() => this.expire(), Math.max(0, oldest.deadline - Date.now()));
  }

  /** Withdraws and rejects every submission past its deadline, then waits for the next. */
  private expire(): void {
    const now = Date.now();
    while (this.waitingHead < this.waiting.length) {
      const submission = this.waiting[this.waitingHead]!;
      if (!submission.settled) {
        if (submission.deadline > now) break;
        this.withdraw(submission);
        submission.settled = true;
        submission.reject(
          new KafkaUnavailableError(`Kafka did not acknowledge the events within ${submission.timeoutMs} ms`),
        );
      }
      this.waitingHead++;
    }
    this.armDeadline();
  }

  private withdraw(submission: Submission): void {
    if (submission.settled) return;
    // Messages still queued are dropped here; those in the batch in flight may still land
    // (the client was told 503 and will retry: at-least-once, deduplicated by eventId downstream).
    for (const lane of [...this.lanes.values()]) {
      const kept: Queued[] = [];
      for (let i = lane.head; i < lane.queue.length; i++) {
        const queued = lane.queue[i]!;
        if (queued.submission === submission) {
          this.release(queued);
          this.queuedEvents -= 1;
        } else kept.push(queued);
      }
      lane.queue = kept;
      lane.head = 0;
      if (kept.length === 0) this.lanes.delete(lane.key);
    }
    this.settleIfDrained();
  }

  private release(queued: Queued): void {
    this.bufferedEvents -= 1;
    this.bufferedBytes -= queued.bytes;
  }

  /**
   * Sends batches while lanes are free and fewer than maxInFlightBatches are in flight; but with
   * nothing in flight, first lingers up to `lingerMs` for the batch to fill, as Kafka's producer
   * does (linger.ms). The linger ends early once a lane holds a full batch, or once as many
   * requests arrived as the last batch answered: under load those are its clients' next
   * requests, and waiting for them makes one batch of what would go as two half batches, one
   * waiting for the other (with acks=all, throughput is events in flight over the ack latency).
   */
  private pump(): void {
    if (this.lingerTimer !== undefined) {
      if (!this.fullLane && (this.answered === 0 || this.arrivedSinceAnswered < this.answered)) return;
      clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
    } else if (
      this.inFlightSince.length === 0 &&
      this.limits.lingerMs > 0 &&
      this.queuedEvents > 0 &&
      !this.fullLane &&
      (this.answered === 0 || this.arrivedSinceAnswered < this.answered)
    ) {
      this.lingerTimer = setTimeout(() => {
        this.lingerTimer = undefined;
        this.sendWhileFree();
      }, this.limits.lingerMs);
      return;
    }
    this.sendWhileFree();
  }

  private sendWhileFree(): void {
    while (this.inFlightSince.length < this.maxInFlight && this.queuedEvents > 0) {
      const batch = this.takeBatch();
      if (!batch) break;
      void this.send(batch.messages, batch.lanes);
    }
    this.settleIfDrained();
  }

  /**
   * The free lanes of one leader broker (the oldest free lane's), each up to the batch limits, its
   * messages in order; a lane cut short by the limits keeps the rest for its next batch.
   */
  private takeBatch(): { messages: Queued[]; lanes: Lane[] } | undefined {
    const messages: Queued[] = [];
    const lanes: Lane[] = [];
    let leader: number | undefined | null = null;
    for (const lane of this.lanes.values()) {
      if (lane.busy) continue;
      // The unknown lane of a topic goes alone; known lanes wait while it has messages or a batch.
      const topic = this.topics.get(lane.topic)!;
      if (lane.known ? topic.unknown.busy || topic.unknown.head < topic.unknown.queue.length : topic.busy > 0)
        continue;
      const laneLeader =
        lane.partition === undefined ? undefined : this.partitions.leaderOf(lane.topic, lane.partition);
      // With one batch in flight at most, it takes every free lane, whatever their leaders.
      if (leader === null || this.maxInFlight === 1) leader = laneLeader;
      else if (laneLeader !== leader) continue;
      let events = 0;
      let bytes = 0;
      while (lane.head < lane.queue.length) {
        const next = lane.queue[lane.head]!;
        if (
          events >= this.limits.maxBatchEvents ||
          (events > 0 && bytes + next.bytes > this.limits.maxBatchBytes)
        )
          break;
        messages.push(next);
        bytes += next.bytes;
        events++;
        lane.head++;
      }
      lanes.push(lane);
    }
    if (messages.length === 0) return undefined;
    for (const lane of lanes) {
      if (lane.head >= lane.queue.length) {
        this.lanes.delete(lane.key);
        lane.queue = [];
        lane.head = 0;
      } else if (lane.head > 1024) {
        lane.queue = lane.queue.slice(lane.head);
        lane.head = 0;
      }
    }
    this.queuedEvents -= messages.length;
    this.fullLane = false;
    for (const lane of this.lanes.values()) {
      if (lane.queue.length - lane.head >= this.limits.maxBatchEvents) this.fullLane = true;
    }
    return { messages, lanes };
  }

  private async send(batch: Queued[], lanes: Lane[]): Promise<void> {
    for (const lane of lanes) {
      lane.busy = true;
      this.topics.get(lane.topic)!.busy++;
    }
    const topicMessages: TopicMessages[] = [];
    let last: TopicMessages | undefined;
    for (const { message, topic } of batch) {
      if (last?.topic !== topic) {
        last = topicMessages.find((t) => t.topic === topic);
        if (!last) {
          last = { topic, messages: [] };
          topicMessages.push(last);
        }
      }
      last.messages.push(message);
    }
    const started = performance.now();
    const since = Date.now();
    this.inFlightSince.push(since);
    this.metrics.batchEvents.observe(batch.length);
    try {
      await this.producer.sendBatch({ acks: -1, topicMessages });
      this.metrics.produceLatency.observe((performance.now() - started) / 1000);
      this.lastFailure = undefined;
      let answered = 0;
      for (const queued of batch) {
        const { submission } = queued;
        submission.remaining -= 1;
        if (submission.remaining === 0 && !submission.settled) {
          submission.settled = true;
          submission.resolve();
          answered++;
        }
      }
      this.answered = answered;
      this.arrivedSinceAnswered = 0;
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
      this.inFlightSince.splice(this.inFlightSince.indexOf(since), 1);
      for (const lane of lanes) {
        lane.busy = false;
        this.topics.get(lane.topic)!.busy--;
      }
      for (const queued of batch) this.release(queued);
      this.pump();
    }
  }

  private settleIfDrained(): void {
    if (this.inFlightSince.length === 0 && this.queuedEvents === 0 && this.lingerTimer === undefined) {
      for (const resolve of this.drained.splice(0)) resolve();
    }
  }
}

const noop = () => undefined;

function newLane(topic: string, partition: number | undefined): Lane {
  return {
    key: `${topic}\0${partition ?? "?"}`,
    topic,
    known: partition !== undefined,
    partition,
    queue: [],
    head: 0,
    busy: false,
  };
}
