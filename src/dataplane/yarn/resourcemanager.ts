/**
 * The resource manager: YARN's ResourceManager in one process. It keeps the applications
 * (RMAppManager: NEW → SUBMITTED → ACCEPTED → RUNNING → FINISHED / FAILED / KILLED, attempts up
 * to maxAttempts), tracks node managers (ResourceTracker: register, heartbeat, liveness), runs the
 * capacity scheduler, launches masters through node heartbeats (AMLauncher), serves the
 * ApplicationMasterProtocol and YARN's REST API (/ws/v1/cluster/...). Its state is a journal on
 * its volume (RMStateStore), and running containers are recovered from node managers'
 * registrations, so running applications keep going across a restart (work-preserving restart).
 */
import { randomBytes } from "node:crypto";
import { appendFileSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import { Counter, Gauge, Registry } from "prom-client";
import type { Logger } from "../../log.js";
import { HttpError, readJson, sendError, sendJson, signContainerToken } from "./http.js";
import {
  type AllocatedContainer,
  type AllocateRequest,
  type AllocateResponse,
  applicationId,
  appOfAttempt,
  attemptId,
  ContainerEnv,
  containerId,
  type FinishMasterRequest,
  type LaunchContext,
  type NodeHeartbeatRequest,
  type NodeHeartbeatResponse,
  type RegisterMasterRequest,
  type RegisterNodeRequest,
} from "./protocol.js";
import {
  CapacityScheduler,
  type Container,
  ExitStatus,
  QueueConfigError,
  type QueueDefinition,
  type Resource,
  type ResourceRequest,
  SubmissionRefused,
} from "./scheduler.js";

export type AppState = "NEW" | "SUBMITTED" | "ACCEPTED" | "RUNNING" | "FINISHED" | "FAILED" | "KILLED";
export type FinalStatus = "UNDEFINED" | "SUCCEEDED" | "FAILED" | "KILLED";

export interface ResourceManagerConfig {
  host: string;
  port: number;
  /** Address masters and clients are given (host:port). */
  advertisedAddress?: string;
  stateDir: string;
  queues: QueueDefinition[];
  minimumAllocation: Resource;
  maximumAllocation: Resource;
  nodeHeartbeatIntervalMs: number;
  /** yarn.nm.liveness-monitor.expiry-interval-ms. */
  nodeExpiryMs: number;
  /** yarn.resourcemanager.am.max-attempts. */
  maxAttempts: number;
  preemption: boolean;
  preemptionIntervalMs: number;
  preemptionMaxWaitBeforeKillMs: number;
  /** Static user → groups mapping (hadoop.security.group.mapping's role). */
  userGroups: Record<string, string[]>;
  clusterId: string;
}

interface Attempt {
  attempt: number;
  token: string;
  startTime: number;
  amContainerId?: string;
  amNodeId?: string;
  registered: boolean;
  trackingUrl?: string;
  responseId: number;
  finalStatus?: FinalStatus;
  finalDiagnostics?: string;
  failed?: boolean;
  /** Whether the failure counts against maxAttempts (not for a lost node or preemption). */
  counted?: boolean;
}

interface App {
  id: string;
  name: string;
  user: string;
  queue: string;
  applicationType: string;
  priority: number;
  maxAttempts: number;
  amResource: Resource;
  amSpec: LaunchContext;
  state: AppState;
  finalStatus: FinalStatus;
  diagnostics: string;
  submitTime: number;
  startTime: number;
  finishTime: number;
  attempts: Attempt[];
  /** After a restart, the deadline for node managers to report the master's container. */
  recoverUntil?: number;
}

interface NodeRecord {
  id: string;
  host: string;
  rack: string;
  httpAddress: string;
  resource: Resource;
  state: "RUNNING" | "LOST" | "SHUTDOWN";
  lastHeartbeat: number;
  toLaunch: Array<{ container: AllocatedContainer; launchContext: LaunchContext }>;
  toCleanup: Set<string>;
  /** Completed containers already applied, so a repeated report is not applied twice. */
  seenComplete: Set<string>;
}

type JournalRecord =
  | { type: "epoch"; epoch: number; clusterTimestamp: number }
  | { type: "queues"; queues: QueueDefinition[] }
  | { type: "app"; app: Omit<App, "attempts" | "state" | "finalStatus" | "diagnostics" | "finishTime"> }
  | { type: "attempt"; appId: string; attempt: number; token: string; startTime: number }
  | { type: "amContainer"; appId: string; attempt: number; containerId: string; nodeId: string }
  | {
      type: "final";
      appId: string;
      state: AppState;
      finalStatus: FinalStatus;
      diagnostics: string;
      finishTime: number;
    };

const FINAL: ReadonlySet<AppState> = new Set(["FINISHED", "FAILED", "KILLED"]);

/** RMStateStore as an append-only journal: each record fsynced before the change is answered. */
class Journal {
  private fd = -1;
  constructor(private readonly file: string) {}
  read(): JournalRecord[] {
    if (!existsSync(this.file)) return [];
    const records: JournalRecord[] = [];
    for (const line of readFileSync(this.file, "utf8").split("\n")) {
      if (!line) continue;
      try {
        records.push(JSON.parse(line) as JournalRecord);
      } catch {
        // A torn last line (crash mid-write) was never acknowledged: drop it.
      }
    }
    return records;
  }
  open(): void {
    this.fd = openSync(this.file, "a");
  }
  append(record: JournalRecord): void {
    appendFileSync(this.fd, `${JSON.stringify(record)}\n`);
    fsyncSync(this.fd);
  }
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

export class ResourceManager {
  private readonly scheduler: CapacityScheduler;
  private readonly apps = new Map<string, App>();
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly journal: Journal;
  private server!: Server;
  private timers: NodeJS.Timeout[] = [];
  private epoch = 0;
  private readonly clusterTimestamp = Date.now();
  private appSequence = 0;
  private readonly startedOn = Date.now();
  private readonly containerTokenKey = randomBytes(32);
  private queues: QueueDefinition[];
  readonly registry = new Registry();
  private readonly counters: {
    appsSubmitted: number;
    containersAllocated: number;
    containersPreempted: number;
  } = { appsSubmitted: 0, containersAllocated: 0, containersPreempted: 0 };
  private readonly allocatedCounter: Counter;

  constructor(
    private readonly config: ResourceManagerConfig,
    private readonly log: Logger,
  ) {
    mkdirSync(config.stateDir, { recursive: true });
    this.journal = new Journal(join(config.stateDir, "rm-state.jsonl"));
    this.queues = config.queues;
    const records = this.journal.read();
    for (const record of records) {
      if (record.type === "epoch") this.epoch = record.epoch + 1;
      if (record.type === "queues") this.queues = record.queues;
    }
    this.scheduler = new CapacityScheduler(this.queues, {
      minimumAllocation: config.minimumAllocation,
      maximumAllocation: config.maximumAllocation,
      preemption: { enabled: config.preemption, maxWaitBeforeKillMs: config.preemptionMaxWaitBeforeKillMs },
      containerId: (app, sequence) => containerId(app.id, this.epoch, app.attempt, sequence),
    });
    this.journal.open();
    this.journal.append({ type: "epoch", epoch: this.epoch, clusterTimestamp: this.clusterTimestamp });
    this.recover(records);
    this.allocatedCounter = new Counter({
      name: "tributary_yarn_containers_allocated_total",
      help: "Containers allocated by the capacity scheduler.",
      registers: [this.registry],
    });
    const apps = this.apps;
    new Gauge({
      name: "tributary_yarn_apps_running",
      help: "Applications RUNNING.",
      registers: [this.registry],
      collect() {
        this.set([...apps.values()].filter((a) => a.state === "RUNNING").length);
      },
    });
    const nodes = this.nodes;
    new Gauge({
      name: "tributary_yarn_active_nodes",
      help: "Node managers registered and heartbeating.",
      registers: [this.registry],
      collect() {
        this.set([...nodes.values()].filter((n) => n.state === "RUNNING").length);
      },
    });
  }

  // ---------------------------------------------------------------- recovery

  private recover(records: JournalRecord[]): void {
    for (const record of records) {
      switch (record.type) {
        case "app": {
          const app: App = {
            ...record.app,
            state: "ACCEPTED",
            finalStatus: "UNDEFINED",
            diagnostics: "",
            finishTime: 0,
            attempts: [],
          };
          this.apps.set(app.id, app);
          break;
        }
        case "attempt": {
          const app = this.apps.get(record.appId);
          app?.attempts.push({
            attempt: record.attempt,
            token: record.token,
            startTime: record.startTime,
            registered: false,
            responseId: 0,
          });
          break;
        }
        case "amContainer": {
          const attempt = this.apps.get(record.appId)?.attempts.find((a) => a.attempt === record.attempt);
          if (attempt) {
            attempt.amContainerId = record.containerId;
            attempt.amNodeId = record.nodeId;
          }
          break;
        }
        case "final": {
          const app = this.apps.get(record.appId);
          if (app) {
            app.state = record.state;
            app.finalStatus = record.finalStatus;
            app.diagnostics = record.diagnostics;
            app.finishTime = record.finishTime;
          }
          break;
        }
      }
    }
    const deadline = Date.now() + this.config.nodeExpiryMs;
    for (const app of this.apps.values()) {
      const sequence = Number(app.id.split("_")[2]);
      if (app.id.startsWith(`application_${this.clusterTimestamp}_`))
        this.appSequence = Math.max(this.appSequence, sequence);
      if (FINAL.has(app.state)) continue;
      const attempt = app.attempts.at(-1);
      try {
        this.scheduler.addApplication({
          id: app.id,
          queue: app.queue,
          user: app.user,
          priority: app.priority,
          amResource: attempt?.amContainerId ? undefined : app.amResource,
          attempt: attempt?.attempt ?? 1,
          recovering: true,
        });
      } catch (error) {
        this.finish(app, "FAILED", "FAILED", `could not be recovered: ${(error as Error).message}`);
        continue;
      }
      if (!attempt) this.startAttempt(app);
      else if (attempt.amContainerId) {
        // The master's container is expected back from its node manager's registration.
        app.state = "RUNNING";
        app.recoverUntil = deadline;
      }
      this.log.info({ appId: app.id, state: app.state }, "application recovered from the state store");
    }
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    this.server = createServer((request, response) => {
      this.route(request, response).catch((error: unknown) => {
        if (!(error instanceof HttpError)) this.log.error({ err: error, url: request.url }, "request failed");
        sendError(response, error);
      });
    });
    this.server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.config.port, this.config.host, () => resolve());
    });
    this.timers.push(setInterval(() => this.checkLiveness(), Math.min(1000, this.config.nodeExpiryMs / 3)));
    this.timers.push(setInterval(() => this.preemptionRound(), this.config.preemptionIntervalMs));
    this.log.info(
      { address: this.address, epoch: this.epoch, queues: this.queues.map((q) => q.path) },
      "resource manager started",
    );
  }

  get port(): number {
    const address = this.server.address();
    return typeof address === "object" && address ? address.port : this.config.port;
  }

  get address(): string {
    return (
      this.config.advertisedAddress ??
      `${this.config.host === "0.0.0.0" ? "127.0.0.1" : this.config.host}:${this.port}`
    );
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.journal.close();
  }

  // ---------------------------------------------------------------- applications

  private newApplicationId(): string {
    return applicationId(this.clusterTimestamp, ++this.appSequence);
  }

  private groupsOf(user: string): string[] {
    return this.config.userGroups[user] ?? [];
  }

  /** Submission (RMAppManager.submitApplication): refusals leave the application FAILED with why. */
  submit(request: SubmitApplicationRequest, user: string): App {
    const id = request["application-id"];
    if (!/^application_\d+_\d+$/.test(id ?? ""))
      throw new HttpError(
        400,
        "BadRequestException",
        "application-id is missing or malformed: ask /ws/v1/cluster/apps/new-application for one",
      );
    if (this.apps.has(id))
      throw new HttpError(400, "BadRequestException", `application ${id} was already submitted`);
    const command = request["am-container-spec"]?.commands?.command;
    if (!command)
      throw new HttpError(400, "BadRequestException", "am-container-spec.commands.command is required");
    const amResource: Resource = {
      memory: Number(request.resource?.memory ?? 1024),
      vcores: Number(request.resource?.vCores ?? 1),
    };
    if (!(amResource.memory > 0) || !(amResource.vcores > 0))
      throw new HttpError(400, "BadRequestException", "resource.memory and resource.vCores must be positive");
    try {
      this.scheduler.checkRequestable(amResource);
    } catch (error) {
      throw new HttpError(
        400,
        "InvalidResourceRequestException",
        `application master: ${(error as Error).message}`,
      );
    }
    const environment: Record<string, string> = {};
    for (const entry of request["am-container-spec"]?.environment?.entry ?? [])
      environment[entry.key] = entry.value;
    const app: App = {
      id,
      name: request["application-name"] ?? "",
      user,
      queue: request.queue ?? "default",
      applicationType: request["application-type"] ?? "YARN",
      priority: Number(request.priority ?? 0),
      maxAttempts: Math.max(
        1,
        Math.min(Number(request["max-app-attempts"] ?? this.config.maxAttempts), this.config.maxAttempts),
      ),
      amResource,
      amSpec: { commands: [command], environment },
      state: "NEW",
      finalStatus: "UNDEFINED",
      diagnostics: "",
      submitTime: Date.now(),
      startTime: Date.now(),
      finishTime: 0,
      attempts: [],
    };
    this.apps.set(id, app);
    this.counters.appsSubmitted++;
    app.state = "SUBMITTED";
    try {
      app.queue = this.scheduler.resolveLeaf(app.queue);
      this.scheduler.addApplication({
        id,
        queue: app.queue,
        user,
        groups: this.groupsOf(user),
        priority: app.priority,
        amResource,
      });
    } catch (error) {
      if (!(error instanceof SubmissionRefused)) throw error;
      this.log.info({ appId: id, user, queue: app.queue, reason: error.message }, "application rejected");
      app.state = "FAILED";
      app.finalStatus = "FAILED";
      app.diagnostics = `Application ${id} submitted by user ${user} was rejected: ${error.message}`;
      app.finishTime = Date.now();
      return app;
    }
    const { attempts: _a, state: _s, finalStatus: _f, diagnostics: _d, finishTime: _t, ...saved } = app;
    this.journal.append({ type: "app", app: saved });
    app.state = "ACCEPTED";
    app.diagnostics = "[Application is Activated, waiting for resources to be assigned for AM]";
    this.startAttempt(app);
    this.scheduleAll();
    return app;
  }

  private startAttempt(app: App): void {
    const attempt: Attempt = {
      attempt: app.attempts.length + 1,
      token: randomBytes(24).toString("base64url"),
      startTime: Date.now(),
      registered: false,
      responseId: 0,
    };
    app.attempts.push(attempt);
    this.journal.append({
      type: "attempt",
      appId: app.id,
      attempt: attempt.attempt,
      token: attempt.token,
      startTime: attempt.startTime,
    });
    if (attempt.attempt > 1) {
      // YARN does not keep containers across attempts (keep-containers-across-application-attempts off).
      for (const container of this.scheduler.containersOfApp(app.id)) this.cleanup(container);
      this.scheduler.newAttempt(app.id, attempt.attempt);
    }
  }

  private finish(app: App, state: AppState, finalStatus: FinalStatus, diagnostics: string): void {
    if (FINAL.has(app.state) && app.finishTime) return;
    app.state = state;
    app.finalStatus = finalStatus;
    app.diagnostics = diagnostics;
    app.finishTime = Date.now();
    this.journal.append({
      type: "final",
      appId: app.id,
      state,
      finalStatus,
      diagnostics,
      finishTime: app.finishTime,
    });
    for (const container of this.scheduler.removeApplication(app.id)) this.cleanup(container);
    this.log.info({ appId: app.id, state, finalStatus, diagnostics }, "application finished");
  }

  kill(app: App, by: string): void {
    if (FINAL.has(app.state)) return;
    this.finish(app, "KILLED", "KILLED", `Application killed by user ${by}.`);
  }

  private cleanup(container: Container): void {
    this.nodes.get(container.nodeId)?.toCleanup.add(container.id);
  }

  /** The master's container ended: the attempt is over; another starts if attempts remain. */
  private masterEnded(app: App, attempt: Attempt, exitStatus: number, diagnostics: string): void {
    if (FINAL.has(app.state)) return;
    if (attempt.finalStatus) {
      const state: AppState =
        attempt.finalStatus === "SUCCEEDED"
          ? "FINISHED"
          : attempt.finalStatus === "KILLED"
            ? "KILLED"
            : "FAILED";
      this.finish(
        app,
        state === "FAILED" ? "FINISHED" : state,
        attempt.finalStatus,
        attempt.finalDiagnostics ?? "",
      );
      return;
    }
    // As YARN, a master lost with its node or preempted does not count against maxAttempts.
    attempt.failed = true;
    attempt.counted = exitStatus !== ExitStatus.ABORTED && exitStatus !== ExitStatus.PREEMPTED;
    const failures = app.attempts.filter((a) => a.failed && a.counted).length;
    const message =
      `AM Container for ${attemptId(app.id, attempt.attempt)} exited with exitCode: ${exitStatus}. ${diagnostics}`.trim();
    if (failures >= app.maxAttempts) {
      this.finish(
        app,
        "FAILED",
        "FAILED",
        `Application ${app.id} failed ${app.maxAttempts} times due to ${message}. Failing the application.`,
      );
      return;
    }
    this.log.warn(
      { appId: app.id, attempt: attempt.attempt, exitStatus, diagnostics },
      "application master failed; starting a new attempt",
    );
    app.state = "ACCEPTED";
    app.diagnostics = `Attempt ${attempt.attempt}: ${message}. Starting attempt ${attempt.attempt + 1}.`;
    this.startAttempt(app);
    this.scheduleAll();
  }

  // ---------------------------------------------------------------- scheduling

  private allocatedRecord(container: Container): AllocatedContainer {
    const node = this.nodes.get(container.nodeId)!;
    const app = this.apps.get(container.appId)!;
    return {
      id: container.id,
      appId: container.appId,
      nodeId: container.nodeId,
      nodeHttpAddress: node.httpAddress,
      host: container.host,
      resource: container.resource,
      priority: container.priority,
      isAM: container.isAM,
      locality: container.locality,
      containerToken: signContainerToken(this.containerTokenKey, {
        containerId: container.id,
        appId: container.appId,
        nodeId: container.nodeId,
        user: app.user,
        memory: container.resource.memory,
        vcores: container.resource.vcores,
        isAM: container.isAM,
      }),
    };
  }

  /** Masters' containers go to their node's next heartbeat (AMLauncher); others wait for allocate. */
  private afterAllocation(containers: Container[]): void {
    for (const container of containers) {
      this.counters.containersAllocated++;
      this.allocatedCounter.inc();
      if (!container.isAM) continue;
      const app = this.apps.get(container.appId)!;
      this.scheduler.pullAllocated(app.id);
      const attempt = app.attempts.at(-1)!;
      attempt.amContainerId = container.id;
      attempt.amNodeId = container.nodeId;
      this.journal.append({
        type: "amContainer",
        appId: app.id,
        attempt: attempt.attempt,
        containerId: container.id,
        nodeId: container.nodeId,
      });
      const record = this.allocatedRecord(container);
      this.nodes.get(container.nodeId)!.toLaunch.push({
        container: record,
        launchContext: {
          commands: app.amSpec.commands,
          environment: {
            ...app.amSpec.environment,
            [ContainerEnv.APP_ATTEMPT_ID]: attemptId(app.id, attempt.attempt),
            [ContainerEnv.MAX_APP_ATTEMPTS]: String(app.maxAttempts),
            [ContainerEnv.RESOURCE_MANAGER]: this.address,
            [ContainerEnv.AM_TOKEN]: attempt.token,
          },
        },
      });
      app.diagnostics = "[AM container allocated, waiting for the master to register]";
    }
  }

  private scheduleAll(): void {
    this.afterAllocation(this.scheduler.schedule());
  }

  private preemptionRound(): void {
    const killed = this.scheduler.preemptionRound();
    for (const container of killed) {
      this.counters.containersPreempted++;
      this.cleanup(container);
      this.log.info({ containerId: container.id, appId: container.appId }, "container preempted");
      const app = this.apps.get(container.appId);
      const attempt = app?.attempts.at(-1);
      if (app && attempt && container.id === attempt.amContainerId)
        this.masterEnded(app, attempt, ExitStatus.PREEMPTED, "Container preempted by scheduler");
    }
    if (killed.length > 0) this.scheduleAll();
  }

  private checkLiveness(): void {
    const now = Date.now();
    for (const node of this.nodes.values()) {
      if (node.state !== "RUNNING" || now - node.lastHeartbeat < this.config.nodeExpiryMs) continue;
      node.state = "LOST";
      const lost = this.scheduler.removeNode(node.id, "lost");
      this.log.warn(
        { nodeId: node.id, containers: lost.length },
        "node manager lost: its containers are reported lost to their masters",
      );
      for (const container of lost)
        this.containerEnded(container, ExitStatus.ABORTED, `Container released on a *lost* node ${node.id}`);
    }
    for (const app of this.apps.values()) {
      if (app.recoverUntil === undefined || now < app.recoverUntil) continue;
      app.recoverUntil = undefined;
      const attempt = app.attempts.at(-1)!;
      const known = attempt.amContainerId && this.scheduler.container(attempt.amContainerId);
      if (!known && !FINAL.has(app.state))
        this.masterEnded(
          app,
          attempt,
          ExitStatus.ABORTED,
          "the master's container was not reported by any node manager after the resource manager restarted",
        );
    }
  }

  /** After the scheduler completed a container: a master's container ends its attempt. */
  private containerEnded(container: Container, exitStatus: number, diagnostics: string): void {
    if (!container.isAM) return;
    const app = this.apps.get(container.appId);
    const attempt = app?.attempts.find((a) => a.amContainerId === container.id);
    if (app && attempt && attempt === app.attempts.at(-1))
      this.masterEnded(app, attempt, exitStatus, diagnostics);
  }

  // ---------------------------------------------------------------- node managers

  registerNode(request: RegisterNodeRequest) {
    const existing = this.nodes.get(request.nodeId);
    if (existing?.state === "RUNNING") {
      for (const container of this.scheduler.removeNode(request.nodeId, "re-registered"))
        this.containerEnded(container, ExitStatus.ABORTED, "node manager re-registered");
    }
    const node: NodeRecord = {
      id: request.nodeId,
      host: request.host,
      rack: request.rack || "/default-rack",
      httpAddress: request.httpAddress,
      resource: request.resource,
      state: "RUNNING",
      lastHeartbeat: Date.now(),
      toLaunch: [],
      toCleanup: new Set(),
      seenComplete: new Set(),
    };
    this.nodes.set(node.id, node);
    this.scheduler.addNode(node.id, node.host, node.rack, request.resource);
    // Work-preserving restart: containers still running are charged again to their applications.
    let recovered = 0;
    for (const report of request.containers ?? []) {
      if (report.state === "COMPLETE") {
        node.seenComplete.add(report.containerId);
        this.applyCompletion(
          report.containerId,
          report.appId,
          report.exitStatus ?? ExitStatus.INVALID,
          report.diagnostics ?? "",
        );
        continue;
      }
      const app = this.apps.get(report.appId);
      if (!app || FINAL.has(app.state)) {
        node.toCleanup.add(report.containerId);
        continue;
      }
      const ok = this.scheduler.recoverContainer({
        id: report.containerId,
        appId: report.appId,
        nodeId: node.id,
        host: node.host,
        resource: report.resource,
        priority: report.priority,
        isAM: report.isAM,
      });
      if (ok) recovered++;
      const attempt = app.attempts.at(-1);
      if (ok && report.isAM && attempt?.amContainerId === report.containerId) app.recoverUntil = undefined;
    }
    this.log.info({ nodeId: node.id, resource: request.resource, recovered }, "node manager registered");
    this.afterAllocation(this.scheduler.nodeUpdate(node.id));
    return {
      nodeId: node.id,
      heartbeatIntervalMs: this.config.nodeHeartbeatIntervalMs,
      containerTokenKey: this.containerTokenKey.toString("hex"),
    };
  }

  private applyCompletion(id: string, appId: string, exitStatus: number, diagnostics: string): void {
    const completed = this.scheduler.completeContainer(id, exitStatus, diagnostics);
    if (completed) this.containerEnded(completed, exitStatus, diagnostics);
    else
      this.scheduler.reportCompleted(appId, { containerId: id, state: "COMPLETE", exitStatus, diagnostics });
  }

  nodeHeartbeat(request: NodeHeartbeatRequest): NodeHeartbeatResponse {
    const node = this.nodes.get(request.nodeId);
    if (node?.state !== "RUNNING")
      return {
        nodeAction: "RESYNC",
        containersToLaunch: [],
        containersToCleanup: [],
        containersToBeRemovedFromNM: [],
      };
    node.lastHeartbeat = Date.now();
    const removable: string[] = [];
    for (const report of request.containers ?? []) {
      if (report.state !== "COMPLETE") continue;
      removable.push(report.containerId);
      if (node.seenComplete.has(report.containerId)) continue;
      node.seenComplete.add(report.containerId);
      node.toCleanup.delete(report.containerId);
      const exitStatus = report.exitStatus ?? ExitStatus.INVALID;
      this.applyCompletion(report.containerId, report.appId, exitStatus, report.diagnostics ?? "");
    }
    this.afterAllocation(this.scheduler.nodeUpdate(node.id));
    const response: NodeHeartbeatResponse = {
      nodeAction: "NORMAL",
      containersToLaunch: node.toLaunch,
      containersToCleanup: [...node.toCleanup],
      containersToBeRemovedFromNM: removable,
    };
    node.toLaunch = [];
    for (const id of removable) if (node.seenComplete.size > 10_000) node.seenComplete.delete(id);
    return response;
  }

  // ---------------------------------------------------------------- masters

  private attemptOf(attemptIdText: string, token: string | undefined): { app: App; attempt: Attempt } {
    let parsed: { appId: string; attempt: number };
    try {
      parsed = appOfAttempt(attemptIdText);
    } catch (error) {
      throw new HttpError(400, "BadRequestException", (error as Error).message);
    }
    const app = this.apps.get(parsed.appId);
    const attempt = app?.attempts.find((a) => a.attempt === parsed.attempt);
    if (!app || !attempt)
      throw new HttpError(
        404,
        "ApplicationAttemptNotFoundException",
        `application attempt ${attemptIdText} is unknown`,
      );
    if (!token || token !== attempt.token)
      throw new HttpError(
        403,
        "AccessControlException",
        `application attempt ${attemptIdText}: missing or wrong AM token`,
      );
    return { app, attempt };
  }

  registerMaster(request: RegisterMasterRequest, token: string | undefined) {
    const { app, attempt } = this.attemptOf(request.applicationAttemptId, token);
    if (attempt !== app.attempts.at(-1) || FINAL.has(app.state))
      throw new HttpError(
        409,
        "InvalidApplicationMasterRequestException",
        `attempt ${request.applicationAttemptId} is no longer the current attempt of ${app.id} (${app.state})`,
      );
    attempt.registered = true;
    attempt.trackingUrl = request.trackingUrl;
    if (app.state !== "RUNNING")
      this.log.info({ appId: app.id, attempt: attempt.attempt }, "application master registered");
    app.state = "RUNNING";
    app.diagnostics = "";
    const containers: AllocatedContainer[] = [];
    for (const node of this.nodes.values())
      for (const container of this.scheduler.containersOfNode(node.id))
        if (container.appId === app.id && !container.isAM) containers.push(this.allocatedRecord(container));
    return {
      maximumResourceCapability: this.config.maximumAllocation,
      queue: app.queue,
      containersFromPreviousAttempts: containers,
    };
  }

  allocate(request: AllocateRequest, token: string | undefined): AllocateResponse {
    const { app, attempt } = this.attemptOf(request.applicationAttemptId, token);
    if (FINAL.has(app.state) || attempt !== app.attempts.at(-1))
      return this.emptyAllocate(request.responseId, "AM_SHUTDOWN");
    if (!attempt.registered)
      throw new HttpError(
        409,
        "ApplicationMasterNotRegisteredException",
        `application master ${request.applicationAttemptId} is not registered (the resource manager restarted): register again and resend all asks`,
      );
    const asks: ResourceRequest[] = (request.ask ?? []).map((ask) => ({
      priority: Number(ask.priority),
      resourceName: String(ask.resourceName ?? "*"),
      capability: { memory: Number(ask.capability?.memory), vcores: Number(ask.capability?.vcores ?? 1) },
      numContainers: Number(ask.numContainers),
      relaxLocality: ask.relaxLocality ?? true,
    }));
    try {
      this.scheduler.updateAsks(app.id, asks);
    } catch (error) {
      if (error instanceof SubmissionRefused)
        throw new HttpError(400, "InvalidResourceRequestException", error.message);
      throw error;
    }
    for (const id of request.release ?? []) {
      const container = this.scheduler.container(id);
      if (container?.appId === app.id) this.cleanup(container);
    }
    this.scheduler.release(app.id, request.release ?? []);
    if (asks.length > 0 || (request.release ?? []).length > 0) this.scheduleAll();
    attempt.responseId = request.responseId + 1;
    const cluster = this.scheduler.clusterResource;
    return {
      responseId: attempt.responseId,
      allocatedContainers: this.scheduler.pullAllocated(app.id).map((c) => this.allocatedRecord(c)),
      completedContainersStatuses: this.scheduler.pullCompleted(app.id),
      numClusterNodes: [...this.nodes.values()].filter((n) => n.state === "RUNNING").length,
      availableResources: cluster,
      preempt: { strictContract: { container: this.scheduler.preemptionMessage(app.id) } },
    };
  }

  private emptyAllocate(responseId: number, amCommand?: "AM_SHUTDOWN"): AllocateResponse {
    return {
      responseId: responseId + 1,
      allocatedContainers: [],
      completedContainersStatuses: [],
      numClusterNodes: this.nodes.size,
      availableResources: { memory: 0, vcores: 0 },
      preempt: { strictContract: { container: [] } },
      amCommand,
    };
  }

  finishMaster(request: FinishMasterRequest, token: string | undefined): { isUnregistered: boolean } {
    const { app, attempt } = this.attemptOf(request.applicationAttemptId, token);
    attempt.finalStatus = request.finalApplicationStatus;
    attempt.finalDiagnostics = request.diagnostics ?? "";
    if (request.trackingUrl) attempt.trackingUrl = request.trackingUrl;
    const state: AppState = request.finalApplicationStatus === "KILLED" ? "KILLED" : "FINISHED";
    // YARN: an unregistered master finishes the application (FINISHED with its final status).
    this.finish(app, state, request.finalApplicationStatus, request.diagnostics ?? "");
    return { isUnregistered: true };
  }

  // ---------------------------------------------------------------- queues

  refreshQueues(queues: QueueDefinition[]): void {
    this.scheduler.refreshQueues(queues);
    this.queues = queues;
    this.journal.append({ type: "queues", queues });
    this.log.info({ queues: queues.map((q) => `${q.path}=${q.capacity}`) }, "queues refreshed");
    this.scheduleAll();
  }

  setPreemption(enabled: boolean): void {
    this.scheduler.setPreemption(enabled);
  }

  // ---------------------------------------------------------------- REST

  private appInfo(app: App) {
    const usage = this.scheduler.applicationUsage(app.id);
    const attempt = app.attempts.at(-1);
    const amNode = attempt?.amNodeId ? this.nodes.get(attempt.amNodeId) : undefined;
    return {
      id: app.id,
      user: app.user,
      name: app.name,
      queue: app.queue,
      state: app.state,
      finalStatus: app.finalStatus,
      progress: FINAL.has(app.state) ? 100 : 0,
      trackingUI: FINAL.has(app.state) ? "History" : "ApplicationMaster",
      trackingUrl: attempt?.trackingUrl ?? "",
      diagnostics: app.diagnostics,
      clusterId: this.clusterTimestamp,
      applicationType: app.applicationType,
      priority: app.priority,
      startedTime: app.startTime,
      launchTime: attempt?.startTime ?? 0,
      finishedTime: app.finishTime,
      elapsedTime: (app.finishTime || Date.now()) - app.startTime,
      amContainerLogs:
        amNode && attempt?.amContainerId
          ? `http://${amNode.httpAddress}/ws/v1/node/containers/${attempt.amContainerId}/logs`
          : "",
      amHostHttpAddress: amNode?.httpAddress ?? "",
      allocatedMB: usage?.used.memory ?? 0,
      allocatedVCores: usage?.used.vcores ?? 0,
      runningContainers: usage?.containers ?? 0,
      memorySeconds: 0,
      vcoreSeconds: 0,
      runningAttempts: app.attempts.length,
      maxAttempts: app.maxAttempts,
    };
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://rm");
    const path = url.pathname.replace(/\/+$/, "");
    const method = request.method ?? "GET";
    const user =
      url.searchParams.get("user.name") ??
      (request.headers["x-tributary-user"] as string | undefined) ??
      "dr.who";
    const token = (request.headers.authorization ?? "").replace(/^Bearer /, "") || undefined;

    if (path === "/healthz" || path === "/readyz") return sendJson(response, 200, { status: "ok" });
    if (path === "/metrics") {
      response.writeHead(200, { "content-type": this.registry.contentType });
      response.end(await this.registry.metrics());
      return;
    }
    // ResourceTracker
    if (path === "/ws/v1/internal/nodes/register" && method === "POST")
      return sendJson(response, 200, this.registerNode((await readJson(request)) as RegisterNodeRequest));
    if (path === "/ws/v1/internal/nodes/heartbeat" && method === "POST")
      return sendJson(response, 200, this.nodeHeartbeat((await readJson(request)) as NodeHeartbeatRequest));
    // ApplicationMasterProtocol
    if (path === "/ws/v1/internal/am/register" && method === "POST")
      return sendJson(
        response,
        200,
        this.registerMaster((await readJson(request)) as RegisterMasterRequest, token),
      );
    if (path === "/ws/v1/internal/am/allocate" && method === "POST")
      return sendJson(response, 200, this.allocate((await readJson(request)) as AllocateRequest, token));
    if (path === "/ws/v1/internal/am/finish" && method === "POST")
      return sendJson(
        response,
        200,
        this.finishMaster((await readJson(request)) as FinishMasterRequest, token),
      );

    if (path === "/ws/v1/cluster" || path === "/ws/v1/cluster/info")
      return sendJson(response, 200, {
        clusterInfo: {
          id: this.clusterTimestamp,
          startedOn: this.startedOn,
          state: "STARTED",
          haState: "ACTIVE",
          rmStateStoreName: "org.apache.hadoop.yarn.server.resourcemanager.recovery.FileSystemRMStateStore",
          resourceManagerVersion: "tributary-0.1.0",
          hadoopVersion: "3.4.2-compatible",
          epoch: this.epoch,
          clusterId: this.config.clusterId,
        },
      });
    if (path === "/ws/v1/cluster/metrics")
      return sendJson(response, 200, { clusterMetrics: this.clusterMetrics() });
    if (path === "/ws/v1/cluster/scheduler")
      return sendJson(response, 200, { scheduler: { schedulerInfo: this.scheduler.schedulerInfo() } });
    if (path === "/ws/v1/cluster/scheduler-conf") {
      if (method === "GET")
        return sendJson(response, 200, { queues: this.queues, preemption: this.config.preemption });
      if (method === "PUT") {
        const body = (await readJson(request)) as { queues?: QueueDefinition[]; preemption?: boolean };
        if (!Array.isArray(body.queues))
          throw new HttpError(400, "BadRequestException", "body needs {queues: [...]}");
        try {
          this.refreshQueues(body.queues);
        } catch (error) {
          if (error instanceof QueueConfigError)
            throw new HttpError(400, "BadRequestException", error.message);
          throw error;
        }
        if (typeof body.preemption === "boolean") {
          this.config.preemption = body.preemption;
          this.setPreemption(body.preemption);
        }
        return sendJson(response, 200, { queues: this.queues });
      }
    }
    if (path === "/ws/v1/cluster/nodes")
      return sendJson(response, 200, {
        nodes: { node: [...this.nodes.values()].map((n) => this.nodeInfo(n)) },
      });
    const nodeMatch = /^\/ws\/v1\/cluster\/nodes\/([^/]+)$/.exec(path);
    if (nodeMatch) {
      const node = this.nodes.get(decodeURIComponent(nodeMatch[1]!));
      if (!node) throw new HttpError(404, "NotFoundException", `node ${nodeMatch[1]} is not known`);
      return sendJson(response, 200, { node: this.nodeInfo(node) });
    }
    if (path === "/ws/v1/cluster/apps/new-application" && method === "POST")
      return sendJson(response, 200, {
        "application-id": this.newApplicationId(),
        "maximum-resource-capability": {
          memory: this.config.maximumAllocation.memory,
          vCores: this.config.maximumAllocation.vcores,
        },
      });
    if (path === "/ws/v1/cluster/apps") {
      if (method === "POST") {
        const app = this.submit((await readJson(request)) as SubmitApplicationRequest, user);
        return sendJson(response, 202, {}, { location: `/ws/v1/cluster/apps/${app.id}` });
      }
      const states = url.searchParams.get("states") ?? url.searchParams.get("state");
      const queue = url.searchParams.get("queue");
      const wanted = states ? new Set(states.toUpperCase().split(",")) : null;
      const list = [...this.apps.values()]
        .filter(
          (a) =>
            (!wanted || wanted.has(a.state)) &&
            (!queue || a.queue === queue || a.queue.endsWith(`.${queue}`)),
        )
        .map((a) => this.appInfo(a));
      return sendJson(response, 200, { apps: list.length ? { app: list } : null });
    }
    const appMatch = /^\/ws\/v1\/cluster\/apps\/(application_\d+_\d+)(\/state|\/appattempts)?$/.exec(path);
    if (appMatch) {
      const app = this.apps.get(appMatch[1]!);
      if (!app) throw new HttpError(404, "NotFoundException", `app with id: ${appMatch[1]} not found`);
      if (appMatch[2] === "/state") {
        if (method === "PUT") {
          const body = (await readJson(request)) as { state?: string };
          if (body.state !== "KILLED")
            throw new HttpError(400, "BadRequestException", 'only {"state": "KILLED"} can be requested');
          if (user !== app.user && !this.scheduler.mayAdminister(app.queue, user, this.groupsOf(user)))
            throw new HttpError(
              403,
              "ForbiddenException",
              `user ${user} may not kill ${app.id} of user ${app.user} (administerQueue of ${app.queue})`,
            );
          this.kill(app, user);
          return sendJson(response, 200, { state: app.state });
        }
        return sendJson(response, 200, { state: app.state });
      }
      if (appMatch[2] === "/appattempts")
        return sendJson(response, 200, {
          appAttempts: {
            appAttempt: app.attempts.map((a) => {
              const node = a.amNodeId ? this.nodes.get(a.amNodeId) : undefined;
              return {
                id: a.attempt,
                appAttemptId: attemptId(app.id, a.attempt),
                startTime: a.startTime,
                containerId: a.amContainerId ?? "",
                nodeId: a.amNodeId ?? "",
                nodeHttpAddress: node?.httpAddress ?? "",
                logsLink:
                  node && a.amContainerId
                    ? `http://${node.httpAddress}/ws/v1/node/containers/${a.amContainerId}/logs`
                    : "",
              };
            }),
          },
        });
      return sendJson(response, 200, { app: this.appInfo(app) });
    }
    throw new HttpError(404, "NotFoundException", `no resource at ${method} ${path}`);
  }

  private nodeInfo(node: NodeRecord) {
    const usage = this.scheduler.nodeUsage(node.id);
    return {
      id: node.id,
      rack: node.rack,
      state: node.state,
      nodeHostName: node.host,
      nodeHTTPAddress: node.httpAddress,
      lastHealthUpdate: node.lastHeartbeat,
      healthReport: "",
      numContainers: usage?.containers ?? 0,
      usedMemoryMB: usage?.used.memory ?? 0,
      availMemoryMB: usage?.available.memory ?? 0,
      usedVirtualCores: usage?.used.vcores ?? 0,
      availableVirtualCores: usage?.available.vcores ?? 0,
      totalResource: { memory: node.resource.memory, vCores: node.resource.vcores },
    };
  }

  private clusterMetrics() {
    const apps = [...this.apps.values()];
    const count = (state: AppState) => apps.filter((a) => a.state === state).length;
    const cluster = this.scheduler.clusterResource;
    let allocatedMB = 0;
    let allocatedVirtualCores = 0;
    let containersAllocated = 0;
    for (const node of this.nodes.values()) {
      const usage = this.scheduler.nodeUsage(node.id);
      if (!usage) continue;
      allocatedMB += usage.used.memory;
      allocatedVirtualCores += usage.used.vcores;
      containersAllocated += usage.containers;
    }
    const nodes = [...this.nodes.values()];
    return {
      appsSubmitted: this.counters.appsSubmitted,
      appsCompleted: count("FINISHED"),
      appsPending: count("ACCEPTED") + count("SUBMITTED"),
      appsRunning: count("RUNNING"),
      appsFailed: count("FAILED"),
      appsKilled: count("KILLED"),
      reservedMB: 0,
      availableMB: cluster.memory - allocatedMB,
      allocatedMB,
      totalMB: cluster.memory,
      reservedVirtualCores: 0,
      availableVirtualCores: cluster.vcores - allocatedVirtualCores,
      allocatedVirtualCores,
      totalVirtualCores: cluster.vcores,
      containersAllocated,
      containersReserved: 0,
      containersPending: 0,
      totalNodes: nodes.length,
      activeNodes: nodes.filter((n) => n.state === "RUNNING").length,
      lostNodes: nodes.filter((n) => n.state === "LOST").length,
      unhealthyNodes: 0,
      decommissionedNodes: 0,
      rebootedNodes: 0,
      shutdownNodes: nodes.filter((n) => n.state === "SHUTDOWN").length,
      containersPreempted: this.counters.containersPreempted,
    };
  }
}

/** The body of POST /ws/v1/cluster/apps, in YARN's field names. */
export interface SubmitApplicationRequest {
  "application-id": string;
  "application-name"?: string;
  queue?: string;
  priority?: number;
  "am-container-spec"?: {
    commands?: { command?: string };
    environment?: { entry?: Array<{ key: string; value: string }> };
  };
  "max-app-attempts"?: number;
  resource?: { memory?: number; vCores?: number };
  "application-type"?: string;
}
