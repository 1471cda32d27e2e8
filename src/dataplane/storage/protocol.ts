/**
 * What name nodes, data nodes and clients say to each other: HDFS's vocabulary (ExtendedBlock,
 * DatanodeInfo, LocatedBlock, RemoteException) carried as JSON over HTTP on loopback or the pod
 * network.
 */
import {
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";

export interface ExtendedBlock {
  blockId: number;
  generationStamp: number;
  numBytes: number;
}

export interface DatanodeID {
  /** Stable across restarts: kept in the data node's storage directory (HDFS's datanodeUuid). */
  datanodeUuid: string;
  hostName: string;
  /** Block transfer endpoint (HDFS's xferPort). */
  xferPort: number;
  /** Health, metrics and WebHDFS data endpoint (HDFS's infoPort). */
  infoPort: number;
}

export interface DatanodeInfo extends DatanodeID {
  networkLocation: string;
  capacity: number;
  dfsUsed: number;
  remaining: number;
  lastUpdate: number;
  numBlocks: number;
  adminState: AdminState;
}

/**
 * HDFS's AdminStates plus DEAD: a decommissioning node takes no new replicas and its own do not
 * count toward replication, but it still serves reads until every block it holds has enough
 * copies elsewhere (DECOMMISSIONED). A silent node is DEAD whatever its admin state.
 */
export type AdminState = "NORMAL" | "DECOMMISSION_INPROGRESS" | "DECOMMISSIONED" | "DEAD";

export interface LocatedBlock {
  block: ExtendedBlock;
  /** File offset of the block's first byte. */
  startOffset: number;
  /** Replicas known good, the closest first. */
  locations: DatanodeID[];
  corrupt: boolean;
  /** Set on an erasure-coded block group: its policy (e.g. RS-6-3-1024k). */
  ecPolicy?: string;
  /** For a block group: the node holding internal block i (blockId + i), null where none is live. */
  internal?: (DatanodeID | null)[];
}

export interface LocatedBlocks {
  fileLength: number;
  underConstruction: boolean;
  blocks: LocatedBlock[];
}

/** A command the active name node hands a data node in its heartbeat reply (HDFS's DatanodeCommand). */
export type DatanodeCommand =
  | { action: "transfer"; block: ExtendedBlock; targets: DatanodeID[] }
  | { action: "invalidate"; blocks: ExtendedBlock[] }
  | {
      action: "reconstruct";
      /** The block group; numBytes is its data length. */
      group: ExtendedBlock;
      ecPolicy: string;
      blockSize: number;
      sources: (DatanodeID | null)[];
      /** Internal block indices to rebuild, and where each goes. */
      missing: number[];
      targets: DatanodeID[];
    }
  | { action: "register" };

export interface HeartbeatRequest {
  datanode: DatanodeID;
  networkLocation: string;
  capacity: number;
  dfsUsed: number;
  remaining: number;
  numBlocks: number;
}

export interface HeartbeatResponse {
  commands: DatanodeCommand[];
  haState: "active" | "standby";
  /**
   * The block-transfer addresses (host:xferPort) of the data nodes the name node knows and has
   * not declared dead: a data node forwards a block only to these (see DataNode.checkTargets).
   */
  datanodes?: string[];
}

/** How an error is answered beyond its JSON body. */
export interface RemoteExceptionOptions {
  /** Sent as Retry-After: the caller may try again after this many seconds. */
  retryAfterSeconds?: number | undefined;
  /**
   * The request's body was not read (refused before it): the answer closes the connection
   * instead of the server reading the rest of the body for nothing.
   */
  closeConnection?: boolean;
}

/**
 * An error with the name and status HDFS gives it, rendered as WebHDFS's RemoteException
 * JSON. WebHDFS maps FileNotFoundException to 404, argument errors to 400 and every other
 * IOException (quota, lease, standby, already exists) to 403.
 */
export class RemoteException extends Error {
  readonly retryAfterSeconds: number | undefined;
  readonly closeConnection: boolean;

  constructor(
    readonly exception: string,
    message: string,
    readonly javaClassName = javaClassFor(exception),
    readonly status = statusFor(exception),
    options: RemoteExceptionOptions = {},
  ) {
    super(message);
    this.name = exception;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.closeConnection = options.closeConnection ?? false;
  }

  toJSON() {
    return {
      RemoteException: {
        exception: this.exception,
        javaClassName: this.javaClassName,
        message: this.message,
      },
    };
  }
}

const JAVA_CLASSES: Record<string, string> = {
  FileNotFoundException: "java.io.FileNotFoundException",
  IllegalArgumentException: "java.lang.IllegalArgumentException",
  IOException: "java.io.IOException",
  UnsupportedOperationException: "java.lang.UnsupportedOperationException",
  FileAlreadyExistsException: "org.apache.hadoop.fs.FileAlreadyExistsException",
  ParentNotDirectoryException: "org.apache.hadoop.fs.ParentNotDirectoryException",
  PathIsNotEmptyDirectoryException: "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
  DSQuotaExceededException: "org.apache.hadoop.hdfs.protocol.DSQuotaExceededException",
  NSQuotaExceededException: "org.apache.hadoop.hdfs.protocol.NSQuotaExceededException",
  AlreadyBeingCreatedException: "org.apache.hadoop.hdfs.protocol.AlreadyBeingCreatedException",
  LeaseExpiredException: "org.apache.hadoop.hdfs.server.namenode.LeaseExpiredException",
  StandbyException: "org.apache.hadoop.ipc.StandbyException",
  ChecksumException: "org.apache.hadoop.fs.ChecksumException",
  BlockMissingException: "org.apache.hadoop.hdfs.BlockMissingException",
  ReplicaNotFoundException: "org.apache.hadoop.hdfs.server.datanode.ReplicaNotFoundException",
  NotReplicatedYetException: "org.apache.hadoop.hdfs.server.namenode.NotReplicatedYetException",
  InvalidPathException: "org.apache.hadoop.fs.InvalidPathException",
  FencedException: "org.apache.hadoop.hdfs.server.namenode.FencedException",
  AccessControlException: "org.apache.hadoop.security.AccessControlException",
  RetriableException: "org.apache.hadoop.ipc.RetriableException",
};

function javaClassFor(exception: string): string {
  return JAVA_CLASSES[exception] ?? `java.io.${exception}`;
}

function statusFor(exception: string): number {
  if (exception === "FileNotFoundException") return 404;
  if (exception === "IllegalArgumentException" || exception === "InvalidPathException") return 400;
  if (exception === "UnsupportedOperationException") return 400;
  return 403;
}

export const fileNotFound = (path: string) =>
  new RemoteException("FileNotFoundException", `File does not exist: ${path}`);
export const illegalArgument = (message: string) => new RemoteException("IllegalArgumentException", message);
/**
 * HDFS's RetriableException, as a 503 with Retry-After: the server is busy, not broken, and the
 * same request may succeed later (Hadoop's client retries it). Refused before the body is read.
 */
export const retriable = (message: string, retryAfterSeconds: number) =>
  new RemoteException("RetriableException", message, undefined, 503, {
    retryAfterSeconds,
    closeConnection: true,
  });

/**
 * Reads a whole request body that must fit in `limit` bytes, refusing a larger one with 413
 * (HDFS's words for an oversized RPC): at once when its Content-Length says so, otherwise as
 * soon as the bytes pass the limit, without reading the rest.
 */
export async function readRequestBody(req: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const tooLarge = (length: string) =>
    new RemoteException(
      "IOException",
      `Requested data length ${length} is longer than maximum configured RPC length ${limit} for ${what}. RPC came from ${req.socket.remoteAddress}`,
      undefined,
      413,
      { closeConnection: true },
    );
  const declared = Number(req.headers["content-length"]);
  if (declared > limit) throw tooLarge(String(declared));
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw tooLarge(`of more than ${limit}`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Reads a whole response body (bounded: metadata answers are small). Requests: readRequestBody. */
export async function readBody(stream: IncomingMessage, limit = 64 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) throw illegalArgument(`request body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** `error` as the RemoteException a caller is answered with: an unexpected one is a 500 IOException. */
export function asRemoteException(error: unknown): RemoteException {
  return error instanceof RemoteException
    ? error
    : new RemoteException(
        "IOException",
        error instanceof Error ? error.message : String(error),
        undefined,
        500,
      );
}

export function sendError(res: ServerResponse, error: unknown): void {
  const remote = asRemoteException(error);
  if (res.headersSent) {
    // Mid-stream: the only honest signal left is a broken response.
    res.destroy(remote);
    return;
  }
  const headers: Record<string, string> = {};
  if (remote.retryAfterSeconds !== undefined) headers["retry-after"] = String(remote.retryAfterSeconds);
  if (remote.closeConnection) headers.connection = "close";
  sendJson(res, remote.status, remote.toJSON(), headers);
}

/** Turns a RemoteException JSON body (and its Retry-After, if any) back into the error it names. */
export function parseRemoteException(
  status: number,
  body: Buffer,
  headers: IncomingHttpHeaders = {},
): RemoteException {
  const retryAfter = Number(headers["retry-after"]);
  const options = { retryAfterSeconds: retryAfter >= 0 ? retryAfter : undefined };
  try {
    const parsed = JSON.parse(body.toString("utf8")) as {
      RemoteException?: { exception: string; javaClassName: string; message: string };
    };
    if (parsed.RemoteException) {
      const { exception, javaClassName, message } = parsed.RemoteException;
      return new RemoteException(exception, message, javaClassName, status, options);
    }
  } catch {
    // Not JSON: fall through to a plain IOException with the text.
  }
  return new RemoteException(
    "IOException",
    `HTTP ${status}: ${body.toString("utf8").slice(0, 500)}`,
    undefined,
    status,
    options,
  );
}

/** POSTs JSON to `http://address/path` and returns the JSON answer, or throws the RemoteException. */
/**
 * A client's id and the id of one of its calls, the same on every retry of that call (HDFS's RPC
 * header clientId and callId): the name node's retry cache answers a retry with the first answer.
 */
export const CLIENT_ID_HEADER = "x-tributary-client-id";
export const CALL_ID_HEADER = "x-tributary-call-id";

export function postJson<T>(
  address: string,
  path: string,
  body: unknown,
  timeoutMs = 10_000,
  headers: Record<string, string> = {},
): Promise<T> {
  const payload = Buffer.from(JSON.stringify(body));
  const [host, port] = splitAddress(address);
  return new Promise<T>((resolve, reject) => {
    const req = httpRequest(
      {
        host,
        port,
        path,
        method: "POST",
        headers: { ...headers, "content-type": "application/json", "content-length": payload.length },
        timeout: timeoutMs,
      },
      (res) => {
        readBody(res).then((text) => {
          if ((res.statusCode ?? 500) >= 300) reject(parseRemoteException(res.statusCode ?? 500, text));
          else resolve((text.length ? JSON.parse(text.toString("utf8")) : undefined) as T);
        }, reject);
      },
    );
    req.on("timeout", () =>
      req.destroy(new Error(`timed out after ${timeoutMs} ms calling ${address}${path}`)),
    );
    req.on("error", reject);
    req.end(payload);
  });
}

export function splitAddress(address: string): [string, number] {
  const at = address.lastIndexOf(":");
  if (at <= 0) throw illegalArgument(`address must be host:port, got ${address}`);
  return [address.slice(0, at).replace(/^\[|\]$/g, ""), Number(address.slice(at + 1))];
}

export const xferAddress = (node: DatanodeID) => `${node.hostName}:${node.xferPort}`;
export const infoAddress = (node: DatanodeID) => `${node.hostName}:${node.infoPort}`;

/**
 * True for errors that mean "this peer is not there" rather than "this peer said no". A name
 * that does not resolve is one: in Kubernetes a pod being replaced has no DNS record until its
 * successor starts.
 */
export function isConnectionError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return (
    code === "ECONNREFUSED" ||
    code === "ENOTFOUND" ||
    code === "EAI_AGAIN" ||
    code === "ECONNRESET" ||
    code === "EPIPE" ||
    code === "ETIMEDOUT" ||
    code === "EHOSTUNREACH" ||
    (error instanceof Error && /timed out|socket hang up/.test(error.message))
  );
}

/** WebHDFS boolean parameters, read like Java's Boolean.parseBoolean (clients send "True" too). */
export function isTrue(value: string | null | undefined): boolean {
  return value?.toLowerCase() === "true";
}
