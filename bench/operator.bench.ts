/**
 * The operator under a burst: 500 Dags created at once against the test environment's API
 * server. Reported: time until all are settled (their scheduler and worker children applied and
 * the status of their spec written, Degraded False) and the p50/p99 of one reconcile, beside a
 * baseline from the same run — the same runtime (informer, queue, finalizer) with a no-op
 * reconcile — so the ratio shows what the Dag reconciler adds over the runtime itself.
 */
import { dagDefinition } from "../src/api/dag.js";
import { resourceType } from "../src/controllers/common.js";
import { createDagController } from "../src/controllers/dag/reconcile.js";
import { createLogger } from "../src/log.js";
import type { ControllerDefinition } from "../src/operator/controller.js";
import type { KubeObject } from "../src/operator/kube.js";
import { Operator } from "../src/operator/operator.js";
import {
  applyCrds,
  createNamespace,
  deleteNamespace,
  deleteTributaryResources,
  isSettled,
  testClient,
} from "../test/integration/operator-harness.js";
import { testEnv, uniqueName } from "../test/support/env.js";

const count = Number(process.env.TRIBUTARY_BENCH_OPERATOR_COUNT ?? 500);
const dags = resourceType(dagDefinition);

interface Measurement {
  name: string;
  createdMs: number;
  allDoneMs: number;
  reconciles: number;
  p50Ms: number;
  p99Ms: number;
}

function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

/** Wraps a controller so every reconcile's duration is recorded exactly (not in histogram buckets). */
function timed(
  definition: ControllerDefinition<KubeObject>,
  durations: number[],
): ControllerDefinition<KubeObject> {
  return {
    ...definition,
    reconcile: async (resource, context) => {
      const started = performance.now();
      try {
        return await definition.reconcile(resource, context);
      } finally {
        durations.push(performance.now() - started);
      }
    },
  };
}

async function measure(
  name: string,
  definition: ControllerDefinition<KubeObject>,
  done: (objects: KubeObject[], reconciledKeys: Set<string>) => boolean,
): Promise<Measurement> {
  const client = testClient();
  const namespace = uniqueName("bench-op");
  await createNamespace(client, namespace);
  const durations: number[] = [];
  const reconciledKeys = new Set<string>();
  const recording = timed(definition, durations);
  const operator = new Operator({
    client: testClient(),
    log: createLogger("bench", {}),
    image: "registry.example/tributary:bench",
    namespaces: [namespace],
    controllers: [
      {
        ...recording,
        reconcile: async (resource, context) => {
          const result = await recording.reconcile(resource, context);
          reconciledKeys.add(resource.metadata.name);
          return result;
        },
      },
    ],
    concurrency: 8,
    defaultMetrics: false,
  });
  await operator.start();
  await operator.whenSynced();
  const started = performance.now();
  // "At once": many creates in flight, as a GitOps sync of a large directory does.
  const names = Array.from({ length: count }, (_, index) => `dag-${index}`);
  const inFlight = 32;
  for (let offset = 0; offset < names.length; offset += inFlight) {
    await Promise.all(
      names.slice(offset, offset + inFlight).map((dagName) =>
        client.create(dags, {
          apiVersion: dagDefinition.apiVersion,
          kind: "Dag",
          metadata: { name: dagName, namespace },
          spec: {
            tasks: [
              { id: "extract", command: ["true"] },
              { id: "load", command: ["true"], dependsOn: ["extract"] },
            ],
          },
        }),
      ),
    );
  }
  const createdMs = performance.now() - started;
  const informer = operator.controllers[0]!.primaryInformers[0]!;
  for (;;) {
    if (done(informer.list(), reconciledKeys)) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const allDoneMs = performance.now() - started;
  await deleteTributaryResources(client, namespace);
  await operator.stop();
  await deleteNamespace(client, namespace);
  client.close();
  const sorted = [...durations].sort((a, b) => a - b);
  return {
    name,
    createdMs,
    allDoneMs,
    reconciles: durations.length,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

export async function run(): Promise<void> {
  // Quiet logs: the bench prints a table, not thousands of reconcile lines.
  process.env.TRIBUTARY_LOG_LEVEL ??= "warn";
  const client = testClient();
  await applyCrds(client);
  client.close();
  const baseline = await measure(
    "no-op reconcile (runtime only)",
    { type: dags, reconcile: async () => undefined },
    (_objects, reconciled) => reconciled.size >= count,
  );
  const dag = await measure(
    "Dag reconcile (validate, children, status)",
    createDagController({ defaultRedisUrl: testEnv().redisUrl }),
    (objects) => objects.filter(isSettled).length >= count,
  );
  const rows = [baseline, dag].map((row) => ({
    case: row.name,
    resources: count,
    "all created (ms)": Math.round(row.createdMs),
    "all settled (ms)": Math.round(row.allDoneMs),
    "settled after last create (ms)": Math.round(row.allDoneMs - row.createdMs),
    reconciles: row.reconciles,
    "reconcile p50 (ms)": Number(row.p50Ms.toFixed(2)),
    "reconcile p99 (ms)": Number(row.p99Ms.toFixed(2)),
  }));
  process.stdout.write(`operator: ${count} resources created at once\n`);
  console.table(rows);
  // The no-op's own reconcile takes microseconds, so the times to settle are the meaningful
  // ratios; the p50/p99 columns show what one Dag reconcile (a status apply) costs. Creating
  // 500 objects paces both cases alike, so the settle time after the last create is where the
  // reconciler's own cost shows.
  process.stdout.write(
    `ratio against the no-op baseline: all settled ×${(dag.allDoneMs / baseline.allDoneMs).toFixed(2)}, settled after the last create ×${((dag.allDoneMs - dag.createdMs) / Math.max(1, baseline.allDoneMs - baseline.createdMs)).toFixed(2)}\n`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
