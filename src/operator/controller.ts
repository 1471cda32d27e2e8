import { ConditionStatus, ConditionType, Reason } from "../api/conditions.js";
import type { Logger } from "../log.js";
import {
  applyChildren,
  applyStatus,
  controllerOf,
  deleteChildren,
  managedByLabel,
  managedByValue,
} from "./apply.js";
import { type Condition, setCondition } from "./conditions.js";
import type { EventRecorder } from "./events.js";
import { type FinalizerEvent, finalizer } from "./finalizer.js";
import { Informer, type InformerEvent } from "./informer.js";
import {
  ApiError,
  apiVersionOf,
  isConflict,
  type KubeClient,
  type KubeObject,
  objectKey,
  type ResourceType,
} from "./kube.js";
import type { OperatorMetrics, ReconcileResult } from "./metrics.js";
import { childrenToPrune, prunableTypes } from "./prune.js";
import { type Clock, WorkQueue } from "./workqueue.js";

/** What a reconcile asks for next: nothing (wait for a change) or a look again after a while. */
export interface Action {
  requeueAfterMs?: number;
}

/**
 * A failure that retrying cannot fix (the spec contradicts itself, a referenced kind does not
 * exist): reported as `Degraded` with its reason, not retried until the resource changes.
 */
export class TerminalError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "TerminalError";
  }
}

/** A failure worth retrying with backoff, with the condition reason to report meanwhile. */
export class ReconcileError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ReconcileError";
  }
}

/** What a reconciler gets besides the resource: the client and helpers bound to this resource. */
export interface Context<T extends KubeObject> {
  client: KubeClient;
  /** The data-plane image (the operator's `--image`), for every pod the controllers spawn. */
  image: string;
  log: Logger;
  /** Server-side applies the desired children (field manager `tributary`, forced). */
  apply(children: readonly KubeObject[]): Promise<KubeObject[]>;
  /**
   * Server-side applies `children` as the whole desired set of `owner`'s children, then, once
   * every apply succeeded, deletes the children of the owned kinds that are no longer in it:
   * those labelled as `owner`'s, with a controller owner reference to its uid (prune.ts).
   * PersistentVolumeClaims are never deleted. Skip the call (a paused resource, an invalid
   * spec) and nothing is pruned. `keep` spares children the spec still names but cannot run
   * yet, so what runs keeps running as the last valid spec made it.
   */
  applyAndPrune(
    owner: T,
    children: readonly KubeObject[],
    options?: { keep?: (child: KubeObject) => boolean },
  ): Promise<KubeObject[]>;
  /** Writes the whole status through the status subresource. */
  writeStatus(resource: T, status: Record<string, unknown>): Promise<void>;
  /** A child as last seen by the owned-kind informer (no API call). */
  cachedChild(type: ResourceType, namespace: string, name: string): KubeObject | undefined;
  /**
   * Objects of an owned or watched kind as last seen by its informers (no API call), in one
   * namespace when given (cluster-scoped kinds: leave it out) and carrying every given label.
   */
  cachedObjects(
    type: ResourceType,
    filter?: { namespace?: string; labels?: Record<string, string> },
  ): KubeObject[];
  /** Resources of the same kind in a namespace, from the cache (siblings of a queue tree, say). */
  cachedPeers(namespace: string): T[];
  event(resource: T, type: "Normal" | "Warning", reason: string, note: string): Promise<void>;
  now(): Date;
}

/**
 * A kind the controller reads but does not own: pods made by a child StatefulSet (owned by it,
 * not by the resource), cluster-scoped nodes. Its informer fills a cache (`cachedObjects`) and
 * `map` says which resources a change concerns.
 */
export interface WatchDefinition<T extends KubeObject> {
  type: ResourceType;
  /** Narrows list and watch, and so the cache (e.g. to the pods of the operator's children). */
  labelSelector?: string;
  /** Keys (`namespace/name`) of the resources to reconcile; `resources` are the cached ones of this kind. */
  map(object: KubeObject, resources: () => T[]): string[];
  /**
   * The part of the object the reconcile reads. An update that leaves it unchanged wakes nothing:
   * pods' status churn and nodes' heartbeats would otherwise reconcile in a loop. Additions and
   * deletions always wake. Every update wakes when absent.
   */
  fingerprint?(object: KubeObject): unknown;
}

export interface ControllerDefinition<T extends KubeObject> {
  /** The custom resource this controller reconciles. */
  type: ResourceType;
  /**
   * Child kinds it creates; their changes wake the owner through the controller owner reference,
   * and `applyAndPrune` deletes those of them the desired set no longer names (never claims).
   */
  owns?: ResourceType[];
  /** Kinds it reads without owning them; their changes wake the resources `map` names. */
  watches?: WatchDefinition<T>[];
  /** Brings the world in line with the resource. Throw to retry with backoff; TerminalError to stop. */
  reconcile(resource: T, context: Context<T>): Promise<Action | undefined>;
  /** Releases state outside Kubernetes before the resource goes; children go by garbage collection. */
  cleanup?(resource: T, context: Context<T>): Promise<void>;
  /**
   * Keys of other resources of this kind whose reconcile depends on this one (the siblings of a
   * YarnQueue share a capacity budget); they are queued whenever this one changes or goes.
   */
  related?(resource: T, peers: T[]): string[];
  /** Releases what the reconciler keeps between reconciles (client connections), after the last one. */
  stop?(): Promise<void>;
}

export interface ControllerRuntime {
  client: KubeClient;
  image: string;
  log: Logger;
  metrics: OperatorMetrics;
  events: EventRecorder;
  /** Namespaces to watch; every namespace when empty. */
  namespaces: string[];
  concurrency?: number;
  resyncMs?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  clock?: Clock;
}

/**
 * The kube-rs shape: `new Controller(definition, runtime)` watches the resource and the kinds it
 * owns, maps every event to the owning resource's key, merges keys in a work queue and runs
 * `reconcile` for each, with the finalizer dance, backoff, Degraded condition, Warning event and
 * metrics around it. Informers run from `start()`; reconciles only after `lead()`.
 */
export class Controller<T extends KubeObject = KubeObject> {
  readonly queue: WorkQueue;
  private readonly primary: Informer<T>[] = [];
  private readonly children = new Map<string, Informer[]>();
  private readonly watched = new Map<string, Informer[]>();
  private readonly log: Logger;
  private leading = false;

  constructor(
    readonly definition: ControllerDefinition<T>,
    private readonly runtime: ControllerRuntime,
  ) {
    this.log = runtime.log.child({ controller: definition.type.kind });
    this.queue = new WorkQueue({
      concurrency: runtime.concurrency ?? 4,
      baseDelayMs: runtime.baseBackoffMs,
      maxDelayMs: runtime.maxBackoffMs,
      clock: runtime.clock,
    });
    runtime.metrics.watchQueue(definition.type.kind, () => this.queue.depth);
    const scopes = runtime.namespaces.length > 0 ? runtime.namespaces : [undefined];
    for (const namespace of scopes) {
      const informer = new Informer<T>(runtime.client, definition.type, {
        namespace,
        resyncMs: runtime.resyncMs ?? 10 * 60_000,
        log: this.log,
      });
      informer.on((event, object) => this.onPrimary(event, object));
      this.primary.push(informer);
      for (const owned of definition.owns ?? []) {
        const childInformer = new Informer(runtime.client, owned, {
          namespace,
          // Only what the operator made: the cache stays small in a busy cluster.
          labelSelector: `${managedByLabel}=${managedByValue}`,
          log: this.log,
        });
        childInformer.on((_event, child) => this.onChild(child));
        const list = this.children.get(owned.kind) ?? [];
        list.push(childInformer);
        this.children.set(owned.kind, list);
      }
      for (const watch of definition.watches ?? []) {
        // A cluster-scoped kind has one informer, however many namespaces are watched.
        const clusterScoped = watch.type.namespaced === false;
        if (clusterScoped && namespace !== scopes[0]) continue;
        this.watch(watch, clusterScoped ? undefined : namespace);
      }
    }
  }

  private watch(watch: WatchDefinition<T>, namespace: string | undefined): void {
    const informer = new Informer(this.runtime.client, watch.type, {
      namespace,
      labelSelector: watch.labelSelector,
      log: this.log,
    });
    const seen = new Map<string, string>();
    informer.on((event, object) => {
      const key = objectKey(object);
      if (watch.fingerprint) {
        if (event === "deleted") {
          seen.delete(key);
        } else {
          const fingerprint = JSON.stringify(watch.fingerprint(object) ?? null);
          const unchanged = seen.get(key) === fingerprint;
          seen.set(key, fingerprint);
          if (unchanged && event !== "added") return;
        }
      }
      for (const resourceKey of watch.map(object, () => this.all())) this.queue.add(resourceKey);
    });
    const list = this.watched.get(watch.type.kind) ?? [];
    list.push(informer);
    this.watched.set(watch.type.kind, list);
  }

  private all(): T[] {
    return this.primary.flatMap((informer) => informer.list());
  }

  get kind(): string {
    return this.definition.type.kind;
  }

  private get informers(): Informer[] {
    return [
      ...(this.primary as unknown as Informer[]),
      ...[...this.children.values()].flat(),
      ...[...this.watched.values()].flat(),
    ];
  }

  /** Starts watching (the cache fills whether or not this process leads). */
  start(): void {
    for (const informer of this.informers) informer.start();
  }

  get synced(): boolean {
    return this.informers.every((informer) => informer.hasSynced);
  }

  whenSynced(): Promise<void> {
    return Promise.all(this.informers.map((informer) => informer.synced)).then(() => undefined);
  }

  /** Starts reconciling: called when this process becomes the leader. */
  lead(): void {
    if (this.leading) return;
    this.leading = true;
    this.queue.start((key) => this.process(key));
  }

  /** Stops taking work and waits for in-flight reconciles; then stops the informers. */
  async stop(): Promise<void> {
    await this.queue.shutdown();
    await Promise.all(this.informers.map((informer) => informer.stop()));
    try {
      await this.definition.stop?.();
    } catch (error) {
      this.log.warn({ err: error }, "controller stop hook failed");
    }
  }

  /** The primary informers (tests use them to break watches). */
  get primaryInformers(): Informer<T>[] {
    return this.primary;
  }

  get(key: string): T | undefined {
    for (const informer of this.primary) {
      const found = informer.get(key);
      if (found) return found;
    }
    return undefined;
  }

  /**
   * Only changes a reconcile acts on wake it: spec (generation), deletion, finalizers, labels
   * and annotations. The operator's own status writes would otherwise wake it in a loop.
   */
  private readonly lastSeen = new Map<string, string>();
  private onPrimary(event: InformerEvent, object: T): void {
    const key = objectKey(object);
    if (event === "deleted") {
      this.lastSeen.delete(key);
    } else {
      const { generation, deletionTimestamp, finalizers, labels, annotations } = object.metadata;
      const fingerprint = JSON.stringify([generation, deletionTimestamp, finalizers, labels, annotations]);
      const unchanged = this.lastSeen.get(key) === fingerprint;
      this.lastSeen.set(key, fingerprint);
      if (event === "updated" && unchanged) return;
    }
    this.queue.add(key);
    if (this.definition.related) {
      const namespace = object.metadata.namespace ?? "";
      for (const related of this.definition.related(object, this.peers(namespace))) this.queue.add(related);
    }
  }

  private peers(namespace: string): T[] {
    return this.primary.flatMap((informer) =>
      informer.list().filter((object) => (object.metadata.namespace ?? "") === namespace),
    );
  }

  private onChild(child: KubeObject): void {
    const owner = controllerOf(child);
    const { type } = this.definition;
    if (!owner || owner.kind !== type.kind || owner.apiVersion !== apiVersionOf(type)) return;
    const namespace = child.metadata.namespace;
    this.queue.add(namespace ? `${namespace}/${owner.name}` : owner.name);
  }

  /**
   * The status writes' answers, kept until the informer has caught up with them: a reconcile that
   * starts right after a write (a requeue that fell due) then sees the status it wrote, not the
   * one before, and does not announce again what it just announced. client-go's mutation cache
   * does the same.
   */
  private readonly written = new Map<string, T>();

  private noteWritten(object: KubeObject): void {
    this.written.set(objectKey(object), object as T);
  }

  /** The newer of the cached object and this controller's last write of it. */
  private current(key: string): T | undefined {
    const cached = this.get(key);
    const written = this.written.get(key);
    if (written && cached && written.metadata.uid === cached.metadata.uid && isNewer(written, cached))
      return written;
    this.written.delete(key);
    return cached;
  }

  private async process(key: string): Promise<void> {
    const resource = this.current(key);
    if (!resource) {
      // Deleted: owner references let the garbage collector remove the children.
      this.queue.forget(key);
      return;
    }
    const log = this.log.child({ key, generation: resource.metadata.generation });
    const context = this.context(log);
    const started = process.hrtime.bigint();
    let result: ReconcileResult = "success";
    try {
      const action = await finalizer<T, Action | undefined>(
        this.runtime.client,
        this.definition.type,
        resource,
        async (event: FinalizerEvent<T>) => {
          if (event.type === "apply") return this.definition.reconcile(event.resource, context);
          await this.definition.cleanup?.(event.resource, context);
          return undefined;
        },
      );
      this.queue.forget(key);
      if (action?.requeueAfterMs !== undefined) {
        result = "requeue";
        this.queue.addAfter(key, action.requeueAfterMs);
      }
      log.debug({ requeueAfterMs: action?.requeueAfterMs }, "reconciled");
    } catch (error) {
      result = await this.onError(key, resource, error, log);
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.runtime.metrics.reconcileDuration.observe({ kind: this.kind }, seconds);
      this.runtime.metrics.reconcileTotal.inc({ kind: this.kind, result });
    }
  }

  private async onError(key: string, resource: T, error: unknown, log: Logger): Promise<ReconcileResult> {
    if (isConflict(error)) {
      // The cache was behind a write (ours or someone's): read again shortly, nothing is wrong.
      this.queue.addRateLimited(key);
      log.debug({ err: error }, "conflict; retrying with the latest version");
      return "conflict";
    }
    const terminal = error instanceof TerminalError;
    const reason =
      error instanceof TerminalError || error instanceof ReconcileError
        ? error.reason
        : Reason.ReconcileFailed;
    const message = `${this.kind} ${key}: ${error instanceof Error ? error.message : String(error)}`;
    this.runtime.metrics.reconcileErrors.inc({ kind: this.kind });
    if (terminal) {
      this.queue.forget(key);
      log.warn({ reason, err: error }, "reconcile failed; not retrying until the resource changes");
    } else {
      const retryInMs = this.queue.addRateLimited(key);
      log.warn(
        {
          reason,
          err: error,
          retryInMs,
          failures: this.queue.failures(key),
          status: (error as ApiError).statusCode,
        },
        "reconcile failed; retrying with backoff",
      );
    }
    try {
      await this.markDegraded(resource, reason, message);
    } catch (statusError) {
      log.warn({ err: statusError }, "could not write the Degraded condition");
    }
    await this.runtime.events.publish(resource, {
      type: "Warning",
      reason,
      action: "Reconcile",
      note: message,
    });
    return terminal ? "terminal" : "error";
  }

  /** Sets Degraded=True on the stored status, keeping every other status field as it is. */
  private async markDegraded(resource: T, reason: string, message: string): Promise<void> {
    const status = (resource.status ?? {}) as { conditions?: Condition[] } & Record<string, unknown>;
    const conditions = setCondition(
      status.conditions,
      { type: ConditionType.Degraded, status: ConditionStatus.True, reason, message },
      resource.metadata.generation,
    );
    this.noteWritten(
      await applyStatus(this.runtime.client, this.definition.type, resource, { ...status, conditions }),
    );
  }

  private context(log: Logger): Context<T> {
    const { client, image, events } = this.runtime;
    const knownTypes = this.definition.owns ?? [];
    return {
      client,
      image,
      log,
      apply: (children) => applyChildren(client, children, knownTypes),
      applyAndPrune: async (owner, children, options = {}) => {
        const applied = await applyChildren(client, children, knownTypes);
        const stale = childrenToPrune({
          owner,
          // From the owned-kind informers: nothing is listed through the API per reconcile. A
          // child the cache has not seen yet is pruned on the reconcile its arrival wakes.
          owned: prunableTypes(knownTypes).map((type) => ({
            type,
            objects: (this.children.get(type.kind) ?? []).flatMap((informer) => informer.list()),
          })),
          desired: children,
          keep: options.keep,
        });
        if (stale.length > 0) {
          await deleteChildren(client, stale);
          log.info(
            {
              pruned: stale.map(({ type, child }) => `${type.kind} ${objectKey(child)}`),
            },
            "deleted children the spec no longer asks for",
          );
        }
        return applied;
      },
      writeStatus: async (resource, status) => {
        this.noteWritten(await applyStatus(client, this.definition.type, resource, status));
      },
      cachedChild: (type, namespace, name) => {
        for (const informer of this.children.get(type.kind) ?? []) {
          const found = informer.get(`${namespace}/${name}`);
          if (found) return found;
        }
        return undefined;
      },
      cachedObjects: (type, filter = {}) => {
        const informers = [...(this.children.get(type.kind) ?? []), ...(this.watched.get(type.kind) ?? [])];
        // A kind both owned and watched is in two caches: one copy of each object.
        const found = new Map<string, KubeObject>();
        for (const object of informers.flatMap((informer) => informer.list())) {
          if (filter.namespace !== undefined && object.metadata.namespace !== filter.namespace) continue;
          const labels = object.metadata.labels ?? {};
          if (Object.entries(filter.labels ?? {}).some(([label, value]) => labels[label] !== value)) continue;
          found.set(objectKey(object), object);
        }
        return [...found.values()];
      },
      cachedPeers: (namespace) => this.peers(namespace),
      event: (resource, type, reason, note) =>
        events.publish(resource, { type, reason, action: "Reconcile", note }),
      now: () => new Date(),
    };
  }
}

export { ApiError };

/**
 * Whether `a` is a later version of the same object than `b`. Kubernetes calls resourceVersion
 * opaque, but etcd's revisions are integers that only grow, which client-go's mutation cache
 * relies on too; a version that is not an integer is never taken as newer.
 */
export function isNewer(a: KubeObject, b: KubeObject): boolean {
  const integer = /^\d+$/;
  const left = a.metadata.resourceVersion ?? "";
  const right = b.metadata.resourceVersion ?? "";
  return integer.test(left) && integer.test(right) && BigInt(left) > BigInt(right);
}
