import { describe, expect, it } from "vitest";
import { topicSpecSchema } from "../../src/api/topic.js";
import { findCycle, validateDag } from "../../src/controllers/dag/validate.js";
import { validateTopic } from "../../src/controllers/topic/validate.js";
import { type QueueNode, queuePlacement, validateQueue } from "../../src/controllers/yarnqueue/validate.js";

describe("Dag validation", () => {
  it("accepts a DAG", () => {
    expect(
      validateDag({
        tasks: [
          { id: "extract", dependsOn: [] },
          { id: "transform", dependsOn: ["extract"] },
          { id: "load", dependsOn: ["transform", "extract"] },
        ] as never,
        timeZone: "UTC",
      }),
    ).toEqual([]);
  });

  it("reports a cycle with its path", () => {
    const tasks = [
      { id: "a", dependsOn: ["c"] },
      { id: "b", dependsOn: ["a"] },
      { id: "c", dependsOn: ["b"] },
      { id: "d", dependsOn: [] },
    ];
    const cycle = findCycle(tasks)!;
    expect(cycle[0]).toBe(cycle.at(-1));
    expect(new Set(cycle)).toEqual(new Set(["a", "b", "c"]));
    const problems = validateDag({ tasks } as never);
    expect(problems.map((problem) => problem.reason)).toEqual(["DagCycle"]);
    expect(problems[0]!.message).toMatch(/cycle (a|b|c) -> /);
  });

  it("reports a self-dependency and an unknown dependency", () => {
    const problems = validateDag({
      tasks: [
        { id: "a", dependsOn: ["a"] },
        { id: "b", dependsOn: ["ghost"] },
      ],
    } as never);
    expect(problems.map((problem) => problem.reason).sort()).toEqual(["DagCycle", "UnknownDependency"]);
    expect(problems.find((problem) => problem.reason === "UnknownDependency")!.message).toContain("'ghost'");
  });
});

describe("Topic validation", () => {
  it("refuses fewer partitions than the topic has", () => {
    const spec = topicSpecSchema.parse({ partitions: 3 });
    expect(validateTopic(spec, { partitions: 3 })).toEqual([]);
    expect(validateTopic(spec, undefined)).toEqual([]);
    const problems = validateTopic(spec, { partitions: 6 });
    expect(problems.map((problem) => problem.reason)).toEqual(["PartitionsCannotShrink"]);
    expect(problems[0]!.message).toContain("already has 6 partitions");
  });
});

describe("YarnQueue validation", () => {
  const queue = (
    name: string,
    parent: string | undefined,
    capacity: number | undefined,
    root = false,
  ): QueueNode => ({
    name,
    spec: { cluster: "default", parent, capacity, ...(root ? { root: {} as never } : {}) },
  });

  it("accepts children of a parent that add up to 100", () => {
    const peers = [
      queue("root", undefined, undefined, true),
      queue("a", undefined, 60),
      queue("b", undefined, 40),
    ];
    expect(validateQueue(peers[1]!, peers)).toEqual([]);
  });

  it("refuses children of a parent whose capacities add up to more than 100", () => {
    const peers = [
      queue("root", undefined, undefined, true),
      queue("analytics", undefined, 100),
      queue("adhoc", "analytics", 70.5),
      queue("etl", "analytics", 40),
    ];
    const problems = validateQueue(peers[2]!, peers);
    expect(problems.map((problem) => problem.reason)).toEqual(["CapacityExceeded"]);
    expect(problems[0]!.message).toContain("add up to 110.5%");
    expect(problems[0]!.message).toContain("adhoc=70.5, etl=40");
  });

  it("refuses an unknown parent", () => {
    const problems = validateQueue(queue("orphan", "nowhere", 10), [
      queue("root", undefined, undefined, true),
    ]);
    expect(problems.map((problem) => problem.reason)).toEqual(["ParentNotFound"]);
  });
});

describe("YarnQueue placement", () => {
  it("computes the path, leafness and absolute capacities up the tree", () => {
    const node = (
      name: string,
      parent: string | undefined,
      capacity?: number,
      maximumCapacity?: number,
      root = false,
    ) => ({
      name,
      spec: { cluster: "default", parent, capacity, maximumCapacity, ...(root ? { root: {} as never } : {}) },
    });
    const peers = [
      node("root", undefined, undefined, undefined, true),
      node("analytics", undefined, 50, 80),
      node("adhoc", "analytics", 40, 50),
      node("etl", undefined, 50),
    ];
    expect(queuePlacement(peers[2]!, peers)).toEqual({
      queuePath: "root.analytics.adhoc",
      leaf: true,
      guaranteedCapacity: 20,
      absoluteMaximumCapacity: 40,
    });
    expect(queuePlacement(peers[1]!, peers)).toMatchObject({ queuePath: "root.analytics", leaf: false });
    expect(queuePlacement(peers[0]!, peers)).toMatchObject({ queuePath: "root", guaranteedCapacity: 100 });
    const looping = [node("a", "b", 10), node("b", "a", 10)];
    expect(queuePlacement(looping[0]!, looping)).toBeUndefined();
  });
});
