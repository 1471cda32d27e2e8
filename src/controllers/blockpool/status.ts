/**
 * The health and figures of a BlockPool. The active name node knows what matters (is a name node
 * active, how many data nodes serve, are blocks missing); the StatefulSets say whether the pods
 * are rolled out. When no name node can be reached (the operator runs outside the cluster, the
 * pods are starting) health falls back to the StatefulSets alone, and says so.
 */
import type { BlockPoolSpec, BlockPoolStatus } from "../../api/blockpool.js";
import { ConditionStatus, Reason } from "../../api/conditions.js";
import type { Health } from "../../operator/conditions.js";
import type { KubeObject } from "../../operator/kube.js";
import { type PodProblem, withPodProblem } from "../podHealth.js";
import { AdminState, type ScaleDecision, scaleDownMessage } from "./decommission.js";
import type { NameNodeAnswer, NameNodeStatus } from "./nameNodeClient.js";
import { erasureCodingUnits } from "./validate.js";

interface StatefulSetStatus {
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  updatedReplicas?: number;
}

export interface RoleState {
  role: string;
  desired: number;
  ready: number;
  settled: boolean;
}

/** How far a StatefulSet is from its desired replicas; absent (not yet seen) counts as nothing ready. */
export function roleState(role: string, desired: number, statefulSet: KubeObject | undefined): RoleState {
  const status = (statefulSet?.status ?? {}) as StatefulSetStatus;
  const generation = statefulSet?.metadata.generation;
  const observed =
    status.observedGeneration !== undefined &&
    generation !== undefined &&
    status.observedGeneration >= generation;
  const ready = status.readyReplicas ?? 0;
  const settled =
    statefulSet !== undefined &&
    observed &&
    ready === desired &&
    (status.updatedReplicas ?? 0) === desired &&
    (status.replicas ?? 0) === desired;
  return { role, desired, ready, settled };
}

/** Health from the StatefulSets alone: every pod ready and on the current revision. */
export function statefulSetHealth(roles: RoleState[], stopped: boolean): Health {
  if (roles.every((role) => role.settled)) {
    if (stopped) {
      return {
        ready: {
          status: ConditionStatus.True,
          reason: Reason.Stopped,
          message: "stopped: every role is scaled to 0, volumes kept",
        },
        progressing: { status: ConditionStatus.False, reason: Reason.Stopped, message: "" },
        degraded: { status: ConditionStatus.False, reason: Reason.Stopped, message: "" },
      };
    }
    const summary = roles.map((role) => `${role.ready}/${role.desired} ${role.role}`).join(", ");
    return {
      ready: { status: ConditionStatus.True, reason: Reason.ChildrenReady, message: `ready: ${summary}` },
      progressing: { status: ConditionStatus.False, reason: Reason.Reconciled, message: "" },
      degraded: { status: ConditionStatus.False, reason: Reason.Reconciled, message: "" },
    };
  }
  const waiting = roles
    .filter((role) => !role.settled)
    .map((role) => `${role.role} ${role.ready}/${role.desired} ready`)
    .join(", ");
  const reason = stopped ? Reason.ScalingDown : Reason.WaitingForChildren;
  return {
    ready: { status: ConditionStatus.False, reason, message: `waiting for ${waiting}` },
    progressing: { status: ConditionStatus.True, reason, message: `waiting for ${waiting}` },
    degraded: { status: ConditionStatus.False, reason: Reason.Reconciling, message: "" },
  };
}

/** What the name nodes said, boiled down. */
export interface NameNodeView {
  /** The name node that reported itself active, with its report. */
  active?: { pod: string; status: NameNodeStatus };
  standby?: string;
  /** `pod is <haState>` for each name node that answered but is not active. */
  inactive: string[];
  /** `pod: why` for each name node that did not answer. */
  unreachable: string[];
  /** Whether any name node answered: health from the name nodes, or from the StatefulSets alone. */
  answered: boolean;
}

export function nameNodeView(answers: readonly NameNodeAnswer[]): NameNodeView {
  const view: NameNodeView = { inactive: [], unreachable: [], answered: false };
  for (const answer of answers) {
    if ("error" in answer) {
      view.unreachable.push(`${answer.pod}: ${answer.error}`);
      continue;
    }
    view.answered = true;
    const { haState } = answer.status;
    if (haState === "active" && !view.active) {
      view.active = { pod: answer.pod, status: answer.status };
      continue;
    }
    view.inactive.push(`${answer.pod} is ${haState}`);
    if (haState === "standby" && !view.standby) view.standby = answer.pod;
  }
  return view;
}

const whole = (value: number) => Math.max(0, Math.trunc(value));

/**
 * The status figures from the active name node's report. Without an active name node only what
 * is known stays: the standby's name and the spec's coding policies.
 */
export function nameNodeFigures(view: NameNodeView, spec: BlockPoolSpec): Partial<BlockPoolStatus> {
  const specPolicies = [...new Set(spec.erasureCoding.map((directory) => directory.policy))];
  const standby = view.standby ? { standbyNameNode: view.standby } : {};
  if (!view.active) return { ...standby, erasureCodingPolicies: specPolicies };
  const { pod, status } = view.active;
  const optional = (name: keyof BlockPoolStatus, value: number | undefined) =>
    value === undefined ? {} : { [name]: whole(value) };
  return {
    activeNameNode: pod,
    ...standby,
    liveDataNodes: whole(status.liveDataNodes),
    ...optional("deadDataNodes", status.deadDataNodes),
    decommissioningDataNodes: status.datanodes.filter(
      (node) => node.adminState === AdminState.DecommissionInProgress,
    ).length,
    ...optional("capacityBytes", status.capacity),
    ...optional("usedBytes", status.used),
    ...optional("files", status.files),
    ...optional("blocks", status.blocks),
    ...optional("underReplicatedBlocks", status.underReplicatedBlocks),
    ...optional("missingBlocks", status.missingBlocks),
    erasureCodingPolicies: status.erasureCodingPolicies
      ? [...new Set(status.erasureCodingPolicies.map((entry) => entry.policy))].sort()
      : specPolicies,
  };
}

/** Data nodes the pool needs to write at full strength: the replication, or k+m of its widest code. */
export function neededDataNodes(spec: BlockPoolSpec): { count: number; why: string } {
  let count = spec.replication;
  let why = `replication ${spec.replication}`;
  for (const directory of spec.erasureCoding) {
    const units = erasureCodingUnits[directory.policy];
    if (units && units.data + units.parity > count) {
      count = units.data + units.parity;
      why = `${directory.policy} on ${directory.path}`;
    }
  }
  return { count, why };
}

export interface PoolHealthInput {
  roles: RoleState[];
  stopped: boolean;
  spec: BlockPoolSpec;
  /** What the name nodes said; undefined when they were not asked (stopped). */
  nameNodes: NameNodeView | undefined;
  scale: ScaleDecision;
  /** The first name-node or data-node pod that cannot run (podHealth.ts), if any. */
  pods?: PodProblem;
}

const plural = (count: number, noun: string) => `${count} ${noun}${count === 1 ? "" : "s"}`;

/**
 * Ready needs an active name node and enough live data nodes; missing blocks make the pool
 * Degraded (and not Ready: some files cannot be read); under-replicated blocks leave it Ready,
 * named in the message, since the name node is repairing them. Progressing is the StatefulSets'
 * rollout, or a scale-down waiting for its decommission. A pod that cannot run makes the pool
 * Degraded with the pod's reason, and a rollout that waits for it no longer Progressing; missing
 * blocks, the graver news, keep Degraded's reason.
 */
export function blockPoolHealth(input: PoolHealthInput): Health {
  return withPodProblem(poolHealth(input), input.pods);
}

function poolHealth(input: PoolHealthInput): Health {
  const { roles, stopped, spec, nameNodes, scale } = input;
  const health = statefulSetHealth(roles, stopped);
  if (stopped || !nameNodes) return health;
  const waiting = scaleDownMessage(scale);
  if (waiting) {
    health.progressing = {
      status: ConditionStatus.True,
      reason: scale.phase === "blocked" ? Reason.NameNodeUnreachable : Reason.Decommissioning,
      message: waiting,
    };
  }
  if (!nameNodes.answered) {
    const why = nameNodes.unreachable.join("; ");
    health.ready.message = `${health.ready.message}; name nodes not reachable from the operator (${why}), so health comes from the StatefulSets alone`;
    return health;
  }
  const { active } = nameNodes;
  if (!active) {
    const others = [...nameNodes.inactive, ...nameNodes.unreachable].join("; ");
    health.ready = {
      status: ConditionStatus.False,
      reason: Reason.NoActiveNameNode,
      message: `no name node is active (${others}): the pool cannot serve until one takes over`,
    };
    return health;
  }
  const status = active.status;
  const live = whole(status.liveDataNodes);
  const missing = whole(status.missingBlocks ?? 0);
  const underReplicated = whole(status.underReplicatedBlocks ?? 0);
  const needed = neededDataNodes(spec);
  const summary = [
    `active name node ${active.pod}${nameNodes.standby ? `, standby ${nameNodes.standby}` : ""}`,
    `${plural(live, "live data node")}`,
    ...(status.files === undefined ? [] : [`${plural(whole(status.files), "file")} and directories`]),
    ...(status.blocks === undefined ? [] : [plural(whole(status.blocks), "block")]),
  ].join(", ");
  const caveats = [
    ...(underReplicated > 0
      ? [`; ${plural(underReplicated, "block")} under-replicated, being re-replicated`]
      : []),
    // Serving, but a failure of the active would not be taken over.
    ...(spec.nameNodes.replicas > 1 && !nameNodes.standby
      ? [`; no standby to take over (${[...nameNodes.inactive, ...nameNodes.unreachable].join("; ")})`]
      : []),
  ].join("");
  if (missing > 0) {
    const message = `${plural(missing, "block")} missing: no live replica, or fewer than k fragments of a coded block group; the files that use them cannot be read until a data node holding them returns (${summary}${caveats})`;
    health.ready = { status: ConditionStatus.False, reason: Reason.MissingBlocks, message };
    health.degraded = { status: ConditionStatus.True, reason: Reason.MissingBlocks, message };
    return health;
  }
  if (live < needed.count) {
    health.ready = {
      status: ConditionStatus.False,
      reason: Reason.InsufficientDataNodes,
      message: `${plural(live, "live data node")}, but ${needed.why} needs ${needed.count} (${summary}${caveats})`,
    };
    return health;
  }
  health.ready = {
    status: ConditionStatus.True,
    reason: underReplicated > 0 ? Reason.UnderReplicated : Reason.Serving,
    message: `${summary}${caveats}`,
  };
  return health;
}
