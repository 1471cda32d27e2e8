/**
 * Chunked CRC32C in WebAssembly: all of a packet's per-chunk sums in one call, the way Hadoop's
 * NativeCrc32 (`nativeComputeChunkedSums`) does it. WebAssembly has no CRC instruction and no
 * carry-less multiply, so the kernel is slice-by-16 (sixteen 256-entry tables, 16 bytes per step);
 * what makes it fast is that a packet's chunks are independent: LANES chunks are folded in one
 * loop, so their table lookups overlap instead of waiting on one CRC's dependency chain. The
 * module is generated in process like the erasure kernels (no toolchain, no committed binary),
 * specialised to the chunk size so every address is a constant folded into a load's offset.
 *
 * Memory layout (one imported memory, host-owned):
 *   [0, 16384)                    T0..T15, 256 little-endian u32 each (the host writes them)
 *   [STAGE, STAGE + STAGE_BYTES)  the chunks being summed, copied in by the host
 *   [SUMS, SUMS + 4 * chunks)     their CRCs, big-endian, as HDFS's meta files and packets hold them
 */
import { assembleModule, I32, op, type ValueType } from "./erasure/wasm-assembler.js";

/** Bytes folded per step, one table each. */
export const STRIDE = 16;
const TABLE_BYTES = STRIDE * 256 * 4;
export const STAGE = TABLE_BYTES;
/** Bytes summed per kernel call: 64 KiB stays in L1/L2 between the host's copy and the kernel. */
export const STAGE_BYTES = 64 * 1024;
export const SUMS = STAGE + STAGE_BYTES;
export const MEMORY_PAGES = Math.ceil((SUMS + (STAGE_BYTES / 8) * 4) / 65536);
/**
 * Chunks folded together in the wide kernel. Measured in CPU time over 64 MiB in 512-byte chunks
 * on this machine: slice-by-8 with 4 lanes 2.2-2.4 GB/s, with 2 lanes 2.5; slice-by-16 with 2
 * lanes 2.6-2.75 (with 4, or 3, its sixteen words per lane spill registers: 2.4); slice-by-32
 * 2.3-2.4 (its tables crowd the chunks out of L1).
 */
export const LANES = 2;

/**
 * Exports `sums<L>(src, groups, dst)` for L in {1, LANES}: for each of `groups` runs of L chunks of
 * `chunkBytes` at src (advancing by L * chunkBytes), writes their CRC32Cs big-endian at dst.
 * chunkBytes must be a positive multiple of STRIDE.
 */
export function assembleCrcModule(chunkBytes: number): Uint8Array {
  if (chunkBytes <= 0 || chunkBytes % STRIDE !== 0)
    throw new RangeError(`chunk size ${chunkBytes} is not a multiple of ${STRIDE}`);
  return assembleModule({
    memoryMinPages: MEMORY_PAGES,
    functions: [
      { exportName: "sums1", ...sumsKernel(chunkBytes, 1) },
      { exportName: `sums${LANES}`, ...sumsKernel(chunkBytes, LANES) },
    ],
  });
}

const table = (k: number) => k * 1024;

function sumsKernel(chunkBytes: number, lanes: number) {
  const SRC = 0;
  const GROUPS = 1;
  const DST = 2;
  const params: ValueType[] = [I32, I32, I32];
  const P = 3; // src + i, the running address within the group's first chunk
  const END = 4;
  const WORDS = STRIDE / 4;
  const W = 5; // W + w: the step's w-th little-endian word of the lane (the first one xored with its CRC)
  const CRC = W + WORDS; // CRC + lane
  const locals: ValueType[] = [I32, I32];
  for (let i = 0; i < WORDS + lanes; i++) locals.push(I32);

  // ((x >>> shift) & 0xff) * 4, as one shift and one mask.
  const index = (x: number, byte: number) => {
    const shift = byte * 8 - 2;
    const out = [...op.localGet(x)];
    if (shift < 0) out.push(...op.i32Const(2), ...op.i32Shl());
    else if (shift > 0) out.push(...op.i32Const(shift), ...op.i32ShrU());
    out.push(...op.i32Const(0x3fc), ...op.i32And());
    return out;
  };

  const body: number[] = [];
  body.push(...op.loop()); // one group of `lanes` chunks
  for (let l = 0; l < lanes; l++) body.push(...op.i32Const(-1), ...op.localSet(CRC + l));
  body.push(
    ...op.localGet(SRC),
    ...op.localTee(P),
    ...op.i32Const(chunkBytes),
    ...op.i32Add(),
    ...op.localSet(END),
  );
  body.push(...op.loop()); // STRIDE bytes of every lane
  for (let l = 0; l < lanes; l++) {
    const at = l * chunkBytes;
    body.push(
      ...op.localGet(P),
      ...op.i32Load(at),
      ...op.localGet(CRC + l),
      ...op.i32Xor(),
      ...op.localSet(W),
    );
    for (let w = 1; w < WORDS; w++)
      body.push(...op.localGet(P), ...op.i32Load(at + 4 * w), ...op.localSet(W + w));
    // Byte j of the step (j = 4w + b) is followed by STRIDE - 1 - j bytes: table STRIDE - 1 - j.
    for (let j = 0; j < STRIDE; j++) {
      body.push(...index(W + Math.floor(j / 4), j % 4), ...op.i32Load(table(STRIDE - 1 - j)));
      if (j > 0) body.push(...op.i32Xor());
    }
    body.push(...op.localSet(CRC + l));
  }
  body.push(...op.localGet(P), ...op.i32Const(STRIDE), ...op.i32Add(), ...op.localTee(P));
  body.push(...op.localGet(END), ...op.i32LtU(), ...op.brIf(0));
  body.push(...op.end());
  // ~crc, stored big-endian.
  for (let l = 0; l < lanes; l++) {
    body.push(...op.localGet(CRC + l), ...op.i32Const(-1), ...op.i32Xor(), ...op.localSet(W));
    for (let b = 0; b < 4; b++) {
      body.push(...op.localGet(DST), ...op.localGet(W));
      if (b < 3) body.push(...op.i32Const(24 - 8 * b), ...op.i32ShrU());
      body.push(...op.i32Store8(4 * l + b));
    }
  }
  body.push(...op.localGet(SRC), ...op.i32Const(lanes * chunkBytes), ...op.i32Add(), ...op.localSet(SRC));
  body.push(...op.localGet(DST), ...op.i32Const(lanes * 4), ...op.i32Add(), ...op.localSet(DST));
  body.push(...op.localGet(GROUPS), ...op.i32Const(1), ...op.i32Sub(), ...op.localTee(GROUPS));
  body.push(...op.brIf(0));
  body.push(...op.end());
  return { params, locals, body };
}
