/**
 * WebHDFS on the name node (HDFS's NamenodeWebHdfsMethods): the REST API at /webhdfs/v1, one
 * entry per operation in a table (its HTTP method and what it does), each delegating to the
 * namesystem. CREATE, APPEND, OPEN and GETFILECHECKSUM answer 307 to a data node that does the
 * work. Served on the HTTP port only; the RPC port serves none of it.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { BYTES_PER_CHECKSUM } from "../crc32c.js";
import { erasureCodingPolicy } from "../erasure/index.js";
import { validatePath } from "../path.js";
import {
  type DatanodeID,
  fileNotFound,
  illegalArgument,
  isTrue,
  RemoteException,
  sendJson,
} from "../protocol.js";
import { DEFAULT_USER, type FSNamesystem, parseMode } from "./fsNamesystem.js";
import { EXECUTE, READ, WRITE } from "./permissions.js";
import { type RpcIds, rpcIdsOf } from "./retryCache.js";

/** HDFS's dfs.ls.limit: the most entries one LISTSTATUS_BATCH answer carries. */
const LISTING_LIMIT = 1000;
/** DataChecksum.Type.CRC32C's id, as FsServerDefaults carries it. */
const CHECKSUM_TYPE_CRC32C = 2;
/** HDFS's default block storage policy (HOT: every replica on DISK). */
const HOT_STORAGE_POLICY_ID = 7;

/** One WebHDFS request, parsed. */
export interface WebHdfsCall {
  req: IncomingMessage;
  res: ServerResponse;
  op: string;
  path: string;
  params: URLSearchParams;
  user: string;
  /** Sent by Tributary's clients with non-idempotent operations: the retry cache's key. */
  ids: RpcIds | undefined;
  /** An integer parameter, or `fallback` when absent. */
  int: (name: string, fallback: number) => number;
  /** The name node's RPC address, which the data node of a redirect calls back. */
  rpcAddress: string;
}

export interface WebHdfsOperation {
  method: "GET" | "PUT" | "POST" | "DELETE";
  run: (call: WebHdfsCall) => Promise<void>;
}

/** The operations, by their `op` parameter. */
export function webHdfsOperations(fs: FSNamesystem): Record<string, WebHdfsOperation> {
  return {
    CREATE: { method: "PUT", run: (c) => redirect(fs, c) },
    APPEND: { method: "POST", run: (c) => redirect(fs, c) },
    OPEN: { method: "GET", run: (c) => redirect(fs, c) },
    GETFILECHECKSUM: { method: "GET", run: (c) => redirect(fs, c) },
    // No symbolic links here: a path's link status is its status.
    GETFILELINKSTATUS: { method: "GET", run: (c) => fileStatus(fs, c) },
    GETFILESTATUS: { method: "GET", run: (c) => fileStatus(fs, c) },
    LISTSTATUS: {
      method: "GET",
      run: async ({ res, path, user }) => {
        const node = fs.lookupOrThrow(path);
        fs.checkAccess(user, node, node.kind === "DIRECTORY" ? READ | EXECUTE : 0);
        return sendJson(res, 200, { FileStatuses: { FileStatus: fs.listing(path) } });
      },
    },
    GETCONTENTSUMMARY: {
      method: "GET",
      run: async ({ res, path, user }) => {
        const node = fs.lookupOrThrow(path);
        fs.permissions.checkTraverse(user, node);
        fs.permissions.checkSubtree(user, node, READ | EXECUTE);
        return sendJson(res, 200, { ContentSummary: fs.contentSummary(path) });
      },
    },
    GETHOMEDIRECTORY: {
      method: "GET",
      run: async ({ res, user }) => {
        return sendJson(res, 200, { Path: `/user/${user}` });
      },
    },
    MKDIRS: {
      method: "PUT",
      run: async ({ res, path, params, user, ids }) => {
        return sendJson(res, 200, {
          boolean: await fs.retryCache.atMostOnce(ids, () =>
            fs.mkdirs(path, user, parseMode(params.get("permission") ?? undefined, 0o755), ids),
          ),
        });
      },
    },
    DELETE: {
      method: "DELETE",
      run: async ({ res, path, params, user, ids }) => {
        return sendJson(res, 200, {
          boolean: await fs.retryCache.atMostOnce(ids, () =>
            fs.delete(path, isTrue(params.get("recursive")), user, ids),
          ),
        });
      },
    },
    RENAME: {
      method: "PUT",
      run: async ({ res, path, params, user, ids }) => {
        const destination = params.get("destination");
        if (!destination) throw illegalArgument("Required param destination for op: RENAME is null or empty");
        // With renameoptions (FileSystem.rename(src, dst, options), what the trash uses) HDFS's
        // rename2 answers: an empty 200 or an exception, never {"boolean": false}, which the Java
        // client would not read and so take for success.
        const options = (params.get("renameoptions") ?? "").split(",").filter(Boolean);
        if (options.length === 0)
          return sendJson(res, 200, {
            boolean: await fs.retryCache.atMostOnce(ids, () =>
              fs.rename(path, validatePath(destination), user, ids),
            ),
          });
        for (const option of options) {
          if (!["NONE", "OVERWRITE", "TO_TRASH"].includes(option))
            throw illegalArgument(`Invalid value for webhdfs parameter "renameoptions": ${option}`);
        }
        await fs.retryCache.atMostOnce(ids, () =>
          fs.renameWithOptions(path, validatePath(destination), user, options.includes("OVERWRITE"), ids),
        );
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      },
    },
    SETQUOTA: {
      method: "PUT",
      run: async ({ res, path, user, int }) => {
        fs.permissions.checkSuperuser(user);
        await fs.setQuota(path, int("namespacequota", -1), int("storagespacequota", -1));
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      },
    },
    SETECPOLICY: {
      method: "PUT",
      run: async ({ res, path, params, user }) => {
        const name = params.get("ecpolicy");
        if (!name) throw illegalArgument("Required param ecpolicy for op: SETECPOLICY is null or empty");
        let policy: string;
        try {
          const resolved = erasureCodingPolicy(name);
          policy = `${resolved.name}-${resolved.cellSize / 1024}k`;
        } catch (error) {
          throw new RemoteException(
            "HadoopIllegalArgumentException",
            `Policy '${name}' does not match any enabled erasure coding policies: ${(error as Error).message}`,
            "org.apache.hadoop.HadoopIllegalArgumentException",
            400,
          );
        }
        const directory = fs.lookupOrThrow(path);
        if (directory.kind !== "DIRECTORY")
          throw new RemoteException(
            "IOException",
            `Attempt to set an erasure coding policy for a file ${path}`,
          );
        fs.checkAccess(user, directory, WRITE);
        await fs.log({ op: "SET_EC_POLICY", path, ecPolicy: policy });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      },
    },
    UNSETECPOLICY: {
      method: "PUT",
      run: async ({ res, path, user }) => {
        fs.checkAccess(user, fs.lookupOrThrow(path), WRITE);
        await fs.log({ op: "SET_EC_POLICY", path, ecPolicy: null });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      },
    },
    GETECPOLICY: {
      method: "GET",
      run: async ({ res, path, user }) => {
        const node = fs.lookupOrThrow(path);
        fs.permissions.checkTraverse(user, node);
        const name = node.kind === "FILE" ? node.ecPolicy : fs.ecPolicyFor(path);
        if (!name) return sendJson(res, 200, null);
        const policy = erasureCodingPolicy(name);
        return sendJson(res, 200, {
          name,
          codecName: policy.codec,
          numDataUnits: policy.dataUnits,
          numParityUnits: policy.parityUnits,
          cellSize: policy.cellSize,
        });
      },
    },
    SETREPLICATION: {
      method: "PUT",
      run: async ({ res, path, user, int }) => {
        fs.requireActive();
        const node = fs.namespace.lookup(path);
        if (node?.kind !== "FILE") return sendJson(res, 200, { boolean: false });
        fs.checkAccess(user, node, WRITE);
        const replication = int("replication", fs.config.replication);
        if (replication < 1 || replication > 512)
          throw illegalArgument(`Requested replication factor of ${replication} is out of range [1, 512]`);
        await fs.log({ op: "SET_REPLICATION", path, replication });
        return sendJson(res, 200, { boolean: true });
      },
    },
    SETPERMISSION: {
      method: "PUT",
      run: async ({ res, path, params, user }) => {
        const node = fs.lookupOrThrow(path);
        fs.permissions.checkTraverse(user, node);
        fs.permissions.checkOwner(user, node);
        await fs.log({
          op: "SET_PERMISSION",
          path,
          permission: parseMode(params.get("permission") ?? undefined, 0o755),
        });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      },
    },
    SETOWNER: {
      method: "PUT",
      run: async ({ res, path, params, user }) => {
        const node = fs.lookupOrThrow(path);
        const owner = params.get("owner") || undefined;
        const group = params.get("group") || undefined;
        if (!owner && !group) throw illegalArgument("Both owner and group are empty");
        fs.permissions.checkTraverse(user, node);
        fs.permissions.checkSetOwner(user, node, owner, group);
        await fs.log({ op: "SET_OWNER", path, owner, group });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      },
    },
    LISTSTATUS_BATCH: {
      method: "GET",
      run: async ({ res, path, params, user }) => {
        const node = fs.lookupOrThrow(path);
        fs.checkAccess(user, node, node.kind === "DIRECTORY" ? READ | EXECUTE : 0);
        // The Java client's listStatusIterator (what `hadoop fs -ls` uses) pages with startAfter.
        const startAfter = params.get("startAfter") ?? "";
        const remaining = fs.listing(path).filter((status) => !startAfter || status.pathSuffix > startAfter);
        const page = remaining.slice(0, LISTING_LIMIT);
        return sendJson(res, 200, {
          DirectoryListing: {
            partialListing: { FileStatuses: { FileStatus: page } },
            remainingEntries: remaining.length - page.length,
          },
        });
      },
    },
    GETFILEBLOCKLOCATIONS: {
      method: "GET",
      run: async ({ res, path, params, user, int }) => {
        // `hadoop fs -setrep -w` polls this until every block has as many hosts as asked.
        const file = fs.lookupOrThrow(path);
        if (file.kind !== "FILE")
          throw new RemoteException("FileNotFoundException", `Path is not a file: ${path}`);
        fs.checkAccess(user, file, READ);
        const offset = int("offset", 0);
        // FileSystem callers often pass Long.MAX_VALUE ("to the end"): past 2^53, but only compared.
        const length = Number(params.get("length") || Number.POSITIVE_INFINITY);
        if (!(length >= 0))
          throw illegalArgument(`Invalid value for webhdfs parameter "length": ${params.get("length")}`);
        return sendJson(res, 200, {
          BlockLocations: { BlockLocation: fs.blockManager.blockLocations(file, offset, offset + length) },
        });
      },
    },
    GETQUOTAUSAGE: {
      method: "GET",
      run: async ({ res, path, user }) => {
        const node = fs.lookupOrThrow(path);
        fs.permissions.checkTraverse(user, node);
        const summary = fs.contentSummary(path);
        return sendJson(res, 200, {
          QuotaUsage: {
            fileAndDirectoryCount: summary.fileCount + summary.directoryCount,
            quota: summary.quota,
            spaceConsumed: summary.spaceConsumed,
            spaceQuota: summary.spaceQuota,
          },
        });
      },
    },
    GETSERVERDEFAULTS: {
      method: "GET",
      run: async ({ res }) => {
        // The Java client asks before `-rm` (trashInterval 0: delete, do not move to .Trash) and
        // for the key provider; the checksum fields describe what the data nodes write.
        return sendJson(res, 200, {
          FsServerDefaults: {
            blockSize: fs.config.blockSize,
            bytesPerChecksum: BYTES_PER_CHECKSUM,
            writePacketSize: 64 * 1024,
            replication: fs.config.replication,
            fileBufferSize: 4096,
            encryptDataTransfer: false,
            trashInterval: 0,
            checksumType: CHECKSUM_TYPE_CRC32C,
            keyProviderUri: "",
            defaultStoragePolicyId: HOT_STORAGE_POLICY_ID,
          },
        });
      },
    },
    GETTRASHROOT: {
      method: "GET",
      run: async ({ res, user }) => {
        return sendJson(res, 200, { Path: `/user/${user}/.Trash` });
      },
    },
    GETSTATUS: {
      method: "GET",
      run: async ({ res }) => {
        const { capacity, used } = fs.status();
        return sendJson(res, 200, { FsStatus: { capacity, used, remaining: Math.max(0, capacity - used) } });
      },
    },
    CHECKACCESS: {
      method: "GET",
      run: async ({ res, path, params, user }) => {
        const action = params.get("fsaction") ?? "";
        if (!/^[r-][w-][x-]$/.test(action))
          throw illegalArgument(`Invalid value for webhdfs parameter "fsaction": ${action || "(empty)"}`);
        const access =
          (action[0] === "r" ? READ : 0) |
          (action[1] === "w" ? WRITE : 0) |
          (action[2] === "x" ? EXECUTE : 0);
        fs.checkAccess(user, fs.lookupOrThrow(path), access);
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      },
    },
    SETTIMES: {
      method: "PUT",
      run: async ({ res, path, user, int }) => {
        const node = fs.lookupOrThrow(path);
        // HDFS: WRITE on the inode; -1 (or absent) leaves that time as it is.
        fs.checkAccess(user, node, WRITE);
        const mtime = int("modificationtime", -1);
        const atime = int("accesstime", -1);
        if (mtime >= 0 || atime >= 0) {
          await fs.log({
            op: "SET_TIMES",
            path,
            mtime: mtime >= 0 ? mtime : undefined,
            atime: atime >= 0 ? atime : undefined,
          });
        }
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      },
    },
  };
}

/** Serves one request under /webhdfs/v1: the path and parameters checked, then the operation's entry. */
export async function serveWebHdfs(
  fs: FSNamesystem,
  operations: Record<string, WebHdfsOperation>,
  req: IncomingMessage,
  res: ServerResponse,
  pathname: string,
  params: URLSearchParams,
  rpcAddress: string,
): Promise<void> {
  const op = (params.get("op") ?? "").toUpperCase();
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname.slice("/webhdfs/v1".length)) || "/";
  } catch {
    throw illegalArgument(`cannot decode path ${pathname}`);
  }
  const path = validatePath(decoded);
  const user = params.get("user.name") || DEFAULT_USER;
  if (fs.haState !== "active") {
    throw new RemoteException(
      "StandbyException",
      `Operation category ${req.method === "GET" ? "READ" : "WRITE"} is not supported in state ${fs.haState}`,
    );
  }
  const operation = Object.hasOwn(operations, op) ? operations[op] : undefined;
  if (!operation)
    throw illegalArgument(`Invalid value for webhdfs parameter "op": No enum constant ${op || "(empty)"}`);
  const method = req.method ?? "GET";
  if (method !== operation.method)
    throw illegalArgument(`Invalid value for webhdfs parameter "op": op=${op} is not a ${method} operation`);
  const int = (name: string, fallback: number) => {
    const value = params.get(name);
    if (value === null || value === "") return fallback;
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed))
      throw illegalArgument(`Invalid value for webhdfs parameter "${name}": ${value}`);
    return parsed;
  };
  // Tributary's own clients send ids with the operations that are not idempotent (retry cache).
  await operation.run({ req, res, op, path, params, user, ids: rpcIdsOf(req.headers), int, rpcAddress });
}

async function fileStatus(fs: FSNamesystem, { res, path, user }: WebHdfsCall): Promise<void> {
  const node = fs.lookupOrThrow(path);
  fs.permissions.checkTraverse(user, node);
  return sendJson(res, 200, { FileStatus: fs.fileStatus(node, "") });
}

/**
 * WebHDFS's first step: answer 307 with a data node that does the work. For OPEN, a node
 * holding the first block read; for CREATE/APPEND, any live node (it becomes the first replica).
 */
async function redirect(
  fs: FSNamesystem,
  { req, res, op, path, params, user, rpcAddress }: WebHdfsCall,
): Promise<void> {
  const node = fs.namespace.lookup(path);
  let target: DatanodeID | undefined;
  const reads = op === "OPEN" || op === "GETFILECHECKSUM";
  if (reads || op === "APPEND") {
    if (!node) throw fileNotFound(path);
    if (node.kind !== "FILE")
      throw new RemoteException("FileNotFoundException", `Path is not a file: ${path}`);
  }
  if (op === "CREATE") {
    if (node?.kind === "DIRECTORY")
      throw new RemoteException("FileAlreadyExistsException", `${path} already exists as a directory`);
    if (node && !isTrue(params.get("overwrite")))
      throw new RemoteException(
        "FileAlreadyExistsException",
        `${path} for client ${req.socket.remoteAddress} already exists`,
      );
  }
  // Refused here rather than by the data node after the client has sent the body.
  if (reads && node) fs.checkAccess(user, node, READ);
  if (op === "CREATE") {
    const blockSize = params.get("blocksize");
    // 0 or empty: the pool's default, as the data node reads it.
    if (blockSize !== null && blockSize !== "" && blockSize !== "0") {
      const parsed = Number(blockSize);
      if (!Number.isSafeInteger(parsed))
        throw illegalArgument(`Invalid value for webhdfs parameter "blocksize": ${blockSize}`);
      fs.checkBlockSize(parsed);
    }
  }
  if (op === "APPEND" && node) fs.checkAccess(user, node, WRITE);
  if (op === "CREATE") {
    const ancestor = fs.nearestExisting(path).node;
    if (ancestor === node && node && isTrue(params.get("overwrite"))) {
      fs.checkAccess(user, node, WRITE);
      fs.permissions.checkWriteInto(user, node.parent!);
    } else if (ancestor !== node) {
      fs.permissions.checkWriteInto(user, ancestor);
    }
  }
  if (reads && node?.kind === "FILE") {
    const offset = op === "OPEN" ? Number(params.get("offset") ?? 0) : 0;
    let start = 0;
    for (const block of node.blocks) {
      if (block.complete && offset < start + block.numBytes) {
        // Never a dead holder; a stale or decommissioning one only when no better one is left.
        // The data node reads the rest from the located blocks, falling over between replicas.
        const readable = fs.blockManager.readCandidates(block.blockId);
        target = readable[Math.floor(Math.random() * readable.length)];
        break;
      }
      start += block.numBytes;
    }
  }
  if (!target) {
    // The node a CREATE or APPEND lands on becomes the first replica: never a decommissioning one.
    const candidates = fs.blockManager.writeCandidates();
    target = candidates[Math.floor(Math.random() * candidates.length)];
  }
  if (!target)
    throw new RemoteException("IOException", "Failed to find datanode, suggest to check cluster health.");
  const forwarded = new URLSearchParams(params);
  forwarded.delete("noredirect");
  forwarded.set("op", op);
  forwarded.set("user.name", user);
  forwarded.set("namenoderpcaddress", rpcAddress);
  const encoded = path.split("/").map(encodeURIComponent).join("/");
  const location = `http://${target.hostName}:${target.infoPort}/webhdfs/v1${encoded}?${forwarded.toString()}`;
  if (isTrue(params.get("noredirect"))) return sendJson(res, 200, { Location: location });
  // The body (if a client sent one before following) is not read here; the data node takes it.
  res.writeHead(307, { location, "content-type": "application/octet-stream", "content-length": 0 });
  res.end();
  req.resume();
}
