import { type Condition, ConditionStatus, ConditionType, findCondition } from "../api/conditions.js";

export type { Condition };

export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message?: string;
}

/**
 * Sets one condition, metav1.Condition style: `lastTransitionTime` moves only when the status
 * flips (so "Ready for 3 days" stays true through a message change); reason, message and
 * observedGeneration always follow the latest reconcile. Returns a new list; the input is kept.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  input: ConditionInput,
  observedGeneration: number | undefined,
  now: Date = new Date(),
): Condition[] {
  const previous = findCondition(conditions, input.type);
  const next: Condition = {
    type: input.type,
    status: input.status,
    observedGeneration,
    lastTransitionTime:
      previous && previous.status === input.status ? previous.lastTransitionTime : formatTime(now),
    reason: input.reason,
    message: input.message ?? "",
  };
  if (observedGeneration === undefined) delete next.observedGeneration;
  const others = (conditions ?? []).filter((condition) => condition.type !== input.type);
  return sortConditions([...others, next]);
}

/** Sets several conditions at once, each with the rule of `setCondition`. */
export function setConditions(
  conditions: readonly Condition[] | undefined,
  inputs: readonly ConditionInput[],
  observedGeneration: number | undefined,
  now: Date = new Date(),
): Condition[] {
  let result = [...(conditions ?? [])];
  for (const input of inputs) result = setCondition(result, input, observedGeneration, now);
  return result;
}

/** The health of a resource as its three conditions; what `status.ts` of each kind computes. */
export interface Health {
  ready: { status: ConditionStatus; reason: string; message?: string };
  progressing: { status: ConditionStatus; reason: string; message?: string };
  degraded: { status: ConditionStatus; reason: string; message?: string };
}

export function healthConditions(
  conditions: readonly Condition[] | undefined,
  health: Health,
  observedGeneration: number | undefined,
  now: Date = new Date(),
): Condition[] {
  return setConditions(
    conditions,
    [
      { type: ConditionType.Ready, ...health.ready },
      { type: ConditionType.Progressing, ...health.progressing },
      { type: ConditionType.Degraded, ...health.degraded },
    ],
    observedGeneration,
    now,
  );
}

/** Ready, Progressing, Degraded first, in that order, then any others by name: stable output, no churn. */
function sortConditions(conditions: Condition[]): Condition[] {
  const rank = (type: string) => {
    const index = (
      [ConditionType.Ready, ConditionType.Progressing, ConditionType.Degraded] as string[]
    ).indexOf(type);
    return index < 0 ? 3 : index;
  };
  return conditions.sort((a, b) => rank(a.type) - rank(b.type) || a.type.localeCompare(b.type));
}

/** RFC 3339 with second precision, as metav1.Time serialises. */
export function formatTime(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

export const isTrue = (conditions: readonly Condition[] | undefined, type: string): boolean =>
  findCondition(conditions, type)?.status === ConditionStatus.True;

export { ConditionStatus, ConditionType, findCondition };
