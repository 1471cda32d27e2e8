/**
 * `tributary dag-scheduler`: one per Dag. With a Lease configured, the replica holding it is
 * the active one and takes a new fencing epoch each time it becomes active; without, the
 * process takes over at start (its epoch fences any predecessor still running). It serves
 * /healthz, /readyz (ready while active), /metrics, and a read API in Airflow's REST shapes:
 *
 *   GET  /api/v1/dags/<dag>/dagRuns                                   runs, newest first
 *   POST /api/v1/dags/<dag>/dagRuns  {dag_run_id?, logical_date?, conf?}  trigger
 *   GET  /api/v1/dags/<dag>/dagRuns/<run>/taskInstances
 *   GET  /api/v1/dags/<dag>/dagRuns/<run>/taskInstances/<task>/logs/<try>
 *   GET  /api/v1/dags/<dag>/summary                                   what the Dag's status shows
 */
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { type DagSpec, dagSpecSchema } from "../../api/dag.js";
import { createLogger, type Logger } from "../../log.js";
import { KubeClient } from "../../operator/kube.js";
import { LeaderElector } from "../../operator/lease.js";
import { parseSchedulerConfig, queueOptionsOf, type SchedulerConfig, schedulerUsage } from "./config.js";
import { readLog } from "./logs.js";
import { openTaskQueue } from "./queue.js";
import { DagScheduler, Fenced } from "./scheduler.js";
import { connectRedis, DagStore, type Request } from "./store.js";
import { airflowRun, airflowTaskInstances, dagSummary } from "./views.js";

export async function main(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(schedulerUsage());
    return;
  }
  const config = parseSchedulerConfig(argv);
  const log = createLogger("dag-scheduler", { dag: config.dag, identity: config.identity });
  const spec = dagSpecSchema.parse(JSON.parse(await readFile(config.specFile, "utf8")));
  const service = await startSchedulerService(config, spec, log);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
    service.ended.then(resolve, resolve);
  });
  await service.stop();
  if (service.fenced) process.exitCode = 3;
}

export interface SchedulerService {
  port: number;
  scheduler: () => DagScheduler | undefined;
  ended: Promise<void>;
  fenced: boolean;
  stop(): Promise<void>;
}

export async function startSchedulerService(
  config: SchedulerConfig,
  spec: DagSpec,
  log: Logger,
): Promise<SchedulerService> {
  const redis = connectRedis(config.redisUrl, config.redisPassword);
  const waitConnection = connectRedis(config.redisUrl, config.redisPassword);
  redis.on("error", (error) => log.warn({ err: error.message }, "redis"));
  waitConnection.on("error", () => {});
  const store = new DagStore(redis, config.keyPrefix);
  const queue = await openTaskQueue(queueOptionsOf(config, log));
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: "tributary_dag_scheduler_passes",
    help: "Scheduling passes of the active scheduler since it took over",
    registers: [registry],
    collect() {
      this.set(scheduler?.passes ?? 0);
    },
  });
  new Gauge({
    name: "tributary_dag_scheduler_active",
    help: "1 while this scheduler is the Dag's active one",
    registers: [registry],
    collect() {
      this.set(scheduler ? 1 : 0);
    },
  });

  let scheduler: DagScheduler | undefined;
  let fenced = false;
  let endResolve: () => void = () => {};
  const ended = new Promise<void>((resolve) => {
    endResolve = resolve;
  });
  const becomeActive = async () => {
    const created = new DagScheduler({
      spec,
      store,
      waitConnection,
      queue,
      identity: config.identity,
      log,
      tickMs: config.tickMs,
      requeueAfterMs: config.requeueAfterSeconds * 1000,
      heartbeatTtlMs: config.heartbeatSeconds * 3000,
      ...(config.createdAt ? { defaultStartDate: new Date(config.createdAt) } : {}),
    });
    await created.start();
    scheduler = created;
    created.done.then(
      () => {},
      (error: unknown) => {
        if (error instanceof Fenced) {
          fenced = true;
          scheduler = undefined;
          endResolve();
        }
      },
    );
  };
  let elector: LeaderElector | undefined;
  if (config.leaseName && config.leaseNamespace) {
    elector = new LeaderElector(KubeClient.fromFile(), {
      namespace: config.leaseNamespace,
      name: config.leaseName,
      identity: config.identity,
      log,
      onStartedLeading: () => {
        void becomeActive().catch((error: Error) => {
          log.error({ err: error.message }, "could not take over the Dag");
          endResolve();
        });
      },
      onStoppedLeading: () => {
        void scheduler?.stop();
        scheduler = undefined;
        endResolve();
      },
    });
    elector.start();
  } else {
    await becomeActive();
  }

  const server = createServer((request, response) => {
    void serve(request, response).catch((error: Error) => {
      if (!response.headersSent)
        json(response, 500, { title: "Internal error", detail: error.message, status: 500 });
    });
  });
  const serve = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://scheduler");
    const path = url.pathname;
    if (path === "/healthz") return text(response, 200, "ok\n");
    if (path === "/readyz")
      return text(response, scheduler ? 200 : 503, scheduler ? "ok\n" : "not the active scheduler\n");
    if (path === "/metrics") {
      response.writeHead(200, { "content-type": registry.contentType });
      response.end(await registry.metrics());
      return;
    }
    const match = /^\/api\/v1\/dags\/([^/]+)(\/.*)?$/.exec(path);
    if (!match || decodeURIComponent(match[1]!) !== config.dag) {
      return json(response, 404, { title: "Not found", detail: `no such path ${path}`, status: 404 });
    }
    const rest = match[2] ?? "";
    if (rest === "/summary") return json(response, 200, await dagSummary(store));
    if (rest === "/dagRuns" && request.method === "POST") {
      const body = JSON.parse((await readBody(request)) || "{}") as {
        dag_run_id?: string;
        logical_date?: string;
        conf?: Record<string, unknown>;
      };
      const trigger: Request = {
        type: "trigger",
        ...(body.dag_run_id ? { runId: body.dag_run_id } : {}),
        ...(body.logical_date ? { logicalDate: body.logical_date } : {}),
        params: Object.fromEntries(
          Object.entries(body.conf ?? {}).map(([key, value]) => [key, String(value)]),
        ),
      };
      await store.request(trigger);
      return json(response, 200, { queued: true, ...trigger });
    }
    if (rest === "/dagRuns") {
      const limit = Math.min(Number(url.searchParams.get("limit") ?? 100), 1000);
      const offset = Number(url.searchParams.get("offset") ?? 0);
      const records = await store.readRuns(await store.runIds(limit, offset));
      return json(response, 200, {
        dag_runs: records.map((record) => airflowRun(config.dag, record.run)),
        total_entries: await store.runCount(),
      });
    }
    const runMatch = /^\/dagRuns\/([^/]+)\/taskInstances(?:\/([^/]+)\/logs\/(\d+))?$/.exec(rest);
    if (runMatch) {
      const runId = decodeURIComponent(runMatch[1]!);
      if (runMatch[2]) {
        const lines = await readLog(
          redis,
          store.keys.log(runId, decodeURIComponent(runMatch[2]), Number(runMatch[3])),
        );
        return text(response, 200, lines.map((entry) => entry.line).join("\n") + (lines.length ? "\n" : ""));
      }
      const record = await store.readRun(runId);
      if (!record) return json(response, 404, { title: "DAGRun not found", detail: runId, status: 404 });
      const instances = airflowTaskInstances(config.dag, spec, record);
      return json(response, 200, { task_instances: instances, total_entries: instances.length });
    }
    return json(response, 404, { title: "Not found", detail: `no such path ${path}`, status: 404 });
  };
  await new Promise<void>((resolve) => server.listen(config.port, "0.0.0.0", resolve));
  const port = (server.address() as AddressInfo).port;
  log.info({ port }, "serving health, metrics and the REST API");

  return {
    port,
    scheduler: () => scheduler,
    ended,
    get fenced() {
      return fenced;
    },
    async stop() {
      await scheduler?.stop();
      await elector?.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await queue.close();
      redis.disconnect();
      waitConnection.disconnect();
    },
  };
}

function text(response: ServerResponse, status: number, body: string) {
  response.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  response.end(body);
}

function json(response: ServerResponse, status: number, body: unknown) {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > 1024 * 1024) throw new Error("request body over 1 MiB");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}
