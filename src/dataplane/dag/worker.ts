/**
 * A Dag worker: takes task messages from the queue, claims the try in Redis (refused when the
 * try was already claimed, retried, cleared or marked), runs it with a heartbeat, ships its log
 * to Redis, and records the outcome from the same try. The heartbeat also tells the worker when
 * the scheduler or a user ended the try meanwhile: it then kills the task.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Logger } from "../../log.js";
import { type JobRunner, runAsJob } from "./job.js";
import { LogShipper } from "./logs.js";
import { retryDelay, substitute, type TaskMessage } from "./model.js";
import { type PlatformTargets, runPlatform } from "./platform.js";
import type { TaskQueue } from "./queue.js";
import type { DagStore } from "./store.js";

export interface WorkerOptions extends PlatformTargets {
  store: DagStore;
  queue: TaskQueue;
  queues: readonly string[];
  concurrency: number;
  identity: string;
  log: Logger;
  heartbeatMs: number;
  /** Heartbeats missed before the try counts as lost: the heartbeat key lives this long. */
  heartbeatTtlMs: number;
  maxResultBytes: number;
  logLinesPerTry: number;
  logRetentionSeconds?: number;
  /** Where scratch directories of tries go; default the OS temp dir. */
  scratchDir?: string;
  /** Grace between SIGTERM and SIGKILL of a try killed for its timeout; default 5 s. */
  killGraceMs?: number;
  /** Runs `runAs: job` tasks; absent outside a cluster (such tasks then fail saying so). */
  jobs?: JobRunner;
}

export interface TryOutcome {
  outcome: "success" | "failed";
  error?: string;
  result?: string;
}

/** What a running try reports to its runner: the log, and a signal when it must stop. */
export interface TryContext {
  message: TaskMessage;
  log: LogShipper;
  signal: AbortSignal;
  scratch: string;
  env: Record<string, string>;
  options: WorkerOptions;
}

export class DagWorker {
  private readonly running = new Map<string, AbortController>();
  private closed = false;
  /** Tries this worker finished, by outcome; the bench and metrics read it. */
  readonly finished = { success: 0, failed: 0, refused: 0 };

  constructor(private readonly options: WorkerOptions) {}

  async start(): Promise<void> {
    await this.options.queue.consume(this.options.queues, this.options.concurrency, (message, ack) =>
      this.handle(message as TaskMessage, ack),
    );
    this.options.log.info(
      { queues: this.options.queues, concurrency: this.options.concurrency },
      "taking tasks",
    );
  }

  get active(): number {
    return this.running.size;
  }

  /** Stops taking tasks, kills those running (their tries will be retried) and closes. */
  async stop(): Promise<void> {
    this.closed = true;
    for (const controller of this.running.values())
      controller.abort(new Error("the worker is shutting down"));
    await this.options.queue.close();
  }

  private async handle(message: TaskMessage, ack: () => void): Promise<void> {
    const { store, identity, log } = this.options;
    if (this.closed) return;
    const claimed = await store.start(
      message.runId,
      message.taskId,
      message.try,
      identity,
      this.options.heartbeatTtlMs,
    );
    ack();
    if (claimed !== "ok") {
      // Delivered twice, or for a try that has moved on: nothing to do.
      this.finished.refused++;
      log.debug(
        { runId: message.runId, taskId: message.taskId, try: message.try, now: claimed },
        "try not claimed",
      );
      return;
    }
    const key = `${message.runId} ${message.taskId}`;
    const controller = new AbortController();
    this.running.set(key, controller);
    const shipper = new LogShipper(store.client, store.keys.log(message.runId, message.taskId, message.try), {
      maxLines: this.options.logLinesPerTry,
      retentionSeconds: this.options.logRetentionSeconds ?? 30 * 86400,
    });
    const heartbeat = setInterval(() => {
      store
        .heartbeat(message.runId, message.taskId, message.try, this.options.heartbeatTtlMs)
        .then((answer) => {
          if (answer === "stop")
            controller.abort(
              new Error("the try was ended by the scheduler (cleared, marked or the run timed out)"),
            );
        })
        .catch((error: Error) => log.warn({ err: error.message }, "heartbeat failed"));
    }, this.options.heartbeatMs);
    let outcome: TryOutcome;
    const scratch = await mkdtemp(path.join(this.options.scratchDir ?? tmpdir(), "tributary-task-"));
    try {
      shipper.note(`try ${message.try} of ${message.maxTries} on ${identity}`);
      outcome = await this.runTry(message, shipper, controller.signal, scratch);
    } catch (error) {
      outcome = { outcome: "failed", error: (error as Error).message };
    } finally {
      clearInterval(heartbeat);
      this.running.delete(key);
      await rm(scratch, { recursive: true, force: true }).catch(() => {});
    }
    if (controller.signal.aborted && outcome.outcome === "success") {
      outcome = { outcome: "failed", error: String((controller.signal.reason as Error)?.message) };
    }
    shipper.note(outcome.outcome === "success" ? "succeeded" : `failed: ${outcome.error}`);
    await shipper.close().catch((error: Error) => log.warn({ err: error.message }, "log lines lost"));
    if (this.closed && controller.signal.aborted) return; // left for the scheduler to find lost
    const retry = outcome.outcome === "failed" && message.try < message.maxTries;
    const answer = await store.finish({
      runId: message.runId,
      taskId: message.taskId,
      tryNumber: message.try,
      outcome: outcome.outcome,
      ...(outcome.error !== undefined ? { error: outcome.error } : {}),
      ...(retry ? { retryAtMs: Date.now() + retryDelay(message, message.try) } : {}),
      ...(outcome.result !== undefined ? { result: outcome.result } : {}),
    });
    if (answer === "ok") this.finished[outcome.outcome]++;
    else this.finished.refused++;
    log.info(
      {
        runId: message.runId,
        taskId: message.taskId,
        try: message.try,
        outcome: outcome.outcome,
        recorded: answer,
      },
      "try finished",
    );
  }

  private async runTry(
    message: TaskMessage,
    log: LogShipper,
    signal: AbortSignal,
    scratch: string,
  ): Promise<TryOutcome> {
    const upstream = await this.options.store.results(message.runId, message.upstream);
    const upstreamFile = path.join(scratch, "upstream-results.json");
    await writeFile(upstreamFile, JSON.stringify(upstream));
    const resultFile = path.join(scratch, "result");
    const env: Record<string, string> = {
      TRIBUTARY_RUN_ID: message.runId,
      TRIBUTARY_TASK_ID: message.taskId,
      TRIBUTARY_TRY: String(message.try),
      TRIBUTARY_LOGICAL_DATE: message.logicalDate,
      TRIBUTARY_DS: message.logicalDate.slice(0, 10),
      TRIBUTARY_PARAMS: JSON.stringify(message.params),
      TRIBUTARY_UPSTREAM_RESULTS_FILE: upstreamFile,
      TRIBUTARY_RESULT_FILE: resultFile,
    };
    const context: TryContext = { message, log, signal, scratch, env, options: this.options };
    const timeout = message.timeoutMs;
    const timer = new AbortController();
    const handle =
      timeout !== undefined
        ? setTimeout(
            () => timer.abort(new Error(`timed out after ${timeout / 1000} s (executionTimeoutSeconds)`)),
            timeout,
          )
        : undefined;
    const combined = AbortSignal.any([signal, timer.signal]);
    try {
      const action = message.action;
      let outcome: TryOutcome;
      if (action.kind === "command" && action.runAs === "worker")
        outcome = await runProcess(context, combined);
      else if (action.kind === "command") {
        if (!this.options.jobs)
          return {
            outcome: "failed",
            error: "runAs: job needs the worker to run in a cluster (no Kubernetes API reachable)",
          };
        outcome = await runAsJob(this.options.jobs, context, combined);
      } else if (action.kind === "http") outcome = await runHttp(context, combined);
      else outcome = await runPlatform(context, combined);
      if (combined.aborted)
        return { outcome: "failed", error: String((combined.reason as Error)?.message ?? combined.reason) };
      if (outcome.outcome === "success" && outcome.result === undefined) {
        const result = await readResult(resultFile, this.options.maxResultBytes);
        if (typeof result === "object") return result;
        if (result !== undefined) outcome.result = result;
      }
      if (outcome.result !== undefined && Buffer.byteLength(outcome.result) > this.options.maxResultBytes) {
        return {
          outcome: "failed",
          error: `the result is ${Buffer.byteLength(outcome.result)} bytes, over the limit of ${this.options.maxResultBytes} (spec.workers.maxResultBytes)`,
        };
      }
      return outcome;
    } finally {
      if (handle) clearTimeout(handle);
    }
  }
}

async function readResult(file: string, limit: number): Promise<string | TryOutcome | undefined> {
  const info = await stat(file).catch(() => undefined);
  if (!info) return undefined;
  if (info.size > limit) {
    return {
      outcome: "failed",
      error: `the result file is ${info.size} bytes, over the limit of ${limit} (spec.workers.maxResultBytes)`,
    };
  }
  return readFile(file, "utf8");
}

/** Variables a task process inherits from the worker; never the worker's own secrets. */
const inheritedEnv = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "NODE_OPTIONS"];

/** The value of a task's secretKeyRef: the controller mounts it into the worker under this name. */
export const secretEnvName = (secret: string, key: string) =>
  `TRIBUTARY_SECRET_${Buffer.from(`${secret}/${key}`).toString("hex").toUpperCase()}`;

/** A command as a process of the worker, in its own process group (so a timeout kills its children too). */
async function runProcess(context: TryContext, signal: AbortSignal): Promise<TryOutcome> {
  const action = context.message.action;
  if (action.kind !== "command" || !action.command) {
    return { outcome: "failed", error: "a task run in the worker needs a command" };
  }
  const env: Record<string, string> = {};
  for (const name of inheritedEnv) if (process.env[name] !== undefined) env[name] = process.env[name]!;
  for (const variable of action.env) {
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (variable.secretKeyRef) {
      const value = process.env[secretEnvName(variable.secretKeyRef.name, variable.secretKeyRef.key)];
      if (value === undefined) {
        return {
          outcome: "failed",
          error: `env ${variable.name}: Secret ${variable.secretKeyRef.name} key ${variable.secretKeyRef.key} is not mounted into this worker`,
        };
      }
      env[variable.name] = value;
    }
  }
  Object.assign(env, context.env);
  const [program, ...rest] = action.command;
  const child = spawn(program!, [...rest, ...(action.args ?? [])], {
    cwd: context.scratch,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  context.log.follow(child.stdout, "stdout");
  context.log.follow(child.stderr, "stderr");
  const killGrace = context.options.killGraceMs ?? 5000;
  let killTimer: NodeJS.Timeout | undefined;
  const kill = () => {
    if (child.pid === undefined || child.exitCode !== null) return;
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
    killTimer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {}
    }, killGrace);
  };
  signal.addEventListener("abort", kill, { once: true });
  try {
    const { code, signalName, spawnError } = await new Promise<{
      code: number | null;
      signalName: NodeJS.Signals | null;
      spawnError?: Error;
    }>((resolve) => {
      child.once("error", (error) => resolve({ code: null, signalName: null, spawnError: error }));
      child.once("close", (exitCode, exitSignal) => resolve({ code: exitCode, signalName: exitSignal }));
    });
    if (spawnError) return { outcome: "failed", error: `could not start ${program}: ${spawnError.message}` };
    if (signal.aborted)
      return { outcome: "failed", error: String((signal.reason as Error)?.message ?? "killed") };
    if (code === 0) return { outcome: "success" };
    return {
      outcome: "failed",
      error: signalName ? `${program} was killed by ${signalName}` : `${program} exited with code ${code}`,
    };
  } finally {
    signal.removeEventListener("abort", kill);
    if (killTimer) clearTimeout(killTimer);
  }
}

/** An HTTP call; the body of the answer (up to the result limit) is the result. */
async function runHttp(context: TryContext, signal: AbortSignal): Promise<TryOutcome> {
  const action = context.message.action;
  if (action.kind !== "http") throw new Error("not an http task");
  const { http } = action;
  const url = substitute(http.url, context.message);
  context.log.note(`${http.method} ${url}`);
  let response: Response;
  try {
    response = await fetch(url, {
      method: http.method,
      headers: http.headers ?? {},
      ...(http.body !== undefined ? { body: substitute(http.body, context.message) } : {}),
      signal,
    });
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    return { outcome: "failed", error: `${http.method} ${url}: ${(error as Error).message}` };
  }
  const limit = context.options.maxResultBytes;
  const body = await readBounded(response, limit + 1);
  context.log.note(`${response.status} ${response.statusText} (${body.length} bytes)`);
  const expected = http.expectedStatus;
  const ok = expected ? expected.includes(response.status) : response.status >= 200 && response.status < 300;
  if (!ok) {
    return {
      outcome: "failed",
      error: `${http.method} ${url} answered ${response.status}, expected ${expected ? expected.join(" or ") : "2xx"}: ${body.toString("utf8").slice(0, 512)}`,
    };
  }
  return { outcome: "success", result: body.toString("utf8") };
}

async function readBounded(response: Response, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  if (!response.body) return Buffer.alloc(0);
  for await (const chunk of response.body) {
    const buffer = Buffer.from(chunk as Uint8Array);
    chunks.push(buffer);
    size += buffer.length;
    if (size >= limit) break;
  }
  return Buffer.concat(chunks).subarray(0, limit);
}
