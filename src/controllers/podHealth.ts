/**
 * What is wrong with a resource's pods, read from their status: the one problem a user should
 * see first, in the kubelet's or the scheduler's own words. A Deployment or StatefulSet only
 * counts ready pods, so a pod that can never start (a wrong image, a missing Secret, a process
 * that crashes at once) would otherwise leave its resource Progressing for ever.
 */
import { ConditionStatus, Reason } from "../api/conditions.js";
import { managedByLabel, managedByValue } from "../operator/apply.js";
import type { Health } from "../operator/conditions.js";
import type { WatchDefinition } from "../operator/controller.js";
import { builtin, type KubeObject, objectKey } from "../operator/kube.js";
import { instanceLabel } from "./common.js";

/**
 * Waiting reasons of a container that will not run until something changes: the image, the
 * pod's configuration (a Secret or ConfigMap it names), or the process that keeps exiting.
 * Others (ContainerCreating, PodInitializing) are steps of a normal start.
 */
export const failingWaitingReasons: ReadonlySet<string> = new Set([
  "CrashLoopBackOff",
  "ImagePullBackOff",
  "ErrImagePull",
  "CreateContainerConfigError",
  "CreateContainerError",
  "InvalidImageName",
  "RunContainerError",
]);

export interface PodProblem {
  /** The condition reason: PodsFailing or PodsUnschedulable. */
  reason: typeof Reason.PodsFailing | typeof Reason.PodsUnschedulable;
  pod: string;
  /** The container at fault; absent for a pod that is not scheduled. */
  container?: string;
  /** The kubelet's or scheduler's reason: CrashLoopBackOff, OOMKilled, Unschedulable… */
  cause: string;
  /** `pod <name>, container <name>: <cause>: <what the kubelet said>`, for the condition. */
  message: string;
}

interface ContainerState {
  waiting?: { reason?: string; message?: string };
  running?: { startedAt?: string };
  terminated?: { exitCode?: number; signal?: number; reason?: string; message?: string };
}

interface ContainerStatus {
  name: string;
  ready?: boolean;
  restartCount?: number;
  state?: ContainerState;
  lastState?: ContainerState;
}

interface PodCondition {
  type: string;
  status: string;
  reason?: string;
  lastTransitionTime?: string;
  message?: string;
}

interface PodStatus {
  phase?: string;
  conditions?: PodCondition[];
  initContainerStatuses?: ContainerStatus[];
  containerStatuses?: ContainerStatus[];
}

interface PodSpec {
  containers?: { name: string; resources?: { limits?: { memory?: string | number } } }[];
  initContainers?: { name: string; resources?: { limits?: { memory?: string | number } } }[];
}

const statusOf = (pod: KubeObject) => (pod.status ?? {}) as PodStatus;

/** A termination message can be a whole log tail (FallbackToLogsOnError): the status keeps its start. */
const terminationMessageLimit = 512;

/**
 * Pods that are going or gone are not the workload's future: a pod being deleted (an old
 * revision, a scale-down) and a pod that ended (evicted, completed), which its controller has
 * already replaced.
 */
function isCurrent(pod: KubeObject): boolean {
  const phase = statusOf(pod).phase;
  return !pod.metadata.deletionTimestamp && phase !== "Failed" && phase !== "Succeeded";
}

const isReady = (pod: KubeObject) =>
  (statusOf(pod).conditions ?? []).some(
    (condition) => condition.type === "Ready" && condition.status === ConditionStatus.True,
  );

/** ` (last exit 1)`, ` (last exit 137, OOMKilled: …)`: how the container ended the last time. */
function lastExit(status: ContainerStatus): string {
  const terminated = status.lastState?.terminated;
  if (!terminated) return "";
  const code = terminated.exitCode ?? terminated.signal;
  const reason = terminated.reason && terminated.reason !== "Error" ? `, ${terminated.reason}` : "";
  const said = terminated.message?.trim();
  const message = said
    ? `: ${said.length > terminationMessageLimit ? `${said.slice(0, terminationMessageLimit)}…` : said}`
    : "";
  return ` (last exit ${code ?? "unknown"}${reason}${message})`;
}

function memoryLimit(pod: KubeObject, container: string): string | number | undefined {
  const spec = (pod.spec ?? {}) as PodSpec;
  return [...(spec.initContainers ?? []), ...(spec.containers ?? [])].find(
    (candidate) => candidate.name === container,
  )?.resources?.limits?.memory;
}

function containerProblem(pod: KubeObject, status: ContainerStatus): PodProblem | undefined {
  const where = `pod ${pod.metadata.name}, container ${status.name}`;
  const problem = (cause: string, detail: string): PodProblem => ({
    reason: Reason.PodsFailing,
    pod: pod.metadata.name,
    container: status.name,
    cause,
    message: `${where}: ${cause}: ${detail}`,
  });
  const { waiting, terminated } = status.state ?? {};
  const killedForMemory =
    terminated?.reason === "OOMKilled" ||
    (waiting !== undefined && status.lastState?.terminated?.reason === "OOMKilled");
  if (killedForMemory) {
    // Checked before the back-off: CrashLoopBackOff is what the kubelet does, memory is why.
    const limit = memoryLimit(pod, status.name);
    const restarts = status.restartCount ?? 0;
    const restarting = waiting?.reason
      ? `; ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ""}`
      : "";
    const why =
      limit === undefined
        ? "killed for running out of memory on its node, without a memory limit of its own (set the role's resources)"
        : `killed for using more memory than its limit of ${limit} (raise the role's resources.limits.memory)`;
    return problem(
      "OOMKilled",
      `${why}, restarted ${restarts} time${restarts === 1 ? "" : "s"}${restarting}`,
    );
  }
  if (waiting?.reason && failingWaitingReasons.has(waiting.reason)) {
    const said = waiting.message?.trim() || "no message from the kubelet";
    const exited =
      waiting.reason === "CrashLoopBackOff" || waiting.reason === "RunContainerError" ? lastExit(status) : "";
    return problem(waiting.reason, `${said}${exited}`);
  }
  return undefined;
}

/**
 * How long a pod may stay unschedulable before it counts as a problem: a cluster autoscaler adds
 * a node for it within minutes, and Kubernetes' own Deployments wait 10 minutes
 * (progressDeadlineSeconds) before they call a rollout stuck.
 */
export const unschedulableGraceMs = 5 * 60_000;

function unschedulableTooLong(since: string | undefined, now: number): boolean {
  const at = since ? Date.parse(since) : Number.NaN;
  return Number.isNaN(at) || now - at >= unschedulableGraceMs;
}

function problemOf(pod: KubeObject, now: number): PodProblem | undefined {
  const status = statusOf(pod);
  const scheduled = status.conditions?.find((condition) => condition.type === "PodScheduled");
  // A ready pod runs somewhere, whatever a stale scheduling condition still says.
  if (
    scheduled?.status === ConditionStatus.False &&
    scheduled.reason === "Unschedulable" &&
    !isReady(pod) &&
    unschedulableTooLong(scheduled.lastTransitionTime, now)
  ) {
    return {
      reason: Reason.PodsUnschedulable,
      pod: pod.metadata.name,
      cause: "Unschedulable",
      message: `pod ${pod.metadata.name}: Unschedulable: ${scheduled.message?.trim() || "no node fits the pod"}`,
    };
  }
  // Init containers run first: while one fails, the others have not started.
  for (const container of [...(status.initContainerStatuses ?? []), ...(status.containerStatuses ?? [])]) {
    const found = containerProblem(pod, container);
    if (found) return found;
  }
  return undefined;
}

/**
 * The first problem among a workload's pods, by pod name so the message does not flip between
 * pods with every look; the message says how many more pods have one. Undefined when every pod
 * runs or is on its way.
 */
export function podProblem(pods: readonly KubeObject[], now = Date.now()): PodProblem | undefined {
  const problems = pods
    .filter(isCurrent)
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
    .flatMap((pod) => problemOf(pod, now) ?? []);
  const first = problems[0];
  if (!first || problems.length === 1) return first;
  const others = problems.length - 1;
  return { ...first, message: `${first.message}; ${others} more pod${others === 1 ? "" : "s"} failing` };
}

/**
 * The health with the pods' problem in it. Degraded turns True with the problem (unless a problem
 * of the resource itself is already reported there), and a Ready or Progressing that only waited
 * for the workloads' pods (WaitingForChildren) says what they wait on and stops claiming progress:
 * the rollout cannot finish until someone changes the image, the config or the limits. Anything
 * else (an inactive name node, a decommission under way) stays as it is. Without a problem the
 * health is returned unchanged, so a recovered pod brings back what the workloads say.
 */
export function withPodProblem(health: Health, problem: PodProblem | undefined): Health {
  if (!problem) return health;
  const { reason, message } = problem;
  const waitsForPods = (condition: Health["ready"]) => condition.reason === Reason.WaitingForChildren;
  return {
    ready: waitsForPods(health.ready) ? { status: ConditionStatus.False, reason, message } : health.ready,
    progressing: waitsForPods(health.progressing)
      ? { status: ConditionStatus.False, reason, message: `the rollout cannot finish: ${message}` }
      : health.progressing,
    degraded:
      health.degraded.status === ConditionStatus.True
        ? health.degraded
        : { status: ConditionStatus.True, reason, message },
  };
}

/**
 * What a reconcile reads of a pod, for a watch's fingerprint: the pod's phase, readiness and
 * scheduling, and each container's readiness and why it waits or ended. The kubelet's other
 * status writes (timestamps, back-off messages counting up) change none of it.
 */
export function podHealthFingerprint(pod: KubeObject): unknown {
  const status = statusOf(pod);
  const condition = (type: string) => {
    const found = status.conditions?.find((entry) => entry.type === type);
    return found ? `${found.status}/${found.reason ?? ""}` : "";
  };
  const containers = [...(status.initContainerStatuses ?? []), ...(status.containerStatuses ?? [])].map(
    (container) => [
      container.name,
      container.ready ?? false,
      container.state?.waiting?.reason ?? (container.state?.running ? "running" : ""),
      container.state?.terminated?.reason ?? "",
      container.lastState?.terminated?.reason ?? "",
    ],
  );
  return [status.phase ?? "", condition("PodScheduled"), condition("Ready"), containers];
}

/**
 * Wakes a resource when the health of one of its pods changes. Pods are owned by ReplicaSets and
 * StatefulSets, not by the resource, so the owned-children informers never see them; the instance
 * label every generated pod carries names the resource. `alsoRead` adds what else the reconcile
 * reads of a pod (a data node's node name, for its rack).
 */
export function podWatch(
  kind: string,
  alsoRead: (pod: KubeObject) => unknown = () => null,
): WatchDefinition<KubeObject> {
  return {
    type: builtin.pod,
    labelSelector: `${managedByLabel}=${managedByValue},app.kubernetes.io/name=${kind.toLowerCase()}`,
    fingerprint: (pod) => [podHealthFingerprint(pod), alsoRead(pod)],
    map: (pod, resources) => {
      const instance = pod.metadata.labels?.[instanceLabel];
      if (!instance) return [];
      const key = `${pod.metadata.namespace}/${instance}`;
      return resources().some((resource) => objectKey(resource) === key) ? [key] : [];
    },
  };
}
