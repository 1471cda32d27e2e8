/**
 * Faults on real processes: `kill -9` of the scheduler and of a worker (with its task processes,
 * as a pod's death takes them) in the middle of a run; every task still ends exactly once in a
 * final state. And a task that prints hundreds of megabytes keeps the worker's memory bounded.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { readLog } from "../../src/dataplane/dag/logs.js";
import {
  backends,
  DagHarness,
  dagSpec,
  instance,
  type RoleProcess,
  residentBytes,
  roleEnv,
  sh,
  startRole,
  waitFor,
} from "./dag-cluster.js";

/** Kills a process and every process group it started (a worker's tasks), as a pod's death would. */
function killTree(pid: number) {
  // Frozen first, so it starts no task between the listing of its children and its death.
  process.kill(pid, "SIGSTOP");
  let children: number[] = [];
  try {
    children = execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
      .split("\n")
      .map((line) => Number(line.trim()))
      .filter((child) => child > 0);
  } catch {
    // no children
  }
  process.kill(pid, "SIGKILL");
  for (const child of children) {
    try {
      process.kill(-child, "SIGKILL");
    } catch {
      try {
        process.kill(child, "SIGKILL");
      } catch {}
    }
  }
}

describe.each(backends())("Dag faults on the %s queue", (backend) => {
  let harness: DagHarness | undefined;
  const processes: RoleProcess[] = [];
  let dir: string | undefined;
  afterEach(async () => {
    for (const role of processes.splice(0)) {
      if (role.child.exitCode === null && role.child.signalCode === null) {
        role.child.kill("SIGKILL");
        await role.exited;
      }
    }
    await harness?.stop();
    harness = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it("every task ends exactly once after kill -9 of the scheduler and of a worker mid-run", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "dag-faults-"));
    const marks = path.join(dir, "marks");
    // Each try that completes its work appends "<task> <try>"; a killed try never does.
    const work = (seconds: number) =>
      sh(`sleep ${seconds}; echo "$TRIBUTARY_TASK_ID $TRIBUTARY_TRY" >> "${marks}"`);
    const width = 6;
    harness = new DagHarness({
      backend,
      noScheduler: true,
      workers: 0,
      spec: dagSpec({
        defaultArgs: { retries: 3, retryDelaySeconds: 1 },
        maxActiveTasks: 16,
        tasks: [
          { id: "start", ...work(0) },
          ...Array.from({ length: width }, (_, index) => ({
            id: `mid-${index}`,
            dependsOn: ["start"],
            ...work(3),
          })),
          { id: "end", dependsOn: Array.from({ length: width }, (_, index) => `mid-${index}`), ...work(0) },
        ],
      }),
    });
    const scheduler = startRole("dag-scheduler", await roleEnv(harness, "scheduler", "scheduler-1"));
    const workers: { identity: string; role: RoleProcess }[] = [];
    for (const identity of ["worker-a", "worker-b"]) {
      workers.push({ identity, role: startRole("worker", await roleEnv(harness, "worker", identity)) });
    }
    processes.push(scheduler, ...workers.map((worker) => worker.role));
    const runId = await harness.trigger();

    // Mid-run: the worker running a middle task dies.
    const victimName = await waitFor("a middle task to run", 90_000, async () => {
      const record = await harness!.run(runId);
      return [...(record?.instances ?? [])].find(
        ([id, ti]) => id.startsWith("mid-") && ti.state === "running",
      )?.[1].worker;
    });
    const victim = workers.find((worker) => worker.identity === victimName)!;
    killTree(victim.role.child.pid!);
    killTree(scheduler.child.pid!);
    await Promise.all([victim.role.exited, scheduler.exited]);
    const killedTries = [...((await harness.run(runId))?.instances ?? [])]
      .filter(([, ti]) => ti.state === "running" && ti.worker === victim.identity)
      .map(([id]) => id);

    // A new scheduler process continues the run; the other worker takes the retries.
    const successor = startRole("dag-scheduler", await roleEnv(harness, "scheduler", "scheduler-2"));
    processes.push(successor);
    const record = await harness.waitForRun(runId, 120_000);
    expect(record.run.state).toBe("success");
    const lines = (await readFile(marks, "utf8")).trim().split("\n");
    for (const [taskId, ti] of record.instances) {
      expect([taskId, ti.state]).toEqual([taskId, "success"]);
      // Exactly one try completed its work, and it is the try recorded.
      const completed = lines.filter((line) => line.split(" ")[0] === taskId);
      expect([taskId, completed]).toEqual([taskId, [`${taskId} ${ti.try}`]]);
    }
    // The tries that died with their worker were found lost and retried.
    for (const taskId of killedTries) expect(instance(record, taskId).try).toBeGreaterThan(1);
    const failures = await harness.store.failures();
    expect(failures.some((failure) => failure.error.includes("stopped heartbeating"))).toBe(true);
    expect((await harness.store.schedulerInfo()).identity).toBe("scheduler-2");
  }, 300_000);

  it("keeps the worker's memory bounded while a task prints 300 MB", async () => {
    harness = new DagHarness({
      backend,
      workers: 0,
      spec: dagSpec({
        tasks: [
          {
            id: "chatty",
            // 75,000 lines of 4,000 characters, then one last line.
            ...sh("head -c 300000000 /dev/zero | tr '\\0' x | fold -w 4000; echo; echo END"),
          },
        ],
      }),
    });
    await harness.start();
    const env = await roleEnv(harness, "worker", "worker-chatty");
    env.TRIBUTARY_WORKER_LOG_LINES_PER_TRY = "1000";
    // As the controller starts workers: V8's old space sized below the container's memory, so a
    // burst of garbage is collected rather than kept; what the worker holds must fit in it.
    env.NODE_OPTIONS = "--max-old-space-size=96";
    const worker = startRole("worker", env);
    processes.push(worker);
    await waitFor("the worker to start", 60_000, async () =>
      worker.output().includes("taking tasks") ? true : undefined,
    );
    const baseline = residentBytes(worker.child.pid!);
    let peak = baseline;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, residentBytes(worker.child.pid!));
      } catch {}
    }, 50);
    const runId = await harness.trigger();
    const record = await harness.waitForRun(runId, 180_000);
    clearInterval(sampler);
    expect(record.run.state).toBe("success");
    // 300 MB went through; the worker grew by far less (its buffer holds at most 1 MiB of lines).
    expect(peak - baseline).toBeLessThan(64 * 1024 * 1024);
    // The log kept its newest lines, capped near 1,000, the last one included.
    const key = harness.store.keys.log(runId, "chatty", 1);
    const length = await harness.redis.xlen(key);
    expect(length).toBeGreaterThanOrEqual(1000);
    expect(length).toBeLessThan(1300);
    const tail = await readLog(harness.redis, key, { after: "0-0" });
    expect(tail.map((entry) => entry.line)).toContain("END");
  }, 300_000);
});
