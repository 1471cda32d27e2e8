import type { CDCStreamSpec } from "../../api/cdcstream.js";
import type { SpecProblem } from "../common.js";
import { scheduleProblem, timeZoneProblem } from "../schedule.js";

/**
 * What the CRD cannot check of a CDCStream: the CRD checks only the snapshot schedule's shape,
 * so its fields and the time zone it is read in are checked here.
 */
export function validateCdcStream(spec: Pick<CDCStreamSpec, "snapshot">): SpecProblem[] {
  const { schedule, timeZone } = spec.snapshot;
  return [
    schedule === undefined ? undefined : scheduleProblem("spec.snapshot.schedule", schedule),
    timeZoneProblem("spec.snapshot.timeZone", timeZone),
  ].filter((problem) => problem !== undefined);
}
