/**
 * Schedules as Tributary reads them wherever one appears (a Dag's runs, a CDCStream's
 * snapshots): a preset or five cron fields, parsed by cron-parser, in an IANA time zone. The
 * CRD only checks a schedule's shape; what its fields hold is checked here, in the controllers'
 * validate step, and reported as Degraded with reason InvalidSchedule.
 */
import { type CronExpression, CronExpressionParser } from "cron-parser";
import { schedulePresets } from "../api/common.js";
import { Reason } from "../api/conditions.js";
import type { SpecProblem } from "./common.js";

const expectedShape = `expected 5 fields (minute hour day-of-month month day-of-week, e.g. "*/15 * * * *") or one of the presets ${Object.keys(schedulePresets).join(", ")}`;

/** A hashed value (`H`, `H/5`, `H(0-29)`); letters around an H belong to a name such as THU. */
const hashedValue = /(?<![A-Za-z])H(?![A-Za-z])/;

/**
 * The schedule, read in `timeZone` (default UTC) from `currentDate` (default now); throws an
 * Error saying what is wrong with it. cron-parser also reads 4 or 6 fields and presets of its
 * own (@minutely, @weekdays, ...), which Tributary does not promise, so the shape is checked
 * first; presets are expanded from Tributary's table.
 */
export function parseSchedule(
  schedule: string,
  { timeZone = "UTC", currentDate }: { timeZone?: string; currentDate?: Date } = {},
): CronExpression {
  const expression = Object.hasOwn(schedulePresets, schedule)
    ? schedulePresets[schedule as keyof typeof schedulePresets]
    : schedule.trim();
  if (expression.startsWith("@")) throw new Error(`${expression} is not a preset Tributary knows`);
  const fields = expression.split(/\s+/);
  if (fields.length !== 5) throw new Error(`it has ${fields.length} fields`);
  // cron-parser replaces H with a random value unless given a seed, so the schedule would move
  // each time the operator (or, later, the scheduler) read it.
  if (fields.some((field) => hashedValue.test(field))) {
    throw new Error("H (a hashed value) is not supported: write the value the field should have");
  }
  return CronExpressionParser.parse(expression, { tz: timeZone, ...(currentDate ? { currentDate } : {}) });
}

/** The problem with the schedule at `path` (e.g. spec.schedule), if any. */
export function scheduleProblem(path: string, schedule: string): SpecProblem | undefined {
  try {
    parseSchedule(schedule);
    return undefined;
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return {
      reason: Reason.InvalidSchedule,
      message: `${path}: ${JSON.stringify(schedule)} is not a valid cron expression: ${why}; ${expectedShape}`,
    };
  }
}

/** Whether the runtime (its ICU data, which cron-parser's time zones use too) knows the zone. */
export function isKnownTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone });
    return true;
  } catch {
    return false;
  }
}

/** The problem with the time zone at `path` (e.g. spec.timeZone) a schedule is read in, if any. */
export function timeZoneProblem(path: string, timeZone: string): SpecProblem | undefined {
  if (isKnownTimeZone(timeZone)) return undefined;
  return {
    reason: Reason.InvalidSchedule,
    message: `${path}: ${JSON.stringify(timeZone)} is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)`,
  };
}
