/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum HDFS writes per 512-byte
 * chunk (`dfs.checksum.type` CRC32C).
 *
 * Slice-by-8: eight 256-entry tables let the loop fold 8 input bytes per iteration with 8
 * independent lookups instead of 8 dependent byte steps. Measured on this (shared, 2-core)
 * machine over 64 MiB: 610-680 MiB/s in one call and 705-740 MiB/s in 512-byte chunks, which is
 * how blocks are checksummed. The SSE4.2 addon @chainsafe/fast-crc32c reached 3.5 GiB/s in one
 * call but only 810-845 MiB/s per 512-byte chunk (the native call costs more than the CRC), so
 * it is not worth a native dependency in the image; the pure-JS packages are byte-at-a-time.
 */

const POLYNOMIAL = 0x82f63b78;

/** TABLES[k][b]: the CRC of byte b followed by k zero bytes. */
const TABLES: Uint32Array[] = (() => {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  const t0 = tables[0]!;
  for (let b = 0; b < 256; b++) {
    let crc = b;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ POLYNOMIAL : crc >>> 1;
    t0[b] = crc >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    let crc = t0[b]!;
    for (let k = 1; k < 8; k++) {
      crc = (crc >>> 8) ^ t0[crc & 0xff]!;
      tables[k]![b] = crc >>> 0;
    }
  }
  return tables;
})();

const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
];

/**
 * Continues `previous` (the CRC of the bytes before `data`, 0 for none) over `data[start, end)`.
 * Standard CRC32C: crc32c(Buffer.from("123456789")) === 0xe3069283.
 */
export function crc32c(data: Uint8Array, previous = 0, start = 0, end = data.length): number {
  let crc = ~previous >>> 0;
  let i = start;
  // Byte steps until 8 bytes remain aligned to the loop; then 8 bytes per iteration.
  const fast = end - ((end - i) & 7);
  while (i < fast) {
    const lo = (crc ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    crc =
      T7[lo & 0xff]! ^
      T6[(lo >>> 8) & 0xff]! ^
      T5[(lo >>> 16) & 0xff]! ^
      T4[lo >>> 24]! ^
      T3[data[i + 4]!]! ^
      T2[data[i + 5]!]! ^
      T1[data[i + 6]!]! ^
      T0[data[i + 7]!]!;
    i += 8;
  }
  while (i < end) crc = (crc >>> 8) ^ T0[(crc ^ data[i++]!) & 0xff]!;
  return ~crc >>> 0;
}

/** HDFS's default `dfs.bytes-per-checksum`. */
export const BYTES_PER_CHECKSUM = 512;

/** One CRC32C per `bytesPerChecksum` chunk of `data` (the last chunk may be short), big-endian like HDFS's meta files. */
export function chunkChecksums(data: Uint8Array, bytesPerChecksum = BYTES_PER_CHECKSUM): Buffer {
  const chunks = Math.ceil(data.length / bytesPerChecksum);
  const out = Buffer.allocUnsafe(chunks * 4);
  for (let c = 0; c < chunks; c++) {
    const start = c * bytesPerChecksum;
    out.writeUInt32BE(crc32c(data, 0, start, Math.min(data.length, start + bytesPerChecksum)), c * 4);
  }
  return out;
}
