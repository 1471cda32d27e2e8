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
import { BYTES_PER_CHECKSUM } from "../crc32c.js";
import { erasureCodingPolicy } from "../erasure/index.js";
import { components, parentOf, validatePath } from "../path.js";
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
  readBody,
  sendError,
  sendJson,
} from "../protocol.js";
import { BlockManager, toDatanodeID } from "./blockManager.js";
import { EditLog, type EditRecord, FencedException, GapError } from "./editLog.js";
import { type EditOp, ecShape, type INode, type INodeFile, Namespace } from "./namespace.js";

export interface NameNodeConfig {
  host: string;
  /** The address clients and data nodes are told about (redirects name data nodes, not this). */
  advertisedHost: string;
  rpcPort: number;
  httpPort: number;
  /** The edit-log volume; shared by the active and the standby. */
  nameDir: string;
  replication: number;
  blockSize: number;
  heartbeatExpiryMs: number;
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
}

type HaState = "active" | "standby" | "stopped";

const DEFAULT_USER = "dr.who";
const SUPERGROUP = "supergroup";

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
    help: "Data nodes heard from within the expiry",
    registers: [this.registry],
  });
  readonly deadDataNodes = new Gauge({
    name: "tributary_namenode_dead_datanodes",
    help: "Data nodes silent past the expiry",
    registers: [this.registry],
  });
  readonly capacity = new Gauge({
    name: "tributary_namenode_capacity_bytes",
    help: "Capacity of live data nodes",
    registers: [this.registry],
  });
  readonly used = new Gauge({
    name: "tributary_namenode_used_bytes",
    help: "Bytes of replicas on live data nodes",
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

  constructor(
    readonly config: NameNodeConfig,
    private readonly logger: Logger,
  ) {
    this.editLog = new EditLog(config.nameDir);
    this.blockManager = new BlockManager(this.namespace, {
      heartbeatExpiryMs: config.heartbeatExpiryMs,
      pendingReplicationTimeoutMs: Math.max(10_000, config.heartbeatExpiryMs),
    });
  }

  async start(): Promise<void> {
    await mkdir(this.config.nameDir, { recursive: true });
    await this.loadFromDisk();
    this.rpcPort = await this.listen(this.config.rpcPort);
    this.httpPort = await this.listen(this.config.httpPort);
    await this.haTick();
    this.logger.info(
      { rpcPort: this.rpcPort, httpPort: this.httpPort, haState: this.haState, txid: this.lastAppliedTxid },
      "name node started",
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
      await this.mkdirs(validatePath(path), "hdfs", 0o755);
      if (this.namespace.directory(path).ecPolicy !== policy)
        await this.log({ op: "SET_EC_POLICY", path, ecPolicy: policy });
    }
    for (const { path, bytes, files } of this.config.quotas ?? []) {
      await this.mkdirs(validatePath(path), "hdfs", 0o755);
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
    let at: INode = this.namespace.root;
    const missing: string[] = [];
    let prefix = "";
    for (const name of names) {
      prefix += `/${name}`;
      const child: INode | undefined = at.kind === "DIRECTORY" ? at.children.get(name) : undefined;
      if (at.kind !== "DIRECTORY")
        throw new RemoteException(
          "ParentNotDirectoryException",
          `Parent path is not a directory: ${this.namespace.pathOf(at)}`,
        );
      if (!child) {
        missing.push(prefix);
        continue;
      }
      if (missing.length === 0) at = child;
    }
    if (missing.length === 0) {
      if (at.kind !== "DIRECTORY")
        throw new RemoteException("FileAlreadyExistsException", `Path is not a directory: ${path}`);
      return true;
    }
    if (at.kind !== "DIRECTORY")
      throw new RemoteException(
        "ParentNotDirectoryException",
        `Parent path is not a directory: ${this.namespace.pathOf(at)}`,
      );
    this.namespace.checkQuota(at, missing.length, 0);
    const mtime = Date.now();
    await Promise.all(
      missing.map((dir) => this.log({ op: "MKDIR", path: dir, owner, group: SUPERGROUP, permission, mtime })),
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
    if (!Number.isInteger(blockSize) || blockSize < 1024 * 1024 || blockSize % BYTES_PER_CHECKSUM !== 0) {
      throw illegalArgument(
        `Specified block size ${blockSize} is less than the configured minimum 1048576 or not a multiple of ${BYTES_PER_CHECKSUM}`,
      );
    }
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
    await this.mkdirs(parentOf(path), owner, 0o755);
    this.namespace.checkQuota(this.namespace.directory(parentOf(path)), existing ? 0 : 1, 0);
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
      group: SUPERGROUP,
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

  private async append(body: {
    path: string;
    clientName: string;
  }): Promise<{ blockSize: number; replication: number; ecPolicy?: string | undefined }> {
    this.requireActive();
    const path = validatePath(body.path);
    const file = this.namespace.getFile(path);
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

  /** Replicas (or a group's internal blocks, in index order) the write acknowledged. */
  private acknowledged(file: INodeFile, blockId: number, locations: string[]): void {
    if (!file.ecPolicy) {
      this.blockManager.pipelineAcknowledged(blockId, locations);
      return;
    }
    locations.forEach((uuid, i) => {
      this.blockManager.pipelineAcknowledged(blockId + i, [uuid]);
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
    previous?: ExtendedBlock & { locations?: string[] };
    favoredNode?: string;
  }): Promise<LocatedBlock> {
    this.requireActive();
    const path = validatePath(body.path);
    const file = this.checkLease(path, body.clientName);
    const last = file.blocks.at(-1);
    const startOf = (count: number) =>
      file.blocks.slice(0, count).reduce((sum, block) => sum + block.numBytes, 0);
    // A retried addBlock (its answer was lost, e.g. across a failover) gets the block it already allocated.
    if (last && !last.complete && last.blockId !== body.previous?.blockId) {
      const beforeLast = file.blocks.at(-2);
      if ((beforeLast?.blockId ?? undefined) === body.previous?.blockId) {
        const targets = this.blockManager.chooseTargets(this.targetCount(file), body.favoredNode, []);
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
    const targets = this.blockManager.chooseTargets(this.targetCount(file), body.favoredNode, []);
    if (file.ecPolicy && targets.length < k + m) {
      throw new RemoteException(
        "IOException",
        `File ${path} with erasure-coding policy ${file.ecPolicy} needs ${k + m} data nodes for a block group; ${targets.length} are available`,
      );
    }
    if (targets.length === 0) {
      throw new RemoteException(
        "IOException",
        `File ${path} could only be written to 0 of the 1 minReplication nodes. There are ${this.blockManager.liveNodes().length} datanode(s) running and no node is available.`,
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
  }): LocatedBlocks {
    this.requireActive();
    const path = validatePath(body.path);
    const file = this.namespace.getFile(path);
    const blocks: LocatedBlock[] = [];
    let offset = 0;
    file.blocks.forEach((block, index) => {
      // Only committed blocks are readable: a block still in its pipeline is never served as whole.
      if (block.complete) blocks.push(this.locate(file, index, offset, body.clientUuid));
      offset += block.numBytes;
    });
    return { fileLength: this.namespace.visibleLength(file), underConstruction: !!file.clientName, blocks };
  }

  private async delete(path: string, recursive: boolean): Promise<boolean> {
    this.requireActive();
    if (path === "/") throw new RemoteException("IOException", "Cannot delete the root directory");
    const node = this.namespace.lookup(path);
    if (!node) return false;
    if (node.kind === "DIRECTORY" && node.children.size > 0 && !recursive) {
      throw new RemoteException(
        "PathIsNotEmptyDirectoryException",
        `\`${path} is non empty': Directory is not empty`,
      );
    }
    await this.log({ op: "DELETE", path, mtime: Date.now() });
    return true;
  }

  private async rename(src: string, destination: string): Promise<boolean> {
    this.requireActive();
    const node = this.namespace.lookup(src);
    if (!node || src === "/") return false;
    let dst = destination;
    const target = this.namespace.lookup(dst);
    if (target?.kind === "DIRECTORY") dst = dst === "/" ? `/${node.name}` : `${dst}/${node.name}`;
    else if (target) return false;
    if (dst === src) return true;
    if (dst.startsWith(`${src}/`)) return false;
    if (this.namespace.lookup(dst)) return false;
    const parent = this.namespace.lookup(parentOf(dst));
    if (parent?.kind !== "DIRECTORY") return false;
    const moved = this.namespace.summarize(node);
    this.namespace.checkQuota(parent, moved.directoryCount + moved.fileCount, moved.spaceConsumed);
    await this.log({ op: "RENAME", src, dst, mtime: Date.now() });
    return true;
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

  /** The figures BlockPool status shows. */
  status() {
    const nodes = this.blockManager.report();
    const live = nodes.filter((node) => node.adminState === "NORMAL");
    let files = 0;
    const count = (node: INode) => {
      files++;
      if (node.kind === "DIRECTORY") for (const child of node.children.values()) count(child);
    };
    count(this.namespace.root);
    return {
      haState: this.haState,
      txid: this.lastAppliedTxid,
      liveDataNodes: live.length,
      deadDataNodes: nodes.length - live.length,
      capacity: live.reduce((sum, node) => sum + node.capacity, 0),
      used: live.reduce((sum, node) => sum + node.dfsUsed, 0),
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
      let body: unknown;
      try {
        body = JSON.parse((await readBody(req)).toString("utf8") || "{}");
      } catch {
        throw illegalArgument(`the body of ${pathname} is not JSON`);
      }
      return sendJson(res, 200, (await this.rpc(pathname.slice(5), body)) ?? null);
    }
    if (pathname === "/webhdfs/v1" || pathname.startsWith("/webhdfs/v1/"))
      return this.webhdfs(req, res, pathname, params);
    if (pathname === "/healthz") return sendJson(res, 200, { status: "ok", haState: this.haState });
    // Only the active is ready: the client Service sends traffic to it alone.
    if (pathname === "/readyz")
      return sendJson(res, this.haState === "active" ? 200 : 503, { haState: this.haState });
    if (pathname === "/status") return sendJson(res, 200, this.status());
    if (pathname === "/metrics") {
      const status = this.status();
      this.metrics.files.set(status.files);
      this.metrics.blocks.set(status.blocks);
      this.metrics.underReplicatedBlocks.set(status.underReplicatedBlocks);
      this.metrics.missingBlocks.set(status.missingBlocks);
      this.metrics.corruptReplicas.set(status.corruptReplicas);
      this.metrics.liveDataNodes.set(status.liveDataNodes);
      this.metrics.deadDataNodes.set(status.deadDataNodes);
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

  // biome-ignore lint/suspicious/noExplicitAny: RPC bodies are JSON, checked by each method.
  private async rpc(method: string, body: any): Promise<unknown> {
    switch (method) {
      case "sendHeartbeat": {
        const request = body as HeartbeatRequest;
        const commands = this.blockManager.heartbeat(request, this.haState === "active");
        return {
          commands,
          haState: this.haState === "active" ? "active" : "standby",
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
      case "OPEN": {
        expect(op === "CREATE" ? "PUT" : op === "APPEND" ? "POST" : "GET");
        return this.redirect(req, res, op, path, params, user);
      }
      case "GETFILESTATUS":
        expect("GET");
        return sendJson(res, 200, { FileStatus: this.fileStatus(this.lookupOrThrow(path), "") });
      case "LISTSTATUS":
        expect("GET");
        return sendJson(res, 200, { FileStatuses: { FileStatus: this.listing(path) } });
      case "GETCONTENTSUMMARY":
        expect("GET");
        return sendJson(res, 200, { ContentSummary: this.contentSummary(path) });
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
        return sendJson(res, 200, { boolean: await this.delete(path, isTrue(params.get("recursive"))) });
      case "RENAME": {
        expect("PUT");
        const destination = params.get("destination");
        if (!destination) throw illegalArgument("Required param destination for op: RENAME is null or empty");
        return sendJson(res, 200, { boolean: await this.rename(path, validatePath(destination)) });
      }
      case "SETQUOTA":
        expect("PUT");
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
        if (this.lookupOrThrow(path).kind !== "DIRECTORY")
          throw new RemoteException(
            "IOException",
            `Attempt to set an erasure coding policy for a file ${path}`,
          );
        await this.log({ op: "SET_EC_POLICY", path, ecPolicy: policy });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      }
      case "UNSETECPOLICY":
        expect("PUT");
        this.lookupOrThrow(path);
        await this.log({ op: "SET_EC_POLICY", path, ecPolicy: null });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      case "GETECPOLICY": {
        expect("GET");
        const node = this.lookupOrThrow(path);
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
        const replication = int("replication", this.config.replication);
        if (replication < 1 || replication > 512)
          throw illegalArgument(`Requested replication factor of ${replication} is out of range [1, 512]`);
        await this.log({ op: "SET_REPLICATION", path, replication });
        return sendJson(res, 200, { boolean: true });
      }
      case "SETPERMISSION":
        expect("PUT");
        this.lookupOrThrow(path);
        await this.log({
          op: "SET_PERMISSION",
          path,
          permission: parseMode(params.get("permission") ?? undefined, 0o755),
        });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
      case "SETOWNER":
        expect("PUT");
        this.lookupOrThrow(path);
        await this.log({
          op: "SET_OWNER",
          path,
          owner: params.get("owner") ?? undefined,
          group: params.get("group") ?? undefined,
        });
        res.writeHead(200, { "content-length": 0 }).end();
        return;
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
    if (op === "OPEN" || op === "APPEND") {
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
    if (op === "OPEN" && node?.kind === "FILE") {
      const offset = Number(params.get("offset") ?? 0);
      let start = 0;
      for (const block of node.blocks) {
        if (block.complete && offset < start + block.numBytes) {
          const replicas = this.blockManager.goodReplicas(block.blockId);
          target = replicas[Math.floor(Math.random() * replicas.length)];
          break;
        }
        start += block.numBytes;
      }
    }
    if (!target) {
      const live = this.blockManager.liveNodes();
      target = live[Math.floor(Math.random() * live.length)];
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
