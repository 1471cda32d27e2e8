/**
 * The application-master side of the protocol (YARN's AMRMClient + NMClient in one): register
 * with the resource manager, keep a table of outstanding asks, heartbeat `allocate`, hand
 * allocated containers to the application, start them on their node managers, report completed
 * ones, finish with a final status. After a resource-manager restart the master registers again
 * and resends its whole ask table, as YARN's AMRMClient does on ApplicationMasterNotRegistered.
 */
import type { Logger } from "../../log.js";
import { callJson, HttpError } from "./http.js";
import {
  type AllocatedContainer,
  type AllocateResponse,
  ContainerEnv,
  type ContainerStatusReport,
  type LaunchContext,
  type RegisterMasterResponse,
  type Resource,
  type ResourceRequest,
} from "./protocol.js";

export interface MasterCallbacks {
  onAllocated(containers: AllocatedContainer[]): Promise<void> | void;
  onCompleted(statuses: ContainerStatusReport[]): Promise<void> | void;
  onShutdown?(): void;
}

export class ApplicationMasterClient {
  readonly attemptId: string;
  private readonly rm: string;
  private readonly token: string;
  private responseId = 0;
  /** priority → (resourceName → numContainers), and the capability of that priority. */
  private readonly table = new Map<number, { capability: Resource; counts: Map<string, number> }>();
  private changed = new Set<string>();
  private releases: string[] = [];
  private stopped = false;
  progress = 0;

  constructor(
    private readonly log: Logger,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    const attempt = env[ContainerEnv.APP_ATTEMPT_ID];
    const rm = env[ContainerEnv.RESOURCE_MANAGER];
    const token = env[ContainerEnv.AM_TOKEN];
    if (!attempt || !rm || !token)
      throw new Error(
        `an application master runs in a container: ${ContainerEnv.APP_ATTEMPT_ID}, ${ContainerEnv.RESOURCE_MANAGER} and ${ContainerEnv.AM_TOKEN} are not set`,
      );
    this.attemptId = attempt;
    this.rm = `http://${rm}`;
    this.token = token;
  }

  private call<T>(path: string, body: unknown): Promise<T> {
    return callJson<T>(`${this.rm}${path}`, { body, headers: { authorization: `Bearer ${this.token}` } });
  }

  async register(trackingUrl: string): Promise<RegisterMasterResponse> {
    return this.call<RegisterMasterResponse>("/ws/v1/internal/am/register", {
      applicationAttemptId: this.attemptId,
      host: process.env[ContainerEnv.NM_HOST] ?? "",
      trackingUrl,
    });
  }

  /** Sets how many containers are wanted at a priority (YARN: the `*` request's total). */
  want(priority: number, capability: Resource, count: number, hosts: string[] = []): void {
    const entry = this.table.get(priority) ?? { capability, counts: new Map<string, number>() };
    entry.capability = capability;
    entry.counts.set("*", Math.max(0, count));
    for (const host of hosts) entry.counts.set(host, (entry.counts.get(host) ?? 0) + 1);
    this.table.set(priority, entry);
    this.changed.add(`${priority}|*`);
    for (const host of hosts) this.changed.add(`${priority}|${host}`);
  }

  outstanding(priority: number): number {
    return this.table.get(priority)?.counts.get("*") ?? 0;
  }

  release(containerId: string): void {
    this.releases.push(containerId);
  }

  private asks(all: boolean): ResourceRequest[] {
    const asks: ResourceRequest[] = [];
    for (const [priority, entry] of this.table)
      for (const [resourceName, numContainers] of entry.counts) {
        if (!all && !this.changed.has(`${priority}|${resourceName}`)) continue;
        asks.push({
          priority,
          resourceName,
          capability: entry.capability,
          numContainers,
          relaxLocality: true,
        });
      }
    return asks;
  }

  /** One allocate heartbeat; throws only when the application is over for this master. */
  async heartbeat(trackingUrl: string, callbacks: MasterCallbacks): Promise<void> {
    let response: AllocateResponse;
    const ask = this.asks(false);
    const release = this.releases;
    try {
      response = await this.call<AllocateResponse>("/ws/v1/internal/am/allocate", {
        applicationAttemptId: this.attemptId,
        responseId: this.responseId,
        ask,
        release,
        progress: this.progress,
      });
    } catch (error) {
      if (error instanceof HttpError && error.exception === "ApplicationMasterNotRegisteredException") {
        this.log.warn("the resource manager restarted: registering again and resending every ask");
        await this.register(trackingUrl);
        for (const [priority, entry] of this.table)
          for (const name of entry.counts.keys()) this.changed.add(`${priority}|${name}`);
        return;
      }
      throw error;
    }
    this.changed.clear();
    this.releases = [];
    this.responseId = response.responseId;
    if (response.amCommand === "AM_SHUTDOWN") {
      this.stopped = true;
      callbacks.onShutdown?.();
      return;
    }
    // The count at each priority goes down by what was allocated there (AMRMClient's bookkeeping).
    for (const container of response.allocatedContainers) {
      const entry = this.table.get(container.priority);
      if (!entry) continue;
      entry.counts.set("*", Math.max(0, (entry.counts.get("*") ?? 0) - 1));
      const host = entry.counts.get(container.host);
      if (host) entry.counts.set(container.host, host - 1);
    }
    if (response.allocatedContainers.length > 0) await callbacks.onAllocated(response.allocatedContainers);
    if (response.completedContainersStatuses.length > 0)
      await callbacks.onCompleted(response.completedContainersStatuses);
  }

  get shutdownRequested(): boolean {
    return this.stopped;
  }

  async startContainer(container: AllocatedContainer, launchContext: LaunchContext): Promise<void> {
    await callJson(`http://${container.nodeHttpAddress}/ws/v1/internal/containers/start`, {
      body: { containerToken: container.containerToken, launchContext },
    });
  }

  async stopContainer(container: AllocatedContainer): Promise<void> {
    await callJson(`http://${container.nodeHttpAddress}/ws/v1/internal/containers/${container.id}/stop`, {
      body: { containerToken: container.containerToken },
    });
  }

  async finish(
    finalApplicationStatus: "SUCCEEDED" | "FAILED" | "KILLED",
    diagnostics: string,
    trackingUrl?: string,
  ) {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.call("/ws/v1/internal/am/finish", {
          applicationAttemptId: this.attemptId,
          finalApplicationStatus,
          diagnostics,
          trackingUrl,
        });
        return;
      } catch (error) {
        // The resource manager may be restarting: the final status must reach it.
        if (attempt > 120 || (error instanceof HttpError && error.status < 500)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }
}

/** The command that starts this same program (node + loader flags + entry), for task containers. */
export function selfCommand(): string {
  // Containers run in their own directory: a bare loader name (`--import tsx`) is resolved here.
  const flags = process.execArgv.map((arg, i) =>
    (process.execArgv[i - 1] === "--import" || process.execArgv[i - 1] === "--require") &&
    !/^(file:|\/)/.test(arg)
      ? import.meta.resolve(arg)
      : arg,
  );
  const parts = [process.execPath, ...flags, process.argv[1]!];
  return parts.map(shellQuote).join(" ");
}

export function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}
