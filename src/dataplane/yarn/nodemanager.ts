/**
 * The node manager: YARN's NodeManager in one process. It registers its vcores and memory with
 * the resource manager and heartbeats (NodeStatusUpdater), launches containers as processes of
 * its pod with their command, environment, local and log directories (ContainerLauncher),
 * watches each container's process tree's resident memory from /proc and kills it past its
 * allocation with YARN's diagnostic (ContainersMonitor), and keeps and serves container logs
 * (/ws/v1/node/containers/{id}/logs/{file}). Only containers whose token the resource manager
 * signed are started.
 */
import { type ChildProcess, spawn } from "node:child_process";
import {
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
} from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import { Counter, Registry } from "prom-client";
import type { Logger } from "../../log.js";
import { callJson, HttpError, readJson, sendError, sendJson, verifyContainerToken } from "./http.js";
import {
  ContainerEnv,
  type LaunchContext,
  type NodeContainerReport,
  type NodeHeartbeatResponse,
  type RegisterNodeResponse,
  type StartContainerRequest,
} from "./protocol.js";
import { ExitStatus, type Resource } from "./scheduler.js";

export interface NodeManagerConfig {
  resourceManager: string;
  host: string;
  port: number;
  /** Host name the resource manager and masters reach this node at. */
  advertisedHost: string;
  rack: string;
  resource: Resource;
  localDir: string;
  logDir: string;
  /** yarn.nodemanager.container-monitor.interval-ms. */
  monitorIntervalMs: number;
  /** yarn.nodemanager.pmem-check-enabled. */
  pmemCheck: boolean;
}

interface ContainerRecord {
  id: string;
  appId: string;
  user: string;
  resource: Resource;
  isAM: boolean;
  priority: number;
  state: "RUNNING" | "COMPLETE";
  exitStatus?: number;
  diagnostics: string;
  process?: ChildProcess;
  pid?: number;
  logDir: string;
  startedAt: number;
  /** Why the node manager stopped it, which decides the exit status reported. */
  stoppedFor?: { exitStatus: number; diagnostics: string };
  rssBytes: number;
}

const PAGE_SIZE = 4096;

/** pid → children, from /proc/<pid>/stat (field 4 is the parent). */
function processTree(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return children;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // The command name may hold spaces and parentheses: fields start after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const parent = Number(fields[1]);
      const list = children.get(parent) ?? [];
      list.push(Number(entry));
      children.set(parent, list);
    } catch {
      // The process exited while we looked.
    }
  }
  return children;
}

function descendants(pid: number, tree: Map<number, number[]>): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) for (const child of tree.get(all[i]!) ?? []) all.push(child);
  return all;
}

function rssBytes(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += Number(readFileSync(`/proc/${pid}/statm`, "utf8").split(" ")[1]) * PAGE_SIZE;
    } catch {
      // Gone.
    }
  }
  return total;
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

export class NodeManager {
  private readonly containers = new Map<string, ContainerRecord>();
  private server!: Server;
  private containerTokenKey: Buffer | null = null;
  private heartbeatIntervalMs = 1000;
  private heartbeatTimer?: NodeJS.Timeout;
  private monitorTimer?: NodeJS.Timeout;
  private closed = false;
  private registered = false;
  readonly registry = new Registry();
  private readonly launched: Counter;
  private readonly killedOverMemory: Counter;

  constructor(
    private readonly config: NodeManagerConfig,
    private readonly log: Logger,
  ) {
    this.launched = new Counter({
      name: "tributary_yarn_containers_launched_total",
      help: "Containers launched by this node manager.",
      registers: [this.registry],
    });
    this.killedOverMemory = new Counter({
      name: "tributary_yarn_containers_killed_pmem_total",
      help: "Containers killed for running beyond their physical memory limit.",
      registers: [this.registry],
    });
  }

  get nodeId(): string {
    return `${this.config.advertisedHost}:${this.port}`;
  }

  get port(): number {
    const address = this.server?.address();
    return typeof address === "object" && address ? address.port : this.config.port;
  }

  get httpAddress(): string {
    return `${this.config.advertisedHost}:${this.port}`;
  }

  private get rm(): string {
    return `http://${this.config.resourceManager}`;
  }

  async start(): Promise<void> {
    mkdirSync(this.config.localDir, { recursive: true });
    mkdirSync(this.config.logDir, { recursive: true });
    this.server = createServer((request, response) => {
      this.route(request, response).catch((error: unknown) => {
        if (!(error instanceof HttpError)) this.log.error({ err: error, url: request.url }, "request failed");
        sendError(response, error);
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.config.port, this.config.host, () => resolve());
    });
    this.monitorTimer = setInterval(() => this.monitor(), this.config.monitorIntervalMs);
    this.scheduleHeartbeat(0);
    this.log.info({ nodeId: this.nodeId, resource: this.config.resource }, "node manager started");
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.heartbeatTimer);
    clearInterval(this.monitorTimer);
    const running = [...this.containers.values()].filter((c) => c.state === "RUNNING");
    for (const container of running) this.stop(container, ExitStatus.ABORTED, "node manager shut down");
    await Promise.all(
      running.map(
        (c) =>
          new Promise<void>((resolve) =>
            c.state === "COMPLETE" ? resolve() : c.process?.once("exit", () => resolve()),
          ),
      ),
    );
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- resource tracker

  private reports(): NodeContainerReport[] {
    return [...this.containers.values()].map((c) => ({
      containerId: c.id,
      appId: c.appId,
      state: c.state,
      exitStatus: c.exitStatus,
      diagnostics: c.diagnostics,
      resource: c.resource,
      isAM: c.isAM,
      priority: c.priority,
      user: c.user,
    }));
  }

  private async register(): Promise<void> {
    const response = await callJson<RegisterNodeResponse>(`${this.rm}/ws/v1/internal/nodes/register`, {
      body: {
        nodeId: this.nodeId,
        host: this.config.advertisedHost,
        rack: this.config.rack,
        httpAddress: this.httpAddress,
        resource: this.config.resource,
        containers: this.reports(),
      },
    });
    this.containerTokenKey = Buffer.from(response.containerTokenKey, "hex");
    this.heartbeatIntervalMs = response.heartbeatIntervalMs;
    this.registered = true;
    this.log.info(
      { resourceManager: this.config.resourceManager, nodeId: this.nodeId },
      "registered with the resource manager",
    );
  }

  private scheduleHeartbeat(delay: number): void {
    if (this.closed) return;
    this.heartbeatTimer = setTimeout(() => {
      this.heartbeat().then(
        () => this.scheduleHeartbeat(this.heartbeatIntervalMs),
        (error: unknown) => {
          this.log.warn(
            { err: (error as Error).message },
            "heartbeat to the resource manager failed; retrying",
          );
          this.scheduleHeartbeat(Math.min(this.heartbeatIntervalMs, 1000));
        },
      );
    }, delay);
  }

  private async heartbeat(): Promise<void> {
    if (!this.registered) await this.register();
    const response = await callJson<NodeHeartbeatResponse>(`${this.rm}/ws/v1/internal/nodes/heartbeat`, {
      body: { nodeId: this.nodeId, containers: this.reports() },
    });
    if (response.nodeAction === "RESYNC") {
      // The resource manager restarted or declared us lost: register again with what still runs.
      this.log.warn("resource manager asked for a resync: registering again");
      this.registered = false;
      await this.register();
      return;
    }
    for (const id of response.containersToBeRemovedFromNM) {
      const container = this.containers.get(id);
      if (container?.state === "COMPLETE") this.containers.delete(id);
    }
    for (const id of response.containersToCleanup) {
      const container = this.containers.get(id);
      if (container?.state === "RUNNING")
        this.stop(container, ExitStatus.KILLED_BY_RESOURCEMANAGER, "Container killed by the ResourceManager");
    }
    for (const launch of response.containersToLaunch) {
      try {
        this.launch(launch.container.containerToken, launch.launchContext);
      } catch (error) {
        this.log.error(
          { err: (error as Error).message, containerId: launch.container.id },
          "could not launch the master's container",
        );
      }
    }
  }

  // ---------------------------------------------------------------- containers

  /** ContainerManagementProtocol.startContainers: only what the resource manager signed. */
  launch(token: string, context: LaunchContext): ContainerRecord {
    if (!this.containerTokenKey)
      throw new HttpError(503, "NMNotYetReadyException", "node manager is not registered yet");
    const fields = verifyContainerToken(this.containerTokenKey, token);
    if (!fields)
      throw new HttpError(
        403,
        "InvalidToken",
        "container token is invalid or signed by an earlier resource manager",
      );
    if (fields.nodeId !== this.nodeId)
      throw new HttpError(
        400,
        "InvalidContainerException",
        `container ${fields.containerId} was allocated on ${fields.nodeId}, not on ${this.nodeId}`,
      );
    if (this.containers.has(fields.containerId))
      throw new HttpError(
        409,
        "InvalidContainerException",
        `container ${fields.containerId} was already started`,
      );
    if (!Array.isArray(context?.commands) || context.commands.length === 0)
      throw new HttpError(400, "InvalidContainerException", "launchContext.commands is empty");
    const logDir = join(this.config.logDir, fields.appId, fields.containerId);
    const workDir = join(
      this.config.localDir,
      "usercache",
      fields.user,
      "appcache",
      fields.appId,
      fields.containerId,
    );
    mkdirSync(logDir, { recursive: true });
    mkdirSync(workDir, { recursive: true });
    const command = context.commands.join(" ").replaceAll("<LOG_DIR>", logDir);
    const stdout = openSync(join(logDir, "stdout"), "a");
    const stderr = openSync(join(logDir, "stderr"), "a");
    const record: ContainerRecord = {
      id: fields.containerId,
      appId: fields.appId,
      user: fields.user,
      resource: { memory: fields.memory, vcores: fields.vcores },
      isAM: fields.isAM,
      priority: 0,
      state: "RUNNING",
      diagnostics: "",
      logDir,
      startedAt: Date.now(),
      rssBytes: 0,
    };
    this.containers.set(record.id, record);
    const environment = context.environment ?? {};
    const child = spawn("/bin/sh", ["-c", command], {
      cwd: workDir,
      stdio: ["ignore", stdout, stderr],
      env: {
        PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
        HOME: workDir,
        ...environment,
        [ContainerEnv.CONTAINER_ID]: record.id,
        [ContainerEnv.APPLICATION_ID]: record.appId,
        [ContainerEnv.NM_HOST]: this.config.advertisedHost,
        [ContainerEnv.NM_HTTP_ADDRESS]: this.httpAddress,
        [ContainerEnv.LOCAL_DIRS]: workDir,
        [ContainerEnv.LOG_DIRS]: logDir,
        [ContainerEnv.USER]: record.user,
        PWD: workDir,
      },
    });
    closeSync(stdout);
    closeSync(stderr);
    record.process = child;
    record.pid = child.pid;
    this.launched.inc();
    child.once("error", (error) => {
      this.complete(record, 127, `Exception from container-launch: ${error.message}`);
    });
    child.once("exit", (code, signal) => {
      if (record.stoppedFor)
        return this.complete(record, record.stoppedFor.exitStatus, record.stoppedFor.diagnostics);
      const exitCode = code ?? (signal ? 128 + (signal === "SIGKILL" ? 9 : 15) : 1);
      const diagnostics =
        exitCode === 0
          ? ""
          : `Exception from container-launch.\nContainer id: ${record.id}\nExit code: ${exitCode}\n${this.stderrTail(record)}`;
      this.complete(record, exitCode, diagnostics);
    });
    this.log.info(
      {
        containerId: record.id,
        appId: record.appId,
        isAM: record.isAM,
        memory: record.resource.memory,
        pid: child.pid,
      },
      "container launched",
    );
    return record;
  }

  private stderrTail(record: ContainerRecord): string {
    try {
      const text = readFileSync(join(record.logDir, "stderr"), "utf8");
      return text.length > 0 ? `Last 4096 bytes of stderr :\n${text.slice(-4096)}` : "";
    } catch {
      return "";
    }
  }

  private complete(record: ContainerRecord, exitStatus: number, diagnostics: string): void {
    if (record.state === "COMPLETE") return;
    record.state = "COMPLETE";
    record.exitStatus = exitStatus;
    record.diagnostics = diagnostics;
    record.process = undefined;
    this.log.info(
      { containerId: record.id, exitStatus, diagnostics: diagnostics.slice(0, 300) },
      "container completed",
    );
  }

  /** Stops a container's whole process tree: SIGTERM, then SIGKILL after 250 ms as YARN does. */
  stop(record: ContainerRecord, exitStatus: number, diagnostics: string): void {
    if (record.state !== "RUNNING" || !record.pid) return;
    record.stoppedFor ??= { exitStatus, diagnostics };
    const pids = descendants(record.pid, processTree());
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // Already gone.
      }
    }
    setTimeout(() => {
      for (const pid of descendants(record.pid!, processTree()).concat(pids)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
    }, 250).unref();
  }

  /** ContainersMonitor: the resident memory of each container's process tree against its limit. */
  private monitor(): void {
    const running = [...this.containers.values()].filter((c) => c.state === "RUNNING" && c.pid);
    if (running.length === 0) return;
    const tree = processTree();
    for (const container of running) {
      const pids = descendants(container.pid!, tree);
      container.rssBytes = rssBytes(pids);
      const limit = container.resource.memory * 1024 * 1024;
      if (this.config.pmemCheck && container.rssBytes > limit) {
        const message = `Container [pid=${container.pid},containerID=${container.id}] is running beyond physical memory limits. Current usage: ${mb(container.rssBytes)} of ${mb(limit)} physical memory used. Killing container.`;
        this.log.warn({ containerId: container.id, rssBytes: container.rssBytes, limit }, message);
        this.killedOverMemory.inc();
        this.stop(
          container,
          ExitStatus.KILLED_EXCEEDED_PMEM,
          `${message}\nContainer killed on request. Exit code is 143`,
        );
      }
    }
  }

  // ---------------------------------------------------------------- REST

  private containerInfo(c: ContainerRecord) {
    return {
      id: c.id,
      appId: c.appId,
      state: c.state === "RUNNING" ? "RUNNING" : "COMPLETE",
      exitCode: c.exitStatus ?? null,
      diagnostics: c.diagnostics,
      user: c.user,
      totalMemoryNeededMB: c.resource.memory,
      totalVCoresNeeded: c.resource.vcores,
      containerLogsLink: `http://${this.httpAddress}/ws/v1/node/containers/${c.id}/logs`,
      nodeId: this.nodeId,
      containerLogFiles: this.logFiles(c.logDir),
      pid: c.pid ?? null,
      rssMB: Math.round(c.rssBytes / 1024 / 1024),
    };
  }

  private logFiles(dir: string): string[] {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  }

  /** A container's log directory, also after it completed and was forgotten by the tracker. */
  private findLogDir(containerId: string): string | undefined {
    const known = this.containers.get(containerId);
    if (known) return known.logDir;
    if (!/^container_[\w]+$/.test(containerId)) return undefined;
    for (const app of this.logFiles(this.config.logDir)) {
      const dir = join(this.config.logDir, app, containerId);
      if (existsSync(dir)) return dir;
    }
    return undefined;
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://nm");
    const path = url.pathname.replace(/\/+$/, "");
    const method = request.method ?? "GET";
    if (path === "/healthz") return sendJson(response, 200, { status: "ok" });
    if (path === "/readyz")
      return sendJson(response, this.registered ? 200 : 503, {
        status: this.registered ? "ok" : "not registered",
      });
    if (path === "/metrics") {
      response.writeHead(200, { "content-type": this.registry.contentType });
      response.end(await this.registry.metrics());
      return;
    }
    if (path === "/ws/v1/internal/containers/start" && method === "POST") {
      const body = (await readJson(request)) as StartContainerRequest;
      const record = this.launch(String(body.containerToken ?? ""), body.launchContext);
      return sendJson(response, 200, { containerId: record.id });
    }
    const stopMatch = /^\/ws\/v1\/internal\/containers\/([^/]+)\/stop$/.exec(path);
    if (stopMatch && method === "POST") {
      const body = (await readJson(request)) as { containerToken?: string };
      const fields = this.containerTokenKey
        ? verifyContainerToken(this.containerTokenKey, String(body.containerToken ?? ""))
        : null;
      if (!fields || fields.containerId !== stopMatch[1])
        throw new HttpError(403, "InvalidToken", "container token missing or not for this container");
      const record = this.containers.get(stopMatch[1]!);
      if (record)
        this.stop(record, ExitStatus.KILLED_BY_APPMASTER, "Container killed by the ApplicationMaster.");
      return sendJson(response, 200, {});
    }
    if (path === "/ws/v1/node" || path === "/ws/v1/node/info")
      return sendJson(response, 200, {
        nodeInfo: {
          id: this.nodeId,
          nodeHostName: this.config.advertisedHost,
          totalPmemAllocatedContainersMB: this.config.resource.memory,
          totalVCoresAllocatedContainers: this.config.resource.vcores,
          pmemCheckEnabled: this.config.pmemCheck,
          nodeManagerVersion: "tributary-0.1.0",
          healthReport: "",
          nodeHealthy: true,
        },
      });
    if (path === "/ws/v1/node/containers")
      return sendJson(response, 200, {
        containers: { container: [...this.containers.values()].map((c) => this.containerInfo(c)) },
      });
    const match = /^\/ws\/v1\/node\/containers\/([^/]+)(\/logs(?:\/([^/]+))?)?$/.exec(path);
    if (match) {
      const [, id, logs, file] = match;
      const logDir = this.findLogDir(id!);
      if (!logDir)
        throw new HttpError(404, "NotFoundException", `container ${id} is not known on ${this.nodeId}`);
      if (!logs) {
        const record = this.containers.get(id!);
        if (!record)
          throw new HttpError(
            404,
            "NotFoundException",
            `container ${id} has completed; its logs remain at /logs`,
          );
        return sendJson(response, 200, { container: this.containerInfo(record) });
      }
      if (!file)
        return sendJson(
          response,
          200,
          this.logFiles(logDir).map((name) => ({
            fileName: name,
            fileSize: statSync(join(logDir, name)).size,
            containerLogsType: "LOCAL",
          })),
        );
      if (!/^[\w.-]+$/.test(file) || !existsSync(join(logDir, file)))
        throw new HttpError(404, "NotFoundException", `container ${id} has no log file '${file}'`);
      response.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
      createReadStream(join(logDir, file)).pipe(response);
      return;
    }
    throw new HttpError(404, "NotFoundException", `no resource at ${method} ${path}`);
  }
}
