/**
 * Frames to Kafka, per source: a bounded queue and one send in flight, so a source's frames
 * reach its partition in order and a slow or absent Kafka costs memory for `queueFrames` frames
 * per source (and the one send in flight), no more. When the queue is full the oldest unsent
 * frame goes (for live video the newest frame is worth the most) and is counted.
 *
 * A send that fails puts its frames back at the head of the queue, to be sent again after a
 * pause: while Kafka is away the queue fills and its oldest frames go, counted as reason
 * "queue", whether kafkajs gives up at once (connection refused) or after its retries. A send
 * whose outcome was unknown may so be written twice; frames carry their collector, capture time
 * and sequence number, and the reader passes over a frame it already returned. Only a refusal
 * that no retry can change (Kafka's non-retriable errors: a record too large, a topic not
 * authorized) drops the frames at once, counted as reason "kafka".
 *
 * A send is one record batch per partition, and Kafka refuses a batch larger than
 * message.max.bytes: frames are grouped into sends of at most `maxMessageBytes`, and a frame
 * larger than that is cut into chunks, each its own message with `frame-id`, `chunk-index` and
 * `chunk-count` headers, in order under the source's key (reader.ts puts them back together).
 */
import type { Message } from "kafkajs";
import kafkajs from "kafkajs";
import type { Logger } from "../../log.js";
import type { ProducerLike } from "../idempotentProducer.js";
import type { ImageCodec } from "./frames.js";
import type { VideoMetrics } from "./metrics.js";

export interface OutgoingFrame {
  source: string;
  sequence: number;
  /** When the collector took the frame from ffmpeg, ms since the epoch. */
  captureTime: number;
  /** The stream's presentation time of the frame, seconds. */
  ptsTime: number;
  keyFrame: boolean;
  codec: ImageCodec;
  width: number;
  height: number;
  data: Buffer;
}

/**
 * Whether a failed send failed for good: Kafka answered with an error that kafkajs marks not
 * retriable (MESSAGE_TOO_LARGE, TOPIC_AUTHORIZATION_FAILED, …), found through the causes that
 * kafkajs wraps it in. A connection refused or a timeout is not: Kafka may take the frames later.
 */
export function refusedForGood(error: unknown): boolean {
  const seen = new Set<unknown>();
  for (let current = error; current instanceof Error && !seen.has(current); ) {
    seen.add(current);
    if (current instanceof kafkajs.KafkaJSProtocolError && !current.retriable) return true;
    // kafkajs's aggregate of per-broker failures: refused for good when every part was.
    const parts = (current as { errors?: unknown[] }).errors;
    if (Array.isArray(parts) && parts.length > 0) return parts.every(refusedForGood);
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** Room left in each message for its headers and Kafka's record overhead. */
export const MESSAGE_OVERHEAD_BYTES = 1024;

export const Header = {
  camera: "camera",
  captureTime: "capture-time",
  sequence: "sequence",
  ptsTime: "pts-time",
  codec: "codec",
  contentType: "content-type",
  width: "width",
  height: "height",
  keyFrame: "key-frame",
  collector: "collector",
  frameId: "frame-id",
  chunkIndex: "chunk-index",
  chunkCount: "chunk-count",
  frameBytes: "frame-bytes",
} as const;

const contentTypes: Record<ImageCodec, string> = {
  jpeg: "image/jpeg",
  webp: "image/webp",
  png: "image/png",
};

/** The Kafka messages of one frame: one, or its chunks in order. */
export function frameMessages(frame: OutgoingFrame, maxMessageBytes: number, collector: string): Message[] {
  const headers: Record<string, string> = {
    [Header.camera]: frame.source,
    [Header.captureTime]: String(frame.captureTime),
    [Header.sequence]: String(frame.sequence),
    [Header.ptsTime]: Number.isFinite(frame.ptsTime) ? String(frame.ptsTime) : "",
    [Header.codec]: frame.codec,
    [Header.contentType]: contentTypes[frame.codec],
    [Header.width]: String(frame.width),
    [Header.height]: String(frame.height),
    [Header.keyFrame]: String(frame.keyFrame),
    [Header.collector]: collector,
  };
  const chunkBytes = Math.max(1, maxMessageBytes - MESSAGE_OVERHEAD_BYTES);
  if (frame.data.length <= chunkBytes) {
    return [{ key: frame.source, value: frame.data, headers, timestamp: String(frame.captureTime) }];
  }
  const count = Math.ceil(frame.data.length / chunkBytes);
  const frameId = `${collector}/${frame.source}/${frame.captureTime}/${frame.sequence}`;
  return Array.from({ length: count }, (_, index) => ({
    key: frame.source,
    // Views of the frame: no copy.
    value: frame.data.subarray(index * chunkBytes, Math.min(frame.data.length, (index + 1) * chunkBytes)),
    headers: {
      ...headers,
      [Header.frameId]: frameId,
      [Header.chunkIndex]: String(index),
      [Header.chunkCount]: String(count),
      [Header.frameBytes]: String(frame.data.length),
    },
    timestamp: String(frame.captureTime),
  }));
}

export interface SourceCounters {
  published: number;
  dropped: number;
  /** Acknowledgement times of the last 10 s, for the measured rate. */
  recentAcks: number[];
  lastFrameTime?: number;
  lastKafkaError?: string;
}

interface SourceQueue {
  frames: OutgoingFrame[];
  sending: boolean;
  counters: SourceCounters;
}

export interface PublisherOptions {
  topic: string;
  maxMessageBytes: number;
  queueFrames: number;
  /** This pod's name, in a header of every frame. */
  collector: string;
  /** The pause before frames whose send failed are sent again (default 500 ms). */
  retryPauseMs?: number;
}

export class FramePublisher {
  private readonly queues = new Map<string, SourceQueue>();
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  /** When Kafka last acknowledged or refused a send: readiness looks at it. */
  lastAckAt = Date.now();
  lastFailure?: { at: number; message: string };

  constructor(
    private readonly producer: ProducerLike,
    private readonly options: PublisherOptions,
    private readonly metrics: VideoMetrics,
    private readonly log: Logger,
  ) {}

  counters(source: string): SourceCounters {
    return this.queue(source).counters;
  }

  queued(source: string): number {
    return this.queues.get(source)?.frames.length ?? 0;
  }

  private queue(source: string): SourceQueue {
    let queue = this.queues.get(source);
    if (!queue) {
      queue = { frames: [], sending: false, counters: { published: 0, dropped: 0, recentAcks: [] } };
      this.queues.set(source, queue);
    }
    return queue;
  }

  /** Queues a frame; when the source's queue is full the oldest unsent frame is dropped. */
  enqueue(frame: OutgoingFrame): void {
    if (this.closed) return;
    const queue = this.queue(frame.source);
    if (queue.frames.length >= this.options.queueFrames) {
      queue.frames.shift();
      this.countDropped(frame.source, queue, 1, "queue");
    }
    queue.frames.push(frame);
    this.metrics.queuedFrames.set({ source: frame.source }, queue.frames.length);
    if (!queue.sending) void this.pump(frame.source, queue);
  }

  /** Frames per second acknowledged over the last 10 s. */
  rate(source: string, now = Date.now()): number {
    const acks = this.queue(source).counters.recentAcks;
    while (acks.length > 0 && acks[0]! < now - 10_000) acks.shift();
    return acks.length / 10;
  }

  private async pump(source: string, queue: SourceQueue): Promise<void> {
    queue.sending = true;
    try {
      while (queue.frames.length > 0) {
        const first = queue.frames[0]!;
        const firstMessages = frameMessages(first, this.options.maxMessageBytes, this.options.collector);
        if (firstMessages.length > 1) {
          queue.frames.shift();
          this.metrics.queuedFrames.set({ source }, queue.frames.length);
          if (!(await this.sendChunks(source, first, firstMessages, queue)))
            await this.retryLater(source, queue, [first]);
          continue;
        }
        // Whole frames, as many as fit one record batch within the broker's limit.
        const batch: OutgoingFrame[] = [];
        const messages: Message[] = [];
        let bytes = 0;
        const room = this.options.maxMessageBytes - MESSAGE_OVERHEAD_BYTES;
        while (queue.frames.length > 0) {
          const next = queue.frames[0]!;
          if (batch.length > 0 && (next.data.length > room || bytes + next.data.length > room)) break;
          queue.frames.shift();
          batch.push(next);
          messages.push(...frameMessages(next, this.options.maxMessageBytes, this.options.collector));
          bytes += next.data.length;
        }
        this.metrics.queuedFrames.set({ source }, queue.frames.length);
        if (!(await this.send(source, batch, messages, queue))) await this.retryLater(source, queue, batch);
      }
    } finally {
      queue.sending = false;
      if ([...this.queues.values()].every((q) => !q.sending && q.frames.length === 0)) {
        for (const wake of this.idleWaiters.splice(0)) wake();
      }
    }
  }

  /**
   * A chunked frame: one send per chunk, since each chunk is near the broker's batch limit. False
   * when a chunk failed and may be tried again (the frame is then sent again from its first
   * chunk; a reader drops the incomplete copy).
   */
  private async sendChunks(
    source: string,
    frame: OutgoingFrame,
    messages: Message[],
    queue: SourceQueue,
  ): Promise<boolean> {
    for (const [index, message] of messages.entries()) {
      const last = index === messages.length - 1;
      const outcome = await this.send(source, last ? [frame] : [], [message], queue);
      if (outcome === "refused") {
        // A reader drops a frame whose chunks are incomplete; count it once if not counted.
        if (!last) this.countDropped(source, queue, 1, "kafka");
        return true;
      }
      if (!outcome) return false;
    }
    return true;
  }

  /**
   * Frames whose send failed go back to the head of the queue, in order, after a pause (not to
   * spin against a Kafka that is away); the queue keeps its bound by dropping the oldest.
   */
  private async retryLater(source: string, queue: SourceQueue, frames: OutgoingFrame[]): Promise<void> {
    queue.frames.unshift(...frames);
    while (queue.frames.length > this.options.queueFrames) {
      queue.frames.shift();
      this.countDropped(source, queue, 1, "queue");
    }
    this.metrics.queuedFrames.set({ source }, queue.frames.length);
    if (!this.closed) await new Promise((resolve) => setTimeout(resolve, this.options.retryPauseMs ?? 500));
    else {
      // Closing: what is left is not sent again.
      this.countDropped(source, queue, queue.frames.length, "queue");
      queue.frames.length = 0;
      this.metrics.queuedFrames.set({ source }, 0);
    }
  }

  /** Reason "queue": the oldest unsent went to keep the bound; "kafka": Kafka refused them for good. */
  private countDropped(source: string, queue: SourceQueue, count: number, reason: "queue" | "kafka"): void {
    queue.counters.dropped += count;
    this.metrics.framesDropped.inc({ source, reason }, count);
  }

  /**
   * True once Kafka acknowledged the messages; "refused" when it refused them for good (the
   * frames are dropped and counted); false when the send failed and may be tried again.
   */
  private async send(
    source: string,
    frames: OutgoingFrame[],
    messages: Message[],
    queue: SourceQueue,
  ): Promise<boolean | "refused"> {
    try {
      await this.producer.send({ topic: this.options.topic, acks: -1, messages });
    } catch (error) {
      const message = (error as Error).message;
      this.lastFailure = { at: Date.now(), message };
      queue.counters.lastKafkaError = message;
      if (refusedForGood(error)) {
        this.countDropped(source, queue, frames.length, "kafka");
        this.log.warn({ source, frames: frames.length, error: message }, "Kafka refused frames: dropped");
        return "refused";
      }
      this.log.warn(
        { source, frames: frames.length, error: message },
        "Kafka did not take frames: sending them again",
      );
      return false;
    }
    const now = Date.now();
    this.lastAckAt = now;
    queue.counters.lastKafkaError = undefined;
    for (const frame of frames) {
      queue.counters.published += 1;
      queue.counters.recentAcks.push(now);
      queue.counters.lastFrameTime = now;
      this.metrics.framesPublished.inc({ source });
      this.metrics.bytesPublished.inc({ source }, frame.data.length);
      this.metrics.captureToAck.observe((now - frame.captureTime) / 1000);
    }
    this.metrics.framesPerSecond.set({ source }, this.rate(source, now));
    return true;
  }

  /** Stops taking frames and waits (up to `timeoutMs`) for the queued ones to be sent. */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    if ([...this.queues.values()].every((q) => !q.sending && q.frames.length === 0)) return;
    await Promise.race([
      new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
      new Promise((resolve) => setTimeout(resolve, timeoutMs).unref()),
    ]);
  }
}
