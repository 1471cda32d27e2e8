/**
 * The health and status figures of a CDCStream, pure. The source database first (a problem a
 * DBA must fix is Degraded whatever the pod does), then the connector pod, then what the
 * connector itself reports on `/status`. Ready means changes flow: the pod is ready and the
 * connector streams (or, with snapshot mode initial_only, finished its snapshot).
 */
import type { CDCStreamSpec, CDCStreamStatus } from "../../api/cdcstream.js";
import { ConditionStatus, Reason } from "../../api/conditions.js";
import type { Health } from "../../operator/conditions.js";
import { problemHealth, type SpecProblem } from "../common.js";
import { type PodProblem, withPodProblem } from "../podHealth.js";
import type { ConnectorStatus } from "./connectorClient.js";

export const CdcReason = {
  Streaming: "Streaming",
  SnapshotCompleted: "SnapshotCompleted",
  SnapshotRunning: "SnapshotRunning",
  ConnectorFailed: "ConnectorFailed",
  ConnectorUnreachable: "ConnectorUnreachable",
  TablesWithoutFullIdentity: "TablesWithoutFullIdentity",
  SnapshotScheduled: "SnapshotScheduled",
  SnapshotSucceeded: "SnapshotSucceeded",
  SnapshotFailed: "SnapshotFailed",
  SourceStateKept: "SourceStateKept",
  SourceStateDropped: "SourceStateDropped",
  SourceStateLeftBehind: "SourceStateLeftBehind",
} as const;

export interface CdcHealthInput {
  spec: CDCStreamSpec;
  /** Problems of the source database found by the operator's own preflight. */
  sourceProblems: SpecProblem[];
  /** Whether the connector pod is ready (its /readyz answered). */
  podReady: boolean;
  pods?: PodProblem;
  /** What the connector answered, or why it did not. */
  connector: { status: ConnectorStatus } | { error: string } | undefined;
}

const ok = (reason: string) => ({ status: ConditionStatus.False, reason, message: "" });

export function cdcHealth(input: CdcHealthInput): Health {
  const { spec, sourceProblems, connector } = input;
  if (spec.clusterOperation.stopped) {
    return {
      ready: {
        status: ConditionStatus.False,
        reason: Reason.Stopped,
        message: "spec.clusterOperation.stopped: no connector runs; the slot keeps the position (and WAL)",
      },
      progressing: ok(Reason.Stopped),
      degraded:
        sourceProblems.length > 0
          ? problemHealth(sourceProblems, "the source database").degraded
          : ok(Reason.Stopped),
    };
  }
  if (sourceProblems.length > 0) return problemHealth(sourceProblems, "the source database");
  const status = connector && "status" in connector ? connector.status : undefined;
  if (status && (status.state === "failed" || status.problems.length > 0)) {
    const problems =
      status.problems.length > 0
        ? status.problems
        : [{ reason: CdcReason.ConnectorFailed, message: "the connector reports state failed" }];
    const health = problemHealth(problems, "the connector's problem");
    if (status.state === "streaming" && input.podReady) {
      // Streaming with a warning (a table it cannot read, a topic it cannot create): changes flow.
      health.ready = {
        status: ConditionStatus.True,
        reason: CdcReason.Streaming,
        message: `streaming, with problems: ${health.degraded.message}`,
      };
      health.progressing = ok(CdcReason.Streaming);
    }
    return health;
  }
  if (status?.state === "streaming" && input.podReady) {
    return {
      ready: {
        status: ConditionStatus.True,
        reason: CdcReason.Streaming,
        message: `streaming ${status.tables.length} table${status.tables.length === 1 ? "" : "s"} from slot ${status.slotName ?? "?"}`,
      },
      progressing: ok(CdcReason.Streaming),
      degraded: ok(CdcReason.Streaming),
    };
  }
  if (status?.state === "stopped" && spec.snapshot.mode === "initial_only" && status.snapshot?.completedAt) {
    return {
      ready: {
        status: ConditionStatus.True,
        reason: CdcReason.SnapshotCompleted,
        message: `snapshot mode initial_only: the snapshot completed at ${status.snapshot.completedAt}`,
      },
      progressing: ok(CdcReason.SnapshotCompleted),
      degraded: ok(CdcReason.SnapshotCompleted),
    };
  }
  let waiting: string;
  let reason: string = Reason.WaitingForChildren;
  if (status?.state === "snapshotting") {
    const snapshot = status.snapshot ?? {};
    reason = CdcReason.SnapshotRunning;
    waiting = `the connector is taking its initial snapshot (${snapshot.tablesDone ?? 0}/${snapshot.tablesTotal ?? "?"} tables, ${snapshot.rowsRead ?? 0} rows)`;
  } else if (status) {
    waiting = `the connector is ${status.state}${input.podReady ? "" : " and its pod is not ready"}`;
  } else if (connector && "error" in connector) {
    waiting = `waiting for the connector pod to answer: ${connector.error}`;
  } else {
    waiting = "waiting for the connector pod";
  }
  return withPodProblem(
    {
      ready: { status: ConditionStatus.False, reason, message: waiting },
      progressing: { status: ConditionStatus.True, reason, message: waiting },
      degraded: ok(Reason.Reconciling),
    },
    input.pods,
  );
}

/** The status figures the connector reports, in the resource's field names. */
export function connectorFigures(status: ConnectorStatus | undefined): Partial<CDCStreamStatus> {
  if (!status) return {};
  const figures: Partial<CDCStreamStatus> = {
    connectorState: status.state,
    tables: status.tables,
    tablesWithoutFullIdentity: status.tablesWithoutFullIdentity,
    snapshotRequests: status.snapshotRequests,
  };
  if (status.slotName) figures.slotName = status.slotName;
  if (status.publicationName) figures.publicationName = status.publicationName;
  if (status.confirmedFlushLsn && /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/.test(status.confirmedFlushLsn))
    figures.confirmedFlushLsn = status.confirmedFlushLsn;
  if (status.lagBytes != null) figures.lagBytes = Math.round(status.lagBytes);
  if (status.lagSeconds != null) figures.lagSeconds = status.lagSeconds;
  if (status.eventsPerSecond != null)
    figures.eventsPerSecond = Math.round(status.eventsPerSecond * 100) / 100;
  if (status.lastEventTime && !Number.isNaN(Date.parse(status.lastEventTime)))
    figures.lastEventTime = new Date(status.lastEventTime).toISOString();
  if (status.snapshot) {
    const { tablesDone, tablesTotal, rowsRead, completedAt } = status.snapshot;
    figures.snapshotProgress = {
      ...(tablesDone !== undefined ? { tablesDone: Math.round(tablesDone) } : {}),
      ...(tablesTotal !== undefined ? { tablesTotal: Math.round(tablesTotal) } : {}),
      ...(rowsRead !== undefined ? { rowsRead: Math.round(rowsRead) } : {}),
      ...(completedAt && !Number.isNaN(Date.parse(completedAt))
        ? { completedAt: new Date(completedAt).toISOString() }
        : {}),
    };
  }
  return figures;
}
