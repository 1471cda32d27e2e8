/**
 * Which children a resource no longer wants: the desired-set half of reconciling children, as
 * `kubectl apply --prune` and the kubebuilder and kube-rs controllers do it. Server-side apply
 * creates and corrects what the spec asks for; a child the spec stopped asking for (a removed
 * sink, a renamed one, a dropped rack table) would otherwise run until its owner is deleted.
 */
import { controllerOf, instanceLabels, managedByLabel, managedByValue } from "./apply.js";
import type { KubeObject, ResourceType } from "./kube.js";

/**
 * Kinds never pruned, whatever a controller owns. A claim holds data: a BlockPool that stops
 * asking for its shared edit-log claim (one name node left) must not lose the edit log with it,
 * and with deletionPolicy Retain nothing may delete stored files at all. A claim goes with its
 * owner by garbage collection (deletionPolicy Delete gives it an owner reference) or stays.
 */
export const neverPruned: readonly Pick<ResourceType, "group" | "kind">[] = [
  { group: "", kind: "PersistentVolumeClaim" },
];

export const isPrunable = (type: Pick<ResourceType, "group" | "kind">): boolean =>
  !neverPruned.some((kept) => kept.group === type.group && kept.kind === type.kind);

/** The kinds a controller's desired set covers: those it owns, less the ones never pruned. */
export const prunableTypes = (owns: readonly ResourceType[]): ResourceType[] => owns.filter(isPrunable);

const groupOf = (apiVersion: string): string => (apiVersion.includes("/") ? apiVersion.split("/")[0]! : "");

/** A child's identity across versions of its kind: group, kind, namespace, name. */
const identity = (group: string, kind: string, namespace: string | undefined, name: string) =>
  `${group}/${kind}/${namespace ?? ""}/${name}`;

export interface PruneInput {
  /** The resource whose children these are, as read from the API server (its uid is the owner's). */
  owner: KubeObject;
  /** Every object of each kind the controller owns, as its informers last saw them. */
  owned: readonly { type: ResourceType; objects: readonly KubeObject[] }[];
  /** The children just applied: the whole set the spec asks for. */
  desired: readonly KubeObject[];
  /** Children left where they are though not desired (see Context.applyAndPrune). */
  keep?: (child: KubeObject) => boolean;
}

export interface PruneCandidate {
  type: ResourceType;
  child: KubeObject;
}

/**
 * The children to delete: of a prunable owned kind, in the owner's namespace, labelled as the
 * owner's (`managed-by: tributary` and its name and instance labels), controlled by the owner's
 * uid (a child of an earlier resource of the same name is the garbage collector's), not in the
 * desired set, not kept and not already going. Anything missing one of these marks was not made
 * by this resource, or was taken over by someone who removed them, and is left alone.
 */
export function childrenToPrune({ owner, owned, desired, keep }: PruneInput): PruneCandidate[] {
  const { uid, namespace } = owner.metadata;
  if (!uid) return [];
  const ownerNamespace = namespace ?? "";
  const wanted = new Set(
    desired.map((child) =>
      identity(
        groupOf(child.apiVersion),
        child.kind,
        child.metadata.namespace ?? namespace,
        child.metadata.name,
      ),
    ),
  );
  const labels: Record<string, string> = { ...instanceLabels(owner), [managedByLabel]: managedByValue };
  const candidates: PruneCandidate[] = [];
  for (const { type, objects } of owned) {
    if (!isPrunable(type)) continue;
    for (const child of objects) {
      const { metadata } = child;
      if ((metadata.namespace ?? "") !== ownerNamespace) continue;
      if (metadata.deletionTimestamp) continue;
      const carried = metadata.labels ?? {};
      if (Object.entries(labels).some(([label, value]) => carried[label] !== value)) continue;
      const controller = controllerOf(child);
      if (!controller || controller.uid !== uid) continue;
      if (wanted.has(identity(type.group, type.kind, metadata.namespace, metadata.name))) continue;
      if (keep?.(child)) continue;
      candidates.push({ type, child });
    }
  }
  return candidates;
}
