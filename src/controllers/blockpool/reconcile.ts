/**
 * BlockPool: validate → ask the name nodes → decide the data-node count (a scale-down waits for
 * its decommission) → build → apply → status. Figures come from the name nodes, so the pool is
 * looked at again every `refreshMs` (every `decommissionPollMs` while a scale-down waits).
 */
import { type BlockPoolSpec, blockPoolDefinition } from "../../api/blockpool.js";
import { Reason } from "../../api/conditions.js";
import type { Context, ControllerDefinition } from "../../operator/controller.js";
import { builtin, type KubeObject, objectKey, type ResourceType } from "../../operator/kube.js";
import {
  announcePodProblem,
  instanceLabels,
  pausedHealth,
  reportProblems,
  resourceType,
  selectorLabels,
  specOf,
  storedStatus,
  writeHealth,
} from "../common.js";
import { podProblem, podWatch } from "../podHealth.js";
import {
  type BlockPoolBuildInput,
  dataNodeName,
  desiredChildren,
  nameNodeName,
  webHdfsEndpoint,
} from "./build.js";
import { ensureClusterSecret } from "./clusterSecret.js";
import {
  decommissionRequest,
  retiringPods,
  type ScaleDecision,
  type ScaleInput,
  scaleDataNodes,
} from "./decommission.js";
import { decommissionThroughActive, type NameNodeAnswer, probeNameNodes } from "./nameNodeClient.js";
import { blockPoolHealth, type NameNodeView, nameNodeFigures, nameNodeView, roleState } from "./status.js";
import { topologyTable } from "./topology.js";
import { validateBlockPool } from "./validate.js";

export interface BlockPoolControllerOptions {
  /**
   * Base URL (no path) of name node `ordinal`'s HTTP port (spec.webHdfs.port). By default its
   * in-cluster DNS name through the headless Service; tests point it at processes on loopback.
   */
  nameNodeUrl?: (pool: string, namespace: string, ordinal: number, port: number) => string;
  /** Deadline of each request to a name node; default 2 s. */
  requestTimeoutMs?: number;
  /** How often the name nodes' figures are refreshed; default 30 s. */
  refreshMs?: number;
  /** How often a scale-down that waits for its decommission is looked at; default 5 s. */
  decommissionPollMs?: number;
  /** The operator's own namespace, for the pools' NetworkPolicies; default POD_NAMESPACE, unset: any. */
  operatorNamespace?: string | undefined;
}

export const inClusterNameNodeUrl = (pool: string, namespace: string, ordinal: number, port: number) =>
  `http://${nameNodeName(pool)}-${ordinal}.${nameNodeName(pool)}.${namespace}.svc:${port}`;

type Settings = Required<Omit<BlockPoolControllerOptions, "operatorNamespace">> &
  Pick<BlockPoolControllerOptions, "operatorNamespace">;

/** networking.k8s.io/v1 NetworkPolicy, a child of every pool (build.ts's networkPolicy). */
export const networkPolicyType: ResourceType = {
  group: "networking.k8s.io",
  version: "v1",
  kind: "NetworkPolicy",
  plural: "networkpolicies",
};

const replicasOf = (statefulSet: KubeObject | undefined) =>
  (statefulSet?.spec as { replicas?: number } | undefined)?.replicas;

export async function reconcileBlockPool(
  resource: KubeObject,
  context: Context<KubeObject>,
  settings: Settings,
) {
  const spec = specOf(blockPoolDefinition, resource);
  const input: BlockPoolBuildInput = {
    resource,
    spec,
    image: context.image,
    operatorNamespace: settings.operatorNamespace,
  };
  const problems = validateBlockPool(spec);
  if (problems.length > 0) {
    await reportProblems(context, resource, problems);
    return undefined;
  }
  const { namespace = "", name } = resource.metadata;
  const paused = spec.clusterOperation.reconciliationPaused;
  const stopped = spec.clusterOperation.stopped;
  // Stopped, every name node is scaled to zero: nobody to ask.
  const answers = stopped
    ? []
    : await probeNameNodes(
        Array.from({ length: spec.nameNodes.replicas }, (_, ordinal) => ({
          pod: `${nameNodeName(name)}-${ordinal}`,
          url: settings.nameNodeUrl(name, namespace, ordinal, spec.webHdfs.port),
        })),
        settings.requestTimeoutMs,
      );
  const view = stopped ? undefined : nameNodeView(answers);
  let nameNodes: KubeObject | undefined;
  let dataNodes: KubeObject | undefined;
  let scale: ScaleDecision;
  if (paused) {
    // Spec ignored: report what runs, touch nothing (no decommission either).
    nameNodes = context.cachedChild(builtin.statefulSet, namespace, nameNodeName(name));
    dataNodes = context.cachedChild(builtin.statefulSet, namespace, dataNodeName(name));
    scale = { phase: "steady", replicas: replicasOf(dataNodes) ?? 0 };
  } else {
    // Before the StatefulSets: their pods cannot start without it.
    const secret = await ensureClusterSecret(context.client, resource);
    scale = await dataNodeScale(resource, spec, context, settings, answers, view, secret);
    // The rack table goes when rackAwareness does; the shared edit-log claim is never pruned.
    const applied = await context.applyAndPrune(
      resource,
      desiredChildren({
        ...input,
        dataNodeReplicas: scale.replicas,
        ...(spec.rackAwareness
          ? {
              topologyTable: topologyTable(
                context.cachedObjects(builtin.pod, {
                  namespace,
                  labels: selectorLabels(resource, "datanode"),
                }),
                context.cachedObjects(builtin.node),
                spec.rackAwareness.topologyKey,
              ),
            }
          : {}),
      }),
    );
    nameNodes = applied.find(
      (child) => child.kind === "StatefulSet" && child.metadata.name === nameNodeName(resource.metadata.name),
    );
    dataNodes = applied.find(
      (child) => child.kind === "StatefulSet" && child.metadata.name === dataNodeName(resource.metadata.name),
    );
  }
  const roles = [
    roleState(
      "name nodes",
      paused ? (replicasOf(nameNodes) ?? 0) : stopped ? 0 : spec.nameNodes.replicas,
      nameNodes,
    ),
    roleState("data nodes", scale.replicas, dataNodes),
  ];
  // Every name-node and data-node pod of this pool, from the pod watch's cache.
  const pods = podProblem(
    context.cachedObjects(builtin.pod, { namespace, labels: instanceLabels(resource) }),
  );
  const health = blockPoolHealth({ roles, stopped, spec, nameNodes: view, scale, pods });
  // A paused pool still reports how its workloads are; only its spec changes wait.
  if (paused) health.progressing = pausedHealth.progressing;
  const figures = view
    ? nameNodeFigures(view, spec)
    : { erasureCodingPolicies: [...new Set(spec.erasureCoding.map((directory) => directory.policy))] };
  // Paused, a waiting scale-down neither moves nor is taken back: its pods stay named.
  const retiring = paused
    ? ((storedStatus(resource).retiringDataNodes as string[] | undefined) ?? [])
    : retiringPods(scale);
  await announce(context, resource, { scale: paused ? undefined : scale, stopped }, figures.activeNameNode);
  await announcePodProblem(context, resource, health, pods);
  await writeHealth(context, resource, health, {
    ...figures,
    liveDataNodes: figures.liveDataNodes ?? roles[1]!.ready,
    ...(retiring.length > 0 ? { retiringDataNodes: retiring } : {}),
    webHdfsEndpoint: webHdfsEndpoint(input),
  });
  if (stopped) return undefined;
  const waiting = scale.phase === "decommissioning" || scale.phase === "blocked";
  return { requeueAfterMs: waiting ? settings.decommissionPollMs : settings.refreshMs };
}

/**
 * The data-node replicas to apply. A scale-down first has the active name node decommission the
 * pods it removes, and holds the StatefulSet at its current count until they are done; any other
 * change applies at once (and takes back an unfinished decommission the change made moot).
 */
async function dataNodeScale(
  resource: KubeObject,
  spec: BlockPoolSpec,
  context: Context<KubeObject>,
  settings: Settings,
  answers: NameNodeAnswer[],
  view: NameNodeView | undefined,
  secret: Buffer,
): Promise<ScaleDecision> {
  const { namespace = "", name } = resource.metadata;
  const desired = spec.dataNodes.replicas;
  const stopped = spec.clusterOperation.stopped;
  if (stopped || !view)
    return scaleDataNodes({
      pool: name,
      desired,
      current: undefined,
      stopped,
      answer: { datanodes: [] },
      registeredDataNodes: 0,
      readyPods: new Set(),
    });
  // Read, not cached: a cache behind our own last apply could show fewer replicas than run, and
  // a scale-down would then skip the decommission of the pods it removes.
  const current = replicasOf(await context.client.find(builtin.statefulSet, namespace, dataNodeName(name)));
  const reports = view.active?.status.datanodes;
  const request = decommissionRequest(name, desired, current, reports);
  const answered = answers.filter((answer) => "status" in answer);
  let answer: ScaleInput["answer"] = { datanodes: reports ?? [] };
  if (request.send && answered.length === 0) {
    answer = { error: `no name node answered (${view.unreachable.join("; ")})` };
  } else if (request.send) {
    answer = await decommissionThroughActive(answered, request.hosts, settings.requestTimeoutMs, secret);
    if ("error" in answer && (current === undefined || desired >= current)) {
      // Not scaling down: only a correction of the name node's exclude list failed; next time.
      context.log.warn({ hosts: request.hosts, err: answer.error }, "could not update the decommission set");
    }
  }
  return scaleDataNodes({
    pool: name,
    desired,
    current,
    stopped,
    answer,
    registeredDataNodes: reports?.length ?? 0,
    readyPods: new Set(
      context
        .cachedObjects(builtin.pod, { namespace, labels: selectorLabels(resource, "datanode") })
        .filter(isReady)
        .map((pod) => pod.metadata.name),
    ),
  });
}

const isReady = (pod: KubeObject) =>
  !pod.metadata.deletionTimestamp &&
  ((pod.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some(
    (condition) => condition.type === "Ready" && condition.status === "True",
  );

/**
 * Events for what changed since the last status: a scale-down starting, finishing or taken back
 * (not while paused: nothing moves then), a failover.
 */
async function announce(
  context: Context<KubeObject>,
  resource: KubeObject,
  { scale, stopped }: { scale: ScaleDecision | undefined; stopped: boolean },
  activeNameNode: string | undefined,
): Promise<void> {
  const previous = storedStatus(resource) as { retiringDataNodes?: string[]; activeNameNode?: string };
  if (previous.activeNameNode && activeNameNode && previous.activeNameNode !== activeNameNode) {
    await context.event(
      resource,
      "Warning",
      Reason.Failover,
      `${activeNameNode} is the active name node now, in place of ${previous.activeNameNode}`,
    );
  }
  if (!scale) return;
  const before = previous.retiringDataNodes ?? [];
  const retiring =
    scale.phase === "decommissioned" ? scale.retiring.map((node) => node.pod) : retiringPods(scale);
  const changed = retiring.length !== before.length || retiring.some((pod, index) => pod !== before[index]);
  if (retiring.length > 0 && changed) {
    const to = "desired" in scale ? scale.desired : scale.replicas;
    await context.event(
      resource,
      "Normal",
      Reason.Decommissioning,
      `decommissioning ${retiring.join(", ")} before scaling data nodes down to ${to}`,
    );
  }
  if (scale.phase === "decommissioned") {
    await context.event(
      resource,
      "Normal",
      Reason.Decommissioned,
      `${retiring.join(", ")} decommissioned: scaling data nodes from ${scale.from} to ${scale.replicas}`,
    );
  } else if (scale.phase === "steady" && before.length > 0 && !stopped) {
    await context.event(
      resource,
      "Normal",
      Reason.DecommissionCanceled,
      `scale-down taken back (spec.dataNodes.replicas is ${scale.replicas}): ${before.join(", ")} stay in service`,
    );
  }
}

const rackAware = (pool: KubeObject) =>
  Boolean((pool.spec as { rackAwareness?: unknown } | undefined)?.rackAwareness);

export function createBlockPoolController(
  options: BlockPoolControllerOptions = {},
): ControllerDefinition<KubeObject> {
  const settings: Settings = {
    nameNodeUrl: options.nameNodeUrl ?? inClusterNameNodeUrl,
    requestTimeoutMs: options.requestTimeoutMs ?? 2_000,
    refreshMs: options.refreshMs ?? 30_000,
    decommissionPollMs: options.decommissionPollMs ?? 5_000,
    operatorNamespace: "operatorNamespace" in options ? options.operatorNamespace : process.env.POD_NAMESPACE,
  };
  return {
    type: resourceType(blockPoolDefinition),
    owns: [
      builtin.statefulSet,
      builtin.service,
      builtin.podDisruptionBudget,
      builtin.persistentVolumeClaim,
      builtin.configMap,
      networkPolicyType,
    ],
    watches: [
      // Name-node and data-node pods belong to the StatefulSets, not the pool: their labels name
      // the pool. A pod that cannot run, or runs again, changes the pool's health; a data-node pod
      // scheduled or moved changes the rack table.
      podWatch(blockPoolDefinition.kind, (pod) => (pod.spec as { nodeName?: string } | undefined)?.nodeName),
      // A node's labels are its zone: a change moves every pod on it to another rack.
      {
        type: builtin.node,
        fingerprint: (node) => node.metadata.labels ?? {},
        map: (_node, pools) => pools().filter(rackAware).map(objectKey),
      },
    ],
    reconcile: (resource, context) => reconcileBlockPool(resource, context, settings),
    // The pool's files live on the PersistentVolumeClaims; the StatefulSets' retention policy
    // (from deletionPolicy) decides their fate, so nothing outside Kubernetes is left to release.
    cleanup: async () => {},
  };
}

/** The controller the operator runs: name nodes reached at their in-cluster addresses. */
export const blockPoolController = createBlockPoolController();
