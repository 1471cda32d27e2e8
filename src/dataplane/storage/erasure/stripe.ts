/**
 * One stripe at a time between a striped file's bytes and the coder, the way the striped writer
 * and reader run it: cells are copied once, from the chunks they arrive in straight into the
 * coder's staged buffers (stripeBuffers), coded there, and only what must outlive the stripe is
 * copied out of them (parity, rebuilt cells). Copying each stripe into a buffer of its own first
 * (Buffer.concat), then into the coder and the parity out and again into the send queue cost the
 * writer more than the kernel itself: see bench/erasure.bench.ts, "encode as the striped writer
 * runs it".
 *
 * Each call is synchronous from the first staged byte to the last copied out, so the staged
 * buffers of a coder shared by every writer and reader of the process are never seen half filled
 * by another: callers collect a stripe's chunks (by reference) across their awaits, then code it.
 */
import type { ErasureCoder } from "./coder.js";
import { type ErasureCodingPolicy, erasureCodingPolicy } from "./policy.js";
import { ReferenceErasureCoder } from "./reference.js";
import { WasmSimdErasureCoder } from "./simd.js";

/** A stripe's cells, data then parity; a data cell is the list of views of the chunks it spans. */
export interface EncodedStripe {
  /** Data cell i as views of the source chunks (empty past the end of the data): no byte copied. */
  dataCells: Buffer[][];
  /** The m parity cells, as long as the longest data cell, in buffers of their own. */
  parityCells: Buffer[];
  /** Data bytes in the stripe. */
  length: number;
}

/**
 * Below this many bytes per chunk on average, a data cell is sent as one copy of its staged bytes
 * rather than as its chunks: every chunk costs the sender a write and a chunk header.
 */
const SMALLEST_CHUNK_SENT_AS_IS = 16 * 1024;

/**
 * Bytes of each cell staged and coded per coder call. The stripe goes through the coder a column
 * at a time (these bytes of each of the k cells): staged at the start of the coder's slots, coded
 * and its parity copied out while the column is still in L2, as the coder does itself with cells
 * in the caller's buffers. Staging whole 1 MiB cells first and coding them after reads the 6 MiB
 * back from L3 or memory (measured in bench/erasure.bench.ts).
 */
const COLUMN_BYTES = 64 * 1024;

/** Where a copy out of a cell's chunks is: the chunk, and the byte in it. */
interface Cursor {
  part: number;
  at: number;
}

export class StripeCodec {
  private readonly k: number;
  private readonly m: number;
  private readonly cellSize: number;
  private readonly staged = new Map<number, Uint8Array[]>();
  private readonly cursors: Cursor[];

  constructor(private readonly coder: ErasureCoder) {
    this.k = coder.policy.dataUnits;
    this.m = coder.policy.parityUnits;
    this.cellSize = coder.policy.cellSize;
    this.cursors = Array.from({ length: this.k }, () => ({ part: 0, at: 0 }));
  }

  /** The coder's k staged input cells of `length` bytes: a column's are kept, a last short one's not. */
  private stagedCells(length: number): Uint8Array[] {
    let cells = this.staged.get(length);
    if (!cells) {
      cells = this.coder.stripeBuffers(length).dataCells;
      if (length === COLUMN_BYTES) this.staged.set(length, cells);
    }
    return cells;
  }

  /**
   * Runs `code(staged, start, width)` over the stripe column by column, with the k cells `sources`
   * (each as its chunks; short ones read as zeros to `longest`) staged in the coder's memory.
   */
  private eachColumn(
    sources: readonly (readonly Uint8Array[])[],
    longest: number,
    code: (staged: Uint8Array[], start: number, width: number) => void,
  ): void {
    const cursors = this.cursors;
    for (const cursor of cursors) {
      cursor.part = 0;
      cursor.at = 0;
    }
    for (let start = 0; start < longest; start += COLUMN_BYTES) {
      const width = Math.min(COLUMN_BYTES, longest - start);
      const staged = this.stagedCells(width);
      for (let s = 0; s < this.k; s++) {
        const parts = sources[s]!;
        const cursor = cursors[s]!;
        const target = staged[s]!;
        let filled = 0;
        while (filled < width && cursor.part < parts.length) {
          const part = parts[cursor.part]!;
          const take = Math.min(part.length - cursor.at, width - filled);
          target.set(
            cursor.at === 0 && take === part.length ? part : part.subarray(cursor.at, cursor.at + take),
            filled,
          );
          filled += take;
          cursor.at += take;
          if (cursor.at === part.length) {
            cursor.part++;
            cursor.at = 0;
          }
        }
        // Past the end of a short cell: zeros, as HDFS pads the last stripe (the memory is reused).
        if (filled < width) target.fill(0, filled);
      }
      code(staged, start, width);
    }
  }

  /**
   * Encodes the stripe made of `chunks` (at most k cells of bytes, in file order; fewer only for a
   * file's or group's last stripe, whose short cells are zero-padded for the codec as HDFS does).
   * The chunks must not be reused by their owner until the cells have been sent.
   */
  encode(chunks: readonly Buffer[]): EncodedStripe {
    const { k, m, cellSize } = this;
    let length = 0;
    for (const chunk of chunks) length += chunk.length;
    if (length > k * cellSize) {
      throw new RangeError(`a stripe holds at most ${k * cellSize} bytes, got ${length}`);
    }
    const dataCells: Buffer[][] = Array.from({ length: k }, () => []);
    const parityCells: Buffer[] = [];
    if (length === 0) return { dataCells, parityCells, length };
    const longest = Math.min(cellSize, length);
    let cell = 0;
    let at = 0;
    for (const chunk of chunks) {
      for (let from = 0; from < chunk.length; ) {
        const take = Math.min(chunk.length - from, longest - at);
        dataCells[cell]!.push(
          from === 0 && take === chunk.length ? chunk : chunk.subarray(from, from + take),
        );
        from += take;
        at += take;
        if (at === longest) {
          cell++;
          at = 0;
        }
      }
    }
    // Parity must outlive the stripe (its sends still hold it while the next is coded): buffers of
    // its own, which the coder fills a column at a time while the column is in cache.
    for (let p = 0; p < m; p++) parityCells.push(Buffer.allocUnsafeSlow(longest));
    const outputs: Uint8Array[] = new Array(m);
    this.eachColumn(dataCells, longest, (staged, start, width) => {
      for (let p = 0; p < m; p++) outputs[p] = parityCells[p]!.subarray(start, start + width);
      this.coder.encode(staged, outputs);
    });
    for (let i = 0; i < k; i++) {
      const parts = dataCells[i]!;
      let bytes = 0;
      for (const part of parts) bytes += part.length;
      if (parts.length > 1 && bytes / parts.length < SMALLEST_CHUNK_SENT_AS_IS)
        dataCells[i] = [Buffer.concat(parts)];
    }
    return { dataCells, parityCells, length };
  }

  /**
   * Rebuilds fragments `missing` of a stripe from the fragments read (each as the chunks it
   * arrived in, null where it could not be read; present data cells may be short, and are
   * zero-padded to `longest`). Only the first k present fragments are read, staged in the coder's
   * memory column by column (the only copy in); the rebuilt fragments come back `longest` bytes
   * long in buffers of their own.
   */
  reconstruct(
    fragments: readonly (readonly Buffer[] | null)[],
    missing: readonly number[],
    longest: number,
  ): Buffer[] {
    const k = this.k;
    const sources: (readonly Buffer[])[] = [];
    const chosen: number[] = [];
    for (let i = 0; i < fragments.length && sources.length < k; i++) {
      const parts = fragments[i];
      if (!parts) continue;
      sources.push(parts);
      chosen.push(i);
    }
    const rebuilt = missing.map(() => Buffer.allocUnsafeSlow(longest));
    // The coder codes from its first k present fragments: passing exactly those, each staged in
    // the input slot it would copy it to, leaves it nothing to copy.
    const columnFragments: (Uint8Array | null)[] = fragments.map(() => null);
    const outputs: Uint8Array[] = new Array(missing.length);
    this.eachColumn(sources, longest, (staged, start, width) => {
      for (let s = 0; s < k; s++) columnFragments[chosen[s]!] = staged[s]!;
      for (let w = 0; w < missing.length; w++) outputs[w] = rebuilt[w]!.subarray(start, start + width);
      this.coder.reconstruct(columnFragments, missing, outputs);
    });
    return rebuilt;
  }
}

/**
 * A StripeCodec on a coder of its own whose slots hold one column, not a whole cell: the codec
 * never stages more, so its WebAssembly memory is (k + m) × 64 KiB (about 600 KiB for RS-6-3)
 * rather than (k + m) cells (9 MiB with 1 MiB cells).
 */
export function createStripeCodec(policy: ErasureCodingPolicy | string): StripeCodec {
  const resolved = typeof policy === "string" ? erasureCodingPolicy(policy) : policy;
  return new StripeCodec(
    WasmSimdErasureCoder.isSupported()
      ? new WasmSimdErasureCoder(resolved, { slotBytes: COLUMN_BYTES })
      : new ReferenceErasureCoder(resolved),
  );
}
