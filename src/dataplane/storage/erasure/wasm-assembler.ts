/**
 * A minimal WebAssembly binary assembler: just the sections and instructions the erasure and
 * checksum kernels use (one imported memory, functions of i32 parameters, 128-bit SIMD, a few i32
 * loads and bit operations). Kernels are generated in
 * process for each coding shape, so the build needs no toolchain and no binary is committed;
 * encodings follow the WebAssembly core specification (binary format, section 5) and the fixed-width
 * SIMD proposal's opcode table.
 */

export const I32 = 0x7f;
export const V128 = 0x7b;
export type ValueType = typeof I32 | typeof V128;

/** Unsigned LEB128. */
export function u32(value: number): number[] {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`u32 immediate out of range: ${value}`);
  }
  const out: number[] = [];
  let v = value;
  do {
    let byte = v & 0x7f;
    v = Math.floor(v / 128);
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

/** Signed LEB128 of a 32-bit integer. */
export function s32(value: number): number[] {
  if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
    throw new RangeError(`s32 immediate out of range: ${value}`);
  }
  const out: number[] = [];
  let v = value;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const signBitClear = (byte & 0x40) === 0;
    if ((v === 0 && signBitClear) || (v === -1 && !signBitClear)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function utf8Name(name: string): number[] {
  const bytes = [...new TextEncoder().encode(name)];
  return [...u32(bytes.length), ...bytes];
}

function vector(items: number[][]): number[] {
  return [...u32(items.length), ...items.flat()];
}

function section(id: number, content: number[]): number[] {
  return [id, ...u32(content.length), ...content];
}

const SIMD = 0xfd;
/** Alignment exponent of a 16-byte access: a hint only (V8 ignores it), but it must not exceed 4. */
const V128_ALIGN = 4;

/** The instructions the kernels need; each returns its encoded bytes. */
export const op = {
  localGet: (index: number) => [0x20, ...u32(index)],
  localSet: (index: number) => [0x21, ...u32(index)],
  localTee: (index: number) => [0x22, ...u32(index)],
  i32Const: (value: number) => [0x41, ...s32(value)],
  i32Add: () => [0x6a],
  i32LtU: () => [0x49],
  i32Sub: () => [0x6b],
  i32And: () => [0x71],
  i32Xor: () => [0x73],
  i32Shl: () => [0x74],
  i32ShrU: () => [0x76],
  i32Ne: () => [0x47],
  /** 4-byte load; alignment exponent 2 is a hint only. */
  i32Load: (offset: number) => [0x28, 2, ...u32(offset)],
  i32Store8: (offset: number) => [0x3a, 0, ...u32(offset)],
  /** `loop` with an empty block type. */
  loop: () => [0x03, 0x40],
  end: () => [0x0b],
  drop: () => [0x1a],
  brIf: (depth: number) => [0x0d, ...u32(depth)],
  v128Load: (offset: number) => [SIMD, ...u32(0x00), ...u32(V128_ALIGN), ...u32(offset)],
  v128Store: (offset: number) => [SIMD, ...u32(0x0b), ...u32(V128_ALIGN), ...u32(offset)],
  v128Const: (bytes: readonly number[]) => {
    if (bytes.length !== 16) throw new RangeError("v128.const takes 16 bytes");
    return [SIMD, ...u32(0x0c), ...bytes];
  },
  i8x16Swizzle: () => [SIMD, ...u32(0x0e)],
  /** Relaxed SIMD: lanes with an index above 15 are implementation-defined, so it maps to a bare pshufb. */
  i8x16RelaxedSwizzle: () => [SIMD, ...u32(0x100)],
  v128And: () => [SIMD, ...u32(0x4e)],
  v128Xor: () => [SIMD, ...u32(0x51)],
  i16x8ShrU: () => [SIMD, ...u32(0x8d)],
} as const;

export interface WasmFunction {
  readonly exportName: string;
  readonly params: readonly ValueType[];
  /** Declared locals, numbered after the parameters. */
  readonly locals: readonly ValueType[];
  /** The instructions, without the final `end`. */
  readonly body: readonly number[];
}

export interface WasmModuleSpec {
  /** The memory is imported as env.memory so the host owns and sizes it. */
  readonly memoryMinPages: number;
  readonly functions: readonly WasmFunction[];
}

export function assembleModule(spec: WasmModuleSpec): Uint8Array {
  const signatures: string[] = [];
  const typeOf = spec.functions.map((fn) => {
    const key = fn.params.join(",");
    let index = signatures.indexOf(key);
    if (index < 0) index = signatures.push(key) - 1;
    return index;
  });
  const typeSection = vector(
    signatures.map((key) => {
      const params = key === "" ? [] : key.split(",").map(Number);
      return [0x60, ...u32(params.length), ...params, ...u32(0)];
    }),
  );
  const importSection = vector([
    [...utf8Name("env"), ...utf8Name("memory"), 0x02, 0x00, ...u32(spec.memoryMinPages)],
  ]);
  const functionSection = vector(typeOf.map((t) => u32(t)));
  const exportSection = vector(spec.functions.map((fn, i) => [...utf8Name(fn.exportName), 0x00, ...u32(i)]));
  const codeSection = vector(
    spec.functions.map((fn) => {
      // Locals are declared as runs of one type.
      const runs: number[][] = [];
      let i = 0;
      while (i < fn.locals.length) {
        let j = i;
        while (j < fn.locals.length && fn.locals[j] === fn.locals[i]) j++;
        runs.push([...u32(j - i), fn.locals[i]!]);
        i = j;
      }
      const body = [...vector(runs), ...fn.body, ...op.end()];
      return [...u32(body.length), ...body];
    }),
  );
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d],
    ...[0x01, 0x00, 0x00, 0x00],
    ...section(1, typeSection),
    ...section(2, importSection),
    ...section(3, functionSection),
    ...section(7, exportSection),
    ...section(10, codeSection),
  ]);
}
