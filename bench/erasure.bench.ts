/**
 * Reed-Solomon RS(6,3) with HDFS's 1 MiB cells on one thread: encode, and reconstruct three lost
 * data cells, in GB/s of stripe data (6 MiB per stripe), beside a Buffer.copy of the same 6 MiB.
 *
 * The machine is shared, so the cases run round-robin (every round measures each case once, memcpy
 * included) and each figure is the median over the rounds; a ratio to memcpy is taken within a
 * round, then the median is reported. Run it a few times before trusting a digit.
 *
 *   npx tsx -e 'import("./bench/erasure.bench.ts").then(m => m.run())'
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

const POLICY = erasureCodingPolicy("RS-6-3");
const K = POLICY.dataUnits;
const M = POLICY.parityUnits;
const CELL = POLICY.cellSize;
const STRIPE_DATA_BYTES = K * CELL;
const ROUNDS = 7;
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

interface Row {
  label: string;
  encode: number;
  encodeRatio: number;
  reconstruct: number | null;
  reconstructRatio: number | null;
}

async function gigabytesPerSecond(operation: Operation, roundMs: number): Promise<number> {
  let operations = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  do {
    const pending = operation();
    if (pending instanceof Promise) await pending;
    operations++;
    elapsed = Number(process.hrtime.bigint() - start);
  } while (elapsed < roundMs * 1e6);
  return (operations * STRIPE_DATA_BYTES) / elapsed;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function randomCells(count: number): Buffer[] {
  return Array.from({ length: count }, () => randomFillSync(Buffer.alloc(CELL)));
}

function viaCoder(label: string, coder: ErasureCoder, roundMs?: number): Implementation {
  const data = randomCells(K);
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
  for (const cell of dataCells) randomFillSync(cell);
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
  // Its API takes the k data cells as one buffer and the m parity cells as another.
  const buffer = randomFillSync(Buffer.alloc(STRIPE_DATA_BYTES));
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
    // It rebuilds in place: wipe the lost cells once and check they come back.
    setUp: async () => {
      await encode();
      buffer.fill(0, 0, LOST.length * CELL);
      await reconstruct();
      if (!buffer.equals(original)) throw new Error("@ronomon/reed-solomon rebuilt the data cells wrongly");
    },
  };
}

/** Round-robin over the implementations and a memcpy of the same bytes. */
async function measure(implementations: Implementation[]): Promise<{ memcpy: number; rows: Row[] }> {
  const sources = randomCells(K);
  const copies = randomCells(K);
  const memcpy: Operation = () => {
    for (let i = 0; i < K; i++) sources[i]!.copy(copies[i]!);
  };
  const samples = implementations.map(() => ({ encode: [] as number[], reconstruct: [] as number[] }));
  const ratios = implementations.map(() => ({ encode: [] as number[], reconstruct: [] as number[] }));
  const memcpyRates: number[] = [];
  for (const implementation of implementations) await implementation.setUp?.();
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
      ratios[i]!.encode.push(encode / memcpyRate);
      if (reconstruct !== null) {
        samples[i]!.reconstruct.push(reconstruct);
        ratios[i]!.reconstruct.push(reconstruct / memcpyRate);
      }
    }
    if (round >= 0) memcpyRates.push(memcpyRate);
  }
  const rows = implementations.map((implementation, i) => ({
    label: implementation.label,
    encode: median(samples[i]!.encode),
    encodeRatio: median(ratios[i]!.encode),
    reconstruct: implementation.reconstruct ? median(samples[i]!.reconstruct) : null,
    reconstructRatio: implementation.reconstruct ? median(ratios[i]!.reconstruct) : null,
  }));
  return { memcpy: median(memcpyRates), rows };
}

function wasmSimdImplementations(): Implementation[] {
  const coder = new WasmSimdErasureCoder(POLICY);
  const swizzle = coder.relaxedSwizzle ? "relaxed_swizzle" : "i8x16.swizzle";
  return [
    viaCoder(`wasm-simd (${swizzle}), caller's buffers`, coder),
    viaStagedCells(`wasm-simd (${swizzle}), cells staged in its memory`, new WasmSimdErasureCoder(POLICY)),
  ];
}

/** What the relaxed-SIMD child process runs: the WebAssembly codec and the addon, as JSON on stdout. */
export async function measureWasmSimd(): Promise<void> {
  const implementations = wasmSimdImplementations();
  const ronomon = viaRonomon();
  if (typeof ronomon !== "string") implementations.push(ronomon);
  console.log(JSON.stringify(await measure(implementations)));
}

/** Node 20 ships relaxed SIMD behind a flag (Node 22 by default), so it is measured in a child. */
function measureRelaxedInChild(): { memcpy: number; rows: Row[] } | string {
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
  return JSON.parse(child.stdout.trim().split("\n").at(-1)!) as { memcpy: number; rows: Row[] };
}

function printTable(title: string, memcpy: number, rows: Row[]): void {
  const gb = (value: number) => value.toFixed(2).padStart(6);
  const ratio = (value: number) => value.toFixed(3).padStart(7);
  console.log(`\n${title}`);
  console.log(`${"".padEnd(54)}encode  /memcpy   reconstruct 3 data  /memcpy`);
  console.log(`${`memcpy (Buffer.copy of the ${K} data cells)`.padEnd(54)}${gb(memcpy)}    1.000`);
  for (const row of rows) {
    const reconstruct =
      row.reconstruct === null ? "" : `   ${gb(row.reconstruct)}             ${ratio(row.reconstructRatio!)}`;
    console.log(`${row.label.padEnd(54)}${gb(row.encode)}  ${ratio(row.encodeRatio)}${reconstruct}`);
  }
}

export async function run(): Promise<void> {
  const implementations = [
    viaCoder("reference TypeScript", new ReferenceErasureCoder(POLICY), REFERENCE_ROUND_MS),
    ...wasmSimdImplementations(),
  ];
  const ronomon = viaRonomon();
  if (typeof ronomon === "string") console.log(`@ronomon/reed-solomon ${ronomon}`);
  else implementations.push(ronomon);

  const { memcpy, rows } = await measure(implementations);
  printTable(
    `RS-6-3, ${CELL / 1024} KiB cells, one thread, GB/s of stripe data (${STRIPE_DATA_BYTES / 2 ** 20} MiB); median of ${ROUNDS} round-robin rounds`,
    memcpy,
    rows,
  );
  if (!new WasmSimdErasureCoder(POLICY).relaxedSwizzle) {
    const relaxed = measureRelaxedInChild();
    if (typeof relaxed === "string") console.log(`\nrelaxed-SIMD child process ${relaxed}`);
    else
      printTable(
        "The same in a child node with --experimental-wasm-relaxed-simd (Node 22's default)",
        relaxed.memcpy,
        relaxed.rows,
      );
  }
}
