/**
 * The HDFS client's two halves: RPC to the active name node (following failover between the
 * configured name nodes) and the block data path (pipelined writes to data nodes, verified reads
 * from the closest good replica). Data nodes use it to serve WebHDFS's second step and to copy
 * blocks for re-replication.
 */
import { once } from "node:events";
import { request as httpRequest } from "node:http";
import {
  type DatanodeID,
  type ExtendedBlock,
  isConnectionError,
  type LocatedBlock,
  type LocatedBlocks,
  parseRemoteException,
  postJson,
  RemoteException,
  readBody,
  splitAddress,
  xferAddress,
} from "./protocol.js";
import { readBlockGroup, writeBlockGroup } from "./striped.js";

/** Calls the active name node among `addresses`, retrying on the standby or on a dead peer until `failoverTimeoutMs`. */
export class NameNodeRpc {
  private active = 0;

  constructor(
    readonly addresses: string[],
    private readonly failoverTimeoutMs = 30_000,
  ) {
    if (addresses.length === 0) throw new Error("no name node address configured");
  }

  async call<T>(method: string, body: unknown): Promise<T> {
    const deadline = Date.now() + this.failoverTimeoutMs;
    let delay = 100;
    for (let attempt = 0; ; attempt++) {
      const index = (this.active + attempt) % this.addresses.length;
      try {
        const result = await postJson<T>(this.addresses[index]!, `/rpc/${method}`, body);
        this.active = index;
        return result;
      } catch (error) {
        const retriable =
          isConnectionError(error) ||
          (error instanceof RemoteException && error.exception === "StandbyException");
        if (!retriable || Date.now() > deadline) throw error;
        // A full round over the name nodes found no active one: wait for a failover to finish.
        if ((attempt + 1) % this.addresses.length === 0) {
          await new Promise((resolve) => setTimeout(resolve, delay));
          delay = Math.min(delay * 2, 1_000);
        }
      }
    }
  }
}

export interface BlockAck {
  numBytes: number;
  checksum: number;
}

/**
 * Streams one block to `targets[0]`, which forwards it down the rest of the pipeline. Resolves
 * with the acknowledgement once every node in the pipeline holds the block durably.
 */
export async function sendBlock(
  targets: DatanodeID[],
  block: Pick<ExtendedBlock, "blockId" | "generationStamp">,
  source: AsyncIterable<Buffer>,
): Promise<BlockAck> {
  const [first, ...rest] = targets;
  if (!first) throw new RemoteException("IOException", `no target for blk_${block.blockId}`);
  const [host, port] = splitAddress(xferAddress(first));
  const req = httpRequest({
    host,
    port,
    method: "PUT",
    path: `/blocks/${block.blockId}?generationStamp=${block.generationStamp}`,
    headers: {
      "content-type": "application/octet-stream",
      "transfer-encoding": "chunked",
      "x-tributary-targets": JSON.stringify(rest),
    },
  });
  const response = new Promise<BlockAck>((resolve, reject) => {
    req.on("error", reject);
    req.on("response", (res) => {
      readBody(res).then((body) => {
        if ((res.statusCode ?? 500) !== 200) reject(parseRemoteException(res.statusCode ?? 500, body));
        else resolve(JSON.parse(body.toString("utf8")) as BlockAck);
      }, reject);
    });
  });
  // The pipeline may refuse before the body is sent: surface that instead of a write error.
  response.catch(() => undefined);
  try {
    for await (const chunk of source) {
      if (req.destroyed) break;
      if (!req.write(chunk)) await Promise.race([once(req, "drain"), response]);
    }
    req.end();
  } catch (error) {
    req.destroy(error as Error);
    throw error;
  }
  return response;
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
 */
export async function writeFile(
  rpc: NameNodeRpc,
  path: string,
  source: AsyncIterable<Buffer | Uint8Array | string>,
  options: WriteOptions,
): Promise<number> {
  const opened = options.append
    ? await rpc.call<OpenedFile>("append", { path, clientName: options.clientName })
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
  let previous: (ExtendedBlock & { locations: string[] }) | undefined;
  let written = 0;
  const renew = setInterval(() => {
    rpc.call("renewLease", { clientName: options.clientName }).catch(() => undefined);
  }, 10_000);
  try {
    while (!(await bytes.exhausted())) {
      const located = await rpc.call<LocatedBlock>("addBlock", {
        path,
        clientName: options.clientName,
        previous,
        favoredNode: options.favoredNode,
      });
      let ack: BlockAck;
      try {
        ack = opened.ecPolicy
          ? {
              numBytes: await writeBlockGroup(located, opened.ecPolicy, opened.blockSize, (n) =>
                bytes.take(n),
              ),
              checksum: 0,
            }
          : await sendBlock(located.locations, located.block, bytes.take(opened.blockSize));
      } catch (error) {
        await rpc
          .call("abandonBlock", { path, clientName: options.clientName, block: located.block })
          .catch(() => undefined);
        throw error;
      }
      written += ack.numBytes;
      previous = {
        ...located.block,
        numBytes: ack.numBytes,
        locations: located.locations.map((node) => node.datanodeUuid),
      };
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
