import { Watch } from "@kubernetes/client-node";
import type { Logger } from "../log.js";
import { collectionPath, type KubeClient, type KubeObject, objectKey, type ResourceType } from "./kube.js";

export type InformerEvent = "added" | "updated" | "deleted" | "resync";
export type InformerHandler<T extends KubeObject> = (event: InformerEvent, object: T) => void;

export interface InformerOptions {
  /** One namespace, or every namespace when absent. */
  namespace?: string;
  labelSelector?: string;
  /** Every cached object is handed to the handlers again this often (0: never). */
  resyncMs?: number;
  /** Page size of the initial list, so a large collection does not arrive as one huge response. */
  pageSize?: number;
  log: Logger;
}

interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: KubeObject & { code?: number; reason?: string; message?: string };
}

/** The watch was refused because its resourceVersion is older than the server keeps (410 Gone). */
class ResourceVersionExpired extends Error {}

/**
 * A list+watch cache of one resource type, as client-go's reflector and informer are:
 *
 * - it lists (in pages), remembers the list's resourceVersion and watches from there, so no
 *   change between the list and the watch is missed;
 * - every event moves the resourceVersion forward (bookmarks too), so a watch that ends, which
 *   the API server does on purpose every few minutes, resumes where it stopped;
 * - a 410 Gone (the resourceVersion was compacted away) means events were lost: it lists
 *   again, and objects that vanished meanwhile are reported as deleted;
 * - errors back off (1 s doubling to 30 s) so a restarting API server is not hammered.
 */
export class Informer<T extends KubeObject = KubeObject> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: InformerHandler<T>[] = [];
  private resourceVersion: string | undefined;
  private stopped = false;
  private currentWatch: AbortController | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;
  private syncedResolve!: () => void;
  private wakeRetry: (() => void) | undefined;
  /** Resolves once the first list has filled the cache. */
  readonly synced: Promise<void> = new Promise((resolve) => {
    this.syncedResolve = resolve;
  });
  hasSynced = false;
  /** Counters that show how the informer got its data (for logs and tests). */
  readonly stats = { lists: 0, watches: 0, expired: 0, watchErrors: 0 };

  constructor(
    private readonly client: KubeClient,
    readonly type: ResourceType,
    private readonly options: InformerOptions,
  ) {}

  on(handler: InformerHandler<T>): void {
    this.handlers.push(handler);
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  get size(): number {
    return this.cache.size;
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.run();
    const resyncMs = this.options.resyncMs ?? 0;
    if (resyncMs > 0) {
      this.resyncTimer = setInterval(() => {
        for (const object of this.cache.values()) this.emit("resync", object);
      }, resyncMs);
      this.resyncTimer.unref();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.currentWatch?.abort();
    this.wakeRetry?.();
    await this.loop;
  }

  /**
   * Ends the current watch as a dropped connection would; the next watch starts from
   * `resourceVersion` when given. Lets tests show recovery from a broken watch and, with a
   * long-compacted version such as "1", from 410 Gone.
   */
  interruptWatch(resourceVersion?: string): void {
    if (resourceVersion !== undefined) this.resourceVersion = resourceVersion;
    this.currentWatch?.abort();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        if (this.resourceVersion === undefined) await this.relist();
        await this.watchOnce();
        failures = 0;
      } catch (error) {
        if (this.stopped) break;
        if (error instanceof ResourceVersionExpired) {
          this.stats.expired++;
          this.options.log.info(
            { resource: this.type.plural, resourceVersion: this.resourceVersion },
            "watch resourceVersion expired (410 Gone); listing again",
          );
          this.resourceVersion = undefined;
          continue;
        }
        this.stats.watchErrors++;
        const delay = Math.min(30_000, 1000 * 2 ** failures++);
        this.options.log.warn(
          { resource: this.type.plural, err: error, retryInMs: delay },
          "list/watch failed; retrying",
        );
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.wakeRetry = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wakeRetry = undefined;
      }
    }
  }

  private async relist(): Promise<void> {
    const seen = new Map<string, T>();
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await this.client.list<T>(this.type, this.options.namespace, {
        labelSelector: this.options.labelSelector,
        limit: this.options.pageSize ?? 500,
        continue: continueToken,
      });
      for (const item of page.items) {
        // Lists return items without apiVersion/kind; handlers and owners need them.
        item.apiVersion ??= this.type.group ? `${this.type.group}/${this.type.version}` : this.type.version;
        item.kind ??= this.type.kind;
        seen.set(objectKey(item), item);
      }
      continueToken = page.metadata.continue || undefined;
      resourceVersion = page.metadata.resourceVersion;
    } while (continueToken);
    this.stats.lists++;
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.emit("deleted", old);
      }
    }
    for (const [key, object] of seen) {
      const old = this.cache.get(key);
      this.cache.set(key, object);
      if (!old) this.emit("added", object);
      else if (old.metadata.resourceVersion !== object.metadata.resourceVersion) this.emit("updated", object);
    }
    this.resourceVersion = resourceVersion;
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.syncedResolve();
    }
  }

  private watchOnce(): Promise<void> {
    this.stats.watches++;
    return new Promise<void>((resolve, reject) => {
      let expired = false;
      let finished = false;
      const watch = new Watch(this.client.config);
      const query = {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        labelSelector: this.options.labelSelector,
        // The server ends the watch after this long; a fresh one keeps connections healthy
        // through proxies and load balancers that drop idle streams.
        timeoutSeconds: 240 + Math.floor(Math.random() * 120),
      };
      watch
        .watch(
          collectionPath(this.type, this.options.namespace),
          query,
          (type: string, object: WatchEvent["object"]) => {
            // After a 410 the stream has nothing more to say that can be trusted.
            if (expired) return;
            this.onWatchEvent(type as WatchEvent["type"], object, () => {
              expired = true;
              this.currentWatch?.abort();
            });
          },
          (error: unknown) => {
            finished = true;
            this.currentWatch = undefined;
            const status = (error as { statusCode?: number } | null)?.statusCode;
            if (expired || status === 410) reject(new ResourceVersionExpired());
            else if (error && !(error instanceof Error && error.name === "AbortError")) reject(error);
            else resolve();
          },
        )
        .then((controller) => {
          // The watch may already be over (refused, or ended at once): keep no stale handle.
          if (finished) return;
          this.currentWatch = controller;
          if (this.stopped) controller.abort();
        }, reject);
    });
  }

  private onWatchEvent(type: WatchEvent["type"], object: WatchEvent["object"], onExpired: () => void): void {
    if (type === "ERROR") {
      // The API server reports an expired resourceVersion inside a 200 stream as a Status.
      if (object.code === 410) onExpired();
      else this.options.log.warn({ resource: this.type.plural, status: object }, "watch reported an error");
      return;
    }
    if (object.metadata?.resourceVersion) this.resourceVersion = object.metadata.resourceVersion;
    if (type === "BOOKMARK") return;
    const item = object as T;
    const key = objectKey(item);
    if (type === "DELETED") {
      this.cache.delete(key);
      this.emit("deleted", item);
      return;
    }
    const existed = this.cache.has(key);
    this.cache.set(key, item);
    this.emit(existed ? "updated" : "added", item);
  }

  private emit(event: InformerEvent, object: T): void {
    for (const handler of this.handlers) {
      try {
        handler(event, object);
      } catch (error) {
        this.options.log.error({ err: error, key: objectKey(object) }, "informer handler failed");
      }
    }
  }
}
