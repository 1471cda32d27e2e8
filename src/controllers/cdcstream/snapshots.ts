/**
 * Scheduled snapshots to files, decided by the operator: at each time of spec.snapshot.schedule
 * (read in spec.snapshot.timeZone by cron-parser, as the validate step checked it) it creates one
 * Job, named after the time, so a repeated create is refused rather than run twice.
 *
 * A Job per time rather than a CronJob: the schedule is read by the same parser that validated it
 * (presets, the refusal of H, time zones) and that computes status.nextSnapshotTime, so the time
 * shown is the time it runs; a run is never started beside a running one (a time that comes
 * while one runs is taken as soon as it ends, once, as a CronJob's missed runs are); and the
 * results come back into status from the Jobs the operator already watches.
 */
import type { CDCStreamStatus } from "../../api/cdcstream.js";
import type { KubeObject } from "../../operator/kube.js";
import { parseSchedule } from "../schedule.js";

export interface ScheduleDecision {
  /** A scheduled time whose Job should be created now. */
  due?: Date;
  /** The next scheduled time after now. */
  next?: Date;
}

/**
 * `since`: the last time a Job was created for (status.lastScheduleTime), or the resource's
 * creation. Only the latest of several missed times is taken.
 */
export function decideSnapshot(input: {
  schedule: string;
  timeZone: string;
  since: Date;
  now: Date;
  running: boolean;
}): ScheduleDecision {
  const expression = parseSchedule(input.schedule, { timeZone: input.timeZone, currentDate: input.since });
  let due: Date | undefined;
  let next: Date | undefined;
  for (let i = 0; i < 100_000; i++) {
    const time = expression.next().toDate();
    if (time.getTime() > input.now.getTime()) {
      next = time;
      break;
    }
    due = time;
  }
  return { ...(due && !input.running ? { due } : {}), ...(next ? { next } : {}) };
}

type SnapshotEntry = NonNullable<CDCStreamStatus["snapshots"]>[number];

/** What `tributary cdc-snapshot` writes as its termination message. */
export interface SnapshotSummary {
  manifest: string;
  rows: number;
  lsn: string;
  tables: number;
}

interface JobStatus {
  succeeded?: number;
  failed?: number;
  active?: number;
  conditions?: { type: string; status: string; message?: string; reason?: string }[];
}

export function jobResult(job: KubeObject): SnapshotEntry["result"] {
  const status = (job.status ?? {}) as JobStatus;
  const finished = (type: string) =>
    (status.conditions ?? []).some((condition) => condition.type === type && condition.status === "True");
  if (finished("Complete") || (status.succeeded ?? 0) > 0) return "Succeeded";
  if (finished("Failed")) return "Failed";
  return "Running";
}

/** The summary in a finished snapshot pod's termination message, or the pod's last words on failure. */
export function podReport(pods: readonly KubeObject[]): { summary?: SnapshotSummary; message?: string } {
  let message: string | undefined;
  for (const pod of pods) {
    const statuses = ((pod.status as { containerStatuses?: unknown[] } | undefined)?.containerStatuses ??
      []) as { state?: { terminated?: { exitCode?: number; message?: string } } }[];
    for (const status of statuses) {
      const terminated = status.state?.terminated;
      if (!terminated?.message) continue;
      if (terminated.exitCode === 0) {
        try {
          return { summary: JSON.parse(terminated.message) as SnapshotSummary };
        } catch {
          // Not ours: fall through to the message.
        }
      }
      message = terminated.message.trim().slice(0, 512);
    }
  }
  return message ? { message } : {};
}

/**
 * status.snapshots with each Job's state merged in: entries of Jobs gone (after their TTL) are
 * kept as they were last seen; newest first, at most `limit`.
 */
export function mergeSnapshots(
  previous: readonly SnapshotEntry[],
  jobs: readonly { job: KubeObject; time: Date; pods: readonly KubeObject[] }[],
  limit = 10,
): SnapshotEntry[] {
  const byJob = new Map(previous.map((entry) => [entry.job, entry]));
  for (const { job, time, pods } of jobs) {
    const result = jobResult(job);
    const report = result === "Running" ? {} : podReport(pods);
    const failure = ((job.status ?? {}) as JobStatus).conditions?.find(
      (condition) => condition.type === "Failed" && condition.status === "True",
    );
    byJob.set(job.metadata.name, {
      time: time.toISOString(),
      job: job.metadata.name,
      result,
      ...(report.summary
        ? { rows: report.summary.rows, manifest: report.summary.manifest, lsn: report.summary.lsn }
        : {}),
      ...(result === "Failed"
        ? { message: report.message ?? failure?.message ?? failure?.reason ?? "the snapshot Job failed" }
        : {}),
    });
  }
  return [...byJob.values()].sort((a, b) => Date.parse(b.time) - Date.parse(a.time)).slice(0, limit);
}
