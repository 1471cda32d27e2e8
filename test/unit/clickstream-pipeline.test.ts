/**
 * The collector's produce pipeline against a producer whose sends the test completes by hand:
 * batches of several partitions' leaders are in flight at once, never two of one partition, and
 * every session's events reach Kafka in the order they were submitted, whatever order the sends
 * complete in.
 */
import type { Producer, ProducerBatch } from "kafkajs";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { CollectorMetrics } from "../../src/dataplane/clickstream/metrics.js";
import { type PartitionOracle, ProducePipeline } from "../../src/dataplane/clickstream/pipeline.js";

interface PendingSend {
  batch: ProducerBatch;
  resolve: () => void;
  reject: (error: Error) => void;
}

function fakeProducer() {
  const pending: PendingSend[] = [];
  const producer = {
    events: { CONNECT: "producer.connect", DISCONNECT: "producer.disconnect" },
    on: () => () => undefined,
    connect: async () => undefined,
    disconnect: async () => undefined,
    sendBatch: (batch: ProducerBatch) =>
      new Promise<void>((resolve, reject) => {
        pending.push({ batch, resolve, reject });
      }),
  } as unknown as Producer;
  return { producer, pending };
}

const limits = {
  maxBufferedEvents: 10_000,
  maxBufferedBytes: 64 * 1024 * 1024,
  maxBatchEvents: 3,
  maxBatchBytes: 1024 * 1024,
  lingerMs: 0,
  stallTimeoutMs: 60_000,
  maxInFlightBatches: 2,
};

/** Session `s<n>` lives on partition n % 4, led by broker partition % 2. */
const oracle = (known: () => boolean): PartitionOracle => ({
  partitionOf: (_topic, key) => (known() ? Number(key.slice(1)) % 4 : undefined),
  leaderOf: (_topic, partition) => partition % 2,
});

const partitionsOf = (send: PendingSend) =>
  send.batch.topicMessages!.flatMap((t) => t.messages.map((m) => `${t.topic}/${m.partition ?? "?"}`));

const tick = () => new Promise((resolve) => setImmediate(resolve));

async function run(known: () => boolean, completeNewestFirst: boolean) {
  const { producer, pending } = fakeProducer();
  const pipeline = new ProducePipeline(
    producer,
    limits,
    new CollectorMetrics(),
    pino({ level: "silent" }),
    oracle(known),
  );
  await pipeline.connect();
  const submitted = new Map<string, string[]>();
  const acknowledged: Promise<void>[] = [];
  for (let request = 0; request < 40; request++) {
    const messages = Array.from({ length: 3 }, (_, i) => {
      const key = `s${(request + i) % 8}`;
      const value = `${key}-${request}-${i}`;
      submitted.set(key, [...(submitted.get(key) ?? []), value]);
      return { topic: "clicks", key, value: Buffer.from(value) };
    });
    acknowledged.push(pipeline.submit(messages));
  }
  const received = new Map<string, string[]>();
  let mostInFlight = 0;
  for (let steps = 0; steps < 10_000 && (pending.length > 0 || received.size === 0); steps++) {
    await tick();
    mostInFlight = Math.max(mostInFlight, pending.length);
    expect(pending.length).toBeLessThanOrEqual(limits.maxInFlightBatches);
    // No partition in two batches in flight.
    const inFlight = pending.map((send) => new Set(partitionsOf(send)));
    for (let a = 0; a < inFlight.length; a++)
      for (let b = a + 1; b < inFlight.length; b++)
        for (const partition of inFlight[a]!) expect(inFlight[b]!.has(partition)).toBe(false);
    // Newest first on every other step (always newest would starve the oldest batch forever).
    const send = completeNewestFirst && steps % 2 === 0 ? pending.pop() : pending.shift();
    if (!send) continue;
    for (const topic of send.batch.topicMessages!) {
      for (const message of topic.messages) {
        const key = String(message.key);
        received.set(key, [...(received.get(key) ?? []), String(message.value)]);
      }
    }
    send.resolve();
  }
  await Promise.all(acknowledged);
  await pipeline.flush();
  return { submitted, received, mostInFlight };
}

describe("collector produce pipeline", () => {
  it("keeps batches of other partitions in flight at once, and every session in order", async () => {
    for (const newestFirst of [false, true]) {
      const { submitted, received, mostInFlight } = await run(() => true, newestFirst);
      expect(mostInFlight).toBe(2);
      expect(received).toEqual(submitted);
    }
  });

  it("sends a topic whose partitions are not known yet alone, then by partition once they are", async () => {
    let known = false;
    const { producer, pending } = fakeProducer();
    const pipeline = new ProducePipeline(
      producer,
      limits,
      new CollectorMetrics(),
      pino({ level: "silent" }),
      oracle(() => known),
    );
    await pipeline.connect();
    const first = pipeline.submit(
      [0, 1, 2, 3].map((i) => ({ topic: "clicks", key: `s${i}`, value: Buffer.from("a") })),
    );
    await tick();
    expect(pending).toHaveLength(1);
    known = true;
    const second = pipeline.submit(
      [0, 1].map((i) => ({ topic: "clicks", key: `s${i}`, value: Buffer.from("b") })),
    );
    await tick();
    // Still one: the known partitions wait for the batch of unknown ones.
    expect(pending).toHaveLength(1);
    // The unknown lane's limit is per lane, as for any partition: 3 of the 4 went first.
    expect(partitionsOf(pending[0]!)).toEqual(["clicks/?", "clicks/?", "clicks/?"]);
    pending.shift()!.resolve();
    await tick();
    expect(partitionsOf(pending[0]!)).toEqual(["clicks/?"]);
    pending.shift()!.resolve();
    await first;
    await tick();
    expect(pending.flatMap(partitionsOf).sort()).toEqual(["clicks/0", "clicks/1"]);
    for (const send of pending.splice(0)) send.resolve();
    await second;
  });

  it("fails a refused batch's requests and goes on with the next", async () => {
    const { producer, pending } = fakeProducer();
    const pipeline = new ProducePipeline(
      producer,
      limits,
      new CollectorMetrics(),
      pino({ level: "silent" }),
      oracle(() => true),
    );
    await pipeline.connect();
    const refused = pipeline.submit([{ topic: "clicks", key: "s0", value: Buffer.from("x") }]);
    await tick();
    pending.shift()!.reject(new Error("NOT_ENOUGH_REPLICAS"));
    await expect(refused).rejects.toThrow(/NOT_ENOUGH_REPLICAS/);
    const next = pipeline.submit([{ topic: "clicks", key: "s0", value: Buffer.from("y") }]);
    await tick();
    pending.shift()!.resolve();
    await next;
  });
});
