import { gfInv, gfMul } from "./gf256.js";
import type { ErasureCodingPolicy } from "./policy.js";

/**
 * Coding matrices over GF(2^8). A matrix is an array of rows; row r of the (k+m) x k generator
 * says how fragment r of a stripe is made from the k data cells.
 */
export type GfMatrix = Uint8Array[];

/**
 * The generator of a policy: the k x k identity on top (systematic: data cells are stored as they
 * are) and m parity rows below.
 *
 * RS uses a Cauchy matrix, row i (k <= i < k+m), column j: 1 / (i XOR j). We choose Cauchy over a
 * Vandermonde-derived systematic matrix because every square submatrix of a Cauchy matrix is
 * invertible (the x_i = i and y_j = j are distinct and disjoint), so [I; C] is MDS for every k and
 * m with k + m <= 256 with no check needed, and it needs no inversion to make systematic. It is
 * also the construction of ISA-L's gf_gen_cauchy1_matrix and Hadoop's RSUtil.genCauchyMatrix (the
 * RSRawEncoder of the HDFS "rs" codec), over the same polynomial, so our parity cells are the
 * ones that codec defines.
 *
 * XOR has one parity row of ones: HDFS's XOR-2-1 parity is the plain XOR of the data cells.
 */
export function generatorMatrix(policy: ErasureCodingPolicy): GfMatrix {
  const k = policy.dataUnits;
  const m = policy.parityUnits;
  if (k + m > 256) {
    throw new RangeError(`${policy.name}: k + m = ${k + m} exceeds the 256 elements of GF(2^8)`);
  }
  const rows: GfMatrix = [];
  for (let i = 0; i < k; i++) {
    const row = new Uint8Array(k);
    row[i] = 1;
    rows.push(row);
  }
  for (let i = k; i < k + m; i++) {
    const row = new Uint8Array(k);
    for (let j = 0; j < k; j++) row[j] = policy.codec === "xor" ? 1 : gfInv(i ^ j);
    rows.push(row);
  }
  return rows;
}

/** Gauss-Jordan inversion of a square matrix; throws when it is singular. */
export function invertMatrix(matrix: GfMatrix): GfMatrix {
  const n = matrix.length;
  const work = matrix.map((row) => {
    if (row.length !== n) throw new RangeError(`cannot invert a ${n}x${row.length} matrix`);
    return Uint8Array.from(row);
  });
  const inverse: GfMatrix = [];
  for (let i = 0; i < n; i++) {
    const row = new Uint8Array(n);
    row[i] = 1;
    inverse.push(row);
  }
  for (let col = 0; col < n; col++) {
    let pivot = col;
    while (pivot < n && work[pivot]![col] === 0) pivot++;
    if (pivot === n) throw new RangeError(`matrix is singular (no pivot in column ${col})`);
    if (pivot !== col) {
      [work[col], work[pivot]] = [work[pivot]!, work[col]!];
      [inverse[col], inverse[pivot]] = [inverse[pivot]!, inverse[col]!];
    }
    const pivotRow = work[col]!;
    const pivotInverse = inverse[col]!;
    const scale = gfInv(pivotRow[col]!);
    for (let j = 0; j < n; j++) {
      pivotRow[j] = gfMul(pivotRow[j]!, scale);
      pivotInverse[j] = gfMul(pivotInverse[j]!, scale);
    }
    for (let r = 0; r < n; r++) {
      const factor = work[r]![col]!;
      if (r === col || factor === 0) continue;
      const row = work[r]!;
      const inv = inverse[r]!;
      for (let j = 0; j < n; j++) {
        row[j]! ^= gfMul(factor, pivotRow[j]!);
        inv[j]! ^= gfMul(factor, pivotInverse[j]!);
      }
    }
  }
  return inverse;
}

/**
 * The rows that rebuild fragments `wanted` from the k fragments `sources` (indices into the
 * generator): with S the generator rows of the sources, the data is S^-1 · sources, so fragment w
 * is G[w] · S^-1 · sources. For a wanted data cell G[w] is a unit row and this is row w of S^-1.
 */
export function reconstructionRows(
  generator: GfMatrix,
  sources: readonly number[],
  wanted: readonly number[],
): GfMatrix {
  const k = generator[0]?.length ?? 0;
  if (sources.length !== k) {
    throw new RangeError(`reconstruction needs exactly ${k} source fragments, got ${sources.length}`);
  }
  const inverse = invertMatrix(sources.map((s) => generator[s]!));
  return wanted.map((w) => {
    const generatorRow = generator[w]!;
    const row = new Uint8Array(k);
    for (let j = 0; j < k; j++) {
      let sum = 0;
      for (let t = 0; t < k; t++) sum ^= gfMul(generatorRow[t]!, inverse[t]![j]!);
      row[j] = sum;
    }
    return row;
  });
}
