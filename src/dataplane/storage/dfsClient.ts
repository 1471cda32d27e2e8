/**
 * The HDFS client: RPC to the active name node (following failover between the configured name
 * nodes), and files written and read over the block data path (blockTransfer.ts: pipelined
 * writes, verified reads from the closest good replica; striped.ts for coded files). Data nodes
 * use it to serve WebHDFS's second step and to copy blocks for re-replication.
 */
import { randomUUID } from "node:crypto";
import { PipelineException, readReplica, sendBlock } from "./blockTransfer.js";
import {
  CALL_ID_HEADER,
  CLIENT_ID_HEADER,
  type DatanodeID,
  type ExtendedBlock,
  type LocatedBlock,
  type LocatedBlocks,
  RemoteException,
  xferAddress,
} from "./protocol.js";
import { failoverPolicy, withRetries } from "./retry.js";
import { callNameNode } from "./rpcConnection.js";
import { type GroupAck, readBlockGroup, writeBlockGroup } from "./striped.js";

// The block data path lives in blockTransfer.ts; the data node and the tests take it from here too.
export {
  type BlockAck,
  BlockSender,
  DEFAULT_STALL_TIMEOUT_MS,
  FIRST_BAD_LINK_HEADER,
  PipelineException,
  pipelineTimeoutMs,
  readReplica,
  type SendOptions,
  sendBlock,
} from "./blockTransfer.js";

/**
 * Calls the active name node among `addresses` (over the process's shared framed connection to
 * each, rpcConnection.ts), retrying on the standby or on a dead peer until
 * `failoverTimeoutMs`. Every call carries this client's id and its own call id, the same on each
 * retry of it, so the name node's retry cache answers a retried create, append, addBlock or
 * complete with its first answer (HDFS's RPC header clientId and callId).
 */
export class NameNodeRpc {
  private active = 0;
  readonly clientId = randomUUID();
  private nextCallId = 0;

  constructor(
    readonly addresses: string[],
    private readonly failoverTimeoutMs = 30_000,
  ) {
    if (addresses.length === 0) throw new Error("no name node address configured");
  }

  async call<T>(method: string, body: unknown): Promise<T> {
    const ids = { [CLIENT_ID_HEADER]: this.clientId, [CALL_ID_HEADER]: String(this.nextCallId++) };
    const first = this.active;
    return withRetries(failoverPolicy(this.addresses.length, this.failoverTimeoutMs), async (attempt) => {
      const index = (first + attempt - 1) % this.addresses.length;
      const result = await callNameNode<T>(
        this.addresses[index]!,
        { method, clientId: this.clientId, callId: ids[CALL_ID_HEADER] },
        body,
        undefined,
        ids,
      );
      this.active = index;
      return result;
    });
  }
}

/** Pulls bytes from an async iterable in block-sized runs without losing what crosses a boundary. */
class ByteSource {
  private leftover: Buffer | undefined;
  private readonly iterator: AsyncIterator<Buffer>;
  private ended = false;

  constructor(source: AsyncIterable<Buffer | Uint8Array | string>) {
    const inner = source[Symbol.asyncIterator]();
    this.iterator = {
      next: async () => {
        const step = await inner.next();
        if (step.done) return step;
        const value = step.value;
        return {
          done: false,
          value:
            typeof value === "string"
              ? Buffer.from(value)
              : Buffer.from(value.buffer, value.byteOffset, value.byteLength),
        };
      },
    };
  }

  /** True when no byte remains. */
  async exhausted(): Promise<boolean> {
    while (!this.leftover || this.leftover.length === 0) {
      if (this.ended) return true;
      const step = await this.iterator.next();
      if (step.done) {
        this.ended = true;
        return true;
      }
      this.leftover = step.value;
    }
    return false;
  }

  /** The next `limit` bytes (fewer at the end), as they arrive. */
  async *take(limit: number): AsyncGenerator<Buffer> {
    let remaining = limit;
    while (remaining > 0 && !(await this.exhausted())) {
      const chunk = this.leftover!;
      if (chunk.length <= remaining) {
        this.leftover = undefined;
        remaining -= chunk.length;
        yield chunk;
      } else {
        this.leftover = chunk.subarray(remaining);
        yield chunk.subarray(0, remaining);
        remaining = 0;
      }
    }
  }
}

/**
 * The bytes of the block being written, kept until its pipeline acknowledges it (so at most one
 * block), for a new pipeline to be sent the same bytes from the start. Each `chunks()` replays
 * what was read so far and then reads on; only one read of the source is ever in flight, and a
 * chunk read for a pipeline that broke meanwhile is kept for the next one. The chunks are kept
 * by reference: a source must not reuse a buffer it has yielded (sendBlock may queue it anyway).
 */
class BlockReplay {
  private readonly buffered: Buffer[] = [];
  private readonly source: AsyncIterator<Buffer>;
  private pulling: Promise<void> | undefined;
  private ended = false;
  private failure: { error: unknown } | undefined;

  constructor(source: AsyncIterable<Buffer>) {
    this.source = source[Symbol.asyncIterator]();
  }

  async *chunks(): AsyncGenerator<Buffer> {
    for (let i = 0; ; i++) {
      while (i >= this.buffered.length) {
        if (this.ended) return;
        await this.pull();
      }
      yield this.buffered[i]!;
    }
  }

  private pull(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure.error);
    this.pulling ??= this.source.next().then(
      (step) => {
        this.pulling = undefined;
        if (step.done) this.ended = true;
        else this.buffered.push(step.value);
      },
      (error: unknown) => {
        this.pulling = undefined;
        this.failure = { error };
        throw error;
      },
    );
    return this.pulling;
  }
}

/** Pipelines tried for one block before the write gives up, each without the nodes that failed before. */
const PIPELINE_ATTEMPTS = 5;

export interface WriteOptions {
  clientName: string;
  owner?: string;
  permission?: string;
  overwrite?: boolean;
  replication?: number;
  blockSize?: number;
  /** The writer's own data node: HDFS puts the first replica there. */
  favoredNode?: string;
  /** Append to an existing file instead of creating one. */
  append?: boolean;
  /** How long a pipeline may stall with bytes pending before its node counts as failed (see DEFAULT_STALL_TIMEOUT_MS). */
  stallTimeoutMs?: number;
  /** Sends each block down its pipeline (default sendBlock); a data node writing as a client stores its own replica in process. */
  sendBlock?: typeof sendBlock;
}

interface OpenedFile {
  blockSize: number;
  replication: number;
  ecPolicy?: string;
}

/**
 * Writes `source` as the file `path`: create (or append), then block by block: addBlock at the
 * name node, stream through the pipeline, and commit the acknowledged length with the next
 * addBlock or complete. Returns the bytes written. If the source fails midway, the block in
 * flight is abandoned and the file stays under construction until its lease expires, so only
 * whole, acknowledged blocks are ever readable.
 *
 * A data node failing under a replicated block does not fail the write: the block is abandoned
 * (its partial replicas belong to a block and generation stamp the name node forgets, so they
 * are invalidated, never read) and sent again from the client's copy to a new pipeline that
 * excludes the bad node, like HDFS's pipeline recovery with a replacement node. The write fails
 * after PIPELINE_ATTEMPTS pipelines for one block, or when no data node is left. A block group
 * carries on past up to m failed internal blocks, which the name node has rebuilt afterwards.
 * A node that hangs rather than dies fails the same way, once it stalls the pipeline for
 * `stallTimeoutMs` (see sendBlock).
 */
export async function writeFile(
  rpc: NameNodeRpc,
  path: string,
  source: AsyncIterable<Buffer | Uint8Array | string>,
  options: WriteOptions,
): Promise<number> {
  const opened = options.append
    ? await rpc.call<OpenedFile>("append", { path, clientName: options.clientName, user: options.owner })
    : await rpc.call<OpenedFile>("create", {
        path,
        clientName: options.clientName,
        owner: options.owner,
        permission: options.permission,
        overwrite: options.overwrite ?? false,
        replication: options.replication,
        blockSize: options.blockSize,
      });
  const bytes = new ByteSource(source);
  let previous: (ExtendedBlock & { locations: (string | null)[] }) | undefined;
  let written = 0;
  // HDFS's excludedNodes: a node that failed in a pipeline of this file is not offered again.
  const excluded = new Map<string, DatanodeID>();
  const failures: string[] = [];
  const failed = (error: PipelineException) => {
    excluded.set(error.badNode.datanodeUuid, error.badNode);
    failures.push(`${xferAddress(error.badNode)} (${error.message})`);
  };
  const addBlock = async () => {
    try {
      return await rpc.call<LocatedBlock>("addBlock", {
        path,
        clientName: options.clientName,
        previous,
        favoredNode: options.favoredNode,
        excludeNodes: [...excluded.keys()],
      });
    } catch (error) {
      if (failures.length === 0 || !(error instanceof RemoteException)) throw error;
      throw new RemoteException(
        error.exception,
        `Cannot write ${path} past ${written} bytes: no new pipeline after data nodes failed: ${failures.join("; ")}; addBlock: ${error.message}`,
      );
    }
  };
  const abandon = (block: ExtendedBlock) =>
    rpc.call("abandonBlock", { path, clientName: options.clientName, block });

  const send = options.sendBlock ?? sendBlock;
  const replicatedBlock = async () => {
    const replay = new BlockReplay(bytes.take(opened.blockSize));
    for (let attempt = 1; ; attempt++) {
      const located = await addBlock();
      try {
        const ack = await send(located.locations, located.block, replay.chunks(), {
          stallTimeoutMs: options.stallTimeoutMs,
        });
        return {
          ...located.block,
          numBytes: ack.numBytes,
          locations: located.locations.map((node) => node.datanodeUuid),
        };
      } catch (error) {
        if (!(error instanceof PipelineException)) {
          await abandon(located.block).catch(() => undefined);
          throw error;
        }
        failed(error);
        // Not abandoned, the block would come back from addBlock under the same generation stamp.
        await abandon(located.block).catch((abandonError: unknown) => {
          throw new RemoteException(
            "IOException",
            `Cannot write ${path}: ${error.message}; abandoning blk_${located.block.blockId} for a new pipeline failed: ${(abandonError as Error).message}`,
          );
        });
        if (attempt >= PIPELINE_ATTEMPTS) {
          throw new RemoteException(
            "IOException",
            `Cannot write ${path} past ${written} bytes: ${attempt} pipelines for its next block failed: ${failures.join("; ")}`,
          );
        }
      }
    }
  };

  const blockGroup = async (ecPolicy: string) => {
    const located = await addBlock();
    let group: GroupAck;
    try {
      group = await writeBlockGroup(located, ecPolicy, opened.blockSize, (n) => bytes.take(n), {
        stallTimeoutMs: options.stallTimeoutMs,
      });
    } catch (error) {
      await abandon(located.block).catch(() => undefined);
      throw error;
    }
    for (const error of group.lost.values()) failed(error);
    return {
      ...located.block,
      numBytes: group.numBytes,
      // Positional, one per internal block: null where it was lost, for the name node to rebuild.
      locations: located.locations.map((node, i) => (group.lost.has(i) ? null : node.datanodeUuid)),
    };
  };

  const renew = setInterval(() => {
    rpc.call("renewLease", { clientName: options.clientName }).catch(() => undefined);
  }, 10_000);
  try {
    while (!(await bytes.exhausted())) {
      previous = opened.ecPolicy ? await blockGroup(opened.ecPolicy) : await replicatedBlock();
      written += previous.numBytes;
    }
    await rpc.call("complete", { path, clientName: options.clientName, last: previous });
    return written;
  } finally {
    clearInterval(renew);
  }
}

/**
 * Reads `[offset, offset+length)` of `path`, block by block, from the first replica that serves
 * it whole; a replica that fails (dead node, checksum error) is skipped and the next one tried.
 */
export async function* readFile(
  located: LocatedBlocks,
  offset = 0,
  length = Number.POSITIVE_INFINITY,
): AsyncGenerator<Buffer> {
  const end = Math.min(located.fileLength, offset + length);
  for (const block of located.blocks) {
    const blockStart = block.startOffset;
    const blockEnd = blockStart + block.block.numBytes;
    if (blockEnd <= offset || blockStart >= end) continue;
    const from = Math.max(0, offset - blockStart);
    const to = Math.min(block.block.numBytes, end - blockStart);
    if (block.ecPolicy) {
      yield* readBlockGroup(block, from, to);
      continue;
    }
    let served = false;
    let lastError: unknown;
    for (const node of block.locations) {
      let yielded = 0;
      try {
        const stream = await readReplica(node, block.block, from + yielded, to - from - yielded);
        for await (const chunk of stream) {
          yielded += chunk.length;
          yield chunk;
        }
        served = true;
        break;
      } catch (error) {
        lastError = error;
        // Part of the range may already be out: a retry on another replica resumes after it.
        if (yielded > 0) {
          const rest = readRest(block, node, from + yielded, to);
          for await (const chunk of rest) yield chunk;
          served = true;
          break;
        }
      }
    }
    if (!served) {
      throw new RemoteException(
        "BlockMissingException",
        `Could not obtain blk_${block.block.blockId}_${block.block.generationStamp} of length ${block.block.numBytes}: no live replica served it${lastError instanceof Error ? ` (last error: ${lastError.message})` : ""}`,
      );
    }
  }
}

/** The rest of a block after a replica failed mid-stream, from the other replicas. */
async function* readRest(
  block: LocatedBlock,
  failed: DatanodeID,
  from: number,
  to: number,
): AsyncGenerator<Buffer> {
  let position = from;
  for (const node of block.locations) {
    if (node.datanodeUuid === failed.datanodeUuid) continue;
    try {
      const stream = await readReplica(node, block.block, position, to - position);
      for await (const chunk of stream) {
        position += chunk.length;
        yield chunk;
      }
      return;
    } catch {
      // Next replica.
    }
  }
  throw new RemoteException(
    "BlockMissingException",
    `Could not obtain the rest of blk_${block.block.blockId} after ${position} bytes`,
  );
}
