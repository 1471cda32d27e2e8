import { describe, expect, it } from "vitest";
import { RemoteException } from "../../src/dataplane/storage/protocol.js";
import { failoverPolicy, withRetries } from "../../src/dataplane/storage/retry.js";

const standby = () =>
  new RemoteException("StandbyException", "Operation category WRITE is not supported in state standby");
const refused = () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });

describe("the storage clients' retry helper", () => {
  it("fails over round the name nodes at once and backs off only after a whole round", async () => {
    const waits: number[] = [];
    const tried: number[] = [];
    const result = await withRetries(
      failoverPolicy(2, 60_000),
      async (attempt) => {
        tried.push(attempt);
        if (attempt < 7) throw attempt % 2 ? standby() : refused();
        return "answered";
      },
      async (ms) => {
        waits.push(ms);
      },
    );
    expect(result).toBe("answered");
    expect(tried).toEqual([1, 2, 3, 4, 5, 6, 7]);
    // After rounds 1, 2 and 3 (attempts 2, 4, 6): 100, 200, 400 ms; none between the two name nodes.
    expect(waits).toEqual([100, 200, 400]);
  });

  it("rethrows at once what is not retriable, and the last error once attempts or time run out", async () => {
    const quota = new RemoteException("DSQuotaExceededException", "over quota");
    let calls = 0;
    await expect(
      withRetries(failoverPolicy(2, 60_000), async () => {
        calls++;
        throw quota;
      }),
    ).rejects.toBe(quota);
    expect(calls).toBe(1);
    await expect(
      withRetries({ retriable: () => true, delayMs: () => 0, maxAttempts: 3 }, async (attempt) => {
        throw new Error(`attempt ${attempt}`);
      }),
    ).rejects.toThrow("attempt 3");
    await expect(
      withRetries(failoverPolicy(1, 0), async (attempt) => {
        if (attempt > 1) throw new Error("a second attempt after the deadline");
        await new Promise((resolve) => setTimeout(resolve, 5));
        throw standby();
      }),
    ).rejects.toMatchObject({ exception: "StandbyException" });
  });
});
