/**
 * The capacity scheduler end to end, on a resource manager and three node managers as real
 * processes: two queues at 70/30 both saturated converge to 70/30; with one idle the other
 * borrows up to its maximum capacity (changed live, as refreshQueues); when demand returns,
 * preemption (turned on live) gives the starved queue its share back. Every wait is on a
 * condition with a generous deadline; nothing asserts a time.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Job } from "../../src/dataplane/yarn/jobs.js";
import {
  type CapacitySchedulerInfo,
  type QueueDefinition,
  queuesByPath,
} from "../../src/dataplane/yarn/scheduler.js";
import { YarnCluster } from "./yarn-harness.js";

const queues = (bMaximum: number): QueueDefinition[] => [
  { path: "root", capacity: 100 },
  { path: "root.a", capacity: 70, maximumCapacity: 100, userLimitFactor: 10, maximumAMResourcePercent: 0.5 },
  {
    path: "root.b",
    capacity: 30,
    maximumCapacity: bMaximum,
    userLimitFactor: 10,
    maximumAMResourcePercent: 0.5,
  },
];

const cluster = new YarnCluster({ queues: queues(100) });

const shell = (command: string, numContainers: number): Job => ({
  type: "shell",
  command,
  numContainers,
  containerMemory: 256,
});

async function used(): Promise<{ a: number; b: number }> {
  const info = await cluster.get<{ scheduler: { schedulerInfo: CapacitySchedulerInfo } }>(
    "/ws/v1/cluster/scheduler",
  );
  const byPath = queuesByPath(info.scheduler.schedulerInfo);
  return { a: byPath.get("root.a")!.absoluteUsedCapacity, b: byPath.get("root.b")!.absoluteUsedCapacity };
}

async function putQueues(body: { queues: QueueDefinition[]; preemption?: boolean }): Promise<void> {
  const response = await fetch(`http://${cluster.rmAddress}/ws/v1/cluster/scheduler-conf`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(response.status, await response.text()).toBe(200);
}

/** How long a share may take to settle; each test's own timeout is longer, so a failure names the last shares. */
const HOLD_DEADLINE_MS = 150_000;
const TEST_TIMEOUT_MS = 2 * HOLD_DEADLINE_MS + 60_000;

/** The condition holds on `times` samples in a row (a share, not a passing moment). */
async function holds(
  check: (shares: { a: number; b: number }) => boolean,
  what: string,
  times = 3,
): Promise<{ a: number; b: number }> {
  let streak = 0;
  let last = { a: 0, b: 0 };
  await cluster.waitFor(
    async () => {
      last = await used();
      streak = check(last) ? streak + 1 : 0;
      return streak >= times;
    },
    `${what} (last: a=${last.a}%, b=${last.b}%)`,
    HOLD_DEADLINE_MS,
  );
  return last;
}

beforeAll(async () => {
  await cluster.start();
}, 180_000);

afterAll(async () => {
  await cluster.stop();
}, 60_000);

describe("capacity queues on loopback", () => {
  it(
    "two saturated queues at 70/30 converge to 70/30",
    async () => {
      const a = await cluster.client.submit({ job: shell("sleep 1", 100_000), queue: "a", amMemory: 512 });
      const b = await cluster.client.submit({ job: shell("sleep 1", 100_000), queue: "b", amMemory: 512 });
      // One container is 256 MB of 6 GB (4.2 %): allow two containers' slack either side.
      const shares = await holds(
        ({ a, b }) => a + b > 85 && Math.abs(a - 70) <= 9 && Math.abs(b - 30) <= 9,
        "a near 70 % and b near 30 % of the cluster",
      );
      expect(shares.a).toBeGreaterThan(shares.b);
      await cluster.client.kill(a);
      await cluster.client.kill(b);
      await cluster.waitFor(
        async () => (await used()).a + (await used()).b === 0,
        "the killed applications' containers released",
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "with a idle, b borrows up to its maximum capacity, changed live",
    async () => {
      await putQueues({ queues: queues(60) });
      const b = await cluster.client.submit({ job: shell("sleep 600", 100), queue: "b", amMemory: 512 });
      await holds(({ a, b }) => a === 0 && b >= 55, "b at its 60 % maximum");
      for (let i = 0; i < 3; i++) expect((await used()).b).toBeLessThanOrEqual(60);
      // Raised live to 100 %: b takes the whole idle cluster.
      await putQueues({ queues: queues(100) });
      await holds(({ b }) => b >= 95, "b borrowing the whole cluster");
      (globalThis as { borrower?: string }).borrower = b;
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "when a's demand returns, preemption gives it its guarantee back",
    async () => {
      const borrower = (globalThis as { borrower?: string }).borrower!;
      await putQueues({ queues: queues(100), preemption: true });
      const a = await cluster.client.submit({ job: shell("sleep 600", 100), queue: "a", amMemory: 512 });
      // Long-lived containers only come back by preemption.
      const shares = await holds(
        ({ a, b }) => a >= 61 && b >= 21,
        "a back near its 70 % and b near its 30 %",
      );
      expect(shares.a + shares.b).toBeGreaterThan(85);
      const bLog = await cluster.client.logs(borrower, "AppMaster.stdout");
      expect(bLog).toContain("Container preempted by scheduler");
      const metrics = await cluster.get<{ clusterMetrics: { containersPreempted: number } }>(
        "/ws/v1/cluster/metrics",
      );
      expect(metrics.clusterMetrics.containersPreempted).toBeGreaterThan(0);
      await cluster.client.kill(a);
      await cluster.client.kill(borrower);
    },
    TEST_TIMEOUT_MS,
  );
});
