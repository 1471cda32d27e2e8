/**
 * A typed WebHDFS client for Tributary's own writers (sinks, snapshots, archives). It speaks the
 * documented REST flow: the name node answers CREATE/APPEND/OPEN with a 307 to a data node, and
 * the data goes there. Given both name nodes of a pool, it follows the active one: a
 * StandbyException or a refused connection moves on to the other until `failoverTimeoutMs`.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { SEND_WINDOW_BYTES } from "./blockTransfer.js";
import {
  CALL_ID_HEADER,
  CLIENT_ID_HEADER,
  parseRemoteException,
  RemoteException,
  readBody,
  splitAddress,
} from "./protocol.js";
import { failoverPolicy, withRetries } from "./retry.js";

export interface FileStatus {
  accessTime: number;
  blockSize: number;
  childrenNum: number;
  fileId: number;
  group: string;
  length: number;
  modificationTime: number;
  owner: string;
  pathSuffix: string;
  permission: string;
  replication: number;
  storagePolicy: number;
  type: "FILE" | "DIRECTORY";
}

export interface ContentSummary {
  directoryCount: number;
  fileCount: number;
  length: number;
  quota: number;
  spaceConsumed: number;
  spaceQuota: number;
}

export interface WebHdfsClientOptions {
  /** WebHDFS addresses (host:port) of the pool's name nodes. */
  nameNodes: string[];
  /** Sent as `user.name`: owner of what this client creates. */
  user?: string;
  failoverTimeoutMs?: number;
}

export interface CreateOptions {
  overwrite?: boolean;
  replication?: number;
  /** Bytes per block for this file (HDFS's dfs.blocksize, per file). */
  blockSize?: number;
  /** Octal mode, e.g. "640". */
  permission?: string;
}

type Body = Buffer | Uint8Array | string | AsyncIterable<Buffer | Uint8Array | string>;

interface Response {
  status: number;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

export class WebHdfsClient {
  private active = 0;
  /** With a call id per operation, what the name node's retry cache keys a retried DELETE, RENAME or MKDIRS by. */
  private readonly clientId = randomUUID();
  private nextCallId = 0;
  private readonly user: string;
  private readonly failoverTimeoutMs: number;

  constructor(private readonly options: WebHdfsClientOptions) {
    if (options.nameNodes.length === 0) throw new Error("WebHdfsClient needs at least one name node address");
    this.user = options.user ?? "tributary";
    this.failoverTimeoutMs = options.failoverTimeoutMs ?? 30_000;
  }

  async create(path: string, data: Body, options: CreateOptions = {}): Promise<void> {
    const params: Record<string, string> = { overwrite: String(options.overwrite ?? false) };
    if (options.replication !== undefined) params.replication = String(options.replication);
    if (options.blockSize !== undefined) params.blocksize = String(options.blockSize);
    if (options.permission !== undefined) params.permission = options.permission;
    await this.withDataNode(data, async () => {
      const location = await this.redirect("PUT", path, "CREATE", params);
      await this.expect(await send("PUT", location, data), 201);
    });
  }

  async append(path: string, data: Body): Promise<void> {
    await this.withDataNode(data, async () => {
      const location = await this.redirect("POST", path, "APPEND", {});
      await this.expect(await send("POST", location, data), 200);
    });
  }

  /** The file's bytes (or `[offset, offset+length)` of them). */
  async open(path: string, range: { offset?: number; length?: number } = {}): Promise<Buffer> {
    const params: Record<string, string> = {};
    if (range.offset !== undefined) params.offset = String(range.offset);
    if (range.length !== undefined) params.length = String(range.length);
    const response = await this.withDataNode(undefined, async () =>
      send("GET", await this.redirect("GET", path, "OPEN", params)),
    );
    await this.expect(response, 200);
    const expected = Number(response.headers["content-length"]);
    if (Number.isFinite(expected) && response.body.length !== expected) {
      throw new RemoteException(
        "IOException",
        `short read of ${path}: ${response.body.length} of ${expected} bytes`,
      );
    }
    return response.body;
  }

  async status(path: string): Promise<FileStatus> {
    return (await this.json<{ FileStatus: FileStatus }>("GET", path, "GETFILESTATUS")).FileStatus;
  }

  async list(path: string): Promise<FileStatus[]> {
    return (await this.json<{ FileStatuses: { FileStatus: FileStatus[] } }>("GET", path, "LISTSTATUS"))
      .FileStatuses.FileStatus;
  }

  async contentSummary(path: string): Promise<ContentSummary> {
    return (await this.json<{ ContentSummary: ContentSummary }>("GET", path, "GETCONTENTSUMMARY"))
      .ContentSummary;
  }

  async mkdirs(path: string, permission?: string): Promise<boolean> {
    return (await this.json<{ boolean: boolean }>("PUT", path, "MKDIRS", permission ? { permission } : {}))
      .boolean;
  }

  async delete(path: string, options: { recursive?: boolean } = {}): Promise<boolean> {
    return (
      await this.json<{ boolean: boolean }>("DELETE", path, "DELETE", {
        recursive: String(options.recursive ?? false),
      })
    ).boolean;
  }

  async rename(path: string, destination: string): Promise<boolean> {
    return (await this.json<{ boolean: boolean }>("PUT", path, "RENAME", { destination })).boolean;
  }

  /** Namespace quota in inodes and storage-space quota in bytes (times replication); -1 clears. */
  async setQuota(path: string, quota: { namespace?: number; storageSpace?: number }): Promise<void> {
    await this.nameNode("PUT", path, "SETQUOTA", {
      namespacequota: String(quota.namespace ?? -1),
      storagespacequota: String(quota.storageSpace ?? -1),
    });
  }

  /** Octal mode, e.g. "750" or "1777" (sticky); the owner's or a superuser's to change. */
  async setPermission(path: string, permission: string): Promise<void> {
    await this.nameNode("PUT", path, "SETPERMISSION", { permission });
  }

  /** A new owner takes a superuser; the owner may change the group to one of their own. */
  async setOwner(path: string, change: { owner?: string; group?: string }): Promise<void> {
    await this.nameNode("PUT", path, "SETOWNER", {
      ...(change.owner ? { owner: change.owner } : {}),
      ...(change.group ? { group: change.group } : {}),
    });
  }

  /**
   * Runs a two-step operation again when the data node it was sent to refused the connection
   * (it died before the name node noticed) or answered that it is busy (503 with Retry-After,
   * HDFS's RetriableException: it serves its maximum of writers): it did nothing, so a retry,
   * which may be sent to another data node, is safe. A streamed body cannot be replayed, so
   * only fixed bodies are retried.
   */
  private async withDataNode<T>(data: Body | undefined, step: () => Promise<T>): Promise<T> {
    const replayable = data === undefined || typeof data === "string" || data instanceof Uint8Array;
    const busy = (error: unknown): error is RemoteException =>
      error instanceof RemoteException && error.exception === "RetriableException";
    return withRetries(
      {
        retriable: (error) =>
          replayable && ((error as NodeJS.ErrnoException).code === "ECONNREFUSED" || busy(error)),
        delayMs: (next, error) =>
          Math.max(busy(error) ? (error.retryAfterSeconds ?? 0) * 1000 : 0, 200 * (next - 1)),
        maxAttempts: 8,
      },
      step,
    );
  }

  private async json<T>(
    method: string,
    path: string,
    op: string,
    params: Record<string, string> = {},
  ): Promise<T> {
    const response = await this.nameNode(method, path, op, params);
    return JSON.parse(response.body.toString("utf8")) as T;
  }

  private async redirect(
    method: string,
    path: string,
    op: string,
    params: Record<string, string>,
  ): Promise<string> {
    const response = await this.nameNode(method, path, op, params);
    const location = response.headers.location;
    if (response.status !== 307 || !location)
      throw new RemoteException(
        "IOException",
        `${op} ${path}: expected a 307 redirect, got HTTP ${response.status}`,
      );
    return location;
  }

  /** One request to the active name node, failing over on StandbyException or a dead peer. */
  private async nameNode(
    method: string,
    path: string,
    op: string,
    params: Record<string, string>,
  ): Promise<Response> {
    const query = new URLSearchParams({ ...params, op, "user.name": this.user }).toString();
    const encoded = path.split("/").map(encodeURIComponent).join("/");
    const addresses = this.options.nameNodes;
    const ids = { [CLIENT_ID_HEADER]: this.clientId, [CALL_ID_HEADER]: String(this.nextCallId++) };
    const first = this.active;
    return withRetries(failoverPolicy(addresses.length, this.failoverTimeoutMs), async (attempt) => {
      const index = (first + attempt - 1) % addresses.length;
      const response = await send(
        method,
        `http://${addresses[index]}/webhdfs/v1${encoded}?${query}`,
        undefined,
        ids,
      );
      if (response.status >= 400) throw parseRemoteException(response.status, response.body);
      this.active = index;
      return response;
    });
  }

  private async expect(response: Response, status: number): Promise<void> {
    if (response.status !== status)
      throw parseRemoteException(response.status, response.body, response.headers);
  }
}

function send(
  method: string,
  url: string,
  body?: Body,
  headers: Record<string, string> = {},
): Promise<Response> {
  const parsed = new URL(url);
  const [host, port] = splitAddress(parsed.host);
  const fixed =
    body === undefined
      ? Buffer.alloc(0)
      : typeof body === "string" || body instanceof Uint8Array
        ? Buffer.from(body as Uint8Array)
        : undefined;
  return new Promise<Response>((resolve, reject) => {
    const req = httpRequest({
      host,
      port,
      method,
      path: `${parsed.pathname}${parsed.search}`,
      headers: {
        ...headers,
        ...(fixed ? { "content-length": fixed.length } : { "transfer-encoding": "chunked" }),
      },
    });
    req.on("error", reject);
    req.on("response", (res) => {
      readBody(res, Number.MAX_SAFE_INTEGER).then(
        (bytes) => {
          if (!res.complete)
            reject(
              new RemoteException(
                "IOException",
                `response from ${parsed.host} was cut off after ${bytes.length} bytes`,
              ),
            );
          else resolve({ status: res.statusCode ?? 500, headers: res.headers, body: bytes });
        },
        (error) =>
          reject(
            new RemoteException(
              "IOException",
              `response from ${parsed.host} was cut off: ${(error as Error).message}`,
            ),
          ),
      );
    });
    if (fixed) {
      req.end(fixed);
      return;
    }
    (async () => {
      // A window of a few MiB rather than a wait per piece: the data node always has the next
      // bytes in its socket while it stores and forwards the ones before (as a block is sent).
      for await (const chunk of body as AsyncIterable<Buffer | Uint8Array | string>) {
        if (!req.write(chunk) && req.writableLength >= SEND_WINDOW_BYTES) await once(req, "drain");
      }
      req.end();
    })().catch((error) => req.destroy(error as Error));
  });
}
