import { assembleModule, I32, op, V128, type ValueType } from "./wasm-assembler.js";

/**
 * Where the kernels find their operands in the one linear memory. The addresses are compile-time
 * constants folded into each load's offset immediate, so the inner loop carries a single index.
 *
 *   [0, slotBase)                            nibble tables (the host writes them)
 *   slotBase + s * slotStride, s < k          input slots (data cells, or the k chosen fragments)
 *   slotBase + (k + o) * slotStride, o < m    output slots
 */
export interface KernelLayout {
  readonly inputs: number;
  readonly maxOutputs: number;
  readonly slotBase: number;
  /** Bytes from one slot to the next, a multiple of both kernels' granules. */
  readonly slotStride: number;
  readonly memoryPages: number;
  /**
   * Use relaxed SIMD's i8x16.relaxed_swizzle. Our indices are nibbles (0..15), where both swizzles
   * agree, but plain i8x16.swizzle must zero lanes whose index exceeds 15, which V8 on x64 pays
   * for with a saturating add before every pshufb; the relaxed one is the bare pshufb.
   */
  readonly relaxedSwizzle: boolean;
}

export function inputSlot(layout: KernelLayout, input: number): number {
  return layout.slotBase + input * layout.slotStride;
}

export function outputSlot(layout: KernelLayout, output: number): number {
  return layout.slotBase + (layout.inputs + output) * layout.slotStride;
}

/** 32 bytes per coefficient: the low-nibble then the high-nibble table (see writeNibbleTables). */
export const TABLE_BYTES_PER_COEFFICIENT = 32;

/**
 * `gf<n>(tables, start, end)` for n = 1..maxOutputs: bytes [start, end) of output o = sum over
 * inputs s of c[o][s] · input s, where the tables of c[o][s] sit at tables + (o * inputs + s) * 32.
 * start < end, both multiples of GF_KERNEL_GRANULE (the host rounds up; lanes are independent, so the padding only computes bytes
 * nobody reads).
 *
 * Per 16 bytes of each input: split into nibbles once, then for every output two swizzles
 * (pshufb) and two XORs — ISA-L's technique. Each input vector is loaded once for all outputs,
 * and the accumulators stay in registers across the inputs; the 32-byte tables are reloaded from
 * memory (L1-resident) because k·m·2 of them would not fit the 16 vector registers.
 *
 * `xor(start, end)`: output 0 = XOR of all inputs, the all-ones row of XOR parity; start < end,
 * multiples of XOR_KERNEL_GRANULE.
 */
export function assembleKernelModule(layout: KernelLayout): Uint8Array {
  const functions = [];
  for (let outputs = 1; outputs <= layout.maxOutputs; outputs++) {
    functions.push({ exportName: `gf${outputs}`, ...gfKernel(layout, outputs) });
  }
  functions.push({ exportName: "xor", ...xorKernel(layout) });
  return assembleModule({ memoryMinPages: layout.memoryPages, functions });
}

/**
 * Two vectors per iteration, so each table is loaded once per 32 bytes: with the schedule barriers
 * below, RS-6-3's loop is 206 instructions per 16 bytes (229 with one vector) and none spills.
 * More than three outputs would need more accumulators than the 15 xmm registers V8 allocates.
 */
function gfUnroll(outputs: number): number {
  return outputs <= 3 ? 2 : 1;
}

/** The gf kernels process whole groups of this many bytes: the host rounds lengths up to it. */
export const GF_KERNEL_GRANULE = 32;

function gfKernel(layout: KernelLayout, outputs: number) {
  const unroll = gfUnroll(outputs);
  const swizzle = layout.relaxedSwizzle ? op.i8x16RelaxedSwizzle() : op.i8x16Swizzle();
  // Parameters: tables, start (then the running index), end.
  const TABLES = 0;
  const I = 1;
  const END = 2;
  const params: ValueType[] = [I32, I32, I32];
  const MASK = 3;
  const TABLE = 4;
  const X = 5;
  const LOW = 6;
  const HIGH = LOW + unroll;
  const ACC = HIGH + unroll;
  const locals: ValueType[] = [V128, V128, V128];
  for (let u = 0; u < unroll; u++) locals.push(V128, V128);
  for (let a = 0; a < outputs * unroll; a++) locals.push(V128);

  const body: number[] = [];
  body.push(...op.v128Const(new Array(16).fill(0x0f)), ...op.localSet(MASK));
  body.push(...op.loop());
  for (let s = 0; s < layout.inputs; s++) {
    for (let u = 0; u < unroll; u++) {
      body.push(...op.localGet(I), ...op.v128Load(inputSlot(layout, s) + 16 * u), ...op.localTee(X));
      body.push(...op.localGet(MASK), ...op.v128And(), ...op.localSet(LOW + u));
      // A 16-bit lane shift moves the neighbour byte's low bits into bits 4..7; the mask drops them.
      body.push(...op.localGet(X), ...op.i32Const(4), ...op.i16x8ShrU());
      body.push(...op.localGet(MASK), ...op.v128And(), ...op.localSet(HIGH + u));
    }
    for (let o = 0; o < outputs; o++) {
      const table = (o * layout.inputs + s) * TABLE_BYTES_PER_COEFFICIENT;
      for (const [half, nibbles] of [
        [0, LOW],
        [16, HIGH],
      ] as const) {
        body.push(...op.localGet(TABLES), ...op.v128Load(table + half), ...op.localSet(TABLE));
        for (let u = 0; u < unroll; u++) {
          const acc = ACC + o * unroll + u;
          if (s > 0 || half > 0) body.push(...op.localGet(acc));
          body.push(...op.localGet(TABLE), ...op.localGet(nibbles + u), ...swizzle);
          if (s > 0 || half > 0) body.push(...op.v128Xor());
          body.push(...op.localSet(acc));
        }
      }
      if (s < layout.inputs - 1) {
        body.push(...scheduleBarrier(layout, unroll, I, ACC + o * unroll));
      } else {
        // After the last input an output is complete: its own stores order the next output.
        for (let u = 0; u < unroll; u++) {
          body.push(
            ...op.localGet(I),
            ...op.localGet(ACC + o * unroll + u),
            ...op.v128Store(outputSlot(layout, o) + 16 * u),
          );
        }
      }
    }
  }
  body.push(...op.localGet(I), ...op.i32Const(16 * unroll), ...op.i32Add(), ...op.localTee(I));
  body.push(...op.localGet(END), ...op.i32LtU(), ...op.brIf(0));
  body.push(...op.end());
  return { params, locals, body };
}

/**
 * Stores the XOR of one output's accumulators into output slot 0 at the running index (the loop's
 * final store overwrites it), so that the swizzles of one input and output happen before the next
 * tables and cells are loaded. TurboFan orders loads only among memory operations: without a store
 * between them it issued all k·m·2 table loads and k data loads at the top of the loop, ahead of
 * the swizzles that consume them, and 50 of the 263 instructions of RS-6-3's loop were spills and
 * reloads of values it had just loaded. With the barriers nothing spills, and RS-6-3 encodes about
 * 1.4 times faster on Node 20 (see bench/erasure.bench.ts).
 */
function scheduleBarrier(layout: KernelLayout, accumulators: number, index: number, first: number): number[] {
  const code = [...op.localGet(index)];
  for (let a = 0; a < accumulators; a++) {
    code.push(...op.localGet(first + a));
    if (a > 0) code.push(...op.v128Xor());
  }
  code.push(...op.v128Store(outputSlot(layout, 0)));
  return code;
}

/** Four vectors per iteration: with one load per input and no tables, loop overhead would show. */
const XOR_UNROLL = 4;

function xorKernel(layout: KernelLayout) {
  // Parameters: start (then the running index), end.
  const I = 0;
  const END = 1;
  const params: ValueType[] = [I32, I32];
  const locals: ValueType[] = [];
  const body: number[] = [];
  body.push(...op.loop());
  for (let u = 0; u < XOR_UNROLL; u++) {
    body.push(...op.localGet(I));
    for (let s = 0; s < layout.inputs; s++) {
      body.push(...op.localGet(I), ...op.v128Load(inputSlot(layout, s) + u * 16));
      if (s > 0) body.push(...op.v128Xor());
    }
    body.push(...op.v128Store(outputSlot(layout, 0) + u * 16));
  }
  body.push(...op.localGet(I), ...op.i32Const(16 * XOR_UNROLL), ...op.i32Add(), ...op.localTee(I));
  body.push(...op.localGet(END), ...op.i32LtU(), ...op.brIf(0));
  body.push(...op.end());
  return { params, locals, body };
}

/** The xor kernel reads and writes whole 64-byte groups: lengths and slots are padded to this. */
export const XOR_KERNEL_GRANULE = 16 * XOR_UNROLL;
