import { isNotFound, type KubeClient, type KubeObject, type ResourceType } from "./kube.js";

/** The finalizer that holds a resource until its external state is released. */
export const finalizerName = "tributary.dev/finalizer";

/** What the reconciler is asked to do, as kube-rs's `finalizer::Event`. */
export type FinalizerEvent<T> = { type: "apply"; resource: T } | { type: "cleanup"; resource: T };

/**
 * The finalizer dance, so reconcilers never touch finalizer bookkeeping:
 *
 * - not deleting, finalizer missing → add it and stop; the update wakes the next reconcile,
 *   which then applies (so external state is never created before the finalizer guards it);
 * - not deleting, finalizer present → `apply`;
 * - deleting, finalizer present → `cleanup`, then remove the finalizer (only after cleanup
 *   succeeded: a failed cleanup throws and is retried, and the resource stays);
 * - deleting, finalizer absent → nothing left to do.
 *
 * Finalizer changes are merge patches that carry the resourceVersion read, so the API server
 * refuses them (409 Conflict, retried) if anyone changed the object meanwhile: another
 * controller's finalizer is never dropped by a stale list.
 */
export async function finalizer<T extends KubeObject, R>(
  client: KubeClient,
  type: ResourceType,
  resource: T,
  handle: (event: FinalizerEvent<T>) => Promise<R>,
): Promise<R | undefined> {
  const finalizers = resource.metadata.finalizers ?? [];
  const index = finalizers.indexOf(finalizerName);
  if (resource.metadata.deletionTimestamp) {
    if (index < 0) return undefined;
    const result = await handle({ type: "cleanup", resource });
    try {
      await setFinalizers(
        client,
        type,
        resource,
        finalizers.filter((entry) => entry !== finalizerName),
      );
    } catch (error) {
      // Gone already: the deletion completed (nobody else held it).
      if (!isNotFound(error)) throw error;
    }
    return result;
  }
  if (index < 0) {
    await setFinalizers(client, type, resource, [...finalizers, finalizerName]);
    return undefined;
  }
  return handle({ type: "apply", resource });
}

function setFinalizers(client: KubeClient, type: ResourceType, resource: KubeObject, finalizers: string[]) {
  const { namespace, name, resourceVersion } = resource.metadata;
  return client.mergePatch(type, namespace, name, { metadata: { finalizers, resourceVersion } });
}
