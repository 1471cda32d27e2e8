/**
 * The arithmetic of a striped block group (HDFS's StripedBlockUtil): how a group's data bytes
 * fall into cells, stripes and internal blocks. Pure: the name node's block manager uses it to
 * check internal blocks' lengths without the client's data path.
 */
import { erasureCodingPolicy } from "./erasure/policy.js";

export interface GroupLayout {
  k: number;
  m: number;
  cellSize: number;
  /** Data bytes in the group. */
  numBytes: number;
  /** Stripes in the group; the last may be short. */
  stripes: number;
}

export function groupLayout(ecPolicy: string, numBytes: number): GroupLayout {
  const policy = erasureCodingPolicy(ecPolicy);
  const stripeBytes = policy.dataUnits * policy.cellSize;
  return {
    k: policy.dataUnits,
    m: policy.parityUnits,
    cellSize: policy.cellSize,
    numBytes,
    stripes: Math.ceil(numBytes / stripeBytes),
  };
}

/** Lengths of the k data cells of stripe `s` (zero for cells past the end of the data). */
export function cellLengths(layout: GroupLayout, stripe: number): number[] {
  const start = stripe * layout.k * layout.cellSize;
  return Array.from({ length: layout.k }, (_, i) =>
    Math.max(0, Math.min(layout.cellSize, layout.numBytes - start - i * layout.cellSize)),
  );
}

/** Bytes internal block `index` holds: its data cells, or for parity the longest data cell of each stripe. */
export function internalBlockLength(layout: GroupLayout, index: number): number {
  let length = 0;
  for (let s = 0; s < layout.stripes; s++) {
    const lengths = cellLengths(layout, s);
    length += index < layout.k ? lengths[index]! : lengths[0]!;
  }
  return length;
}
