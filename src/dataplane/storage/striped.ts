/**
 * Erasure-coded files, striped like HDFS's: a file is a sequence of block groups; a group is
 * k data + m parity internal blocks (ids groupId + 0 .. groupId + k + m - 1) on k + m distinct
 * data nodes. Data is laid out cell by cell round-robin over the k data blocks; each stripe of k
 * cells gets m parity cells from the codec. A group holds k × blockSize bytes of data. Reads
 * fetch data cells and, for any that cannot be read, reconstruct the stripe from any k cells.
 */

import { PipelineException, readReplica, type SendOptions, sendBlock } from "./blockTransfer.js";
import { erasureCodingPolicy } from "./erasure/index.js";
import { createStripeCodec, type StripeCodec } from "./erasure/stripe.js";
import type { DatanodeID, ExtendedBlock, LocatedBlock } from "./protocol.js";
import { RemoteException } from "./protocol.js";
import { cellLengths, type GroupLayout, groupLayout, internalBlockLength } from "./stripedLayout.js";

export { cellLengths, type GroupLayout, groupLayout, internalBlockLength } from "./stripedLayout.js";

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

const codecs = new Map<string, StripeCodec>();
/** One codec per policy for the process (its coder owns a WebAssembly memory). */
function codecFor(ecPolicy: string): StripeCodec {
  let codec = codecs.get(ecPolicy);
  if (!codec) {
    codec = createStripeCodec(ecPolicy);
    codecs.set(ecPolicy, codec);
  }
  return codec;
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
  const codec = codecFor(ecPolicy);
  const stripesPerGroup = Math.max(1, Math.floor(blockSize / cellSize));
  let total = 0;
  let complete = false;
  try {
    for (let stripe = 0; stripe < stripesPerGroup; stripe++) {
      if (lost.size > m) throw tooManyLost();
      // The chunks by reference, across the awaits; then the stripe is coded in one synchronous
      // step (the coder's staged buffers are shared by every writer of the process).
      const chunks: Buffer[] = [];
      for await (const chunk of take(k * cellSize)) chunks.push(chunk);
      const stripeData = codec.encode(chunks);
      if (stripeData.length === 0) break;
      total += stripeData.length;
      stripeData.dataCells.forEach((parts, i) => {
        for (const part of parts) channels[i]!.push(part);
      });
      for (const [j, cell] of stripeData.parityCells.entries()) channels[k + j]!.push(cell);
      if (stripeData.length < k * cellSize) break;
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

/**
 * The cells of one stripe, reading each from its node: each as the chunks it arrived in (not
 * joined: the reader yields them as they are and the codec stages them itself); null where the
 * read failed.
 */
async function readStripe(
  group: LocatedBlock,
  layout: GroupLayout,
  stripe: number,
  indices: number[],
): Promise<(Buffer[] | null)[]> {
  const lengths = cellLengths(layout, stripe);
  const offset = stripe * layout.cellSize;
  return Promise.all(
    indices.map(async (index) => {
      const node = group.internal?.[index];
      const length = index < layout.k ? lengths[index]! : lengths[0]!;
      if (length === 0) return [];
      if (!node) return null;
      try {
        const parts: Buffer[] = [];
        const block: ExtendedBlock = {
          blockId: group.block.blockId + index,
          generationStamp: group.block.generationStamp,
          numBytes: internalBlockLength(layout, index),
        };
        for await (const chunk of await readReplica(node, block, offset, length)) parts.push(chunk);
        return parts;
      } catch {
        return null;
      }
    }),
  );
}

/**
 * Every cell of stripe `stripe` (data and parity; data only unless `wantParity` or a data cell
 * is lost), each as a list of chunks, reconstructing those that could not be read from any k
 * that could. Throws BlockMissingException past m losses.
 */
async function stripeCells(group: LocatedBlock, stripe: number, wantParity = false): Promise<Buffer[][]> {
  const layout = groupLayout(group.ecPolicy!, group.block.numBytes);
  const lengths = cellLengths(layout, stripe);
  const longest = lengths[0]!;
  const dataIndices = Array.from({ length: layout.k }, (_, i) => i);
  const cells = await readStripe(group, layout, stripe, dataIndices);
  const parityIndices = Array.from({ length: layout.m }, (_, j) => layout.k + j);
  let parity: (Buffer[] | null)[] = parityIndices.map(() => null);
  const lost = cells.filter((cell) => cell === null).length;
  if (lost > 0 || wantParity) parity = await readStripe(group, layout, stripe, parityIndices);
  const fragments = [...cells, ...parity];
  const missing = fragments.map((cell, i) => (cell === null ? i : -1)).filter((i) => i >= 0);
  if (lost === 0 && !wantParity) return fragments.slice(0, layout.k) as Buffer[][];
  if (missing.length === 0) return fragments as Buffer[][];
  if (missing.length > layout.m) {
    throw new RemoteException(
      "BlockMissingException",
      `Could not obtain block group blk_${group.block.blockId}: ${missing.length} of ${layout.k + layout.m} fragments unreadable, ${group.ecPolicy} tolerates ${layout.m}`,
    );
  }
  // Synchronous from staging to the rebuilt cells: the codec is shared by the whole process.
  const rebuilt = codecFor(group.ecPolicy!).reconstruct(fragments, missing, longest);
  missing.forEach((index, at) => {
    const length = index < layout.k ? lengths[index]! : longest;
    fragments[index] = [rebuilt[at]!.subarray(0, length)];
  });
  return fragments as Buffer[][];
}

/** Yields `[from, to)` of a block group's data, stripe by stripe, as the cells' chunks arrived. */
export async function* readBlockGroup(group: LocatedBlock, from: number, to: number): AsyncGenerator<Buffer> {
  const layout = groupLayout(group.ecPolicy!, group.block.numBytes);
  const stripeBytes = layout.k * layout.cellSize;
  for (
    let stripe = Math.floor(from / stripeBytes);
    stripe < layout.stripes && stripe * stripeBytes < to;
    stripe++
  ) {
    const cells = (await stripeCells(group, stripe)).slice(0, layout.k);
    let at = stripe * stripeBytes;
    for (const parts of cells) {
      for (const part of parts) {
        const start = Math.max(at, from);
        const end = Math.min(at + part.length, to);
        if (start < end)
          yield start === at && end === at + part.length ? part : part.subarray(start - at, end - at);
        at += part.length;
      }
    }
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
        for (const part of cells[index]!) if (part.length > 0) channels[at]!.push(part);
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
