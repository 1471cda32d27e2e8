/**
 * A VideoCollector's status from its pods' `GET /status`, pure: each source as the pod that takes
 * it reports it, the totals, and the health. Ready needs every pod ready and every pulled source
 * delivering frames; a pulled source that does not is `Degraded` `SourceUnreachable` with its own
 * error, so the user sees which camera and why, while the others keep publishing. A pushed source
 * that is not sending is not a fault: the camera decides when it pushes.
 */
import { ConditionStatus, Reason } from "../../api/conditions.js";
import type { VideoCollectorSpec, VideoCollectorStatus } from "../../api/videocollector.js";
import type { Health } from "../../operator/conditions.js";
import { problemHealth, type SpecProblem } from "../common.js";
import { type PodProblem, withPodProblem } from "../podHealth.js";

/** What one pod's /status answers (src/dataplane/video/main.ts CollectorStatus). */
export interface PodReport {
  pod: string;
  kafkaReady: boolean;
  sources: Array<{
    name: string;
    kind: "pull" | "push";
    connected: boolean;
    framesPublished: number;
    framesDropped: number;
    framesPerSecond: number;
    lastFrameTime?: string;
    lastError?: string;
  }>;
}

export interface PodsView {
  desired: number;
  ready: number;
  /** The StatefulSet has its desired pods ready on the current template. */
  settled: boolean;
  reports: PodReport[];
  /** Pods whose /status could not be read, with why. */
  unreachable: string[];
}

type SourceLine = NonNullable<VideoCollectorStatus["sources"]>[number];

export function sourceLines(spec: VideoCollectorSpec, reports: PodReport[]): SourceLine[] {
  return spec.sources.map((source) => {
    const seen = reports.flatMap((report) =>
      report.sources
        .filter((entry) => entry.name === source.name)
        .map((entry) => ({ pod: report.pod, entry })),
    );
    // A pushed source is on every pod: the one receiving it, else the one that last did.
    const best =
      seen.find(({ entry }) => entry.connected) ??
      [...seen].sort((a, b) => (b.entry.lastFrameTime ?? "").localeCompare(a.entry.lastFrameTime ?? ""))[0];
    if (!best) return { name: source.name, live: false, message: "no collector pod reports this source yet" };
    const total = (field: "framesPublished" | "framesDropped") =>
      seen.reduce((sum, { entry }) => sum + entry[field], 0);
    return {
      name: source.name,
      live: best.entry.connected,
      pod: best.pod,
      framesPublished: total("framesPublished"),
      framesDropped: total("framesDropped"),
      framesPerSecond:
        Math.round(seen.reduce((sum, { entry }) => sum + entry.framesPerSecond, 0) * 100) / 100,
      ...(best.entry.lastFrameTime ? { lastFrameTime: best.entry.lastFrameTime } : {}),
      ...(best.entry.lastError ? { message: best.entry.lastError } : {}),
    };
  });
}

export function statusFields(spec: VideoCollectorSpec, lines: SourceLine[]): Partial<VideoCollectorStatus> {
  return {
    sourcesTotal: spec.sources.length,
    sourcesLive: lines.filter((line) => line.live).length,
    framesPerSecond:
      Math.round(lines.reduce((sum, line) => sum + (line.framesPerSecond ?? 0), 0) * 100) / 100,
    droppedFrames: lines.reduce((sum, line) => sum + (line.framesDropped ?? 0), 0),
    sources: lines,
  };
}

export function videoCollectorHealth(input: {
  problems: SpecProblem[];
  spec: VideoCollectorSpec;
  pods: PodsView;
  lines: SourceLine[];
  podProblem?: PodProblem;
}): Health {
  const { problems, spec, pods, lines } = input;
  if (problems.length > 0) return problemHealth(problems, "the spec, the Kafka topic or the archive target");
  const stopped = spec.clusterOperation.stopped;
  if (stopped && pods.settled) {
    return {
      ready: {
        status: ConditionStatus.True,
        reason: Reason.Stopped,
        message: "stopped: no collector pod runs",
      },
      progressing: { status: ConditionStatus.False, reason: Reason.Stopped, message: "" },
      degraded: { status: ConditionStatus.False, reason: Reason.Stopped, message: "" },
    };
  }
  if (!pods.settled) {
    const reason = stopped ? Reason.ScalingDown : Reason.WaitingForChildren;
    const message = `waiting for collector pods: ${pods.ready}/${pods.desired} ready`;
    return withPodProblem(
      {
        ready: { status: ConditionStatus.False, reason, message },
        progressing: { status: ConditionStatus.True, reason, message },
        degraded: { status: ConditionStatus.False, reason: Reason.Reconciling, message: "" },
      },
      input.podProblem,
    );
  }
  const pulled = new Set(spec.sources.filter((source) => source.url).map((source) => source.name));
  const down = lines.filter((line) => pulled.has(line.name) && !line.live);
  const summary = `${lines.filter((line) => line.live).length}/${lines.length} sources live on ${pods.ready} pod(s)`;
  if (pods.unreachable.length > 0 && pods.reports.length === 0) {
    const message = `the collector pods run but their /status cannot be read (${pods.unreachable.join("; ")}); source health unknown`;
    return {
      ready: { status: ConditionStatus.False, reason: Reason.DependencyNotReady, message },
      progressing: { status: ConditionStatus.False, reason: Reason.Reconciled, message: "" },
      degraded: { status: ConditionStatus.True, reason: Reason.DependencyNotReady, message },
    };
  }
  if (down.length > 0) {
    const message = down.map((line) => `${line.name}: ${line.message ?? "not delivering frames"}`).join("; ");
    return {
      ready: {
        status: ConditionStatus.False,
        reason: Reason.SourceUnreachable,
        message: `${down.length} pulled source(s) deliver no frames (${summary}): ${message}`,
      },
      progressing: { status: ConditionStatus.False, reason: Reason.Reconciled, message: "" },
      degraded: { status: ConditionStatus.True, reason: Reason.SourceUnreachable, message },
    };
  }
  return withPodProblem(
    {
      ready: { status: ConditionStatus.True, reason: Reason.SourcesLive, message: summary },
      progressing: { status: ConditionStatus.False, reason: Reason.Reconciled, message: "" },
      degraded: { status: ConditionStatus.False, reason: Reason.Reconciled, message: "" },
    },
    input.podProblem,
  );
}
