/**
 * The scheduler's time and hand-over rules against the real Redis (and RabbitMQ): catch-up of
 * exactly the missed intervals on an injected clock, only the latest without catch-up, backfill
 * of a range, and the epoch fence that refuses a deposed scheduler's writes.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Fenced } from "../../src/dataplane/dag/scheduler.js";
import { backends, DagHarness, dagSpec, waitFor } from "./dag-cluster.js";

const at = (text: string) => Date.parse(text);

describe.each(backends())("Dag scheduler on the %s queue", (backend) => {
  let harness: DagHarness | undefined;
  afterEach(async () => {
    await harness?.stop();
    harness = undefined;
  });

  /** Waits for `count` more passes of the harness's scheduler. */
  const passes = async (count = 2) => {
    const scheduler = harness!.scheduler!;
    const target = scheduler.passes + count;
    await waitFor(`${count} scheduler passes`, 30_000, async () =>
      scheduler.passes >= target ? true : undefined,
    );
  };

  it("with catchup, creates exactly the missed intervals, then one per interval as the clock moves", async () => {
    let now = at("2026-03-04T06:00:00Z");
    harness = await new DagHarness({
      backend,
      workers: 0,
      clock: () => now,
      spec: dagSpec({
        schedule: "@daily",
        startDate: "2026-03-01T00:00:00Z",
        catchup: true,
        tasks: [{ id: "a", command: ["true"] }],
      }),
    }).start();
    await passes();
    const logicalDates = async () => (await harness!.runs()).map((run) => run.logicalDate).sort();
    expect(await logicalDates()).toEqual([
      "2026-03-01T00:00:00.000Z",
      "2026-03-02T00:00:00.000Z",
      "2026-03-03T00:00:00.000Z",
    ]);
    expect((await harness.runs()).every((run) => run.id.startsWith("scheduled__"))).toBe(true);
    // Within the same interval nothing more; at its end, exactly one more.
    now = at("2026-03-04T23:59:00Z");
    await passes();
    expect(await logicalDates()).toHaveLength(3);
    now = at("2026-03-05T00:00:00Z");
    await passes();
    expect(await logicalDates()).toEqual([
      "2026-03-01T00:00:00.000Z",
      "2026-03-02T00:00:00.000Z",
      "2026-03-03T00:00:00.000Z",
      "2026-03-04T00:00:00.000Z",
    ]);
    expect((await harness.store.schedulerInfo()).nextRun).toBe("2026-03-06T00:00:00.000Z");
    // A scheduler that takes over later (after a three-day outage) catches up the gap.
    await harness.scheduler!.stop();
    now = at("2026-03-08T01:00:00Z");
    await harness.startScheduler("successor", () => now);
    await passes();
    expect((await logicalDates()).slice(4)).toEqual([
      "2026-03-05T00:00:00.000Z",
      "2026-03-06T00:00:00.000Z",
      "2026-03-07T00:00:00.000Z",
    ]);
  });

  it("without catchup, runs only the latest interval, also after an outage", async () => {
    let now = at("2026-03-04T06:00:00Z");
    harness = await new DagHarness({
      backend,
      workers: 0,
      clock: () => now,
      spec: dagSpec({
        schedule: "0 * * * *",
        startDate: "2026-03-01T00:00:00Z",
        catchup: false,
        tasks: [{ id: "a", command: ["true"] }],
      }),
    }).start();
    await passes();
    expect((await harness.runs()).map((run) => run.logicalDate)).toEqual(["2026-03-04T05:00:00.000Z"]);
    await harness.scheduler!.stop();
    now = at("2026-03-04T11:30:00Z");
    await harness.startScheduler("successor", () => now);
    await passes();
    expect((await harness.runs()).map((run) => run.logicalDate).sort()).toEqual([
      "2026-03-04T05:00:00.000Z",
      "2026-03-04T10:00:00.000Z",
    ]);
  });

  it("backfills a date range once, holding it to maxActiveRuns", async () => {
    harness = await new DagHarness({
      backend,
      workers: 0,
      spec: dagSpec({
        schedule: "@daily",
        paused: true,
        maxActiveRuns: 2,
        tasks: [{ id: "a", command: ["true"] }],
      }),
    }).start();
    await harness.request({ type: "backfill", from: "2025-06-01T00:00:00Z", to: "2025-06-05T00:00:00Z" });
    await harness.request({ type: "backfill", from: "2025-06-04T00:00:00Z", to: "2025-06-06T00:00:00Z" });
    await waitFor("6 runs", 30_000, async () => ((await harness!.runs()).length === 6 ? true : undefined));
    await passes();
    const runs = await harness.runs();
    expect(runs.map((run) => run.id).sort()).toEqual(
      ["01", "02", "03", "04", "05", "06"].map((day) => `backfill__2025-06-${day}T00:00:00.000Z`),
    );
    // No worker takes the tasks: two runs run, the others wait queued, oldest first.
    expect(
      runs
        .filter((run) => run.state === "running")
        .map((run) => run.logicalDate)
        .sort(),
    ).toEqual(["2025-06-01T00:00:00.000Z", "2025-06-02T00:00:00.000Z"]);
  });

  it("fences a deposed scheduler: its writes are refused and the successor finishes the run", async () => {
    harness = await new DagHarness({
      backend,
      workers: 1,
      spec: dagSpec({
        tasks: [
          { id: "a", command: ["sleep", "1"] },
          { id: "b", dependsOn: ["a"], command: ["true"] },
        ],
      }),
    }).start();
    const deposed = harness.scheduler!;
    const runId = await harness.trigger();
    await waitFor("a to run", 30_000, async () =>
      (await harness!.run(runId))?.instances.get("a")?.state === "running" ? true : undefined,
    );
    const successor = await harness.startScheduler("successor");
    expect(successor.currentEpoch).toBe(deposed.currentEpoch + 1);
    await expect(deposed.done).rejects.toBeInstanceOf(Fenced);
    // A write with the old epoch is refused whole.
    expect(
      await harness.store.commit(
        deposed.currentEpoch,
        [],
        [{ op: "sadd", key: harness.store.keys.active, member: "forged" }],
      ),
    ).toBe("fenced");
    const record = await harness.waitForRun(runId);
    expect(record.run.state).toBe("success");
    expect(await harness.store.activeRunIds()).not.toContain("forged");
    expect((await harness.store.schedulerInfo()).identity).toBe("successor");
  });
});
