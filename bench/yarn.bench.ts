/**
 * YarnQueue's capacity scheduler: allocations per second in a simulation of 1,000 node managers
 * (8 GB, 8 vcores each) and 10 leaf queues under a two-level tree, 5 applications per queue and
 * 3 users each, every application asking for more than the cluster holds. Each node heartbeat
 * completes the node's containers and the scheduler fills it again, so every allocation walks
 * the queue tree, the user limits and the asks. Beside it, in the same run, a no-op scheduling
 * loop over the same heartbeats that hands each free slot to a fixed application without any
 * queue logic: the floor of what bookkeeping costs. Rounds alternate; medians are printed.
 *
 * Then, on a real resource manager and three node managers (processes on loopback), the time
 * from a submit to the application master RUNNING.
 *
 *   npm run bench -- yarn
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { YarnClient } from "../src/dataplane/yarn/client.js";
import { CapacityScheduler, ExitStatus, type QueueDefinition } from "../src/dataplane/yarn/scheduler.js";

const NODES = 1000;
const QUEUES = 10;
const APPS_PER_QUEUE = 5;
const ROUNDS = 5;
const ROUND_MS = 1000;
const GB = 1024;

function queueTree(): QueueDefinition[] {
  const queues: QueueDefinition[] = [
    { path: "root", capacity: 100 },
    { path: "root.batch", capacity: 60, maximumCapacity: 100 },
    { path: "root.interactive", capacity: 40, maximumCapacity: 100 },
  ];
  for (let q = 0; q < QUEUES; q++) {
    const parent = q < 6 ? "root.batch" : "root.interactive";
    queues.push({
      path: `${parent}.q${q}`,
      capacity: q < 6 ? 100 / 6 : 25,
      maximumCapacity: 100,
      userLimitFactor: 4,
      minimumUserLimitPercent: 34,
    });
  }
  return queues;
}

function schedulerRound(scheduler: CapacityScheduler, nodeIds: string[], ms: number): number {
  const before = scheduler.allocations;
  const start = process.hrtime.bigint();
  let n = 0;
  let heartbeats = 0;
  for (;;) {
    const nodeId = nodeIds[n]!;
    n = (n + 1) % nodeIds.length;
    for (const container of scheduler.containersOfNode(nodeId))
      if (!container.isAM) scheduler.completeContainer(container.id, ExitStatus.SUCCESS, "");
    scheduler.nodeUpdate(nodeId);
    if (++heartbeats % 64 === 0 && Number(process.hrtime.bigint() - start) > ms * 1e6) break;
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  return (scheduler.allocations - before) / elapsed;
}

/**
 * The same heartbeats with no scheduling decision: each node's finished containers are freed and
 * its free memory handed out in 1 GB slots to nobody in particular. Counters only, so it leaves
 * no garbage for the scheduler's next round to collect.
 */
function noopRound(ms: number): number {
  const available = new Float64Array(NODES).fill(8 * GB);
  const running = new Uint32Array(NODES);
  let allocations = 0;
  const start = process.hrtime.bigint();
  let n = 0;
  let heartbeats = 0;
  for (;;) {
    available[n] = available[n]! + running[n]! * GB;
    running[n] = 0;
    while (available[n]! >= GB) {
      running[n] = running[n]! + 1;
      available[n] = available[n]! - GB;
      allocations++;
    }
    n = (n + 1) % NODES;
    if (++heartbeats % 64 === 0 && Number(process.hrtime.bigint() - start) > ms * 1e6) break;
  }
  return allocations / (Number(process.hrtime.bigint() - start) / 1e9);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function simulation(): { scheduler: CapacityScheduler; nodeIds: string[] } {
  const scheduler = new CapacityScheduler(queueTree(), {
    minimumAllocation: { memory: GB, vcores: 1 },
    maximumAllocation: { memory: 8 * GB, vcores: 8 },
  });
  const nodeIds: string[] = [];
  for (let i = 0; i < NODES; i++) {
    const id = `nm-${i}:8041`;
    scheduler.addNode(id, `nm-${i}`, `/rack-${i % 20}`, { memory: 8 * GB, vcores: 8 });
    nodeIds.push(id);
  }
  for (let q = 0; q < QUEUES; q++)
    for (let a = 0; a < APPS_PER_QUEUE; a++) {
      const id = `application_1_${q}_${a}`;
      scheduler.addApplication({ id, queue: `q${q}`, user: `user${a % 3}`, priority: a % 2 });
      scheduler.updateAsks(id, [
        { priority: 1, resourceName: "*", capability: { memory: GB, vcores: 1 }, numContainers: 1e12 },
      ]);
    }
  return { scheduler, nodeIds };
}

export async function run(): Promise<void> {
  const { scheduler, nodeIds } = simulation();
  // Warm up both loops (JIT) before measuring.
  schedulerRound(scheduler, nodeIds, 300);
  noopRound(300);
  const rates: number[] = [];
  const noops: number[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const rate = schedulerRound(scheduler, nodeIds, ROUND_MS);
    const noop = noopRound(ROUND_MS);
    rates.push(rate);
    noops.push(noop);
    ratios.push(rate / noop);
    // Keep applications wanting more than the cluster holds.
    for (let q = 0; q < QUEUES; q++)
      for (let a = 0; a < APPS_PER_QUEUE; a++)
        scheduler.updateAsks(`application_1_${q}_${a}`, [
          { priority: 1, resourceName: "*", capability: { memory: GB, vcores: 1 }, numContainers: 1e12 },
        ]);
  }
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  console.log(
    `| case | allocations/s (median of ${ROUNDS}) | reference: no-op loop, same heartbeats | ratio |`,
  );
  console.log("| --- | --- | --- | --- |");
  console.log(
    `| capacity scheduler, ${NODES} node managers, ${QUEUES} queues, ${QUEUES * APPS_PER_QUEUE} applications | ${fmt(median(rates))} (${fmt(Math.min(...rates))}–${fmt(Math.max(...rates))}) | ${fmt(median(noops))} | ${median(ratios).toFixed(3)} |`,
  );
  console.log("");
  await submitToRunning();
}

// ---------------------------------------------------------------- submit → master RUNNING

const ROOT = new URL("..", import.meta.url).pathname;
const TRIBUTARY = [process.execPath, "--import", import.meta.resolve("tsx"), join(ROOT, "src/cli.ts")];

function startRole(
  role: string,
  args: string[],
): Promise<{ child: ChildProcess; ready: Record<string, unknown> }> {
  const child = spawn(TRIBUTARY[0]!, [...TRIBUTARY.slice(1), role, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
    detached: true,
    env: { ...process.env, TRIBUTARY_LOG_LEVEL: "warn", TRIBUTARY_YARN_AM_HEARTBEAT_MS: "100" },
  });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.startsWith('{"ready"')) resolve({ child, ready: JSON.parse(line) as Record<string, unknown> });
    });
    child.once("exit", (code) => reject(new Error(`${role} exited with ${code}`)));
  });
}

/** The same program started and stopped with nothing else: what starting a master costs at least. */
async function bareStartMs(): Promise<number> {
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(TRIBUTARY[0]!, [...TRIBUTARY.slice(1), "yarn", "--help"], { stdio: "ignore" });
    child.once("exit", () => resolve());
    child.once("error", reject);
  });
  return performance.now() - start;
}

async function submitToRunning(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "tributary-yarn-bench-"));
  const rm = await startRole("resourcemanager", [
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--state-dir",
    join(dir, "rm"),
    "--minimum-allocation-mb",
    "128",
    "--node-heartbeat-interval-ms",
    "100",
  ]);
  const rmAddress = `127.0.0.1:${rm.ready.port}`;
  const nm = await startRole("nodemanager", [
    "--resource-manager",
    rmAddress,
    "--host",
    "127.0.0.1",
    "--advertised-host",
    "127.0.0.1",
    "--port",
    "0",
    "--memory",
    "4096",
    "--local-dir",
    join(dir, "local"),
    "--log-dir",
    join(dir, "logs"),
  ]);
  const client = new YarnClient(rmAddress, "bench", TRIBUTARY.join(" "));
  try {
    for (;;) {
      const nodes = (await (await fetch(`http://${rmAddress}/ws/v1/cluster/nodes`)).json()) as {
        nodes: { node: unknown[] };
      };
      if (nodes.nodes.node.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const submits: number[] = [];
    const bare: number[] = [];
    for (let round = 0; round < 5; round++) {
      bare.push(await bareStartMs());
      const start = performance.now();
      const id = await client.submit({
        job: { type: "shell", command: "true", numContainers: 1, containerMemory: 128 },
        amMemory: 512,
      });
      for (;;) {
        const app = await client.app(id);
        if (app.state === "RUNNING" || app.state === "FINISHED") break;
        if (app.state === "FAILED" || app.state === "KILLED")
          throw new Error(`${id} ${app.state}: ${app.diagnostics}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      submits.push(performance.now() - start);
      await client.waitForFinal(id);
    }
    console.log("| case | median of 5 | reference in the same run | ratio |");
    console.log("| --- | --- | --- | --- |");
    console.log(
      `| submit → application master RUNNING (resource manager + 1 node manager on loopback) | ${median(submits).toFixed(0)} ms (${Math.min(...submits).toFixed(0)}–${Math.max(...submits).toFixed(0)}) | the same program started bare (\`tributary yarn --help\`): ${median(bare).toFixed(0)} ms | ${(median(submits) / median(bare)).toFixed(2)} |`,
    );
  } finally {
    for (const role of [nm, rm]) {
      try {
        process.kill(-role.child.pid!, "SIGKILL");
      } catch {
        // Gone.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
