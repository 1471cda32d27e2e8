import { describe, expect, it } from "vitest";
import { RetryCache, rpcIdsOf } from "../../src/dataplane/storage/namenode/retryCache.js";

const ids = (callId: number) => ({ clientId: "client-a", callId });

describe("the name node's retry cache", () => {
  it("runs a call once: a retry during the first execution waits for it, a later one gets its answer", async () => {
    const cache = new RetryCache({ expiryMs: 60_000, maxEntries: 10 });
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const call = async () => {
      runs++;
      await gate;
      return { created: runs };
    };
    const first = cache.atMostOnce(ids(1), call);
    const duringFirst = cache.atMostOnce(ids(1), call);
    release();
    expect(await first).toEqual({ created: 1 });
    expect(await duringFirst).toEqual({ created: 1 });
    expect(await cache.atMostOnce(ids(1), call)).toEqual({ created: 1 });
    expect(await cache.atMostOnce(ids(2), call)).toEqual({ created: 2 });
    expect(await cache.atMostOnce(undefined, call)).toEqual({ created: 3 });
    expect(runs).toBe(3);
  });

  it("runs a failed call again, and forgets answers past their expiry or beyond its size", async () => {
    let now = 0;
    const cache = new RetryCache({ expiryMs: 1_000, maxEntries: 2, now: () => now });
    await expect(
      cache.atMostOnce(ids(1), async () => {
        throw new Error("quota exceeded");
      }),
    ).rejects.toThrow("quota exceeded");
    expect(await cache.atMostOnce(ids(1), async () => "second run")).toBe("second run");
    now = 1_001;
    expect(await cache.atMostOnce(ids(1), async () => "after expiry")).toBe("after expiry");
    cache.record(ids(2), "two");
    cache.record(ids(3), "three");
    expect(cache.size).toBe(2);
    expect(await cache.atMostOnce(ids(1), async () => "evicted")).toBe("evicted");
    expect(await cache.atMostOnce(ids(3), async () => "not this")).toBe("three");
  });

  it("reads ids from headers and ignores malformed ones", () => {
    expect(rpcIdsOf({ "x-tributary-client-id": "c", "x-tributary-call-id": "4" })).toEqual({
      clientId: "c",
      callId: 4,
    });
    expect(rpcIdsOf({ "x-tributary-client-id": "c", "x-tributary-call-id": "x" })).toBeUndefined();
    expect(rpcIdsOf({ "x-tributary-call-id": "4" })).toBeUndefined();
    expect(rpcIdsOf({ "x-tributary-client-id": "c".repeat(65), "x-tributary-call-id": "4" })).toBeUndefined();
  });
});
