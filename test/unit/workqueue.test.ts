import { describe, expect, it } from "vitest";
import { ManualClock, WorkQueue } from "../../src/operator/workqueue.js";

/** A processor whose calls the test finishes by hand, to observe what runs concurrently. */
function gatedProcessor() {
  const started: string[] = [];
  const gates = new Map<string, Array<() => void>>();
  let running = 0;
  let maxRunning = 0;
  const processor = (key: string) =>
    new Promise<void>((resolve) => {
      started.push(key);
      running++;
      maxRunning = Math.max(maxRunning, running);
      const list = gates.get(key) ?? [];
      list.push(() => {
        running--;
        resolve();
      });
      gates.set(key, list);
    });
  const finish = async (key: string) => {
    const release = gates.get(key)?.shift();
    if (!release) throw new Error(`${key} is not running`);
    release();
    // Let the queue's completion handlers run.
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  return { processor, finish, started, stats: () => ({ running, maxRunning }) };
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe("WorkQueue", () => {
  it("merges duplicate keys that wait", async () => {
    const queue = new WorkQueue({ concurrency: 1, clock: new ManualClock() });
    const seen: string[] = [];
    queue.add("ns/a");
    queue.add("ns/b");
    queue.add("ns/a");
    queue.add("ns/a");
    expect(queue.depth).toBe(2);
    queue.start(async (key) => {
      seen.push(key);
    });
    await queue.whenIdle();
    expect(seen).toEqual(["ns/a", "ns/b"]);
  });

  it("processes a key re-added during processing once more afterwards, never concurrently", async () => {
    const gated = gatedProcessor();
    const queue = new WorkQueue({ concurrency: 4, clock: new ManualClock() });
    queue.start(gated.processor);
    queue.add("ns/a");
    await settle();
    expect(gated.started).toEqual(["ns/a"]);
    queue.add("ns/a");
    queue.add("ns/a");
    await settle();
    // Re-added while running: not started a second time yet, though workers are free.
    expect(gated.started).toEqual(["ns/a"]);
    expect(gated.stats().running).toBe(1);
    await gated.finish("ns/a");
    expect(gated.started).toEqual(["ns/a", "ns/a"]);
    await gated.finish("ns/a");
    await queue.whenIdle();
    expect(gated.started).toEqual(["ns/a", "ns/a"]);
    expect(gated.stats().maxRunning).toBe(1);
  });

  it("bounds concurrency", async () => {
    const gated = gatedProcessor();
    const queue = new WorkQueue({ concurrency: 2, clock: new ManualClock() });
    queue.start(gated.processor);
    for (const key of ["a", "b", "c", "d"]) queue.add(key);
    await settle();
    expect(gated.started).toEqual(["a", "b"]);
    expect(queue.depth).toBe(2);
    await gated.finish("a");
    expect(gated.started).toEqual(["a", "b", "c"]);
    await gated.finish("b");
    await gated.finish("c");
    await gated.finish("d");
    await queue.whenIdle();
    expect(gated.stats().maxRunning).toBe(2);
  });

  it("backs off exponentially per key up to the cap, and forget resets it", () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ baseDelayMs: 5, maxDelayMs: 1000, clock });
    const delays = Array.from({ length: 10 }, () => queue.addRateLimited("ns/broken"));
    expect(delays).toEqual([5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    expect(queue.failures("ns/broken")).toBe(10);
    // Another key is unaffected by the first one's failures.
    expect(queue.addRateLimited("ns/other")).toBe(5);
    queue.forget("ns/broken");
    expect(queue.addRateLimited("ns/broken")).toBe(5);
    expect(queue.backoff(10_000)).toBe(1000);
  });

  it("runs a rate-limited key only when its backoff has passed", async () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ baseDelayMs: 100, clock });
    const seen: string[] = [];
    queue.start(async (key) => {
      seen.push(key);
    });
    queue.addRateLimited("ns/a");
    queue.addRateLimited("ns/a"); // second failure: 200 ms, but the earlier due time (100 ms) wins
    clock.advance(99);
    await settle();
    expect(seen).toEqual([]);
    clock.advance(1);
    await queue.whenIdle();
    expect(seen).toEqual(["ns/a"]);
    expect(queue.waitingRetries).toBe(0);
  });

  it("requeueAfter keeps the earliest due time and an immediate add does not wait for it", async () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock });
    const seen: Array<[string, number]> = [];
    queue.start(async (key) => {
      seen.push([key, clock.now()]);
    });
    queue.addAfter("ns/a", 30_000);
    queue.addAfter("ns/a", 10_000);
    queue.addAfter("ns/a", 20_000);
    clock.advance(10_000);
    await queue.whenIdle();
    expect(seen).toEqual([["ns/a", 10_000]]);
    clock.advance(60_000);
    await queue.whenIdle();
    expect(seen).toHaveLength(1);
    queue.addAfter("ns/b", 5_000);
    queue.add("ns/b");
    await queue.whenIdle();
    expect(seen.at(-1)).toEqual(["ns/b", 70_000]);
  });

  it("shutdown drops waiting work and waits for in-flight work", async () => {
    const gated = gatedProcessor();
    const clock = new ManualClock();
    const queue = new WorkQueue({ concurrency: 1, clock });
    queue.start(gated.processor);
    queue.add("a");
    queue.add("b");
    queue.addAfter("c", 1000);
    await settle();
    let stopped = false;
    const stopping = queue.shutdown().then(() => {
      stopped = true;
    });
    await settle();
    expect(stopped).toBe(false);
    await gated.finish("a");
    await stopping;
    expect(stopped).toBe(true);
    expect(gated.started).toEqual(["a"]);
    expect(clock.pendingTimers).toBe(0);
    queue.add("d");
    expect(queue.depth).toBe(0);
  });

  it("keeps working when a processor throws", async () => {
    const queue = new WorkQueue({ concurrency: 1, clock: new ManualClock() });
    const seen: string[] = [];
    queue.start(async (key) => {
      seen.push(key);
      if (key === "bad") throw new Error("boom");
    });
    queue.add("bad");
    queue.add("good");
    await queue.whenIdle();
    expect(seen).toEqual(["bad", "good"]);
  });
});
