/**
 * HDFS's FSNamesystem: the namespace operations of the client protocol and WebHDFS, each checked
 * (permissions, quotas, leases, HA state) and then logged and applied through `log` (log first,
 * then memory; a failed log stops the process); the HA state, with the standby tailing the edit
 * log and taking over by the fencing epoch; leases; checkpoints. No HTTP here: the RPC server
 * (rpcServer.ts) and WebHDFS (webhdfs.ts) validate requests and delegate to it.
 */
import { mkdir } from "node:fs/promises";
import type { Logger } from "../../../log.js";
import { BYTES_PER_CHECKSUM } from "../crc32c.js";
import { erasureCodingPolicy } from "../erasure/index.js";
import { components, nameOf, parentOf, validatePath } from "../path.js";
import {
  type ExtendedBlock,
  fileNotFound,
  illegalArgument,
  type LocatedBlock,
  type LocatedBlocks,
  RemoteException,
} from "../protocol.js";
import { BlockManager, isInService, toDatanodeID } from "./blockManager.js";
import { Checkpointer } from "./checkpointer.js";
import { EditLog, FencedException } from "./editLog.js";
import { HaStateMachine } from "./haState.js";
import { LeaseManager } from "./leaseManager.js";
import type { NameNodeConfig } from "./nameNodeConfig.js";
import { type EditOp, ecShape, type INode, type INodeFile, Namespace } from "./namespace.js";
import { ALL, PermissionChecker, READ, WRITE } from "./permissions.js";
import { RetryCache, type RpcIds } from "./retryCache.js";
import { TopologyTable } from "./topology.js";

/** How often the topology table's file is checked for changes (HDFS reads it once; pods want updates). */
const TOPOLOGY_TABLE_CHECK_MS = 3_000;

export type HaState = "active" | "standby" | "stopped";

/** WebHDFS's user when a request names none (HDFS's hadoop.http.staticuser.user). */
export const DEFAULT_USER = "dr.who";
/** Directories the spec declares (coded, quota'd) are shared like /tmp: anyone writes, owners delete. */
const SHARED_DIRECTORY_MODE = 0o1777;
/** HDFS's dfs.namenode.fs-limits.min-block-size. */
const MIN_BLOCK_SIZE = 1024 * 1024;

/** The ids of a call and the answer it gave, logged with its last edit for the retry cache. */
type LoggedAnswer = RpcIds & { result: unknown };
const answer = (rpc: RpcIds | undefined, result: unknown): LoggedAnswer | undefined =>
  rpc ? { clientId: rpc.clientId, callId: rpc.callId, result } : undefined;

export class FSNamesystem {
  namespace = new Namespace();
  readonly blockManager: BlockManager;
  readonly editLog: EditLog;
  readonly retryCache: RetryCache;
  haState: HaState = "standby";
  lastAppliedTxid = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  readonly leases: LeaseManager;
  readonly ha = new HaStateMachine(this);
  readonly checkpointer = new Checkpointer(this);
  private readonly topology: TopologyTable | undefined;
  readonly permissions: PermissionChecker;
  /** Counts each edit this node logs (the name node's transactions metric). */
  onTransaction: () => void = () => undefined;
  /** Stops the servers when the process must stop (terminate). */
  stopServing: () => void = () => undefined;

  constructor(
    readonly config: NameNodeConfig,
    readonly logger: Logger,
  ) {
    this.permissions = new PermissionChecker(
      { enabled: config.permissionsEnabled ?? true, superusers: config.superusers ?? ["hdfs"] },
      (node) => this.namespace.pathOf(node),
    );
    this.leases = new LeaseManager(config.leaseHardLimitMs);
    this.editLog = new EditLog(config.nameDir);
    this.editLog.onIoError = (error) => this.terminate(error);
    this.retryCache = new RetryCache({
      expiryMs: config.retryCacheExpiryMs ?? 10 * 60 * 1000,
      maxEntries: config.retryCacheEntries ?? 100_000,
    });
    this.topology = config.topologyTable ? new TopologyTable(config.topologyTable, logger) : undefined;
    this.blockManager = new BlockManager(this.namespace, {
      heartbeatExpiryMs: config.heartbeatExpiryMs,
      staleIntervalMs: config.staleIntervalMs,
      pendingReplicationTimeoutMs: Math.max(10_000, config.heartbeatExpiryMs),
      rackOf: (node) => this.topology?.rackOf(node),
      logger,
    });
  }

  /** Loads the namespace from the volume and settles this node's HA state (before serving). */
  async start(): Promise<void> {
    await mkdir(this.config.nameDir, { recursive: true });
    await this.loadFromDisk();
    // Racks before the first heartbeat, so the first placements already spread across them.
    await this.topology?.refresh();
  }

  /** The background work: HA checks and tailing, replication, leases, checkpoints, racks. */
  startBackgroundWork(): void {
    this.timers.push(
      setInterval(() => void this.haTick(), this.config.tailIntervalMs),
      setInterval(() => {
        if (this.haState === "active") {
          this.blockManager.computeReplicationWork();
          this.checkLeases();
          this.checkpointer.maybeCheckpoint();
        }
      }, this.config.replicationIntervalMs),
    );
    if (this.topology) {
      const topology = this.topology;
      this.timers.push(setInterval(() => void topology.refresh(), TOPOLOGY_TABLE_CHECK_MS));
    }
  }

  /**
   * Stops serving at once (every call answers StandbyException from now on), then, once `drained`
   * (the servers closed), releases the edit log: the standby may take over without waiting.
   */
  async close(drained: Promise<unknown> = Promise.resolve()): Promise<void> {
    const wasActive = this.haState === "active";
    this.haState = "stopped";
    for (const timer of this.timers) clearInterval(timer);
    await drained;
    if (wasActive) await this.editLog.release();
    else await this.editLog.close();
  }

  // ---- state: load, tail, failover ------------------------------------------------------------

  wireNamespace(namespace: Namespace): void {
    this.namespace = namespace;
    namespace.onBlocksRemoved = (blocks) => this.blockManager.removeBlocks(blocks);
    this.blockManager.setNamespace(namespace);
  }

  /**
   * An edit could not be made durable (a full or failing volume; not fencing): the namespace in
   * memory may hold it, so this process must not answer anything more. It stops, as HDFS's
   * FSEditLog does; the restarted process (or the standby) serves what the disk holds.
   */
  loadFromDisk(): Promise<void> {
    return this.ha.loadFromDisk();
  }

  haTick(): Promise<void> {
    return this.ha.tick();
  }

  stepDown(reason: string): Promise<void> {
    return this.ha.stepDown(reason);
  }

  /** Writes a checkpoint now (see Checkpointer). */
  checkpoint(): Promise<void> {
    return this.checkpointer.checkpoint();
  }

  terminate(error: Error): void {
    if (this.haState === "stopped") return;
    this.haState = "stopped";
    this.logger.fatal(
      { error: error.message, txid: this.lastAppliedTxid },
      "edit log write failed: stopping, since memory may be ahead of the disk",
    );
    this.stopServing();
    (this.config.terminate ?? ((status) => process.exit(status)))(1);
  }

  /** Level-based: makes the spec's directories carry its policies and quotas, changing only what differs. */
  async applySpec(): Promise<void> {
    for (const { path, policy } of this.config.erasureCoding ?? []) {
      erasureCodingPolicy(policy);
      await this.mkdirs(validatePath(path), "hdfs", SHARED_DIRECTORY_MODE);
      if (this.namespace.directory(path).ecPolicy !== policy)
        await this.log({ op: "SET_EC_POLICY", path, ecPolicy: policy });
    }
    for (const { path, bytes, files } of this.config.quotas ?? []) {
      await this.mkdirs(validatePath(path), "hdfs", SHARED_DIRECTORY_MODE);
      const dir = this.namespace.directory(path);
      if (dir.nsQuota !== files || dir.dsQuota !== bytes)
        await this.log({ op: "SET_QUOTA", path, nsQuota: files, dsQuota: bytes });
    }
  }

  /**
   * Logs `op`, then applies it; the caller's answer waits for the (shared, group-commit) sync.
   * The record is in the log before memory changes (HDFS's logEdit): a log that cannot take it,
   * fenced or failed, refuses it while memory is untouched. A sync that fails afterwards stops
   * the process (see terminate), so memory is never ahead of the disk in a name node that answers.
   * `rpc` (the last edit of a call that carried ids) puts its answer in the log for the retry cache.
   */
  async log(op: EditOp, rpc?: LoggedAnswer): Promise<void> {
    this.requireActive();
    try {
      this.editLog.checkWritable();
    } catch (error) {
      this.refused(error);
    }
    const txid = this.lastAppliedTxid + 1;
    const durable = this.editLog.appendEdit(op, txid, this.editLog.writerEpoch, rpc);
    durable.catch(() => undefined);
    try {
      this.namespace.apply(op);
    } catch (error) {
      // Validation runs before an edit is logged, so this is a bug; the log now holds an edit
      // memory refused, and only a restart that replays the log brings the two together.
      this.terminate(error as Error);
      throw error;
    }
    this.lastAppliedTxid = txid;
    this.onTransaction();
    try {
      await durable;
    } catch (error) {
      this.refused(error);
    }
  }

  /** An edit the log refused or failed: fencing makes this node a standby; any other error stopped it (terminate). */
  refused(error: unknown): never {
    if (error instanceof FencedException) {
      this.stepDown("edit refused: a newer epoch exists").catch((stepDownError) =>
        this.logger.error({ error: (stepDownError as Error).message }, "could not reload after being fenced"),
      );
      throw new RemoteException("StandbyException", `Operation not acknowledged: ${error.message}`);
    }
    throw error;
  }

  requireActive(): void {
    if (this.haState !== "active") {
      throw new RemoteException(
        "StandbyException",
        `Operation category WRITE is not supported in state ${this.haState}`,
      );
    }
  }

  checkLeases(): void {
    const now = Date.now();
    for (const client of this.leases.expired(this.namespace.leases.keys(), now)) {
      for (const file of [...(this.namespace.leases.get(client) ?? [])]) {
        const path = this.namespace.pathOf(file);
        this.logger.info({ path, client }, "lease expired: closing the file with its complete blocks");
        this.log({ op: "CLOSE", path, mtime: now, dropIncomplete: true }).catch((error) =>
          this.logger.warn({ path, error: (error as Error).message }, "lease recovery failed"),
        );
      }
    }
  }

  // ---- client protocol ----------------------------------------------------------------------

  async mkdirs(path: string, owner: string, permission: number, rpc?: RpcIds): Promise<boolean> {
    const names = components(path);
    const { node: at, depth } = this.nearestExisting(path);
    if (depth === names.length) {
      this.permissions.checkTraverse(owner, at);
      if (at.kind !== "DIRECTORY")
        throw new RemoteException("FileAlreadyExistsException", `Path is not a directory: ${path}`);
      return true;
    }
    if (at.kind !== "DIRECTORY")
      throw new RemoteException(
        "ParentNotDirectoryException",
        `Parent path is not a directory: ${this.namespace.pathOf(at)}`,
      );
    this.permissions.checkWriteInto(owner, at);
    const missing = names.slice(depth).map((_, i) => `/${names.slice(0, depth + i + 1).join("/")}`);
    this.namespace.checkQuota(at, missing.length, 0);
    const mtime = Date.now();
    await Promise.all(
      // HDFS's BSD rule: a new inode takes its parent directory's group.
      missing.map((dir, i) =>
        this.log(
          { op: "MKDIR", path: dir, owner, group: at.group, permission, mtime },
          i === missing.length - 1 ? answer(rpc, true) : undefined,
        ),
      ),
    );
    return true;
  }

  async create(
    body: {
      path: string;
      clientName: string;
      owner?: string;
      permission?: string;
      overwrite?: boolean;
      replication?: number;
      blockSize?: number;
    },
    rpc?: RpcIds,
  ): Promise<{ blockSize: number; replication: number; ecPolicy?: string | undefined }> {
    this.requireActive();
    const path = validatePath(body.path);
    if (path === "/") throw new RemoteException("FileAlreadyExistsException", "/ is a directory");
    const replication = body.replication ?? this.config.replication;
    const blockSize = body.blockSize ?? this.config.blockSize;
    if (!Number.isInteger(replication) || replication < 1 || replication > 512) {
      throw illegalArgument(`Requested replication factor of ${replication} is out of range [1, 512]`);
    }
    this.checkBlockSize(blockSize);
    const existing = this.namespace.lookup(path);
    if (existing?.kind === "DIRECTORY")
      throw new RemoteException("FileAlreadyExistsException", `${path} already exists as a directory`);
    if (existing?.kind === "FILE") {
      if (existing.clientName) {
        throw new RemoteException(
          "AlreadyBeingCreatedException",
          `Failed to CREATE_FILE ${path} for ${body.clientName}: the file is being written by ${existing.clientName}`,
        );
      }
      if (!body.overwrite)
        throw new RemoteException(
          "FileAlreadyExistsException",
          `${path} for client ${body.clientName} already exists`,
        );
    }
    const owner = body.owner ?? DEFAULT_USER;
    if (existing && body.overwrite) this.permissions.check(owner, existing, WRITE);
    await this.mkdirs(parentOf(path), owner, 0o755);
    const parent = this.namespace.directory(parentOf(path));
    this.permissions.checkWriteInto(owner, parent);
    this.namespace.checkQuota(parent, existing ? 0 : 1, 0);
    const ecPolicy = this.ecPolicyFor(parentOf(path));
    if (ecPolicy && blockSize < erasureCodingPolicy(ecPolicy).cellSize) {
      throw illegalArgument(
        `block size ${blockSize} is smaller than the ${ecPolicy} cell size of ${path}'s directory`,
      );
    }
    const result = { blockSize, replication, ecPolicy };
    await this.log(
      {
        op: "ADD",
        path,
        owner,
        group: parent.group,
        permission: parseMode(body.permission, 0o644),
        mtime: Date.now(),
        // Erasure-coded files are not replicated: redundancy comes from parity.
        replication: ecPolicy ? 1 : replication,
        blockSize,
        clientName: body.clientName,
        ecPolicy,
      },
      answer(rpc, result),
    );
    this.leases.renew(body.clientName);
    return result;
  }

  /** See NameNodeConfig.maxBlockSize: the pool's own block size is allowed whatever the maximum. */
  checkBlockSize(blockSize: number): void {
    if (!Number.isInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize % BYTES_PER_CHECKSUM !== 0) {
      throw illegalArgument(
        `Specified block size ${blockSize} is less than the configured minimum ${MIN_BLOCK_SIZE} or not a multiple of ${BYTES_PER_CHECKSUM}`,
      );
    }
    const maximum = Math.max(this.config.maxBlockSize, this.config.blockSize);
    if (blockSize > maximum) {
      throw illegalArgument(
        `Specified block size is more than the configured maximum value (TRIBUTARY_MAX_BLOCK_SIZE): ${blockSize} > ${maximum}. A writer keeps a whole block in memory until every replica has it; choose a blocksize of at most ${maximum} bytes`,
      );
    }
  }

  async append(
    body: {
      path: string;
      clientName: string;
      user?: string;
    },
    rpc?: RpcIds,
  ): Promise<{ blockSize: number; replication: number; ecPolicy?: string | undefined }> {
    this.requireActive();
    const path = validatePath(body.path);
    const file = this.namespace.getFile(path);
    this.checkAccess(body.user ?? DEFAULT_USER, file, WRITE);
    if (file.clientName) {
      throw new RemoteException(
        "AlreadyBeingCreatedException",
        `Failed to APPEND_FILE ${path} for ${body.clientName}: the file is being written by ${file.clientName}`,
      );
    }
    const result = { blockSize: file.blockSize, replication: file.replication, ecPolicy: file.ecPolicy };
    await this.log(
      { op: "APPEND", path, clientName: body.clientName, mtime: Date.now() },
      answer(rpc, result),
    );
    this.leases.renew(body.clientName);
    return result;
  }

  checkLease(path: string, clientName: string): INodeFile {
    const file = this.namespace.getFile(path);
    if (file.clientName !== clientName) {
      throw new RemoteException(
        "LeaseExpiredException",
        file.clientName
          ? `Lease mismatch on ${path}: owned by ${file.clientName} but is accessed by ${clientName}`
          : `No lease on ${path}: File is not open for writing. Holder ${clientName} does not have any open files.`,
      );
    }
    this.leases.renew(clientName);
    return file;
  }

  /** The nearest ancestor's erasure-coding policy (HDFS's policies are inherited). */
  ecPolicyFor(path: string): string | undefined {
    for (let at = this.namespace.lookup(path); at; at = at.parent) {
      if (at.kind === "DIRECTORY" && at.ecPolicy) return at.ecPolicy;
    }
    return undefined;
  }

  async addBlock(
    body: {
      path: string;
      clientName: string;
      previous?: ExtendedBlock & { locations?: (string | null)[] };
      favoredNode?: string;
      /** Nodes that failed in the writer's pipelines (HDFS's excludeNodes): not chosen again. */
      excludeNodes?: string[];
    },
    rpc?: RpcIds,
  ): Promise<LocatedBlock> {
    this.requireActive();
    const path = validatePath(body.path);
    const file = this.checkLease(path, body.clientName);
    const excluded = new Set(Array.isArray(body.excludeNodes) ? body.excludeNodes.map(String) : []);
    const last = file.blocks.at(-1);
    const startOf = (count: number) =>
      file.blocks.slice(0, count).reduce((sum, block) => sum + block.numBytes, 0);
    // A retried addBlock (its answer was lost, e.g. across a failover) gets the block it already allocated.
    if (last && !last.complete && last.blockId !== body.previous?.blockId) {
      const beforeLast = file.blocks.at(-2);
      if ((beforeLast?.blockId ?? undefined) === body.previous?.blockId) {
        const targets = this.blockManager.chooseTargets(
          this.blockManager.targetCount(file),
          body.favoredNode,
          [],
          excluded,
        );
        return {
          ...this.blockManager.locate(file, file.blocks.length - 1, startOf(file.blocks.length - 1)),
          locations: targets.map(toDatanodeID),
        };
      }
      throw new RemoteException(
        "IOException",
        `addBlock for ${path}: previous block ${body.previous?.blockId} is not the file's last block ${last.blockId}`,
      );
    }
    if (body.previous && body.previous.blockId !== last?.blockId) {
      throw new RemoteException(
        "IOException",
        `addBlock for ${path}: previous block ${body.previous.blockId} does not belong to the file`,
      );
    }
    const [k, m] = ecShape(file.ecPolicy);
    this.namespace.checkQuota(
      file.parent!,
      0,
      file.ecPolicy ? file.blockSize * (k + m) : file.blockSize * file.replication,
    );
    const targets = this.blockManager.chooseTargets(
      this.blockManager.targetCount(file),
      body.favoredNode,
      [],
      excluded,
    );
    if (file.ecPolicy && targets.length < k + m) {
      throw new RemoteException(
        "IOException",
        `File ${path} with erasure-coding policy ${file.ecPolicy} needs ${k + m} data nodes for a block group; ${targets.length} are available`,
      );
    }
    if (targets.length === 0) {
      throw new RemoteException(
        "IOException",
        `File ${path} could only be written to 0 of the 1 minReplication nodes. There are ${this.blockManager.liveNodes().length} datanode(s) running and ${excluded.size} node(s) are excluded in this operation.`,
      );
    }
    if (body.previous?.locations)
      this.blockManager.acknowledged(file, body.previous.blockId, body.previous.locations);
    // A block group's id is a multiple of 16, leaving room for its internal blocks' ids.
    const blockId = file.ecPolicy
      ? Math.ceil((this.namespace.lastBlockId + 1) / 16) * 16
      : this.namespace.lastBlockId + 1;
    const generationStamp = this.namespace.generationStamp + 1;
    const located: LocatedBlock = {
      block: { blockId, generationStamp, numBytes: 0 },
      // Before the edit is applied: the previous block's length is the one this call commits.
      startOffset:
        startOf(file.blocks.length - 1) + (body.previous ? body.previous.numBytes : (last?.numBytes ?? 0)),
      locations: targets.map(toDatanodeID),
      corrupt: false,
    };
    await this.log(
      {
        op: "ADD_BLOCK",
        path,
        blockId,
        generationStamp,
        previous: body.previous
          ? { blockId: body.previous.blockId, numBytes: body.previous.numBytes }
          : undefined,
      },
      answer(rpc, located),
    );
    return located;
  }

  async abandonBlock(
    body: {
      path: string;
      clientName: string;
      block: ExtendedBlock;
    },
    rpc?: RpcIds,
  ): Promise<boolean> {
    this.requireActive();
    const path = validatePath(body.path);
    this.checkLease(path, body.clientName);
    await this.log({ op: "ABANDON_BLOCK", path, blockId: body.block.blockId }, answer(rpc, true));
    return true;
  }

  async complete(
    body: {
      path: string;
      clientName: string;
      last?: ExtendedBlock & { locations?: (string | null)[] };
    },
    rpc?: RpcIds,
  ): Promise<boolean> {
    this.requireActive();
    const path = validatePath(body.path);
    const file = this.namespace.getFile(path);
    // A retried complete whose first attempt succeeded.
    if (!file.clientName && (!body.last || file.blocks.at(-1)?.blockId === body.last.blockId)) return true;
    this.checkLease(path, body.clientName);
    if (body.last && file.blocks.at(-1)?.blockId !== body.last.blockId) {
      throw new RemoteException(
        "IOException",
        `complete for ${path}: block ${body.last.blockId} is not the file's last block`,
      );
    }
    if (body.last?.locations) this.blockManager.acknowledged(file, body.last.blockId, body.last.locations);
    await this.log(
      {
        op: "CLOSE",
        path,
        mtime: Date.now(),
        last: body.last ? { blockId: body.last.blockId, numBytes: body.last.numBytes } : undefined,
      },
      answer(rpc, true),
    );
    return true;
  }

  getBlockLocations(body: {
    path: string;
    offset?: number;
    length?: number | null;
    clientUuid?: string;
    user?: string;
  }): LocatedBlocks {
    this.requireActive();
    const path = validatePath(body.path);
    const file = this.namespace.getFile(path);
    this.checkAccess(body.user ?? DEFAULT_USER, file, READ);
    const blocks: LocatedBlock[] = [];
    let offset = 0;
    file.blocks.forEach((block, index) => {
      // Only committed blocks are readable: a block still in its pipeline is never served as whole.
      if (block.complete) blocks.push(this.blockManager.locate(file, index, offset, body.clientUuid));
      offset += block.numBytes;
    });
    return { fileLength: this.namespace.visibleLength(file), underConstruction: !!file.clientName, blocks };
  }

  async delete(path: string, recursive: boolean, user: string, rpc?: RpcIds): Promise<boolean> {
    this.requireActive();
    if (path === "/") throw new RemoteException("IOException", "Cannot delete the root directory");
    const node = this.namespace.lookup(path);
    if (!node) return false;
    this.checkRemovable(user, node);
    if (recursive) this.permissions.checkSubtree(user, node, ALL);
    if (node.kind === "DIRECTORY" && node.children.size > 0 && !recursive) {
      throw new RemoteException(
        "PathIsNotEmptyDirectoryException",
        `\`${path} is non empty': Directory is not empty`,
      );
    }
    await this.log({ op: "DELETE", path, mtime: Date.now() }, answer(rpc, true));
    return true;
  }

  async rename(src: string, destination: string, user: string, rpc?: RpcIds): Promise<boolean> {
    this.requireActive();
    const node = this.namespace.lookup(src);
    if (!node || src === "/") return false;
    this.checkRemovable(user, node);
    let dst = destination;
    const target = this.namespace.lookup(dst);
    if (target?.kind === "DIRECTORY") dst = dst === "/" ? `/${node.name}` : `${dst}/${node.name}`;
    else if (target) return false;
    if (dst === src) return true;
    if (dst.startsWith(`${src}/`)) return false;
    if (this.namespace.lookup(dst)) return false;
    const parent = this.namespace.lookup(parentOf(dst));
    if (parent?.kind !== "DIRECTORY") return false;
    this.permissions.checkWriteInto(user, parent);
    const moved = this.namespace.summarize(node);
    this.namespace.checkQuota(parent, moved.directoryCount + moved.fileCount, moved.spaceConsumed);
    await this.log({ op: "RENAME", src, dst, mtime: Date.now() }, answer(rpc, true));
    return true;
  }

  /** HDFS's rename2: `dst` is the exact new path (never "into" a directory); failures throw. */
  async renameWithOptions(
    src: string,
    dst: string,
    user: string,
    overwrite: boolean,
    rpc?: RpcIds,
  ): Promise<void> {
    this.requireActive();
    if (src === "/") throw new RemoteException("IOException", "Rename source cannot be the root");
    const node = this.namespace.lookup(src);
    if (!node) throw new RemoteException("FileNotFoundException", `rename source ${src} is not found.`);
    if (dst === src)
      throw new RemoteException(
        "FileAlreadyExistsException",
        `The source ${src} and destination ${dst} are the same`,
      );
    if (dst.startsWith(`${src}/`))
      throw new RemoteException(
        "IOException",
        `Rename destination ${dst} is a directory or file under source ${src}`,
      );
    this.checkRemovable(user, node);
    const parent = this.namespace.lookup(parentOf(dst));
    if (!parent)
      throw new RemoteException(
        "FileNotFoundException",
        `rename destination parent ${parentOf(dst)} not found.`,
      );
    if (parent.kind !== "DIRECTORY")
      throw new RemoteException(
        "ParentNotDirectoryException",
        `rename destination parent ${parentOf(dst)} is a file.`,
      );
    this.permissions.checkWriteInto(user, parent);
    const target = parent.children.get(nameOf(dst));
    if (target) {
      if (!overwrite)
        throw new RemoteException("FileAlreadyExistsException", `rename destination ${dst} already exists.`);
      if (target.kind !== node.kind)
        throw new RemoteException(
          "IOException",
          `Source ${src} and destination ${dst} must both be ${node.kind === "DIRECTORY" ? "directories" : "files"}`,
        );
      if (target.kind === "DIRECTORY" && target.children.size > 0)
        throw new RemoteException("IOException", `rename destination directory is not empty: ${dst}`);
      this.checkRemovable(user, target);
    }
    const moved = this.namespace.summarize(node);
    this.namespace.checkQuota(parent, moved.directoryCount + moved.fileCount, moved.spaceConsumed);
    const mtime = Date.now();
    // Both logged (and applied) in this turn, so nothing can change the tree between them.
    await Promise.all([
      target ? this.log({ op: "DELETE", path: dst, mtime }) : undefined,
      this.log({ op: "RENAME", src, dst, mtime }, answer(rpc, null)),
    ]);
  }

  /** `access` on the inode itself and EXECUTE on every directory above it. */
  checkAccess(user: string, node: INode, access: number): void {
    this.permissions.checkTraverse(user, node);
    this.permissions.check(user, node, access);
  }

  /** Deleting or renaming an entry changes its parent: WRITE there, and the sticky bit's owner rule. */
  checkRemovable(user: string, node: INode): void {
    const parent = node.parent!;
    this.permissions.checkWriteInto(user, parent);
    this.permissions.checkStickyBit(user, parent, node);
  }

  /**
   * The deepest existing inode on the way to `path` and how many of its components it covers:
   * where a create or mkdirs adds entries (a file there means the path goes through a file).
   */
  nearestExisting(path: string): { node: INode; depth: number } {
    let node: INode = this.namespace.root;
    let depth = 0;
    for (const name of components(path)) {
      const child: INode | undefined = node.kind === "DIRECTORY" ? node.children.get(name) : undefined;
      if (!child) break;
      node = child;
      depth++;
    }
    return { node, depth };
  }

  fileStatus(node: INode, pathSuffix: string) {
    const file = node.kind === "FILE" ? node : undefined;
    return {
      accessTime: file ? node.atime : 0,
      blockSize: file?.blockSize ?? 0,
      childrenNum: node.kind === "DIRECTORY" ? node.children.size : 0,
      fileId: node.id,
      group: node.group,
      length: file ? this.namespace.visibleLength(file) : 0,
      modificationTime: node.mtime,
      owner: node.owner,
      pathSuffix,
      permission: node.permission.toString(8),
      replication: file?.replication ?? 0,
      storagePolicy: 0,
      type: node.kind,
    };
  }

  lookupOrThrow(path: string): INode {
    const node = this.namespace.lookup(path);
    if (!node) throw fileNotFound(path);
    return node;
  }

  listing(path: string) {
    const node = this.lookupOrThrow(path);
    if (node.kind === "FILE") return [this.fileStatus(node, "")];
    return [...node.children.values()]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((child) => this.fileStatus(child, child.name));
  }

  contentSummary(path: string) {
    const node = this.lookupOrThrow(path);
    const summary = this.namespace.summarize(node);
    return {
      ...summary,
      quota: node.kind === "DIRECTORY" ? node.nsQuota : -1,
      spaceQuota: node.kind === "DIRECTORY" ? node.dsQuota : -1,
    };
  }

  async setQuota(path: string, nsQuota: number, dsQuota: number): Promise<void> {
    this.requireActive();
    const node = this.lookupOrThrow(path);
    if (node.kind !== "DIRECTORY")
      throw new RemoteException("FileNotFoundException", `Directory does not exist: ${path}`);
    await this.log({ op: "SET_QUOTA", path, nsQuota, dsQuota });
  }

  policiesInForce(): { path: string; policy: string }[] {
    return [...this.namespace.ecDirectories]
      .map((dir) => ({ path: this.namespace.pathOf(dir), policy: dir.ecPolicy! }))
      .sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  /**
   * The figures BlockPool status shows. Like HDFS, a decommissioning node is live (it still
   * serves reads and copies) and a decommissioned one is not counted live, so liveDataNodes +
   * decommissionedDataNodes + deadDataNodes is every node known. Capacity and used are the
   * in-service nodes' only: what new data can be written to, shrinking as soon as a
   * decommission starts rather than when the pod goes.
   */
  status() {
    const nodes = this.blockManager.report();
    const inService = nodes.filter(isInService);
    const decommissioning = nodes.filter((node) => node.adminState === "DECOMMISSION_INPROGRESS");
    // Kept by every edit (Namespace.counts): no walk of the tree per call.
    const { directories, files, bytes } = this.namespace.counts;
    return {
      haState: this.haState,
      txid: this.lastAppliedTxid,
      liveDataNodes: inService.length + decommissioning.length,
      deadDataNodes: nodes.filter((node) => node.adminState === "DEAD").length,
      staleDataNodes: nodes.filter((node) => node.stale).length,
      decommissioningDataNodes: decommissioning.length,
      decommissionedDataNodes: nodes.filter((node) => node.adminState === "DECOMMISSIONED").length,
      capacity: inService.reduce((sum, node) => sum + node.capacity, 0),
      used: inService.reduce((sum, node) => sum + node.dfsUsed, 0),
      /** Files and directories, as BlockPool status shows them. */
      files: files + directories,
      directories,
      bytes,
      blocks: this.namespace.blocks.size,
      erasureCodingPolicies: this.policiesInForce(),
      ...this.blockManager.stats,
      datanodes: nodes,
    };
  }
}

export function parseMode(value: string | undefined, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  if (!/^[0-1]?[0-7]{3}$/.test(value))
    throw illegalArgument(`Invalid value for webhdfs parameter "permission": ${value} is not an octal mode`);
  return Number.parseInt(value, 8);
}
