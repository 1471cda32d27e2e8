import { Reason } from "../../api/conditions.js";
import type { YarnQueueSpec } from "../../api/yarnqueue.js";
import type { SpecProblem } from "../common.js";

/** Siblings' capacities below 100 %: YARN refuses such a tree, so the cluster keeps its last one. */
export const CapacityUnderAllocated = "CapacityUnderAllocated";

export interface QueueNode {
  name: string;
  spec: Pick<YarnQueueSpec, "cluster" | "parent" | "capacity" | "root">;
}

/**
 * Rules of the capacity scheduler that span several YarnQueues, which no CRD schema can check:
 * the parent exists in the same cluster, and the guaranteed capacities of a parent's children
 * do not add up to more than 100 % (the parent cannot guarantee more than it has).
 */
export function validateQueue(queue: QueueNode, peers: readonly QueueNode[]): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const sameCluster = peers.filter(
    (peer) => peer.name !== queue.name && peer.spec.cluster === queue.spec.cluster,
  );
  if (queue.spec.root) return problems;
  const parentName = queue.spec.parent;
  if (parentName && !sameCluster.some((peer) => peer.name === parentName)) {
    problems.push({
      reason: Reason.ParentNotFound,
      message: `spec.parent '${parentName}' is not a YarnQueue of cluster '${queue.spec.cluster}' in this namespace`,
    });
  }
  const siblings = [
    queue,
    ...sameCluster.filter((peer) => !peer.spec.root && peer.spec.parent === parentName),
  ];
  const total = siblings.reduce((sum, sibling) => sum + (sibling.spec.capacity ?? 0), 0);
  // Capacities are percentages with fractions; compare with a tolerance for binary rounding.
  // A missing parent is reported above: its children's sum says nothing until it exists.
  if (problems.length === 0 && total < 100 - 1e-9) {
    const parts = siblings
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((sibling) => `${sibling.name}=${sibling.spec.capacity ?? 0}`)
      .join(", ");
    problems.push({
      reason: CapacityUnderAllocated,
      message: `spec.capacity: the children of '${parentName ?? "root"}' in cluster '${queue.spec.cluster}' add up to ${Number(total.toFixed(6))}% (${parts}); the capacity scheduler needs them to add up to 100%`,
    });
  }
  if (total > 100 + 1e-9) {
    const parts = siblings
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((sibling) => `${sibling.name}=${sibling.spec.capacity ?? 0}`)
      .join(", ");
    problems.push({
      reason: Reason.CapacityExceeded,
      message: `spec.capacity: the children of '${parentName ?? "root"}' in cluster '${queue.spec.cluster}' add up to ${Number(total.toFixed(6))}% (${parts}); they must add up to 100%`,
    });
  }
  return problems;
}

export interface QueuePlacement {
  queuePath: string;
  leaf: boolean;
  guaranteedCapacity: number;
  absoluteMaximumCapacity: number;
}

/**
 * Where a queue sits in its cluster's tree, as the capacity scheduler computes it: the dotted
 * path from `root`, whether it is a leaf, and its shares of the whole cluster (the product of
 * the capacities, and of the maximum capacities, up the path). Undefined when the chain of
 * parents is broken or loops (reported by `validateQueue`).
 */
export function queuePlacement(
  queue: QueueNode & { spec: { maximumCapacity?: number } },
  peers: readonly (QueueNode & { spec: { maximumCapacity?: number } })[],
): QueuePlacement | undefined {
  const sameCluster = peers.filter(
    (peer) => peer.name !== queue.name && peer.spec.cluster === queue.spec.cluster,
  );
  const leaf =
    !queue.spec.root && !sameCluster.some((peer) => !peer.spec.root && peer.spec.parent === queue.name);
  if (queue.spec.root)
    return { queuePath: "root", leaf: false, guaranteedCapacity: 100, absoluteMaximumCapacity: 100 };
  const names = [queue.name];
  let guaranteed = (queue.spec.capacity ?? 0) / 100;
  let maximum = (queue.spec.maximumCapacity ?? 100) / 100;
  const seen = new Set([queue.name]);
  let parentName = queue.spec.parent;
  while (parentName) {
    const parent = sameCluster.find((peer) => peer.name === parentName);
    if (!parent || seen.has(parentName)) return undefined;
    if (parent.spec.root) break;
    seen.add(parentName);
    names.unshift(parent.name);
    guaranteed *= (parent.spec.capacity ?? 0) / 100;
    maximum *= (parent.spec.maximumCapacity ?? 100) / 100;
    parentName = parent.spec.parent;
  }
  const round = (fraction: number) => Math.round(fraction * 100 * 1e6) / 1e6;
  return {
    queuePath: ["root", ...names].join("."),
    leaf,
    guaranteedCapacity: round(guaranteed),
    absoluteMaximumCapacity: round(maximum),
  };
}
