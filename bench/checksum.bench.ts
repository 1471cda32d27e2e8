/**
 * CRC32C of a block's 512-byte chunks, one call per 64 KiB packet: the WebAssembly kernel that
 * the data nodes use (chunkChecksums, one call per packet, as HDFS's NativeCrc32 chunked sums)
 * beside a call of the TypeScript slice-by-8 per chunk, and a Buffer copy of the same bytes,
 * in the same run. Rounds alternate the cases; each figure is the median over the rounds.
 *
 *   npm run bench -- checksum
 */
import { randomFillSync } from "node:crypto";
import {
  BYTES_PER_CHECKSUM,
  chunkChecksums,
  chunkedSumsEngine,
  crc32c,
  verifyChunkChecksums,
} from "../src/dataplane/storage/crc32c.js";

const TOTAL = 64 * 1024 * 1024;
const PACKET = 64 * 1024;
const ROUNDS = 7;

const data = randomFillSync(Buffer.allocUnsafe(TOTAL));
const sums = Buffer.allocUnsafe((TOTAL / BYTES_PER_CHECKSUM) * 4);
const copy = Buffer.allocUnsafe(TOTAL);

function perPacketBulk(): void {
  for (let at = 0; at < TOTAL; at += PACKET) {
    chunkChecksums(data.subarray(at, at + PACKET), BYTES_PER_CHECKSUM, sums, (at / BYTES_PER_CHECKSUM) * 4);
  }
}

function perPacketVerify(): void {
  for (let at = 0; at < TOTAL; at += PACKET) {
    const bad = verifyChunkChecksums(data.subarray(at, at + PACKET), sums, (at / BYTES_PER_CHECKSUM) * 4);
    if (bad !== -1) throw new Error(`chunk ${bad} of the packet at ${at} does not verify`);
  }
}

function perChunkTypeScript(): void {
  for (let at = 0; at < TOTAL; at += BYTES_PER_CHECKSUM) {
    sums.writeUInt32BE(crc32c(data, 0, at, at + BYTES_PER_CHECKSUM), (at / BYTES_PER_CHECKSUM) * 4);
  }
}

function memcpy(): void {
  data.copy(copy);
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function gbPerSecond(operation: () => void): number {
  const started = process.hrtime.bigint();
  operation();
  return TOTAL / Number(process.hrtime.bigint() - started);
}

export async function run(): Promise<void> {
  const cases: [string, () => void][] = [
    [`chunk sums per packet (${chunkedSumsEngine()})`, perPacketBulk],
    [`verify per packet (${chunkedSumsEngine()})`, perPacketVerify],
    ["TypeScript slice-by-8, one call per chunk", perChunkTypeScript],
    ["Buffer copy (memcpy)", memcpy],
  ];
  for (const [, operation] of cases) operation(); // warm up, and fill sums for verify
  perPacketBulk();
  const rates = new Map<string, number[]>(cases.map(([label]) => [label, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [label, operation] of cases) rates.get(label)!.push(gbPerSecond(operation));
  }
  const reference = median(rates.get("TypeScript slice-by-8, one call per chunk")!);
  console.log("| case | GB/s | ratio to the per-chunk TypeScript |");
  console.log("| --- | --- | --- |");
  for (const [label] of cases) {
    const rate = median(rates.get(label)!);
    console.log(`| ${label} | ${rate.toFixed(2)} | ${(rate / reference).toFixed(2)} |`);
  }
}
