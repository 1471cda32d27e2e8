/**
 * The pool's cluster secret (see src/dataplane/storage/clusterAuth.ts): 32 random bytes in the
 * Secret `<pool>-cluster-secret`, owned by the BlockPool, mounted into name-node and data-node
 * pods, and read by the operator to sign its administration calls (`/admin/decommission`).
 *
 * Created once and never rewritten: a new secret would lock out every pod still running with
 * the old one until it restarts. So it is created only when absent, not server-side applied
 * (an apply of fresh random bytes would replace it at every reconcile). Read by name with
 * `get`, never listed or watched: the operator keeps no Secrets in its caches.
 */
import { randomBytes } from "node:crypto";
import { ownerReference } from "../../operator/apply.js";
import { builtin, isConflict, type KubeClient, type KubeObject } from "../../operator/kube.js";
import { childLabels } from "../common.js";

export const clusterSecretName = (pool: string) => `${pool}-cluster-secret`;
/** The key of the Secret holding the bytes, and so the file name in the mount. */
export const clusterSecretKey = "secret";
export const clusterSecretMountPath = "/etc/tributary/cluster-secret";

/** The Secret for a pool, pure: `secret` is the 32 random bytes. */
export function desiredClusterSecret(pool: KubeObject, secret: Buffer): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: clusterSecretName(pool.metadata.name),
      namespace: pool.metadata.namespace,
      labels: childLabels(pool, "cluster-secret"),
      ownerReferences: [ownerReference(pool)],
    },
    type: "Opaque",
    data: { [clusterSecretKey]: secret.toString("base64") },
  } as KubeObject;
}

/**
 * The pool's secret, created with fresh random bytes when absent. Two operators (or a retry)
 * racing to create it both end up with the one the API server stored.
 */
export async function ensureClusterSecret(client: KubeClient, pool: KubeObject): Promise<Buffer> {
  const { namespace = "", name } = pool.metadata;
  let stored = await client.find(builtin.secret, namespace, clusterSecretName(name));
  if (!stored) {
    try {
      stored = await client.create(builtin.secret, desiredClusterSecret(pool, randomBytes(32)));
    } catch (error) {
      if (!isConflict(error)) throw error;
      stored = await client.get(builtin.secret, namespace, clusterSecretName(name));
    }
  }
  const encoded = (stored as { data?: Record<string, string> }).data?.[clusterSecretKey];
  if (!encoded)
    throw new Error(
      `Secret ${namespace}/${clusterSecretName(name)} has no key '${clusterSecretKey}': delete it and the operator creates a new one (then restart the pool's pods)`,
    );
  return Buffer.from(encoded, "base64");
}
