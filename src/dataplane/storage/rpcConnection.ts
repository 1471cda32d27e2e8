/**
 * The name node's RPC over one long-lived connection per name node (HDFS's ipc.Client: calls
 * of every thread multiplexed on one socket, each with its own call id, answered in any order).
 * The connection is opened as an HTTP/1.1 Upgrade of `GET /rpc` on the RPC port, so the port
 * still serves `POST /rpc/<method>` JSON to curl, tests and older clients, then carries frames:
 *
 *   request   [u32 length][u32 seq][u16 header length][header][JSON body]
 *             header: method, client id, call id, signature time, signature (newline-separated;
 *             the last four may be empty)
 *   response  [u32 length][u32 seq][u16 status][JSON: the answer, or the RemoteException]
 *
 * `length` counts the bytes after it. A response's status is the one the HTTP answer would have
 * (200, or the RemoteException's), so both transports raise the same errors. Why: measured on the
 * project's 2-core machine, an HTTP round trip cost the client and the server each 60–80 µs of
 * CPU (request objects, header parsing, one write syscall per call); a frame costs a few µs, and
 * the answers a group commit releases together leave in one write.
 */
import { connect, type Socket } from "node:net";
import { parseRemoteException, postJson, RemoteException, splitAddress } from "./protocol.js";

/** The Upgrade token of the framed protocol. */
export const RPC_UPGRADE_PROTOCOL = "tributary-rpc/1";
/** The path the Upgrade is asked on. */
export const RPC_UPGRADE_PATH = "/rpc";
/** Bytes before a request's header text: length, seq, header length. */
export const REQUEST_PREFIX_BYTES = 10;
const RESPONSE_PREFIX_BYTES = 10;

export interface RpcCallHeader {
  method: string;
  clientId?: string | undefined;
  callId?: string | undefined;
  /** The cluster-secret signature of a data-node call (clusterAuth.ts's headers). */
  timestamp?: string | undefined;
  signature?: string | undefined;
}

export function encodeRequest(seq: number, header: RpcCallHeader, body: string): Buffer {
  const text = `${header.method}\n${header.clientId ?? ""}\n${header.callId ?? ""}\n${header.timestamp ?? ""}\n${header.signature ?? ""}`;
  const headerBytes = Buffer.byteLength(text);
  const bodyBytes = Buffer.byteLength(body);
  const frame = Buffer.allocUnsafe(REQUEST_PREFIX_BYTES + headerBytes + bodyBytes);
  frame.writeUInt32BE(frame.length - 4, 0);
  frame.writeUInt32BE(seq, 4);
  frame.writeUInt16BE(headerBytes, 8);
  frame.write(text, REQUEST_PREFIX_BYTES);
  frame.write(body, REQUEST_PREFIX_BYTES + headerBytes);
  return frame;
}

export function decodeRequestHeader(frame: Buffer): { seq: number; header: RpcCallHeader; bodyAt: number } {
  const headerBytes = frame.readUInt16BE(8);
  const [method = "", clientId, callId, timestamp, signature] = frame
    .toString("utf8", REQUEST_PREFIX_BYTES, REQUEST_PREFIX_BYTES + headerBytes)
    .split("\n");
  return {
    seq: frame.readUInt32BE(4),
    header: { method, clientId, callId, timestamp, signature },
    bodyAt: REQUEST_PREFIX_BYTES + headerBytes,
  };
}

export function encodeResponse(seq: number, status: number, json: string): Buffer {
  const bytes = Buffer.byteLength(json);
  const frame = Buffer.allocUnsafe(RESPONSE_PREFIX_BYTES + bytes);
  frame.writeUInt32BE(frame.length - 4, 0);
  frame.writeUInt32BE(seq, 4);
  frame.writeUInt16BE(status, 8);
  frame.write(json, RESPONSE_PREFIX_BYTES);
  return frame;
}

/**
 * Cuts a byte stream into frames. `admit` sees each frame's first `prefixBytes(start)` bytes as
 * soon as they arrive, before the rest is buffered: a frame it refuses (false) is skipped as its
 * bytes arrive, never held (the server refuses an unsigned or oversized call there). `onFrame`
 * gets each whole frame, its length word included. Chunks are joined once per frame, never once
 * per chunk, so a large frame costs one copy.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private admitted = false;
  /** Bytes of a refused frame still to skip. */
  private skipping = 0;

  constructor(
    private readonly maxFrameBytes: number,
    private readonly onFrame: (frame: Buffer) => void,
    private readonly admit?: { prefixBytes: (start: Buffer) => number; check: (prefix: Buffer) => boolean },
  ) {}

  /** Throws when the stream is not frames at all (a frame over the maximum): close the connection. */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    for (;;) {
      if (this.skipping > 0) {
        this.skipping -= this.consume(Math.min(this.skipping, this.size));
        if (this.skipping > 0) return;
      }
      if (this.size < 4) return;
      let first = this.contiguous(4);
      const total = 4 + first.readUInt32BE(0);
      if (total > this.maxFrameBytes)
        throw new RemoteException(
          "IOException",
          `an RPC frame of ${total} bytes is longer than the maximum of ${this.maxFrameBytes}`,
          undefined,
          413,
        );
      if (this.admit && !this.admitted) {
        if (this.size < REQUEST_PREFIX_BYTES) return;
        first = this.contiguous(REQUEST_PREFIX_BYTES);
        const prefix = Math.min(total, this.admit.prefixBytes(first));
        if (this.size < prefix) return;
        if (!this.admit.check(this.contiguous(prefix).subarray(0, prefix))) {
          this.skipping = total;
          continue;
        }
        this.admitted = true;
      }
      if (this.size < total) return;
      first = this.contiguous(total);
      const frame = first.subarray(0, total);
      this.consume(total);
      this.admitted = false;
      this.onFrame(frame);
    }
  }

  /** Drops `bytes` (at most what is buffered) from the front; returns how many. */
  private consume(bytes: number): number {
    let left = bytes;
    while (left > 0) {
      const first = this.chunks[0]!;
      if (first.length <= left) {
        this.chunks.shift();
        left -= first.length;
      } else {
        this.chunks[0] = first.subarray(left);
        left = 0;
      }
    }
    this.size -= bytes;
    return bytes;
  }

  /** The first chunk, joined with the following ones until it holds at least `bytes`. */
  private contiguous(bytes: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= bytes) return first;
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }
}

interface PendingCall {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

const connectionLost = (address: string, why: string) =>
  Object.assign(new Error(`socket hang up: the connection to ${address} was lost (${why})`), {
    code: "ECONNRESET",
  });

/** The largest answer a client takes (a listing or block locations of a big file). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/**
 * One multiplexed connection to a name node. Calls made in the same turn of the event loop leave
 * in one write. A lost connection fails every call on it with ECONNRESET, which the failover
 * policy retries (with the same call ids, so the retry cache answers what already ran); the next
 * call opens a new connection. Idle, the socket does not hold the process open, and it is closed
 * once idle for the call timeout.
 */
export class RpcChannel {
  private socket: Socket | undefined;
  private ready: Promise<Socket> | undefined;
  private readonly pending = new Map<number, PendingCall>();
  private nextSeq = 1;
  private outgoing: Buffer[] = [];
  private closed = false;

  constructor(
    readonly address: string,
    private readonly timeoutMs: number,
    private readonly onClose: () => void,
  ) {}

  call<T>(header: RpcCallHeader, body: unknown): Promise<T> {
    if (this.closed) return Promise.reject(connectionLost(this.address, "already closed"));
    const seq = this.nextSeq;
    this.nextSeq = this.nextSeq === 0xffffffff ? 1 : this.nextSeq + 1;
    const frame = encodeRequest(seq, header, JSON.stringify(body ?? {}));
    return new Promise<T>((resolve, reject) => {
      this.pending.set(seq, { resolve: resolve as (value: unknown) => void, reject });
      if (this.pending.size === 1) this.socket?.ref();
      this.outgoing.push(frame);
      if (this.outgoing.length === 1) process.nextTick(() => this.send());
    });
  }

  /** Opens the connection: connect, ask for the Upgrade, wait for 101. Rejects with "refused" when the server has no framed RPC. */
  open(): Promise<Socket> {
    this.ready ??= new Promise<Socket>((resolve, reject) => {
      const [host, port] = splitAddress(this.address);
      const socket = connect({ host, port, noDelay: true });
      this.socket = socket;
      socket.setTimeout(this.timeoutMs);
      let handshake: Buffer | undefined = Buffer.alloc(0);
      const reader = new FrameReader(MAX_RESPONSE_BYTES, (frame) => this.answer(frame));
      socket.on("connect", () =>
        socket.write(
          `GET ${RPC_UPGRADE_PATH} HTTP/1.1\r\nHost: ${this.address}\r\nConnection: Upgrade\r\nUpgrade: ${RPC_UPGRADE_PROTOCOL}\r\n\r\n`,
        ),
      );
      socket.on("data", (chunk: Buffer) => {
        if (handshake === undefined) {
          try {
            reader.push(chunk);
          } catch (error) {
            socket.destroy(error as Error);
          }
          return;
        }
        handshake = Buffer.concat([handshake, chunk]);
        const end = handshake.indexOf("\r\n\r\n");
        if (end < 0) return;
        const statusLine = handshake.toString("latin1", 0, handshake.indexOf("\r\n"));
        const rest = handshake.subarray(end + 4);
        handshake = undefined;
        if (!/^HTTP\/1\.1 101 /.test(statusLine)) {
          const refused = new UpgradeRefused(`${this.address} answered the RPC upgrade with ${statusLine}`);
          reject(refused);
          this.fail(refused);
          return;
        }
        resolve(socket);
        if (this.pending.size === 0) socket.unref();
        if (rest.length > 0) reader.push(rest);
      });
      socket.on("timeout", () => {
        if (this.pending.size > 0 || handshake !== undefined)
          socket.destroy(new Error(`timed out after ${this.timeoutMs} ms calling ${this.address}`));
        // Idle as long: closed by this side, as HDFS's client closes a connection idle past
        // ipc.client.connection.maxidletime, before the server's own idle limit could cut a call.
        else this.close();
      });
      socket.on("error", (error) => {
        if (handshake !== undefined) reject(error);
        this.fail(error);
      });
      socket.on("close", () => {
        if (handshake !== undefined) reject(connectionLost(this.address, "closed during the upgrade"));
        this.fail(connectionLost(this.address, "closed by the server"));
      });
    });
    return this.ready;
  }

  private send(): void {
    const frames = this.outgoing;
    this.outgoing = [];
    if (this.closed) return;
    this.open().then(
      (socket) => socket.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames)),
      () => undefined, // every pending call was failed with the reason
    );
  }

  private answer(frame: Buffer): void {
    const seq = frame.readUInt32BE(4);
    const status = frame.readUInt16BE(8);
    const call = this.pending.get(seq);
    if (!call) return;
    this.pending.delete(seq);
    if (this.pending.size === 0) this.socket?.unref();
    const body = frame.subarray(RESPONSE_PREFIX_BYTES);
    if (status >= 300) {
      call.reject(parseRemoteException(status, body));
      return;
    }
    try {
      call.resolve(JSON.parse(body.toString("utf8")));
    } catch (error) {
      call.reject(error as Error);
    }
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
    this.socket?.destroy();
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const call of calls) call.reject(error);
  }

  close(): void {
    this.fail(connectionLost(this.address, "closed by the client"));
  }
}

/** The server does not speak the framed protocol (an older name node): calls go as `POST /rpc/<method>`. */
export class UpgradeRefused extends Error {}

/** One channel per name node address in this process, as HDFS's client shares a connection per server. */
const channels = new Map<string, RpcChannel>();
/** Addresses that refused the Upgrade: asked again after this long. */
const httpOnly = new Map<string, number>();
const HTTP_ONLY_RECHECK_MS = 60_000;

/**
 * Calls `method` on the name node at `address` over the shared framed connection, or as
 * `POST /rpc/<method>` where the server does not offer it. Errors are the RemoteException the
 * name node answered, or a connection error the caller's failover policy recognises.
 */
export async function callNameNode<T>(
  address: string,
  header: RpcCallHeader,
  body: unknown,
  timeoutMs = 10_000,
  httpHeaders: Record<string, string> = {},
): Promise<T> {
  const refusedAt = httpOnly.get(address);
  if (refusedAt !== undefined && Date.now() - refusedAt < HTTP_ONLY_RECHECK_MS)
    return postJson<T>(address, `/rpc/${header.method}`, body, timeoutMs, httpHeaders);
  let channel = channels.get(address);
  if (!channel) {
    const created = new RpcChannel(address, timeoutMs, () => {
      if (channels.get(address) === created) channels.delete(address);
    });
    channels.set(address, created);
    channel = created;
  }
  try {
    return await channel.call<T>(header, body);
  } catch (error) {
    if (!(error instanceof UpgradeRefused)) throw error;
    httpOnly.set(address, Date.now());
    return postJson<T>(address, `/rpc/${header.method}`, body, timeoutMs, httpHeaders);
  }
}

/** Closes this process's name-node connections (tests; a process exits without it). */
export function closeNameNodeChannels(): void {
  for (const channel of channels.values()) channel.close();
  channels.clear();
  httpOnly.clear();
}
