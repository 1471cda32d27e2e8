/**
 * Dag: validate → build (spec ConfigMap, scheduler, workers, Job RBAC when needed) → apply and
 * prune → status from the scheduler's own state (its REST API's summary: last and next run, runs
 * by state, failing tasks). Ready when the scheduler and every worker are ready. The run state
 * changes without Kubernetes events, so the Dag is looked at again every `refreshMs`.
 */

import { blockPoolDefinition } from "../../api/blockpool.js";
import { ConditionStatus, Reason } from "../../api/conditions.js";
import { type DagSpec, dagDefinition } from "../../api/dag.js";
import { yarnQueueDefinition } from "../../api/yarnqueue.js";
import { openTaskQueue } from "../../dataplane/dag/queue.js";
import { connectRedis, DagStore, defaultKeyPrefix } from "../../dataplane/dag/store.js";
import type { DagSummary } from "../../dataplane/dag/views.js";
import type { Health } from "../../operator/conditions.js";
import type { Context, ControllerDefinition } from "../../operator/controller.js";
import { builtin, type KubeObject } from "../../operator/kube.js";
import {
  announcePodProblem,
  instanceLabels,
  pausedHealth,
  reportProblems,
  resourceType,
  specOf,
  storedStatus,
  writeHealth,
} from "../common.js";
import { podProblem, podWatch, withPodProblem } from "../podHealth.js";
import { blockPoolWebHdfsAddress } from "../topic/build.js";
import { resourceManagerAddress } from "../yarnqueue/build.js";
import {
  type DagBuildInput,
  desiredChildren,
  roleBindingType,
  roleType,
  schedulerName,
  schedulerPort,
  serviceAccountType,
  workersName,
} from "./build.js";
import { validateDag } from "./validate.js";

export interface DagControllerOptions {
  /** Redis of Dags without spec.redis; default TRIBUTARY_DAG_REDIS_URL. */
  defaultRedisUrl?: string;
  /** Base URL of a Dag's scheduler; by default its Service's in-cluster name. Tests point it at a process. */
  schedulerUrl?: (dag: string, namespace: string) => string;
  requestTimeoutMs?: number;
  refreshMs?: number;
}

export const inClusterSchedulerUrl = (dag: string, namespace: string) =>
  `http://${schedulerName(dag)}.${namespace}.svc:${schedulerPort}`;

interface DeploymentStatus {
  observedGeneration?: number;
  readyReplicas?: number;
  updatedReplicas?: number;
  replicas?: number;
}

function deploymentReady(deployment: KubeObject | undefined, desired: number) {
  const status = (deployment?.status ?? {}) as DeploymentStatus;
  const ready = status.readyReplicas ?? 0;
  const observed =
    (status.observedGeneration ?? -1) >= (deployment?.metadata.generation ?? Number.POSITIVE_INFINITY);
  return { ready, desired, settled: deployment !== undefined && observed && ready >= desired };
}

async function fetchSummary(url: string, timeoutMs: number): Promise<DagSummary | string> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return `${url} answered ${response.status}`;
    return (await response.json()) as DagSummary;
  } catch (error) {
    return `${url}: ${(error as Error).message}`;
  }
}

/**
 * Where the workers reach what the Dag's platform tasks name, read when the Dag is reconciled:
 * the resource manager of every YarnQueue whose cluster has a root queue, and the WebHDFS
 * address (its own port) of every BlockPool, in the Dag's namespace.
 */
async function platformTargets(
  context: Context<KubeObject>,
  spec: DagSpec,
  namespace: string,
): Promise<Pick<DagBuildInput, "resourceManagers" | "blockPools">> {
  const targets: Pick<DagBuildInput, "resourceManagers" | "blockPools"> = {};
  if (spec.tasks.some((task) => task.platform?.yarnApplication)) {
    const queues = (await context.client.list(resourceType(yarnQueueDefinition), namespace)).items;
    const cluster = (queue: KubeObject) =>
      (queue.spec as { cluster?: string } | undefined)?.cluster ?? "default";
    const roots = new Map(
      queues
        .filter((queue) => (queue.spec as { root?: unknown } | undefined)?.root)
        .map((root) => [cluster(root), root]),
    );
    targets.resourceManagers = {};
    for (const queue of queues) {
      const root = roots.get(cluster(queue));
      if (root) targets.resourceManagers[queue.metadata.name] = resourceManagerAddress(root);
    }
  }
  if (spec.tasks.some((task) => task.platform?.waitForFile)) {
    const pools = (await context.client.list(resourceType(blockPoolDefinition), namespace)).items;
    targets.blockPools = Object.fromEntries(
      pools.map((pool) => {
        const port = (pool.spec as { webHdfs?: { port?: number } } | undefined)?.webHdfs?.port;
        return [pool.metadata.name, blockPoolWebHdfsAddress(pool.metadata.name, namespace, port)];
      }),
    );
  }
  return targets;
}

export function createDagController(options: DagControllerOptions = {}): ControllerDefinition<KubeObject> {
  const settings = {
    defaultRedisUrl: options.defaultRedisUrl ?? process.env.TRIBUTARY_DAG_REDIS_URL,
    schedulerUrl: options.schedulerUrl ?? inClusterSchedulerUrl,
    requestTimeoutMs: options.requestTimeoutMs ?? 2000,
    refreshMs: options.refreshMs ?? 30_000,
  };
  return {
    type: resourceType(dagDefinition),
    owns: [
      builtin.deployment,
      builtin.service,
      builtin.configMap,
      serviceAccountType,
      roleType,
      roleBindingType,
    ],
    watches: [podWatch(dagDefinition.kind)],
    async reconcile(resource: KubeObject, context: Context<KubeObject>) {
      const spec = specOf(dagDefinition, resource);
      const { namespace = "", name } = resource.metadata;
      const problems = validateDag(spec);
      const redisUrl = spec.redis?.url ?? settings.defaultRedisUrl;
      if (!redisUrl) {
        problems.push({
          reason: Reason.RedisUnavailable,
          message:
            "spec.redis.url is required: the operator has no default Redis for Dags (TRIBUTARY_DAG_REDIS_URL of the operator)",
        });
      }
      const { conditions: _c, observedGeneration: _g, ...kept } = storedStatus(resource);
      if (problems.length > 0) {
        await reportProblems(context, resource, problems, kept);
        return undefined;
      }
      const paused = spec.clusterOperation.reconciliationPaused;
      let scheduler: KubeObject | undefined;
      let workers: KubeObject | undefined;
      if (paused) {
        scheduler = context.cachedChild(builtin.deployment, namespace, schedulerName(name));
        workers = context.cachedChild(builtin.deployment, namespace, workersName(name));
      } else {
        const applied = await context.applyAndPrune(
          resource,
          desiredChildren({
            resource,
            spec,
            image: context.image,
            redisUrl: redisUrl!,
            ...(await platformTargets(context, spec, namespace)),
          }),
        );
        const deployment = (childName: string) =>
          applied.find((child) => child.kind === "Deployment" && child.metadata.name === childName);
        scheduler = deployment(schedulerName(name));
        workers = deployment(workersName(name));
      }
      const stopped = spec.clusterOperation.stopped;
      const schedulerState = deploymentReady(scheduler, stopped ? 0 : 1);
      const workerState = deploymentReady(workers, stopped ? 0 : spec.workers.replicas);
      const pods = podProblem(
        context.cachedObjects(builtin.pod, { namespace, labels: instanceLabels(resource) }),
      );
      const summary =
        schedulerState.ready > 0
          ? await fetchSummary(
              `${settings.schedulerUrl(name, namespace)}/api/v1/dags/${encodeURIComponent(name)}/summary`,
              settings.requestTimeoutMs,
            )
          : "the scheduler is not ready";
      let health: Health = dagHealth(schedulerState, workerState, stopped, summary);
      health = withPodProblem(health, pods);
      if (paused) health = { ...health, progressing: pausedHealth.progressing };
      await announcePodProblem(context, resource, health, pods);
      await writeHealth(context, resource, health, {
        ...(typeof summary === "string" ? keptRunFields(kept) : summaryFields(summary)),
        tasks: spec.tasks.length,
      });
      return stopped ? undefined : { requeueAfterMs: settings.refreshMs };
    },
    // With deletionPolicy Delete the Dag's keys (run history, logs, results, BullMQ queues) go
    // from Redis, and its queues from RabbitMQ with that backend. Best effort: an unreachable
    // Redis or broker must not hold the Dag's deletion forever, so it is reported as a Warning
    // event and the Dag goes anyway.
    async cleanup(resource: KubeObject, context: Context<KubeObject>) {
      const spec = specOf(dagDefinition, resource);
      const redisUrl = spec.redis?.url ?? settings.defaultRedisUrl;
      if (spec.deletionPolicy !== "Delete" || !redisUrl) return;
      const { namespace = "", name } = resource.metadata;
      const prefix = spec.redis?.keyPrefix ?? defaultKeyPrefix(namespace, name);
      const warn = (what: string, error: unknown) =>
        context.event(resource, "Warning", Reason.CleanupFailed, `${what} (${(error as Error).message})`);
      let redis: ReturnType<typeof connectRedis> | undefined;
      try {
        const password = await secretValue(context, namespace, spec.redis?.passwordSecret);
        redis = connectRedis(redisUrl, password, { maxRetriesPerRequest: 2, connectTimeout: 5000 });
        redis.on("error", () => {});
        const deleted = await new DagStore(redis, prefix).deleteAll();
        context.log.info({ dag: name, keys: deleted }, "removed the Dag's state from Redis");
      } catch (error) {
        await warn(
          "could not remove the Dag's run history from Redis; its keys stay under its prefix",
          error,
        );
      } finally {
        redis?.disconnect();
      }
      if (spec.queueBackend !== "rabbitmq" || !spec.rabbitmq) return;
      const queues = [...new Set([...spec.tasks.map((task) => task.queue), ...spec.workers.queues])];
      try {
        const password = await secretValue(context, namespace, spec.rabbitmq.passwordSecret);
        const queue = await openTaskQueue({
          backend: "rabbitmq",
          prefix,
          redisUrl,
          rabbitmqUrl: spec.rabbitmq.url,
          ...(password ? { rabbitmqPassword: password } : {}),
          log: context.log,
        });
        try {
          await queue.destroy(queues);
        } finally {
          await queue.close().catch(() => undefined);
        }
        context.log.info({ dag: name, queues }, "removed the Dag's queues from RabbitMQ");
      } catch (error) {
        await warn(
          `could not remove the Dag's queues ${queues.map((q) => prefix + q).join(", ")} from RabbitMQ`,
          error,
        );
      }
    },
  };
}

/** The value of a Secret key the Dag names, or undefined when it names none. */
async function secretValue(
  context: Context<KubeObject>,
  namespace: string,
  ref: { name: string; key: string } | undefined,
): Promise<string | undefined> {
  if (!ref) return undefined;
  const secret = await context.client.get(builtin.secret, namespace, ref.name);
  const encoded = (secret as { data?: Record<string, string> }).data?.[ref.key];
  return encoded ? Buffer.from(encoded, "base64").toString("utf8") : undefined;
}

const runFieldNames = [
  "lastRunId",
  "lastRunState",
  "lastRunStartTime",
  "lastRunEndTime",
  "lastLogicalDate",
  "nextRunTime",
  "activeRuns",
  "runs",
  "failingTasks",
  "scheduler",
];

/** While the scheduler cannot be asked, the run fields stay as last seen. */
function keptRunFields(kept: Record<string, unknown>) {
  return Object.fromEntries(Object.entries(kept).filter(([key]) => runFieldNames.includes(key)));
}

export function summaryFields(summary: DagSummary): Record<string, unknown> {
  const last = summary.lastRun;
  return {
    ...(last
      ? {
          lastRunId: last.id,
          lastRunState: last.state,
          ...(last.startDate ? { lastRunStartTime: last.startDate } : {}),
          ...(last.endDate ? { lastRunEndTime: last.endDate } : {}),
        }
      : {}),
    ...(summary.lastScheduled ? { lastLogicalDate: summary.lastScheduled } : {}),
    ...(summary.nextRun ? { nextRunTime: summary.nextRun } : {}),
    activeRuns: summary.runs.queued + summary.runs.running,
    runs: summary.runs,
    ...(summary.failingTasks.length > 0 ? { failingTasks: summary.failingTasks } : {}),
    ...(summary.scheduler
      ? { scheduler: `${summary.scheduler.identity} (epoch ${summary.scheduler.epoch})` }
      : {}),
  };
}

export function dagHealth(
  scheduler: { ready: number; desired: number; settled: boolean },
  workers: { ready: number; desired: number; settled: boolean },
  stopped: boolean,
  summary: DagSummary | string,
): Health {
  if (stopped) {
    const done = scheduler.settled && workers.settled;
    return {
      ready: {
        status: done ? ConditionStatus.True : ConditionStatus.False,
        reason: Reason.Stopped,
        message: "stopped: the scheduler and workers are scaled to 0; run state stays in Redis",
      },
      progressing: {
        status: done ? ConditionStatus.False : ConditionStatus.True,
        reason: Reason.Stopped,
        message: done ? "stopped" : "scaling to 0",
      },
      degraded: { status: ConditionStatus.False, reason: Reason.Stopped, message: "" },
    };
  }
  const waiting = [
    ...(scheduler.settled ? [] : ["the scheduler"]),
    ...(workers.settled ? [] : [`workers (${workers.ready}/${workers.desired} ready)`]),
  ];
  const failed = typeof summary !== "string" && summary.lastRun?.state === "failed";
  const failing =
    typeof summary !== "string"
      ? summary.failingTasks
          .slice(0, 3)
          .map((task) => `${task.taskId} (${task.runId}, try ${task.try}): ${task.error}`)
          .join("; ")
      : "";
  const degraded = failed
    ? {
        status: ConditionStatus.True,
        reason: Reason.RunFailed,
        message: `run ${(summary as DagSummary).lastRun!.id} failed${failing ? `: ${failing}` : ""}`,
      }
    : { status: ConditionStatus.False, reason: Reason.Reconciled, message: "" };
  if (waiting.length > 0) {
    return {
      ready: {
        status: ConditionStatus.False,
        reason: Reason.WaitingForChildren,
        message: `waiting for ${waiting.join(" and ")}`,
      },
      progressing: {
        status: ConditionStatus.True,
        reason: Reason.WaitingForChildren,
        message: `waiting for ${waiting.join(" and ")}`,
      },
      degraded,
    };
  }
  return {
    ready: {
      status: ConditionStatus.True,
      reason: Reason.ChildrenReady,
      message:
        typeof summary === "string"
          ? `the scheduler and ${workers.ready} workers are ready; run state unavailable: ${summary}`
          : `the scheduler and ${workers.ready} workers are ready`,
    },
    progressing: { status: ConditionStatus.False, reason: Reason.ChildrenReady, message: "rolled out" },
    degraded,
  };
}
