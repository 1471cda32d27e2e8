/**
 * What every reconciler shares: parsing the stored spec, the standard labels of children,
 * and the status written for the states every kind knows (invalid spec, paused, stopped).
 */
import { ConditionStatus, ConditionType, findCondition, Reason } from "../api/conditions.js";
import { parseSpec, type ResourceDefinition, type SpecOf } from "../api/resource.js";
import { instanceLabel, instanceLabels, managedByLabel, managedByValue } from "../operator/apply.js";
import { type Condition, type Health, healthConditions } from "../operator/conditions.js";
import { type Context, TerminalError } from "../operator/controller.js";
import type { KubeObject, ResourceType } from "../operator/kube.js";
import type { PodProblem } from "./podHealth.js";

/** The REST coordinates of a resource definition, for the runtime. */
export function resourceType(definition: ResourceDefinition): ResourceType {
  return {
    group: definition.group,
    version: definition.version,
    kind: definition.kind,
    plural: definition.plural,
  };
}

/** Parses and defaults the spec; a spec zod refuses is a terminal error with every field named. */
export function specOf<D extends ResourceDefinition>(definition: D, resource: KubeObject): SpecOf<D> {
  const parsed = parseSpec(definition, resource as Parameters<typeof parseSpec>[1]);
  if (!parsed.ok) throw new TerminalError(Reason.InvalidSpec, parsed.message);
  return parsed.spec;
}

// Defined beside managed-by in the runtime, which prunes children by these labels.
export { instanceLabel, instanceLabels };

/** Labels every child carries; the selector labels are the stable subset. */
export function selectorLabels(resource: KubeObject, component: string): Record<string, string> {
  return { ...instanceLabels(resource), "app.kubernetes.io/component": component };
}

export function childLabels(resource: KubeObject, component: string): Record<string, string> {
  return {
    ...selectorLabels(resource, component),
    "app.kubernetes.io/part-of": "tributary",
    [managedByLabel]: managedByValue,
  };
}

export type StoredStatus = Record<string, unknown> & { conditions?: Condition[] };

/** A StatefulSet's per-pod `data` claim: the role's size and, when given, its storage class. */
export function dataClaimTemplate(
  resource: KubeObject,
  component: string,
  storage: { size: string | number; storageClassName?: string | undefined },
) {
  return {
    metadata: { name: "data", labels: childLabels(resource, component) },
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: String(storage.size) } },
      ...(storage.storageClassName ? { storageClassName: storage.storageClassName } : {}),
    },
  };
}

/**
 * What happens to a StatefulSet's claims: deletionPolicy Delete releases the stored data with the
 * resource; Retain keeps the claims for a new resource (or a human) to take over. Scaling down
 * always keeps them.
 */
export function claimRetention(deletionPolicy: string | undefined) {
  return { whenDeleted: deletionPolicy === "Delete" ? "Delete" : "Retain", whenScaled: "Retain" };
}

export const storedStatus = (resource: KubeObject): StoredStatus => (resource.status ?? {}) as StoredStatus;

/** Writes `fields` plus the three conditions and observedGeneration as the whole status. */
export async function writeHealth<T extends KubeObject>(
  context: Context<T>,
  resource: T,
  health: Health,
  fields: Record<string, unknown> = {},
): Promise<void> {
  const previous = storedStatus(resource);
  const generation = resource.metadata.generation;
  await context.writeStatus(resource, {
    ...fields,
    observedGeneration: generation,
    conditions: healthConditions(previous.conditions, health, generation, context.now()),
  });
}

/** A problem in the spec the CRD schema cannot see: reported as Degraded, not retried. */
export interface SpecProblem {
  reason: string;
  message: string;
}

/**
 * Reports spec problems as conditions and a Warning event. Nothing is applied for an
 * invalid spec, so what runs keeps running as the last valid spec made it.
 */
export async function reportProblems<T extends KubeObject>(
  context: Context<T>,
  resource: T,
  problems: SpecProblem[],
  fields: Record<string, unknown> = {},
): Promise<void> {
  await writeHealth(context, resource, problemHealth(problems), fields);
  const message = problems.map((problem) => problem.message).join("; ");
  await context.event(resource, "Warning", problems[0]!.reason, message);
}

/**
 * The health of a resource whose problems (the first one's reason, every message) keep it from
 * running; `fixing` names what Progressing waits for.
 */
export function problemHealth(problems: SpecProblem[], fixing = "the spec"): Health {
  const first = problems[0]!;
  const message = problems.map((problem) => problem.message).join("; ");
  return {
    ready: { status: ConditionStatus.False, reason: first.reason, message },
    progressing: {
      status: ConditionStatus.False,
      reason: first.reason,
      message: `waiting for ${fixing} to be fixed`,
    },
    degraded: { status: ConditionStatus.True, reason: first.reason, message },
  };
}

/**
 * A Warning event when the resource turns Degraded for its pods, beside the kubelet's own events
 * in `kubectl describe`; not again while the stored Degraded already says so, so a pod in
 * CrashLoopBackOff does not add an event on every reconcile.
 */
export async function announcePodProblem<T extends KubeObject>(
  context: Context<T>,
  resource: T,
  health: Health,
  problem: PodProblem | undefined,
): Promise<void> {
  if (!problem || health.degraded.reason !== problem.reason) return;
  const previous = findCondition(storedStatus(resource).conditions, ConditionType.Degraded);
  if (previous?.status === ConditionStatus.True && previous.reason === problem.reason) return;
  await context.event(resource, "Warning", problem.reason, problem.message);
}

/** A paused resource: Ready as it was left, its spec changes ignored until the pause ends. */
export const pausedHealth: Health = {
  ready: {
    status: ConditionStatus.True,
    reason: Reason.ReconciliationPaused,
    message: "reconciliation is paused",
  },
  progressing: {
    status: ConditionStatus.False,
    reason: Reason.ReconciliationPaused,
    message: "spec changes are ignored while spec.clusterOperation.reconciliationPaused is true",
  },
  degraded: { status: ConditionStatus.False, reason: Reason.ReconciliationPaused, message: "" },
};

export function withOwner<T extends KubeObject>(
  child: T,
  owner: KubeObject["metadata"]["ownerReferences"],
): T {
  return { ...child, metadata: { ...child.metadata, ownerReferences: owner } };
}
