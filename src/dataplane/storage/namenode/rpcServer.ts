/**
 * The name node's RPC server (HDFS's NameNodeRpcServer), on the RPC port only, in two framings
 * of the same calls: `POST /rpc/<method>` with a JSON body, and frames on a connection upgraded
 * from `GET /rpc` (rpcConnection.ts: many calls in flight on one socket, what the name node's own
 * clients use). Each method has a zod schema for its request: a body that does not match is
 * refused with an IllegalArgumentException naming the field, before anything runs; then the
 * call is delegated to the namesystem or the block manager. The data-node protocol's methods
 * must be signed with the pool's cluster secret, in either framing; the client protocol is
 * open, like WebHDFS. WebHDFS, health, status and metrics are on the HTTP port, never here.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { z } from "zod";
import { checkSignature, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "../clusterAuth.js";
import {
  asRemoteException,
  type HeartbeatResponse,
  illegalArgument,
  RemoteException,
  readRequestBody,
  sendJson,
  xferAddress,
} from "../protocol.js";
import {
  decodeRequestHeader,
  encodeResponse,
  FrameReader,
  REQUEST_PREFIX_BYTES,
  RPC_UPGRADE_PATH,
  RPC_UPGRADE_PROTOCOL,
} from "../rpcConnection.js";
import type { FSNamesystem } from "./fsNamesystem.js";
import { type RpcIds, rpcIdsFrom, rpcIdsOf } from "./retryCache.js";

/**
 * The most a `/rpc` call may send, read before it is parsed. A full block report (and the
 * deletions that follow a report's stale replicas) lists every replica of a data node: HDFS's
 * ipc.maximum.data.length (64 MB) bounds those. Every other call names a path, a block or a few
 * nodes, and gets 1 MiB.
 */
const BULK_RPC_BODY_LIMIT = 64 * 1024 * 1024;
const RPC_BODY_LIMIT = 1024 * 1024;

const blockId = z.number().int().nonnegative();
const extendedBlock = z.object({
  blockId,
  generationStamp: z.number().int().nonnegative(),
  numBytes: z.number().int().nonnegative(),
});
const datanodeId = z.looseObject({
  datanodeUuid: z.string().min(1).max(256),
  hostName: z.string().min(1).max(253),
  xferPort: z.number().int().min(1).max(65535),
  infoPort: z.number().int().min(1).max(65535),
});
const path = z.string().min(1).max(8000);
const clientName = z.string().min(1).max(1000);
const user = z.string().min(1).max(256).optional();
/** A pipeline's (or a block group's, by index, null where lost) acknowledged data nodes. */
const acknowledgedBlock = extendedBlock.extend({
  locations: z.array(z.string().max(256).nullable()).optional(),
});

/** One entry per method: the request's schema, whether only data nodes may call it, and the call. */
interface RpcMethod<S extends z.ZodType> {
  request: S;
  datanodeProtocol?: boolean;
  bulk?: boolean;
  call: (fs: FSNamesystem, request: z.output<S>, ids: RpcIds | undefined) => unknown;
}

const method = <S extends z.ZodType>(definition: RpcMethod<S>) => definition;

const METHODS = {
  // HDFS's DatanodeProtocol.
  sendHeartbeat: method({
    datanodeProtocol: true,
    request: z.looseObject({
      datanode: datanodeId,
      networkLocation: z.string().max(1000),
      capacity: z.number().nonnegative(),
      dfsUsed: z.number().nonnegative(),
      remaining: z.number(),
      numBlocks: z.number().int().nonnegative(),
    }),
    call: (fs, request): HeartbeatResponse => ({
      commands: fs.blockManager.heartbeat(request, fs.haState === "active"),
      haState: fs.haState === "active" ? "active" : "standby",
      // The block-transfer addresses of the data nodes this name node knows and has not declared dead.
      datanodes: fs.blockManager
        .report()
        .filter((node) => node.adminState !== "DEAD")
        .map(xferAddress),
    }),
  }),
  blockReport: method({
    datanodeProtocol: true,
    bulk: true,
    request: z.object({ datanode: datanodeId, blocks: z.array(extendedBlock) }),
    call: (fs, request) => {
      fs.blockManager.blockReport(request.datanode, request.blocks, fs.haState === "active");
      return true;
    },
  }),
  blockReceivedAndDeleted: method({
    datanodeProtocol: true,
    bulk: true,
    request: z.object({
      datanode: datanodeId,
      received: z.array(extendedBlock).default([]),
      deleted: z.array(blockId).default([]),
    }),
    call: (fs, request) => {
      fs.blockManager.blocksReceived(request.datanode, request.received, fs.haState === "active");
      fs.blockManager.blocksDeleted(request.datanode, request.deleted);
      return true;
    },
  }),
  reportBadBlocks: method({
    datanodeProtocol: true,
    bulk: true,
    request: z.object({
      blocks: z.array(z.object({ block: extendedBlock, datanodeUuid: z.string().min(1).max(256) })),
    }),
    call: (fs, request) => {
      for (const bad of request.blocks) {
        fs.logger.warn(
          { blockId: bad.block.blockId, datanode: bad.datanodeUuid },
          "replica reported corrupt",
        );
        fs.blockManager.markCorrupt(bad.block.blockId, bad.datanodeUuid);
      }
      return true;
    },
  }),
  // HDFS's ClientProtocol. The calls that change the namespace go through the retry cache.
  getServiceState: method({
    request: z.object({}),
    call: (fs) => ({ haState: fs.haState }),
  }),
  create: method({
    request: z.object({
      path,
      clientName,
      owner: user,
      permission: z.string().max(8).optional(),
      overwrite: z.boolean().optional(),
      replication: z.number().optional(),
      blockSize: z.number().optional(),
    }),
    call: (fs, request, ids) => fs.retryCache.atMostOnce(ids, () => fs.create(request, ids)),
  }),
  append: method({
    request: z.object({ path, clientName, user }),
    call: (fs, request, ids) => fs.retryCache.atMostOnce(ids, () => fs.append(request, ids)),
  }),
  addBlock: method({
    request: z.object({
      path,
      clientName,
      previous: acknowledgedBlock.optional(),
      favoredNode: z.string().max(256).optional(),
      /** Nodes that failed in the writer's pipelines (HDFS's excludeNodes). */
      excludeNodes: z.array(z.string().max(256)).max(10_000).optional(),
    }),
    call: (fs, request, ids) => fs.retryCache.atMostOnce(ids, () => fs.addBlock(request, ids)),
  }),
  abandonBlock: method({
    request: z.object({ path, clientName, block: extendedBlock }),
    call: (fs, request, ids) => fs.retryCache.atMostOnce(ids, () => fs.abandonBlock(request, ids)),
  }),
  complete: method({
    request: z.object({ path, clientName, last: acknowledgedBlock.optional() }),
    call: (fs, request, ids) => fs.retryCache.atMostOnce(ids, () => fs.complete(request, ids)),
  }),
  renewLease: method({
    request: z.object({ clientName }),
    call: (fs, request) => {
      fs.requireActive();
      fs.leases.renew(request.clientName);
      return true;
    },
  }),
  getBlockLocations: method({
    request: z.object({
      path,
      offset: z.number().int().nonnegative().optional(),
      length: z.number().nonnegative().nullable().optional(),
      clientUuid: z.string().max(256).optional(),
      user,
    }),
    call: (fs, request) => fs.getBlockLocations(request),
  }),
} satisfies Record<string, RpcMethod<z.ZodType>>;

export type RpcMethodName = keyof typeof METHODS;

const methodNamed = (name: string): RpcMethod<z.ZodType> | undefined =>
  Object.hasOwn(METHODS, name) ? METHODS[name as RpcMethodName] : undefined;

const unknownMethod = (name: string) =>
  new RemoteException("UnsupportedOperationException", `unknown RPC ${name}`);

const bodyLimitOf = (definition: RpcMethod<z.ZodType>) =>
  definition.bulk ? BULK_RPC_BODY_LIMIT : RPC_BODY_LIMIT;

/** HDFS's words for an oversized RPC. */
const tooLarge = (length: string, limit: number, name: string, from: string | undefined) =>
  new RemoteException(
    "IOException",
    `Requested data length ${length} is longer than maximum configured RPC length ${limit} for RPC ${name}. RPC came from ${from}`,
    undefined,
    413,
    { closeConnection: true },
  );

/** Parses and validates a request body, then runs the call: the same for both framings. */
function callMethod(
  fs: FSNamesystem,
  name: string,
  definition: RpcMethod<z.ZodType>,
  text: Buffer,
  ids: RpcIds | undefined,
): Promise<unknown> {
  let body: unknown;
  try {
    body = text.length === 0 ? {} : JSON.parse(text.toString("utf8"));
  } catch {
    return Promise.reject(illegalArgument(`the body of /rpc/${name} is not JSON`));
  }
  return validateAndCall(fs, name, definition, body, ids);
}

async function validateAndCall(
  fs: FSNamesystem,
  name: string,
  definition: RpcMethod<z.ZodType>,
  body: unknown,
  ids: RpcIds | undefined,
): Promise<unknown> {
  const parsed = definition.request.safeParse(body);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 5)
      .map((issue) => `${issue.path.join(".") || "(body)"}: ${issue.message}`);
    throw illegalArgument(`invalid ${name} request: ${issues.join("; ")}`);
  }
  return (await definition.call(fs, parsed.data, ids)) ?? null;
}

/**
 * Runs a client-protocol call in process, validated and delegated as an RPC would be but with
 * no transport: what HDFS's NNThroughputBenchmark measures (bench/namenode.bench.ts).
 */
export function invokeRpc(
  fs: FSNamesystem,
  name: RpcMethodName,
  body: unknown,
  ids?: RpcIds,
): Promise<unknown> {
  const definition = methodNamed(name);
  if (!definition || definition.datanodeProtocol) return Promise.reject(unknownMethod(name));
  return validateAndCall(fs, name, definition, body, ids);
}

/** Serves one request on the RPC port. */
export async function serveRpc(fs: FSNamesystem, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const pathname = (req.url ?? "/").split("?")[0]!;
  const name = pathname.startsWith("/rpc/") ? pathname.slice(5) : undefined;
  if (req.method !== "POST" || name === undefined) {
    req.resume();
    throw new RemoteException(
      "UnsupportedOperationException",
      `${req.method} ${pathname} is not served on the name node's RPC port (POST /rpc/<method>; WebHDFS, /status and /metrics are on its HTTP port)`,
      undefined,
      404,
    );
  }
  const definition = methodNamed(name);
  if (!definition) {
    req.resume();
    throw unknownMethod(name);
  }
  // Before the body is read: an unsigned caller costs no more than its headers.
  if (definition.datanodeProtocol) checkSignature(fs.config.clusterSecret, req.method, pathname, req.headers);
  const text = await readRequestBody(req, bodyLimitOf(definition), `RPC ${name}`);
  sendJson(res, 200, await callMethod(fs, name, definition, text, rpcIdsOf(req.headers)));
}

/** An upgraded connection with nothing in flight and nothing received for this long is closed. */
const IDLE_CONNECTION_MS = 60_000;

/** The most a frame may hold: the bulk limit plus its header. */
const MAX_FRAME_BYTES = BULK_RPC_BODY_LIMIT + 64 * 1024;

/**
 * Accepts the framed protocol on `GET /rpc` with `Upgrade: tributary-rpc/1` (the server's
 * 'upgrade' event); anything else asking to upgrade is refused.
 */
export function acceptRpcUpgrade(
  fs: FSNamesystem,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): RpcConnection | undefined {
  const pathname = (req.url ?? "/").split("?")[0];
  if (req.method !== "GET" || pathname !== RPC_UPGRADE_PATH || req.headers.upgrade !== RPC_UPGRADE_PROTOCOL) {
    const body = JSON.stringify(
      new RemoteException(
        "UnsupportedOperationException",
        `the name node's RPC port upgrades only GET ${RPC_UPGRADE_PATH} to ${RPC_UPGRADE_PROTOCOL}`,
      ).toJSON(),
    );
    socket.end(
      `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    return undefined;
  }
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${RPC_UPGRADE_PROTOCOL}\r\n\r\n`,
  );
  // The 'upgrade' event's socket is the connection's net.Socket.
  return new RpcConnection(fs, socket as Socket, head);
}

/**
 * One upgraded connection: its frames are calls, answered as each finishes (in any order, by
 * seq). Answers finished in the same turn of the event loop, such as every call one group
 * commit made durable, leave in one write.
 */
export class RpcConnection {
  private readonly reader: FrameReader;
  private outgoing: Buffer[] = [];
  private inFlight = 0;
  private closing = false;
  private idle: (() => void) | undefined;

  constructor(
    private readonly fs: FSNamesystem,
    private readonly socket: Socket,
    head: Buffer,
  ) {
    this.reader = new FrameReader(MAX_FRAME_BYTES, (frame) => this.dispatch(frame), {
      // The header, to refuse an unsigned data-node call or an oversized body before the body is buffered.
      prefixBytes: (start) => REQUEST_PREFIX_BYTES + start.readUInt16BE(8),
      check: (prefix) => this.admit(prefix),
    });
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    // The client is done sending (the HTTP server keeps sockets half-open): answer what it sent, then close.
    socket.on("end", () => void this.close());
    // A client that went away without closing: clients close their own idle connections sooner.
    socket.setTimeout(IDLE_CONNECTION_MS, () => {
      if (this.inFlight === 0) void this.close();
    });
    socket.on("error", () => socket.destroy());
    socket.on("drain", () => socket.resume());
    if (head.length > 0) this.receive(head);
  }

  /** Stops taking calls; resolves once those in flight are answered and the socket is closed. */
  close(): Promise<void> {
    this.closing = true;
    return new Promise<void>((resolve) => {
      const end = () => {
        // After the answers already queued (flush runs on the next tick).
        process.nextTick(() => this.socket.end());
        resolve();
      };
      if (this.inFlight === 0) end();
      else this.idle = end;
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    if (this.closing) return;
    try {
      this.reader.push(chunk);
    } catch (error) {
      // Not frames: answer what can be answered and close once the calls in flight are.
      this.send(0, error);
      this.close().catch(() => undefined);
    }
  }

  /**
   * Refuses a call from its header alone, before its body is buffered (the body is skipped as it
   * arrives): an unsigned data-node call, or a body over its method's limit. The connection
   * stays open for the other calls on it.
   */
  private admit(prefix: Buffer): boolean {
    const { seq, header } = decodeRequestHeader(prefix);
    const definition = methodNamed(header.method);
    const limit = definition ? bodyLimitOf(definition) : RPC_BODY_LIMIT;
    const length = prefix.readUInt32BE(0) + 4 - prefix.length;
    try {
      if (length > limit) throw tooLarge(String(length), limit, header.method, this.remoteAddress());
      if (definition?.datanodeProtocol)
        checkSignature(this.fs.config.clusterSecret, "POST", `/rpc/${header.method}`, {
          [TIMESTAMP_HEADER]: header.timestamp || undefined,
          [SIGNATURE_HEADER]: header.signature || undefined,
        });
      return true;
    } catch (error) {
      this.send(seq, error);
      return false;
    }
  }

  private remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  private dispatch(frame: Buffer): void {
    const { seq, header, bodyAt } = decodeRequestHeader(frame);
    const definition = methodNamed(header.method);
    if (!definition) {
      this.send(seq, unknownMethod(header.method));
      return;
    }
    this.inFlight++;
    callMethod(
      this.fs,
      header.method,
      definition,
      frame.subarray(bodyAt),
      rpcIdsFrom(header.clientId, header.callId),
    ).then(
      (result) => {
        this.inFlight--;
        this.send(seq, undefined, result);
      },
      (error) => {
        this.inFlight--;
        this.send(seq, error);
      },
    );
  }

  private send(seq: number, error: unknown, result?: unknown): void {
    let frame: Buffer;
    if (error === undefined) {
      frame = encodeResponse(seq, 200, JSON.stringify(result));
    } else {
      const remote = asRemoteException(error);
      frame = encodeResponse(seq, remote.status, JSON.stringify(remote.toJSON()));
    }
    this.outgoing.push(frame);
    if (this.outgoing.length === 1) process.nextTick(() => this.flush());
  }

  private flush(): void {
    const frames = this.outgoing;
    this.outgoing = [];
    if (this.socket.destroyed) return;
    // A client that does not read its answers stops being read from.
    if (!this.socket.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames))) this.socket.pause();
    if (this.inFlight === 0 && this.idle) {
      const end = this.idle;
      this.idle = undefined;
      end();
    }
  }
}
