/**
 * The health of a BlockPool from its StatefulSets. Until the name nodes report block counts
 * themselves, readiness is the StatefulSets': every pod ready and on the current revision.
 */
import { ConditionStatus, Reason } from "../../api/conditions.js";
import type { Health } from "../../operator/conditions.js";
import type { KubeObject } from "../../operator/kube.js";

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

export function blockPoolHealth(roles: RoleState[], stopped: boolean): Health {
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
