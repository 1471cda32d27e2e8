/**
 * A BlockPool on loopback for the storage tests: real `tributary namenode` and `tributary datanode`
 * processes, each in its own temp directory on ports it picks itself (announced on stdout).
 * Processes run as `node --import tsx src/cli.ts ...` so a kill -9 hits the role itself, not a
 * wrapper that would leave it running.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { NameNodeRpc } from "../../src/dataplane/storage/dfsClient.js";
import { type LocatedBlock, postJson } from "../../src/dataplane/storage/protocol.js";
import { awaitReady } from "../support/roles.js";

const ROOT = new URL("../..", import.meta.url).pathname;

export interface RoleProcess {
  child: ChildProcess;
  args: string[];
  ready: Record<string, unknown>;
  log: string[];
}

export interface NameNodeProcess extends RoleProcess {
  dir: string;
  rpcPort: number;
  webhdfsPort: number;
}

export interface DataNodeProcess extends RoleProcess {
  dir: string;
  rack: string;
  datanodeUuid: string;
  xferPort: number;
  infoPort: number;
}

/**
 * Node's own flags for every role process, such as `--cpu-prof --cpu-prof-dir=/tmp/prof` to
 * profile the name node and data nodes under a benchmark (NODE_OPTIONS refuses `--cpu-prof`).
 */
const roleNodeFlags = (process.env.TRIBUTARY_ROLE_NODE_FLAGS ?? "").split(" ").filter(Boolean);

export async function startRole(role: "namenode" | "datanode", args: string[]): Promise<RoleProcess> {
  const child = spawn(process.execPath, [...roleNodeFlags, "--import", "tsx", "src/cli.ts", role, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TRIBUTARY_LOG_LEVEL: process.env.TRIBUTARY_LOG_LEVEL ?? "info" },
  });
  const { ready, log } = await awaitReady(child, role, 60_000, 2000);
  return { child, args, ready, log };
}

export async function stopRole(role: RoleProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (role.child.exitCode !== null || role.child.signalCode !== null) return;
  const exited = once(role.child, "exit");
  role.child.kill(signal);
  const timer = setTimeout(() => role.child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

/** How long the name nodes wait for a data node's heartbeat before they declare it dead. */
export const HEARTBEAT_EXPIRY_MS = 30_000;

/** A bound on waiting for a killed data node to be declared dead: the expiry, and room for a loaded machine. */
export const DECLARED_DEAD_WITHIN_MS = HEARTBEAT_EXPIRY_MS + 90_000;

export interface ClusterOptions {
  nameNodes?: 1 | 2;
  dataNodes: number;
  racks?: string[];
  nameNodeArgs?: string[];
  dataNodeArgs?: string[];
  /**
   * Start the pool with a cluster secret (the default, as the operator does), so the suites
   * exercise signed internal calls; false runs an open pool as in local development.
   */
  clusterSecret?: boolean;
}

export class StorageCluster {
  nameNodes: NameNodeProcess[] = [];
  dataNodes: DataNodeProcess[] = [];
  /** The pool's cluster secret, to sign internal calls a test makes (signRequest); undefined for an open pool. */
  secret: Buffer | undefined;

  private constructor(
    readonly root: string,
    readonly options: ClusterOptions,
  ) {}

  static async start(options: ClusterOptions): Promise<StorageCluster> {
    const root = await mkdtemp(join(tmpdir(), "tributary-storage-"));
    const cluster = new StorageCluster(root, options);
    try {
      if (options.clusterSecret ?? true) {
        cluster.secret = randomBytes(32);
        await writeFile(cluster.secretFile, cluster.secret, { mode: 0o600 });
      }
      const nameDir = join(root, "name");
      for (let i = 0; i < (options.nameNodes ?? 1); i++) await cluster.startNameNode(nameDir);
      // Each returns once the active name node has it live.
      await Promise.all(Array.from({ length: options.dataNodes }, (_, i) => cluster.startDataNode(i)));
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  get secretFile(): string {
    return join(this.root, "cluster-secret");
  }

  /** The roles' flags for the cluster secret, as the operator mounts it. */
  private secretArgs(): string[] {
    return this.secret ? ["--cluster-secret-file", this.secretFile] : [];
  }

  async startNameNode(
    nameDir: string,
    ports?: { rpcPort: number; webhdfsPort: number },
  ): Promise<NameNodeProcess> {
    const args = [
      "--host",
      "127.0.0.1",
      "--advertised-host",
      "127.0.0.1",
      "--rpc-port",
      String(ports?.rpcPort ?? 0),
      "--webhdfs-port",
      String(ports?.webhdfsPort ?? 0),
      "--name-dir",
      nameDir,
      // A data node's heartbeat first awaits statfs, and the active renews its epoch with utimes:
      // both on the libuv pool, which a burst of disk I/O on a loaded machine can hold for
      // seconds. So a node is declared dead after 30 s of silence and the standby takes over
      // after 10 s.
      "--heartbeat-expiry-ms",
      String(HEARTBEAT_EXPIRY_MS),
      // Stale (probably gone: reads and writes go elsewhere) sooner than the WebHDFS client stops
      // retrying a refused data node (5.6 s of backoff), so a request sent straight after a kill -9
      // still ends on a live one.
      "--stale-datanode-interval-ms",
      "3000",
      "--replication-interval-ms",
      "300",
      "--takeover-timeout-ms",
      "10000",
      "--tail-interval-ms",
      "300",
      ...this.secretArgs(),
      ...(this.options.nameNodeArgs ?? []),
    ];
    const role = await startRole("namenode", args);
    const process: NameNodeProcess = {
      ...role,
      dir: nameDir,
      rpcPort: role.ready.rpcPort as number,
      webhdfsPort: role.ready.webhdfsPort as number,
    };
    const existing = this.nameNodes.findIndex((nn) => nn.rpcPort === process.rpcPort);
    if (existing >= 0) this.nameNodes[existing] = process;
    else this.nameNodes.push(process);
    return process;
  }

  /** Kills (default -9) and starts again on the same directory and ports. */
  async restartNameNode(index: number, signal: NodeJS.Signals = "SIGKILL"): Promise<NameNodeProcess> {
    const old = this.nameNodes[index]!;
    await stopRole(old, signal);
    return this.startNameNode(old.dir, old);
  }

  /**
   * Starts data node `index` (again, on its directory, after a stop), and returns once the active
   * name node has it live on its new port. `advertisedHost` is the name it reports to the name
   * node; 127.0.0.1 unless a test needs it to look like a pod.
   */
  async startDataNode(
    index: number,
    { advertisedHost = "127.0.0.1", rack }: { advertisedHost?: string; rack?: string } = {},
  ): Promise<DataNodeProcess> {
    const racks = this.options.racks ?? ["/rack-a", "/rack-b"];
    rack ??= racks[index % racks.length]!;
    const dir = join(this.root, `data-${index}`);
    const args = [
      "--host",
      "127.0.0.1",
      "--advertised-host",
      advertisedHost,
      "--xfer-port",
      "0",
      "--info-port",
      "0",
      "--data-dir",
      dir,
      "--rack",
      rack,
      "--namenodes",
      this.nameNodes.map((nn) => `127.0.0.1:${nn.rpcPort}`).join(","),
      "--heartbeat-interval-ms",
      "300",
      "--block-report-interval-ms",
      "5000",
      ...this.secretArgs(),
      ...(this.options.dataNodeArgs ?? []),
    ];
    const role = await startRole("datanode", args);
    const node: DataNodeProcess = {
      ...role,
      dir,
      rack,
      datanodeUuid: role.ready.datanodeUuid as string,
      xferPort: role.ready.xferPort as number,
      infoPort: role.ready.infoPort as number,
    };
    this.dataNodes[index] = node;
    // The ready line comes before the first heartbeat, and a node started again on its directory
    // keeps its uuid: until that heartbeat the name node may still hold the previous process's
    // registration, with its old port, live and fresh, and hand that port out in a pipeline.
    await this.waitFor(async () => {
      const registered = (await this.status()).datanodes.find(
        (info) => info.datanodeUuid === node.datanodeUuid,
      );
      return registered?.xferPort === node.xferPort && registered.adminState !== "DEAD" && !registered.stale;
    }, `data node ${index} (${node.datanodeUuid}) registered with the active name node on port ${node.xferPort}`);
    return node;
  }

  webhdfsAddresses(): string[] {
    return this.nameNodes.map((nn) => `127.0.0.1:${nn.webhdfsPort}`);
  }

  client(user = "tester"): WebHdfsClient {
    return new WebHdfsClient({ nameNodes: this.webhdfsAddresses(), user, failoverTimeoutMs: 60_000 });
  }

  /** The /status of the active name node (the first that answers as active). */
  async status(): Promise<NameNodeStatus> {
    for (const nn of this.nameNodes) {
      if (nn.child.exitCode !== null || nn.child.signalCode !== null) continue;
      try {
        const response = await fetch(`http://127.0.0.1:${nn.webhdfsPort}/status`, {
          signal: AbortSignal.timeout(2_000),
        });
        const status = (await response.json()) as NameNodeStatus;
        if (status.haState === "active") return status;
      } catch {
        // Try the next one.
      }
    }
    throw new Error("no active name node");
  }

  async blockLocations(path: string): Promise<{
    fileLength: number;
    underConstruction: boolean;
    blocks: {
      block: { blockId: number; generationStamp: number; numBytes: number };
      locations: { datanodeUuid: string }[];
    }[];
  }> {
    let lastError: unknown;
    for (const nn of this.nameNodes) {
      try {
        return await postJson(`127.0.0.1:${nn.rpcPort}`, "/rpc/getBlockLocations", { path, user: "hdfs" });
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }

  async waitFor(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      try {
        if (await check()) return;
      } catch (error) {
        lastError = error;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error(
      `timed out waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ""}`,
    );
  }

  async stop(): Promise<void> {
    await Promise.all([...this.dataNodes, ...this.nameNodes].filter(Boolean).map((role) => stopRole(role)));
    await rm(this.root, { recursive: true, force: true });
  }
}

export interface NameNodeStatus {
  haState: string;
  txid: number;
  liveDataNodes: number;
  deadDataNodes: number;
  /** Live data nodes silent past the stale interval (HDFS's NumStaleDataNodes). */
  staleDataNodes: number;
  decommissioningDataNodes: number;
  decommissionedDataNodes: number;
  capacity: number;
  files: number;
  blocks: number;
  underReplicatedBlocks: number;
  missingBlocks: number;
  corruptReplicas: number;
  pendingReplicationBlocks: number;
  datanodes: {
    datanodeUuid: string;
    hostName: string;
    xferPort: number;
    networkLocation: string;
    capacity: number;
    adminState: "NORMAL" | "DECOMMISSION_INPROGRESS" | "DECOMMISSIONED" | "DEAD";
    stale: boolean;
  }[];
}

/**
 * A name-node client that records every pipeline the name node hands out, with the nodes its
 * request excluded: a test can kill or stop a node of the current pipeline and then check which
 * node the writer blamed.
 */
export class PipelineRecordingRpc extends NameNodeRpc {
  readonly pipelines: { located: LocatedBlock; excluded: string[] }[] = [];

  override async call<T>(method: string, body: unknown): Promise<T> {
    const result = await super.call<T>(method, body);
    if (method === "addBlock") {
      const excluded = (body as { excludeNodes?: string[] }).excludeNodes ?? [];
      this.pipelines.push({ located: result as LocatedBlock, excluded });
    }
    return result;
  }
}
