/**
 * `tributary worker`: takes a Dag's tasks from its queues and runs them (a process in this pod,
 * or a Kubernetes Job for `runAs: job`). Serves /healthz, /readyz and /metrics.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { createLogger, type Logger } from "../../log.js";
import { KubeClient } from "../../operator/kube.js";
import { parseWorkerConfig, queueOptionsOf, type WorkerConfig, workerUsage } from "./config.js";
import { openTaskQueue } from "./queue.js";
import { connectRedis, DagStore } from "./store.js";
import { DagWorker } from "./worker.js";

export async function main(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(workerUsage());
    return;
  }
  const config = parseWorkerConfig(argv);
  const log = createLogger("worker", { dag: config.dag, identity: config.identity });
  const service = await startWorkerService(config, log);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  await service.stop();
}

export async function startWorkerService(config: WorkerConfig, log: Logger) {
  const redis = connectRedis(config.redisUrl, config.redisPassword);
  redis.on("error", (error) => log.warn({ err: error.message }, "redis"));
  const store = new DagStore(redis, config.keyPrefix);
  const queue = await openTaskQueue(queueOptionsOf(config, log));
  const namespace = config.namespace ?? "default";
  const worker = new DagWorker({
    store,
    queue,
    queues: config.queues,
    concurrency: config.concurrency,
    identity: config.identity,
    log,
    heartbeatMs: config.heartbeatSeconds * 1000,
    heartbeatTtlMs: config.heartbeatSeconds * 3000,
    maxResultBytes: config.maxResultBytes,
    logLinesPerTry: config.logLinesPerTry,
    blockPoolAddress: (pool) =>
      config.blockPools[pool] ??
      config.blockPoolAddress.replaceAll("{pool}", pool).replaceAll("{namespace}", namespace),
    cdcStreamAddress: (stream) =>
      config.cdcStreamAddress.replaceAll("{stream}", stream).replaceAll("{namespace}", namespace),
    resourceManagers: config.resourceManagers,
    dag: config.dag,
    ...(config.jobs
      ? {
          jobs: {
            client: KubeClient.fromFile(config.kubeconfig),
            namespace,
            dag: config.dag,
            defaultImage: config.jobImage,
          },
        }
      : {}),
  });
  await worker.start();
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: "tributary_dag_worker_running_tasks",
    help: "Tries running in this worker",
    registers: [registry],
    collect() {
      this.set(worker.active);
    },
  });
  const finished = new Gauge({
    name: "tributary_dag_worker_finished_tries",
    help: "Tries this worker finished, by outcome (refused: the try had moved on)",
    labelNames: ["outcome"],
    registers: [registry],
    collect() {
      for (const [outcome, count] of Object.entries(worker.finished)) finished.set({ outcome }, count);
    },
  });
  let ready = true;
  const server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      void registry.metrics().then((body) => {
        response.writeHead(200, { "content-type": registry.contentType });
        response.end(body);
      });
      return;
    }
    const ok =
      path === "/healthz" ? true : path === "/readyz" ? ready && redis.status === "ready" : undefined;
    response.writeHead(ok === undefined ? 404 : ok ? 200 : 503, { "content-type": "text/plain" });
    response.end(ok === undefined ? "not found\n" : ok ? "ok\n" : "not ready\n");
  });
  await new Promise<void>((resolve) => server.listen(config.port, "0.0.0.0", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    worker,
    async stop() {
      ready = false;
      await worker.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      redis.disconnect();
    },
  };
}
