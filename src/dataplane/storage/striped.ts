/**
 * Erasure-coded files, striped like HDFS's: a file is a sequence of block groups; a group is
 * k data + m parity internal blocks (ids groupId + 0 .. groupId + k + m - 1) on k + m distinct
 * data nodes. Data is laid out cell by cell round-robin over the k data blocks; each stripe of k
 * cells gets m parity cells from the codec. A group holds k × blockSize bytes of data. Reads
 * fetch data cells and, for any that cannot be read, reconstruct the stripe from any k cells.
 */

import { PipelineException, readReplica, type SendOptions, sendBlock } from "./dfsClient.js";
import { createErasureCoder, type ErasureCoder, erasureCodingPolicy } from "./erasure/index.js";
import type { DatanodeID, ExtendedBlock, LocatedBlock } from "./protocol.js";
import { RemoteException } from "./protocol.js";

export interface GroupLayout {
  k: number;
  m: number;
  cellSize: number;
  /** Data bytes in the group. */
  numBytes: number;
  /** Stripes in the group; the last may be short. */
  stripes: number;
}

export function groupLayout(ecPolicy: string, numBytes: number): GroupLayout {
  const policy = erasureCodingPolicy(ecPolicy);
  const stripeBytes = policy.dataUnits * policy.cellSize;
  return {
    k: policy.dataUnits,
    m: policy.parityUnits,
    cellSize: policy.cellSize,
    numBytes,
    stripes: Math.ceil(numBytes / stripeBytes),
  };
}

/** Lengths of the k data cells of stripe `s` (zero for cells past the end of the data). */
export function cellLengths(layout: GroupLayout, stripe: number): number[] {
  const start = stripe * layout.k * layout.cellSize;
  return Array.from({ length: layout.k }, (_, i) =>
    Math.max(0, Math.min(layout.cellSize, layout.numBytes - start - i * layout.cellSize)),
  );
}

/** Bytes internal block `index` holds: its data cells, or for parity the longest data cell of each stripe. */
export function internalBlockLength(layout: GroupLayout, index: number): number {
  let length = 0;
  for (let s = 0; s < layout.stripes; s++) {
    const lengths = cellLengths(layout, s);
    length += index < layout.k ? lengths[index]! : lengths[0]!;
  }
  return length;
}

/** A stream of chunks pushed by a producer, with backpressure: the shape sendBlock consumes. */
class Channel {
  private queue: Buffer[] = [];
  private ended = false;
  private failure: Error | undefined;
  /** Set once its consumer is gone: pushes are dropped rather than queued for nobody. */
  private closed = false;
  private wake: (() => void) | undefined;

  push(chunk: Buffer): void {
    if (this.closed) return;
    this.queue.push(chunk);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  /** Ends the stream with an error, so its block is aborted rather than finalized short. */
  fail(error: Error): void {
    this.failure = error;
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.queue = [];
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      if (this.failure) throw this.failure;
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }
}

const coders = new Map<string, ErasureCoder>();
function coderFor(ecPolicy: string): ErasureCoder {
  let coder = coders.get(ecPolicy);
  if (!coder) {
    coder = createErasureCoder(ecPolicy);
    coders.set(ecPolicy, coder);
  }
  return coder;
}

export interface GroupAck {
  /** Data bytes in the group. */
  numBytes: number;
  /** Internal blocks (by index) whose node failed, at most m: left for the name node to rebuild. */
  lost: Map<number, PipelineException>;
}

/**
 * Writes one block group: `take(n)` yields the next up-to-n data bytes of the file. Streams each
 * internal block to its own node and resolves once every internal block still streaming is
 * durable. Like HDFS's striped writer, a node that fails is dropped and the group goes on
 * without its internal block, as long as at most m are lost: the group stays readable from any
 * k, and the name node's reconstruction rebuilds the lost ones once the group is committed.
 */
export async function writeBlockGroup(
  located: LocatedBlock,
  ecPolicy: string,
  blockSize: number,
  take: (bytes: number) => AsyncIterable<Buffer>,
  sendOptions: SendOptions = {},
): Promise<GroupAck> {
  const policy = erasureCodingPolicy(ecPolicy);
  const { dataUnits: k, parityUnits: m, cellSize } = policy;
  if (located.locations.length < k + m) {
    throw new RemoteException(
      "IOException",
      `${ecPolicy} needs ${k + m} data nodes for a block group, only ${located.locations.length} available`,
    );
  }
  const channels = Array.from({ length: k + m }, () => new Channel());
  const lost = new Map<number, PipelineException>();
  const tooManyLost = () =>
    new RemoteException(
      "IOException",
      `block group blk_${located.block.blockId} lost ${lost.size} of ${k + m} internal blocks, ${ecPolicy} tolerates ${m}: ${[
        ...lost.values(),
      ]
        .map((error) => error.message)
        .join("; ")}`,
    );
  const acks = channels.map((channel, i) =>
    sendBlock(
      [located.locations[i]!],
      { blockId: located.block.blockId + i, generationStamp: located.block.generationStamp },
      channel,
      sendOptions,
    ).catch((error: unknown) => {
      if (!(error instanceof PipelineException)) throw error;
      lost.set(i, error);
      channel.close();
    }),
  );
  for (const ack of acks) ack.catch(() => undefined);
  const coder = coderFor(ecPolicy);
  const stripesPerGroup = Math.max(1, Math.floor(blockSize / cellSize));
  let total = 0;
  let complete = false;
  try {
    for (let stripe = 0; stripe < stripesPerGroup; stripe++) {
      if (lost.size > m) throw tooManyLost();
      const parts: Buffer[] = [];
      for await (const chunk of take(k * cellSize)) parts.push(chunk);
      const data = Buffer.concat(parts);
      if (data.length === 0) break;
      total += data.length;
      const longest = Math.min(cellSize, data.length);
      const cells = Array.from({ length: k }, (_, i) =>
        data.subarray(i * cellSize, Math.min(data.length, (i + 1) * cellSize)),
      );
      // Short cells are zero-padded for the codec (as HDFS does); only their real bytes are stored.
      const padded = cells.map((cell) => {
        if (cell.length === longest) return cell;
        const full = Buffer.alloc(longest);
        cell.copy(full);
        return full;
      });
      const parity = coder.encode(padded);
      cells.forEach((cell, i) => {
        if (cell.length > 0) channels[i]!.push(Buffer.from(cell));
      });
      for (const [j, cell] of parity.entries()) channels[k + j]!.push(Buffer.from(cell));
      if (data.length < k * cellSize) break;
    }
    complete = true;
  } finally {
    for (const channel of channels) {
      if (complete) channel.end();
      else channel.fail(new Error(`block group blk_${located.block.blockId} abandoned`));
    }
  }
  await Promise.all(acks);
  if (lost.size > m) throw tooManyLost();
  return { numBytes: total, lost };
}

/** The cells of one stripe, reading each from its node; null where the read failed. */
async function readStripe(
  group: LocatedBlock,
  layout: GroupLayout,
  stripe: number,
  indices: number[],
): Promise<(Buffer | null)[]> {
  const lengths = cellLengths(layout, stripe);
  const offset = stripe * layout.cellSize;
  return Promise.all(
    indices.map(async (index) => {
      const node = group.internal?.[index];
      const length = index < layout.k ? lengths[index]! : lengths[0]!;
      if (length === 0) return Buffer.alloc(0);
      if (!node) return null;
      try {
        const parts: Buffer[] = [];
        const block: ExtendedBlock = {
          blockId: group.block.blockId + index,
          generationStamp: group.block.generationStamp,
          numBytes: internalBlockLength(layout, index),
        };
        for await (const chunk of await readReplica(node, block, offset, length)) parts.push(chunk);
        return Buffer.concat(parts);
      } catch {
        return null;
      }
    }),
  );
}

/**
 * Every cell of stripe `stripe` (data and parity), reconstructing those that could not be read
 * from any k that could. Throws BlockMissingException past m losses.
 */
export async function stripeCells(
  group: LocatedBlock,
  stripe: number,
  wantParity = false,
): Promise<Buffer[]> {
  const layout = groupLayout(group.ecPolicy!, group.block.numBytes);
  const lengths = cellLengths(layout, stripe);
  const longest = lengths[0]!;
  const dataIndices = Array.from({ length: layout.k }, (_, i) => i);
  const cells: (Buffer | null)[] = await readStripe(group, layout, stripe, dataIndices);
  const parityIndices = Array.from({ length: layout.m }, (_, j) => layout.k + j);
  let parity: (Buffer | null)[] = parityIndices.map(() => null);
  const lost = cells.filter((cell) => cell === null).length;
  if (lost > 0 || wantParity) parity = await readStripe(group, layout, stripe, parityIndices);
  const fragments = [...cells, ...parity];
  const missing = fragments.map((cell, i) => (cell === null ? i : -1)).filter((i) => i >= 0);
  if (missing.length === 0) return fragments as Buffer[];
  if (missing.length > layout.m) {
    throw new RemoteException(
      "BlockMissingException",
      `Could not obtain block group blk_${group.block.blockId}: ${missing.length} of ${layout.k + layout.m} fragments unreadable, ${group.ecPolicy} tolerates ${layout.m}`,
    );
  }
  const padded = fragments.map((cell) => {
    if (cell === null || cell.length === longest) return cell;
    const full = Buffer.alloc(longest);
    cell.copy(full);
    return full;
  });
  const rebuilt = coderFor(group.ecPolicy!).reconstruct(padded, missing);
  missing.forEach((index, at) => {
    const length = index < layout.k ? lengths[index]! : longest;
    fragments[index] = Buffer.from(rebuilt[at]!.subarray(0, length));
  });
  return fragments as Buffer[];
}

/** Yields `[from, to)` of a block group's data, stripe by stripe. */
export async function* readBlockGroup(group: LocatedBlock, from: number, to: number): AsyncGenerator<Buffer> {
  const layout = groupLayout(group.ecPolicy!, group.block.numBytes);
  const stripeBytes = layout.k * layout.cellSize;
  for (
    let stripe = Math.floor(from / stripeBytes);
    stripe < layout.stripes && stripe * stripeBytes < to;
    stripe++
  ) {
    const data = Buffer.concat((await stripeCells(group, stripe)).slice(0, layout.k));
    const start = stripe * stripeBytes;
    yield data.subarray(Math.max(0, from - start), Math.min(data.length, to - start));
  }
}

/** Rebuilds internal blocks `missing` of a group onto `targets` (the data node's reconstruction task). */
export async function reconstructInternalBlocks(
  group: LocatedBlock,
  missing: number[],
  targets: DatanodeID[],
  sendOptions: SendOptions = {},
): Promise<void> {
  const layout = groupLayout(group.ecPolicy!, group.block.numBytes);
  const channels = missing.map(() => new Channel());
  const acks = missing.map((index, at) =>
    sendBlock(
      [targets[at]!],
      { blockId: group.block.blockId + index, generationStamp: group.block.generationStamp },
      channels[at]!,
      sendOptions,
    ),
  );
  for (const ack of acks) ack.catch(() => undefined);
  try {
    const sources = {
      ...group,
      internal: group.internal?.map((node, i) => (missing.includes(i) ? null : node)),
    };
    for (let stripe = 0; stripe < layout.stripes; stripe++) {
      const cells = await stripeCells(sources, stripe, true);
      missing.forEach((index, at) => {
        if (cells[index]!.length > 0) channels[at]!.push(cells[index]!);
      });
    }
  } catch (error) {
    // Failed, not ended: a target must not finalize a short internal block and report it whole.
    for (const channel of channels) channel.fail(error as Error);
    throw error;
  }
  for (const channel of channels) channel.end();
  await Promise.all(acks);
}
