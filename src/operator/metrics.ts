import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export type ReconcileResult = "success" | "requeue" | "error" | "terminal" | "conflict";

/**
 * The operator's Prometheus metrics, in a registry of its own (two operators in one test
 * process must not share counters). Names follow controller-runtime's where one exists, so
 * existing dashboards and alerts apply.
 */
export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileTotal: Counter<"kind" | "result">;
  readonly reconcileErrors: Counter<"kind">;
  readonly reconcileDuration: Histogram<"kind">;
  readonly queueDepth: Gauge<"kind">;
  readonly leader: Gauge;
  private readonly depthSources = new Map<string, () => number>();

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: "tributary_" });
    this.reconcileTotal = new Counter({
      name: "tributary_reconcile_total",
      help: "Reconciles by resource kind and result (success, requeue, error, terminal, conflict).",
      labelNames: ["kind", "result"],
      registers: [this.registry],
    });
    this.reconcileErrors = new Counter({
      name: "tributary_reconcile_errors_total",
      help: "Reconciles that failed, by resource kind.",
      labelNames: ["kind"],
      registers: [this.registry],
    });
    this.reconcileDuration = new Histogram({
      name: "tributary_reconcile_duration_seconds",
      help: "Time one reconcile takes, by resource kind.",
      labelNames: ["kind"],
      // From a cached no-op (milliseconds) to a slow external system (tens of seconds).
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [this.registry],
    });
    const depthSources = this.depthSources;
    this.queueDepth = new Gauge({
      name: "tributary_workqueue_depth",
      help: "Keys waiting in the work queue, by resource kind.",
      labelNames: ["kind"],
      registers: [this.registry],
      collect() {
        for (const [kind, depth] of depthSources) this.set({ kind }, depth());
      },
    });
    this.leader = new Gauge({
      name: "tributary_leader",
      help: "1 while this process holds the leader lease and runs the controllers, else 0.",
      registers: [this.registry],
    });
    this.leader.set(0);
  }

  /** Registers a queue whose depth is read at scrape time. */
  watchQueue(kind: string, depth: () => number): void {
    this.depthSources.set(kind, depth);
  }
}
