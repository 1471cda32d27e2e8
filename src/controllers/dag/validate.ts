import { Reason } from "../../api/conditions.js";
import type { DagSpec } from "../../api/dag.js";
import type { SpecProblem } from "../common.js";
import { scheduleProblem, timeZoneProblem } from "../schedule.js";

/**
 * A Dag's tasks must form a directed acyclic graph over known ids. The CRD's CEL rule checks
 * that dependencies exist; a cycle is beyond CEL, so it is found here (depth-first search,
 * reporting the cycle's path so the user sees which edge to cut). The CRD checks only the
 * schedule's shape; its fields and time zone are checked here.
 */
export function validateDag(
  spec: Pick<DagSpec, "tasks" | "schedule" | "timeZone"> & Partial<Pick<DagSpec, "workers" | "pools">>,
): SpecProblem[] {
  const problems: SpecProblem[] = [];
  if (spec.schedule != null) {
    const problem = scheduleProblem("spec.schedule", spec.schedule);
    if (problem) problems.push(problem);
  }
  const timeZone = timeZoneProblem("spec.timeZone", spec.timeZone);
  if (timeZone) problems.push(timeZone);
  const ids = new Set<string>();
  for (const [index, task] of spec.tasks.entries()) {
    if (ids.has(task.id)) {
      problems.push({
        reason: Reason.InvalidSpec,
        message: `spec.tasks[${index}]: the id '${task.id}' is used by an earlier task; task ids must be unique`,
      });
    }
    ids.add(task.id);
  }
  if (spec.workers) {
    const consumed = new Set(spec.workers.queues);
    for (const [index, task] of spec.tasks.entries()) {
      const queue = task.queue ?? "default";
      if (!consumed.has(queue)) {
        problems.push({
          reason: Reason.InvalidSpec,
          message: `spec.tasks[${index}] (${task.id}) is sent to queue '${queue}', which no worker consumes (spec.workers.queues: ${[...consumed].join(", ")}); it would stay queued forever`,
        });
      }
    }
  }
  if (spec.pools) {
    const pools = new Set(spec.pools.map((pool) => pool.name));
    for (const [index, task] of spec.tasks.entries()) {
      if (task.pool && !pools.has(task.pool)) {
        problems.push({
          reason: Reason.InvalidSpec,
          message: `spec.tasks[${index}] (${task.id}) names pool '${task.pool}', which spec.pools does not define`,
        });
      }
    }
  }
  for (const [index, task] of spec.tasks.entries()) {
    for (const dependency of task.dependsOn ?? []) {
      if (!ids.has(dependency)) {
        problems.push({
          reason: Reason.UnknownDependency,
          message: `spec.tasks[${index}] (${task.id}) depends on '${dependency}', which is not a task of this Dag`,
        });
      }
    }
  }
  const cycle = findCycle(spec.tasks);
  if (cycle) {
    problems.push({
      reason: Reason.DagCycle,
      message: `spec.tasks: dependsOn forms a cycle ${cycle.join(" -> ")}; a Dag must be acyclic`,
    });
  }
  return problems;
}

/** The first cycle found, as the list of ids around it (first id repeated at the end). */
export function findCycle(
  tasks: readonly { id: string; dependsOn?: readonly string[] }[],
): string[] | undefined {
  const upstream = new Map(tasks.map((task) => [task.id, task.dependsOn ?? []]));
  const state = new Map<string, "visiting" | "done">();
  const path: string[] = [];
  const visit = (id: string): string[] | undefined => {
    if (state.get(id) === "done" || !upstream.has(id)) return undefined;
    if (state.get(id) === "visiting") return [...path.slice(path.indexOf(id)), id];
    state.set(id, "visiting");
    path.push(id);
    for (const dependency of upstream.get(id)!) {
      const found = visit(dependency);
      if (found) return found;
    }
    path.pop();
    state.set(id, "done");
    return undefined;
  };
  for (const task of tasks) {
    const found = visit(task.id);
    if (found) return found.reverse();
  }
  return undefined;
}
