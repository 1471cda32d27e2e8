/**
 * The application masters shipped with Tributary, and their tasks:
 *
 * - `shell` (YARN's DistributedShell): run a command in N containers; the application fails if
 *   any container fails, with that container's diagnostics.
 * - `mapcombine`: a map-and-combine job over Parquet (or JSON-lines) files in a local directory or
 *   in a BlockPool (webhdfs://namenode:port/path): one map task per file, placed on a node that
 *   holds the file's first block when it can (GETFILEBLOCKLOCATIONS), each task counting rows and
 *   summing a column per group and posting its partial to the master, which combines them and
 *   writes the answer as JSON.
 *
 * Containers lost with their node or preempted are asked for again and do not count as failures;
 * a map task that fails otherwise is retried up to three times.
 */

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { dirname, join } from "node:path";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import type { Logger } from "../../log.js";
import { HttpError, readJson, sendError, sendJson } from "./http.js";
import { ApplicationMasterClient, selfCommand, shellQuote } from "./master.js";
import {
  type AllocatedContainer,
  ContainerEnv,
  type ContainerStatusReport,
  type Resource,
} from "./protocol.js";
import { ExitStatus } from "./scheduler.js";

export interface ShellJob {
  type: "shell";
  command: string;
  numContainers: number;
  containerMemory: number;
  containerVcores?: number;
  priority?: number;
}

export interface MapCombineJob {
  type: "mapcombine";
  /** A local directory, or webhdfs://host:port/path of a BlockPool directory. */
  input: string;
  groupBy: string;
  /** A numeric column summed per group, besides the row count. */
  sum?: string;
  /** Where the answer is written (a local path, or webhdfs://.../file.json). */
  output: string;
  containerMemory: number;
  containerVcores?: number;
  /** The WebHDFS user (user.name). */
  user?: string;
}

export type Job = ShellJob | MapCombineJob;

export interface Combined {
  groupBy: string;
  sum?: string;
  files: number;
  rows: number;
  groups: Array<{ key: string; count: number; sum: number }>;
}

interface Task {
  index: number;
  file?: string;
  hosts: string[];
  state: "PENDING" | "RUNNING" | "DONE" | "FAILED";
  failures: number;
  container?: AllocatedContainer;
  partial?: Partial;
}

type Partial = Record<string, [number, number]>;

const TASK_PRIORITY = 1;
const MAX_TASK_FAILURES = 3;

/** Exit statuses that say nothing about the task itself: ask for another container. */
const NOT_THE_TASKS_FAULT = new Set<number>([
  ExitStatus.ABORTED,
  ExitStatus.PREEMPTED,
  ExitStatus.KILLED_BY_RESOURCEMANAGER,
  ExitStatus.DISKS_FAILED,
]);

export function encodeJob(job: Job): string {
  return Buffer.from(JSON.stringify(job)).toString("base64url");
}

export function decodeJob(text: string): Job {
  return JSON.parse(Buffer.from(text, "base64url").toString("utf8")) as Job;
}

// ---------------------------------------------------------------- input and output

function webhdfs(url: string): { base: string; path: string } | null {
  const match = /^webhdfs:\/\/([^/]+)(\/.*)$/.exec(url);
  return match ? { base: `http://${match[1]}/webhdfs/v1`, path: match[2]! } : null;
}

async function listInput(input: string, user: string): Promise<Array<{ file: string; hosts: string[] }>> {
  const remote = webhdfs(input);
  const wanted = (name: string) => name.endsWith(".parquet") || name.endsWith(".jsonl");
  if (!remote) {
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (entry.isDirectory()) walk(join(dir, entry.name));
        else if (wanted(entry.name)) files.push(join(dir, entry.name));
      }
    };
    walk(input);
    return files.sort().map((file) => ({ file, hosts: [] }));
  }
  const files: Array<{ file: string; hosts: string[] }> = [];
  const walk = async (path: string) => {
    const listing = (await (await fetch(`${remote.base}${path}?op=LISTSTATUS&user.name=${user}`)).json()) as {
      FileStatuses: { FileStatus: Array<{ pathSuffix: string; type: string }> };
    };
    for (const status of listing.FileStatuses.FileStatus) {
      const child = `${path.replace(/\/$/, "")}/${status.pathSuffix}`;
      if (status.type === "DIRECTORY") await walk(child);
      else if (wanted(status.pathSuffix)) {
        // Data-local placement: the hosts of the file's first block.
        const located = (await (
          await fetch(`${remote.base}${child}?op=GETFILEBLOCKLOCATIONS&offset=0&length=1&user.name=${user}`)
        ).json()) as { BlockLocations?: { BlockLocation?: Array<{ hosts?: string[] }> } };
        const hosts = located.BlockLocations?.BlockLocation?.[0]?.hosts ?? [];
        files.push({ file: `webhdfs://${input.slice("webhdfs://".length).split("/")[0]}${child}`, hosts });
      }
    }
  };
  await walk(remote.path);
  return files.sort((a, b) => a.file.localeCompare(b.file));
}

async function readRows(
  file: string,
  columns: string[],
  user: string,
): Promise<Array<Record<string, unknown>>> {
  const remote = webhdfs(file);
  if (file.endsWith(".jsonl")) {
    const text = remote
      ? await (await fetch(`${remote.base}${remote.path}?op=OPEN&user.name=${user}`)).text()
      : readFileSync(file, "utf8");
    return text
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }
  if (remote) {
    const response = await fetch(`${remote.base}${remote.path}?op=OPEN&user.name=${user}`);
    if (!response.ok) throw new Error(`reading ${file}: ${response.status} ${await response.text()}`);
    const buffer = await response.arrayBuffer();
    return (await parquetReadObjects({ file: buffer, columns })) as Array<Record<string, unknown>>;
  }
  return (await parquetReadObjects({ file: await asyncBufferFromFile(file), columns })) as Array<
    Record<string, unknown>
  >;
}

/** The map step over one file: per group, [rows, sum]. */
export async function mapFile(job: MapCombineJob, file: string): Promise<Partial> {
  const columns = job.sum ? [job.groupBy, job.sum] : [job.groupBy];
  const rows = await readRows(file, columns, job.user ?? "yarn");
  const partial: Partial = {};
  for (const row of rows) {
    const key = String(row[job.groupBy] ?? "");
    const entry = partial[key] ?? [0, 0];
    partial[key] = entry;
    entry[0]++;
    if (job.sum) entry[1] += Number(row[job.sum] ?? 0);
  }
  return partial;
}

export function combine(job: MapCombineJob, partials: Partial[]): Combined {
  const total = new Map<string, [number, number]>();
  let rows = 0;
  for (const partial of partials)
    for (const [key, [count, sum]] of Object.entries(partial)) {
      const entry = total.get(key) ?? [0, 0];
      entry[0] += count;
      entry[1] += sum;
      total.set(key, entry);
      rows += count;
    }
  return {
    groupBy: job.groupBy,
    sum: job.sum,
    files: partials.length,
    rows,
    groups: [...total]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, [count, sum]]) => ({ key, count, sum })),
  };
}

async function writeOutput(output: string, value: unknown, user: string): Promise<void> {
  const text = `${JSON.stringify(value, null, 2)}\n`;
  const remote = webhdfs(output);
  if (!remote) {
    mkdirSync(dirname(output), { recursive: true });
    writeFileSync(output, text);
    return;
  }
  const first = await fetch(`${remote.base}${remote.path}?op=CREATE&overwrite=true&user.name=${user}`, {
    method: "PUT",
    redirect: "manual",
  });
  const location = first.headers.get("location");
  const target = location ?? `${remote.base}${remote.path}?op=CREATE&overwrite=true&user.name=${user}`;
  const written = await fetch(target, { method: "PUT", body: text });
  if (!written.ok) throw new Error(`writing ${output}: ${written.status} ${await written.text()}`);
}

// ---------------------------------------------------------------- the master

export async function runMaster(job: Job, log: Logger): Promise<void> {
  const am = new ApplicationMasterClient(log);
  const tasks: Task[] = [];
  let firstFailure = "";
  const server: Server = createServer((request, response) => {
    (async () => {
      const match = /^\/partials\/(\d+)$/.exec(request.url ?? "");
      if (request.method === "POST" && match) {
        const task = tasks[Number(match[1])];
        if (!task) throw new HttpError(404, "NotFoundException", "no such task");
        task.partial = (await readJson(request)) as Partial;
        return sendJson(response, 200, {});
      }
      sendJson(response, 200, {
        attempt: am.attemptId,
        tasks: tasks.map((t) => ({
          index: t.index,
          file: t.file,
          state: t.state,
          container: t.container?.id,
        })),
      });
    })().catch((error: unknown) => sendError(response, error));
  });
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", () => resolve()));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const trackingUrl = `http://${process.env[ContainerEnv.NM_HOST] ?? "127.0.0.1"}:${port}/`;
  const registration = await am.register(trackingUrl);
  log.info(
    { attempt: am.attemptId, queue: registration.queue, trackingUrl },
    "application master registered",
  );

  const capability: Resource = { memory: job.containerMemory, vcores: job.containerVcores ?? 1 };
  if (job.type === "shell") {
    for (let i = 0; i < job.numContainers; i++)
      tasks.push({ index: i, hosts: [], state: "PENDING", failures: 0 });
  } else {
    const files = await listInput(job.input, job.user ?? "yarn");
    for (const [index, { file, hosts }] of files.entries())
      tasks.push({ index, file, hosts, state: "PENDING", failures: 0 });
  }
  // Containers this attempt already had (after a resource-manager restart) keep their tasks.
  const priority = job.type === "shell" ? (job.priority ?? TASK_PRIORITY) : TASK_PRIORITY;
  const pending = () => tasks.filter((t) => t.state === "PENDING");
  const requestPending = () => {
    const waiting = pending();
    const running = tasks.filter((t) => t.state === "RUNNING").length;
    void running;
    am.want(
      priority,
      capability,
      waiting.length,
      waiting.flatMap((t) => t.hosts.slice(0, 3)),
    );
  };
  requestPending();

  const launchContext = (task: Task) => {
    if (job.type === "shell") return { commands: [job.command], environment: {} };
    return {
      commands: [
        `${selfCommand()} yarn task --job ${encodeJob(job)} --file ${shellQuote(task.file!)} --report ${shellQuote(`${trackingUrl}partials/${task.index}`)}`,
      ],
      environment: {},
    };
  };

  let shutdown = false;
  const callbacks = {
    onAllocated: async (containers: AllocatedContainer[]) => {
      for (const container of containers) {
        const waiting = pending();
        const task = waiting.find((t) => t.hosts.includes(container.host)) ?? waiting[0];
        if (!task) {
          am.release(container.id);
          continue;
        }
        task.state = "RUNNING";
        task.container = container;
        try {
          await am.startContainer(container, launchContext(task));
        } catch (error) {
          log.warn(
            { containerId: container.id, err: (error as Error).message },
            "could not start a container; asking for another",
          );
          task.state = "PENDING";
          task.container = undefined;
          am.release(container.id);
          requestPending();
        }
      }
    },
    onCompleted: (statuses: ContainerStatusReport[]) => {
      let reask = false;
      for (const status of statuses) {
        const task = tasks.find((t) => t.container?.id === status.containerId);
        if (task?.state !== "RUNNING") continue;
        const okay = status.exitStatus === 0 && (job.type === "shell" || task.partial !== undefined);
        if (okay) {
          task.state = "DONE";
          continue;
        }
        task.container = undefined;
        if (NOT_THE_TASKS_FAULT.has(status.exitStatus)) {
          log.warn(
            { task: task.index, containerId: status.containerId, diagnostics: status.diagnostics },
            "container lost: asking for another",
          );
          task.state = "PENDING";
          reask = true;
          continue;
        }
        task.failures++;
        const limit = job.type === "shell" ? 1 : MAX_TASK_FAILURES;
        if (task.failures >= limit) {
          task.state = "FAILED";
          firstFailure ||= `task ${task.index}${task.file ? ` (${task.file})` : ""} failed in container ${status.containerId}: exit status ${status.exitStatus}. ${status.diagnostics}`;
        } else {
          task.state = "PENDING";
          reask = true;
        }
      }
      if (reask) requestPending();
    },
    onShutdown: () => {
      shutdown = true;
    },
  };

  const heartbeatMs = Number(process.env.TRIBUTARY_YARN_AM_HEARTBEAT_MS ?? 250);
  let unreachableSince = 0;
  while (!shutdown) {
    const done = tasks.every((t) => t.state === "DONE" || t.state === "FAILED");
    if (done || firstFailure) break;
    try {
      await am.heartbeat(trackingUrl, callbacks);
      unreachableSince = 0;
    } catch (error) {
      // The resource manager may be restarting: containers keep running; keep trying.
      unreachableSince ||= Date.now();
      if (Date.now() - unreachableSince > 10 * 60_000) throw error;
      log.warn({ err: (error as Error).message }, "allocate failed; retrying");
    }
    am.progress = tasks.filter((t) => t.state === "DONE").length / Math.max(1, tasks.length);
    await new Promise((resolve) => setTimeout(resolve, heartbeatMs));
  }
  if (shutdown) {
    server.close();
    return;
  }
  for (const task of tasks)
    if (task.state === "RUNNING" && task.container) await am.stopContainer(task.container).catch(() => {});
  if (firstFailure) {
    await am.finish("FAILED", firstFailure, trackingUrl);
  } else if (job.type === "mapcombine") {
    const answer = combine(
      job,
      tasks.map((t) => t.partial!),
    );
    await writeOutput(job.output, answer, job.user ?? "yarn");
    await am.finish(
      "SUCCEEDED",
      `combined ${answer.files} files, ${answer.rows} rows into ${answer.groups.length} groups at ${job.output}`,
      trackingUrl,
    );
  } else {
    await am.finish("SUCCEEDED", `${tasks.length} containers succeeded`, trackingUrl);
  }
  server.close();
}

/** A map task: read one file, post its partial to the master. */
export async function runTask(job: MapCombineJob, file: string, report: string): Promise<void> {
  const partial = await mapFile(job, file);
  const response = await fetch(report, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(partial),
  });
  if (!response.ok) throw new Error(`posting the partial to ${report}: ${response.status}`);
}
