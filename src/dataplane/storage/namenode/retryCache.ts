/**
 * HDFS's RetryCache: the answer of a non-idempotent call (create, append, complete, addBlock,
 * delete, rename, mkdirs...), kept under the caller's client id and call id so that a retry of
 * the same call (its answer was lost, or the active failed over before answering) gets the first
 * answer instead of running again (a retried create would otherwise meet its own file:
 * AlreadyBeingCreatedException, a retried delete would answer false). The ids and the answer are
 * written with the call's last edit, so a standby tailing the log, and a name node replaying it
 * after a restart, rebuild the same entries. Only successes are kept: a call that failed runs again.
 *
 * Bounded like HDFS's (dfs.namenode.retrycache.expirytime.millis, 10 minutes by default; a heap
 * share there, an entry count here): the oldest entries go first.
 */

import { CALL_ID_HEADER, CLIENT_ID_HEADER } from "../protocol.js";

/** The client's identity of one call: the same on every retry of it (HDFS's RPC header clientId + callId). */
export interface RpcIds {
  clientId: string;
  callId: number;
}

const MAX_CLIENT_ID_LENGTH = 64;

/** The ids of a request, or undefined when it carries none (or malformed ones: the call then runs as it is). */
export function rpcIdsOf(headers: Record<string, string | string[] | undefined>): RpcIds | undefined {
  return rpcIdsFrom(headers[CLIENT_ID_HEADER], headers[CALL_ID_HEADER]);
}

/** The same from the two values (an RPC frame carries them in its header). */
export function rpcIdsFrom(clientId: unknown, callIdText: unknown): RpcIds | undefined {
  if (typeof clientId !== "string" || clientId.length === 0 || clientId.length > MAX_CLIENT_ID_LENGTH)
    return undefined;
  if (typeof callIdText !== "string" || callIdText === "") return undefined;
  const callId = Number(callIdText);
  if (!Number.isSafeInteger(callId) || callId < 0) return undefined;
  return { clientId, callId };
}

interface Entry {
  key: string;
  expiresAt: number;
  /** Settles when the first execution ends: with its answer, or undefined if it failed. */
  done: Promise<{ result: unknown } | undefined>;
  settle: (outcome: { result: unknown } | undefined) => void;
  outcome: { result: unknown } | undefined;
  inProgress: boolean;
}

export interface RetryCacheOptions {
  expiryMs: number;
  maxEntries: number;
  now?: () => number;
}

export class RetryCache {
  private readonly entries = new Map<string, Entry>();
  /**
   * Entries oldest first, from `head` on (an entry replaced or removed from the map stays here
   * until it reaches the head, and is skipped there). Eviction used to walk the map from its
   * start, and a Map walked from the start steps over every entry deleted there since it was
   * last rehashed: under load that walk was the name node's costliest line.
   */
  private order: Entry[] = [];
  private head = 0;
  private readonly now: () => number;

  constructor(private readonly options: RetryCacheOptions) {
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Runs `call` at most once per ids while its entry lives: a retry while the first execution is
   * in flight waits for it; a retry after a success gets its answer; after a failure it runs again.
   */
  async atMostOnce<T>(ids: RpcIds | undefined, call: () => Promise<T>): Promise<T> {
    if (!ids) return call();
    const key = keyOf(ids);
    for (;;) {
      const existing = this.live(key);
      if (!existing) break;
      if (existing.outcome) return existing.outcome.result as T;
      if (!existing.inProgress) break;
      const outcome = await existing.done;
      if (outcome) return outcome.result as T;
    }
    const entry = this.newEntry(key, true);
    try {
      const result = await call();
      entry.outcome = { result };
      entry.inProgress = false;
      entry.settle(entry.outcome);
      return result;
    } catch (error) {
      entry.inProgress = false;
      if (this.entries.get(key) === entry) this.entries.delete(key);
      entry.settle(undefined);
      throw error;
    }
  }

  /** An answer read from the edit log (a standby tailing it, or a replay after a restart). */
  record(ids: RpcIds, result: unknown): void {
    const entry = this.newEntry(keyOf(ids), false);
    entry.outcome = { result };
    entry.settle(entry.outcome);
  }

  clear(): void {
    this.entries.clear();
    this.order = [];
    this.head = 0;
  }

  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry && !entry.inProgress && entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  private newEntry(key: string, inProgress: boolean): Entry {
    let settle!: Entry["settle"];
    const done = new Promise<{ result: unknown } | undefined>((resolve) => {
      settle = resolve;
    });
    const entry: Entry = {
      key,
      expiresAt: this.now() + this.options.expiryMs,
      done,
      settle,
      outcome: undefined,
      inProgress,
    };
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.order.push(entry);
    this.evict(entry.expiresAt - this.options.expiryMs);
    return entry;
  }

  /** Drops the oldest entries while the cache is too full or they have expired (in-progress ones only when full). */
  private evict(now: number): void {
    const kept: Entry[] = [];
    while (this.head < this.order.length) {
      const entry = this.order[this.head]!;
      if (this.entries.get(entry.key) !== entry) {
        this.head++;
        continue;
      }
      const full = this.entries.size > this.options.maxEntries;
      if (!full && entry.expiresAt > now) break;
      this.head++;
      // An expired call still running stays (its retries wait for it), behind the others.
      if (entry.inProgress && !full) kept.push(entry);
      else this.entries.delete(entry.key);
    }
    for (const entry of kept) this.order.push(entry);
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }
}

const keyOf = ({ clientId, callId }: RpcIds) => `${clientId}:${callId}`;
