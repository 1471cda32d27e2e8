/**
 * `tributary dag` against a running Dag (scheduler and worker on the real Redis): trigger with
 * parameters, runs, the tree of a run, a task's log, clear, mark, backfill and status.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/dataplane/dag/cli.js";
import { testEnv } from "../support/env.js";
import { DagHarness, dagSpec, sh, waitFor } from "./dag-cluster.js";

describe("tributary dag", () => {
  let harness: DagHarness;
  const cli = async (...args: string[]) => {
    let text = "";
    await main([...args, "--redis-url", testEnv().redisUrl, "--key-prefix", harness.prefix], (chunk) => {
      text += chunk;
    });
    return text;
  };

  beforeAll(async () => {
    harness = await new DagHarness({
      backend: "redis",
      spec: dagSpec({
        schedule: "@daily",
        paused: true,
        tasks: [
          { id: "extract", ...sh('echo "extracting for $TRIBUTARY_PARAMS"') },
          { id: "clean", dependsOn: ["extract"], command: ["true"] },
          { id: "check", dependsOn: ["extract"], command: ["false"] },
          { id: "publish", dependsOn: ["clean", "check"], command: ["true"] },
        ],
      }),
    }).start();
  });
  afterAll(async () => {
    await harness.stop();
  });

  it("triggers with parameters, lists runs, shows the tree and a task's log", async () => {
    expect(await cli("trigger", "--run-id", "manual__cli", "--param", "day=2026-01-02")).toContain(
      "trigger requested",
    );
    const record = await harness.waitForRun("manual__cli");
    expect(record.run.params).toEqual({ day: "2026-01-02" });
    const runs = await cli("runs");
    expect(runs).toMatch(/^RUN\s+STATE\s+TYPE/);
    expect(runs).toMatch(/manual__cli\s+failed\s+manual/);
    const tree = await cli("tree", "manual__cli");
    expect(tree.split("\n")).toEqual([
      expect.stringContaining("manual__cli  failed"),
      "└─ ✔ extract  success try 1",
      "   ├─ ✔ clean  success try 1",
      "   │  └─ ✘ publish  upstream_failed  (also after check)",
      "   └─ ✘ check  failed try 1  — false exited with code 1",
      "",
    ]);
    expect(await cli("tasks", "manual__cli")).toMatch(/check\s+failed\s+1/);
    expect(await cli("logs", "manual__cli", "extract")).toContain('extracting for {"day":"2026-01-02"}');
    const status = await cli("status");
    expect(status).toContain("last run:   manual__cli failed");
    expect(status).toMatch(/failing:\s+manual__cli check try 1 failed: false exited with code 1/);
  });

  it("marks a task, clears its downstream and backfills a range", async () => {
    await cli("mark", "manual__cli", "--task", "check", "--state", "success");
    await cli("clear", "manual__cli", "--task", "publish");
    const record = await waitFor("the run to succeed", 60_000, async () => {
      const current = await harness.run("manual__cli");
      return current?.run.state === "success" ? current : undefined;
    });
    expect(record.instances.get("publish")).toMatchObject({ state: "success", try: 1 });
    expect(await cli("backfill", "--from", "2026-02-01T00:00:00Z", "--to", "2026-02-02T00:00:00Z")).toContain(
      "backfill",
    );
    await waitFor("two backfill runs", 60_000, async () =>
      (await harness.runs()).filter((run) => run.type === "backfill").length === 2 ? true : undefined,
    );
    await expect(cli("mark", "manual__cli", "--state", "maybe")).rejects.toThrow(/--state success\|failed/);
  });
});
