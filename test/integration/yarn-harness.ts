/**
 * A YarnQueue cluster on loopback for the YARN tests: a real `tributary resourcemanager` and real
 * `tributary nodemanager` processes, each started as `node --import tsx src/cli.ts <role>` in its
 * own process group, so that a kill -9 of the group takes a node manager down with its containers,
 * as the death of its pod would.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { YarnClient } from "../../src/dataplane/yarn/client.js";
import type { QueueDefinition } from "../../src/dataplane/yarn/scheduler.js";
import { reservedPort } from "../support/ports.js";
import { awaitReady } from "../support/roles.js";

const ROOT = new URL("../..", import.meta.url).pathname;
/** How containers start `tributary` from their own directories. */
export const TRIBUTARY_COMMAND = `${process.execPath} --import ${import.meta.resolve("tsx")} ${join(ROOT, "src/cli.ts")}`;

export interface Role {
  child: ChildProcess;
  ready: Record<string, unknown>;
  log: string[];
}

export async function startRole(role: string, args: string[]): Promise<Role> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", role, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    env: { ...process.env, TRIBUTARY_LOG_LEVEL: "info", TRIBUTARY_YARN_AM_HEARTBEAT_MS: "200" },
  });
  const { ready, log } = await awaitReady(child, role, 90_000, 3000);
  return { child, ready, log };
}

/** kill -9 of the role's process group: the role and every process it started. */
export async function killGroup(role: Role): Promise<void> {
  if (role.child.exitCode !== null || role.child.signalCode !== null) return;
  const exited = once(role.child, "exit");
  try {
    process.kill(-role.child.pid!, "SIGKILL");
  } catch {
    role.child.kill("SIGKILL");
  }
  await exited;
}

export async function stopRole(role: Role): Promise<void> {
  if (role.child.exitCode !== null || role.child.signalCode !== null) return;
  const exited = once(role.child, "exit");
  role.child.kill("SIGTERM");
  const timer = setTimeout(() => {
    try {
      process.kill(-role.child.pid!, "SIGKILL");
    } catch {
      // Gone.
    }
  }, 15_000);
  await exited;
  clearTimeout(timer);
  try {
    process.kill(-role.child.pid!, "SIGKILL");
  } catch {
    // The group is empty.
  }
}

export interface YarnClusterOptions {
  queues: QueueDefinition[];
  nodeManagers?: number;
  /** MB per node manager. */
  memory?: number;
  rmArgs?: string[];
  userGroups?: Record<string, string[]>;
}

export class YarnCluster {
  rm!: Role;
  readonly nms: Role[] = [];
  rmPort = 0;
  dir = "";
  client!: YarnClient;

  constructor(private readonly options: YarnClusterOptions) {}

  get rmAddress(): string {
    return `127.0.0.1:${this.rmPort}`;
  }

  rmArgs(): string[] {
    return [
      "--host",
      "127.0.0.1",
      "--port",
      String(this.rmPort),
      "--state-dir",
      join(this.dir, "rm"),
      "--queues",
      JSON.stringify(this.options.queues),
      "--minimum-allocation-mb",
      "128",
      "--maximum-allocation-mb",
      "4096",
      "--node-heartbeat-interval-ms",
      "200",
      // Long enough that a node manager starved of CPU for a few seconds is not taken for lost
      // (which would also cut short the recovery window after a resource manager restart).
      "--node-expiry-ms",
      "15000",
      "--preemption-interval-ms",
      "500",
      "--preemption-max-wait-before-kill-ms",
      "1000",
      "--user-groups",
      JSON.stringify(this.options.userGroups ?? {}),
      ...(this.options.rmArgs ?? []),
    ];
  }

  async start(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), "tributary-yarn-"));
    // Kept across restartResourceManager, which starts it again on the same port.
    this.rmPort = await reservedPort();
    this.rm = await startRole("resourcemanager", this.rmArgs());
    this.client = this.clientFor("alice");
    const count = this.options.nodeManagers ?? 3;
    const started = await Promise.all(Array.from({ length: count }, (_, i) => this.startNodeManager(i)));
    this.nms.push(...started);
    await this.waitFor(
      async () => (await this.nodes()).filter((n) => n.state === "RUNNING").length === count,
      "node managers registered",
    );
  }

  clientFor(user: string): YarnClient {
    return new YarnClient(this.rmAddress, user, TRIBUTARY_COMMAND);
  }

  startNodeManager(i: number): Promise<Role> {
    return startRole("nodemanager", [
      "--resource-manager",
      this.rmAddress,
      "--host",
      "127.0.0.1",
      "--advertised-host",
      "127.0.0.1",
      "--port",
      "0",
      "--memory",
      String(this.options.memory ?? 2048),
      "--vcores",
      "16",
      "--local-dir",
      join(this.dir, `nm${i}`, "local"),
      "--log-dir",
      join(this.dir, `nm${i}`, "logs"),
      "--monitor-interval-ms",
      "300",
    ]);
  }

  async restartResourceManager(): Promise<void> {
    await killGroup(this.rm);
    this.rm = await startRole("resourcemanager", this.rmArgs());
  }

  async get<T>(path: string): Promise<T> {
    const response = await fetch(`http://${this.rmAddress}${path}`);
    if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }

  async nodes(): Promise<Array<{ id: string; state: string; numContainers: number }>> {
    return (
      await this.get<{ nodes: { node: Array<{ id: string; state: string; numContainers: number }> } }>(
        "/ws/v1/cluster/nodes",
      )
    ).nodes.node;
  }

  async waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        if (await check()) return;
      } catch (error) {
        last = error;
      }
      if (Date.now() > deadline)
        throw new Error(
          `timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}\nRM log tail:\n${this.rm.log.slice(-20).join("\n")}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  async stop(): Promise<void> {
    await Promise.all([
      ...this.nms.map((nm) => stopRole(nm)),
      this.rm ? stopRole(this.rm) : Promise.resolve(),
    ]);
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
