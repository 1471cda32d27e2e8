/**
 * The sink's side of the consumer group without Kafka: a stand-in consumer hands it batches and
 * group events in a chosen order, the age timer and the clock are vitest's, and the files go to
 * an in-memory target whose renames can be held. So the interleavings of a rebalance with an age
 * roll, which real Kafka produces only now and then, happen every time.
 */
import type { EachBatchPayload, Kafka } from "kafkajs";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { clickEventType } from "../../src/dataplane/clickstream/schema.js";
import { avroFileWriterFactory } from "../../src/dataplane/sink/avroFile.js";
import type { RecordDecoder } from "../../src/dataplane/sink/decode.js";
import { parseClosedFile, parseTemporaryFile } from "../../src/dataplane/sink/layout.js";
import { SinkMetrics } from "../../src/dataplane/sink/metrics.js";
import { Sink } from "../../src/dataplane/sink/sink.js";
import type { SinkFile, SinkTarget } from "../../src/dataplane/sink/target.js";
import { clickEvents } from "../support/click-events.js";

const topic = "clicks";
const maxAgeMs = 60_000;

/** Files in memory; `holdNextRename` stops the next rename until it is released. */
class MemoryTarget implements SinkTarget {
  readonly location = "memory://clicks";
  readonly files = new Map<string, number>();
  readonly renamed: string[] = [];
  private held: { reached: () => void; released: Promise<void> } | undefined;

  async create(path: string): Promise<SinkFile> {
    if (this.files.has(path)) throw new Error(`${path} exists`);
    const files = this.files;
    let bytes = 0;
    files.set(path, 0);
    return {
      path,
      get bytesWritten() {
        return bytes;
      },
      write: async (chunk) => {
        bytes += chunk.byteLength;
        files.set(path, bytes);
      },
      closeDurably: async () => undefined,
      abort: async () => {
        files.delete(path);
      },
    };
  }

  async rename(from: string, to: string): Promise<void> {
    const held = this.held;
    this.held = undefined;
    if (held) {
      held.reached();
      await held.released;
    }
    this.files.set(to, this.files.get(from)!);
    this.files.delete(from);
    this.renamed.push(to);
  }

  async list(): Promise<string[]> {
    return [...this.files.keys()];
  }

  async remove(path: string): Promise<void> {
    this.files.delete(path);
  }

  holdNextRename(): { reached: Promise<void>; release: () => void } {
    let reached!: () => void;
    let release!: () => void;
    const reachedPromise = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.held = { reached, released };
    return { reached: reachedPromise, release };
  }

  closed(partition: number) {
    return [...this.files.keys()]
      .map((path) => parseClosedFile(path))
      .filter((file) => file !== undefined && file.partition === partition);
  }

  open(partition: number) {
    return [...this.files.keys()].filter((path) => parseTemporaryFile(path)?.partition === partition);
  }
}

/** What the sink uses of a kafkajs consumer, driven by the test. */
class StandInConsumer {
  readonly events = { REBALANCING: "rebalancing", GROUP_JOIN: "group_join", CRASH: "crash" };
  readonly commits: { partition: number; offset: string }[] = [];
  private readonly listeners = new Map<string, (event: { payload: unknown }) => void>();
  private eachBatch: ((payload: EachBatchPayload) => Promise<void>) | undefined;

  on(event: string, listener: (event: { payload: unknown }) => void) {
    this.listeners.set(event, listener);
    return () => undefined;
  }

  emit(event: string, payload: unknown = {}) {
    this.listeners.get(event)?.({ payload });
  }

  connect = async () => undefined;
  subscribe = async () => undefined;
  disconnect = async () => undefined;
  seek = () => undefined;

  run = async ({ eachBatch }: { eachBatch: (payload: EachBatchPayload) => Promise<void> }) => {
    this.eachBatch = eachBatch;
  };

  commitOffsets = async (offsets: { partition: number; offset: string }[]) => {
    this.commits.push(...offsets.map(({ partition, offset }) => ({ partition, offset })));
  };

  /** Hands the sink a batch of `partition` with these offsets; resolves once it is handled. */
  deliver(partition: number, offsets: number[], heartbeat: () => Promise<void> = async () => undefined) {
    // Within one hour: files roll by age and size only.
    const events = clickEvents(offsets.length, {
      seed: partition + 1,
      startMs: Date.UTC(2026, 10, 26, 7),
      spanMs: 60_000,
    });
    const messages = offsets.map((offset, i) => ({
      offset: String(offset),
      timestamp: String(events[i]!.eventTime),
      key: null,
      value: Buffer.from(JSON.stringify(events[i])),
      attributes: 0,
      headers: {},
    }));
    return this.eachBatch!({
      batch: {
        topic,
        partition,
        highWatermark: String((offsets.at(-1) ?? -1) + 1),
        messages,
        isEmpty: () => messages.length === 0,
      },
      resolveOffset: () => undefined,
      heartbeat,
      isRunning: () => true,
      isStale: () => false,
    } as unknown as EachBatchPayload);
  }

  /** Resolves once everything the sink queued before it (batches, age rolls, revocations) ran. */
  settled() {
    return this.deliver(0, []);
  }

  joined(partitions: number[]) {
    this.emit(this.events.GROUP_JOIN, { memberAssignment: { [topic]: partitions } });
  }
}

/** The records are the JSON of click events; the decoder only parses them. */
const jsonDecoder: RecordDecoder = {
  decode: async (value) => ({
    ok: true,
    schemaKey: "1",
    type: clickEventType,
    record: JSON.parse(value!.toString("utf8")),
  }),
};

function standInKafka(consumer: StandInConsumer): Kafka {
  const producer = {
    connect: async () => undefined,
    disconnect: async () => undefined,
    send: async () => [],
    on: () => () => undefined,
    events: {},
  };
  return { consumer: () => consumer, producer: () => producer } as unknown as Kafka;
}

let consumer: StandInConsumer;
let target: MemoryTarget;
let sink: Sink;

async function startSink(maxBytes = 1 << 30) {
  sink = new Sink({
    brokers: [],
    kafka: standInKafka(consumer),
    topic,
    groupId: "clicks-sink",
    format: "avro",
    target,
    writerFactory: avroFileWriterFactory("null", 512),
    roll: { maxBytes, maxAgeMs },
    decoder: jsonDecoder,
    deadLetterTopic: `${topic}.dlq`,
    eventTimeField: "eventTime",
    writerId: "unit_a",
    metrics: new SinkMetrics(),
    log: pino({ level: "silent" }),
    ageCheckIntervalMs: maxAgeMs,
  });
  await sink.start();
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
  consumer = new StandInConsumer();
  target = new MemoryTarget();
});

afterEach(async () => {
  await sink?.stop();
  vi.useRealTimers();
});

describe("Sink in its consumer group", () => {
  it("never closes a revoked partition's file by age, whether the age roll was running or queued when it was revoked", async () => {
    await startSink();
    await consumer.deliver(0, [0, 1, 2]);
    await consumer.deliver(1, [0, 1, 2]);

    // An age roll closes partition 0's file and is held at its rename ...
    const rename = target.holdNextRename();
    vi.advanceTimersByTime(maxAgeMs);
    await rename.reached;
    // ... while the group rebalances, another age check is queued behind it, and the new
    // assignment takes partition 1 away.
    consumer.emit(consumer.events.REBALANCING);
    vi.advanceTimersByTime(maxAgeMs);
    consumer.joined([0]);
    rename.release();
    await consumer.settled();

    expect(target.closed(0)).toMatchObject([{ firstOffset: 0n, lastOffset: 2n }]);
    // Partition 1's new owner reads it again from the committed offset: this member neither
    // closed its file nor committed, and its open file is gone.
    expect(target.closed(1)).toEqual([]);
    expect(target.open(1)).toEqual([]);
    expect(consumer.commits).toEqual([{ partition: 0, offset: "3" }]);
  });

  it("stops an age roll before its next file once a rebalance begins, and rolls by age again after the join", async () => {
    await startSink();
    await consumer.deliver(0, [0, 1]);
    await consumer.deliver(1, [0, 1]);

    const rename = target.holdNextRename();
    vi.advanceTimersByTime(maxAgeMs);
    await rename.reached;
    consumer.emit(consumer.events.REBALANCING);
    rename.release();
    await consumer.settled();
    expect(target.closed(0)).toHaveLength(1);
    expect(target.closed(1)).toEqual([]);
    expect(target.open(1)).toHaveLength(1);

    // Both partitions stay: partition 1's file is closed by the next age check.
    consumer.joined([0, 1]);
    vi.advanceTimersByTime(maxAgeMs);
    await consumer.settled();
    expect(target.closed(1)).toMatchObject([{ firstOffset: 0n, lastOffset: 1n }]);
    expect(consumer.commits).toEqual([
      { partition: 0, offset: "2" },
      { partition: 1, offset: "2" },
    ]);
  });

  it("ends a batch whose heartbeat finds the group rebalancing, keeps its open file, and goes on from it after the join", async () => {
    await startSink();
    consumer.joined([0]);
    let beats = 0;
    const rebalancing = Object.assign(new Error("The group is rebalancing, so a rejoin is needed"), {
      type: "REBALANCE_IN_PROGRESS",
    });
    // kafkajs rejoins on the error the batch ends with: it must come back out.
    await expect(
      consumer.deliver(
        0,
        Array.from({ length: 10 }, (_, offset) => offset),
        async () => {
          if (++beats === 4) throw rebalancing;
        },
      ),
    ).rejects.toBe(rebalancing);
    const [open] = target.open(0);
    expect(open).toBeDefined();
    // Still this member's after the join: the batch comes again from the committed offset (none),
    // the four records in the open file are passed over, and the file goes on.
    consumer.joined([0]);
    await consumer.deliver(
      0,
      Array.from({ length: 10 }, (_, offset) => offset),
    );
    expect(target.open(0)).toEqual([open]);
    await sink.stop();
    const [closed] = target.closed(0);
    expect(closed).toMatchObject({ firstOffset: 0n, lastOffset: 9n });
    expect(target.closed(0)).toHaveLength(1);
  });

  it("asks to heartbeat between the files one batch closes, so a long batch keeps its membership", async () => {
    await startSink(2 * 1024);
    const steps: string[] = [];
    const rename = target.rename.bind(target);
    target.rename = async (from, to) => {
      await rename(from, to);
      steps.push("closed");
    };
    await consumer.deliver(
      0,
      Array.from({ length: 200 }, (_, offset) => offset),
      async () => {
        steps.push("heartbeat");
      },
    );
    const closes = steps.filter((step) => step === "closed").length;
    expect(closes).toBeGreaterThan(3);
    // Never two file closes without a heartbeat between them.
    expect(steps.join(" ")).not.toMatch(/closed closed/);
  });
});
