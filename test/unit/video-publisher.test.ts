/**
 * The collector's frame queue against a producer whose every send the test answers: a send that
 * fails puts its frames back, in order, and the queue keeps its bound by dropping the oldest
 * (reason "queue"); a refusal no retry can change drops the frames at once (reason "kafka").
 * test/integration/video-faults.test.ts shows the same against a real broker killed and started.
 */
import kafkajs, { type Message, type ProducerRecord } from "kafkajs";
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import type { ProducerLike } from "../../src/dataplane/idempotentProducer.js";
import { VideoMetrics } from "../../src/dataplane/video/metrics.js";
import { FramePublisher, type OutgoingFrame, refusedForGood } from "../../src/dataplane/video/publisher.js";

const {
  KafkaJSConnectionError,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
} = kafkajs;

/** What kafkajs's retrier throws on an error it does not retry: the error as its cause. */
const gaveUp = (error: Error) => Object.assign(new KafkaJSNonRetriableError(error), { cause: error });

/** Each send waits until the test settles it. */
class AnsweredProducer {
  readonly sends: Array<{ messages: Message[]; settle: (error?: Error) => void }> = [];

  send(record: ProducerRecord): Promise<never[]> {
    return new Promise((resolve, reject) => {
      this.sends.push({
        messages: record.messages,
        settle: (error) => (error ? reject(error) : resolve([])),
      });
    });
  }

  sequences(index: number): number[] {
    return this.sends[index]!.messages.map((m) => Number((m.headers as Record<string, string>).sequence));
  }
}

const frame = (sequence: number): OutgoingFrame => ({
  source: "gate",
  sequence,
  captureTime: 1_000 + sequence,
  ptsTime: sequence / 5,
  keyFrame: false,
  codec: "jpeg",
  width: 16,
  height: 16,
  data: Buffer.alloc(100, sequence),
});

async function dropped(metrics: VideoMetrics, reason: string): Promise<number> {
  const values = (await metrics.framesDropped.get()).values;
  return values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

function publisherWith(producer: AnsweredProducer) {
  const metrics = new VideoMetrics();
  const publisher = new FramePublisher(
    producer as unknown as ProducerLike,
    { topic: "frames", maxMessageBytes: 1 << 20, queueFrames: 10, collector: "gate-0", retryPauseMs: 1 },
    metrics,
    pino({ level: "silent" }),
  );
  return { metrics, publisher };
}

const sends = (producer: AnsweredProducer, count: number) =>
  vi.waitFor(() => expect(producer.sends.length).toBe(count), { timeout: 30_000, interval: 5 });

describe("the collector's frame queue", () => {
  it("sends the frames of a failed send again, keeping the newest within the bound", async () => {
    const producer = new AnsweredProducer();
    const { metrics, publisher } = publisherWith(producer);
    publisher.enqueue(frame(0));
    await sends(producer, 1);
    for (let n = 1; n <= 12; n++) publisher.enqueue(frame(n));
    // Ten wait while the first send is out: 1 and 2 went for 11 and 12.
    expect(publisher.queued("gate")).toBe(10);
    producer.sends[0]!.settle(
      new KafkaJSNumberOfRetriesExceeded(new KafkaJSConnectionError("connect ECONNREFUSED 127.0.0.1:9092"), {
        retryCount: 5,
        retryTime: 1000,
      }),
    );
    await sends(producer, 2);
    // Frame 0 came back to the head and was the oldest of eleven: it went too.
    expect(producer.sequences(1)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    producer.sends[1]!.settle();
    await vi.waitFor(() => expect(publisher.counters("gate").published).toBe(10), { timeout: 30_000 });
    expect(publisher.counters("gate").dropped).toBe(3);
    expect(await dropped(metrics, "queue")).toBe(3);
    expect(await dropped(metrics, "kafka")).toBe(0);
    expect(publisher.counters("gate").lastKafkaError).toBeUndefined();
  });

  it("drops frames Kafka refuses for good, counted as reason kafka, and goes on", async () => {
    const producer = new AnsweredProducer();
    const { metrics, publisher } = publisherWith(producer);
    publisher.enqueue(frame(0));
    await sends(producer, 1);
    publisher.enqueue(frame(1));
    const tooLarge = new KafkaJSProtocolError({
      type: "MESSAGE_TOO_LARGE",
      code: 10,
      retriable: false,
      message: "The request included a message larger than the max message size the server will accept",
    } as never);
    producer.sends[0]!.settle(gaveUp(tooLarge));
    await sends(producer, 2);
    expect(producer.sequences(1)).toEqual([1]);
    producer.sends[1]!.settle();
    await vi.waitFor(() => expect(publisher.counters("gate").published).toBe(1), { timeout: 30_000 });
    expect(await dropped(metrics, "kafka")).toBe(1);
    expect(await dropped(metrics, "queue")).toBe(0);
  });

  it("tells a refusal for good from a failure worth retrying", () => {
    const notLeader = new KafkaJSProtocolError({
      type: "NOT_LEADER_FOR_PARTITION",
      code: 6,
      retriable: true,
      message: "This server is not the leader for that topic-partition",
    } as never);
    const unauthorized = new KafkaJSProtocolError({
      type: "TOPIC_AUTHORIZATION_FAILED",
      code: 29,
      retriable: false,
      message: "Not authorized to access topics: [Topic authorization failed]",
    } as never);
    expect(
      refusedForGood(new KafkaJSNumberOfRetriesExceeded(notLeader, { retryCount: 5, retryTime: 1 })),
    ).toBe(false);
    expect(refusedForGood(new KafkaJSConnectionError("Connection timeout"))).toBe(false);
    expect(refusedForGood(new Error("socket hang up"))).toBe(false);
    expect(refusedForGood(gaveUp(unauthorized))).toBe(true);
    expect(refusedForGood(unauthorized)).toBe(true);
  });
});
