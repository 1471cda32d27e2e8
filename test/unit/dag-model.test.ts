import { describe, expect, it } from "vitest";
import { triggerRules } from "../../src/api/dag.js";
import {
  downstreamOf,
  dueLogicalDates,
  judgeTriggerRule,
  logicalDatesBetween,
  nextRunTime,
  retryDelay,
  runOutcome,
} from "../../src/dataplane/dag/model.js";

const day = (text: string) => new Date(`${text}T00:00:00.000Z`);

describe("Dag schedule intervals", () => {
  const daily = { schedule: "@daily", timeZone: "UTC", startDate: day("2026-01-01"), limit: 100 };

  it("with catchup, owes every interval that has ended since the start, oldest first", () => {
    const dates = dueLogicalDates({ ...daily, now: new Date("2026-01-05T12:00:00Z"), catchup: true });
    expect(dates.map((date) => date.toISOString())).toEqual([
      "2026-01-01T00:00:00.000Z",
      "2026-01-02T00:00:00.000Z",
      "2026-01-03T00:00:00.000Z",
      "2026-01-04T00:00:00.000Z",
    ]);
  });

  it("an interval that ends exactly now is due", () => {
    const dates = dueLogicalDates({ ...daily, now: day("2026-01-03"), catchup: true });
    expect(dates.map((date) => date.toISOString())).toEqual([
      "2026-01-01T00:00:00.000Z",
      "2026-01-02T00:00:00.000Z",
    ]);
  });

  it("after the last scheduled date, owes only what came since", () => {
    const dates = dueLogicalDates({
      ...daily,
      after: day("2026-01-03"),
      now: new Date("2026-01-05T12:00:00Z"),
      catchup: true,
    });
    expect(dates.map((date) => date.toISOString())).toEqual(["2026-01-04T00:00:00.000Z"]);
  });

  it("without catchup, owes only the latest interval, found from now backwards", () => {
    const dates = dueLogicalDates({
      ...daily,
      startDate: day("2020-01-01"),
      now: new Date("2026-01-05T12:00:00Z"),
      catchup: false,
    });
    expect(dates.map((date) => date.toISOString())).toEqual(["2026-01-04T00:00:00.000Z"]);
    expect(
      dueLogicalDates({
        ...daily,
        after: day("2026-01-04"),
        now: new Date("2026-01-05T12:00:00Z"),
        catchup: false,
      }),
    ).toEqual([]);
  });

  it("stops at the end date and before the start", () => {
    expect(
      dueLogicalDates({ ...daily, endDate: day("2026-01-02"), now: day("2026-02-01"), catchup: true }).map(
        (d) => d.toISOString(),
      ),
    ).toEqual(["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"]);
    expect(dueLogicalDates({ ...daily, now: new Date("2026-01-01T23:00:00Z"), catchup: false })).toEqual([]);
    expect(
      dueLogicalDates({ ...daily, endDate: day("2026-01-02"), now: day("2026-02-01"), catchup: false }),
    ).toEqual([day("2026-01-02")]);
  });

  it("reads the schedule in its time zone", () => {
    const dates = dueLogicalDates({
      schedule: "30 1 * * *",
      timeZone: "Europe/Paris",
      startDate: day("2026-01-01"),
      now: new Date("2026-01-03T12:00:00Z"),
      catchup: true,
      limit: 10,
    });
    expect(dates.map((date) => date.toISOString())).toEqual([
      "2026-01-01T00:30:00.000Z",
      "2026-01-02T00:30:00.000Z",
    ]);
  });

  it("gives the next run as the end of the first interval not yet run, and backfill dates in a range", () => {
    expect(nextRunTime({ ...daily, after: day("2026-01-04") })).toEqual(day("2026-01-06"));
    expect(nextRunTime({ ...daily })).toEqual(day("2026-01-02"));
    expect(logicalDatesBetween("@daily", "UTC", day("2026-03-01"), day("2026-03-03"), 100)).toEqual([
      day("2026-03-01"),
      day("2026-03-02"),
      day("2026-03-03"),
    ]);
  });
});

describe("Dag trigger rules", () => {
  const cases: [string, string[], string][] = [
    ["all_success", ["success", "success"], "run"],
    ["all_success", ["success", "running"], "wait"],
    ["all_success", ["success", "failed"], "upstream_failed"],
    ["all_success", ["running", "upstream_failed"], "upstream_failed"],
    ["all_success", ["success", "skipped"], "skipped"],
    ["all_failed", ["failed", "upstream_failed"], "run"],
    ["all_failed", ["failed", "success"], "skipped"],
    ["all_failed", ["failed", "running"], "wait"],
    ["all_done", ["failed", "success", "skipped"], "run"],
    ["all_done", ["failed", "queued"], "wait"],
    ["one_success", ["success", "running"], "run"],
    ["one_success", ["failed", "skipped"], "upstream_failed"],
    ["one_success", ["skipped", "skipped"], "skipped"],
    ["one_success", ["failed", "running"], "wait"],
    ["one_failed", ["failed", "running"], "run"],
    ["one_failed", ["success", "success"], "skipped"],
    ["one_failed", ["success", "running"], "wait"],
    ["none_failed", ["success", "skipped"], "run"],
    ["none_failed", ["success", "failed"], "upstream_failed"],
    ["none_failed", ["success", "running"], "wait"],
    ["none_failed_min_one_success", ["success", "skipped"], "run"],
    ["none_failed_min_one_success", ["skipped", "skipped"], "skipped"],
    ["none_failed_min_one_success", ["upstream_failed", "success"], "upstream_failed"],
    ["none_skipped", ["success", "failed"], "run"],
    ["none_skipped", ["success", "skipped"], "skipped"],
    ["always", ["running", "none"], "run"],
  ];
  it.each(cases)("%s with upstreams %j: %s", (rule, states, decision) => {
    expect(judgeTriggerRule(rule as never, states as never)).toBe(decision);
  });

  it("covers every rule of the schema, and a task without upstreams runs", () => {
    expect(new Set(cases.map(([rule]) => rule))).toEqual(new Set(triggerRules));
    for (const rule of triggerRules) expect(judgeTriggerRule(rule, [])).toBe("run");
  });
});

describe("Dag retries and outcomes", () => {
  it("doubles the delay per failed try with exponential backoff, up to the maximum", () => {
    const policy = { retryDelayMs: 1000, exponentialBackoff: true, maxRetryDelayMs: 5000 };
    expect([1, 2, 3, 4].map((tryNumber) => retryDelay(policy, tryNumber))).toEqual([1000, 2000, 4000, 5000]);
    expect(retryDelay({ ...policy, exponentialBackoff: false }, 4)).toBe(1000);
  });

  it("fails a run when a leaf failed, succeeds it when leaves succeeded or were skipped", () => {
    const tasks = [
      { id: "a", dependsOn: [] },
      { id: "b", dependsOn: ["a"] },
      { id: "c", dependsOn: ["a"] },
    ];
    const ti = (state: string) => ({ state, try: 1, v: 1 }) as never;
    expect(
      runOutcome(
        tasks,
        new Map([
          ["a", ti("success")],
          ["b", ti("success")],
          ["c", ti("skipped")],
        ]),
      ),
    ).toBe("success");
    expect(
      runOutcome(
        tasks,
        new Map([
          ["a", ti("failed")],
          ["b", ti("upstream_failed")],
          ["c", ti("upstream_failed")],
        ]),
      ),
    ).toBe("failed");
    expect(
      runOutcome(
        tasks,
        new Map([
          ["a", ti("success")],
          ["b", ti("running")],
          ["c", ti("success")],
        ]),
      ),
    ).toBeUndefined();
    expect(downstreamOf([...tasks, { id: "d", dependsOn: ["b", "c"] }], "a").sort()).toEqual(["b", "c", "d"]);
  });
});
