import { describe, expect, it } from "vitest";
import { findCondition } from "../../src/api/conditions.js";
import { formatTime, healthConditions, setCondition } from "../../src/operator/conditions.js";

const t0 = new Date("2026-01-01T00:00:00.123Z");
const t1 = new Date("2026-01-01T01:00:00Z");

describe("conditions", () => {
  it("adds a condition with observedGeneration and a second-precision transition time", () => {
    const conditions = setCondition(
      undefined,
      { type: "Ready", status: "False", reason: "WaitingForChildren" },
      3,
      t0,
    );
    expect(conditions).toEqual([
      {
        type: "Ready",
        status: "False",
        observedGeneration: 3,
        lastTransitionTime: "2026-01-01T00:00:00Z",
        reason: "WaitingForChildren",
        message: "",
      },
    ]);
  });

  it("keeps lastTransitionTime when only reason, message or generation change", () => {
    const before = setCondition(
      undefined,
      { type: "Ready", status: "False", reason: "A", message: "one" },
      1,
      t0,
    );
    const after = setCondition(
      before,
      { type: "Ready", status: "False", reason: "B", message: "two" },
      2,
      t1,
    );
    expect(findCondition(after, "Ready")).toMatchObject({
      reason: "B",
      message: "two",
      observedGeneration: 2,
      lastTransitionTime: formatTime(t0),
    });
  });

  it("moves lastTransitionTime when the status flips", () => {
    const before = setCondition(undefined, { type: "Ready", status: "False", reason: "A" }, 1, t0);
    const after = setCondition(before, { type: "Ready", status: "True", reason: "ChildrenReady" }, 1, t1);
    expect(findCondition(after, "Ready")?.lastTransitionTime).toBe(formatTime(t1));
  });

  it("leaves other conditions alone, does not modify its input, and orders Ready, Progressing, Degraded", () => {
    const input = setCondition(undefined, { type: "Degraded", status: "False", reason: "Reconciled" }, 1, t0);
    const frozen = structuredClone(input);
    const result = healthConditions(
      input,
      {
        ready: { status: "True", reason: "ChildrenReady" },
        progressing: { status: "False", reason: "Reconciled" },
        degraded: { status: "True", reason: "ReconcileFailed", message: "boom" },
      },
      2,
      t1,
    );
    expect(input).toEqual(frozen);
    expect(result.map((condition) => condition.type)).toEqual(["Ready", "Progressing", "Degraded"]);
    expect(findCondition(result, "Degraded")).toMatchObject({
      status: "True",
      lastTransitionTime: formatTime(t1),
    });
  });
});
