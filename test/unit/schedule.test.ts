import { describe, expect, it } from "vitest";
import { cdcStreamDefinition } from "../../src/api/cdcstream.js";
import { cronOrPresetSchema, schedulePresets } from "../../src/api/common.js";
import { dagDefinition } from "../../src/api/dag.js";
import { validateCdcStream } from "../../src/controllers/cdcstream/validate.js";
import { validateDag } from "../../src/controllers/dag/validate.js";
import { parseSchedule, scheduleProblem, timeZoneProblem } from "../../src/controllers/schedule.js";

const dag = (fields: Record<string, unknown>) =>
  dagDefinition.spec.parse({ tasks: [{ id: "only", command: ["true"] }], ...fields });

const cdcStream = (snapshot: Record<string, unknown>) =>
  cdcStreamDefinition.spec.parse({
    source: { postgres: { host: "db", database: "shop", credentialsSecret: { name: "db" } } },
    target: { topicPrefix: "shop" },
    snapshot,
  });

describe("schedules", () => {
  it.each([
    ["@daily", "2026-01-02T00:00:00.000Z"],
    ["@midnight", "2026-01-02T00:00:00.000Z"],
    ["@hourly", "2026-01-01T01:00:00.000Z"],
    ["@weekly", "2026-01-04T00:00:00.000Z"],
    ["@monthly", "2026-02-01T00:00:00.000Z"],
    ["@yearly", "2027-01-01T00:00:00.000Z"],
    ["@annually", "2027-01-01T00:00:00.000Z"],
    ["*/15 * * * *", "2026-01-01T00:15:00.000Z"],
    ["30 1 * * MON-FRI", "2026-01-01T01:30:00.000Z"],
    ["0 0 * * THU", "2026-01-08T00:00:00.000Z"],
    ["0 0 29 2 *", "2028-02-29T00:00:00.000Z"],
    ["0 0 L * *", "2026-01-31T00:00:00.000Z"],
  ])("reads %s", (schedule, next) => {
    expect(scheduleProblem("spec.schedule", schedule)).toBeUndefined();
    // 2026-01-01 is a Thursday.
    const parsed = parseSchedule(schedule, { currentDate: new Date("2026-01-01T00:00:00Z") });
    expect(parsed.next().toISOString()).toBe(next);
    expect(cronOrPresetSchema.safeParse(schedule).success).toBe(true);
  });

  it("reads a schedule in its time zone", () => {
    const parsed = parseSchedule("30 1 * * *", {
      timeZone: "Europe/Paris",
      currentDate: new Date("2026-01-01T00:00:00Z"),
    });
    expect(parsed.next().toISOString()).toBe("2026-01-01T00:30:00.000Z");
  });

  it.each([
    ["a b c d e", /Invalid characters, got value: a/],
    // cron-parser refuses a day that no month of the expression has.
    ["0 0 31 2 *", /Invalid explicit day of month definition/],
    ["0 0 30 2 *", /Invalid explicit day of month definition/],
    ["60 * * * *", /expected range 0-59/],
    ["0 24 * * *", /expected range 0-23/],
    ["5-1 * * * *", /Invalid range/],
    ["*/0 * * * *", /cannot repeat at every 0/],
    ["0 0 * * 8", /expected range 0-7/],
    ["0 0 * * * *", /it has 6 fields/],
    ["* * * *", /it has 4 fields/],
    ["H * * * *", /H \(a hashed value\) is not supported/],
    ["@minutely", /@minutely is not a preset Tributary knows/],
  ])("refuses %s, with the parser's reason", (schedule, why) => {
    const problem = scheduleProblem("spec.schedule", schedule);
    expect(problem?.reason).toBe("InvalidSchedule");
    expect(problem?.message).toMatch(why);
    expect(problem?.message).toContain(
      `spec.schedule: ${JSON.stringify(schedule)} is not a valid cron expression: `,
    );
    expect(problem?.message).toContain("expected 5 fields (minute hour day-of-month month day-of-week");
  });

  it("leaves the fields to the controllers: the CRD's pattern counts tokens only", () => {
    for (const preset of Object.keys(schedulePresets))
      expect(cronOrPresetSchema.safeParse(preset).success).toBe(true);
    expect(cronOrPresetSchema.safeParse("a b c d e").success).toBe(true);
    for (const malformed of ["0 0 * * * *", "* * * *", "every day", "@minutely", " 0 0 * * *"]) {
      const result = cronOrPresetSchema.safeParse(malformed);
      expect(result.success, malformed).toBe(false);
      expect(result.error?.issues[0]?.message).toMatch(/must be a cron expression of 5 fields/);
    }
  });

  it("knows IANA time zones and refuses others", () => {
    for (const zone of ["UTC", "Europe/Paris", "America/New_York", "Etc/GMT+1"]) {
      expect(timeZoneProblem("spec.timeZone", zone), zone).toBeUndefined();
    }
    for (const zone of ["Mars/Olympus", "+01:00", ""]) {
      const problem = timeZoneProblem("spec.timeZone", zone);
      expect(problem?.reason, zone).toBe("InvalidSchedule");
      expect(problem?.message).toBe(
        `spec.timeZone: ${JSON.stringify(zone)} is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)`,
      );
    }
  });
});

describe("a Dag's schedule", () => {
  it("is accepted when the parser reads it, or when there is none", () => {
    expect(validateDag(dag({ schedule: "*/15 * * * *", timeZone: "Europe/Paris" }))).toEqual([]);
    expect(validateDag(dag({ schedule: "@daily" }))).toEqual([]);
    expect(validateDag(dag({ schedule: null }))).toEqual([]);
    expect(validateDag(dag({}))).toEqual([]);
  });

  it("is reported with the field's path and the parser's message", () => {
    const problems = validateDag(dag({ schedule: "a b c d e" }));
    expect(problems).toEqual([
      {
        reason: "InvalidSchedule",
        message: expect.stringMatching(
          /^spec\.schedule: "a b c d e" is not a valid cron expression: Invalid characters, got value: a; /,
        ),
      },
    ]);
    const zone = validateDag(dag({ schedule: "@daily", timeZone: "Europe/Pariss" }));
    expect(zone.map((problem) => problem.message)).toEqual([
      expect.stringMatching(/^spec\.timeZone: "Europe\/Pariss" is not an IANA time zone/),
    ]);
  });
});

describe("a CDCStream's snapshot schedule", () => {
  it("is accepted when the parser reads it, or when there is none", () => {
    expect(validateCdcStream(cdcStream({ schedule: "0 2 * * *", timeZone: "Europe/Paris" }))).toEqual([]);
    expect(validateCdcStream(cdcStream({}))).toEqual([]);
  });

  it("is reported with the field's path and the parser's message", () => {
    const problems = validateCdcStream(cdcStream({ schedule: "0 0 31 2 *", timeZone: "Moon/Base" }));
    expect(problems.map((problem) => problem.reason)).toEqual(["InvalidSchedule", "InvalidSchedule"]);
    expect(problems[0]!.message).toMatch(
      /^spec\.snapshot\.schedule: "0 0 31 2 \*" is not a valid cron expression: Invalid explicit day of month definition; /,
    );
    expect(problems[1]!.message).toMatch(/^spec\.snapshot\.timeZone: "Moon\/Base" is not an IANA time zone/);
  });
});
