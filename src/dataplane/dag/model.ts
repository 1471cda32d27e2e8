/**
 * The scheduler's vocabulary, as Airflow has it: runs with logical dates, task instances moving
 * through Airflow's states, trigger rules judged on the upstreams' final states, retry delays.
 * Everything here is pure, so the rules are unit-tested without Redis.
 */
import type { DagSpec, RunState, Task, TaskState, TriggerRule } from "../../api/dag.js";
import { parseSchedule } from "../../controllers/schedule.js";

export const finalTaskStates: ReadonlySet<TaskState> = new Set([
  "success",
  "failed",
  "skipped",
  "upstream_failed",
]);
export const isFinalTask = (state: TaskState) => finalTaskStates.has(state);
export const isFinalRun = (state: RunState) => state === "success" || state === "failed";

export type RunType = "scheduled" | "manual" | "backfill";

export interface Run {
  id: string;
  type: RunType;
  /** Start of the data interval, ISO. */
  logicalDate: string;
  state: RunState;
  /** When the run was created, ISO. */
  queuedAt: string;
  startDate?: string;
  endDate?: string;
  params: Record<string, string>;
}

/** One task of one run. `try` counts tries started so far, as Airflow's try_number. */
export interface TaskInstance {
  state: TaskState;
  try: number;
  /** Bumped by every write, the scheduler's compare-and-set token. */
  v: number;
  queuedAt?: string;
  startDate?: string;
  endDate?: string;
  /** Earliest time of the next try (up_for_retry), epoch ms. */
  nextTryAt?: number;
  worker?: string;
  error?: string;
}

export const emptyInstance = (): TaskInstance => ({ state: "none", try: 0, v: 0 });

/** What a worker needs to run one try; the scheduler resolves defaults into it. */
export interface TaskMessage {
  runId: string;
  taskId: string;
  try: number;
  /** Tries allowed in all: retries + 1. */
  maxTries: number;
  retryDelayMs: number;
  exponentialBackoff: boolean;
  maxRetryDelayMs: number;
  timeoutMs?: number;
  logicalDate: string;
  params: Record<string, string>;
  upstream: string[];
  action: TaskAction;
}

/** A task's text with the try's templates filled in: `{{ logicalDate }}`, `{{ ds }}`, `{{ runId }}`. */
export const substitute = (text: string, message: Pick<TaskMessage, "logicalDate" | "runId">) =>
  text
    .replaceAll("{{ logicalDate }}", message.logicalDate)
    .replaceAll("{{ ds }}", message.logicalDate.slice(0, 10))
    .replaceAll("{{ runId }}", message.runId);

export type TaskAction =
  | {
      kind: "command";
      runAs: "worker" | "job";
      command?: string[];
      args?: string[];
      image?: string;
      env: { name: string; value?: string; secretKeyRef?: { name: string; key: string } }[];
      resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
    }
  | { kind: "http"; http: NonNullable<Task["http"]> }
  | { kind: "platform"; platform: NonNullable<Task["platform"]> };

export function taskAction(task: Task): TaskAction {
  if (task.http) return { kind: "http", http: task.http };
  if (task.platform) return { kind: "platform", platform: task.platform };
  return {
    kind: "command",
    runAs: task.runAs ?? (task.image ? "job" : "worker"),
    ...(task.command ? { command: task.command } : {}),
    ...(task.args ? { args: task.args } : {}),
    ...(task.image ? { image: task.image } : {}),
    env: task.env ?? [],
    ...(task.resources ? { resources: task.resources } : {}),
  };
}

/** The retry and timeout settings of a task, defaults resolved. */
export function taskPolicy(spec: Pick<DagSpec, "defaultArgs">, task: Task) {
  const defaults = spec.defaultArgs;
  const timeoutSeconds = task.executionTimeoutSeconds ?? defaults.executionTimeoutSeconds;
  return {
    maxTries: (task.retries ?? defaults.retries) + 1,
    retryDelayMs: (task.retryDelaySeconds ?? defaults.retryDelaySeconds) * 1000,
    exponentialBackoff: task.retryExponentialBackoff ?? defaults.retryExponentialBackoff,
    maxRetryDelayMs: (task.maxRetryDelaySeconds ?? defaults.maxRetryDelaySeconds ?? 86400) * 1000,
    ...(timeoutSeconds !== undefined ? { timeoutMs: timeoutSeconds * 1000 } : {}),
  };
}

/**
 * Delay before try `failedTry + 1`: the retry delay, doubled per earlier failure when the
 * backoff is exponential (Airflow's retry_exponential_backoff), never above the maximum.
 */
export function retryDelay(
  policy: Pick<TaskMessage, "retryDelayMs" | "exponentialBackoff" | "maxRetryDelayMs">,
  failedTry: number,
): number {
  const delay = policy.exponentialBackoff
    ? policy.retryDelayMs * 2 ** Math.min(Math.max(failedTry - 1, 0), 40)
    : policy.retryDelayMs;
  return Math.min(delay, policy.maxRetryDelayMs);
}

export type TriggerDecision = "wait" | "run" | "skipped" | "upstream_failed";

/**
 * What a task whose upstreams are in `states` does, by its trigger rule (Airflow 2's
 * TriggerRuleDep): one_success and one_failed fire as soon as one upstream allows it; the
 * others wait until every upstream is final. A task without upstreams always runs.
 */
export function judgeTriggerRule(rule: TriggerRule, states: readonly TaskState[]): TriggerDecision {
  if (states.length === 0 || rule === "always") return "run";
  let success = 0;
  let failed = 0;
  let upstreamFailed = 0;
  let skipped = 0;
  for (const state of states) {
    if (state === "success") success++;
    else if (state === "failed") failed++;
    else if (state === "upstream_failed") upstreamFailed++;
    else if (state === "skipped") skipped++;
  }
  const done = success + failed + upstreamFailed + skipped;
  const allDone = done === states.length;
  const anyFailed = failed + upstreamFailed > 0;
  switch (rule) {
    case "all_success":
      if (anyFailed) return "upstream_failed";
      if (skipped > 0) return "skipped";
      return allDone ? "run" : "wait";
    case "all_failed":
      if (success + skipped > 0) return "skipped";
      return allDone ? "run" : "wait";
    case "all_done":
      return allDone ? "run" : "wait";
    case "one_success":
      if (success > 0) return "run";
      if (!allDone) return "wait";
      return anyFailed ? "upstream_failed" : "skipped";
    case "one_failed":
      if (anyFailed) return "run";
      return allDone ? "skipped" : "wait";
    case "none_failed":
      if (anyFailed) return "upstream_failed";
      return allDone ? "run" : "wait";
    case "none_failed_min_one_success":
      if (anyFailed) return "upstream_failed";
      if (!allDone) return "wait";
      return success > 0 ? "run" : "skipped";
    case "none_skipped":
      if (skipped > 0) return "skipped";
      return allDone ? "run" : "wait";
  }
}

/** A run fails when a leaf task (one nothing depends on) failed or could not run; Airflow's rule. */
export function runOutcome(
  tasks: readonly Pick<Task, "id" | "dependsOn">[],
  instances: ReadonlyMap<string, TaskInstance>,
): RunState | undefined {
  const states = tasks.map((task) => instances.get(task.id)?.state ?? "none");
  if (!states.every(isFinalTask)) return undefined;
  const upstreamOfSomething = new Set(tasks.flatMap((task) => task.dependsOn ?? []));
  const leaves = tasks.filter((task) => !upstreamOfSomething.has(task.id));
  const failedLeaf = leaves.some((task) => {
    const state = instances.get(task.id)?.state;
    return state === "failed" || state === "upstream_failed";
  });
  return failedLeaf ? "failed" : "success";
}

/** Tasks downstream of `taskId`, transitively, in no particular order; not including itself. */
export function downstreamOf(tasks: readonly Pick<Task, "id" | "dependsOn">[], taskId: string): string[] {
  const children = new Map<string, string[]>();
  for (const task of tasks) {
    for (const upstream of task.dependsOn ?? []) {
      children.set(upstream, [...(children.get(upstream) ?? []), task.id]);
    }
  }
  const seen = new Set<string>();
  const stack = [...(children.get(taskId) ?? [])];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    stack.push(...(children.get(id) ?? []));
  }
  return [...seen];
}

export const runId = (type: RunType, logicalDate: Date) => `${type}__${logicalDate.toISOString()}`;

/**
 * Logical dates of the schedule's intervals that have ended by `now`, after `after` (exclusive)
 * and from `startDate` (inclusive). A run's logical date is the start of its data interval, so
 * the interval [d, next(d)) runs once next(d) <= now: Airflow's rule, which makes a daily run for
 * Monday start just after Monday ends. With catchup, the oldest `limit` of them (the rest come
 * on later passes); without, only the latest one (found backwards from now, so a start years ago
 * costs nothing).
 */
export function dueLogicalDates(options: {
  schedule: string;
  timeZone: string;
  startDate: Date;
  endDate?: Date;
  after?: Date;
  now: Date;
  catchup: boolean;
  limit: number;
}): Date[] {
  const { schedule, timeZone, startDate, endDate, after, now, catchup, limit } = options;
  const inRange = (date: Date) =>
    date.getTime() >= startDate.getTime() &&
    (!after || date.getTime() > after.getTime()) &&
    (!endDate || date.getTime() <= endDate.getTime());
  if (!catchup) {
    const backwards = parseSchedule(schedule, { timeZone, currentDate: new Date(now.getTime() + 1) });
    backwards.prev(); // the end of the latest ended interval
    let logical = backwards.prev().toDate();
    // Past the end date, the latest interval is the last one before it.
    while (endDate && logical.getTime() > endDate.getTime()) logical = backwards.prev().toDate();
    return inRange(logical) ? [logical] : [];
  }
  const from = after && after.getTime() >= startDate.getTime() ? new Date(after.getTime() + 1) : startDate;
  const expression = parseSchedule(schedule, { timeZone, currentDate: new Date(from.getTime() - 1) });
  const dates: Date[] = [];
  let current = expression.next().toDate();
  while (dates.length < limit) {
    if (endDate && current.getTime() > endDate.getTime()) break;
    const next = expression.next().toDate();
    if (next.getTime() > now.getTime()) break;
    if (inRange(current)) dates.push(current);
    current = next;
  }
  return dates;
}

/** The logical dates of the schedule in [from, to], for a backfill. */
export function logicalDatesBetween(schedule: string, timeZone: string, from: Date, to: Date, limit: number) {
  const expression = parseSchedule(schedule, { timeZone, currentDate: new Date(from.getTime() - 1) });
  const dates: Date[] = [];
  for (;;) {
    const date = expression.next().toDate();
    if (date.getTime() > to.getTime()) break;
    dates.push(date);
    if (dates.length >= limit) break;
  }
  return dates;
}

/** When the next scheduled run starts: the end of the first interval not yet run. */
export function nextRunTime(options: {
  schedule: string;
  timeZone: string;
  startDate: Date;
  endDate?: Date;
  after?: Date;
}): Date | undefined {
  const { schedule, timeZone, startDate, endDate, after } = options;
  const from = after && after.getTime() >= startDate.getTime() ? new Date(after.getTime() + 1) : startDate;
  const expression = parseSchedule(schedule, { timeZone, currentDate: new Date(from.getTime() - 1) });
  const logical = expression.next().toDate();
  if (endDate && logical.getTime() > endDate.getTime()) return undefined;
  return expression.next().toDate();
}
