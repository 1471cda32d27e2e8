import { type GfMatrix, generatorMatrix, reconstructionRows } from "./matrix.js";
import type { ErasureCodingPolicy } from "./policy.js";

const EMPTY_CELL = new Uint8Array(0);

/** Bad input to a codec: wrong cell counts or lengths, or more losses than the policy tolerates. */
export class ErasureCodingError extends Error {
  override readonly name = "ErasureCodingError";
}

/**
 * Fragment i of a stripe is data cell i for i < k and parity cell i - k for k <= i < k + m (the
 * order of HDFS's internal blocks in a block group).
 */
export interface ErasureCoder {
  readonly policy: ErasureCodingPolicy;
  readonly implementation: "reference" | "wasm-simd";
  /**
   * The m parity cells of one stripe from its k data cells, which must all have the same length
   * (pad the last, short stripe; HDFS pads it with zeros). Writes into `parityCells` when given
   * (m buffers of that length; no allocation), otherwise allocates them.
   */
  encode(dataCells: readonly Uint8Array[], parityCells?: readonly Uint8Array[]): Uint8Array[];
  /**
   * Rebuilds fragments `wanted` (default: every missing one) from a stripe's k + m fragments, null
   * where lost; any k present fragments suffice. Returns them in the order of `wanted`, written
   * into `outputs` when given.
   */
  reconstruct(
    fragments: readonly (Uint8Array | null | undefined)[],
    wanted?: readonly number[],
    outputs?: readonly Uint8Array[],
  ): Uint8Array[];
  /**
   * Buffers for one stripe of `length`-byte cells (default: the policy's cell size) to fill and pass
   * back to encode(). The WebAssembly coder hands out views of its own memory, which saves copying
   * cells in and out but are overwritten by its next call with other cells; the reference coder
   * allocates.
   */
  stripeBuffers(length?: number): { dataCells: Uint8Array[]; parityCells: Uint8Array[] };
}

/**
 * Validation and planning shared by every implementation, so they accept and reject exactly the
 * same input; subclasses only multiply cells by coefficient rows.
 */
export abstract class ErasureCoderBase implements ErasureCoder {
  abstract readonly implementation: "reference" | "wasm-simd";
  readonly generator: GfMatrix;
  protected readonly dataUnits: number;
  protected readonly parityUnits: number;
  protected readonly fragmentCount: number;
  /** The k fragments a reconstruction reads, reused between calls. */
  protected readonly sourceCells: Uint8Array[];
  private readonly sourceIndices: number[];
  /** Indices of the lost fragments of the current call (a typed array: refilling it never allocates). */
  private readonly missingScratch: Int32Array;
  private readonly rowCache = new Map<number, Uint8Array>();

  constructor(readonly policy: ErasureCodingPolicy) {
    this.generator = generatorMatrix(policy);
    this.dataUnits = policy.dataUnits;
    this.parityUnits = policy.parityUnits;
    this.fragmentCount = policy.dataUnits + policy.parityUnits;
    if (this.fragmentCount > 30) {
      throw new ErasureCodingError(`${policy.name}: at most 30 fragments per stripe are supported`);
    }
    this.sourceCells = new Array<Uint8Array>(this.dataUnits).fill(EMPTY_CELL);
    this.sourceIndices = new Array<number>(this.dataUnits).fill(0);
    this.missingScratch = new Int32Array(this.fragmentCount);
  }

  /** Writes parity[o] = generator row k+o applied to dataCells, for all o, over `length` bytes. */
  protected abstract encodeCells(
    dataCells: readonly Uint8Array[],
    parityCells: readonly Uint8Array[],
    length: number,
  ): void;

  /**
   * Writes outputs[w] = rows[w] applied to sourceCells. `rowKeys[w]` identifies rows[w] for
   * implementations that cache derived tables.
   */
  protected abstract combineCells(
    sources: readonly Uint8Array[],
    rows: readonly Uint8Array[],
    rowKeys: readonly number[],
    outputs: readonly Uint8Array[],
    length: number,
  ): void;

  stripeBuffers(length = this.policy.cellSize): { dataCells: Uint8Array[]; parityCells: Uint8Array[] } {
    const dataCells: Uint8Array[] = [];
    const parityCells: Uint8Array[] = [];
    for (let s = 0; s < this.dataUnits; s++) dataCells.push(new Uint8Array(length));
    for (let p = 0; p < this.parityUnits; p++) parityCells.push(new Uint8Array(length));
    return { dataCells, parityCells };
  }

  encode(dataCells: readonly Uint8Array[], parityCells?: readonly Uint8Array[]): Uint8Array[] {
    const { name } = this.policy;
    if (!Array.isArray(dataCells) || dataCells.length !== this.dataUnits) {
      throw new ErasureCodingError(
        `${name} encode needs ${this.dataUnits} data cells, got ${Array.isArray(dataCells) ? dataCells.length : typeof dataCells}`,
      );
    }
    const length = this.commonLength(dataCells, "data cell", "encode");
    let parity: Uint8Array[];
    if (parityCells === undefined) {
      parity = [];
      for (let p = 0; p < this.parityUnits; p++) parity.push(new Uint8Array(length));
    } else {
      if (parityCells.length !== this.parityUnits) {
        throw new ErasureCodingError(
          `${name} encode needs ${this.parityUnits} parity buffers, got ${parityCells.length}`,
        );
      }
      this.checkOutputs(parityCells, length, "parity buffer", "encode");
      parity = parityCells as Uint8Array[];
    }
    if (length > 0) this.encodeCells(dataCells, parity, length);
    return parity;
  }

  reconstruct(
    fragments: readonly (Uint8Array | null | undefined)[],
    wanted?: readonly number[],
    outputs?: readonly Uint8Array[],
  ): Uint8Array[] {
    const { name } = this.policy;
    const k = this.dataUnits;
    const n = this.fragmentCount;
    if (!Array.isArray(fragments) || fragments.length !== n) {
      throw new ErasureCodingError(
        `${name} reconstruct needs ${n} fragments (${k} data + ${this.parityUnits} parity, null where lost), got ${Array.isArray(fragments) ? fragments.length : typeof fragments}`,
      );
    }
    const missing = this.missingScratch;
    let missingCount = 0;
    let length = -1;
    let lengthFrom = -1;
    let chosen = 0;
    let sourceMask = 0;
    for (let i = 0; i < n; i++) {
      const fragment = fragments[i];
      if (fragment === null || fragment === undefined) {
        missing[missingCount++] = i;
        continue;
      }
      if (!(fragment instanceof Uint8Array)) {
        throw new ErasureCodingError(`${name} reconstruct: fragment ${i} is not a Uint8Array or null`);
      }
      if (length < 0) {
        length = fragment.length;
        lengthFrom = i;
      } else if (fragment.length !== length) {
        throw new ErasureCodingError(
          `${name} reconstruct: fragment ${i} is ${fragment.length} bytes but fragment ${lengthFrom} is ${length}; all fragments of a stripe have the same length`,
        );
      }
      // The first k present fragments are the sources: data cells come first, and a data cell's
      // generator row is a unit row, which keeps the decoding rows sparse.
      if (chosen < k) {
        this.sourceIndices[chosen] = i;
        this.sourceCells[chosen] = fragment;
        sourceMask |= 1 << i;
        chosen++;
      }
    }
    if (missingCount > this.parityUnits) {
      throw new ErasureCodingError(
        `${name} cannot reconstruct: ${missingCount} of ${n} fragments are missing (${missing.subarray(0, missingCount).join(", ")}) but it tolerates at most ${this.parityUnits}`,
      );
    }
    const targets = wanted ?? Array.from(missing.subarray(0, missingCount));
    for (let t = 0; t < targets.length; t++) {
      const w = targets[t]!;
      if (!Number.isInteger(w) || w < 0 || w >= n) {
        throw new ErasureCodingError(
          `${name} reconstruct: wanted fragment ${w} is not an index in 0..${n - 1}`,
        );
      }
      for (let u = 0; u < t; u++) {
        if (targets[u] === w) {
          throw new ErasureCodingError(`${name} reconstruct: wanted fragment ${w} is listed twice`);
        }
      }
    }
    let result: Uint8Array[];
    if (outputs === undefined) {
      result = [];
      for (let w = 0; w < targets.length; w++) result.push(new Uint8Array(length));
    } else {
      if (outputs.length !== targets.length) {
        throw new ErasureCodingError(
          `${name} reconstruct: ${targets.length} fragments wanted but ${outputs.length} output buffers given`,
        );
      }
      this.checkOutputs(outputs, length, "output buffer", "reconstruct");
      result = outputs as Uint8Array[];
    }
    if (length === 0 || targets.length === 0) return result;
    const rows = this.rowsScratch;
    const keys = this.keysScratch;
    rows.length = targets.length;
    keys.length = targets.length;
    for (let w = 0; w < targets.length; w++) {
      const key = sourceMask * 32 + targets[w]!;
      let row = this.rowCache.get(key);
      if (row === undefined) {
        row = reconstructionRows(this.generator, this.sourceIndices, [targets[w]!])[0]!;
        this.rowCache.set(key, row);
      }
      rows[w] = row;
      keys[w] = key;
    }
    this.combineCells(this.sourceCells, rows, keys, result, length);
    // Drop the references so a coder kept for the process's life does not pin the caller's cells.
    this.sourceCells.fill(EMPTY_CELL);
    return result;
  }

  /** Reused per call so that reconstruct with caller buffers allocates nothing. */
  private readonly rowsScratch: Uint8Array[] = [];
  private readonly keysScratch: number[] = [];

  private commonLength(cells: readonly Uint8Array[], what: string, operation: string): number {
    const { name } = this.policy;
    let length = -1;
    for (let i = 0; i < cells.length; i++) {
      const cell = cells[i];
      if (!(cell instanceof Uint8Array)) {
        throw new ErasureCodingError(`${name} ${operation}: ${what} ${i} is not a Uint8Array`);
      }
      if (length < 0) length = cell.length;
      else if (cell.length !== length) {
        throw new ErasureCodingError(
          `${name} ${operation}: ${what} ${i} is ${cell.length} bytes but ${what} 0 is ${length}; every cell of a stripe has the same length (pad the last stripe)`,
        );
      }
    }
    return length;
  }

  private checkOutputs(
    outputs: readonly Uint8Array[],
    length: number,
    what: string,
    operation: string,
  ): void {
    for (let i = 0; i < outputs.length; i++) {
      const output = outputs[i];
      if (!(output instanceof Uint8Array) || output.length !== length) {
        throw new ErasureCodingError(
          `${this.policy.name} ${operation}: ${what} ${i} must be a Uint8Array of ${length} bytes, got ${output instanceof Uint8Array ? `${output.length} bytes` : typeof output}`,
        );
      }
    }
  }
}
