/**
 * The Dag's scheduler: one active per Dag, fenced by the epoch it took over with. Each pass reads
 * the active runs from Redis, applies the CLI's requests, creates the runs the schedule owes,
 * judges every task's trigger rule, detects lost and timed-out tries, and writes all of it in one
 * fenced script; then it sends the tasks it queued. A pass runs when a worker finishes a task or
 * a request arrives (the `wake` list), and at least every tick.
 *
 * Order of durability: a task is marked queued (with its try) before its message is sent, so a
 * scheduler that dies in between leaves a queued task whose message its successor sends again on
 * taking over (and any scheduler re-sends a message left unclaimed for `requeueAfterMs`). A
 * duplicate costs nothing: the try can be claimed once.
 */
import type { Redis } from "ioredis";
import type { DagSpec, RunState, Task, TaskState } from "../../api/dag.js";
import type { Logger } from "../../log.js";
import {
  downstreamOf,
  dueLogicalDates,
  emptyInstance,
  isFinalRun,
  isFinalTask,
  judgeTriggerRule,
  logicalDatesBetween,
  runId as makeRunId,
  nextRunTime,
  type Run,
  type RunType,
  retryDelay,
  runOutcome,
  type TaskInstance,
  type TaskMessage,
  taskAction,
  taskPolicy,
} from "./model.js";
import type { TaskQueue } from "./queue.js";
import {
  type Check,
  type DagStore,
  failuresKept,
  type Op,
  type Request,
  type RunRecord,
  taskField,
} from "./store.js";

export type Clock = () => number;

export interface SchedulerOptions {
  spec: DagSpec;
  store: DagStore;
  /** A second connection for the blocking wait on `wake`. */
  waitConnection: Redis;
  queue: TaskQueue;
  identity: string;
  log: Logger;
  clock?: Clock;
  /** Longest pause between passes; default 1 s. */
  tickMs?: number;
  /** A queued try not claimed for this long has its message sent again; default 5 min. */
  requeueAfterMs?: number;
  /** A running try whose heartbeat expired is lost; the heartbeat's time to live, default 15 s. */
  heartbeatTtlMs?: number;
  /** When the Dag's startDate is omitted: the Dag's creation (default: when the scheduler started). */
  defaultStartDate?: Date;
  /** Runs created per pass at most (catch-up of a long gap happens over several passes). */
  runsPerPass?: number;
}

export class Fenced extends Error {
  override name = "Fenced";
}

interface PassState {
  now: number;
  records: Map<string, RunRecord>;
  checks: Map<string, Check>;
  ops: Op[];
  /** Messages to send once the pass is durable. */
  sends: { queue: string; message: TaskMessage; dedupeId: string }[];
  /** Changed instances, by run then task. */
  changed: Map<string, Map<string, TaskInstance>>;
  changedRuns: Set<string>;
  lastScheduled?: string;
  /** Log lines for what the pass decided, written once it is durable. */
  notes: (() => void)[];
}

export class DagScheduler {
  private readonly spec: DagSpec;
  private readonly store: DagStore;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly tasks: Map<string, Task>;
  private readonly tickMs: number;
  private readonly requeueAfterMs: number;
  private readonly heartbeatTtlMs: number;
  private readonly runsPerPass: number;
  private readonly startDate: Date;
  private epoch = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private firstPass = true;
  /** Passes completed; tests and the bench wait on it. */
  passes = 0;

  constructor(private readonly options: SchedulerOptions) {
    this.spec = options.spec;
    this.store = options.store;
    this.log = options.log;
    this.clock = options.clock ?? Date.now;
    this.tasks = new Map(options.spec.tasks.map((task) => [task.id, task]));
    this.tickMs = options.tickMs ?? 1000;
    this.requeueAfterMs = options.requeueAfterMs ?? 300_000;
    this.heartbeatTtlMs = options.heartbeatTtlMs ?? 15_000;
    this.runsPerPass = options.runsPerPass ?? 50;
    this.startDate = options.spec.startDate
      ? new Date(options.spec.startDate)
      : (options.defaultStartDate ?? new Date(this.clock()));
  }

  get currentEpoch() {
    return this.epoch;
  }

  /** Takes over (a new epoch fences every earlier scheduler) and runs passes until stopped or fenced. */
  async start(): Promise<void> {
    this.epoch = await this.store.takeOver(this.options.identity, {
      tasks: this.spec.tasks.map((task) => ({
        id: task.id,
        dependsOn: task.dependsOn,
        queue: task.queue,
        ...(task.pool ? { pool: task.pool } : {}),
      })),
    });
    this.log.info({ epoch: this.epoch }, "scheduling the Dag");
    this.loop = this.run();
  }

  /** Resolves when the loop ends; rejects with Fenced when another scheduler took over. */
  get done(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop?.catch(() => {});
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.pass();
      } catch (error) {
        if (error instanceof Fenced) {
          this.log.warn({ epoch: this.epoch }, "another scheduler took over: stopping");
          this.stopped = true;
          throw error;
        }
        this.log.error({ err: (error as Error).message }, "scheduler pass failed");
      }
      if (this.stopped) break;
      // Woken by a finished task or a request, else after a tick.
      await this.options.waitConnection.blpop(this.store.keys.wake, this.tickMs / 1000).catch(() => {});
    }
  }

  /** One pass; retried at once when a worker's write raced with it. */
  async pass(): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const state = await this.plan();
      const outcome = await this.store.commit(this.epoch, [...state.checks.values()], state.ops);
      if (outcome === "fenced") throw new Fenced(`epoch ${this.epoch} is no longer the Dag's`);
      if (outcome !== "ok") continue;
      for (const note of state.notes) note();
      // In parallel: order among ready tasks is not promised, and one round trip per task would
      // bound a wide fan-out by the queue's latency.
      for (let index = 0; index < state.sends.length; index += 256) {
        await Promise.all(
          state.sends
            .slice(index, index + 256)
            .map((send) => this.options.queue.send(send.queue, send.message, send.dedupeId)),
        );
      }
      this.firstPass = false;
      this.passes++;
      return;
    }
    throw new Error("20 passes in a row raced with workers' writes");
  }

  private async plan(): Promise<PassState> {
    const now = this.clock();
    const [activeIds, requests, info] = await Promise.all([
      this.store.activeRunIds(),
      this.store.pendingRequests(),
      this.store.schedulerInfo(),
    ]);
    const state: PassState = {
      now,
      records: new Map((await this.store.readRuns(activeIds)).map((record) => [record.run.id, record])),
      checks: new Map(),
      ops: [],
      sends: [],
      changed: new Map(),
      changedRuns: new Set(),
      notes: [],
      ...(info.lastScheduled ? { lastScheduled: info.lastScheduled } : {}),
    };
    // Oldest first: requests were pushed on the left.
    for (const raw of [...requests].reverse()) {
      try {
        await this.applyRequest(state, JSON.parse(raw) as Request);
      } catch (error) {
        state.notes.push(() =>
          this.log.warn({ request: raw, err: (error as Error).message }, "request refused"),
        );
      }
      state.ops.push({ op: "lrem", key: this.store.keys.requests, value: raw });
    }
    if (this.spec.schedule && !this.spec.paused) await this.scheduleRuns(state);
    this.startQueuedRuns(state);
    const alive = new Map<string, Set<string>>();
    for (const record of state.records.values()) {
      if (record.run.state !== "running") continue;
      const running = [...this.instances(state, record)]
        .filter(([, ti]) => ti.state === "running")
        .map(([id]) => id);
      alive.set(record.run.id, await this.store.alive(record.run.id, running));
    }
    for (const record of state.records.values()) {
      if (record.run.state === "running")
        this.advanceRun(state, record, alive.get(record.run.id) ?? new Set());
    }
    this.queueReadyTasks(state);
    for (const record of state.records.values()) {
      if (record.run.state === "running") this.finishRun(state, record);
    }
    this.writeChanges(state);
    return state;
  }

  // Runs

  private async scheduleRuns(state: PassState) {
    const after = state.lastScheduled ? new Date(state.lastScheduled) : undefined;
    const dates = dueLogicalDates({
      schedule: this.spec.schedule!,
      timeZone: this.spec.timeZone,
      startDate: this.startDate,
      ...(this.spec.endDate ? { endDate: new Date(this.spec.endDate) } : {}),
      ...(after ? { after } : {}),
      now: new Date(state.now),
      catchup: this.spec.catchup,
      limit: this.runsPerPass,
    });
    for (const date of dates) {
      await this.createRun(state, "scheduled", date, {});
      state.lastScheduled = date.toISOString();
    }
    const next = nextRunTime({
      schedule: this.spec.schedule!,
      timeZone: this.spec.timeZone,
      startDate: this.startDate,
      ...(this.spec.endDate ? { endDate: new Date(this.spec.endDate) } : {}),
      ...(state.lastScheduled ? { after: new Date(state.lastScheduled) } : {}),
    });
    if (state.lastScheduled) state.ops.push(this.schedulerField("lastScheduled", state.lastScheduled));
    state.ops.push(this.schedulerField("nextRun", next ? next.toISOString() : ""));
  }

  private schedulerField(field: string, value: string): Op {
    return { op: "hset", key: this.store.keys.scheduler, field, value };
  }

  /** A new run (queued) unless one of the scheduled or backfill kind has this logical date. */
  private async createRun(
    state: PassState,
    type: RunType,
    logicalDate: Date,
    params: Record<string, string>,
    id = makeRunId(type, logicalDate),
  ): Promise<Run | undefined> {
    if (type !== "manual") {
      const existing = await this.store.runIdsAt(logicalDate.getTime());
      const planned = [...state.records.values()].some(
        (record) =>
          record.run.type !== "manual" && Date.parse(record.run.logicalDate) === logicalDate.getTime(),
      );
      if (planned || existing.some((other) => !other.startsWith("manual__"))) return undefined;
    } else if ((await this.store.readRun(id)) || state.records.has(id)) {
      throw new Error(`run ${id} exists already`);
    }
    const run: Run = {
      id,
      type,
      logicalDate: logicalDate.toISOString(),
      state: "queued",
      queuedAt: new Date(state.now).toISOString(),
      params: { ...(this.spec.params ?? {}), ...params },
    };
    state.records.set(id, { run, instances: new Map() });
    state.changedRuns.add(id);
    state.ops.push({ op: "zadd", key: this.store.keys.runs, score: logicalDate.getTime(), member: id });
    state.ops.push({ op: "sadd", key: this.store.keys.active, member: id });
    state.notes.push(() => this.log.info({ runId: id }, "run created"));
    return run;
  }

  /** Queued runs start, oldest logical date first, while fewer than maxActiveRuns run. */
  private startQueuedRuns(state: PassState) {
    const records = [...state.records.values()];
    let running = records.filter((record) => record.run.state === "running").length;
    const queued = records
      .filter((record) => record.run.state === "queued")
      .sort((a, b) => Date.parse(a.run.logicalDate) - Date.parse(b.run.logicalDate));
    for (const record of queued) {
      if (running >= this.spec.maxActiveRuns) break;
      record.run.state = "running";
      record.run.startDate = new Date(state.now).toISOString();
      state.changedRuns.add(record.run.id);
      running++;
    }
  }

  private finishRun(state: PassState, record: RunRecord) {
    const outcome = runOutcome(this.spec.tasks, this.currentInstances(state, record));
    if (!outcome) return;
    this.endRun(state, record, outcome);
  }

  private endRun(state: PassState, record: RunRecord, outcome: RunState) {
    record.run.state = outcome;
    record.run.endDate = new Date(state.now).toISOString();
    state.changedRuns.add(record.run.id);
    state.ops.push({ op: "srem", key: this.store.keys.active, member: record.run.id });
    state.notes.push(() => this.log.info({ runId: record.run.id, state: outcome }, "run finished"));
  }

  // Tasks

  private instances(state: PassState, record: RunRecord): Map<string, TaskInstance> {
    return this.currentInstances(state, record);
  }

  private currentInstances(state: PassState, record: RunRecord): Map<string, TaskInstance> {
    const changed = state.changed.get(record.run.id);
    const merged = new Map<string, TaskInstance>();
    for (const task of this.spec.tasks) {
      merged.set(task.id, changed?.get(task.id) ?? record.instances.get(task.id) ?? emptyInstance());
    }
    return merged;
  }

  /** Records a new state of a task instance, checked against the version read. */
  private set(state: PassState, record: RunRecord, taskId: string, next: Omit<TaskInstance, "v">) {
    const read = record.instances.get(taskId);
    const key = this.store.keys.run(record.run.id);
    const field = taskField(taskId);
    if (!state.checks.has(`${key} ${field}`))
      state.checks.set(`${key} ${field}`, { key, field, v: read?.v ?? 0 });
    let changed = state.changed.get(record.run.id);
    if (!changed) {
      changed = new Map();
      state.changed.set(record.run.id, changed);
    }
    changed.set(taskId, { ...next, v: (read?.v ?? 0) + 1 });
  }

  /** Retries, lost and timed-out tries, then trigger rules until nothing more moves. */
  private advanceRun(state: PassState, record: RunRecord, alive: Set<string>) {
    const run = record.run;
    if (this.spec.runTimeoutSeconds && run.startDate) {
      if (Date.parse(run.startDate) + this.spec.runTimeoutSeconds * 1000 <= state.now) {
        const error = `the run exceeded runTimeoutSeconds (${this.spec.runTimeoutSeconds} s)`;
        for (const [taskId, ti] of this.currentInstances(state, record)) {
          if (isFinalTask(ti.state)) continue;
          const failed = ti.state === "running" || ti.state === "queued" || ti.state === "up_for_retry";
          this.set(state, record, taskId, {
            ...ti,
            state: failed ? "failed" : "skipped",
            endDate: new Date(state.now).toISOString(),
            ...(failed ? { error } : {}),
          });
        }
        return;
      }
    }
    for (const [taskId, ti] of this.currentInstances(state, record)) {
      const task = this.tasks.get(taskId)!;
      const policy = taskPolicy(this.spec, task);
      if (ti.state === "running") {
        const started = ti.startDate ? Date.parse(ti.startDate) : state.now;
        if (!alive.has(taskId)) {
          this.fail(
            state,
            record,
            taskId,
            ti,
            `the try's worker ${ti.worker ?? "?"} stopped heartbeating (lost)`,
          );
        } else if (
          policy.timeoutMs !== undefined &&
          started + policy.timeoutMs + this.heartbeatTtlMs <= state.now
        ) {
          // The worker kills a try at its timeout; this is for a worker that could not.
          this.fail(
            state,
            record,
            taskId,
            ti,
            `timed out after ${policy.timeoutMs / 1000} s (executionTimeoutSeconds)`,
          );
        }
      } else if (ti.state === "up_for_retry" && (ti.nextTryAt ?? 0) <= state.now) {
        this.set(state, record, taskId, { ...ti, state: "scheduled" });
      } else if (ti.state === "queued") {
        const queuedAt = ti.queuedAt ? Date.parse(ti.queuedAt) : 0;
        if (this.firstPass || queuedAt + this.requeueAfterMs <= state.now) {
          state.sends.push(this.message(record, task, ti));
          if (!this.firstPass)
            this.set(state, record, taskId, { ...ti, queuedAt: new Date(state.now).toISOString() });
        }
      }
    }
    // Trigger rules: a skip or upstream_failed may decide the next task in the same pass.
    for (let moved = true; moved; ) {
      moved = false;
      const instances = this.currentInstances(state, record);
      for (const task of this.spec.tasks) {
        const ti = instances.get(task.id)!;
        if (ti.state !== "none") continue;
        const decision = judgeTriggerRule(
          task.triggerRule,
          task.dependsOn.map((upstream) => instances.get(upstream)?.state ?? "none"),
        );
        if (decision === "wait") continue;
        const next: TaskState = decision === "run" ? "scheduled" : decision;
        this.set(state, record, task.id, {
          ...ti,
          state: next,
          ...(next !== "scheduled" ? { endDate: new Date(state.now).toISOString() } : {}),
        });
        moved = true;
      }
    }
  }

  private fail(state: PassState, record: RunRecord, taskId: string, ti: TaskInstance, error: string) {
    const policy = taskPolicy(this.spec, this.tasks.get(taskId)!);
    const retry = ti.try < policy.maxTries;
    const next: Omit<TaskInstance, "v"> = {
      ...ti,
      state: retry ? "up_for_retry" : "failed",
      error,
      endDate: new Date(state.now).toISOString(),
      ...(retry ? { nextTryAt: state.now + retryDelay(policy, ti.try) } : {}),
    };
    this.set(state, record, taskId, next);
    state.ops.push({ op: "del", key: this.store.keys.heartbeat(record.run.id, taskId) });
    state.ops.push({
      op: "lpushcap",
      key: this.store.keys.failures,
      keep: failuresKept,
      value: JSON.stringify({
        runId: record.run.id,
        taskId,
        state: next.state,
        try: ti.try,
        error,
        at: new Date(state.now).toISOString(),
      }),
    });
    state.notes.push(() =>
      this.log.warn({ runId: record.run.id, taskId, try: ti.try, state: next.state, error }, "try failed"),
    );
  }

  /**
   * Scheduled tasks become queued, oldest run first and in the Dag's order, while the Dag's
   * maxActiveTasks and each pool's slots allow; each queued try is a new try number.
   */
  private queueReadyTasks(state: PassState) {
    const records = [...state.records.values()]
      .filter((record) => record.run.state === "running")
      .sort((a, b) => Date.parse(a.run.logicalDate) - Date.parse(b.run.logicalDate));
    let busy = 0;
    const poolBusy = new Map<string, number>();
    const candidates: { record: RunRecord; task: Task; ti: TaskInstance }[] = [];
    for (const record of state.records.values()) {
      for (const [taskId, ti] of this.currentInstances(state, record)) {
        if (ti.state === "queued" || ti.state === "running") {
          busy++;
          const pool = this.tasks.get(taskId)?.pool;
          if (pool) poolBusy.set(pool, (poolBusy.get(pool) ?? 0) + 1);
        }
      }
    }
    for (const record of records) {
      for (const [taskId, ti] of this.currentInstances(state, record)) {
        if (ti.state === "scheduled") candidates.push({ record, task: this.tasks.get(taskId)!, ti });
      }
    }
    const slots = new Map(this.spec.pools.map((pool) => [pool.name, pool.slots]));
    for (const { record, task, ti } of candidates) {
      if (busy >= this.spec.maxActiveTasks) break;
      if (task.pool) {
        const used = poolBusy.get(task.pool) ?? 0;
        if (used >= (slots.get(task.pool) ?? 0)) continue;
        poolBusy.set(task.pool, used + 1);
      }
      busy++;
      const queued: Omit<TaskInstance, "v"> = {
        state: "queued",
        try: ti.try + 1,
        queuedAt: new Date(state.now).toISOString(),
      };
      this.set(state, record, task.id, queued);
      state.sends.push(this.message(record, task, { ...queued, v: 0 }));
    }
  }

  private message(record: RunRecord, task: Task, ti: TaskInstance) {
    const message: TaskMessage = {
      runId: record.run.id,
      taskId: task.id,
      try: ti.try,
      ...taskPolicy(this.spec, task),
      logicalDate: record.run.logicalDate,
      params: record.run.params,
      upstream: task.dependsOn,
      action: taskAction(task),
    };
    return { queue: task.queue, message, dedupeId: `${record.run.id} ${task.id} ${ti.try}` };
  }

  private writeChanges(state: PassState) {
    for (const [runId, changed] of state.changed) {
      const key = this.store.keys.run(runId);
      for (const [taskId, ti] of changed) {
        state.ops.push({ op: "hset", key, field: taskField(taskId), value: JSON.stringify(ti) });
      }
    }
    for (const runId of state.changedRuns) {
      const record = state.records.get(runId)!;
      state.ops.push({
        op: "hset",
        key: this.store.keys.run(runId),
        field: "run",
        value: JSON.stringify(record.run),
      });
    }
  }

  // Requests from the CLI

  private async record(state: PassState, runId: string): Promise<RunRecord> {
    let record = state.records.get(runId);
    if (!record) {
      record = await this.store.readRun(runId);
      if (!record) throw new Error(`no run ${runId}`);
      state.records.set(runId, record);
    }
    return record;
  }

  private reopen(state: PassState, record: RunRecord) {
    if (!isFinalRun(record.run.state)) return;
    record.run.state = "running";
    delete record.run.endDate;
    state.changedRuns.add(record.run.id);
    state.ops.push({ op: "sadd", key: this.store.keys.active, member: record.run.id });
  }

  private async applyRequest(state: PassState, request: Request) {
    switch (request.type) {
      case "trigger": {
        const logicalDate = request.logicalDate ? new Date(request.logicalDate) : new Date(state.now);
        await this.createRun(
          state,
          "manual",
          logicalDate,
          request.params ?? {},
          request.runId ?? makeRunId("manual", logicalDate),
        );
        return;
      }
      case "backfill": {
        if (!this.spec.schedule) throw new Error("backfill needs a schedule: the Dag has none");
        const dates = logicalDatesBetween(
          this.spec.schedule,
          this.spec.timeZone,
          new Date(request.from),
          new Date(request.to),
          1000,
        );
        for (const date of dates) await this.createRun(state, "backfill", date, {});
        return;
      }
      case "clear": {
        const record = await this.record(state, request.runId);
        const ids = new Set(
          request.taskIds.length > 0 ? request.taskIds : this.spec.tasks.map((task) => task.id),
        );
        if (request.downstream) {
          for (const id of [...ids]) for (const down of downstreamOf(this.spec.tasks, id)) ids.add(down);
        }
        const instances = this.currentInstances(state, record);
        for (const id of ids) {
          const ti = instances.get(id);
          if (!ti || !this.tasks.has(id)) throw new Error(`run ${request.runId} has no task ${id}`);
          if (request.onlyFailed && ti.state !== "failed" && ti.state !== "upstream_failed") continue;
          // The try number carries on, as Airflow's does; a running try is told to stop by its heartbeat.
          this.set(state, record, id, { state: "none", try: ti.try });
          state.ops.push({ op: "hdel", key: this.store.keys.xcom(record.run.id), field: id });
          state.ops.push({ op: "del", key: this.store.keys.heartbeat(record.run.id, id) });
        }
        this.reopen(state, record);
        return;
      }
      case "mark": {
        const record = await this.record(state, request.runId);
        const at = new Date(state.now).toISOString();
        const instances = this.currentInstances(state, record);
        if (request.taskId) {
          const ti = instances.get(request.taskId);
          if (!ti || !this.tasks.has(request.taskId))
            throw new Error(`run ${request.runId} has no task ${request.taskId}`);
          this.set(state, record, request.taskId, { ...ti, state: request.state, endDate: at });
          state.ops.push({ op: "del", key: this.store.keys.heartbeat(record.run.id, request.taskId) });
          this.reopen(state, record);
          return;
        }
        // The whole run: what has not ended takes the state (Airflow skips the not-yet-started when failing a run).
        for (const [taskId, ti] of instances) {
          if (isFinalTask(ti.state)) continue;
          const started = ti.state === "running" || ti.state === "queued";
          const next: TaskState = request.state === "success" ? "success" : started ? "failed" : "skipped";
          this.set(state, record, taskId, { ...ti, state: next, endDate: at });
          state.ops.push({ op: "del", key: this.store.keys.heartbeat(record.run.id, taskId) });
        }
        if (isFinalRun(record.run.state)) {
          record.run.state = request.state;
          state.changedRuns.add(record.run.id);
        } else {
          if (!record.run.startDate) record.run.startDate = at;
          this.endRun(state, record, request.state);
        }
        return;
      }
    }
  }
}
