import { randomBytes } from "node:crypto";
import type { Logger } from "../log.js";
import { builtin, isNotFound, type KubeClient, type KubeObject } from "./kube.js";

export type EventType = "Normal" | "Warning";

export interface EventInput {
  type: EventType;
  /** CamelCase, machine-readable: the same vocabulary as condition reasons. */
  reason: string;
  /** What the operator did or tried: Reconcile, Cleanup, Apply. */
  action: string;
  note: string;
}

/** The API server refuses notes above 1 kB. */
const maxNoteLength = 1024;
/** A repeat after this long starts a new Event rather than extending a series (client-go's window). */
const seriesWindowMs = 6 * 60_000;

/**
 * Kubernetes Events (events.k8s.io/v1) about a resource, shown by `kubectl describe` and
 * `kubectl events`. A repeated event (same resource, type, reason, action and note) does not
 * create a new object each time: it bumps the `series` count and last-observed time of the
 * first one, as client-go's recorder does, so a crash-looping reconcile does not flood etcd.
 */
export class EventRecorder {
  private readonly recent = new Map<
    string,
    { name: string; namespace: string; count: number; lastMs: number }
  >();

  constructor(
    private readonly client: KubeClient,
    private readonly reportingInstance: string,
    private readonly log: Logger,
    private readonly reportingController = "tributary.dev/operator",
  ) {}

  /** Publishes an event; a failure is logged, never thrown: events are best-effort by design. */
  async publish(regarding: KubeObject, input: EventInput): Promise<void> {
    try {
      await this.record(regarding, input);
    } catch (error) {
      this.log.warn({ err: error, reason: input.reason }, "could not record an event");
    }
  }

  private async record(regarding: KubeObject, input: EventInput): Promise<void> {
    const namespace = regarding.metadata.namespace ?? "default";
    const note =
      input.note.length > maxNoteLength ? `${input.note.slice(0, maxNoteLength - 1)}…` : input.note;
    const key = [regarding.metadata.uid, input.type, input.reason, input.action, note].join("\u0000");
    const nowMs = Date.now();
    const now = microTime(new Date(nowMs));
    const seen = this.recent.get(key);
    if (seen && nowMs - seen.lastMs < seriesWindowMs) {
      seen.count++;
      seen.lastMs = nowMs;
      try {
        await this.client.mergePatch(builtin.event, seen.namespace, seen.name, {
          series: { count: seen.count, lastObservedTime: now },
        });
        return;
      } catch (error) {
        // The event expired (the API server keeps them an hour): start a new one.
        if (!isNotFound(error)) throw error;
      }
    }
    this.forgetOld(nowMs);
    const name = `${regarding.metadata.name}.${randomBytes(8).toString("hex")}`;
    await this.client.create(builtin.event, {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name, namespace },
      eventTime: now,
      reportingController: this.reportingController,
      reportingInstance: this.reportingInstance,
      action: input.action,
      reason: input.reason,
      note,
      type: input.type,
      regarding: {
        apiVersion: regarding.apiVersion,
        kind: regarding.kind,
        name: regarding.metadata.name,
        namespace: regarding.metadata.namespace,
        uid: regarding.metadata.uid,
        resourceVersion: regarding.metadata.resourceVersion,
      },
    });
    this.recent.set(key, { name, namespace, count: 1, lastMs: nowMs });
  }

  private forgetOld(nowMs: number): void {
    for (const [key, entry] of this.recent) {
      if (nowMs - entry.lastMs >= seriesWindowMs) this.recent.delete(key);
    }
  }
}

/** metav1.MicroTime: RFC 3339 with microseconds, which `eventTime` requires. */
export function microTime(date: Date): string {
  return `${date.toISOString().slice(0, 23)}000Z`;
}
