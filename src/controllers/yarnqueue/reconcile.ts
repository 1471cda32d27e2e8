/**
 * YarnQueue: validate the queue against its tree → (root queue) build and apply the resource
 * manager and node managers, PUT the queue tree to the resource manager (YARN's refreshQueues,
 * live) → status from the resource manager's scheduler endpoint. Every queue of a cluster is
 * reconciled when any of them changes (`related`), and looked at again every `refreshMs` for its
 * figures (used capacity, applications, pending containers).
 */
import { ConditionStatus, Reason } from "../../api/conditions.js";
import { parseSpec } from "../../api/resource.js";
import { type YarnQueueSpec, yarnQueueDefinition } from "../../api/yarnqueue.js";
import {
  type CapacitySchedulerInfo,
  type QueueDefinition,
  type QueueInfo,
  queuesByPath,
} from "../../dataplane/yarn/scheduler.js";
import type { Health } from "../../operator/conditions.js";
import type { Context, ControllerDefinition } from "../../operator/controller.js";
import { builtin, type KubeObject } from "../../operator/kube.js";
import { roleState, statefulSetHealth } from "../blockpool/status.js";
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
import {
  desiredChildren,
  nodeManagerName,
  ports,
  resourceManagerAddress,
  resourceManagerName,
} from "./build.js";
import { type QueueNode, queuePlacement, validateQueue } from "./validate.js";

export interface YarnQueueControllerOptions {
  /** Base URL of a cluster's resource manager; by default its in-cluster Service. Tests point it at loopback. */
  resourceManagerUrl?: (root: KubeObject) => string;
  requestTimeoutMs?: number;
  refreshMs?: number;
}

type Settings = Required<YarnQueueControllerOptions>;

type Queue = QueueNode & { spec: YarnQueueSpec; object: KubeObject };

const clusterOf = (queue: KubeObject) => ((queue.spec ?? {}) as Partial<YarnQueueSpec>).cluster ?? "default";

/** The queues of the resource's cluster whose spec parses (a broken one reports its own problem). */
function clusterQueues(resource: KubeObject, peers: KubeObject[]): Queue[] {
  return [resource, ...peers]
    .filter((queue) => clusterOf(queue) === clusterOf(resource))
    .flatMap((queue) => {
      const parsed = parseSpec(yarnQueueDefinition, queue as Parameters<typeof parseSpec>[1]);
      return parsed.ok ? [{ name: queue.metadata.name, spec: parsed.spec, object: queue }] : [];
    });
}

/** The tree as capacity-scheduler queues, or the first problem that keeps it from being one. */
export function queueTree(queues: Queue[]): { definitions: QueueDefinition[] } | { problem: string } {
  const definitions: QueueDefinition[] = [];
  for (const queue of queues) {
    const problems = validateQueue(queue, queues);
    if (problems.length > 0) return { problem: `${queue.name}: ${problems[0]!.message}` };
    const placement = queuePlacement(queue, queues);
    if (!placement) return { problem: `${queue.name}: its chain of parents is broken or loops` };
    const { spec } = queue;
    definitions.push({
      path: placement.queuePath,
      capacity: spec.root ? 100 : (spec.capacity ?? 0),
      maximumCapacity: spec.maximumCapacity,
      userLimitFactor: spec.userLimitFactor,
      minimumUserLimitPercent: spec.minimumUserLimitPercent,
      maxApplications: spec.maxApplications,
      maximumAMResourcePercent: spec.maximumAMResourcePercent,
      priority: spec.priority,
      state: spec.state,
      ...(spec.acl
        ? {
            acl: {
              ...(spec.acl.submitApplications ? { submitApplications: spec.acl.submitApplications } : {}),
              ...(spec.acl.administerQueue ? { administerQueue: spec.acl.administerQueue } : {}),
            },
          }
        : {}),
    });
  }
  if (!definitions.some((d) => d.path !== "root"))
    return { problem: "the root queue has no child queues yet: applications need a leaf queue" };
  return { definitions: definitions.sort((a, b) => a.path.localeCompare(b.path)) };
}

async function rmCall<T>(url: string, settings: Settings, init: RequestInit = {}): Promise<T> {
  const response = await fetch(url, {
    ...init,
    headers: { "content-type": "application/json" },
    signal: AbortSignal.timeout(settings.requestTimeoutMs),
  });
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      message =
        (JSON.parse(text) as { RemoteException?: { message: string } }).RemoteException?.message ?? text;
    } catch {
      // Not JSON.
    }
    throw new Error(`${response.status}: ${message}`);
  }
  return JSON.parse(text) as T;
}

interface ClusterView {
  scheduler?: CapacitySchedulerInfo;
  metrics?: { activeNodes: number; totalVirtualCores: number; totalMB: number };
  error?: string;
  /** Why the operator's queue tree is not the resource manager's (refused, or not valid). */
  treeProblem?: string;
}

/** Makes the resource manager's queue tree the YarnQueues' one, then reads its figures. */
async function syncResourceManager(
  root: KubeObject,
  tree: ReturnType<typeof queueTree>,
  settings: Settings,
  push: boolean,
): Promise<ClusterView> {
  const base = settings.resourceManagerUrl(root);
  try {
    let treeProblem: string | undefined;
    if ("problem" in tree) treeProblem = tree.problem;
    else if (push) {
      const current = await rmCall<{ queues: QueueDefinition[] }>(
        `${base}/ws/v1/cluster/scheduler-conf`,
        settings,
      );
      if (JSON.stringify(current.queues) !== JSON.stringify(tree.definitions)) {
        try {
          await rmCall(`${base}/ws/v1/cluster/scheduler-conf`, settings, {
            method: "PUT",
            body: JSON.stringify({ queues: tree.definitions }),
          });
        } catch (error) {
          treeProblem = `the resource manager refused the queue tree: ${(error as Error).message}`;
        }
      }
    }
    const scheduler = await rmCall<{ scheduler: { schedulerInfo: CapacitySchedulerInfo } }>(
      `${base}/ws/v1/cluster/scheduler`,
      settings,
    );
    const metrics = await rmCall<{ clusterMetrics: ClusterView["metrics"] }>(
      `${base}/ws/v1/cluster/metrics`,
      settings,
    );
    return { scheduler: scheduler.scheduler.schedulerInfo, metrics: metrics.clusterMetrics, treeProblem };
  } catch (error) {
    return { error: `resource manager at ${base} did not answer: ${(error as Error).message}` };
  }
}

const notReady = (reason: string, message: string, degraded = false): Health => ({
  ready: { status: ConditionStatus.False, reason, message },
  progressing: { status: degraded ? ConditionStatus.False : ConditionStatus.True, reason, message },
  degraded: degraded
    ? { status: ConditionStatus.True, reason, message }
    : { status: ConditionStatus.False, reason: Reason.Reconciling, message: "" },
});

export async function reconcileYarnQueue(
  resource: KubeObject,
  context: Context<KubeObject>,
  settings: Settings,
) {
  const spec = specOf(yarnQueueDefinition, resource);
  const { namespace = "" } = resource.metadata;
  const peers = context
    .cachedPeers(namespace)
    .filter((peer) => peer.metadata.name !== resource.metadata.name);
  const queues = clusterQueues(resource, peers);
  const self = queues[0]!;
  const problems = validateQueue(self, queues);
  const { conditions: _c, observedGeneration: _g, ...kept } = storedStatus(resource);
  if (problems.length > 0) {
    await reportProblems(context, resource, problems, kept);
    return undefined;
  }
  const placement = queuePlacement(self, queues);
  const root = queues.find((queue) => queue.spec.root)?.object;
  if (!root) {
    await writeHealth(
      context,
      resource,
      notReady(
        Reason.ClusterNotFound,
        `no YarnQueue with spec.root declares cluster '${spec.cluster}' in this namespace`,
        true,
      ),
      { ...kept, ...placement },
    );
    return undefined;
  }
  const rootSpec = specOf(yarnQueueDefinition, root) as YarnQueueSpec & {
    root: NonNullable<YarnQueueSpec["root"]>;
  };
  const isRoot = root.metadata.uid === resource.metadata.uid;
  const paused = rootSpec.root.clusterOperation.reconciliationPaused;
  const stopped = rootSpec.root.clusterOperation.stopped;
  let rmSet = context.cachedChild(builtin.statefulSet, namespace, resourceManagerName(root.metadata.name));
  let nmSet = context.cachedChild(builtin.statefulSet, namespace, nodeManagerName(root.metadata.name));
  if (isRoot && !paused) {
    const applied = await context.applyAndPrune(
      resource,
      desiredChildren({ resource, spec: rootSpec, image: context.image }),
    );
    rmSet =
      applied.find(
        (c) => c.kind === "StatefulSet" && c.metadata.name === resourceManagerName(root.metadata.name),
      ) ?? rmSet;
    nmSet =
      applied.find(
        (c) => c.kind === "StatefulSet" && c.metadata.name === nodeManagerName(root.metadata.name),
      ) ?? nmSet;
  }
  const roles = [
    roleState("resource manager", stopped ? 0 : 1, rmSet),
    roleState("node managers", stopped ? 0 : rootSpec.root.nodeManagers.replicas, nmSet),
  ];
  let health = statefulSetHealth(roles, stopped);
  const view: ClusterView =
    stopped || !roles[0]!.settled
      ? {}
      : await syncResourceManager(root, queueTree(queues), settings, isRoot && !paused);
  const info: QueueInfo | undefined =
    view.scheduler && placement ? queuesByPath(view.scheduler).get(placement.queuePath) : undefined;
  const rootInfo = view.scheduler;
  const figures: Record<string, unknown> = { ...placement };
  if (placement?.queuePath === "root" && rootInfo) figures.usedCapacity = rootInfo.usedCapacity;
  if (info) {
    figures.usedCapacity = info.usedCapacity;
    figures.runningApplications = info.numActiveApplications ?? 0;
    figures.pendingApplications = info.numPendingApplications ?? 0;
    figures.pendingContainers = info.pendingContainers ?? 0;
    figures.absoluteUsedCapacity = info.absoluteUsedCapacity;
  }
  if (isRoot)
    figures.cluster = {
      resourceManagerAddress: resourceManagerAddress(root),
      ...(view.metrics
        ? {
            liveNodeManagers: view.metrics.activeNodes,
            totalVcores: view.metrics.totalVirtualCores,
            totalMemoryBytes: view.metrics.totalMB * 1024 * 1024,
          }
        : {}),
    };
  if (health.ready.status === ConditionStatus.True && !stopped) {
    const wantedNodes = rootSpec.root.nodeManagers.replicas;
    if (view.error) health = notReady(Reason.DependencyNotReady, view.error);
    else if (view.metrics && view.metrics.activeNodes < wantedNodes)
      health = notReady(
        Reason.WaitingForChildren,
        `${view.metrics.activeNodes}/${wantedNodes} node managers registered with the resource manager`,
      );
    else if (view.treeProblem && isRoot)
      health = notReady(Reason.InvalidSpec, `queue tree not applied: ${view.treeProblem}`, true);
    else if (placement && placement.queuePath !== "root" && !info)
      health = notReady(
        Reason.WaitingForChildren,
        `queue ${placement.queuePath} is not in the resource manager's scheduler yet`,
      );
    else if (spec.state === "STOPPED")
      health = {
        ...health,
        ready: {
          status: ConditionStatus.True,
          reason: Reason.QueueStopped,
          message: `queue ${placement?.queuePath} is STOPPED: running applications finish, new ones are refused`,
        },
      };
  }
  const pods = podProblem(context.cachedObjects(builtin.pod, { namespace, labels: instanceLabels(root) }));
  health = withPodProblem(health, pods);
  if (paused) health = { ...health, progressing: pausedHealth.progressing };
  if (isRoot) await announcePodProblem(context, resource, health, pods);
  await writeHealth(context, resource, health, figures);
  return stopped ? undefined : { requeueAfterMs: settings.refreshMs };
}

export function createYarnQueueController(
  options: YarnQueueControllerOptions = {},
): ControllerDefinition<KubeObject> {
  const settings: Settings = {
    resourceManagerUrl:
      options.resourceManagerUrl ??
      ((root) => `http://${resourceManagerAddress(root).replace(/:\d+$/, `:${ports.resourceManager}`)}`),
    requestTimeoutMs: options.requestTimeoutMs ?? 3_000,
    refreshMs: options.refreshMs ?? 30_000,
  };
  return {
    type: resourceType(yarnQueueDefinition),
    owns: [builtin.statefulSet, builtin.service, builtin.persistentVolumeClaim],
    watches: [
      // The pods of the root's StatefulSets carry the root's instance label: queues of that
      // cluster are woken too, through `related`.
      podWatch(yarnQueueDefinition.kind),
    ],
    // Any queue's change changes the tree the root PUTs and the sums its siblings are judged by.
    related: (resource, peers) =>
      peers
        .filter(
          (peer) => peer.metadata.name !== resource.metadata.name && clusterOf(peer) === clusterOf(resource),
        )
        .map((peer) => `${peer.metadata.namespace}/${peer.metadata.name}`),
    reconcile: (resource, context) => reconcileYarnQueue(resource, context, settings),
    // Applications live in the resource manager's journal on its claim; the StatefulSet's
    // retention policy (from spec.root.deletionPolicy) decides its fate.
    cleanup: async () => {},
  };
}

export const yarnQueueController = createYarnQueueController();
