/**
 * The name node: the namespace and its edit log, block management, leases, HA (active or
 * standby, by the fencing epoch on the shared edit-log volume), the client and data-node RPC
 * (JSON over HTTP on the RPC port) and the WebHDFS REST API (on the HTTP port).
 */
import { once } from "node:events";
import { mkdir } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Registry } from "prom-client";
import type { Logger } from "../../../log.js";
import { checkSignature } from "../clusterAuth.js";
import { BYTES_PER_CHECKSUM } from "../crc32c.js";
import { erasureCodingPolicy } from "../erasure/index.js";
import { components, nameOf, parentOf, validatePath } from "../path.js";
import {
  type DatanodeID,
  type ExtendedBlock,
  fileNotFound,
  type HeartbeatRequest,
  type HeartbeatResponse,
  illegalArgument,
  isTrue,
  type LocatedBlock,
  type LocatedBlocks,
  RemoteException,
  readRequestBody,
  sendError,
  sendJson,
  xferAddress,
} from "../protocol.js";
import { BlockManager, isInService, toDatanodeID } from "./blockManager.js";
import { EditLog, type EditRecord, FencedException, GapError } from "./editLog.js";
import { parseDecommissionRequest } from "./hosts.js";
import { type EditOp, ecShape, type INode, type INodeFile, Namespace } from "./namespace.js";
import { ALL, EXECUTE, PermissionChecker, READ, WRITE } from "./permissions.js";
import { TopologyTable } from "./topology.js";

export interface NameNodeConfig {
  /** The pool's cluster secret: data nodes and administrators sign their calls with it (clusterAuth.ts). */
  clusterSecret?: Buffer | undefined;
  host: string;
  /** The address clients and data nodes are told about (redirects name data nodes, not this). */
  advertisedHost: string;
  rpcPort: number;
  httpPort: number;
  /** The edit-log volume; shared by the active and the standby. */
  nameDir: string;
  replication: number;
  blockSize: number;
  /**
   * The largest block size a writer may choose on CREATE (the pool's own blockSize is always
   * allowed). A writer keeps the block in flight in memory until its pipeline acknowledges it,
   * so this bounds what one WebHDFS write costs a data node. HDFS streams packets and has no
   * such limit; its dfs.namenode.fs-limits.min-block-size (1 MiB) is the lower bound here.
   */
  maxBlockSize: number;
  heartbeatExpiryMs: number;
  /** HDFS's dfs.namenode.stale.datanode.interval (default: a third of the heartbeat expiry). */
  staleIntervalMs?: number | undefined;
  /** The standby takes over when the active's epoch has not been renewed for this long. */
  takeoverTimeoutMs: number;
  /** How often the standby tails the edit log and the active renews its epoch. */
  tailIntervalMs: number;
  replicationIntervalMs: number;
  /** An under-construction file whose writer stopped renewing is closed after this (HDFS's lease hard limit). */
  leaseHardLimitMs: number;
  checkpointTxns: number;
  checkpointPeriodMs: number;
  /** Directories with an erasure-coding policy, from the BlockPool spec; applied on becoming active. */
  erasureCoding?: { path: string; policy: string }[];
  /** Directory quotas from the BlockPool spec (-1: none); applied on becoming active. */
  quotas?: { path: string; bytes: number; files: number }[];
  /** HDFS's dfs.permissions.enabled (default true). */
  permissionsEnabled?: boolean;
  /** Users who pass every permission check (default: hdfs, the name node's own user). */
  superusers?: string[];
  /** HDFS's net.topology.table.file.name: a `<host> <rack>` file overriding the racks data nodes report. */
  topologyTable?: string | undefined;
}

/** How often the topology table's file is checked for changes (HDFS reads it once; pods want updates). */
const TOPOLOGY_TABLE_CHECK_MS = 3_000;

type HaState = "active" | "standby" | "stopped";

/** WebHDFS's user when a request names none (HDFS's hadoop.http.staticuser.user). */
const DEFAULT_USER = "dr.who";
/** HDFS's dfs.ls.limit: the most entries one LISTSTATUS_BATCH answer carries. */
const LISTING_LIMIT = 1000;
/** DataChecksum.Type.CRC32C's id, as FsServerDefaults carries it. */
const CHECKSUM_TYPE_CRC32C = 2;
/** HDFS's default block storage policy (HOT: every replica on DISK). */
const HOT_STORAGE_POLICY_ID = 7;
/** Directories the spec declares (coded, quota'd) are shared like /tmp: anyone writes, owners delete. */
const SHARED_DIRECTORY_MODE = 0o1777;
/** HDFS's dfs.namenode.fs-limits.min-block-size. */
const MIN_BLOCK_SIZE = 1024 * 1024;

/**
 * HDFS's DatanodeProtocol: only data nodes of the pool call these, signed with the cluster
 * secret; the other RPCs are the client protocol, open like WebHDFS.
 */
const DATANODE_RPCS = new Set(["sendHeartbeat", "blockReport", "blockReceivedAndDeleted", "reportBadBlocks"]);

/**
 * The most a `/rpc` call may send, read before it is parsed. A full block report (and the
 * deletions that follow a report's stale replicas) lists every replica of a data node: HDFS's
 * ipc.maximum.data.length (64 MB) bounds those. Every other call names a path, a block or a few
 * nodes, and gets 1 MiB.
 */
const BULK_RPC_BODY_LIMIT = 64 * 1024 * 1024;
const RPC_BODY_LIMIT = 1024 * 1024;
const BULK_RPCS = new Set(["blockReport", "blockReceivedAndDeleted", "reportBadBlocks"]);

class NameNodeMetrics {
  readonly registry = new Registry();
  readonly transactions = new Counter({
    name: "tributary_namenode_transactions_total",
    help: "Edit-log transactions written by this name node",
    registers: [this.registry],
  });
  readonly syncs = new Gauge({
    name: "tributary_namenode_edit_log_syncs",
    help: "fdatasyncs of the edit log (group commit: fewer than transactions)",
    registers: [this.registry],
  });
  readonly files = new Gauge({
    name: "tributary_namenode_files",
    help: "Files and directories",
    registers: [this.registry],
  });
  readonly blocks = new Gauge({
    name: "tributary_namenode_blocks",
    help: "Blocks in the namespace",
    registers: [this.registry],
  });
  readonly underReplicatedBlocks = new Gauge({
    name: "tributary_namenode_under_replicated_blocks",
    help: "Blocks with fewer live good replicas than their replication",
    registers: [this.registry],
  });
  readonly missingBlocks = new Gauge({
    name: "tributary_namenode_missing_blocks",
    help: "Blocks with no live good replica",
    registers: [this.registry],
  });
  readonly corruptReplicas = new Gauge({
    name: "tributary_namenode_corrupt_replicas",
    help: "Replicas reported corrupt and not yet replaced",
    registers: [this.registry],
  });
  readonly liveDataNodes = new Gauge({
    name: "tributary_namenode_live_datanodes",
    help: "Data nodes heard from within the expiry, in service or decommissioning",
    registers: [this.registry],
  });
  readonly deadDataNodes = new Gauge({
    name: "tributary_namenode_dead_datanodes",
    help: "Data nodes silent past the expiry",
    registers: [this.registry],
  });
  readonly staleDataNodes = new Gauge({
    name: "tributary_namenode_stale_datanodes",
    help: "Live data nodes silent past the stale interval: read from and written to only when no fresh node will do",
    registers: [this.registry],
  });
  readonly capacity = new Gauge({
    name: "tributary_namenode_capacity_bytes",
    help: "Capacity of in-service data nodes (not decommissioning or decommissioned ones)",
    registers: [this.registry],
  });
  readonly used = new Gauge({
    name: "tributary_namenode_used_bytes",
    help: "Bytes of replicas on in-service data nodes",
    registers: [this.registry],
  });
  readonly decommissioningDataNodes = new Gauge({
    name: "tributary_namenode_decommissioning_datanodes",
    help: "Live data nodes whose blocks are being copied elsewhere before they leave",
    registers: [this.registry],
  });
  readonly decommissionedDataNodes = new Gauge({
    name: "tributary_namenode_decommissioned_datanodes",
    help: "Live data nodes whose blocks all have enough replicas elsewhere: safe to remove",
    registers: [this.registry],
  });
  readonly active = new Gauge({
    name: "tributary_namenode_active",
    help: "1 on the active name node, 0 on the standby",
    registers: [this.registry],
  });
}

export class NameNode {
  namespace = new Namespace();
  readonly blockManager: BlockManager;
  readonly editLog: EditLog;
  readonly metrics = new NameNodeMetrics();
  haState: HaState = "standby";
  lastAppliedTxid = 0;
  rpcPort = 0;
  httpPort = 0;
  private readonly servers: Server[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly leaseRenewed = new Map<string, number>();
  private lastCheckpointTxid = 0;
  private lastCheckpointAt = Date.now();
  private haBusy = false;
  private readonly topology: TopologyTable | undefined;
  private readonly permissions: PermissionChecker;

  constructor(
    readonly config: NameNodeConfig,
    private readonly logger: Logger,
  ) {
    this.permissions = new PermissionChecker(
      { enabled: config.permissionsEnabled ?? true, superusers: config.superusers ?? ["hdfs"] },
      (node) => this.namespace.pathOf(node),
    );
    this.editLog = new EditLog(config.nameDir);
    this.topology = config.topologyTable ? new TopologyTable(config.topologyTable, logger) : undefined;
    this.blockManager = new BlockManager(this.namespace, {
      heartbeatExpiryMs: config.heartbeatExpiryMs,
      staleIntervalMs: config.staleIntervalMs,
      pendingReplicationTimeoutMs: Math.max(10_000, config.heartbeatExpiryMs),
      rackOf: (node) => this.topology?.rackOf(node),
      logger,
    });
  }

  async start(): Promise<void> {
    await mkdir(this.config.nameDir, { recursive: true });
    await this.loadFromDisk();
    // Racks before the first heartbeat, so the first placements already spread across them.
    await this.topology?.refresh();
    this.rpcPort = await this.listen(this.config.rpcPort);
    this.httpPort = await this.listen(this.config.httpPort);
    await this.haTick();
    this.logger.info(
      { rpcPort: this.rpcPort, httpPort: this.httpPort, haState: this.haState, txid: this.lastAppliedTxid },
      "name node started",
    );
    if (!this.config.clusterSecret)
      this.logger.warn(
        "no cluster secret (TRIBUTARY_CLUSTER_SECRET_FILE or TRIBUTARY_CLUSTER_SECRET): any host that reaches this name node can register as a data node and use /admin; set one outside local development",
      );
    this.timers.push(
      setInterval(() => void this.haTick(), this.config.tailIntervalMs),
      setInterval(() => {
        if (this.haState === "active") {
          this.blockManager.computeReplicationWork();
          this.checkLeases();
          this.maybeCheckpoint();
        }
      }, this.config.replicationIntervalMs),
    );
    if (this.topology) {
      const topology = this.topology;
      this.timers.push(setInterval(() => void topology.refresh(), TOPOLOGY_TABLE_CHECK_MS));
    }
  }

  async close(): Promise<void> {
    const wasActive = this.haState === "active";
    this.haState = "stopped";
    for (const timer of this.timers) clearInterval(timer);
    await Promise.all(
      this.servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeIdleConnections();
            setTimeout(() => server.closeAllConnections(), 5_000).unref();
          }),
      ),
    );
    if (wasActive) await this.editLog.release();
    else await this.editLog.close();
  }

  private async listen(port: number): Promise<number> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((error) => sendError(res, error));
    });
    server.keepAliveTimeout = 5_000;
    server.listen(port, this.config.host);
    await once(server, "listening");
    this.servers.push(server);
    return (server.address() as AddressInfo).port;
  }

  // ---- state: load, tail, failover ------------------------------------------------------------

  private wireNamespace(namespace: Namespace): void {
    this.namespace = namespace;
    namespace.onBlocksRemoved = (blocks) => this.blockManager.removeBlocks(blocks);
    this.blockManager.setNamespace(namespace);
  }

  private async loadFromDisk(): Promise<void> {
    const latest = await this.editLog.latestImage();
    this.wireNamespace(latest ? Namespace.fromImage(latest.image) : new Namespace());
    this.lastAppliedTxid = latest?.txid ?? 0;
    this.lastCheckpointTxid = this.lastAppliedTxid;
    await this.tail();
  }

  private async tail(): Promise<void> {
    let records: EditRecord[];
    try {
      records = await this.editLog.readAfter(this.lastAppliedTxid);
    } catch (error) {
      if (!(error instanceof GapError)) throw error;
      // A checkpoint removed segments this standby had not read yet: start over from the image.
      this.logger.info(
        { txid: this.lastAppliedTxid },
        "edit log moved past this name node: reloading from the newest image",
      );
      const latest = await this.editLog.latestImage();
      if (!latest) throw error;
      this.wireNamespace(Namespace.fromImage(latest.image));
      this.lastAppliedTxid = latest.txid;
      records = await this.editLog.readAfter(this.lastAppliedTxid);
    }
    for (const record of records) {
      this.namespace.apply(record);
      this.lastAppliedTxid = record.txid;
    }
  }

  private async haTick(): Promise<void> {
    if (this.haBusy || this.haState === "stopped") return;
    this.haBusy = true;
    try {
      if (this.haState === "active") {
        await this.editLog.renew();
        if (this.editLog.isFenced) await this.stepDown("a newer epoch exists");
        return;
      }
      await this.tail();
      const writer = await this.editLog.writerState();
      if (writer.silentForMs <= this.config.takeoverTimeoutMs) return;
      const epoch = await this.editLog.claimEpoch(writer.epoch);
      if (epoch === undefined) return;
      // Everything the previous active acknowledged is durable before our claim: read it all.
      await this.tail();
      await this.editLog.startWriting(epoch, this.lastAppliedTxid + 1);
      const now = Date.now();
      for (const client of this.namespace.leases.keys()) this.leaseRenewed.set(client, now);
      this.haState = "active";
      this.applySpec().catch((error) =>
        this.logger.error(
          { error: (error as Error).message },
          "could not apply the pool's erasure-coding policies and quotas",
        ),
      );
      this.logger.info(
        { epoch, txid: this.lastAppliedTxid, previousEpoch: writer.epoch },
        "transitioned to active",
      );
    } catch (error) {
      this.logger.error({ error: (error as Error).message }, "HA state check failed");
    } finally {
      this.haBusy = false;
    }
  }

  /** Level-based: makes the spec's directories carry its policies and quotas, changing only what differs. */
  private async applySpec(): Promise<void> {
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

  private async stepDown(reason: string): Promise<void> {
    if (this.haState !== "active") return;
    this.logger.warn(
      { reason, epoch: this.editLog.writerEpoch },
      "fenced: transitioning to standby and reloading the namespace from the edit log",
    );
    this.haState = "standby";
    await this.editLog.close();
    await this.loadFromDisk();
  }

  /** Applies `op` and makes it durable; the caller's answer waits for the (shared) sync. */
  private async log(op: EditOp): Promise<void> {
    this.requireActive();
    const txid = this.lastAppliedTxid + 1;
    this.namespace.apply(op);
    this.lastAppliedTxid = txid;
    this.metrics.transactions.inc();
    try {
      await this.editLog.append({ ...op, txid, epoch: this.editLog.writerEpoch });
    } catch (error) {
      if (error instanceof FencedException) {
        this.stepDown("edit refused: a newer epoch exists").catch((stepDownError) =>
          this.logger.error(
            { error: (stepDownError as Error).message },
            "could not reload after being fenced",
          ),
        );
        throw new RemoteException("StandbyException", `Operation not acknowledged: ${error.message}`);
      }
      throw error;
    }
  }

  private requireActive(): void {
    if (this.haState !== "active") {
      throw new RemoteException(
        "StandbyException",
        `Operation category WRITE is not supported in state ${this.haState}`,
      );
    }
  }

  private maybeCheckpoint(): void {
    const txns = this.lastAppliedTxid - this.lastCheckpointTxid;
    if (txns === 0) return;
    if (
      txns < this.config.checkpointTxns &&
      Date.now() - this.lastCheckpointAt < this.config.checkpointPeriodMs
    )
      return;
    const txid = this.lastAppliedTxid;
    const image = this.namespace.toImage();
    this.lastCheckpointTxid = txid;
    this.lastCheckpointAt = Date.now();
    this.editLog.checkpoint(txid, image).then(
      () => this.logger.info({ txid }, "checkpoint written"),
      (error) => this.logger.warn({ txid, error: (error as Error).message }, "checkpoint failed"),
    );
  }

  private checkLeases(): void {
    const now = Date.now();
    for (const [client, files] of this.namespace.leases) {
      const renewed = this.leaseRenewed.get(client) ?? now;
      if (!this.leaseRenewed.has(client)) this.leaseRenewed.set(client, now);
      if (now - renewed <= this.config.leaseHardLimitMs) continue;
      this.leaseRenewed.delete(client);
      for (const file of [...files]) {
        const path = this.namespace.pathOf(file);
        this.logger.info({ path, client }, "lease expired: closing the file with its complete blocks");
        this.log({ op: "CLOSE", path, mtime: now, dropIncomplete: true }).catch((error) =>
          this.logger.warn({ path, error: (error as Error).message }, "lease recovery failed"),
        );
      }
    }
  }

  // ---- client protocol ----------------------------------------------------------------------

  private async mkdirs(path: string, owner: string, permission: number): Promise<boolean> {
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
      missing.map((dir) => this.log({ op: "MKDIR", path: dir, owner, group: at.group, permission, mtime })),
    );
    return true;
  }

  private async create(body: {
    path: string;
    clientName: string;
    owner?: string;
    permission?: string;
    overwrite?: boolean;
    replication?: number;
    blockSize?: number;
  }): Promise<{ blockSize: number; replication: number; ecPolicy?: string | undefined }> {
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
    await this.log({
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
    });
    this.leaseRenewed.set(body.clientName, Date.now());
    return { blockSize, replication, ecPolicy };
  }

  /** See NameNodeConfig.maxBlockSize: the pool's own block size is allowed whatever the maximum. */
  private checkBlockSize(blockSize: number): void {
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

  private async append(body: {
    path: string;
    clientName: string;
    user?: string;
  }): Promise<{ blockSize: number; replication: number; ecPolicy?: string | undefined }> {
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
    await this.log({ op: "APPEND", path, clientName: body.clientName, mtime: Date.now() });
    this.leaseRenewed.set(body.clientName, Date.now());
    return { blockSize: file.blockSize, replication: file.replication, ecPolicy: file.ecPolicy };
  }

  private checkLease(path: string, clientName: string): INodeFile {
    const file = this.namespace.getFile(path);
    if (file.clientName !== clientName) {
      throw new RemoteException(
        "LeaseExpiredException",
        file.clientName
          ? `Lease mismatch on ${path}: owned by ${file.clientName} but is accessed by ${clientName}`
          : `No lease on ${path}: File is not open for writing. Holder ${clientName} does not have any open files.`,
      );
    }
    this.leaseRenewed.set(clientName, Date.now());
    return file;
  }

  private locate(file: INodeFile, index: number, startOffset: number, clientUuid?: string): LocatedBlock {
    const block = file.blocks[index]!;
    if (file.ecPolicy) {
      const [k, m] = ecShape(file.ecPolicy);
      const internal = Array.from({ length: k + m }, (_, i) => {
        const node = this.blockManager.goodReplicas(block.blockId + i)[0];
        return node ? toDatanodeID(node) : null;
      });
      return {
        block: { blockId: block.blockId, generationStamp: block.generationStamp, numBytes: block.numBytes },
        startOffset,
        locations: internal.filter((node): node is DatanodeID => node !== null),
        corrupt: false,
        ecPolicy: file.ecPolicy,
        internal,
      };
    }
    const replicas = this.blockManager.goodReplicas(block.blockId);
    replicas.sort((a, b) => Number(b.datanodeUuid === clientUuid) - Number(a.datanodeUuid === clientUuid));
    return {
      block: { blockId: block.blockId, generationStamp: block.generationStamp, numBytes: block.numBytes },
      startOffset,
      locations: replicas.map(toDatanodeID),
      corrupt: false,
    };
  }

  private targetCount(file: INodeFile): number {
    const [k, m] = ecShape(file.ecPolicy);
    return file.ecPolicy ? k + m : file.replication;
  }

  /** Replicas (or a group's internal blocks, in index order; null where one was lost) the write acknowledged. */
  private acknowledged(file: INodeFile, blockId: number, locations: (string | null)[]): void {
    const acked = (uuid: string | null): uuid is string => typeof uuid === "string";
    if (!file.ecPolicy) {
      this.blockManager.pipelineAcknowledged(blockId, locations.filter(acked));
      return;
    }
    locations.forEach((uuid, i) => {
      if (acked(uuid)) this.blockManager.pipelineAcknowledged(blockId + i, [uuid]);
    });
  }

  /** The nearest ancestor's erasure-coding policy (HDFS's policies are inherited). */
  private ecPolicyFor(path: string): string | undefined {
    for (let at = this.namespace.lookup(path); at; at = at.parent) {
      if (at.kind === "DIRECTORY" && at.ecPolicy) return at.ecPolicy;
    }
    return undefined;
  }

  private async addBlock(body: {
    path: string;
    clientName: string;
    previous?: ExtendedBlock & { locations?: (string | null)[] };
    favoredNode?: string;
    /** Nodes that failed in the writer's pipelines (HDFS's excludeNodes): not chosen again. */
    excludeNodes?: string[];
  }): Promise<LocatedBlock> {
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
          this.targetCount(file),
          body.favoredNode,
          [],
          excluded,
        );
        return {
          ...this.locate(file, file.blocks.length - 1, startOf(file.blocks.length - 1)),
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
    const targets = this.blockManager.chooseTargets(this.targetCount(file), body.favoredNode, [], excluded);
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
    if (body.previous?.locations) this.acknowledged(file, body.previous.blockId, body.previous.locations);
    // A block group's id is a multiple of 16, leaving room for its internal blocks' ids.
    const blockId = file.ecPolicy
      ? Math.ceil((this.namespace.lastBlockId + 1) / 16) * 16
      : this.namespace.lastBlockId + 1;
    const generationStamp = this.namespace.generationStamp + 1;
    await this.log({
      op: "ADD_BLOCK",
      path,
      blockId,
      generationStamp,
      previous: body.previous
        ? { blockId: body.previous.blockId, numBytes: body.previous.numBytes }
        : undefined,
    });
    return {
      block: { blockId, generationStamp, numBytes: 0 },
      startOffset: startOf(file.blocks.length - 1),
      locations: targets.map(toDatanodeID),
      corrupt: false,
    };
  }

  private async abandonBlock(body: {
    path: string;
    clientName: string;
    block: ExtendedBlock;
  }): Promise<boolean> {
    this.requireActive();
    const path = validatePath(body.path);
    this.checkLease(path, body.clientName);
    await this.log({ op: "ABANDON_BLOCK", path, blockId: body.block.blockId });
    return true;
  }

  private async complete(body: {
    path: string;
    clientName: string;
    last?: ExtendedBlock & { locations?: string[] };
  }): Promise<boolean> {
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
    if (body.last?.locations) this.acknowledged(file, body.last.blockId, body.last.locations);
    await this.log({
      op: "CLOSE",
      path,
      mtime: Date.now(),
      last: body.last ? { blockId: body.last.blockId, numBytes: body.last.numBytes } : undefined,
    });
    return true;
  }

  private getBlockLocations(body: {
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
      if (block.complete) blocks.push(this.locate(file, index, offset, body.clientUuid));
      offset += block.numBytes;
    });
    return { fileLength: this.namespace.visibleLength(file), underConstruction: !!file.clientName, blocks };
  }

  private async delete(path: string, recursive: boolean, user: string): Promise<boolean> {
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
    await this.log({ op: "DELETE", path, mtime: Date.now() });
    return true;
  }

  private async rename(src: string, destination: string, user: string): Promise<boolean> {
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
    await this.log({ op: "RENAME", src, dst, mtime: Date.now() });
    return true;
  }

  /** HDFS's rename2: `dst` is the exact new path (never "into" a directory); failures throw. */
  private async renameWithOptions(src: string, dst: string, user: string, overwrite: boolean): Promise<void> {
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
    if (target) await this.log({ op: "DELETE", path: dst, mtime });
    await this.log({ op: "RENAME", src, dst, mtime });
  }

  /** `access` on the inode itself and EXECUTE on every directory above it. */
  private checkAccess(user: string, node: INode, access: number): void {
    this.permissions.checkTraverse(user, node);
    this.permissions.check(user, node, access);
  }

  /** Deleting or renaming an entry changes its parent: WRITE there, and the sticky bit's owner rule. */
  private checkRemovable(user: string, node: INode): void {
    const parent = node.parent!;
    this.permissions.checkWriteInto(user, parent);
    this.permissions.checkStickyBit(user, parent, node);
  }

  /**
   * The deepest existing inode on the way to `path` and how many of its components it covers:
   * where a create or mkdirs adds entries (a file there means the path goes through a file).
   */
  private nearestExisting(path: string): { node: INode; depth: number } {
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

  /** WebHDFS's BlockLocation objects for the committed blocks of `file` overlapping [start, end). */
  private blockLocations(file: INodeFile, start: number, end: number) {
    const [k, m] = ecShape(file.ecPolicy);
    const locations = [];
    let offset = 0;
    for (const block of file.blocks) {
      const blockStart = offset;
      offset += block.numBytes;
      if (!block.complete || offset <= start || blockStart >= end) continue;
      // A block group's hosts are its internal blocks' holders, in index order.
      const holders = file.ecPolicy
        ? Array.from(
            { length: k + m },
            (_, i) => this.blockManager.goodReplicas(block.blockId + i)[0],
          ).filter((node) => node !== undefined)
        : this.blockManager.goodReplicas(block.blockId);
      const names = holders.map((node) => `${node.hostName}:${node.xferPort}`);
      locations.push({
        offset: blockStart,
        length: block.numBytes,
        corrupt: false,
        hosts: holders.map((node) => node.hostName),
        names,
        topologyPaths: holders.map((node, i) => `${node.networkLocation}/${names[i]}`),
        storageTypes: holders.map(() => "DISK"),
        storageIds: holders.map((node) => `DS-${node.datanodeUuid}`),
        cachedHosts: [],
      });
    }
    return locations;
  }

  private lookupOrThrow(path: string): INode {
    const node = this.namespace.lookup(path);
    if (!node) throw fileNotFound(path);
    return node;
  }

  private listing(path: string) {
    const node = this.lookupOrThrow(path);
    if (node.kind === "FILE") return [this.fileStatus(node, "")];
    return [...node.children.values()]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((child) => this.fileStatus(child, child.name));
  }

  private contentSummary(path: string) {
    const node = this.lookupOrThrow(path);
    const summary = this.namespace.summarize(node);
    return {
      ...summary,
      quota: node.kind === "DIRECTORY" ? node.nsQuota : -1,
      spaceQuota: node.kind === "DIRECTORY" ? node.dsQuota : -1,
    };
  }

  private async setQuota(path: string, nsQuota: number, dsQuota: number): Promise<void> {
    this.requireActive();
    const node = this.lookupOrThrow(path);
    if (node.kind !== "DIRECTORY")
      throw new RemoteException("FileNotFoundException", `Directory does not exist: ${path}`);
    await this.log({ op: "SET_QUOTA", path, nsQuota, dsQuota });
  }

  private policiesInForce(): { path: string; policy: string }[] {
    const out: { path: string; policy: string }[] = [];
    const visit = (node: INode) => {
      if (node.kind !== "DIRECTORY") return;
      if (node.ecPolicy) out.push({ path: this.namespace.pathOf(node), policy: node.ecPolicy });
      for (const child of node.children.values()) visit(child);
    };
    visit(this.namespace.root);
    return out;
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
    let files = 0;
    const count = (node: INode) => {
      files++;
      if (node.kind === "DIRECTORY") for (const child of node.children.values()) count(child);
    };
    count(this.namespace.root);
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
      files,
      blocks: this.namespace.blocks.size,
      erasureCodingPolicies: this.policiesInForce(),
      ...this.blockManager.stats,
      datanodes: nodes,
    };
  }

  // ---- HTTP ---------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = req.url ?? "/";
    const query = raw.indexOf("?");
    const pathname = query < 0 ? raw : raw.slice(0, query);
    const params = new URLSearchParams(query < 0 ? "" : raw.slice(query + 1));
    if (pathname.startsWith("/rpc/") && req.method === "POST") {
      const method = pathname.slice(5);
      // Before the body is read: an unsigned caller costs no more than its headers.
      if (DATANODE_RPCS.has(method))
        checkSignature(this.config.clusterSecret, req.method, pathname, req.headers);
      const limit = BULK_RPCS.has(method) ? BULK_RPC_BODY_LIMIT : RPC_BODY_LIMIT;
      const text = await readRequestBody(req, limit, `RPC ${method}`);
      let body: unknown;
      try {
        body = JSON.parse(text.toString("utf8") || "{}");
      } catch {
        throw illegalArgument(`the body of ${pathname} is not JSON`);
      }
      return sendJson(res, 200, (await this.rpc(method, body)) ?? null);
    }
    if (pathname === "/webhdfs/v1" || pathname.startsWith("/webhdfs/v1/"))
      return this.webhdfs(req, res, pathname, params);
    if (pathname === "/healthz") return sendJson(res, 200, { status: "ok", haState: this.haState });
    // Only the active is ready: the client Service sends traffic to it alone.
    if (pathname === "/readyz")
      return sendJson(res, this.haState === "active" ? 200 : 503, { haState: this.haState });
    if (pathname === "/status") return sendJson(res, 200, this.status());
    if (pathname.startsWith("/admin/"))
      checkSignature(this.config.clusterSecret, req.method, pathname, req.headers);
    if (pathname === "/admin/decommission" && req.method === "PUT") return this.decommission(req, res);
    if (pathname === "/metrics") {
      const status = this.status();
      this.metrics.files.set(status.files);
      this.metrics.blocks.set(status.blocks);
      this.metrics.underReplicatedBlocks.set(status.underReplicatedBlocks);
      this.metrics.missingBlocks.set(status.missingBlocks);
      this.metrics.corruptReplicas.set(status.corruptReplicas);
      this.metrics.liveDataNodes.set(status.liveDataNodes);
      this.metrics.deadDataNodes.set(status.deadDataNodes);
      this.metrics.staleDataNodes.set(status.staleDataNodes);
      this.metrics.decommissioningDataNodes.set(status.decommissioningDataNodes);
      this.metrics.decommissionedDataNodes.set(status.decommissionedDataNodes);
      this.metrics.capacity.set(status.capacity);
      this.metrics.used.set(status.used);
      this.metrics.active.set(this.haState === "active" ? 1 : 0);
      this.metrics.syncs.set(this.editLog.syncs);
      const text = await this.metrics.registry.metrics();
      res.writeHead(200, { "content-type": this.metrics.registry.contentType });
      res.end(text);
      return;
    }
    throw new RemoteException(
      "UnsupportedOperationException",
      `${req.method} ${pathname} is not served by the name node`,
    );
  }

  /**
   * `PUT /admin/decommission` with `{"hosts": [...]}`: replaces the decommission set (HDFS's
   * exclude file plus `dfsadmin -refreshNodes`) and answers the nodes it matched with their
   * admin state. Only the active decides; the operator sets it again after a failover.
   */
  private async decommission(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Not a WebHDFS operation: the standby answers 503 as /readyz does (the operator then asks
    // the other name node), with the StandbyException body every other refusal carries.
    if (this.haState !== "active")
      throw new RemoteException(
        "StandbyException",
        `Operation category WRITE is not supported in state ${this.haState}`,
        undefined,
        503,
      );
    const hosts = parseDecommissionRequest(await readRequestBody(req, 1024 * 1024, "decommission request"));
    const matched = this.blockManager.setDecommissionSet(hosts);
    this.logger.info(
      { hosts, matched: matched.map((node) => `${node.hostName}:${node.xferPort}`) },
      "decommission set replaced",
    );
    sendJson(res, 200, {
      datanodes: matched.map(({ hostName, xferPort, datanodeUuid, adminState }) => ({
        hostName,
        xferPort,
        datanodeUuid,
        adminState,
      })),
    });
  }

  /** The block-transfer addresses of the data nodes this name node knows and has not declared dead. */
  private registeredXferAddresses(): string[] {
    return this.blockManager
      .report()
      .filter((node) => node.adminState !== "DEAD")
      .map(xferAddress);
  }

  // biome-ignore lint/suspicious/noExplicitAny: RPC bodies are JSON, checked by each method.
  private async rpc(method: string, body: any): Promise<unknown> {
    switch (method) {
      case "sendHeartbeat": {
        const request = body as HeartbeatRequest;
        const commands = this.blockManager.heartbeat(request, this.haState === "active");
        return {
          commands,
          haState: this.haState === "active" ? "active" : "standby",
          datanodes: this.registeredXferAddresses(),
        } satisfies HeartbeatResponse;
      }
      case "blockReport":
        this.blockManager.blockReport(body.datanode as DatanodeID, body.blocks, this.haState === "active");
        return true;
      case "blockReceivedAndDeleted":
        this.blockManager.blocksReceived(body.datanode, body.received ?? [], this.haState === "active");
        this.blockManager.blocksDeleted(body.datanode, body.deleted ?? []);
        return true;
      case "reportBadBlocks":
        for (const bad of body.blocks as { block: ExtendedBlock; datanodeUuid: string }[]) {
          this.logger.warn(
            { blockId: bad.block.blockId, datanode: bad.datanodeUuid },
            "replica reported corrupt",
          );
          this.blockManager.markCorrupt(bad.block.blockId, bad.datanodeUuid);
        }
        return true;
      case "getServiceState":
        return { haState: this.haState };
      case "create":
        return this.create(body);
      case "append":
        return this.append(body);
      case "addBlock":
        return this.addBlock(body);
      case "abandonBlock":
        return this.abandonBlock(body);
      case "complete":
        return this.complete(body);
      case "renewLease":
        this.requireActive();
        this.leaseRenewed.set(String(body.clientName), Date.now());
        return true;
      case "getBlockLocations":
        return this.getBlockLocations(body);
      default:
        throw new RemoteException("UnsupportedOperationException", `unknown RPC ${method}`);
    }
  }

  private async webhdfs(
    req: IncomingMessage,
    res: ServerResponse,
    pathname: string,
    params: URLSearchParams,
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
    if (this.haState !== "active") {
      throw new RemoteException(
        "StandbyException",
        `Operation category ${req.method === "GET" ? "READ" : "WRITE"} is not supported in state ${this.haState}`,
      );
    }
    const method = req.method ?? "GET";
    const expect = (wanted: string) => {
      if (method !== wanted)
        throw illegalArgument(
          `Invalid value for webhdfs parameter "op": op=${op} is not a ${method} operation`,
        );
    };
    const int = (name: string, fallback: number) => {
      const value = params.get(name);
      if (value === null || value === "") return fallback;
      const parsed = Number(value);
      if (!Number.isSafeInteger(parsed))
        throw illegalArgument(`Invalid value for webhdfs parameter "${name}": ${value}`);
      return parsed;
    };
    switch (op) {
      case "CREATE":
      case "APPEND":
      case "OPEN":
      case "GETFILECHECKSUM": {
        expect(op === "CREATE" ? "PUT" : op === "APPEND" ? "POST" : "GET");
        return this.redirect(req, res, op, path, params, user);
      }
      // No symbolic links here: a path's link status is its status.
      case "GETFILELINKSTATUS":
      case "GETFILESTATUS": {
        expect("GET");
        const node = this.lookupOrThrow(path);
        this.permissions.checkTraverse(user, node);
        return sendJson(res, 200, { FileStatus: this.fileStatus(node, "") });
      }
      case "LISTSTATUS": {
        expect("GET");
        const node = this.lookupOrThrow(path);
        this.checkAccess(user, node, node.kind === "DIRECTORY" ? READ | EXECUTE : 0);
        return sendJson(res, 200, { FileStatuses: { FileStatus: this.listing(path) } });
      }
      case "GETCONTENTSUMMARY": {
        expect("GET");
        const node = this.lookupOrThrow(path);
        this.permissions.checkTraverse(user, node);
        this.permissions.checkSubtree(user, node, READ | EXECUTE);
        return sendJson(res, 200, { ContentSummary: this.contentSummary(path) });
      }
      case "GETHOMEDIRECTORY":
        expect("GET");
        return sendJson(res, 200, { Path: `/user/${user}` });
      case "MKDIRS":
        expect("PUT");
        return sendJson(res, 200, {
          boolean: await this.mkdirs(path, user, parseMode(params.get("permission") ?? undefined, 0o755)),
        });
      case "DELETE":
        expect("DELETE");
        return sendJson(res, 200, {
          boolean: await this.delete(path, isTrue(params.get("recursive")), user),
        });
      case "RENAME": {
        expect("PUT");
        const destination = params.get("destination");
        if (!destination) throw illegalArgument("Required param destination for op: RENAME is null or empty");
        // With renameoptions (FileSystem.rename(src, dst, options), what the trash uses) HDFS's
        // rename2 answers: an empty 200 or an exception, never {"boolean": false}, which the Java
        // client would not read and so take for success.
        const options = (params.get("renameoptions") ?? "").split(",").filter(Boolean);
        if (options.length === 0)
          return sendJson(res, 200, { boolean: await this.rename(path, validatePath(destination), user) });
        for (const option of options) {
          if (!["NONE", "OVERWRITE", "TO_TRASH"].includes(option))
            throw illegalArgument(`Invalid value for webhdfs parameter "renameoptions": ${option}`);
        }
        await this.renameWithOptions(path, validatePath(destination), user, options.includes("OVERWRITE"));
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      }
      case "SETQUOTA":
        expect("PUT");
        this.permissions.checkSuperuser(user);
        await this.setQuota(path, int("namespacequota", -1), int("storagespacequota", -1));
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      case "SETECPOLICY": {
        expect("PUT");
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
        const directory = this.lookupOrThrow(path);
        if (directory.kind !== "DIRECTORY")
          throw new RemoteException(
            "IOException",
            `Attempt to set an erasure coding policy for a file ${path}`,
          );
        this.checkAccess(user, directory, WRITE);
        await this.log({ op: "SET_EC_POLICY", path, ecPolicy: policy });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      }
      case "UNSETECPOLICY":
        expect("PUT");
        this.checkAccess(user, this.lookupOrThrow(path), WRITE);
        await this.log({ op: "SET_EC_POLICY", path, ecPolicy: null });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      case "GETECPOLICY": {
        expect("GET");
        const node = this.lookupOrThrow(path);
        this.permissions.checkTraverse(user, node);
        const name = node.kind === "FILE" ? node.ecPolicy : this.ecPolicyFor(path);
        if (!name) return sendJson(res, 200, null);
        const policy = erasureCodingPolicy(name);
        return sendJson(res, 200, {
          name,
          codecName: policy.codec,
          numDataUnits: policy.dataUnits,
          numParityUnits: policy.parityUnits,
          cellSize: policy.cellSize,
        });
      }
      case "SETREPLICATION": {
        expect("PUT");
        this.requireActive();
        const node = this.namespace.lookup(path);
        if (node?.kind !== "FILE") return sendJson(res, 200, { boolean: false });
        this.checkAccess(user, node, WRITE);
        const replication = int("replication", this.config.replication);
        if (replication < 1 || replication > 512)
          throw illegalArgument(`Requested replication factor of ${replication} is out of range [1, 512]`);
        await this.log({ op: "SET_REPLICATION", path, replication });
        return sendJson(res, 200, { boolean: true });
      }
      case "SETPERMISSION": {
        expect("PUT");
        const node = this.lookupOrThrow(path);
        this.permissions.checkTraverse(user, node);
        this.permissions.checkOwner(user, node);
        await this.log({
          op: "SET_PERMISSION",
          path,
          permission: parseMode(params.get("permission") ?? undefined, 0o755),
        });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      }
      case "SETOWNER": {
        expect("PUT");
        const node = this.lookupOrThrow(path);
        const owner = params.get("owner") || undefined;
        const group = params.get("group") || undefined;
        if (!owner && !group) throw illegalArgument("Both owner and group are empty");
        this.permissions.checkTraverse(user, node);
        this.permissions.checkSetOwner(user, node, owner, group);
        await this.log({ op: "SET_OWNER", path, owner, group });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      }
      case "LISTSTATUS_BATCH": {
        expect("GET");
        const node = this.lookupOrThrow(path);
        this.checkAccess(user, node, node.kind === "DIRECTORY" ? READ | EXECUTE : 0);
        // The Java client's listStatusIterator (what `hadoop fs -ls` uses) pages with startAfter.
        const startAfter = params.get("startAfter") ?? "";
        const remaining = this.listing(path).filter(
          (status) => !startAfter || status.pathSuffix > startAfter,
        );
        const page = remaining.slice(0, LISTING_LIMIT);
        return sendJson(res, 200, {
          DirectoryListing: {
            partialListing: { FileStatuses: { FileStatus: page } },
            remainingEntries: remaining.length - page.length,
          },
        });
      }
      case "GETFILEBLOCKLOCATIONS": {
        // `hadoop fs -setrep -w` polls this until every block has as many hosts as asked.
        expect("GET");
        const file = this.lookupOrThrow(path);
        if (file.kind !== "FILE")
          throw new RemoteException("FileNotFoundException", `Path is not a file: ${path}`);
        this.checkAccess(user, file, READ);
        const offset = int("offset", 0);
        // FileSystem callers often pass Long.MAX_VALUE ("to the end"): past 2^53, but only compared.
        const length = Number(params.get("length") || Number.POSITIVE_INFINITY);
        if (!(length >= 0))
          throw illegalArgument(`Invalid value for webhdfs parameter "length": ${params.get("length")}`);
        return sendJson(res, 200, {
          BlockLocations: { BlockLocation: this.blockLocations(file, offset, offset + length) },
        });
      }
      case "GETQUOTAUSAGE": {
        expect("GET");
        const node = this.lookupOrThrow(path);
        this.permissions.checkTraverse(user, node);
        const summary = this.contentSummary(path);
        return sendJson(res, 200, {
          QuotaUsage: {
            fileAndDirectoryCount: summary.fileCount + summary.directoryCount,
            quota: summary.quota,
            spaceConsumed: summary.spaceConsumed,
            spaceQuota: summary.spaceQuota,
          },
        });
      }
      case "GETSERVERDEFAULTS":
        expect("GET");
        // The Java client asks before `-rm` (trashInterval 0: delete, do not move to .Trash) and
        // for the key provider; the checksum fields describe what the data nodes write.
        return sendJson(res, 200, {
          FsServerDefaults: {
            blockSize: this.config.blockSize,
            bytesPerChecksum: BYTES_PER_CHECKSUM,
            writePacketSize: 64 * 1024,
            replication: this.config.replication,
            fileBufferSize: 4096,
            encryptDataTransfer: false,
            trashInterval: 0,
            checksumType: CHECKSUM_TYPE_CRC32C,
            keyProviderUri: "",
            defaultStoragePolicyId: HOT_STORAGE_POLICY_ID,
          },
        });
      case "GETTRASHROOT":
        expect("GET");
        return sendJson(res, 200, { Path: `/user/${user}/.Trash` });
      case "GETSTATUS": {
        expect("GET");
        const { capacity, used } = this.status();
        return sendJson(res, 200, { FsStatus: { capacity, used, remaining: Math.max(0, capacity - used) } });
      }
      case "CHECKACCESS": {
        expect("GET");
        const action = params.get("fsaction") ?? "";
        if (!/^[r-][w-][x-]$/.test(action))
          throw illegalArgument(`Invalid value for webhdfs parameter "fsaction": ${action || "(empty)"}`);
        const access =
          (action[0] === "r" ? READ : 0) |
          (action[1] === "w" ? WRITE : 0) |
          (action[2] === "x" ? EXECUTE : 0);
        this.checkAccess(user, this.lookupOrThrow(path), access);
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      }
      case "SETTIMES": {
        expect("PUT");
        const node = this.lookupOrThrow(path);
        // HDFS: WRITE on the inode; -1 (or absent) leaves that time as it is.
        this.checkAccess(user, node, WRITE);
        const mtime = int("modificationtime", -1);
        const atime = int("accesstime", -1);
        if (mtime >= 0 || atime >= 0) {
          await this.log({
            op: "SET_TIMES",
            path,
            mtime: mtime >= 0 ? mtime : undefined,
            atime: atime >= 0 ? atime : undefined,
          });
        }
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      }
      default:
        throw illegalArgument(
          `Invalid value for webhdfs parameter "op": No enum constant ${op || "(empty)"}`,
        );
    }
  }

  /**
   * WebHDFS's first step: answer 307 with a data node that does the work. For OPEN, a node
   * holding the first block read; for CREATE/APPEND, any live node (it becomes the first replica).
   */
  private async redirect(
    req: IncomingMessage,
    res: ServerResponse,
    op: string,
    path: string,
    params: URLSearchParams,
    user: string,
  ): Promise<void> {
    const node = this.namespace.lookup(path);
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
    if (reads && node) this.checkAccess(user, node, READ);
    if (op === "CREATE") {
      const blockSize = params.get("blocksize");
      // 0 or empty: the pool's default, as the data node reads it.
      if (blockSize !== null && blockSize !== "" && blockSize !== "0") {
        const parsed = Number(blockSize);
        if (!Number.isSafeInteger(parsed))
          throw illegalArgument(`Invalid value for webhdfs parameter "blocksize": ${blockSize}`);
        this.checkBlockSize(parsed);
      }
    }
    if (op === "APPEND" && node) this.checkAccess(user, node, WRITE);
    if (op === "CREATE") {
      const ancestor = this.nearestExisting(path).node;
      if (ancestor === node && node && isTrue(params.get("overwrite"))) {
        this.checkAccess(user, node, WRITE);
        this.permissions.checkWriteInto(user, node.parent!);
      } else if (ancestor !== node) {
        this.permissions.checkWriteInto(user, ancestor);
      }
    }
    if (reads && node?.kind === "FILE") {
      const offset = op === "OPEN" ? Number(params.get("offset") ?? 0) : 0;
      let start = 0;
      for (const block of node.blocks) {
        if (block.complete && offset < start + block.numBytes) {
          // Never a dead holder; a stale or decommissioning one only when no better one is left.
          // The data node reads the rest from the located blocks, falling over between replicas.
          const readable = this.blockManager.readCandidates(block.blockId);
          target = readable[Math.floor(Math.random() * readable.length)];
          break;
        }
        start += block.numBytes;
      }
    }
    if (!target) {
      // The node a CREATE or APPEND lands on becomes the first replica: never a decommissioning one.
      const candidates = this.blockManager.writeCandidates();
      target = candidates[Math.floor(Math.random() * candidates.length)];
    }
    if (!target)
      throw new RemoteException("IOException", "Failed to find datanode, suggest to check cluster health.");
    const forwarded = new URLSearchParams(params);
    forwarded.delete("noredirect");
    forwarded.set("op", op);
    forwarded.set("user.name", user);
    forwarded.set("namenoderpcaddress", `${this.config.advertisedHost}:${this.rpcPort}`);
    const encoded = path.split("/").map(encodeURIComponent).join("/");
    const location = `http://${target.hostName}:${target.infoPort}/webhdfs/v1${encoded}?${forwarded.toString()}`;
    if (isTrue(params.get("noredirect"))) return sendJson(res, 200, { Location: location });
    // The body (if a client sent one before following) is not read here; the data node takes it.
    res.writeHead(307, { location, "content-type": "application/octet-stream", "content-length": 0 });
    res.end();
    req.resume();
  }
}

function parseMode(value: string | undefined, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  if (!/^[0-1]?[0-7]{3}$/.test(value))
    throw illegalArgument(`Invalid value for webhdfs parameter "permission": ${value} is not an octal mode`);
  return Number.parseInt(value, 8);
}
