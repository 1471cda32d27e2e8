/**
 * A Dag's orchestration cost on each queue backend, against the test environment's Redis and
 * RabbitMQ, with 4 workers (in this process, beside the scheduler):
 *
 * - throughput: 1,000 no-op tasks (10 runs of 100 independent tasks) from ready to done, tasks/s;
 * - latency: a chain of 100 tasks, the delay from an upstream's end to its downstream's start
 *   (p50, p99, and the sum over the chain per 1,000 tasks, to set beside Airflow 2's published
 *   ~11.6 s of scheduling lag per 1,000 tasks);
 * - reference: raw push/pop of the same number of messages on the same queue backend in the
 *   same run (sent one after another as the scheduler sends, consumed by 4 consumers).
 *
 * A no-op task is an HTTP call to a local server answering 204, so the figure is the
 * orchestration's (claim, heartbeat, log, completion, scheduling pass), not a process start.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { dagSpecSchema } from "../src/api/dag.js";
import { openTaskQueue, type QueueBackend } from "../src/dataplane/dag/queue.js";
import { DagScheduler } from "../src/dataplane/dag/scheduler.js";
import { connectRedis, DagStore } from "../src/dataplane/dag/store.js";
import { DagWorker } from "../src/dataplane/dag/worker.js";
import { createLogger } from "../src/log.js";
import { rabbitmqUrl } from "../test/integration/dag-cluster.js";
import { testEnv, uniqueName } from "../test/support/env.js";

const log = createLogger("dag-bench");
log.level = "warn";
const workersCount = 4;
const concurrency = Number(process.env.TRIBUTARY_BENCH_DAG_CONCURRENCY ?? 8);

const percentile = (sorted: number[], fraction: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;

async function rawPushPop(backend: QueueBackend, count: number): Promise<number> {
  const prefix = `tributary-bench:${uniqueName("raw")}:`;
  const options = { backend, prefix, redisUrl: testEnv().redisUrl, rabbitmqUrl: rabbitmqUrl(), log };
  const producer = await openTaskQueue(options);
  const consumers = await Promise.all(Array.from({ length: workersCount }, () => openTaskQueue(options)));
  let received = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  for (const consumer of consumers) {
    await consumer.consume(["raw"], concurrency, async (_message, ack) => {
      ack();
      if (++received === count) done();
    });
  }
  const start = performance.now();
  for (let index = 0; index < count; index++) await producer.send("raw", { index }, `raw ${index}`);
  await finished;
  const elapsed = performance.now() - start;
  await producer.destroy(["raw"]).catch(() => {});
  await Promise.all([producer, ...consumers].map((queue) => queue.close()));
  return (count / elapsed) * 1000;
}

async function orchestrated(backend: QueueBackend, url: string) {
  const prefix = `tributary-bench:${uniqueName("dag")}:`;
  const redis = connectRedis(testEnv().redisUrl);
  const store = new DagStore(redis, prefix);
  const queueOptions = { backend, prefix, redisUrl: testEnv().redisUrl, rabbitmqUrl: rabbitmqUrl(), log };
  const noop = { http: { url, method: "GET" } };
  const spec = dagSpecSchema.parse({
    maxActiveRuns: 20,
    maxActiveTasks: 10000,
    params: {},
    tasks: Array.from({ length: 100 }, (_, index) => ({ id: `t${index}`, ...noop })),
  });
  const chain = dagSpecSchema.parse({
    tasks: Array.from({ length: 100 }, (_, index) => ({
      id: `t${index}`,
      ...(index > 0 ? { dependsOn: [`t${index - 1}`] } : {}),
      ...noop,
    })),
  });
  const run = async (dagSpec: typeof spec, runs: number) => {
    const waitConnection = connectRedis(testEnv().redisUrl);
    // The scheduler publishes on a queue it does not own: closed here after it stops.
    const schedulerQueue = await openTaskQueue(queueOptions);
    const scheduler = new DagScheduler({
      spec: dagSpec,
      store,
      waitConnection,
      queue: schedulerQueue,
      identity: "bench-scheduler",
      log,
      tickMs: 1000,
    });
    const workers = await Promise.all(
      Array.from({ length: workersCount }, async (_, index) => {
        const worker = new DagWorker({
          store,
          queue: await openTaskQueue(queueOptions),
          queues: ["default"],
          concurrency,
          identity: `bench-worker-${index}`,
          log,
          heartbeatMs: 5000,
          heartbeatTtlMs: 15000,
          maxResultBytes: 65536,
          logLinesPerTry: 1000,
        });
        await worker.start();
        return worker;
      }),
    );
    await scheduler.start();
    scheduler.done.catch(() => {});
    const start = performance.now();
    const ids = Array.from({ length: runs }, (_, index) => `manual__bench-${index}`);
    for (const runId of ids) await store.request({ type: "trigger", runId, params: {} });
    for (;;) {
      const records = await store.readRuns(ids);
      if (
        records.length === runs &&
        records.every((record) => record.run.state === "success" || record.run.state === "failed")
      ) {
        const elapsed = performance.now() - start;
        await Promise.all(workers.map((worker) => worker.stop()));
        await scheduler.stop();
        await schedulerQueue.close();
        waitConnection.disconnect();
        return { elapsed, records };
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const wide = await run(spec, 10);
  const tasks = wide.records.reduce((sum, record) => sum + record.instances.size, 0);
  const failed = wide.records.filter((record) => record.run.state !== "success").length;
  await store.deleteAll();
  const long = await run(chain, 1);
  const record = long.records[0]!;
  const delays: number[] = [];
  for (let index = 1; index < 100; index++) {
    const up = record.instances.get(`t${index - 1}`)!;
    const down = record.instances.get(`t${index}`)!;
    delays.push(Date.parse(down.startDate!) - Date.parse(up.endDate!));
  }
  delays.sort((a, b) => a - b);
  await store.deleteAll();
  const drain = await openTaskQueue(queueOptions);
  await drain.destroy(["default"]).catch(() => {});
  await drain.close();
  redis.disconnect();
  return {
    tasksPerSecond: (tasks / wide.elapsed) * 1000,
    failedRuns: failed,
    p50: percentile(delays, 0.5),
    p99: percentile(delays, 0.99),
    lagPer1000: (delays.reduce((sum, delay) => sum + delay, 0) / delays.length) * 1000,
  };
}

export async function run(): Promise<void> {
  const server = createServer((_request, response) => {
    response.writeHead(204);
    response.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const backends: QueueBackend[] = rabbitmqUrl() ? ["redis", "rabbitmq"] : ["redis"];
  console.log(
    `| backend | no-op tasks/s, ready → done (4 workers × ${concurrency}) | raw push/pop msgs/s, same queue | ratio | upstream end → downstream start p50 / p99 | lag per 1,000 chained tasks |`,
  );
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const backend of backends) {
    const raw = await rawPushPop(backend, 1000);
    const dag = await orchestrated(backend, url);
    console.log(
      `| ${backend} | ${dag.tasksPerSecond.toFixed(0)}${dag.failedRuns ? ` (${dag.failedRuns} runs failed)` : ""} | ${raw.toFixed(0)} | ${(dag.tasksPerSecond / raw).toFixed(2)} | ${dag.p50.toFixed(0)} ms / ${dag.p99.toFixed(0)} ms | ${(dag.lagPer1000 / 1000).toFixed(2)} s (Airflow 2: ~11.6 s) |`,
    );
  }
  // The workers' HTTP calls keep their connections alive: close those with the server.
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
