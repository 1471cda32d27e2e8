/**
 * A Dag's scheduler and workers against the real Redis (and RabbitMQ): dependency order, results
 * passed downstream, retries with backoff, every trigger rule, timeouts, pools, manual triggers
 * with parameters, clear, mark and backfill. The same suite runs once per queue backend.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { triggerRules } from "../../src/api/dag.js";
import { readLog } from "../../src/dataplane/dag/logs.js";
import { backends, DagHarness, dagSpec, instance, sh, states, waitFor } from "./dag-cluster.js";

describe.each(backends())("Dag runs on the %s queue", (backend) => {
  let harness: DagHarness | undefined;
  afterEach(async () => {
    await harness?.stop();
    harness = undefined;
  });

  it("runs a diamond in dependency order and passes each task's result downstream", async () => {
    harness = await new DagHarness({
      backend,
      workers: 2,
      spec: dagSpec({
        tasks: [
          { id: "extract", ...sh('printf 42 > "$TRIBUTARY_RESULT_FILE"') },
          {
            id: "left",
            dependsOn: ["extract"],
            ...sh('sleep 0.3; cat "$TRIBUTARY_UPSTREAM_RESULTS_FILE" > "$TRIBUTARY_RESULT_FILE"'),
          },
          { id: "right", dependsOn: ["extract"], ...sh('printf right > "$TRIBUTARY_RESULT_FILE"') },
          {
            id: "load",
            dependsOn: ["left", "right"],
            ...sh('cat "$TRIBUTARY_UPSTREAM_RESULTS_FILE" > "$TRIBUTARY_RESULT_FILE"'),
          },
        ],
      }),
    }).start();
    const runId = await harness.trigger();
    const record = await harness.waitForRun(runId);
    expect(record.run.state).toBe("success");
    expect(states(record)).toEqual({
      extract: "success",
      left: "success",
      right: "success",
      load: "success",
    });
    const startOf = (id: string) => Date.parse(instance(record, id).startDate!);
    const endOf = (id: string) => Date.parse(instance(record, id).endDate!);
    expect(startOf("left")).toBeGreaterThanOrEqual(endOf("extract"));
    expect(startOf("right")).toBeGreaterThanOrEqual(endOf("extract"));
    expect(startOf("load")).toBeGreaterThanOrEqual(Math.max(endOf("left"), endOf("right")));
    const results = await harness.store.results(runId, ["left", "load"]);
    expect(JSON.parse(results.left!)).toEqual({ extract: "42" });
    expect(JSON.parse(results.load!)).toEqual({ left: '{"extract":"42"}', right: "right" });
    // Every task ran once.
    for (const ti of record.instances.values()) expect(ti.try).toBe(1);
  });

  it("fans out and in, holding a pool to its slots and the Dag to maxActiveTasks", async () => {
    const width = 8;
    harness = new DagHarness({
      backend,
      workers: 2,
      concurrency: 4,
      spec: dagSpec({
        maxActiveTasks: 3,
        pools: [{ name: "warehouse", slots: 2 }],
        tasks: [
          { id: "start", command: ["true"] },
          ...Array.from({ length: width }, (_, index) => ({
            id: `part-${index}`,
            dependsOn: ["start"],
            pool: "warehouse",
            ...sh("sleep 0.4"),
          })),
          {
            id: "join",
            dependsOn: Array.from({ length: width }, (_, index) => `part-${index}`),
            command: ["true"],
          },
        ],
      }),
    });
    await harness.start();
    const runId = await harness.trigger();
    const record = await harness.waitForRun(runId);
    expect(record.run.state).toBe("success");
    const parts = Array.from({ length: width }, (_, index) => instance(record, `part-${index}`));
    // At no moment did more than the pool's 2 slots run.
    const events = parts.flatMap((ti) => [
      { at: Date.parse(ti.startDate!), delta: 1 },
      { at: Date.parse(ti.endDate!), delta: -1 },
    ]);
    events.sort((a, b) => a.at - b.at || a.delta - b.delta);
    let running = 0;
    let most = 0;
    for (const event of events) {
      running += event.delta;
      most = Math.max(most, running);
    }
    expect(most).toBeLessThanOrEqual(2);
    expect(Date.parse(instance(record, "join").startDate!)).toBeGreaterThanOrEqual(
      Math.max(...parts.map((ti) => Date.parse(ti.endDate!))),
    );
    expect(Math.min(...parts.map((ti) => Date.parse(ti.startDate!)))).toBeGreaterThanOrEqual(
      Date.parse(instance(record, "start").endDate!),
    );
  });

  it("retries a failing task with exponential backoff, then fails it and its downstream", async () => {
    harness = await new DagHarness({
      backend,
      spec: dagSpec({
        defaultArgs: { retries: 2, retryDelaySeconds: 1, retryExponentialBackoff: true },
        tasks: [
          { id: "flaky", ...sh('echo "try $TRIBUTARY_TRY"; exit 3') },
          { id: "after", dependsOn: ["flaky"], command: ["true"] },
        ],
      }),
    }).start();
    const runId = await harness.trigger();
    const record = await harness.waitForRun(runId);
    expect(record.run.state).toBe("failed");
    const flaky = instance(record, "flaky");
    expect(flaky).toMatchObject({ state: "failed", try: 3 });
    expect(flaky.error).toContain("exited with code 3");
    expect(instance(record, "after").state).toBe("upstream_failed");
    // Each try has its log; the failures show the two retries, then the failure.
    for (const tryNumber of [1, 2, 3]) {
      const lines = await readLog(harness.redis, harness.store.keys.log(runId, "flaky", tryNumber));
      expect(lines.map((entry) => entry.line)).toContain(`try ${tryNumber}`);
    }
    const failures = (await harness.store.failures()).filter((failure) => failure.runId === runId).reverse();
    expect(failures.map((failure) => [failure.try, failure.state])).toEqual([
      [1, "up_for_retry"],
      [2, "up_for_retry"],
      [3, "failed"],
    ]);
    // The delays doubled: at least 1 s before try 2, 2 s before try 3 (lower bounds only).
    const logStart = async (tryNumber: number) =>
      Number(
        (await readLog(harness!.redis, harness!.store.keys.log(runId, "flaky", tryNumber)))[0]!.id.split(
          "-",
        )[0],
      );
    expect((await logStart(2)) - Date.parse(failures[0]!.at)).toBeGreaterThanOrEqual(1000);
    expect((await logStart(3)) - Date.parse(failures[1]!.at)).toBeGreaterThanOrEqual(2000);
  });

  it("judges every trigger rule on a succeeded and a failed upstream, and skips down a chain", async () => {
    const expected: Record<string, string> = {
      all_success: "upstream_failed",
      all_failed: "skipped",
      all_done: "success",
      one_success: "success",
      one_failed: "success",
      none_failed: "upstream_failed",
      none_failed_min_one_success: "upstream_failed",
      none_skipped: "success",
      always: "success",
    };
    expect(Object.keys(expected).sort()).toEqual([...triggerRules].sort());
    harness = await new DagHarness({
      backend,
      workers: 2,
      spec: dagSpec({
        maxActiveTasks: 32,
        tasks: [
          { id: "ok", command: ["true"] },
          { id: "bad", command: ["false"] },
          ...triggerRules.map((rule) => ({
            id: `rule-${rule}`,
            dependsOn: ["ok", "bad"],
            triggerRule: rule,
            command: ["true"],
          })),
          // Skipped upstream: all_success skips, none_failed runs.
          { id: "after-skip", dependsOn: ["rule-all_failed"], command: ["true"] },
          {
            id: "after-skip-none-failed",
            dependsOn: ["rule-all_failed"],
            triggerRule: "none_failed",
            command: ["true"],
          },
          // upstream_failed propagates.
          { id: "after-upstream-failed", dependsOn: ["rule-all_success"], command: ["true"] },
        ],
      }),
    }).start();
    const runId = await harness.trigger();
    const record = await harness.waitForRun(runId);
    const got = states(record);
    for (const [rule, state] of Object.entries(expected))
      expect([rule, got[`rule-${rule}`]]).toEqual([rule, state]);
    expect(got["after-skip"]).toBe("skipped");
    expect(got["after-skip-none-failed"]).toBe("success");
    expect(got["after-upstream-failed"]).toBe("upstream_failed");
    expect(record.run.state).toBe("failed");
  });

  it("kills a task at its timeout, its children with it", async () => {
    // The child's pid goes where the test can read it: the try's own directory is gone after.
    const dir = await mkdtemp(path.join(tmpdir(), "dag-timeout-"));
    harness = await new DagHarness({
      backend,
      spec: dagSpec({
        tasks: [
          {
            id: "slow",
            executionTimeoutSeconds: 1,
            ...sh('sleep 120 & echo $! > "$PID_DIR/pid"; wait'),
            env: [{ name: "PID_DIR", value: dir }],
          },
        ],
      }),
    }).start();
    const runId = await harness.trigger();
    const record = await harness.waitForRun(runId);
    expect(instance(record, "slow")).toMatchObject({ state: "failed", try: 1 });
    expect(instance(record, "slow").error).toContain("timed out after 1 s");
    const pid = Number((await readFile(path.join(dir, "pid"), "utf8")).trim());
    await waitFor("the task's child to be gone", 20_000, async () => {
      try {
        process.kill(pid, 0);
        return undefined;
      } catch {
        return true;
      }
    });
    await rm(dir, { recursive: true, force: true });
  });

  it("runs a manual trigger with parameters; clears a task and its downstream; marks tasks and runs", async () => {
    harness = await new DagHarness({
      backend,
      spec: dagSpec({
        params: { region: "eu", size: "small" },
        tasks: [
          { id: "a", ...sh('echo "$TRIBUTARY_PARAMS" > "$TRIBUTARY_RESULT_FILE"') },
          { id: "b", dependsOn: ["a"], command: ["true"] },
          { id: "c", command: ["true"] },
          { id: "gate", command: ["false"] },
          { id: "after-gate", dependsOn: ["gate"], command: ["true"] },
        ],
      }),
    }).start();
    const runId = await harness.trigger({ size: "large" });
    const first = await harness.waitForRun(runId);
    expect(JSON.parse((await harness.store.results(runId, ["a"])).a!)).toEqual({
      region: "eu",
      size: "large",
    });
    expect(first.run.state).toBe("failed");
    expect(states(first)).toMatchObject({
      a: "success",
      b: "success",
      c: "success",
      gate: "failed",
      "after-gate": "upstream_failed",
    });

    // Clear a and its downstream b: both run again (try 2), c keeps its try.
    await harness.request({ type: "clear", runId, taskIds: ["a"], downstream: true });
    const cleared = await waitFor("a and b to run again", 60_000, async () => {
      const record = await harness!.run(runId);
      return record && instance(record, "b").try === 2 && instance(record, "b").state === "success"
        ? record
        : undefined;
    });
    expect(instance(cleared, "a")).toMatchObject({ state: "success", try: 2 });
    expect(instance(cleared, "c")).toMatchObject({ state: "success", try: 1 });

    // Mark the failed gate success and clear what it held back: that runs, and the run succeeds.
    await harness.request({ type: "mark", runId, taskId: "gate", state: "success" });
    await harness.request({ type: "clear", runId, taskIds: ["after-gate"], downstream: true });
    const marked = await waitFor("the run to succeed", 60_000, async () => {
      const record = await harness!.run(runId);
      return record?.run.state === "success" ? record : undefined;
    });
    expect(states(marked)).toMatchObject({ gate: "success", "after-gate": "success" });

    // Mark the whole run failed.
    await harness.request({ type: "mark", runId, state: "failed" });
    await waitFor("the run to be failed", 30_000, async () =>
      (await harness!.run(runId))?.run.state === "failed" ? true : undefined,
    );
  });

  it("refuses a second try of the same message: a task ends exactly once", async () => {
    harness = await new DagHarness({
      backend,
      spec: dagSpec({ tasks: [{ id: "once", command: ["true"] }] }),
    }).start();
    const runId = await harness.trigger();
    const record = await harness.waitForRun(runId);
    expect(instance(record, "once")).toMatchObject({ state: "success", try: 1 });
    // The same try delivered again is refused by the task instance's fence.
    expect(await harness.store.start(runId, "once", 1, "late-worker", 3000)).toBe("success");
    expect(
      await harness.store.finish({ runId, taskId: "once", tryNumber: 1, outcome: "failed", error: "late" }),
    ).toBe("success");
    expect(instance((await harness.run(runId))!, "once").state).toBe("success");
  });
});
