/**
 * A Dag's data plane for the tests: a scheduler and workers against the test environment's Redis
 * (and RabbitMQ when the environment has it), in this process or as real `tributary` processes,
 * each Dag under a unique key prefix that is removed afterwards.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Redis } from "ioredis";
import { type DagSpec, dagSpecSchema } from "../../src/api/dag.js";
import type { Run, TaskInstance } from "../../src/dataplane/dag/model.js";
import type { PlatformTargets } from "../../src/dataplane/dag/platform.js";
import { openTaskQueue, type QueueBackend, type TaskQueue } from "../../src/dataplane/dag/queue.js";
import { type Clock, DagScheduler } from "../../src/dataplane/dag/scheduler.js";
import { connectRedis, DagStore, type Request, type RunRecord } from "../../src/dataplane/dag/store.js";
import { DagWorker } from "../../src/dataplane/dag/worker.js";
import { createLogger } from "../../src/log.js";
import { parseExports, testEnv, uniqueName } from "../support/env.js";

export const ROOT = path.resolve(import.meta.dirname, "../..");

/** The RabbitMQ of the test environment, once the environment lists it. */
export function rabbitmqUrl(): string | undefined {
  const run = process.env.TRIBUTARY_RUN ?? "/tmp/tributary-testenv";
  try {
    return parseExports(readFileSync(`${run}/env.sh`, "utf8")).TRIBUTARY_TESTENV_RABBITMQ_URL;
  } catch {
    return undefined;
  }
}

/** The backends the suites run against: Redis always, RabbitMQ when the environment has it. */
export function backends(): QueueBackend[] {
  return rabbitmqUrl() ? ["redis", "rabbitmq"] : ["redis"];
}

export function dagSpec(spec: Record<string, unknown>): DagSpec {
  return dagSpecSchema.parse(spec);
}

export const sh = (script: string) => ({ command: ["sh", "-c", script] });

const quiet = createLogger("dag-test");
quiet.level = process.env.TRIBUTARY_LOG_LEVEL ?? "warn";

export interface DagHarnessOptions {
  spec: DagSpec;
  backend: QueueBackend;
  workers?: number;
  concurrency?: number;
  clock?: Clock;
  tickMs?: number;
  heartbeatMs?: number;
  /** Start no scheduler (the test starts its own). */
  noScheduler?: boolean;
  maxResultBytes?: number;
  /** Where the workers reach the resources platform tasks name. */
  platform?: PlatformTargets;
}

export class DagHarness {
  readonly prefix = `tributary-test:${uniqueName("dag")}:`;
  readonly redis: Redis;
  readonly store: DagStore;
  readonly scratch: Promise<string>;
  scheduler: DagScheduler | undefined;
  readonly workers: DagWorker[] = [];
  private readonly queues: TaskQueue[] = [];
  private readonly connections: Redis[] = [];

  constructor(readonly options: DagHarnessOptions) {
    this.redis = connectRedis(testEnv().redisUrl);
    this.store = new DagStore(this.redis, this.prefix);
    this.scratch = mkdtemp(path.join(tmpdir(), "dag-test-"));
  }

  get heartbeatMs() {
    return this.options.heartbeatMs ?? 500;
  }

  async openQueue(): Promise<TaskQueue> {
    const url = rabbitmqUrl();
    const queue = await openTaskQueue({
      backend: this.options.backend,
      prefix: this.prefix,
      redisUrl: testEnv().redisUrl,
      ...(url ? { rabbitmqUrl: url } : {}),
      log: quiet,
    });
    this.queues.push(queue);
    return queue;
  }

  async startScheduler(identity = "scheduler", clock = this.options.clock): Promise<DagScheduler> {
    const waitConnection = connectRedis(testEnv().redisUrl);
    this.connections.push(waitConnection);
    const scheduler = new DagScheduler({
      spec: this.options.spec,
      store: new DagStore(this.redis, this.prefix),
      waitConnection,
      queue: await this.openQueue(),
      identity,
      log: quiet,
      tickMs: this.options.tickMs ?? 200,
      heartbeatTtlMs: this.heartbeatMs * 3,
      ...(clock ? { clock } : {}),
    });
    await scheduler.start();
    scheduler.done.catch(() => {});
    this.scheduler = scheduler;
    return scheduler;
  }

  async startWorker(identity = `worker-${this.workers.length}`): Promise<DagWorker> {
    const worker = new DagWorker({
      store: this.store,
      queue: await this.openQueue(),
      queues: [...new Set(this.options.spec.tasks.map((task) => task.queue))],
      concurrency: this.options.concurrency ?? 4,
      identity,
      log: quiet,
      heartbeatMs: this.heartbeatMs,
      heartbeatTtlMs: this.heartbeatMs * 3,
      maxResultBytes: this.options.maxResultBytes ?? 65536,
      logLinesPerTry: 1000,
      killGraceMs: 1000,
      scratchDir: await this.scratch,
      ...this.options.platform,
    });
    await worker.start();
    this.workers.push(worker);
    return worker;
  }

  async start(): Promise<this> {
    if (!this.options.noScheduler) await this.startScheduler();
    for (let index = 0; index < (this.options.workers ?? 1); index++) await this.startWorker();
    return this;
  }

  async request(request: Request) {
    await this.store.request(request);
  }

  /** Triggers a manual run and returns its id. */
  async trigger(
    params: Record<string, string> = {},
    runId = `manual__${uniqueName("run")}`,
  ): Promise<string> {
    await this.request({ type: "trigger", runId, params });
    return runId;
  }

  async run(runId: string): Promise<RunRecord | undefined> {
    return this.store.readRun(runId);
  }

  /** Waits (generously) until the run has ended; returns it. */
  async waitForRun(runId: string, timeoutMs = 90_000): Promise<RunRecord> {
    return waitFor(`run ${runId} to end`, timeoutMs, async () => {
      const record = await this.run(runId);
      return record && (record.run.state === "success" || record.run.state === "failed") ? record : undefined;
    });
  }

  async runs(): Promise<Run[]> {
    return (await this.store.readRuns(await this.store.runIds(1000))).map((record) => record.run);
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.workers.map((worker) => worker.stop()));
    await this.scheduler?.stop();
    for (const queue of this.queues) {
      await queue.destroy([...new Set(this.options.spec.tasks.map((task) => task.queue))]).catch(() => {});
      await queue.close().catch(() => {});
    }
    await this.store.deleteAll();
    for (const connection of this.connections) connection.disconnect();
    this.redis.disconnect();
    await rm(await this.scratch, { recursive: true, force: true });
  }
}

export const states = (record: RunRecord) =>
  Object.fromEntries([...record.instances].map(([id, ti]) => [id, ti.state]));

export const instance = (record: RunRecord, taskId: string): TaskInstance => {
  const ti = record.instances.get(taskId);
  if (!ti) throw new Error(`run ${record.run.id} has no instance of ${taskId}`);
  return ti;
};

export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ""}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A real `tributary <role>` process (node with tsx), killable with SIGKILL. */
export interface RoleProcess {
  child: ChildProcess;
  exited: Promise<number | null>;
  output: () => string;
}

export function startRole(role: string, env: Record<string, string>): RoleProcess {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", role], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TRIBUTARY_LOG_LEVEL: "info", ...env },
  });
  let output = "";
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    if (output.length > 2_000_000) output = output.slice(-1_000_000);
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, exited, output: () => output };
}

/** Environment of `tributary dag-scheduler` / `worker` processes for a harness's Dag. */
export async function roleEnv(harness: DagHarness, role: "scheduler" | "worker", identity: string) {
  const prefix = role === "scheduler" ? "TRIBUTARY_DAG_SCHEDULER_" : "TRIBUTARY_WORKER_";
  const env: Record<string, string> = {
    [`${prefix}REDIS_URL`]: testEnv().redisUrl,
    [`${prefix}KEY_PREFIX`]: harness.prefix,
    [`${prefix}QUEUE_BACKEND`]: harness.options.backend,
    [`${prefix}IDENTITY`]: identity,
    [`${prefix}PORT`]: "0",
    [`${prefix}HEARTBEAT_SECONDS`]: "1",
  };
  const url = rabbitmqUrl();
  if (url) env[`${prefix}RABBITMQ_URL`] = url;
  if (role === "scheduler") {
    const specFile = path.join(await harness.scratch, "spec.json");
    await writeFile(specFile, JSON.stringify(harness.options.spec));
    env[`${prefix}SPEC_FILE`] = specFile;
    env[`${prefix}TICK_MS`] = "200";
    // A restarted scheduler re-sends queued messages at once; only a lost message waits this.
    env[`${prefix}REQUEUE_AFTER_SECONDS`] = "30";
  } else {
    env[`${prefix}QUEUES`] = [...new Set(harness.options.spec.tasks.map((task) => task.queue))].join(",");
    env[`${prefix}CONCURRENCY`] = "4";
  }
  return env;
}

/** Resident memory of a process, bytes (VmRSS). */
export function residentBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}
