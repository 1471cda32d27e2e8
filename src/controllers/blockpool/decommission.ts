/**
 * A data-node scale-down, decided purely. A StatefulSet removes its highest ordinals first, so
 * before it shrinks from `current` to `desired` the pods with ordinal in [desired, current) are
 * decommissioned: the active name node copies each of their blocks elsewhere and only then
 * reports them DECOMMISSIONED (HDFS's exclude list). Until every one is done the StatefulSet
 * keeps `current` replicas; when the name node cannot be asked, it keeps them too: removing a
 * pod that may hold the last copy of a block is the one mistake a scale-down must not make.
 */
import type { AdminState as DataNodeAdminState } from "../../dataplane/storage/protocol.js";
import type { DataNodeReport } from "./nameNodeClient.js";

/** The name node's admin states, checked against the type the name node itself reports with. */
export const AdminState = {
  Normal: "NORMAL",
  DecommissionInProgress: "DECOMMISSION_INPROGRESS",
  Decommissioned: "DECOMMISSIONED",
  Dead: "DEAD",
} as const satisfies Record<string, DataNodeAdminState>;

/**
 * States in which removing the pod takes away no copy the name node counts on: decommissioned,
 * or dead already (its claim is kept on scale-down, so a dead node's blocks are not lost either).
 */
const retired = new Set<string>([AdminState.Decommissioned, AdminState.Dead]);
/** States of a node the name node keeps out of service (its exclude list). */
const excluded = new Set<string>([AdminState.DecommissionInProgress, AdminState.Decommissioned]);

export const dataNodePod = (pool: string, ordinal: number) => `${pool}-datanode-${ordinal}`;

/** A data node names its pod in its hostName: the pod's DNS name starts with it, up to the first dot. */
export const podOfHost = (hostName: string) => hostName.split(".")[0]!.toLowerCase();

function ordinalOf(pool: string, pod: string): number | undefined {
  const prefix = `${pool}-datanode-`;
  if (!pod.startsWith(prefix)) return undefined;
  const rest = pod.slice(prefix.length);
  return /^(0|[1-9]\d*)$/.test(rest) ? Number(rest) : undefined;
}

const byOrdinal = (a: string, b: string) => a.localeCompare(b, "en", { numeric: true });

export interface DecommissionRequest {
  /** The pods the name node should keep out of service: the whole set, as the endpoint wants it. */
  hosts: string[];
  /** Whether to send it: always while scaling down (its answer is the progress), else only to correct the name node. */
  send: boolean;
}

/**
 * What to tell the name node. Out of service: the pods a scale-down will remove, and any
 * data node beyond the desired count still registered and alive (a pod that is terminating after
 * an earlier scale-down stays excluded rather than taking new blocks on its way out). Every
 * other node is in service: a scale-up that cancels an unfinished decommission sends the
 * smaller set, `[]` when nothing is left to retire.
 *
 * `reports` is the active name node's view (undefined when none answered).
 */
export function decommissionRequest(
  pool: string,
  desired: number,
  current: number | undefined,
  reports: readonly DataNodeReport[] | undefined,
): DecommissionRequest {
  const scalingDown = current !== undefined && desired < current;
  const hosts = new Set<string>();
  if (scalingDown)
    for (let ordinal = desired; ordinal < current; ordinal++) hosts.add(dataNodePod(pool, ordinal));
  for (const report of reports ?? []) {
    const pod = podOfHost(report.hostName);
    const ordinal = ordinalOf(pool, pod);
    if (ordinal !== undefined && ordinal >= desired && report.adminState !== AdminState.Dead) hosts.add(pod);
  }
  const sorted = [...hosts].sort(byOrdinal);
  if (scalingDown) return { hosts: sorted, send: true };
  if (!reports) return { hosts: sorted, send: false };
  const nowExcluded = new Set(
    reports.filter((report) => excluded.has(report.adminState)).map((report) => podOfHost(report.hostName)),
  );
  const same = nowExcluded.size === hosts.size && [...hosts].every((host) => nowExcluded.has(host));
  return { hosts: sorted, send: !same };
}

/** How far one retiring pod is, for the condition message. */
export interface RetiringDataNode {
  pod: string;
  /** The name node's admin state, or "unregistered" when it knows no data node of that name. */
  state: string;
  done: boolean;
}

export type ScaleDecision =
  /** No scale-down: apply the spec's count (0 when stopped). */
  | { phase: "steady"; replicas: number }
  /** Decommissioning: the StatefulSet keeps `replicas` (the current count) until every pod is done. */
  | { phase: "decommissioning"; replicas: number; desired: number; retiring: RetiringDataNode[] }
  /** Every retiring pod is decommissioned: the lower count is applied now. */
  | { phase: "decommissioned"; replicas: number; from: number; retiring: RetiringDataNode[] }
  /** The name node could not be asked: the StatefulSet keeps `replicas` (the current count). */
  | { phase: "blocked"; replicas: number; desired: number; pods: string[]; error: string };

export interface ScaleInput {
  pool: string;
  /** spec.dataNodes.replicas */
  desired: number;
  /** The data-node StatefulSet's spec.replicas now; undefined before it exists. */
  current: number | undefined;
  /** clusterOperation.stopped: scale to 0 keeping the volumes, no decommission. */
  stopped: boolean;
  /**
   * The name node's answer to the decommission request (the data nodes the set matched, with
   * their admin state), or why there is none.
   */
  answer: { datanodes: readonly DataNodeReport[] } | { error: string };
  /**
   * Data nodes the active name node knows at all (its /status). None means it has just started
   * and not heard from them yet: "not registered" would mean nothing then.
   */
  registeredDataNodes: number;
  /**
   * Data-node pods that are running and Ready. One of them the name node does not know is a data
   * node between a name-node restart and its next heartbeat, holding blocks: not done.
   */
  readyPods: ReadonlySet<string>;
}

/** The data-node replicas to apply, and why. */
export function scaleDataNodes(input: ScaleInput): ScaleDecision {
  const { pool, desired, current, stopped, answer, registeredDataNodes, readyPods } = input;
  if (stopped) return { phase: "steady", replicas: 0 };
  if (current === undefined || desired >= current) return { phase: "steady", replicas: desired };
  const pods = Array.from({ length: current - desired }, (_, index) => dataNodePod(pool, desired + index));
  if ("error" in answer) return { phase: "blocked", replicas: current, desired, pods, error: answer.error };
  const knowsDataNodes = registeredDataNodes > 0;
  const retiring = pods.map((pod): RetiringDataNode => {
    const reports = answer.datanodes.filter((report) => podOfHost(report.hostName) === pod);
    if (reports.length === 0)
      return { pod, state: "unregistered", done: knowsDataNodes && !readyPods.has(pod) };
    const pending = reports.find((report) => !retired.has(report.adminState));
    return { pod, state: (pending ?? reports[0]!).adminState, done: pending === undefined };
  });
  if (retiring.every((node) => node.done)) {
    return { phase: "decommissioned", replicas: desired, from: current, retiring };
  }
  return { phase: "decommissioning", replicas: current, desired, retiring };
}

/** The pods a decision keeps out of service while it holds the StatefulSet; empty otherwise. */
export function retiringPods(decision: ScaleDecision): string[] {
  if (decision.phase === "decommissioning") return decision.retiring.map((node) => node.pod);
  if (decision.phase === "blocked") return decision.pods;
  return [];
}

/** The Progressing message of a scale-down that waits. */
export function scaleDownMessage(decision: ScaleDecision): string | undefined {
  if (decision.phase === "decommissioning") {
    const done = decision.retiring.filter((node) => node.done).length;
    const states = decision.retiring.map((node) => `${node.pod} ${node.state}`).join(", ");
    return `decommissioning before scaling data nodes from ${decision.replicas} to ${decision.desired}: ${done}/${decision.retiring.length} done (${states}); the StatefulSet keeps ${decision.replicas} replicas until every one is DECOMMISSIONED`;
  }
  if (decision.phase === "blocked") {
    return `data nodes stay at ${decision.replicas} (spec.dataNodes.replicas is ${decision.desired}): ${decision.pods.join(", ")} must be decommissioned first so no block loses its last copy, but the active name node could not be asked: ${decision.error}`;
  }
  return undefined;
}
