/**
 * Block transfer, the data path between a writer or reader and the data nodes: a block streamed
 * down a write pipeline (sendBlock) and a replica's range read back (readReplica), with HDFS's
 * stall timeouts and first-bad-link reporting. The replicated client (dfsClient.ts) and the
 * striped one (striped.ts) both use it; neither imports the other for it.
 */
import { once } from "node:events";
import { Agent, type ClientRequest, request as httpRequest } from "node:http";
import type { Clock } from "../../operator/workqueue.js";
import {
  type DatanodeID,
  type ExtendedBlock,
  parseRemoteException,
  RemoteException,
  readBody,
  splitAddress,
  xferAddress,
} from "./protocol.js";
export interface BlockAck {
  numBytes: number;
  checksum: number;
}

/**
 * Set by a data node on a failed block write: the datanodeUuid of the first node of the pipeline
 * that failed (HDFS's firstBadLink). Absent, the answering node failed itself.
 */
export const FIRST_BAD_LINK_HEADER = "x-tributary-first-bad-link";

/**
 * A write pipeline broke and `badNode` is the first node of it that failed: every node before it
 * still works, so the writer excludes that one node and builds a new pipeline.
 */
export class PipelineException extends RemoteException {
  constructor(
    message: string,
    readonly badNode: DatanodeID,
  ) {
    super("IOException", message);
  }
}

/**
 * HDFS's dfs.client.socket-timeout: how long a hop of a write pipeline may make no progress while
 * it has bytes to move (or owes an acknowledgement) before its node counts as failed.
 */
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/**
 * How long a sender waits on a pipeline of `nodes` nodes: the stall timeout plus an allowance per
 * node, HDFS's READ/WRITE_TIMEOUT_EXTENSION (5 s, less when the stall timeout is short). It covers
 * each node's final fsync, whatever the block's size, and makes a sender wait longer the more of
 * the pipeline lies below it, so the node next to a hung one gives up first and names it, before
 * anyone upstream blames the node in front of it.
 */
export function pipelineTimeoutMs(stallTimeoutMs: number, nodes: number): number {
  return stallTimeoutMs + nodes * Math.min(5_000, stallTimeoutMs / 2);
}

/** `work`, or a rejection with `timedOut()` if it has not settled within `ms`; the timer ends with it. */
function within<T>(work: Promise<T>, ms: number, timedOut: () => Error, timers: Timers): Promise<T> {
  let timer: unknown;
  const expiry = new Promise<never>((_, reject) => {
    timer = timers.setTimeout(() => reject(timedOut()), ms);
  });
  return Promise.race([work, expiry]).finally(() => timers.clearTimeout(timer));
}

/** Where stall timers come from: the system's, or a test's clock that moves only when told. */
export type Timers = Pick<Clock, "setTimeout" | "clearTimeout">;

const systemTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface SendOptions {
  /** See DEFAULT_STALL_TIMEOUT_MS. */
  stallTimeoutMs?: number;
  timers?: Timers;
}

/**
 * Bytes a sender lets queue in its request before it waits for the socket to take them. Well
 * above the stream's 16 KiB high-water mark: the sender then waits once per few MiB rather than
 * once per 64 KiB piece, and each time the socket drains it hands the kernel one large writev.
 * This is the window of unacknowledged bytes in flight that HDFS keeps as packets
 * (dfs.client.write.max-packets-in-flight, 80 packets of 64 KiB), bounded the same way.
 */
export const SEND_WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * Block writes open a connection each, as HDFS opens a data transfer connection per block. Node's
 * default agent reuses idle keep-alive connections and drops them a second before the data node's
 * keepAliveTimeout (5 s), but on a loaded machine that timer runs late, and a connection the node
 * closed a moment ago still looks open until the writer's event loop sees its FIN. A block sent on
 * such a connection fails with a reset, which the writer can only blame on that healthy node and
 * exclude. A connection costs nothing beside a block, and a block's body cannot be replayed.
 *
 * The request still says `Connection: keep-alive` (the agent closes the socket after the answer
 * all the same): a node that answers a failure before the whole block arrived (its downstream
 * died) then reads and drops the rest instead of closing at once, which would reset the
 * connection under the sender's next write and lose the answer naming the bad node.
 */
const blockWriteAgent = new Agent({ keepAlive: false });

/**
 * One block going down a write pipeline, pushed piece by piece by its caller: `write` queues a
 * piece and says whether the window has room for more, `drained` waits until it has, `end` sends
 * the last byte and waits for the acknowledgement. A broken pipeline is a PipelineException
 * naming the first bad node, from `failure` as soon as it is known, and from every wait. A data
 * node forwarding a block it receives uses it directly; sendBlock drives it from an iterable.
 *
 * A hung node (stopped, or cut off without a reset) breaks nothing the kernel notices, so a hop
 * that stalls counts as failed: a window the socket does not drain within pipelineTimeoutMs, or
 * no acknowledgement that long after the last byte, fails `targets[0]` (HDFS too blames the first
 * node that does not answer). Only a stall with bytes pending counts: a slow source leaves the
 * pipeline idle, not stalled. A hung node further down is named by the node in front of it, whose
 * own, shorter timeout expires first.
 */
export class BlockSender {
  /** Why the pipeline failed, once it has: a PipelineException naming the first bad node. */
  failure: PipelineException | undefined;
  private readonly req: ClientRequest;
  private readonly response: Promise<BlockAck>;
  /** Settles only on failure: raced against every wait so a broken pipeline ends it at once. */
  private readonly broken: Promise<never>;
  private readonly first: DatanodeID;
  private readonly name: string;
  private readonly timeoutMs: number;
  private readonly timers: Timers;

  constructor(
    targets: DatanodeID[],
    block: Pick<ExtendedBlock, "blockId" | "generationStamp">,
    { stallTimeoutMs = DEFAULT_STALL_TIMEOUT_MS, timers = systemTimers }: SendOptions = {},
  ) {
    this.timers = timers;
    const [first, ...rest] = targets;
    if (!first) throw new RemoteException("IOException", `no target for blk_${block.blockId}`);
    this.first = first;
    this.name = `blk_${block.blockId}_${block.generationStamp}`;
    this.timeoutMs = pipelineTimeoutMs(stallTimeoutMs, targets.length);
    const [host, port] = splitAddress(xferAddress(first));
    const req = httpRequest({
      host,
      port,
      agent: blockWriteAgent,
      method: "PUT",
      path: `/blocks/${block.blockId}?generationStamp=${block.generationStamp}`,
      headers: {
        "content-type": "application/octet-stream",
        "transfer-encoding": "chunked",
        connection: "keep-alive",
        "x-tributary-targets": JSON.stringify(rest),
      },
    });
    this.req = req;
    this.response = new Promise<BlockAck>((resolve, reject) => {
      const lost = (error: Error) =>
        reject(
          new PipelineException(
            `writing ${this.name} to ${xferAddress(first)} failed: ${error.message}`,
            first,
          ),
        );
      req.on("error", lost);
      req.on("response", (res) => {
        readBody(res).then((body) => {
          const status = res.statusCode ?? 500;
          if (status === 200) return resolve(JSON.parse(body.toString("utf8")) as BlockAck);
          const named = res.headers[FIRST_BAD_LINK_HEADER];
          const bad = targets.find((node) => node.datanodeUuid === named) ?? first;
          reject(new PipelineException(parseRemoteException(status, body).message, bad));
        }, lost);
      });
    });
    this.response.catch((error: PipelineException) => {
      this.failure ??= error;
    });
    this.broken = new Promise<never>((_, reject) => {
      this.response.catch(reject);
    });
    this.broken.catch(() => undefined);
  }

  /** `work`, or the pipeline's failure if that comes first. */
  race<T>(work: Promise<T>): Promise<T> {
    return Promise.race([this.broken, work]);
  }

  /**
   * Queues `piece` for the first node (kept by reference until sent: the caller must not reuse
   * it); false when the window is full and the caller should wait for `drained` before the next.
   */
  write(piece: Buffer): boolean {
    if (this.failure) throw this.failure;
    this.req.write(piece);
    return this.req.writableLength < SEND_WINDOW_BYTES;
  }

  /** Resolves once the socket took the queued bytes; a stall of pipelineTimeoutMs fails the first node. */
  async drained(): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.req.writableNeedDrain) return;
    const drained = once(this.req, "drain");
    drained.catch(() => undefined);
    try {
      await within(
        this.race(drained),
        this.timeoutMs,
        this.stalled("the socket took no more bytes"),
        this.timers,
      );
    } catch (error) {
      throw this.asPipelineFailure(error);
    }
  }

  /** Sends the last byte; resolves with the acknowledgement once every node holds the block durably. */
  end(): Promise<BlockAck> {
    if (this.failure) return Promise.reject(this.failure);
    this.req.end();
    return within(
      this.response,
      this.timeoutMs,
      () => {
        // Nothing else would ever close a connection to a hung node.
        this.req.destroy();
        return this.stalled("no acknowledgement after the last byte")();
      },
      this.timers,
    );
  }

  /** Gives the block up: the connection is closed, and the nodes discard what they received. */
  abort(): void {
    this.req.destroy();
  }

  /** A failure under a write before the answer was read: the first node is the bad one. */
  asPipelineFailure(error: unknown): PipelineException {
    if (error instanceof PipelineException) return error;
    return new PipelineException(
      `writing ${this.name} to ${xferAddress(this.first)} failed: ${(error as Error).message}`,
      this.first,
    );
  }

  private stalled(what: string) {
    return () =>
      new PipelineException(
        `writing ${this.name} to ${xferAddress(this.first)} stalled: ${what} within ${this.timeoutMs} ms`,
        this.first,
      );
  }
}

/**
 * Streams one block to `targets[0]`, which forwards it down the rest of the pipeline. Resolves
 * with the acknowledgement once every node in the pipeline holds the block durably. A broken
 * pipeline rejects with a PipelineException naming the first bad node as soon as it is known,
 * even while the source is slow; an error of the source itself is rethrown as it is. Stalls are
 * timed as BlockSender says.
 */
export async function sendBlock(
  targets: DatanodeID[],
  block: Pick<ExtendedBlock, "blockId" | "generationStamp">,
  source: AsyncIterable<Buffer>,
  options: SendOptions = {},
): Promise<BlockAck> {
  const sender = new BlockSender(targets, block, options);
  const chunks = source[Symbol.asyncIterator]();
  let sourceFailed = false;
  const pull = () =>
    chunks.next().catch((error: unknown) => {
      sourceFailed = true;
      throw error;
    });
  try {
    for (;;) {
      const step = await sender.race(pull());
      if (step.done) break;
      if (!sender.write(step.value)) await sender.drained();
    }
  } catch (error) {
    sender.abort();
    // Lets a generator source close what it holds (after a pull still in flight, if any).
    chunks.return?.().catch(() => undefined);
    if (sourceFailed) throw error;
    throw sender.asPipelineFailure(error);
  }
  return sender.end();
}

/** Streams `[offset, offset+length)` of one replica from a data node; the node verifies checksums as it reads. */
export function readReplica(
  node: DatanodeID,
  block: ExtendedBlock,
  offset: number,
  length: number,
): Promise<AsyncIterable<Buffer>> {
  const [host, port] = splitAddress(xferAddress(node));
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host,
        port,
        method: "GET",
        path: `/blocks/${block.blockId}?generationStamp=${block.generationStamp}&offset=${offset}&length=${length}`,
        timeout: 30_000,
      },
      (res) => {
        if (res.statusCode !== 200) {
          readBody(res).then((body) => reject(parseRemoteException(res.statusCode ?? 500, body)), reject);
          return;
        }
        resolve(
          (async function* () {
            let received = 0;
            for await (const chunk of res) {
              received += (chunk as Buffer).length;
              yield chunk as Buffer;
            }
            // A node that finds a corrupt chunk mid-stream breaks the response: never pass a short read off as whole.
            if (received !== length || !res.complete) {
              throw new RemoteException(
                "ChecksumException",
                `short read of blk_${block.blockId} from ${xferAddress(node)}: ${received} of ${length} bytes`,
              );
            }
          })(),
        );
      },
    );
    req.on("timeout", () =>
      req.destroy(new Error(`timed out reading blk_${block.blockId} from ${xferAddress(node)}`)),
    );
    req.on("error", reject);
    req.end();
  });
}
