/**
 * Rack awareness from the cluster's own failure domains: each data-node pod's rack is the value
 * of a label (spec.rackAwareness.topologyKey, the zone by default) on the node it runs on. The
 * name nodes read the table from a ConfigMap mounted as a file and re-read it when the kubelet
 * updates it, so a pod that moves changes racks without a restart.
 */
import type { KubeObject } from "../../operator/kube.js";

export const topologyConfigMapName = (pool: string) => `${pool}-topology`;
/** The ConfigMap key, and so the file name under the mount. */
export const topologyTableKey = "topology.table";
export const topologyMountPath = "/etc/tributary/topology";
/** HDFS's rack of a node whose location is unknown. */
export const defaultRack = "/default-rack";

/**
 * One line `<pod-name> /<zone>` per data-node pod that has been scheduled (spec.nodeName), in
 * ordinal order; pods on nodes without the label (or not yet seen) are on `/default-rack`.
 */
export function topologyTable(
  pods: readonly KubeObject[],
  nodes: readonly KubeObject[],
  topologyKey: string,
): string {
  const zoneOf = new Map(nodes.map((node) => [node.metadata.name, node.metadata.labels?.[topologyKey]]));
  return pods
    .map((pod) => ({
      pod: pod.metadata.name,
      node: (pod.spec as { nodeName?: string } | undefined)?.nodeName,
    }))
    .filter((entry): entry is { pod: string; node: string } => Boolean(entry.node))
    .sort((a, b) => a.pod.localeCompare(b.pod, "en", { numeric: true }))
    .map(({ pod, node }) => {
      const zone = zoneOf.get(node);
      return `${pod} ${zone ? `/${zone}` : defaultRack}\n`;
    })
    .join("");
}
