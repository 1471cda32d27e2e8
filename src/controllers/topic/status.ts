/**
 * The health of a Topic: its spec and Kafka topic first (a problem there is Degraded, nothing
 * else is), then the rollout of its collector and sink Deployments, then what their pods say
 * when one cannot run (podHealth.ts).
 */
import { ConditionStatus, Reason } from "../../api/conditions.js";
import type { Health } from "../../operator/conditions.js";
import type { KubeObject } from "../../operator/kube.js";
import { problemHealth, type SpecProblem } from "../common.js";
import { type PodProblem, withPodProblem } from "../podHealth.js";

interface DeploymentStatus {
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  updatedReplicas?: number;
  availableReplicas?: number;
}

export interface RoleState {
  role: string;
  desired: number;
  replicas: number;
  ready: number;
  settled: boolean;
}

export function deploymentState(
  role: string,
  desired: number,
  deployment: KubeObject | undefined,
): RoleState {
  const status = (deployment?.status ?? {}) as DeploymentStatus;
  const generation = deployment?.metadata.generation;
  const observed =
    status.observedGeneration !== undefined &&
    generation !== undefined &&
    status.observedGeneration >= generation;
  const ready = status.readyReplicas ?? 0;
  const replicas = status.replicas ?? 0;
  const settled =
    deployment !== undefined &&
    observed &&
    (status.availableReplicas ?? 0) === desired &&
    (status.updatedReplicas ?? 0) === desired &&
    replicas === desired;
  return { role, desired, replicas, ready, settled };
}

/**
 * `problems`: of the spec or the Kafka topic; `pods`: the first pod of the Topic that cannot run.
 * A problem of the Topic itself comes first: its pods may only fail because of it.
 */
export function topicHealth(
  problems: SpecProblem[],
  roles: RoleState[],
  stopped: boolean,
  pods?: PodProblem,
): Health {
  if (problems.length > 0) return problemHealth(problems, "the spec or the Kafka topic");
  return withPodProblem(workloadHealth(roles, stopped), pods);
}

/** Ready once every Deployment has its desired pods available on the current template. */
function workloadHealth(roles: RoleState[], stopped: boolean): Health {
  const waiting = roles.filter((role) => !role.settled);
  if (waiting.length > 0) {
    const summary = waiting.map((role) => `${role.role} ${role.ready}/${role.desired} ready`).join(", ");
    const reason = stopped ? Reason.ScalingDown : Reason.WaitingForChildren;
    return {
      ready: {
        status: ConditionStatus.False,
        reason,
        message: `the Kafka topic matches; waiting for ${summary}`,
      },
      progressing: { status: ConditionStatus.True, reason, message: `waiting for ${summary}` },
      degraded: { status: ConditionStatus.False, reason: Reason.Reconciling, message: "" },
    };
  }
  const summary = roles.map((role) => `${role.ready}/${role.desired} ${role.role}`).join(", ");
  return {
    ready: {
      status: ConditionStatus.True,
      reason: stopped ? Reason.Stopped : Reason.Reconciled,
      message: `the Kafka topic matches the spec${summary ? `; ${summary}` : ""}${stopped ? " (stopped)" : ""}`,
    },
    progressing: { status: ConditionStatus.False, reason: Reason.Reconciled, message: "" },
    degraded: { status: ConditionStatus.False, reason: Reason.Reconciled, message: "" },
  };
}
