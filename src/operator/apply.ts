import { type KubeClient, type KubeObject, type OwnerReference, type ResourceType, typeOf } from "./kube.js";

/** The one field manager of everything the operator writes; `kubectl get --show-managed-fields` shows it. */
export const fieldManager = "tributary";

/** Labels every child carries: the owned-child informers select on `managed-by`, humans on the rest. */
export const managedByLabel = "app.kubernetes.io/managed-by";
export const managedByValue = "tributary";

/** The label that names the resource a child (and each pod of a child) belongs to. */
export const instanceLabel = "app.kubernetes.io/instance";

/**
 * Labels every child of a resource carries, whatever its role. Pods carry them too, though
 * their owner is a ReplicaSet or a StatefulSet: they are how a pod is traced to its resource,
 * and with `managed-by` how pruning tells the resource's children from anything else.
 */
export function instanceLabels(resource: KubeObject): Record<string, string> {
  return {
    "app.kubernetes.io/name": resource.kind.toLowerCase(),
    [instanceLabel]: resource.metadata.name,
  };
}

/**
 * The controller owner reference of a child: the garbage collector deletes the child with its
 * parent, and with blockOwnerDeletion a foreground deletion of the parent waits for it.
 */
export function ownerReference(parent: {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; uid?: string };
}): OwnerReference {
  const { name, uid } = parent.metadata;
  if (!name || !uid) {
    throw new Error(
      `ownerReference: ${parent.kind} ${name ?? "<unnamed>"} has no uid yet (was it read from the API server?)`,
    );
  }
  return {
    apiVersion: parent.apiVersion,
    kind: parent.kind,
    name,
    uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The owner reference with controller: true, which maps a child event back to its parent. */
export function controllerOf(object: KubeObject): OwnerReference | undefined {
  return object.metadata.ownerReferences?.find((reference) => reference.controller);
}

/**
 * Server-side applies children in order. The apply body is the whole desired object: fields
 * the operator stops generating are released (and removed when nobody else owns them), and
 * a hand edit of an owned field is overwritten: the cure for drift.
 */
export async function applyChildren(
  client: KubeClient,
  children: readonly KubeObject[],
  knownTypes: readonly ResourceType[],
): Promise<KubeObject[]> {
  const applied: KubeObject[] = [];
  for (const child of children) {
    applied.push(await client.apply(typeOf(child, [...knownTypes]), withoutStatus(child), fieldManager));
  }
  return applied;
}

/**
 * Deletes children a resource no longer wants (prune.ts chose them from the cache), each only
 * as it was seen: uid and resourceVersion are preconditions, so a child recreated or edited
 * since (its owner reference removed to keep it, say) answers 409 and the reconcile runs again
 * on a fresher cache. Background propagation: the garbage collector removes a Deployment's
 * ReplicaSets and pods after it.
 */
export async function deleteChildren(
  client: KubeClient,
  children: readonly { type: ResourceType; child: KubeObject }[],
): Promise<void> {
  for (const { type, child } of children) {
    const { namespace, name, uid, resourceVersion } = child.metadata;
    await client.delete(type, namespace, name, "Background", { uid, resourceVersion });
  }
}

/**
 * Writes `status` through the status subresource with server-side apply, so spec and metadata
 * are untouched and the status write never conflicts with a user's spec edit.
 */
export function applyStatus<S>(
  client: KubeClient,
  type: ResourceType,
  object: { metadata: { name?: string; namespace?: string } },
  status: S,
): Promise<KubeObject> {
  const name = object.metadata.name;
  if (!name) throw new Error(`applyStatus: ${type.kind} without a name`);
  return client.apply(
    type,
    {
      apiVersion: type.group ? `${type.group}/${type.version}` : type.version,
      kind: type.kind,
      metadata: { name, namespace: object.metadata.namespace },
      status,
    },
    fieldManager,
    "status",
  );
}

function withoutStatus(object: KubeObject): KubeObject {
  if (object.status === undefined) return object;
  const { status: _status, ...rest } = object;
  return rest as KubeObject;
}
