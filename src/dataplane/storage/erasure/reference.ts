import { ErasureCoderBase } from "./coder.js";
import { GF_MUL_TABLE } from "./gf256.js";
import type { ErasureCodingPolicy } from "./policy.js";

/**
 * The plain TypeScript codec: one table lookup per byte and coefficient. Kept simple on purpose
 * as the oracle the fast codec is tested against, and as the baseline of the codec benchmark.
 */
export class ReferenceErasureCoder extends ErasureCoderBase {
  readonly implementation = "reference" as const;

  constructor(policy: ErasureCodingPolicy) {
    super(policy);
  }

  protected encodeCells(
    dataCells: readonly Uint8Array[],
    parityCells: readonly Uint8Array[],
    length: number,
  ): void {
    for (let p = 0; p < this.parityUnits; p++) {
      combineInto(this.generator[this.dataUnits + p]!, dataCells, parityCells[p]!, length);
    }
  }

  protected combineCells(
    sources: readonly Uint8Array[],
    rows: readonly Uint8Array[],
    _rowKeys: readonly number[],
    outputs: readonly Uint8Array[],
    length: number,
  ): void {
    for (let w = 0; w < rows.length; w++) combineInto(rows[w]!, sources, outputs[w]!, length);
  }
}

/** output = sum over s of row[s] · sources[s], in GF(2^8). */
function combineInto(
  row: Uint8Array,
  sources: readonly Uint8Array[],
  output: Uint8Array,
  length: number,
): void {
  output.fill(0, 0, length);
  for (let s = 0; s < sources.length; s++) {
    const coefficient = row[s]!;
    if (coefficient === 0) continue;
    const source = sources[s]!;
    if (coefficient === 1) {
      for (let i = 0; i < length; i++) output[i] = output[i]! ^ source[i]!;
      continue;
    }
    const products = GF_MUL_TABLE.subarray(coefficient << 8, (coefficient + 1) << 8);
    for (let i = 0; i < length; i++) output[i] = output[i]! ^ products[source[i]!]!;
  }
}
