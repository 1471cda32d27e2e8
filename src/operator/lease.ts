import type { Logger } from "../log.js";
import { microTime } from "./events.js";
import { builtin, isConflict, isNotFound, type KubeClient, type KubeObject } from "./kube.js";

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  /** Unique per process: the pod name plus a random suffix. */
  identity: string;
  /** How long a lease holds without renewal before others may take it (client-go: 15 s). */
  leaseDurationMs?: number;
  /** How long the leader keeps trying to renew before it gives up leading (client-go: 10 s). */
  renewDeadlineMs?: number;
  /** Pause between attempts to acquire or renew (client-go: 2 s). */
  retryPeriodMs?: number;
  log: Logger;
  onStartedLeading: () => void;
  /** Called when leadership is lost or released; the caller must stop reconciling at once. */
  onStoppedLeading: () => void;
}

interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

type Lease = KubeObject & { spec?: LeaseSpec };

/**
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules:
 *
 * - expiry is judged by the local time at which this process last *saw the lease change*, not
 *   by `renewTime`, so clocks that disagree between nodes do not matter;
 * - every write carries the resourceVersion read, so two candidates can never both win;
 * - a leader that cannot renew within the renew deadline stops leading before its lease can
 *   expire elsewhere (renew deadline < lease duration), so two leaders never overlap;
 * - on shutdown the leader releases the lease (empty holder), so a successor takes over after
 *   one retry period instead of a whole lease duration.
 */
export class LeaderElector {
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private leading = false;
  private stopped = false;
  private observed: { record: string; atMs: number } | undefined;
  private lastRenewMs = 0;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly client: KubeClient,
    private readonly options: LeaderElectionOptions,
  ) {
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (!(this.renewDeadlineMs < this.leaseDurationMs && this.retryPeriodMs < this.renewDeadlineMs)) {
      throw new Error(
        `leader election: need retryPeriod (${this.retryPeriodMs} ms) < renewDeadline (${this.renewDeadlineMs} ms) < leaseDuration (${this.leaseDurationMs} ms)`,
      );
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops competing; a leader releases the lease so a successor need not wait for it to expire. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    if (this.leading) {
      this.leading = false;
      await this.release();
      this.options.onStoppedLeading();
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let held = false;
      try {
        // A hung request must not outlive the renew deadline: the leader has to notice in time.
        held = await withTimeout(this.tryAcquireOrRenew(), this.renewDeadlineMs / 2, "lease request");
      } catch (error) {
        this.options.log.warn({ err: error, lease: this.leaseName }, "leader election: lease request failed");
      }
      if (this.stopped) break;
      const now = Date.now();
      if (held) {
        this.lastRenewMs = now;
        if (!this.leading) {
          this.leading = true;
          this.options.log.info(
            { lease: this.leaseName, identity: this.options.identity },
            "became the leader",
          );
          this.options.onStartedLeading();
        }
      } else if (this.leading && now - this.lastRenewMs > this.renewDeadlineMs) {
        this.leading = false;
        this.options.log.error(
          { lease: this.leaseName, identity: this.options.identity },
          "lost the lease (not renewed within the renew deadline); stopping controllers",
        );
        this.options.onStoppedLeading();
      }
      await this.sleep(this.retryPeriodMs);
    }
  }

  private get leaseName(): string {
    return `${this.options.namespace}/${this.options.name}`;
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const nowIso = microTime(new Date());
    const durationSeconds = Math.ceil(this.leaseDurationMs / 1000);
    const lease = await this.client.find<Lease>(builtin.lease, namespace, name);
    if (!lease) {
      try {
        await this.client.create(builtin.lease, {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: nowIso,
            renewTime: nowIso,
            leaseTransitions: 0,
          },
        });
        this.observed = { record: `${identity}@${nowIso}`, atMs: Date.now() };
        return true;
      } catch (error) {
        if (isConflict(error)) return false; // another candidate created it first
        throw error;
      }
    }
    const spec = lease.spec ?? {};
    const record = `${spec.holderIdentity ?? ""}@${spec.renewTime ?? ""}`;
    if (!this.observed || this.observed.record !== record) this.observed = { record, atMs: Date.now() };
    const holder = spec.holderIdentity ?? "";
    const heldByUs = holder === identity;
    const leaseMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    const expired = this.observed.atMs + leaseMs <= Date.now();
    if (holder && !heldByUs && !expired) return false;
    const next: Lease = {
      ...lease,
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: heldByUs ? spec.acquireTime : nowIso,
        renewTime: nowIso,
        leaseTransitions: heldByUs ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    };
    try {
      await this.client.replace(builtin.lease, next);
    } catch (error) {
      if (isConflict(error)) return false; // someone wrote it between our read and write
      throw error;
    }
    this.observed = { record: `${identity}@${nowIso}`, atMs: Date.now() };
    return true;
  }

  private async release(): Promise<void> {
    const { namespace, name, identity } = this.options;
    try {
      const lease = await this.client.find<Lease>(builtin.lease, namespace, name);
      if (!lease || lease.spec?.holderIdentity !== identity) return;
      const now = microTime(new Date());
      await this.client.replace(builtin.lease, {
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: null,
          leaseDurationSeconds: 1,
          renewTime: now,
          acquireTime: now,
        },
      });
      this.options.log.info({ lease: this.leaseName }, "released the lease");
    } catch (error) {
      if (!isNotFound(error)) this.options.log.warn({ err: error }, "could not release the lease");
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
