/**
 * YarnQueue: validate the queue against its siblings → status. The resource manager and node
 * managers are reconciled here once the data plane provides them.
 */
import { parseSpec } from "../../api/resource.js";
import { type YarnQueueSpec, yarnQueueDefinition } from "../../api/yarnqueue.js";
import type { KubeObject } from "../../operator/kube.js";
import { acceptingController } from "../accepted.js";
import { type QueueNode, queuePlacement, validateQueue } from "./validate.js";

/** Peers whose spec parses; one broken queue reports its own problem and is left out of sums. */
function queueNodes(peers: KubeObject[]): Array<QueueNode & { spec: YarnQueueSpec }> {
  return peers.flatMap((peer) => {
    const parsed = parseSpec(yarnQueueDefinition, peer as Parameters<typeof parseSpec>[1]);
    return parsed.ok ? [{ name: peer.metadata.name, spec: parsed.spec }] : [];
  });
}

const clusterOf = (queue: KubeObject) => ((queue.spec ?? {}) as Partial<YarnQueueSpec>).cluster ?? "default";

export const yarnQueueController = acceptingController({
  definition: yarnQueueDefinition,
  validate: (spec, resource, peers) =>
    validateQueue({ name: resource.metadata.name, spec }, queueNodes(peers)),
  statusFields: (spec, resource, peers) => {
    const {
      conditions: _c,
      observedGeneration: _g,
      ...observed
    } = (resource.status ?? {}) as Record<string, unknown>;
    return { ...observed, ...queuePlacement({ name: resource.metadata.name, spec }, queueNodes(peers)) };
  },
  // A capacity changed in one queue changes the sum its siblings are judged by.
  related: (resource, peers) =>
    peers
      .filter(
        (peer) => peer.metadata.name !== resource.metadata.name && clusterOf(peer) === clusterOf(resource),
      )
      .map((peer) => `${peer.metadata.namespace}/${peer.metadata.name}`),
});
