/**
 * Which collector pod takes which pulled source: rendezvous (highest-random-weight) hashing of
 * the source's name over the StatefulSet's ordinals. Every pod computes the same answer from the
 * replica count alone, with no coordination; when the count changes only the sources of the pods
 * that came or went move (a source stays where it is unless its new best ordinal is a new pod).
 * Pushed sources are not assigned: the camera's connection lands on whichever pod the Service
 * picks, and that pod takes it.
 */
import { createHash } from "node:crypto";

function weight(source: string, ordinal: number): bigint {
  return createHash("sha256").update(`${source}\u0000${ordinal}`).digest().readBigUInt64BE(0);
}

/** The ordinal (0..replicas-1) that takes `source`. */
export function ownerOrdinal(source: string, replicas: number): number {
  let best = 0;
  let bestWeight = -1n;
  for (let ordinal = 0; ordinal < Math.max(1, replicas); ordinal++) {
    const w = weight(source, ordinal);
    if (w > bestWeight) {
      bestWeight = w;
      best = ordinal;
    }
  }
  return best;
}

/** The StatefulSet ordinal in a pod name (`vc-collector-2` → 2), or undefined. */
export function ordinalOf(podName: string): number | undefined {
  const match = /-(\d+)$/.exec(podName);
  return match ? Number(match[1]) : undefined;
}
