/**
 * A keyed work queue with the guarantees controller-runtime's queue gives, which a FIFO of
 * events does not:
 *
 * - a key is queued at most once however many events name it (ten updates of one resource
 *   cost one reconcile, which reads the latest state anyway: reconciles are level-based);
 * - a key is never processed by two workers at once; a key re-added while it is processed is
 *   processed once more afterwards, so the change that re-added it is never lost;
 * - failures back off per key, exponentially from `baseDelayMs` to `maxDelayMs`, so one broken
 *   resource neither spins the CPU nor delays the others;
 * - at most `concurrency` keys are processed at a time.
 *
 * The default backoff is 5 ms doubling to a 5 minute cap: the first retries are quick enough
 * to ride out a conflict on a resourceVersion, and a resource that stays broken is retried
 * about every five minutes (client-go caps at 1000 s; five minutes keeps a fixed cause, such as a
 * missing Secret created later, from waiting a quarter of an hour). Time comes from an injectable
 * clock so tests drive delays without sleeping.
 */

export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => {
    const handle = setTimeout(callback, ms);
    // A pending retry must not keep a stopping process alive.
    handle.unref?.();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** A clock for tests: time moves only when `advance` is called, firing what fell due in order. */
export class ManualClock implements Clock {
  private time = 0;
  private nextId = 0;
  private readonly timers = new Map<number, { due: number; callback: () => void }>();

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { due: this.time + Math.max(0, ms), callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  advance(ms: number): void {
    const until = this.time + ms;
    for (;;) {
      let next: [number, { due: number; callback: () => void }] | undefined;
      for (const entry of this.timers) {
        if (entry[1].due <= until && (!next || entry[1].due < next[1].due)) next = entry;
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.time = next[1].due;
      next[1].callback();
    }
    this.time = until;
  }

  get pendingTimers(): number {
    return this.timers.size;
  }
}

export interface WorkQueueOptions {
  concurrency?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  clock?: Clock;
}

export type Processor = (key: string) => Promise<void>;

export class WorkQueue {
  readonly concurrency: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  private readonly clock: Clock;

  /** Keys waiting for a worker, in arrival order. */
  private readonly pending: string[] = [];
  /** Keys that need processing: waiting, or re-added while being processed. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly delayed = new Map<string, { due: number; handle: unknown }>();
  private readonly failureCounts = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private processor: Processor | undefined;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];

  constructor(options: WorkQueueOptions = {}) {
    this.concurrency = Math.max(1, options.concurrency ?? 4);
    this.baseDelayMs = options.baseDelayMs ?? 5;
    this.maxDelayMs = options.maxDelayMs ?? 5 * 60_000;
    this.clock = options.clock ?? systemClock;
  }

  /** Queues a key now. Duplicates merge; a key in progress is queued again for afterwards. */
  add(key: string): void {
    if (this.stopped || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.pending.push(key);
    this.pump();
  }

  /** Queues a key once `delayMs` has passed; an earlier pending due time wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const due = this.clock.now() + delayMs;
    const existing = this.delayed.get(key);
    if (existing && existing.due <= due) return;
    if (existing) this.clock.clearTimeout(existing.handle);
    const handle = this.clock.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.delayed.set(key, { due, handle });
  }

  /** Queues a key after its backoff and counts one more failure; answers the delay chosen. */
  addRateLimited(key: string): number {
    const failures = this.failureCounts.get(key) ?? 0;
    this.failureCounts.set(key, failures + 1);
    const delay = this.backoff(failures);
    this.addAfter(key, delay);
    return delay;
  }

  /** The delay after `failures` earlier failures: base · 2^failures, capped. */
  backoff(failures: number): number {
    // 2^failures overflows to Infinity long after it passed the cap; Math.min handles that.
    return Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** failures);
  }

  /** Clears a key's failure count after a success, so its next failure starts from the base delay. */
  forget(key: string): void {
    this.failureCounts.delete(key);
  }

  failures(key: string): number {
    return this.failureCounts.get(key) ?? 0;
  }

  /** Keys waiting for a worker (the queue-depth metric). */
  get depth(): number {
    return this.pending.length;
  }

  get active(): number {
    return this.processing.size;
  }

  get waitingRetries(): number {
    return this.delayed.size;
  }

  isQueued(key: string): boolean {
    return this.dirty.has(key) && !this.processing.has(key);
  }

  start(processor: Processor): void {
    this.processor = processor;
    this.pump();
  }

  /** Resolves when no key is waiting and none is in progress (delayed retries may remain). */
  whenIdle(): Promise<void> {
    if (this.pending.length === 0 && this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops taking work: queued and delayed keys are dropped, in-flight ones finish. Used on
   * shutdown and when leadership is lost.
   */
  async shutdown(): Promise<void> {
    this.stopped = true;
    this.pending.length = 0;
    this.dirty.clear();
    for (const { handle } of this.delayed.values()) this.clock.clearTimeout(handle);
    this.delayed.clear();
    await Promise.allSettled([...this.inFlight]);
  }

  private pump(): void {
    const processor = this.processor;
    if (!processor) return;
    while (!this.stopped && this.processing.size < this.concurrency && this.pending.length > 0) {
      const key = this.pending.shift()!;
      this.dirty.delete(key);
      this.processing.add(key);
      const run = (async () => {
        try {
          await processor(key);
        } catch {
          // The processor owns error handling (backoff, conditions, events); a throw that
          // escapes it must still not wedge the key.
        }
      })();
      this.inFlight.add(run);
      void run.then(() => {
        this.inFlight.delete(run);
        this.processing.delete(key);
        if (this.dirty.has(key) && !this.stopped) this.pending.push(key);
        this.pump();
        if (this.pending.length === 0 && this.processing.size === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const resolve of waiters) resolve();
        }
      });
    }
  }
}
