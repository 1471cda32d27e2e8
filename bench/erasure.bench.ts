/**
 * Reed-Solomon RS(6,3) with HDFS's 1 MiB cells on one thread: encode, and reconstruct three lost
 * data cells, in GB/s of stripe data (6 MiB per stripe), beside `@ronomon/reed-solomon` (a C addon)
 * and a Buffer.copy of the same 6 MiB.
 *
 * The machine is shared, so the cases run round-robin (every round measures each case once, the
 * addon and memcpy included), each ratio is taken within a round, and the table gives the median
 * over the rounds with the range of the per-round ratios. The codecs read the same data cells:
 * views of the one 6 MiB buffer the addon's API takes. Beside wall-clock rates it gives rates per
 * CPU second of the process (the addon runs on a libuv thread, which counts too), which other
 * processes on the machine disturb less. Run it a few times before trusting a digit.
 *
 *   npm run bench -- erasure
 */
import { spawnSync } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { createRequire } from "node:module";
import {
  type ErasureCoder,
  erasureCodingPolicy,
  ReferenceErasureCoder,
  WasmSimdErasureCoder,
} from "../src/dataplane/storage/erasure/index.js";
import { createStripeCodec } from "../src/dataplane/storage/erasure/stripe.js";

const POLICY = erasureCodingPolicy("RS-6-3");
const K = POLICY.dataUnits;
const M = POLICY.parityUnits;
const CELL = POLICY.cellSize;
const STRIPE_DATA_BYTES = K * CELL;
const ROUNDS = 9;
const ROUND_MS = 250;
/** The reference codec needs ~40 ms a stripe; give it enough stripes per round. */
const REFERENCE_ROUND_MS = 600;
const LOST = [0, 1, 2];

type Operation = () => unknown;

interface Implementation {
  label: string;
  encode: Operation;
  reconstruct?: Operation;
  roundMs?: number;
  /** Runs once before the rounds; throws if a reconstruct does not give back the data. */
  setUp?: () => Promise<void>;
}

/** Per round: GB/s by wall clock and per CPU second of the process. */
interface Sample {
  wall: number;
  cpu: number;
}

interface Figure {
  /** Median GB/s over the rounds, by wall clock and per CPU second. */
  wall: number;
  cpu: number;
  /** Median and range of the per-round ratios to the addon (null without it). */
  toAddon: { median: number; min: number; max: number } | null;
  toAddonCpu: number | null;
}

interface Row {
  label: string;
  encode: Figure;
  reconstruct: Figure | null;
}

async function gigabytesPerSecond(operation: Operation, roundMs: number): Promise<Sample> {
  let operations = 0;
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  let elapsed = 0;
  do {
    const pending = operation();
    if (pending instanceof Promise) await pending;
    operations++;
    elapsed = Number(process.hrtime.bigint() - start);
  } while (elapsed < roundMs * 1e6);
  const cpu = process.cpuUsage(cpuStart);
  const cpuNanoseconds = (cpu.user + cpu.system) * 1000;
  return {
    wall: (operations * STRIPE_DATA_BYTES) / elapsed,
    cpu: (operations * STRIPE_DATA_BYTES) / Math.max(cpuNanoseconds, 1),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * The stripe every codec reads: the k data cells as one buffer, as the addon's API takes them, and
 * as views of it for the ErasureCoder API.
 */
const STRIPE = randomFillSync(Buffer.alloc(STRIPE_DATA_BYTES));
const STRIPE_CELLS = Array.from({ length: K }, (_, i) => STRIPE.subarray(i * CELL, (i + 1) * CELL));

function viaCoder(label: string, coder: ErasureCoder, roundMs?: number): Implementation {
  const data = STRIPE_CELLS;
  const parity = Array.from({ length: M }, () => Buffer.alloc(CELL));
  coder.encode(data, parity);
  const fragments = data.map((cell, i) => (LOST.includes(i) ? null : cell)).concat(parity);
  const rebuilt = LOST.map(() => Buffer.alloc(CELL));
  const reconstruct = () => coder.reconstruct(fragments, LOST, rebuilt);
  reconstruct();
  for (const [i, lost] of LOST.entries()) {
    if (!rebuilt[i]!.equals(data[lost]!)) throw new Error(`${label} rebuilt data cell ${lost} wrongly`);
  }
  return { label, encode: () => coder.encode(data, parity), reconstruct, roundMs };
}

/** The stripe read straight into the coder's memory (stripeBuffers), so no cell is copied. */
function viaStagedCells(label: string, coder: WasmSimdErasureCoder): Implementation {
  const { dataCells, parityCells } = coder.stripeBuffers();
  for (const [i, cell] of dataCells.entries()) cell.set(STRIPE_CELLS[i]!);
  return { label, encode: () => coder.encode(dataCells, parityCells) };
}

interface RonomonReedSolomon {
  create(k: number, m: number): unknown;
  encode(
    context: unknown,
    sources: number,
    targets: number,
    buffer: Buffer,
    bufferOffset: number,
    bufferSize: number,
    parity: Buffer,
    parityOffset: number,
    paritySize: number,
    callback: (error?: Error) => void,
  ): void;
}

/** @ronomon/reed-solomon: a C addon run on libuv's pool; one call in flight, so one core. */
function viaRonomon(): Implementation | string {
  const require = createRequire(import.meta.url);
  let addon: RonomonReedSolomon;
  let version: string;
  try {
    addon = require("@ronomon/reed-solomon") as RonomonReedSolomon;
    version = (require("@ronomon/reed-solomon/package.json") as { version: string }).version;
  } catch (error) {
    return `not available: ${(error as Error).message.split("\n")[0]}`;
  }
  const context = addon.create(K, M);
  // Its API takes the k data cells as one buffer and the m parity cells as another. It rebuilds
  // lost cells in place, which rewrites the shared stripe with the bytes it already holds.
  const buffer = STRIPE;
  const original = Buffer.from(buffer);
  const parity = Buffer.alloc(M * CELL);
  const bits = (from: number, to: number) => {
    let mask = 0;
    for (let i = from; i < to; i++) mask |= 1 << i;
    return mask;
  };
  const call = (sources: number, targets: number) =>
    new Promise<void>((resolve, reject) =>
      addon.encode(context, sources, targets, buffer, 0, buffer.length, parity, 0, parity.length, (error) =>
        error ? reject(error) : resolve(),
      ),
    );
  const lostMask = LOST.reduce((mask, i) => mask | (1 << i), 0);
  const encode = () => call(bits(0, K), bits(K, K + M));
  const reconstruct = () => call(bits(0, K + M) & ~lostMask, lostMask);
  return {
    label: `@ronomon/reed-solomon ${version} (C addon)`,
    encode,
    reconstruct,
    // Wipe the lost cells once and check they come back (before any other codec reads them).
    setUp: async () => {
      await encode();
      buffer.fill(0, 0, LOST.length * CELL);
      await reconstruct();
      if (!buffer.equals(original)) {
        original.copy(buffer);
        throw new Error("@ronomon/reed-solomon rebuilt the data cells wrongly");
      }
    },
  };
}

const ADDON_LABEL = "@ronomon/reed-solomon";

/**
 * "As the striped writer runs it" (striped.ts): a stripe arrives as the file's chunks (64 KiB, what
 * a socket or a file stream hands over), and the parity cells must outlive the stripe, since the
 * sends still hold them when the next stripe is coded. The data cells are sent as the chunks
 * they arrived in. Each codec gathers the same chunks into the buffers it codes from and leaves
 * parity in buffers of their own, every round; reconstruction likewise rebuilds 3 lost data cells
 * from the chunks of the 6 fragments read, into cells of their own.
 */
const SOURCE_CHUNK = 64 * 1024;
const chunksOf = (cell: Buffer) =>
  Array.from({ length: cell.length / SOURCE_CHUNK }, (_, c) =>
    cell.subarray(c * SOURCE_CHUNK, (c + 1) * SOURCE_CHUNK),
  );
const WRITER_SOURCE = randomFillSync(Buffer.alloc(STRIPE_DATA_BYTES));
const WRITER_CHUNKS = chunksOf(WRITER_SOURCE);
const WRITER_PARITY = new ReferenceErasureCoder(POLICY).encode(
  Array.from({ length: K }, (_, i) => WRITER_SOURCE.subarray(i * CELL, (i + 1) * CELL)),
) as Buffer[];
const checkParity = (label: string, parity: readonly Uint8Array[]) => {
  for (const [j, cell] of parity.entries()) {
    if (!Buffer.from(cell.buffer, cell.byteOffset, cell.byteLength).equals(WRITER_PARITY[j]!))
      throw new Error(`${label} wrote parity cell ${j} wrongly`);
  }
};
/** The fragments a reader gets back with data cells 0-2 lost: each as the chunks it arrived in. */
const READ_FRAGMENTS = [
  ...Array.from({ length: K }, (_, i) =>
    LOST.includes(i) ? null : chunksOf(WRITER_SOURCE.subarray(i * CELL, (i + 1) * CELL)),
  ),
  ...WRITER_PARITY.map((cell) => chunksOf(Buffer.from(cell))),
];

/** The StripeCodec striped.ts runs, made as it makes it. */
function viaStripedWriter(label: string): Implementation {
  const codec = createStripeCodec(POLICY);
  checkParity(label, codec.encode(WRITER_CHUNKS).parityCells);
  const reconstruct = () => codec.reconstruct(READ_FRAGMENTS, LOST, CELL);
  for (const [at, cell] of reconstruct().entries()) {
    if (!cell.equals(WRITER_SOURCE.subarray(LOST[at]! * CELL, (LOST[at]! + 1) * CELL)))
      throw new Error(`${label} rebuilt data cell ${LOST[at]} wrongly`);
  }
  return { label, encode: () => codec.encode(WRITER_CHUNKS), reconstruct };
}

/** What striped.ts did before StripeCodec: join the chunks, pad, encode from them, copy every cell to send. */
function viaJoinedStripe(label: string, coder: WasmSimdErasureCoder): Implementation {
  const encode = () => {
    const data = Buffer.concat(WRITER_CHUNKS);
    const cells = Array.from({ length: K }, (_, i) => data.subarray(i * CELL, (i + 1) * CELL));
    const parity = coder.encode(cells);
    return [...cells.map((cell) => Buffer.from(cell)), ...parity.map((cell) => Buffer.from(cell))];
  };
  checkParity(label, encode().slice(K));
  const reconstruct = () => {
    const fragments = READ_FRAGMENTS.map((parts) => (parts ? Buffer.concat(parts) : null));
    return coder.reconstruct(fragments, LOST).map((cell) => Buffer.from(cell));
  };
  return { label, encode, reconstruct };
}

/** The addon from the same chunks: gathered into its stripe buffer, parity in a buffer of its own. */
function viaRonomonWriter(): Implementation | string {
  const require = createRequire(import.meta.url);
  let addon: RonomonReedSolomon;
  try {
    addon = require("@ronomon/reed-solomon") as RonomonReedSolomon;
  } catch (error) {
    return `not available: ${(error as Error).message.split("\n")[0]}`;
  }
  const context = addon.create(K, M);
  const buffer = Buffer.alloc(STRIPE_DATA_BYTES);
  const call = (parity: Buffer, sources: number, targets: number) =>
    new Promise<Buffer>((resolve, reject) =>
      addon.encode(context, sources, targets, buffer, 0, buffer.length, parity, 0, parity.length, (error) =>
        error ? reject(error) : resolve(parity),
      ),
    );
  const all = (1 << (K + M)) - 1;
  const lostMask = LOST.reduce((mask, i) => mask | (1 << i), 0);
  const encode = async () => {
    let at = 0;
    for (const chunk of WRITER_CHUNKS) at += chunk.copy(buffer, at);
    const parity = await call(Buffer.allocUnsafeSlow(M * CELL), all & ((1 << K) - 1), all & ~((1 << K) - 1));
    return Array.from({ length: M }, (_, j) => parity.subarray(j * CELL, (j + 1) * CELL));
  };
  // Its generator is not HDFS's, so its reconstruction reads parity it computed itself (setUp).
  let fragments: (Buffer[] | null)[] = [];
  const parity = Buffer.allocUnsafeSlow(M * CELL);
  const reconstruct = async () => {
    for (const [i, parts] of fragments.entries()) {
      if (!parts) continue;
      let at = i < K ? i * CELL : (i - K) * CELL;
      for (const part of parts) at += part.copy(i < K ? buffer : parity, at);
    }
    await call(parity, all & ~lostMask, lostMask);
    // Rebuilt in place, in the buffer the next stripe is gathered into: copied out to be sent.
    return LOST.map((i) => Buffer.from(buffer.subarray(i * CELL, (i + 1) * CELL)));
  };
  return {
    label: `${ADDON_LABEL} from the same chunks`,
    encode,
    reconstruct,
    setUp: async () => {
      const ownParity = (await encode()).map((cell) => chunksOf(Buffer.from(cell)));
      fragments = [...READ_FRAGMENTS.slice(0, K), ...ownParity];
      buffer.fill(0, 0, LOST.length * CELL);
      const rebuilt = await reconstruct();
      for (const [at, cell] of rebuilt.entries()) {
        if (!cell.equals(WRITER_SOURCE.subarray(LOST[at]! * CELL, (LOST[at]! + 1) * CELL)))
          throw new Error(`@ronomon/reed-solomon rebuilt data cell ${LOST[at]} wrongly`);
      }
    },
  };
}

/** Round-robin over the implementations and a memcpy of the same bytes. */
async function measure(implementations: Implementation[]): Promise<{ memcpy: number; rows: Row[] }> {
  const sources = STRIPE_CELLS;
  const copies = Array.from({ length: K }, () => Buffer.alloc(CELL));
  const memcpy: Operation = () => {
    for (let i = 0; i < K; i++) sources[i]!.copy(copies[i]!);
  };
  const samples = implementations.map(() => ({ encode: [] as Sample[], reconstruct: [] as Sample[] }));
  const memcpyRates: Sample[] = [];
  // The addon's setUp rewrites the shared stripe, so it runs before the others read it.
  const ordered = [...implementations].sort(
    (a, b) => Number(b.label.startsWith(ADDON_LABEL)) - Number(a.label.startsWith(ADDON_LABEL)),
  );
  for (const implementation of ordered) await implementation.setUp?.();
  for (let round = -1; round < ROUNDS; round++) {
    // Round -1 warms every path up (JIT tiers, page faults) and is not counted.
    const roundMs = round < 0 ? 50 : ROUND_MS;
    const memcpyRate = await gigabytesPerSecond(memcpy, roundMs);
    for (const [i, implementation] of implementations.entries()) {
      const ms = round < 0 ? 50 : (implementation.roundMs ?? ROUND_MS);
      const encode = await gigabytesPerSecond(implementation.encode, ms);
      const reconstruct = implementation.reconstruct
        ? await gigabytesPerSecond(implementation.reconstruct, ms)
        : null;
      if (round < 0) continue;
      samples[i]!.encode.push(encode);
      if (reconstruct !== null) samples[i]!.reconstruct.push(reconstruct);
    }
    if (round >= 0) memcpyRates.push(memcpyRate);
  }
  const addon = implementations.findIndex((implementation) => implementation.label.startsWith(ADDON_LABEL));
  const figure = (own: Sample[], reference: Sample[] | undefined): Figure => {
    const ratios = reference?.length ? own.map((sample, r) => sample.wall / reference[r]!.wall) : null;
    return {
      wall: median(own.map((sample) => sample.wall)),
      cpu: median(own.map((sample) => sample.cpu)),
      toAddon: ratios && { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) },
      toAddonCpu: reference?.length ? median(own.map((sample, r) => sample.cpu / reference[r]!.cpu)) : null,
    };
  };
  const rows = implementations.map((implementation, i) => ({
    label: implementation.label,
    encode: figure(samples[i]!.encode, samples[addon]?.encode),
    reconstruct: implementation.reconstruct
      ? figure(samples[i]!.reconstruct, samples[addon]?.reconstruct)
      : null,
  }));
  return { memcpy: median(memcpyRates.map((sample) => sample.wall)), rows };
}

function wasmSimdImplementations(): Implementation[] {
  const coder = new WasmSimdErasureCoder(POLICY);
  const swizzle = coder.relaxedSwizzle ? "relaxed_swizzle" : "i8x16.swizzle";
  return [
    viaCoder(`wasm-simd (${swizzle}), caller's buffers`, coder),
    viaStagedCells(`wasm-simd (${swizzle}), cells staged in its memory`, new WasmSimdErasureCoder(POLICY)),
  ];
}

function stripedWriterImplementations(): Implementation[] {
  const coder = new WasmSimdErasureCoder(POLICY);
  const swizzle = coder.relaxedSwizzle ? "relaxed_swizzle" : "i8x16.swizzle";
  return [
    viaStripedWriter(`striped writer, wasm-simd (${swizzle})`),
    viaJoinedStripe(`before: joined stripe, copies (${swizzle})`, coder),
  ];
}

/** The whole bench of one process: the coder alone, then as the striped writer runs it. */
async function measureAll(
  withReference: boolean,
): Promise<{ coder: { memcpy: number; rows: Row[] }; writer: { memcpy: number; rows: Row[] } | string }> {
  const implementations = [
    ...(withReference
      ? [viaCoder("reference TypeScript", new ReferenceErasureCoder(POLICY), REFERENCE_ROUND_MS)]
      : []),
    ...wasmSimdImplementations(),
  ];
  const ronomon = viaRonomon();
  if (typeof ronomon === "string") console.error(`@ronomon/reed-solomon ${ronomon}`);
  else implementations.push(ronomon);
  const coder = await measure(implementations);
  const writerImplementations = stripedWriterImplementations();
  const ronomonWriter = viaRonomonWriter();
  if (typeof ronomonWriter !== "string") writerImplementations.push(ronomonWriter);
  const writer = typeof ronomonWriter === "string" ? ronomonWriter : await measure(writerImplementations);
  return { coder, writer };
}

/** What the relaxed-SIMD child process runs: the WebAssembly codec and the addon, as JSON on stdout. */
export async function measureWasmSimd(): Promise<void> {
  console.log(JSON.stringify(await measureAll(false)));
}

/** Node 20 ships relaxed SIMD behind a flag (Node 22 by default), so it is measured in a child. */
function measureRelaxedInChild(): Awaited<ReturnType<typeof measureAll>> | string {
  const child = spawnSync(
    process.execPath,
    [
      "--experimental-wasm-relaxed-simd",
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      `import(${JSON.stringify(import.meta.url)}).then((m) => m.measureWasmSimd())`,
    ],
    { encoding: "utf8" },
  );
  if (child.status !== 0) return `failed: ${child.stderr.trim().split("\n")[0]}`;
  return JSON.parse(child.stdout.trim().split("\n").at(-1)!) as Awaited<ReturnType<typeof measureAll>>;
}

function printTable(title: string, memcpy: number, rows: Row[]): void {
  const gb = (value: number) => value.toFixed(2).padStart(6);
  const cell = (figure: Figure | null) => {
    if (figure === null) return "".padEnd(44);
    const toAddon = figure.toAddon
      ? `${figure.toAddon.median.toFixed(2)} (${figure.toAddon.min.toFixed(2)}-${figure.toAddon.max.toFixed(2)})`
      : "";
    const cpu = figure.toAddonCpu === null ? "" : figure.toAddonCpu.toFixed(2);
    return `${gb(figure.wall)} ${gb(figure.cpu)}  ${toAddon.padEnd(17)} ${cpu.padStart(5)}`;
  };
  console.log(`\n${title}`);
  console.log(
    `${"".padEnd(52)}${"encode".padEnd(45)}reconstruct 3 data cells\n${"".padEnd(52)}${"  GB/s  /CPU s  /addon (range)   /addon CPU  ".repeat(2)}`,
  );
  console.log(`${`memcpy (Buffer.copy of the ${K} data cells)`.padEnd(52)}${gb(memcpy)}`);
  for (const row of rows) {
    console.log(`${row.label.padEnd(52)}${cell(row.encode)} ${cell(row.reconstruct)}`.trimEnd());
  }
}

const WRITER_TITLE = `As the striped writer runs it (striped.ts): from ${SOURCE_CHUNK / 1024} KiB source chunks to parity cells of their own; reconstruct from the chunks read into cells of their own`;

function printAll(result: Awaited<ReturnType<typeof measureAll>>, title: string): void {
  printTable(title, result.coder.memcpy, result.coder.rows);
  if (typeof result.writer === "string")
    console.log(`\nstriped writer: @ronomon/reed-solomon ${result.writer}`);
  else
    printTable(
      `${WRITER_TITLE}${title.startsWith("The same") ? ", relaxed SIMD" : ""}`,
      result.writer.memcpy,
      result.writer.rows,
    );
}

export async function run(): Promise<void> {
  printAll(
    await measureAll(true),
    `RS-6-3, ${CELL / 1024} KiB cells, one thread, GB/s of stripe data (${STRIPE_DATA_BYTES / 2 ** 20} MiB) by wall clock and per CPU second; ratios to the addon per round: median (range) of ${ROUNDS} round-robin rounds`,
  );
  if (!new WasmSimdErasureCoder(POLICY).relaxedSwizzle) {
    const relaxed = measureRelaxedInChild();
    if (typeof relaxed === "string") console.log(`\nrelaxed-SIMD child process ${relaxed}`);
    else
      printAll(relaxed, "The same in a child node with --experimental-wasm-relaxed-simd (Node 22's default)");
  }
}
