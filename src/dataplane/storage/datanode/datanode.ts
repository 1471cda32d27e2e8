/**
 * The data node: stores replicas (BlockStore), receives pipelined block writes and forwards them
 * downstream, serves verified reads, heartbeats and reports blocks to every name node (the
 * standby keeps its block map warm so failover needs no report storm), obeys the active's
 * commands (transfer for re-replication, invalidate), and scans its replicas in the background.
 * It also serves WebHDFS's second step (CREATE/APPEND/OPEN after the name node's redirect),
 * acting as the HDFS client with itself as the favoured first replica.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdir, readFile as readFileText, statfs, writeFile as writeFileText } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Counter, Gauge, Registry } from "prom-client";
import type { Logger } from "../../../log.js";
import { checkSignature, signRequest } from "../clusterAuth.js";
import {
  type BlockAck,
  BlockSender,
  FIRST_BAD_LINK_HEADER,
  NameNodeRpc,
  PipelineException,
  readFile,
  sendBlock,
  type WriteOptions,
  writeFile,
} from "../dfsClient.js";
import { validatePath } from "../path.js";
import {
  type DatanodeCommand,
  type DatanodeID,
  type ExtendedBlock,
  type HeartbeatResponse,
  illegalArgument,
  infoAddress,
  isTrue,
  type LocatedBlocks,
  postJson,
  RemoteException,
  retriable,
  sendError,
  sendJson,
  xferAddress,
} from "../protocol.js";
import { reconstructInternalBlocks } from "../striped.js";
import { BlockStore, type FinishedReplica } from "./blockStore.js";
import { blockChecksum, fileChecksum } from "./fileChecksum.js";

export interface DataNodeConfig {
  /** The pool's cluster secret: signs this node's calls to name nodes and guards deleting its replicas (clusterAuth.ts). */
  clusterSecret?: Buffer | undefined;
  host: string;
  advertisedHost: string;
  xferPort: number;
  infoPort: number;
  dataDir: string;
  nameNodes: string[];
  rack: string;
  heartbeatIntervalMs: number;
  blockReportIntervalMs: number;
  scanIntervalMs: number;
  /** How long a pipeline hop may stall with bytes pending before its node counts as failed (dfsClient's DEFAULT_STALL_TIMEOUT_MS). */
  stallTimeoutMs: number;
  /**
   * WebHDFS writes (CREATE, APPEND) served at once; more are refused with 503 and Retry-After.
   * HDFS bounds all of a data node's transfers with dfs.datanode.max.transfer.threads; here the
   * transfer that costs is a WebHDFS write, which keeps its block in flight in memory (up to the
   * block size) until the pipeline acknowledges it, so writes are what is counted.
   */
  maxWebHdfsWriters: number;
  /** Node's headersTimeout: a request whose headers have not all arrived by then is closed (408). */
  headersTimeoutMs: number;
  /**
   * Node's requestTimeout, for every request but an upload (a block, a WebHDFS file), which lasts
   * as long as its writer takes and is bounded in number instead (maxWebHdfsWriters).
   */
  requestTimeoutMs: number;
}

/** What a refused WebHDFS writer is told to wait: writes last seconds, so a slot frees up soon. */
const WRITER_RETRY_AFTER_SECONDS = 1;

class DataNodeMetrics {
  readonly registry = new Registry();
  readonly bytesWritten = new Counter({
    name: "tributary_datanode_bytes_written_total",
    help: "Block bytes received and finalized",
    registers: [this.registry],
  });
  readonly bytesRead = new Counter({
    name: "tributary_datanode_bytes_read_total",
    help: "Block bytes served to readers",
    registers: [this.registry],
  });
  readonly blocksWritten = new Counter({
    name: "tributary_datanode_blocks_written_total",
    help: "Replicas finalized",
    registers: [this.registry],
  });
  readonly blocksReplicated = new Counter({
    name: "tributary_datanode_blocks_replicated_total",
    help: "Replicas copied to other nodes on the name node's command",
    registers: [this.registry],
  });
  readonly blocksRemoved = new Counter({
    name: "tributary_datanode_blocks_removed_total",
    help: "Replicas deleted (invalidated)",
    registers: [this.registry],
  });
  readonly checksumFailures = new Counter({
    name: "tributary_datanode_checksum_failures_total",
    help: "Corrupt replicas found by reads or the block scanner",
    registers: [this.registry],
  });
  readonly blocksVerified = new Counter({
    name: "tributary_datanode_blocks_verified_total",
    help: "Replicas verified by the block scanner",
    registers: [this.registry],
  });
  readonly numBlocks = new Gauge({
    name: "tributary_datanode_blocks",
    help: "Finalized replicas on this node",
    registers: [this.registry],
  });
  readonly dfsUsed = new Gauge({
    name: "tributary_datanode_dfs_used_bytes",
    help: "Bytes of finalized replicas",
    registers: [this.registry],
  });
  readonly webHdfsWriters = new Gauge({
    name: "tributary_datanode_webhdfs_writers",
    help: "WebHDFS writes in progress, each keeping up to a block in memory",
    registers: [this.registry],
  });
  readonly webHdfsWritesRefused = new Counter({
    name: "tributary_datanode_webhdfs_writes_refused_total",
    help: "WebHDFS writes refused with 503 because the node was serving its maximum",
    registers: [this.registry],
  });
}

export class DataNode {
  readonly store: BlockStore;
  readonly metrics = new DataNodeMetrics();
  readonly rpc: NameNodeRpc;
  id!: DatanodeID;
  private readonly servers: Server[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private closed = false;
  private scanning = false;
  private webHdfsWriters = 0;
  /** The active name node's registered data nodes (host:xferPort), from its last heartbeat reply. */
  private registeredDataNodes = new Set<string>();
  /** A heartbeat round run early to learn of data nodes registered since the last one. */
  private registrationRefresh: Promise<void> | undefined;
  private lastRegistrationRefresh = Number.NEGATIVE_INFINITY;
  /** Heartbeat rounds started, and the round whose reply last set registeredDataNodes. */
  private heartbeatRounds = 0;
  private registeredRound = 0;

  constructor(
    readonly config: DataNodeConfig,
    private readonly logger: Logger,
  ) {
    this.store = new BlockStore(config.dataDir);
    this.store.onVanished = (blockId) => {
      this.logger.warn({ blockId }, "replica missing from disk: reporting it deleted");
      this.reportToAll("blockReceivedAndDeleted", { datanode: this.id, received: [], deleted: [blockId] });
    };
    this.rpc = new NameNodeRpc(config.nameNodes);
  }

  async start(): Promise<void> {
    await mkdir(this.config.dataDir, { recursive: true });
    await this.store.open();
    const datanodeUuid = await this.loadUuid();
    const xfer = await this.listen(this.config.xferPort);
    const info = await this.listen(this.config.infoPort);
    this.id = { datanodeUuid, hostName: this.config.advertisedHost, xferPort: xfer, infoPort: info };
    this.logger.info(
      { ...this.id, blocks: this.store.list().length, rack: this.config.rack },
      "data node started",
    );
    if (!this.config.clusterSecret)
      this.logger.warn(
        "no cluster secret (TRIBUTARY_CLUSTER_SECRET_FILE or TRIBUTARY_CLUSTER_SECRET): any host that reaches this data node can delete its replicas and have it forward blocks to any address; set one outside local development",
      );
    const heartbeat = () => {
      this.heartbeatAll().finally(() => {
        if (!this.closed) this.timers[0] = setTimeout(heartbeat, this.config.heartbeatIntervalMs);
      });
    };
    this.timers[0] = setTimeout(heartbeat, 0);
    this.timers[1] = setInterval(() => {
      for (const address of this.config.nameNodes) this.blockReport(address).catch(() => undefined);
    }, this.config.blockReportIntervalMs);
    this.timers[2] = setInterval(() => {
      this.scan().catch((error) =>
        this.logger.warn({ error: (error as Error).message }, "block scan failed"),
      );
    }, this.config.scanIntervalMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
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
  }

  private async loadUuid(): Promise<string> {
    const file = join(this.config.dataDir, "current", "datanode.uuid");
    try {
      return (await readFileText(file, "utf8")).trim();
    } catch {
      const uuid = randomUUID();
      await writeFileText(file, `${uuid}\n`);
      return uuid;
    }
  }

  private async listen(port: number): Promise<number> {
    const { headersTimeoutMs } = this.config;
    const server = createServer(
      {
        headersTimeout: headersTimeoutMs,
        // Node's requestTimeout covers a whole request and cannot be lifted for one: a block
        // streams as fast as its writer produces, and a WebHDFS body is a whole file. It is
        // applied per request instead, to everything but uploads (see limitRequestTime).
        requestTimeout: 0,
        // Node checks its timeouts this often (30 s by default): a few times per headers timeout.
        connectionsCheckingInterval: Math.min(30_000, Math.max(100, headersTimeoutMs / 4)),
      },
      (req, res) => {
        this.handle(req, res).catch((error) => sendError(res, error));
      },
    );
    server.keepAliveTimeout = 5_000;
    server.listen(port, this.config.host);
    await once(server, "listening");
    this.servers.push(server);
    return (server.address() as AddressInfo).port;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://datanode");
    if (!isUpload(req.method, url)) this.limitRequestTime(req);
    const checksum = /^\/blocks\/(\d+)\/checksum$/.exec(url.pathname);
    if (checksum && req.method === "GET") {
      const generationStamp = Number(url.searchParams.get("generationStamp") ?? 0);
      return sendJson(res, 200, await blockChecksum(this.store, Number(checksum[1]), generationStamp));
    }
    const block = /^\/blocks\/(\d+)$/.exec(url.pathname);
    if (block) {
      const blockId = Number(block[1]);
      if (req.method === "PUT")
        return this.receiveBlock(req, res, blockId, Number(url.searchParams.get("generationStamp")));
      if (req.method === "GET") return this.serveBlock(res, blockId, url);
      if (req.method === "DELETE") {
        checkSignature(this.config.clusterSecret, req.method, url.pathname, req.headers);
        const deleted = await this.store.delete(blockId);
        if (deleted)
          this.reportToAll("blockReceivedAndDeleted", {
            datanode: this.id,
            received: [],
            deleted: [blockId],
          });
        return sendJson(res, 200, { boolean: deleted });
      }
    }
    if (url.pathname.startsWith("/webhdfs/v1")) return this.webhdfs(req, res, url);
    if (url.pathname === "/healthz" || url.pathname === "/readyz")
      return sendJson(res, 200, { status: "ok" });
    if (url.pathname === "/metrics") {
      this.metrics.numBlocks.set(this.store.list().length);
      this.metrics.dfsUsed.set(this.store.dfsUsed);
      const text = await this.metrics.registry.metrics();
      res.writeHead(200, { "content-type": this.metrics.registry.contentType });
      res.end(text);
      return;
    }
    sendError(
      res,
      new RemoteException(
        "UnsupportedOperationException",
        `${req.method} ${url.pathname} is not served by a data node`,
      ),
    );
  }

  /**
   * Node's requestTimeout for one request: one still arriving after requestTimeoutMs (a body
   * trickled to an endpoint that reads none) loses its connection. A request without a body is
   * complete as soon as its headers are, so only such trickles are cut, never a long answer.
   */
  private limitRequestTime(req: IncomingMessage): void {
    const timer = setTimeout(() => {
      if (req.complete) return;
      this.logger.warn(
        { url: req.url, from: req.socket.remoteAddress, requestTimeoutMs: this.config.requestTimeoutMs },
        "request not received within the request timeout: connection closed",
      );
      req.socket.destroy();
    }, this.config.requestTimeoutMs);
    timer.unref();
    req.once("close", () => clearTimeout(timer));
  }

  /**
   * Pipeline write: store locally while forwarding downstream; answer only when the local
   * replica is finalized and the downstream node (and so every node after it) acknowledged
   * with the same checksum. A sender that disconnects leaves nothing but a discarded rbw file.
   * A failure is answered as soon as it is known, naming the first bad node when it is
   * downstream of this one (HDFS's firstBadLink), so the writer can leave just that node out.
   * A downstream node that hangs is named too: forwarding to it stalls, or its acknowledgement
   * does not come, for longer than the stall timeout (see sendBlock).
   */
  private async receiveBlock(
    req: IncomingMessage,
    res: ServerResponse,
    blockId: number,
    generationStamp: number,
  ): Promise<void> {
    if (!Number.isSafeInteger(generationStamp) || generationStamp <= 0)
      throw illegalArgument("generationStamp is required");
    const downstream = JSON.parse(String(req.headers["x-tributary-targets"] ?? "[]")) as DatanodeID[];
    await this.checkTargets(downstream);
    let ack: BlockAck;
    try {
      // Not destroyed on a failure: the rest of the body drains while the answer goes upstream.
      ack = await this.storeAndForward(
        { blockId, generationStamp },
        downstream,
        req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>,
      );
    } catch (error) {
      req.resume();
      return this.pipelineFailed(res, blockId, error);
    }
    sendJson(res, 200, ack);
  }

  /**
   * Stores `source` as a replica here while forwarding it down `downstream`: resolves with the
   * acknowledgement once the local replica is durable and finalized and the downstream node (and
   * so every node after it) acknowledged the same checksum. A downstream failure is a
   * PipelineException naming the bad node; it is thrown as soon as it is known.
   */
  private async storeAndForward(
    block: { blockId: number; generationStamp: number },
    downstream: DatanodeID[],
    source: AsyncIterable<Buffer>,
  ): Promise<BlockAck> {
    const { blockId, generationStamp } = block;
    const writer = await this.store.createRbw(blockId, generationStamp);
    let forward: BlockSender | undefined;
    let local: FinishedReplica;
    let acknowledged: Promise<BlockAck> | undefined;
    try {
      if (downstream.length > 0)
        forward = new BlockSender(downstream, block, { stallTimeoutMs: this.config.stallTimeoutMs });
      for await (const chunk of source) {
        // A downstream node that failed is reported now rather than after the rest of the block.
        if (forward?.failure) throw forward.failure;
        // Each piece goes down the pipeline before it is checksummed and queued for the disk
        // here, so the next node works on it meanwhile; the loop waits only when the downstream
        // window or the local file's backlog is full.
        const full = forward ? !forward.write(chunk) : false;
        const stored = writer.write(chunk);
        if (full) await Promise.all([forward!.drained(), stored]);
        else await stored;
      }
      // The downstream nodes finish (and fsync) their replicas while this one does.
      acknowledged = forward?.end();
      acknowledged?.catch(() => undefined);
      local = await writer.finish();
    } catch (error) {
      await writer.abort();
      forward?.abort();
      throw error;
    }
    this.metrics.blocksWritten.inc();
    this.metrics.bytesWritten.inc(local.numBytes);
    this.reportToAll("blockReceivedAndDeleted", {
      datanode: this.id,
      received: [{ blockId, generationStamp, numBytes: local.numBytes }],
      deleted: [],
    });
    if (acknowledged) {
      const ack = await acknowledged;
      if (ack.numBytes !== local.numBytes || ack.checksum !== local.checksum) {
        const message = `pipeline checksum mismatch for blk_${blockId}: this node has ${local.numBytes} bytes / ${local.checksum}, downstream ${xferAddress(downstream[0]!)} has ${ack.numBytes} / ${ack.checksum}`;
        throw new PipelineException(message, downstream[0]!);
      }
    }
    return { numBytes: local.numBytes, checksum: local.checksum };
  }

  /**
   * The pipeline sender of this node's WebHDFS writes: when the pipeline starts here (HDFS puts
   * the writer's first replica on its own node), the replica is stored in process and only the
   * rest of the pipeline is sent over the network, saving a loopback hop of every byte. A local
   * failure names this node, so the writer leaves it out of the next pipeline; a failure of the
   * source (the WebHDFS upload) is rethrown as it is, as sendBlock does.
   */
  private readonly sendBlock: typeof sendBlock = async (targets, block, source, options) => {
    const [first, ...rest] = targets;
    if (!first || first.datanodeUuid !== this.id.datanodeUuid)
      return sendBlock(targets, block, source, options);
    let sourceFailure: { error: unknown } | undefined;
    const watched = (async function* () {
      const chunks = source[Symbol.asyncIterator]();
      try {
        for (;;) {
          let step: IteratorResult<Buffer>;
          try {
            step = await chunks.next();
          } catch (error) {
            sourceFailure = { error };
            throw error;
          }
          if (step.done) return;
          yield step.value;
        }
      } finally {
        if (!sourceFailure) await chunks.return?.();
      }
    })();
    try {
      return await this.storeAndForward(block, rest, watched);
    } catch (error) {
      if (sourceFailure || error instanceof PipelineException) throw error;
      throw new PipelineException(
        `writing blk_${block.blockId}_${block.generationStamp} on ${xferAddress(first)} failed: ${(error as Error).message}`,
        first,
      );
    }
  };

  /**
   * readFile, except that a block this node holds a finalized replica of is read straight from
   * the local store, checksums verified there (HDFS's short-circuit local read): no loopback hop
   * through this node's own block server. A local replica that fails (a corrupt chunk, a file gone)
   * is reported as the block scanner would, and the rest of the block comes from the others.
   */
  private async *readLocalFirst(
    located: LocatedBlocks,
    offset: number,
    length: number,
  ): AsyncGenerator<Buffer> {
    const end = Math.min(located.fileLength, offset + length);
    let position = offset;
    const self = this.id.datanodeUuid;
    for (const block of located.blocks) {
      const blockStart = block.startOffset;
      const to = Math.min(blockStart + block.block.numBytes, end);
      if (to <= position || blockStart >= end) continue;
      const replica = block.ecPolicy ? undefined : this.store.get(block.block.blockId);
      const local =
        replica !== undefined &&
        replica.generationStamp === block.block.generationStamp &&
        replica.numBytes >= block.block.numBytes &&
        block.locations.some((node) => node.datanodeUuid === self);
      let others = block;
      if (local) {
        try {
          for await (const chunk of this.store.read(replica.blockId, position - blockStart, to - position)) {
            position += chunk.length;
            this.metrics.bytesRead.inc(chunk.length);
            yield chunk;
          }
        } catch (error) {
          this.onReadError(error, replica);
        }
        others = { ...block, locations: block.locations.filter((node) => node.datanodeUuid !== self) };
      }
      if (position < to) {
        for await (const chunk of readFile({ ...located, blocks: [others] }, position, to - position)) {
          position += chunk.length;
          yield chunk;
        }
      }
    }
  }

  /** Answers a failed block write; the header names the bad node when it is not this one. */
  private pipelineFailed(res: ServerResponse, blockId: number, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    const bad = error instanceof PipelineException ? error.badNode : undefined;
    this.logger.warn(
      { blockId, badNode: bad ? xferAddress(bad) : undefined, error: message },
      "block write failed",
    );
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const remote =
      error instanceof RemoteException
        ? error
        : new RemoteException("IOException", `${xferAddress(this.id)}: ${message}`, undefined, 500);
    sendJson(res, remote.status, remote.toJSON(), bad ? { [FIRST_BAD_LINK_HEADER]: bad.datanodeUuid } : {});
  }

  private async serveBlock(res: ServerResponse, blockId: number, url: URL): Promise<void> {
    const replica = this.store.get(blockId);
    const generationStamp = Number(url.searchParams.get("generationStamp") ?? 0);
    if (!replica || (generationStamp && replica.generationStamp !== generationStamp)) {
      throw new RemoteException(
        "ReplicaNotFoundException",
        `Replica not found for blk_${blockId}_${generationStamp} on ${xferAddress(this.id)}`,
      );
    }
    const offset = Number(url.searchParams.get("offset") ?? 0);
    const length = Math.min(
      Number(url.searchParams.get("length") ?? replica.numBytes),
      replica.numBytes - offset,
    );
    if (!(offset >= 0 && length >= 0))
      throw illegalArgument(`bad range offset=${offset} length=${length} of blk_${blockId}`);
    const chunks = this.store.read(blockId, offset, length);
    // Verify the first run before committing to a 200, so an early corruption is a clean error.
    let first: IteratorResult<Buffer>;
    try {
      first = await chunks.next();
    } catch (error) {
      this.onReadError(error, replica);
      throw error;
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": length });
    try {
      if (!first.done) {
        if (!res.write(first.value)) await once(res, "drain");
        for await (const chunk of chunks) {
          this.metrics.bytesRead.inc(chunk.length);
          if (!res.write(chunk)) await once(res, "drain");
        }
      }
      res.end();
    } catch (error) {
      this.onReadError(error, replica);
      res.destroy(error as Error);
    }
  }

  private onReadError(error: unknown, replica: ExtendedBlock): void {
    if (error instanceof RemoteException && error.exception === "ChecksumException") {
      this.metrics.checksumFailures.inc();
      this.logger.warn(
        { blockId: replica.blockId, error: error.message },
        "corrupt replica: reporting to the name nodes",
      );
      this.reportToAll("reportBadBlocks", {
        blocks: [{ block: replica, datanodeUuid: this.id.datanodeUuid }],
      });
    }
  }

  /** HDFS's DataBlockScanner: verify every replica in turn, report the corrupt ones. */
  async scan(): Promise<number> {
    if (this.scanning) return 0;
    this.scanning = true;
    let corrupt = 0;
    try {
      for (const replica of this.store.list()) {
        if (this.closed) break;
        try {
          await this.store.verify(replica.blockId);
          this.metrics.blocksVerified.inc();
        } catch (error) {
          if (error instanceof RemoteException && error.exception === "ChecksumException") corrupt++;
          this.onReadError(error, replica);
        }
      }
    } finally {
      this.scanning = false;
    }
    return corrupt;
  }

  private async heartbeatAll(): Promise<void> {
    // Rounds overlap (the periodic one and an early one for checkTargets): a reply is taken only
    // if no later round's reply was, so a slow answer cannot put back a list older than the one
    // an early round just fetched.
    const round = ++this.heartbeatRounds;
    const { bsize, blocks, bavail } = await statfs(this.config.dataDir).catch(() => ({
      bsize: 0,
      blocks: 0,
      bavail: 0,
    }));
    const dfsUsed = this.store.dfsUsed;
    const body = {
      datanode: this.id,
      networkLocation: this.config.rack,
      capacity: bsize * blocks,
      dfsUsed,
      remaining: bsize * bavail,
      numBlocks: this.store.list().length,
    };
    await Promise.all(
      this.config.nameNodes.map(async (address) => {
        try {
          const reply = await postJson<HeartbeatResponse>(
            address,
            "/rpc/sendHeartbeat",
            body,
            5_000,
            signRequest(this.config.clusterSecret, "POST", "/rpc/sendHeartbeat"),
          );
          if (reply.haState === "active" && reply.datanodes && round >= this.registeredRound) {
            this.registeredDataNodes = new Set(reply.datanodes);
            this.registeredRound = round;
          }
          for (const command of reply.commands) {
            if (command.action === "register") await this.blockReport(address);
            else if (reply.haState === "active") this.execute(command);
          }
        } catch (error) {
          this.logger.debug({ nameNode: address, error: (error as Error).message }, "heartbeat failed");
        }
      }),
    );
  }

  private async blockReport(address: string): Promise<void> {
    await postJson(
      address,
      "/rpc/blockReport",
      { datanode: this.id, blocks: this.store.list() },
      30_000,
      signRequest(this.config.clusterSecret, "POST", "/rpc/blockReport"),
    );
  }

  private execute(command: DatanodeCommand): void {
    if (command.action === "invalidate") {
      (async () => {
        const deleted: number[] = [];
        for (const block of command.blocks) {
          if (await this.store.delete(block.blockId)) deleted.push(block.blockId);
        }
        this.metrics.blocksRemoved.inc(deleted.length);
        if (deleted.length)
          this.reportToAll("blockReceivedAndDeleted", { datanode: this.id, received: [], deleted });
      })().catch((error) => this.logger.warn({ error: (error as Error).message }, "invalidate failed"));
    } else if (command.action === "reconstruct") {
      const group = {
        block: command.group,
        startOffset: 0,
        locations: [],
        corrupt: false,
        ecPolicy: command.ecPolicy,
        internal: command.sources,
      };
      reconstructInternalBlocks(group, command.missing, command.targets, {
        stallTimeoutMs: this.config.stallTimeoutMs,
      }).then(
        () => {
          this.metrics.blocksReplicated.inc(command.missing.length);
          this.logger.info(
            {
              blockGroup: command.group.blockId,
              rebuilt: command.missing,
              targets: command.targets.map(xferAddress),
            },
            "rebuilt erasure-coded internal blocks",
          );
        },
        (error) =>
          this.logger.warn(
            { blockGroup: command.group.blockId, error: (error as Error).message },
            "reconstruction failed",
          ),
      );
    } else if (command.action === "transfer") {
      const replica = this.store.get(command.block.blockId);
      if (!replica) return;
      sendBlock(command.targets, replica, this.store.read(replica.blockId), {
        stallTimeoutMs: this.config.stallTimeoutMs,
      }).then(
        () => {
          this.metrics.blocksReplicated.inc();
          this.logger.info(
            { blockId: replica.blockId, targets: command.targets.map(xferAddress) },
            "replicated block",
          );
        },
        (error) => {
          this.onReadError(error, replica);
          this.logger.warn(
            { blockId: replica.blockId, error: (error as Error).message },
            "block transfer failed",
          );
        },
      );
    }
  }

  /**
   * Refuses a pipeline whose downstream nodes are not data nodes of this pool. The targets come
   * from the writer, who may be anyone who reaches this port: forwarding to any address it names
   * would let it push data (a block's bytes, as an HTTP PUT) from inside the cluster to any
   * host:port. The name node hands out only registered data nodes, so a sound pipeline always
   * passes. The check uses the active name node's list of registered nodes, which each heartbeat
   * reply carries, rather than a signature over the targets: writers need no secret and no new
   * protocol, and a node registered since the last heartbeat is found by one early heartbeat.
   * Without a cluster secret anyone can register a node, so there is nothing to check against.
   */
  private async checkTargets(downstream: DatanodeID[]): Promise<void> {
    if (!this.config.clusterSecret || downstream.length === 0) return;
    const unknown = () =>
      downstream.map(xferAddress).filter((address) => !this.registeredDataNodes.has(address));
    if (unknown().length > 0) await this.refreshRegistrations();
    const refused = unknown();
    if (refused.length > 0)
      throw new RemoteException(
        "AccessControlException",
        `not authorized: x-tributary-targets names ${refused.join(", ")}, not a data node registered with the active name node; a pipeline's targets must come from the name node (addBlock)`,
        undefined,
        undefined,
        { closeConnection: true },
      );
  }

  /**
   * A heartbeat round that starts after this call, so its reply includes every node registered
   * before the call. Concurrent callers share rounds, and rounds start at most every 250 ms, so
   * a flood of bad targets costs the name node a few heartbeats a second.
   */
  private async refreshRegistrations(): Promise<void> {
    const calledAt = Date.now();
    for (;;) {
      if (!this.registrationRefresh) {
        const wait = Math.max(0, this.lastRegistrationRefresh + 250 - Date.now());
        this.registrationRefresh = (async () => {
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          this.lastRegistrationRefresh = Date.now();
          await this.heartbeatAll();
        })().finally(() => {
          this.registrationRefresh = undefined;
        });
      }
      await this.registrationRefresh;
      if (this.lastRegistrationRefresh >= calledAt) return;
    }
  }

  /** Best effort to every name node; full block reports repair anything lost. */
  private reportToAll(method: string, body: unknown): void {
    for (const address of this.config.nameNodes) {
      const path = `/rpc/${method}`;
      postJson(address, path, body, 5_000, signRequest(this.config.clusterSecret, "POST", path)).catch(
        (error) =>
          this.logger.debug({ nameNode: address, method, error: (error as Error).message }, "report failed"),
      );
    }
  }

  /** WebHDFS CREATE or APPEND: the request's body becomes the file, written as its HDFS client would. */
  private async receiveFile(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    options: WriteOptions,
  ): Promise<void> {
    let aborted = false;
    req.on("aborted", () => {
      aborted = true;
    });
    try {
      await writeFile(this.rpc, path, req, options);
    } catch (error) {
      if (aborted || req.destroyed) {
        this.logger.warn(
          { path, error: (error as Error).message },
          "writer disconnected mid-file: block in flight abandoned",
        );
        return;
      }
      throw error;
    }
    if (options.append) {
      res.writeHead(200, { "content-length": 0 });
    } else {
      res.writeHead(201, { location: `hdfs://${this.config.nameNodes[0]}${path}`, "content-length": 0 });
    }
    res.end();
  }

  /** WebHDFS's second step: the name node redirected the client here with the operation. */
  private async webhdfs(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = validatePath(decodeURIComponent(url.pathname.slice("/webhdfs/v1".length)) || "/");
    const op = (url.searchParams.get("op") ?? "").toUpperCase();
    const user = url.searchParams.get("user.name") ?? "dr.who";
    const clientName = `DFSClient_webhdfs_${this.id.datanodeUuid.slice(0, 8)}_${randomUUID().slice(0, 8)}`;
    const number = (name: string) => {
      const value = url.searchParams.get(name);
      if (value === null || value === "") return undefined;
      const parsed = Number(value);
      if (!Number.isSafeInteger(parsed) || parsed < 0)
        throw illegalArgument(`Invalid value for webhdfs parameter "${name}": ${value}`);
      return parsed;
    };
    if ((op === "CREATE" && req.method === "PUT") || (op === "APPEND" && req.method === "POST")) {
      if (this.webHdfsWriters >= this.config.maxWebHdfsWriters) {
        this.metrics.webHdfsWritesRefused.inc();
        throw retriable(
          `Data node ${infoAddress(this.id)} is serving ${this.webHdfsWriters} WebHDFS writes, its maximum (TRIBUTARY_MAX_WEBHDFS_WRITERS; each keeps up to a block in memory): retry ${op} ${path} after ${WRITER_RETRY_AFTER_SECONDS} s, or raise the maximum where data nodes have memory for more`,
          WRITER_RETRY_AFTER_SECONDS,
        );
      }
      this.webHdfsWriters++;
      this.metrics.webHdfsWriters.inc();
      try {
        return await this.receiveFile(req, res, path, {
          clientName,
          owner: user,
          permission: url.searchParams.get("permission") ?? undefined,
          overwrite: isTrue(url.searchParams.get("overwrite")),
          replication: number("replication") || undefined,
          blockSize: number("blocksize") || undefined,
          favoredNode: this.id.datanodeUuid,
          append: op === "APPEND",
          stallTimeoutMs: this.config.stallTimeoutMs,
          sendBlock: this.sendBlock,
        });
      } finally {
        this.webHdfsWriters--;
        this.metrics.webHdfsWriters.dec();
      }
    }
    if (op === "OPEN" && req.method === "GET") {
      const offset = number("offset") ?? 0;
      const length = number("length");
      const located = await this.rpc.call<LocatedBlocks>("getBlockLocations", {
        path,
        offset,
        length: length ?? null,
        clientUuid: this.id.datanodeUuid,
        user,
      });
      if (offset > located.fileLength)
        throw new RemoteException(
          "IOException",
          `Offset=${offset} out of the range [0, ${located.fileLength}); OPEN, path=${path}`,
        );
      const end = length === undefined ? located.fileLength : Math.min(located.fileLength, offset + length);
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": end - offset });
      try {
        for await (const chunk of this.readLocalFirst(located, offset, end - offset)) {
          if (!res.write(chunk)) await once(res, "drain");
        }
        res.end();
      } catch (error) {
        this.logger.warn({ path, error: (error as Error).message }, "read failed mid-stream");
        res.destroy(error as Error);
      }
      return;
    }
    if (op === "GETFILECHECKSUM" && req.method === "GET") {
      const located = await this.rpc.call<LocatedBlocks>("getBlockLocations", {
        path,
        offset: 0,
        length: null,
        clientUuid: this.id.datanodeUuid,
        user,
      });
      return sendJson(res, 200, { FileChecksum: await fileChecksum(path, located, this.id, this.store) });
    }
    throw new RemoteException(
      "UnsupportedOperationException",
      `op=${op} with ${req.method} is not served by a data node; send it to the name node`,
    );
  }
}

/** Requests whose body is a block or a file: they last as long as their writer takes. */
function isUpload(method: string | undefined, url: URL): boolean {
  if (method === "PUT" && /^\/blocks\/\d+$/.test(url.pathname)) return true;
  if (!url.pathname.startsWith("/webhdfs/v1")) return false;
  const op = (url.searchParams.get("op") ?? "").toUpperCase();
  return (op === "CREATE" && method === "PUT") || (op === "APPEND" && method === "POST");
}
