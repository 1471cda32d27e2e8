/**
 * The name node (HDFS's NameNode): the namesystem (fsNamesystem.ts: namespace operations, edit
 * log, HA, leases, checkpoints) behind two servers. The RPC port serves the client and data-node
 * protocols (rpcServer.ts) and nothing else; the HTTP port serves WebHDFS (webhdfs.ts), health,
 * /status, /metrics and /admin, and no RPC. Each refuses the other's routes.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { Counter, Gauge, Registry } from "prom-client";
import type { Logger } from "../../../log.js";
import { checkSignature } from "../clusterAuth.js";
import { RemoteException, readRequestBody, sendError, sendJson } from "../protocol.js";
import { FSNamesystem } from "./fsNamesystem.js";
import { parseDecommissionRequest } from "./hosts.js";
import type { NameNodeConfig } from "./nameNodeConfig.js";
import { acceptRpcUpgrade, type RpcConnection, serveRpc } from "./rpcServer.js";
import { serveWebHdfs, type WebHdfsOperation, webHdfsOperations } from "./webhdfs.js";

export type { NameNodeConfig } from "./nameNodeConfig.js";

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
  readonly syncSeconds = new Gauge({
    name: "tributary_namenode_edit_log_sync_seconds",
    help: "Time the edit log's synchronous writes took in all (over tributary_namenode_edit_log_syncs: the mean sync)",
    registers: [this.registry],
  });
  readonly files = new Gauge({
    name: "tributary_namenode_files",
    help: "Files and directories",
    registers: [this.registry],
  });
  readonly directories = new Gauge({
    name: "tributary_namenode_directories",
    help: "Directories (included in tributary_namenode_files)",
    registers: [this.registry],
  });
  readonly bytes = new Gauge({
    name: "tributary_namenode_file_bytes",
    help: "Bytes of committed blocks in the namespace (the files' lengths, before replication)",
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
  readonly fs: FSNamesystem;
  readonly metrics = new NameNodeMetrics();
  rpcPort = 0;
  httpPort = 0;
  private readonly servers: Server[] = [];
  /** Upgraded RPC connections: a server's close does not reach them. */
  private readonly rpcConnections = new Set<RpcConnection>();
  private readonly webHdfs: Record<string, WebHdfsOperation>;

  constructor(
    readonly config: NameNodeConfig,
    private readonly logger: Logger,
  ) {
    this.fs = new FSNamesystem(config, logger);
    this.fs.onTransaction = () => this.metrics.transactions.inc();
    this.fs.stopServing = () => {
      for (const server of this.servers) server.close();
      for (const connection of this.rpcConnections) connection.destroy();
    };
    this.webHdfs = webHdfsOperations(this.fs);
  }

  get namespace() {
    return this.fs.namespace;
  }

  get haState() {
    return this.fs.haState;
  }

  get lastAppliedTxid() {
    return this.fs.lastAppliedTxid;
  }

  /** Writes a checkpoint now (see FSNamesystem.checkpoint). */
  checkpoint(): Promise<void> {
    return this.fs.checkpoint();
  }

  async start(): Promise<void> {
    await this.fs.start();
    this.rpcPort = await this.listen(this.config.rpcPort, (req, res) => serveRpc(this.fs, req, res));
    this.servers.at(-1)!.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const connection = acceptRpcUpgrade(this.fs, req, socket, head);
      if (!connection) return;
      this.rpcConnections.add(connection);
      socket.once("close", () => this.rpcConnections.delete(connection));
    });
    this.httpPort = await this.listen(this.config.httpPort, (req, res) => this.serveHttp(req, res));
    await this.fs.haTick();
    this.fs.startBackgroundWork();
    this.logger.info(
      {
        rpcPort: this.rpcPort,
        httpPort: this.httpPort,
        haState: this.fs.haState,
        txid: this.fs.lastAppliedTxid,
      },
      "name node started",
    );
    if (!this.config.clusterSecret)
      this.logger.warn(
        "no cluster secret (TRIBUTARY_CLUSTER_SECRET_FILE or TRIBUTARY_CLUSTER_SECRET): any host that reaches this name node can register as a data node and use /admin; set one outside local development",
      );
  }

  async close(): Promise<void> {
    const drained = Promise.all([
      ...[...this.rpcConnections].map((connection) => {
        setTimeout(() => connection.destroy(), 5_000).unref();
        return connection.close();
      }),
      ...this.servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeIdleConnections();
            setTimeout(() => server.closeAllConnections(), 5_000).unref();
          }),
      ),
    ]);
    await this.fs.close(drained);
  }

  private async listen(
    port: number,
    serve: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  ): Promise<number> {
    const server = createServer((req, res) => {
      serve(req, res).catch((error) => sendError(res, error));
    });
    server.keepAliveTimeout = 5_000;
    server.listen(port, this.config.host);
    await once(server, "listening");
    this.servers.push(server);
    return (server.address() as AddressInfo).port;
  }

  /** The HTTP port: WebHDFS, health, status, metrics and administration. */
  private async serveHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = req.url ?? "/";
    const query = raw.indexOf("?");
    const pathname = query < 0 ? raw : raw.slice(0, query);
    const params = new URLSearchParams(query < 0 ? "" : raw.slice(query + 1));
    const fs = this.fs;
    if (pathname === "/webhdfs/v1" || pathname.startsWith("/webhdfs/v1/"))
      return serveWebHdfs(
        fs,
        this.webHdfs,
        req,
        res,
        pathname,
        params,
        `${this.config.advertisedHost}:${this.rpcPort}`,
      );
    if (pathname === "/healthz") return sendJson(res, 200, { status: "ok", haState: fs.haState });
    // Only the active is ready: the client Service sends traffic to it alone.
    if (pathname === "/readyz")
      return sendJson(res, fs.haState === "active" ? 200 : 503, { haState: fs.haState });
    if (pathname === "/status") return sendJson(res, 200, fs.status());
    if (pathname.startsWith("/admin/"))
      checkSignature(this.config.clusterSecret, req.method, pathname, req.headers);
    if (pathname === "/admin/decommission" && req.method === "PUT") return this.decommission(req, res);
    if (pathname === "/metrics") return this.serveMetrics(res);
    req.resume();
    throw new RemoteException(
      "UnsupportedOperationException",
      `${req.method} ${pathname} is not served on the name node's HTTP port${pathname.startsWith("/rpc/") ? " (RPC is on its RPC port)" : ""}`,
      undefined,
      404,
    );
  }

  private async serveMetrics(res: ServerResponse): Promise<void> {
    const status = this.fs.status();
    this.metrics.files.set(status.files);
    this.metrics.directories.set(status.directories);
    this.metrics.bytes.set(status.bytes);
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
    this.metrics.active.set(this.fs.haState === "active" ? 1 : 0);
    this.metrics.syncs.set(this.fs.editLog.syncs);
    this.metrics.syncSeconds.set(this.fs.editLog.syncMs / 1000);
    const text = await this.metrics.registry.metrics();
    res.writeHead(200, { "content-type": this.metrics.registry.contentType });
    res.end(text);
  }

  /**
   * `PUT /admin/decommission` with `{"hosts": [...]}`: replaces the decommission set (HDFS's
   * exclude file plus `dfsadmin -refreshNodes`) and answers the nodes it matched with their
   * admin state. Only the active decides; the operator sets it again after a failover.
   */
  private async decommission(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Not a WebHDFS operation: the standby answers 503 as /readyz does (the operator then asks
    // the other name node), with the StandbyException body every other refusal carries.
    if (this.fs.haState !== "active")
      throw new RemoteException(
        "StandbyException",
        `Operation category WRITE is not supported in state ${this.fs.haState}`,
        undefined,
        503,
      );
    const hosts = parseDecommissionRequest(await readRequestBody(req, 1024 * 1024, "decommission request"));
    const matched = this.fs.blockManager.setDecommissionSet(hosts);
    this.fs.logger.info(
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
}
