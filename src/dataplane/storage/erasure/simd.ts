import { ErasureCoderBase } from "./coder.js";
import { writeNibbleTables } from "./gf256.js";
import type { ErasureCodingPolicy } from "./policy.js";
import {
  assembleKernelModule,
  GF_KERNEL_GRANULE,
  inputSlot,
  type KernelLayout,
  outputSlot,
  TABLE_BYTES_PER_COEFFICIENT,
  XOR_KERNEL_GRANULE,
} from "./simd-kernel.js";
import { assembleModule, op } from "./wasm-assembler.js";

export interface WasmSimdErasureCoderOptions {
  /**
   * Bytes per input slot, and so the longest cell coded without allocating (longer cells are coded
   * in slot-sized passes over views of them). Default: the policy's cell size.
   */
  readonly slotBytes?: number;
  /** Bytes of each cell copied and coded per kernel call (a multiple of 64). Default: 64 KiB. */
  readonly chunkBytes?: number;
}

/**
 * Cells from the caller's buffers are copied in, coded and copied out 64 KiB at a time, through the
 * same k + m chunks at the start of the slots (576 KiB for RS-6-3), which stay in L2 across the
 * whole call: in round-robin runs on Node 20, 32-128 KiB measured alike, 16 KiB lost to the extra
 * calls and whole 1 MiB cells (a 9 MiB round trip through L3) about 10 % slower.
 */
const DEFAULT_CHUNK_BYTES = 64 * 1024;

/**
 * The slice of the WebAssembly JS API this coder uses. The project compiles against ES2023 and
 * Node's types, neither of which declares the WebAssembly global.
 */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmModule {
  readonly kind: "module";
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => WasmModule;
  Memory: new (descriptor: { initial: number }) => WasmMemory;
  Instance: new (
    module: WasmModule,
    imports: Record<string, Record<string, unknown>>,
  ) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

type GfKernel = (tables: number, start: number, end: number) => void;
type XorKernel = (start: number, end: number) => void;

/** One kernel call of a plan: outputs[first, first + count) from the tables at `tables`. */
interface KernelCall {
  xor: boolean;
  tables: number;
  first: number;
  count: number;
}

const WASM_PAGE = 65536;
const compiledKernels = new Map<string, WasmModule>();

/** Whether this engine accepts a function of `body` (no parameters, no results). */
function validates(body: number[]): boolean {
  try {
    return wasm.validate(
      assembleModule({
        memoryMinPages: 0,
        functions: [{ exportName: "probe", params: [], locals: [], body }],
      }),
    );
  } catch {
    return false;
  }
}

let relaxedSwizzle: boolean | undefined;

/** Relaxed SIMD ships by default from V8 11.4 (Node 22); Node 20 has it behind a flag. */
function relaxedSwizzleSupported(): boolean {
  const zero = op.v128Const(new Array(16).fill(0));
  relaxedSwizzle ??= validates([...zero, ...zero, ...op.i8x16RelaxedSwizzle(), ...op.drop()]);
  return relaxedSwizzle;
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

/**
 * The fast codec: GF(2^8) multiply-accumulate in WebAssembly 128-bit SIMD (see simd-kernel.ts),
 * over one linear memory per coder that holds the tables, k input slots and m output slots.
 * Cells are copied into the slots a chunk at a time and the results copied out, since WebAssembly
 * cannot address the caller's buffers; stripeBuffers() hands out the slots themselves for callers
 * that can fill them in place (see bench/erasure.bench.ts for what each costs).
 *
 * With caller buffers reused between calls (a writer's stripe buffers), encode and reconstruct
 * allocate nothing: the chunk views of the last cells are kept.
 * Not reentrant: one coder serves one call at a time (the calls are synchronous).
 */
export class WasmSimdErasureCoder extends ErasureCoderBase {
  readonly implementation = "wasm-simd" as const;
  private readonly layout: KernelLayout;
  /** Bytes per slot: the longest cell staged or coded in one pass (slots sit further apart). */
  private readonly slotBytes: number;
  private readonly memory: WasmMemory;
  private readonly bytes: Uint8Array;
  private readonly gfKernels: GfKernel[] = [];
  private readonly xorKernel: XorKernel;
  private readonly encodeTables = 0;
  private readonly reconstructTables: number;
  /** Nibble tables of each cached reconstruction row; null marks an all-ones (pure XOR) row. */
  private readonly rowTables = new Map<number, Uint8Array | null>();
  private readonly chunkBytes: number;
  private readonly encodePlan: readonly KernelCall[];
  /** Reused entries (at most one call per fragment), so a reconstruct allocates no plan. */
  private readonly reconstructPlan: KernelCall[];
  private readonly inputViewsOf: (Uint8Array | undefined)[] = [];
  private readonly inputViews: Uint8Array[][] = [];
  private outputViews: Uint8Array[][] = [];
  private outputViewLength = -1;
  /** Chunk size of codeThroughStaging: the chunk size, at most a slot. */
  private readonly stagingChunkBytes: number;
  private readonly stagingViewsOf: (Uint8Array | undefined)[] = [];
  private readonly stagingChunks: Uint8Array[][] = [];
  private readonly stagedFullOutputs: Uint8Array[] = [];
  private stagedTailOutputs: Uint8Array[] = [];
  private stagedTailLength = -1;

  constructor(policy: ErasureCodingPolicy, options: WasmSimdErasureCoderOptions = {}) {
    super(policy);
    const k = this.dataUnits;
    const m = this.parityUnits;
    // Tables of the m parity rows, then of up to n reconstruction rows (wanted has no repeats).
    const encodeRegion = m * k * TABLE_BYTES_PER_COEFFICIENT;
    this.reconstructTables = encodeRegion;
    const slotBase = roundUp(encodeRegion + this.fragmentCount * k * TABLE_BYTES_PER_COEFFICIENT, 64);
    this.chunkBytes = roundUp(Math.max(options.chunkBytes ?? DEFAULT_CHUNK_BYTES, 1), 64);
    this.reconstructPlan = Array.from({ length: this.fragmentCount }, () => ({
      xor: false,
      tables: 0,
      first: 0,
      count: 0,
    }));
    this.slotBytes = roundUp(
      Math.max(options.slotBytes ?? policy.cellSize, 1),
      Math.max(XOR_KERNEL_GRANULE, GF_KERNEL_GRANULE),
    );
    // Slots a power of two apart would put the same byte of every slot in the same cache set of
    // L1 and L2, and the kernel reads and writes k + m such streams at once: skew each slot by a
    // share of a 4 KiB page so that their lines fall in different sets (RS-6-3 caller cells
    // measured about 10 % faster).
    const slotSkew = Math.max(64, Math.floor(4096 / this.fragmentCount / 64) * 64);
    const slotStride = this.slotBytes + slotSkew;
    const memoryBytes = slotBase + (k + m) * slotStride;
    if (memoryBytes > 2 ** 31) {
      throw new RangeError(
        `${policy.name}: ${this.slotBytes}-byte slots need more than 2 GiB of WebAssembly memory`,
      );
    }
    const memoryPages = Math.ceil(memoryBytes / WASM_PAGE);
    this.layout = {
      inputs: k,
      maxOutputs: m,
      slotBase,
      slotStride,
      memoryPages,
      relaxedSwizzle: relaxedSwizzleSupported(),
    };

    const key = JSON.stringify(this.layout);
    const module = compiledKernels.get(key) ?? new wasm.Module(assembleKernelModule(this.layout));
    compiledKernels.set(key, module);
    this.memory = new wasm.Memory({ initial: memoryPages });
    const instance = new wasm.Instance(module, { env: { memory: this.memory } });
    for (let outputs = 1; outputs <= m; outputs++) {
      this.gfKernels.push(instance.exports[`gf${outputs}`] as GfKernel);
    }
    this.xorKernel = instance.exports.xor as XorKernel;
    this.bytes = new Uint8Array(this.memory.buffer);
    this.stagingChunkBytes = Math.min(this.chunkBytes, this.slotBytes);
    for (let o = 0; o < m; o++) {
      this.stagedFullOutputs.push(
        new Uint8Array(this.memory.buffer, outputSlot(this.layout, o), this.stagingChunkBytes),
      );
    }

    const encodeIsXor = policy.codec === "xor" && m === 1;
    this.encodePlan = [{ xor: encodeIsXor, tables: this.encodeTables, first: 0, count: m }];
    for (let p = 0; p < m; p++) {
      const row = this.generator[k + p]!;
      for (let s = 0; s < k; s++) {
        writeNibbleTables(row[s]!, this.bytes, this.encodeTables + (p * k + s) * TABLE_BYTES_PER_COEFFICIENT);
      }
    }
  }

  /** Whether the kernels use i8x16.relaxed_swizzle (see KernelLayout.relaxedSwizzle). */
  get relaxedSwizzle(): boolean {
    return this.layout.relaxedSwizzle;
  }

  /** Whether WebAssembly SIMD works here (Node 16.4+ on x64 and arm64 has it). */
  static isSupported(): boolean {
    return validates([...op.v128Const(new Array(16).fill(0)), ...op.drop()]);
  }

  protected encodeCells(
    dataCells: readonly Uint8Array[],
    parityCells: readonly Uint8Array[],
    length: number,
  ): void {
    this.code(dataCells, length, this.encodePlan, this.encodePlan.length, parityCells);
  }

  protected combineCells(
    sources: readonly Uint8Array[],
    rows: readonly Uint8Array[],
    rowKeys: readonly number[],
    outputs: readonly Uint8Array[],
    length: number,
  ): void {
    // Split the rows into kernel calls: up to m rows per call, so each source vector is loaded
    // once for all of them, and all-ones rows on their own through the xor kernel.
    const plan = this.reconstructPlan;
    let calls = 0;
    let tableOffset = this.reconstructTables;
    let w = 0;
    while (w < rows.length) {
      const call = plan[calls++]!;
      call.first = w;
      if (this.tablesOf(rowKeys[w]!, rows[w]!) === null) {
        call.xor = true;
        call.count = 1;
        w++;
        continue;
      }
      let count = 0;
      const tables = tableOffset;
      while (count < this.parityUnits && w + count < rows.length) {
        const rowTables = this.tablesOf(rowKeys[w + count]!, rows[w + count]!);
        if (rowTables === null) break;
        this.bytes.set(rowTables, tableOffset);
        tableOffset += rowTables.length;
        count++;
      }
      call.xor = false;
      call.tables = tables;
      call.count = count;
      w += count;
    }
    this.code(sources, length, plan, calls, outputs);
  }

  /**
   * Runs `plan` over `length` bytes of the k `sources` into `outputs`, chunk by chunk: copy the
   * chunk of every source into its slot, run the kernels, copy each output chunk out. A cell that
   * already sits where it would be copied to (stripeBuffers) is not copied.
   */
  private code(
    sources: readonly Uint8Array[],
    length: number,
    plan: readonly KernelCall[],
    calls: number,
    outputs: readonly Uint8Array[],
  ): void {
    const k = this.dataUnits;
    let external = true;
    for (let s = 0; s < k && external; s++) external = sources[s]!.buffer !== this.memory.buffer;
    for (let c = 0; c < calls && external; c++) {
      const call = plan[c]!;
      for (let o = 0; o < call.count; o++) {
        if (outputs[call.first + o]!.buffer === this.memory.buffer) external = false;
      }
    }
    if (external) {
      this.codeThroughStaging(sources, length, plan, calls, outputs);
      return;
    }
    const stride = this.slotBytes;
    const chunkBytes = this.chunkBytes;
    for (let passStart = 0; passStart < length; passStart += stride) {
      const passLength = Math.min(stride, length - passStart);
      const chunkViews = this.outputChunkViews(passLength);
      for (let chunk = 0, start = 0; start < passLength; chunk++, start += chunkBytes) {
        const chunkLength = Math.min(chunkBytes, passLength - start);
        for (let s = 0; s < k; s++) {
          this.copyIn(s, sources[s]!, passStart, start, chunkLength);
        }
        for (let c = 0; c < calls; c++) {
          const call = plan[c]!;
          if (call.xor) this.xorKernel(start, start + roundUp(chunkLength, XOR_KERNEL_GRANULE));
          else
            this.gfKernels[call.count - 1]!(
              call.tables,
              start,
              start + roundUp(chunkLength, GF_KERNEL_GRANULE),
            );
          for (let o = 0; o < call.count; o++) {
            const view = chunkViews[o]![chunk]!;
            const target = outputs[call.first + o]!;
            const at = passStart + start;
            if (target.buffer === this.memory.buffer && target.byteOffset + at === view.byteOffset) continue;
            target.set(view, at);
          }
        }
      }
    }
  }

  /**
   * `code` for cells that all live outside the coder's memory (the usual case): every chunk of
   * every cell is copied to the start of its slot and coded there, so the k + m staged chunks are
   * the same few hundred KiB for the whole call and stay in L2 between the copy, the kernel and the
   * copy out. Copying each chunk to its own place in the slot instead walks 9 MiB of slots per
   * RS-6-3 stripe, which the copies and the kernel then read back from L3 or memory.
   */
  private codeThroughStaging(
    sources: readonly Uint8Array[],
    length: number,
    plan: readonly KernelCall[],
    calls: number,
    outputs: readonly Uint8Array[],
  ): void {
    const k = this.dataUnits;
    const layout = this.layout;
    const chunkBytes = this.stagingChunkBytes;
    for (let chunk = 0, at = 0; at < length; chunk++, at += chunkBytes) {
      const chunkLength = Math.min(chunkBytes, length - at);
      for (let s = 0; s < k; s++) {
        this.bytes.set(this.stagingViews(s, sources[s]!)[chunk]!, inputSlot(layout, s));
      }
      const staged = this.stagedOutputs(chunkLength);
      for (let c = 0; c < calls; c++) {
        const call = plan[c]!;
        if (call.xor) this.xorKernel(0, roundUp(chunkLength, XOR_KERNEL_GRANULE));
        else this.gfKernels[call.count - 1]!(call.tables, 0, roundUp(chunkLength, GF_KERNEL_GRANULE));
        for (let o = 0; o < call.count; o++) outputs[call.first + o]!.set(staged[o]!, at);
      }
    }
  }

  /** The cell last seen in `slot`, cut into staging chunks; reused while the caller reuses the cell. */
  private stagingViews(slot: number, cell: Uint8Array): Uint8Array[] {
    if (this.stagingViewsOf[slot] !== cell) {
      const views: Uint8Array[] = [];
      for (let start = 0; start < cell.length; start += this.stagingChunkBytes) {
        views.push(cell.subarray(start, Math.min(cell.length, start + this.stagingChunkBytes)));
      }
      this.stagingViewsOf[slot] = cell;
      this.stagingChunks[slot] = views;
    }
    return this.stagingChunks[slot]!;
  }

  /** Views of the first `length` bytes of each output slot: a full chunk's, or the last chunk's. */
  private stagedOutputs(length: number): Uint8Array[] {
    if (length === this.stagingChunkBytes) return this.stagedFullOutputs;
    if (length !== this.stagedTailLength) {
      this.stagedTailOutputs = this.stagedFullOutputs.map((view) => view.subarray(0, length));
      this.stagedTailLength = length;
    }
    return this.stagedTailOutputs;
  }

  private copyIn(slot: number, cell: Uint8Array, passStart: number, start: number, length: number): void {
    const target = inputSlot(this.layout, slot) + start;
    const from = passStart + start;
    if (cell.buffer === this.memory.buffer && cell.byteOffset + from === target) return;
    if (from === 0 && length === cell.length) {
      this.bytes.set(cell, target);
    } else if (passStart === 0) {
      this.bytes.set(this.inputChunkViews(slot, cell)[start / this.chunkBytes]!, target);
    } else {
      // Cells longer than a slot: the rare path, which allocates its views.
      this.bytes.set(cell.subarray(from, from + length), target);
    }
  }

  /**
   * The chunks of the cell last seen in input slot `slot`, as views. A writer that reuses its
   * stripe buffers therefore allocates no views after the first stripe; the cost is that the last
   * cells stay referenced until the next call.
   */
  private inputChunkViews(slot: number, cell: Uint8Array): Uint8Array[] {
    if (this.inputViewsOf[slot] !== cell) {
      const views: Uint8Array[] = [];
      const end = Math.min(cell.length, this.slotBytes);
      for (let start = 0; start < end; start += this.chunkBytes) {
        views.push(cell.subarray(start, Math.min(end, start + this.chunkBytes)));
      }
      this.inputViewsOf[slot] = cell;
      this.inputViews[slot] = views;
    }
    return this.inputViews[slot]!;
  }

  /** Views of the output slots' chunks for a pass of `length` bytes; rebuilt when it changes. */
  private outputChunkViews(length: number): Uint8Array[][] {
    if (length !== this.outputViewLength) {
      this.outputViews = [];
      for (let o = 0; o < this.parityUnits; o++) {
        const views: Uint8Array[] = [];
        for (let start = 0; start < length; start += this.chunkBytes) {
          const chunkLength = Math.min(this.chunkBytes, length - start);
          views.push(new Uint8Array(this.memory.buffer, outputSlot(this.layout, o) + start, chunkLength));
        }
        this.outputViews.push(views);
      }
      this.outputViewLength = length;
    }
    return this.outputViews;
  }

  private tablesOf(key: number, row: Uint8Array): Uint8Array | null {
    let tables = this.rowTables.get(key);
    if (tables === undefined) {
      if (row.every((c) => c === 1)) {
        tables = null;
      } else {
        tables = new Uint8Array(row.length * TABLE_BYTES_PER_COEFFICIENT);
        for (let s = 0; s < row.length; s++)
          writeNibbleTables(row[s]!, tables, s * TABLE_BYTES_PER_COEFFICIENT);
      }
      this.rowTables.set(key, tables);
    }
    return tables;
  }

  /**
   * The stripe's cells as views of this coder's WebAssembly memory: data cell i is input slot i and
   * parity cell j is output slot j, so a writer that reads a stripe straight into `dataCells` and
   * sends `parityCells` from where encode() left them skips both copies. They are the coder's
   * working memory: valid until its next call with other cells (a reconstruct fills the input
   * slots with the fragments it reads).
   */
  override stripeBuffers(length = this.policy.cellSize): {
    dataCells: Uint8Array[];
    parityCells: Uint8Array[];
  } {
    if (!Number.isInteger(length) || length < 0 || length > this.slotBytes) {
      throw new RangeError(
        `${this.policy.name}: stripe cells are 0..${this.slotBytes} bytes in this coder, asked for ${length}`,
      );
    }
    const dataCells: Uint8Array[] = [];
    const parityCells: Uint8Array[] = [];
    for (let s = 0; s < this.dataUnits; s++) {
      dataCells.push(new Uint8Array(this.memory.buffer, inputSlot(this.layout, s), length));
    }
    for (let p = 0; p < this.parityUnits; p++) {
      parityCells.push(new Uint8Array(this.memory.buffer, outputSlot(this.layout, p), length));
    }
    return { dataCells, parityCells };
  }
}
