/**
 * Read views of a Dag's state, shared by the scheduler's REST API (Airflow's /api/v1 shapes),
 * the `tributary dag` CLI and the operator's status: runs, task instances, the tree of a run,
 * and the summary the Dag's status shows.
 */
import type { RunState } from "../../api/dag.js";
import type { Run, TaskInstance } from "./model.js";
import type { DagStore, RunRecord } from "./store.js";

/** How many of the newest runs the summary counts by state. */
export const summaryRunWindow = 1000;

export interface DagSummary {
  lastRun?: { id: string; logicalDate: string; state: RunState; startDate?: string; endDate?: string };
  nextRun?: string;
  lastScheduled?: string;
  runs: Record<RunState, number>;
  failingTasks: { runId: string; taskId: string; state: string; try: number; error: string }[];
  scheduler?: { identity: string; epoch: number };
}

export async function dagSummary(store: DagStore): Promise<DagSummary> {
  const ids = await store.runIds(summaryRunWindow);
  const pipeline = store.client.pipeline();
  for (const id of ids) pipeline.hget(store.keys.run(id), "run");
  const runs = ((await pipeline.exec()) ?? [])
    .map(([, raw]) => (raw ? (JSON.parse(raw as string) as Run) : undefined))
    .filter((run): run is Run => run !== undefined);
  const counts: Record<RunState, number> = { queued: 0, running: 0, success: 0, failed: 0 };
  for (const run of runs) counts[run.state]++;
  const info = await store.schedulerInfo();
  const last = runs[0];
  // A failure still counts while its task instance has not moved on (retried to success, cleared).
  const failures = await store.failures();
  const failing: DagSummary["failingTasks"] = [];
  const seen = new Set<string>();
  for (const failure of failures) {
    const key = `${failure.runId} ${failure.taskId}`;
    if (seen.has(key) || failing.length >= 10) continue;
    seen.add(key);
    const raw = await store.client.hget(store.keys.run(failure.runId), `t:${failure.taskId}`);
    const ti = raw ? (JSON.parse(raw) as TaskInstance) : undefined;
    if (!ti || ti.try !== failure.try || (ti.state !== "failed" && ti.state !== "up_for_retry")) continue;
    failing.push({
      runId: failure.runId,
      taskId: failure.taskId,
      state: ti.state,
      try: failure.try,
      error: failure.error.slice(0, 1024),
    });
  }
  return {
    ...(last
      ? {
          lastRun: {
            id: last.id,
            logicalDate: last.logicalDate,
            state: last.state,
            ...(last.startDate ? { startDate: last.startDate } : {}),
            ...(last.endDate ? { endDate: last.endDate } : {}),
          },
        }
      : {}),
    ...(info.nextRun ? { nextRun: info.nextRun } : {}),
    ...(info.lastScheduled ? { lastScheduled: info.lastScheduled } : {}),
    runs: counts,
    failingTasks: failing,
    ...(info.identity ? { scheduler: { identity: info.identity, epoch: Number(info.epoch) } } : {}),
  };
}

/** A run as Airflow's REST API shows it. */
export function airflowRun(dagId: string, run: Run) {
  return {
    dag_id: dagId,
    dag_run_id: run.id,
    logical_date: run.logicalDate,
    execution_date: run.logicalDate,
    queued_at: run.queuedAt,
    start_date: run.startDate ?? null,
    end_date: run.endDate ?? null,
    state: run.state,
    run_type: run.type,
    conf: run.params,
    external_trigger: run.type === "manual",
  };
}

/** The task instances of a run as Airflow's REST API shows them, in the Dag's order. */
export function airflowTaskInstances(
  dagId: string,
  spec: { tasks: readonly { id: string; pool?: string | undefined; queue: string }[] },
  record: RunRecord,
) {
  return spec.tasks.map((task) => {
    const ti = record.instances.get(task.id);
    return {
      dag_id: dagId,
      dag_run_id: record.run.id,
      task_id: task.id,
      state: ti && ti.state !== "none" ? ti.state : null,
      try_number: ti?.try ?? 0,
      start_date: ti?.startDate ?? null,
      end_date: ti?.endDate ?? null,
      queued_when: ti?.queuedAt ?? null,
      hostname: ti?.worker ?? "",
      pool: task.pool ?? "default_pool",
      queue: task.queue,
      note: ti?.error ?? null,
    };
  });
}

const stateMark: Record<string, string> = {
  success: "✔",
  failed: "✘",
  upstream_failed: "✘",
  skipped: "↷",
  running: "▶",
  queued: "…",
  scheduled: "·",
  up_for_retry: "↻",
  none: " ",
};

/**
 * A run's task states as a tree, each task under its first upstream, the others named: what
 * `tributary dag tree` prints.
 */
export function runTree(
  spec: { tasks: readonly { id: string; dependsOn: string[] }[] },
  record: RunRecord,
): string {
  const lines: string[] = [`${record.run.id}  ${record.run.state}  (logical date ${record.run.logicalDate})`];
  const children = new Map<string, string[]>();
  const roots: string[] = [];
  for (const task of spec.tasks) {
    const first = task.dependsOn[0];
    if (first === undefined) roots.push(task.id);
    else children.set(first, [...(children.get(first) ?? []), task.id]);
  }
  const byId = new Map(spec.tasks.map((task) => [task.id, task]));
  const visit = (id: string, prefix: string, last: boolean) => {
    const ti = record.instances.get(id);
    const state = ti?.state ?? "none";
    const task = byId.get(id)!;
    const also = task.dependsOn.slice(1);
    const tries = ti && ti.try > 0 ? ` try ${ti.try}` : "";
    const error = ti?.error && state !== "success" && state !== "none" ? `  — ${ti.error.slice(0, 120)}` : "";
    lines.push(
      `${prefix}${last ? "└─" : "├─"} ${stateMark[state] ?? "?"} ${id}  ${state}${tries}${also.length ? `  (also after ${also.join(", ")})` : ""}${error}`,
    );
    const kids = children.get(id) ?? [];
    for (const [index, kid] of kids.entries()) {
      visit(kid, `${prefix}${last ? "   " : "│  "}`, index === kids.length - 1);
    }
  };
  for (const [index, root] of roots.entries()) visit(root, "", index === roots.length - 1);
  return lines.join("\n");
}
