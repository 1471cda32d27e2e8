/**
 * The erasure-coding policies HDFS ships (`hdfs ec -listPolicies`), by the same names, so a
 * directory's policy reads the same here as on a Hadoop cluster.
 */

export const ERASURE_CODING_POLICY_NAMES = ["RS-6-3", "RS-3-2", "RS-10-4", "XOR-2-1"] as const;
export type ErasureCodingPolicyName = (typeof ERASURE_CODING_POLICY_NAMES)[number];

/** HDFS's built-in policies all stripe in 1024 KiB cells (the `-1024k` suffix of their ids). */
export const DEFAULT_CELL_SIZE = 1024 * 1024;

export interface ErasureCodingPolicy {
  readonly name: ErasureCodingPolicyName;
  /** "rs": Reed-Solomon over GF(2^8); "xor": one parity cell, the XOR of the data cells. */
  readonly codec: "rs" | "xor";
  /** k: data cells per stripe. */
  readonly dataUnits: number;
  /** m: parity cells per stripe, and so the number of lost cells a stripe survives. */
  readonly parityUnits: number;
  /** The striping unit in bytes: a file is laid out cell by cell, round-robin over the k data units. */
  readonly cellSize: number;
}

const SHAPES: Record<ErasureCodingPolicyName, Omit<ErasureCodingPolicy, "name" | "cellSize">> = {
  "RS-6-3": { codec: "rs", dataUnits: 6, parityUnits: 3 },
  "RS-3-2": { codec: "rs", dataUnits: 3, parityUnits: 2 },
  "RS-10-4": { codec: "rs", dataUnits: 10, parityUnits: 4 },
  "XOR-2-1": { codec: "xor", dataUnits: 2, parityUnits: 1 },
};

export function isErasureCodingPolicyName(name: string): name is ErasureCodingPolicyName {
  return (ERASURE_CODING_POLICY_NAMES as readonly string[]).includes(name);
}

/**
 * The policy named `name` (also accepts HDFS's full ids such as `RS-6-3-1024k`, whose suffix is
 * the cell size in KiB).
 */
export function erasureCodingPolicy(name: string, cellSize?: number): ErasureCodingPolicy {
  let shape = name;
  let size = cellSize;
  const withCellSize = /^(.*)-(\d+)k$/.exec(name);
  if (withCellSize && isErasureCodingPolicyName(withCellSize[1]!)) {
    shape = withCellSize[1]!;
    const fromName = Number(withCellSize[2]) * 1024;
    if (size !== undefined && size !== fromName) {
      throw new RangeError(`erasure-coding policy ${name} has ${fromName}-byte cells, not ${size}`);
    }
    size = fromName;
  }
  if (!isErasureCodingPolicyName(shape)) {
    throw new RangeError(
      `unknown erasure-coding policy "${name}": expected one of ${ERASURE_CODING_POLICY_NAMES.join(", ")}`,
    );
  }
  size ??= DEFAULT_CELL_SIZE;
  if (!Number.isInteger(size) || size <= 0) {
    throw new RangeError(`erasure-coding policy ${name}: cell size must be a positive integer, got ${size}`);
  }
  return { name: shape, ...SHAPES[shape], cellSize: size };
}
