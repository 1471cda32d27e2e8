import { describe, expect, it } from "vitest";
import {
  CapacityScheduler,
  ExitStatus,
  QueueConfigError,
  type QueueDefinition,
  queuesByPath,
  SubmissionRefused,
} from "../../src/dataplane/yarn/scheduler.js";

const GB = 1024;

function twoQueues(overrides: Partial<Record<"a" | "b", Partial<QueueDefinition>>> = {}): QueueDefinition[] {
  return [
    { path: "root", capacity: 100 },
    { path: "root.a", capacity: 70, maximumCapacity: 100, userLimitFactor: 10, ...overrides.a },
    { path: "root.b", capacity: 30, maximumCapacity: 100, userLimitFactor: 10, ...overrides.b },
  ];
}

/** A cluster of simulated node managers whose containers run for `life` ticks of a fake clock. */
function simulation(queues: QueueDefinition[], options: { preemption?: boolean; nodes?: number } = {}) {
  let clock = 0;
  const scheduler = new CapacityScheduler(queues, {
    minimumAllocation: { memory: 512, vcores: 1 },
    maximumAllocation: { memory: 8 * GB, vcores: 8 },
    preemption: { enabled: options.preemption ?? false, maxWaitBeforeKillMs: 2 },
    now: () => clock,
  });
  const nodes = options.nodes ?? 4;
  for (let n = 0; n < nodes; n++)
    scheduler.addNode(`nm${n}:8041`, `nm${n}`, "/default-rack", { memory: 8 * GB, vcores: 16 });
  const started = new Map<string, number>();
  const wanted = new Map<string, number>();
  return {
    scheduler,
    submit(id: string, queue: string, user = "alice") {
      scheduler.addApplication({ id, queue, user, amResource: { memory: 512, vcores: 1 } });
    },
    /** The application keeps `count` containers of 1 GB wanted (re-asking as they complete). */
    want(id: string, count: number) {
      wanted.set(id, count);
      scheduler.updateAsks(id, [
        { priority: 1, resourceName: "*", capability: { memory: GB, vcores: 1 }, numContainers: count },
      ]);
    },
    tick(life: number) {
      clock++;
      for (let n = 0; n < nodes; n++)
        for (const container of scheduler.nodeUpdate(`nm${n}:8041`)) started.set(container.id, clock);
      for (const [id, at] of started) {
        const container = scheduler.container(id);
        if (!container) {
          started.delete(id);
          continue;
        }
        if (!container.isAM && clock - at >= life) {
          scheduler.completeContainer(id, ExitStatus.SUCCESS, "");
          started.delete(id);
        }
      }
      for (const [id, count] of wanted) {
        scheduler.pullCompleted(id);
        scheduler.pullAllocated(id);
        const usage = scheduler.applicationUsage(id);
        if (usage && count > 0) this.want(id, count);
      }
      for (const killed of scheduler.preemptionRound()) started.delete(killed.id);
    },
    used(path: string) {
      return queuesByPath(scheduler.schedulerInfo()).get(path)!.absoluteUsedCapacity;
    },
  };
}

describe("capacity scheduler", () => {
  it("two saturated queues at 70/30 converge to 70/30", () => {
    const sim = simulation(twoQueues());
    sim.submit("app-a", "a");
    sim.submit("app-b", "b");
    sim.want("app-a", 100);
    sim.want("app-b", 100);
    for (let t = 0; t < 200; t++) sim.tick(5);
    expect(sim.used("root.a") + sim.used("root.b")).toBeGreaterThan(95);
    expect(sim.used("root.a")).toBeGreaterThan(65);
    expect(sim.used("root.a")).toBeLessThan(75);
    expect(sim.used("root.b")).toBeGreaterThan(25);
    expect(sim.used("root.b")).toBeLessThan(35);
  });

  it("an idle queue's share is borrowed up to the other's maximum capacity", () => {
    const sim = simulation(twoQueues({ b: { maximumCapacity: 60 } }));
    sim.submit("app-b", "b");
    sim.want("app-b", 100);
    for (let t = 0; t < 50; t++) sim.tick(5);
    expect(sim.used("root.b")).toBeGreaterThan(55);
    expect(sim.used("root.b")).toBeLessThanOrEqual(60);
    expect(sim.used("root.a")).toBe(0);
  });

  it("with a user-limit factor of 1 a single user stays within the queue's guarantee (one container over at most)", () => {
    const sim = simulation(twoQueues({ b: { userLimitFactor: 1 } }));
    sim.submit("app-b", "b");
    sim.want("app-b", 100);
    for (let t = 0; t < 50; t++) sim.tick(5);
    expect(sim.used("root.b")).toBeGreaterThan(25);
    // YARN refuses a user once its usage is past the limit: the last container may overshoot.
    expect(sim.used("root.b")).toBeLessThanOrEqual(30 + (100 * 1024) / (4 * 8192));
  });

  it("when demand returns, preemption gives the starved queue its guarantee back", () => {
    const sim = simulation(twoQueues(), { preemption: true });
    sim.submit("app-b", "b");
    sim.want("app-b", 100);
    // Long-lived containers: without preemption nothing would come back.
    for (let t = 0; t < 20; t++) sim.tick(1_000_000);
    expect(sim.used("root.b")).toBeGreaterThan(95);
    sim.submit("app-a", "a");
    sim.want("app-a", 100);
    let rounds = 0;
    while (sim.used("root.a") < 65 && rounds < 200) {
      sim.tick(1_000_000);
      rounds++;
    }
    expect(sim.used("root.a")).toBeGreaterThanOrEqual(65);
    expect(sim.used("root.b")).toBeGreaterThanOrEqual(25);
    const completed = sim.scheduler.pullCompleted("app-b");
    void completed;
  });

  it("a starved queue's master larger than any one preempted container still starts: the borrower does not take the room back", () => {
    let clock = 0;
    const scheduler = new CapacityScheduler(twoQueues(), {
      minimumAllocation: { memory: 512, vcores: 1 },
      maximumAllocation: { memory: 8 * GB, vcores: 8 },
      preemption: { enabled: true, maxWaitBeforeKillMs: 2 },
      now: () => clock,
    });
    const nodes = [0, 1, 2, 3].map((n) => `nm${n}:8041`);
    for (const [n, id] of nodes.entries())
      scheduler.addNode(id, `nm${n}`, "/default-rack", { memory: 8 * GB, vcores: 16 });
    const asking = new Map<string, number>([["b", 1]]);
    // One node heartbeat a step, as they arrive at a resource manager; each master then asks for
    // its containers of 1 GB again; a preemption round after some steps.
    const step = (n: number, preempt: boolean) => {
      clock++;
      scheduler.nodeUpdate(nodes[n % nodes.length]!);
      for (const [id, count] of asking) {
        scheduler.pullCompleted(id);
        scheduler.pullAllocated(id);
        scheduler.updateAsks(id, [
          { priority: 1, resourceName: "*", capability: { memory: GB, vcores: 1 }, numContainers: count },
        ]);
      }
      if (preempt) scheduler.preemptionRound();
    };
    const used = (path: string) => queuesByPath(scheduler.schedulerInfo()).get(path)!.absoluteUsedCapacity;
    // b grows a container at a time, so its containers are spread over the nodes in time.
    scheduler.addApplication({ id: "b", queue: "b", user: "alice", amResource: { memory: 512, vcores: 1 } });
    for (let i = 0; i < 200; i++) step(i, true);
    expect(used("root.b")).toBeGreaterThan(95);
    // a arrives with a 2 GB master while b asks for many. Every round kills b's newest containers,
    // 1 GB here and there, one node after another: unless the room is held for a's master, b
    // takes each hole straight back and a never starts (a scheduler without it stays at a = 0).
    asking.set("b", 1_000);
    scheduler.addApplication({
      id: "a",
      queue: "a",
      user: "alice",
      amResource: { memory: 2 * GB, vcores: 1 },
    });
    asking.set("a", 100);
    for (let i = 200; i < 2_000 && used("root.a") < 65; i++) step(i, i % 4 === 0);
    expect(scheduler.containersOfApp("a").some((c) => c.isAM)).toBe(true);
    expect(used("root.a")).toBeGreaterThanOrEqual(65);
    expect(used("root.b")).toBeGreaterThanOrEqual(25);
  });

  it("without preemption (the default) long-lived containers are never taken back", () => {
    const sim = simulation(twoQueues());
    sim.submit("app-b", "b");
    sim.want("app-b", 100);
    for (let t = 0; t < 20; t++) sim.tick(1_000_000);
    sim.submit("app-a", "a");
    sim.want("app-a", 100);
    for (let t = 0; t < 50; t++) sim.tick(1_000_000);
    expect(sim.used("root.b")).toBeGreaterThan(95);
  });

  it("serves higher-priority applications first inside a queue (FIFO among equals)", () => {
    const sim = simulation(twoQueues(), { nodes: 1 });
    const { scheduler } = sim;
    scheduler.addApplication({ id: "first", queue: "a", user: "u", priority: 0 });
    scheduler.addApplication({ id: "second", queue: "a", user: "u", priority: 0 });
    scheduler.addApplication({ id: "urgent", queue: "a", user: "u", priority: 5 });
    for (const id of ["first", "second", "urgent"])
      scheduler.updateAsks(id, [
        { priority: 1, resourceName: "*", capability: { memory: 4 * GB, vcores: 1 }, numContainers: 1 },
      ]);
    const allocated = scheduler.nodeUpdate("nm0:8041").map((c) => c.appId);
    expect(allocated).toEqual(["urgent", "first"]);
  });

  it("prefers the node a request names and relaxes to any node after the locality delay", () => {
    const sim = simulation(twoQueues(), { nodes: 3 });
    const { scheduler } = sim;
    scheduler.addApplication({ id: "local", queue: "a", user: "u" });
    scheduler.updateAsks("local", [
      { priority: 1, resourceName: "nm2", capability: { memory: GB, vcores: 1 }, numContainers: 1 },
      { priority: 1, resourceName: "/default-rack", capability: { memory: GB, vcores: 1 }, numContainers: 1 },
      { priority: 1, resourceName: "*", capability: { memory: GB, vcores: 1 }, numContainers: 1 },
    ]);
    expect(scheduler.nodeUpdate("nm0:8041")).toEqual([]);
    const [placed] = scheduler.nodeUpdate("nm2:8041");
    expect(placed).toMatchObject({ host: "nm2", locality: "NODE_LOCAL" });
  });

  it("refuses bad submissions with the reason", () => {
    const scheduler = new CapacityScheduler(
      [
        { path: "root", capacity: 100 },
        { path: "root.open", capacity: 50, maxApplications: 2, minimumUserLimitPercent: 50 },
        { path: "root.closed", capacity: 25, state: "STOPPED" },
        {
          path: "root.private",
          capacity: 25,
          acl: { submitApplications: { users: ["bob"], groups: ["ops"] } },
        },
      ],
      { maximumAllocation: { memory: 8 * GB, vcores: 4 } },
    );
    scheduler.addNode("n:1", "n", "/default-rack", { memory: 4 * GB, vcores: 4 });
    expect(() => scheduler.checkSubmission("nope", "alice")).toThrow(/queue 'nope' does not exist/);
    expect(() => scheduler.checkSubmission("root", "alice")).toThrow(/parent queue/);
    expect(() => scheduler.checkSubmission("closed", "alice")).toThrow(/STOPPED/);
    expect(() => scheduler.checkSubmission("private", "alice")).toThrow(/may not submit/);
    expect(() => scheduler.checkSubmission("private", "carol", ["ops"])).not.toThrow();
    scheduler.addApplication({ id: "x1", queue: "open", user: "alice" });
    expect(() => scheduler.addApplication({ id: "x2", queue: "open", user: "alice" })).toThrow(
      /user 'alice' already has 1 applications .* limit .* is 1/,
    );
    scheduler.addApplication({ id: "y1", queue: "open", user: "bob" });
    expect(() => scheduler.checkSubmission("open", "carol")).toThrow(/maxApplications is 2/);
    expect(() => scheduler.checkRequestable({ memory: 6 * GB, vcores: 1 })).toThrow(/larger than any node/);
    expect(() => scheduler.checkRequestable({ memory: 16 * GB, vcores: 1 })).toThrow(/maximum allocation/);
    expect(scheduler.hasApplication("x2")).toBe(false);
  });

  it("a STOPPED queue drains: running applications keep their containers, new ones are refused", () => {
    const queues = twoQueues();
    const sim = simulation(queues);
    sim.submit("running", "a");
    sim.want("running", 4);
    sim.tick(1_000_000);
    sim.scheduler.refreshQueues(queues.map((q) => (q.path === "root.a" ? { ...q, state: "STOPPED" } : q)));
    expect(() => sim.submit("late", "a")).toThrow(SubmissionRefused);
    expect(sim.scheduler.applicationUsage("running")!.containers).toBe(5);
    sim.want("running", 2);
    sim.tick(1_000_000);
    expect(sim.scheduler.applicationUsage("running")!.containers).toBe(7);
  });

  it("refreshQueues refuses capacities that do not add to 100, naming the parent, and changes nothing", () => {
    const sim = simulation(twoQueues());
    expect(() =>
      sim.scheduler.refreshQueues([
        { path: "root", capacity: 100 },
        { path: "root.a", capacity: 70 },
        { path: "root.b", capacity: 20 },
      ]),
    ).toThrow(QueueConfigError);
    expect(() =>
      sim.scheduler.refreshQueues([
        { path: "root", capacity: 100 },
        { path: "root.a", capacity: 70 },
        { path: "root.b", capacity: 20 },
      ]),
    ).toThrow(/children of 'root' add up to 90%/);
    expect(queuesByPath(sim.scheduler.schedulerInfo()).get("root.b")!.capacity).toBe(30);
  });

  it("nested queues: a child's absolute share is the product of the path", () => {
    const scheduler = new CapacityScheduler([
      { path: "root", capacity: 100 },
      { path: "root.eng", capacity: 60, maximumCapacity: 80 },
      { path: "root.eng.etl", capacity: 50 },
      { path: "root.eng.adhoc", capacity: 50 },
      { path: "root.ops", capacity: 40 },
    ]);
    const info = queuesByPath(scheduler.schedulerInfo());
    expect(info.get("root.eng.etl")).toMatchObject({ absoluteCapacity: 30, absoluteMaxCapacity: 80 });
    expect(scheduler.resolveLeaf("etl")).toBe("root.eng.etl");
  });

  it("a lost node's containers complete as ABORTED and the master is told", () => {
    const sim = simulation(twoQueues(), { nodes: 2 });
    sim.submit("app", "a");
    sim.want("app", 12);
    sim.tick(1_000_000);
    sim.scheduler.pullCompleted("app");
    const onNode = sim.scheduler.containersOfNode("nm1:8041").length;
    expect(onNode).toBeGreaterThan(0);
    sim.scheduler.removeNode("nm1:8041");
    const completed = sim.scheduler.pullCompleted("app");
    expect(completed).toHaveLength(onNode);
    expect(completed[0]).toMatchObject({ exitStatus: ExitStatus.ABORTED });
    expect(completed[0]!.diagnostics).toMatch(/lost/);
  });
});
