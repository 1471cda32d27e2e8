import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "../log.js";
import { Controller, type ControllerDefinition } from "./controller.js";
import { EventRecorder } from "./events.js";
import type { KubeClient, KubeObject } from "./kube.js";
import { LeaderElector } from "./lease.js";
import { OperatorMetrics } from "./metrics.js";
import { ProbeServer } from "./server.js";

export interface OperatorOptions {
  client: KubeClient;
  log: Logger;
  image: string;
  /** Every namespace when empty. */
  namespaces?: string[];
  controllers: ControllerDefinition<KubeObject>[];
  leaderElection?: {
    namespace: string;
    name: string;
    leaseDurationMs?: number;
    renewDeadlineMs?: number;
    retryPeriodMs?: number;
  };
  /** Port of /healthz and /readyz; 0 picks a free port; undefined serves none. */
  healthPort?: number;
  /** Port of /metrics; the health port serves it too when equal or undefined. */
  metricsPort?: number;
  concurrency?: number;
  resyncMs?: number;
  /** Backoff of failed reconciles (defaults 5 ms doubling to 5 min; tests shorten the cap). */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Called when leadership is lost: the controllers have stopped; the process should exit. */
  onLostLeadership?: () => void;
  /** Process-wide default metrics (event loop lag, memory); off when several operators share a process. */
  defaultMetrics?: boolean;
}

/**
 * One operator process: every controller's informers, the lease that decides who reconciles,
 * and the probe/metrics server. Informers run on every replica so a standby has a warm cache
 * and is ready to lead at once; only the leader's work queues run.
 */
export class Operator {
  readonly identity = `${process.env.POD_NAME ?? hostname()}_${randomBytes(4).toString("hex")}`;
  readonly metrics: OperatorMetrics;
  readonly controllers: Controller[];
  private readonly elector: LeaderElector | undefined;
  private readonly servers: ProbeServer[] = [];
  private stopping: Promise<void> | undefined;
  private leading = false;
  /** The ports actually bound (useful when 0 asked for a free one). */
  healthPort: number | undefined;
  metricsPort: number | undefined;

  constructor(private readonly options: OperatorOptions) {
    this.metrics = new OperatorMetrics({ defaultMetrics: options.defaultMetrics });
    const events = new EventRecorder(options.client, this.identity, options.log);
    this.controllers = options.controllers.map(
      (definition) =>
        new Controller(definition, {
          client: options.client,
          image: options.image,
          log: options.log,
          metrics: this.metrics,
          events,
          namespaces: options.namespaces ?? [],
          concurrency: options.concurrency,
          resyncMs: options.resyncMs,
          baseBackoffMs: options.baseBackoffMs,
          maxBackoffMs: options.maxBackoffMs,
        }),
    );
    if (options.leaderElection) {
      this.elector = new LeaderElector(options.client, {
        ...options.leaderElection,
        identity: this.identity,
        log: options.log,
        onStartedLeading: () => this.lead(),
        onStoppedLeading: () => this.loseLeadership(),
      });
    }
    const { healthPort, metricsPort } = options;
    const shared = metricsPort === undefined || metricsPort === healthPort;
    const registry = this.metrics.registry;
    const ready = () => this.synced;
    if (healthPort !== undefined) {
      this.servers.push(
        new ProbeServer({ port: healthPort, registry, ready, serve: { probes: true, metrics: shared } }),
      );
    }
    if (metricsPort !== undefined && !shared) {
      this.servers.push(
        new ProbeServer({ port: metricsPort, registry, ready, serve: { probes: false, metrics: true } }),
      );
    }
  }

  get synced(): boolean {
    return this.controllers.every((controller) => controller.synced);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  controller(kind: string): Controller | undefined {
    return this.controllers.find((controller) => controller.kind === kind);
  }

  async start(): Promise<void> {
    const ports = await Promise.all(this.servers.map((server) => server.start()));
    this.healthPort = this.options.healthPort === undefined ? undefined : ports[0];
    this.metricsPort = this.options.metricsPort === undefined ? this.healthPort : ports.at(-1);
    for (const controller of this.controllers) controller.start();
    if (this.elector) this.elector.start();
    else this.lead();
  }

  whenSynced(): Promise<void> {
    return Promise.all(this.controllers.map((controller) => controller.whenSynced())).then(() => undefined);
  }

  private lead(): void {
    this.leading = true;
    this.metrics.leader.set(1);
    this.options.log.info({ identity: this.identity }, "leading: starting controllers");
    for (const controller of this.controllers) controller.lead();
  }

  private loseLeadership(): void {
    if (!this.leading || this.stopping) return;
    this.leading = false;
    this.metrics.leader.set(0);
    // Another replica may already lead: stop reconciling now, as client-go does, then exit.
    void Promise.all(this.controllers.map((controller) => controller.queue.shutdown())).then(() =>
      this.options.onLostLeadership?.(),
    );
  }

  /**
   * Graceful shutdown: stop taking work, let in-flight reconciles finish, stop the watches,
   * then release the lease so a standby takes over at once.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await Promise.all(this.controllers.map((controller) => controller.stop()));
      await this.elector?.stop();
      this.leading = false;
      this.metrics.leader.set(0);
      await Promise.all(this.servers.map((server) => server.stop()));
      this.options.client.close();
    })();
    return this.stopping;
  }
}
