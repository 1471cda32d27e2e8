/**
 * `tributary yarn`: the client of a YarnQueue cluster over YARN's REST API, and the entry of the
 * shipped application masters and tasks (run inside containers).
 *
 *   tributary yarn submit [--queue q] [--name n] [--user u] [--am-memory MB] [--max-attempts N] [--wait] \
 *       shell --command 'sleep 5' --num-containers 4 --container-memory 512
 *   tributary yarn submit --queue etl --wait mapcombine --input webhdfs://nn:9870/topics/clicks \
 *       --group-by country --sum duration --output webhdfs://nn:9870/out/by-country.json
 *   tributary yarn list [--state RUNNING] [--queue q]
 *   tributary yarn status <application-id>
 *   tributary yarn kill <application-id>
 *   tributary yarn logs <application-id> [--file stdout]
 *
 * The resource manager is --rm host:port, or TRIBUTARY_YARN_RESOURCE_MANAGER.
 */
import { userInfo } from "node:os";
import { parseArgs } from "node:util";
import { createLogger } from "../../log.js";
import { ConfigError } from "../config.js";
import { callJson } from "./http.js";
import { decodeJob, encodeJob, type Job, type MapCombineJob, runMaster, runTask } from "./jobs.js";
import { selfCommand } from "./master.js";

export interface AppReport {
  id: string;
  user: string;
  name: string;
  queue: string;
  state: string;
  finalStatus: string;
  diagnostics: string;
  amContainerLogs: string;
  trackingUrl: string;
  runningContainers: number;
  allocatedMB: number;
}

const FINAL = new Set(["FINISHED", "FAILED", "KILLED"]);

/** A small client of the resource manager's REST API, used by the CLI and the tests. */
export class YarnClient {
  constructor(
    readonly rm: string,
    readonly user = "dr.who",
    /** How a container starts `tributary` (default: the way this process was started). */
    readonly tributaryCommand?: string,
  ) {}

  private url(path: string, query: Record<string, string> = {}): string {
    const params = new URLSearchParams({ "user.name": this.user, ...query });
    return `http://${this.rm}${path}?${params}`;
  }

  async submit(options: {
    job: Job;
    queue?: string;
    name?: string;
    amMemory?: number;
    maxAttempts?: number;
    priority?: number;
    command?: string;
  }): Promise<string> {
    const { "application-id": id } = await callJson<{ "application-id": string }>(
      this.url("/ws/v1/cluster/apps/new-application"),
      { method: "POST", body: {} },
    );
    await callJson(this.url("/ws/v1/cluster/apps"), {
      method: "POST",
      body: {
        "application-id": id,
        "application-name": options.name ?? options.job.type,
        queue: options.queue ?? "default",
        priority: options.priority ?? 0,
        "max-app-attempts": options.maxAttempts ?? 2,
        "application-type": options.job.type === "mapcombine" ? "TRIBUTARY-MAPCOMBINE" : "TRIBUTARY-SHELL",
        resource: { memory: options.amMemory ?? 1024, vCores: 1 },
        "am-container-spec": {
          commands: {
            command: `${options.command ?? this.tributaryCommand ?? selfCommand()} yarn am --job ${encodeJob(options.job)} 1><LOG_DIR>/AppMaster.stdout 2><LOG_DIR>/AppMaster.stderr`,
          },
          environment: { entry: [] },
        },
      },
    });
    return id;
  }

  async app(id: string): Promise<AppReport> {
    return (await callJson<{ app: AppReport }>(this.url(`/ws/v1/cluster/apps/${id}`))).app;
  }

  async apps(query: Record<string, string> = {}): Promise<AppReport[]> {
    return (
      (await callJson<{ apps: { app: AppReport[] } | null }>(this.url("/ws/v1/cluster/apps", query))).apps
        ?.app ?? []
    );
  }

  async kill(id: string): Promise<string> {
    return (
      await callJson<{ state: string }>(this.url(`/ws/v1/cluster/apps/${id}/state`), {
        method: "PUT",
        body: { state: "KILLED" },
      })
    ).state;
  }

  async waitForFinal(id: string, timeoutMs = 10 * 60_000): Promise<AppReport> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const app = await this.app(id);
      if (FINAL.has(app.state)) return app;
      if (Date.now() > deadline) throw new Error(`${id} is still ${app.state} after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }

  async logs(id: string, file = "AppMaster.stdout"): Promise<string> {
    const app = await this.app(id);
    if (!app.amContainerLogs) throw new Error(`${id} has no master container yet (${app.state})`);
    const response = await fetch(`${app.amContainerLogs}/${file}`);
    if (!response.ok)
      throw new Error(`${app.amContainerLogs}/${file}: ${response.status} ${await response.text()}`);
    return response.text();
  }
}

function rmAddress(flag: string | undefined): string {
  const rm = flag ?? process.env.TRIBUTARY_YARN_RESOURCE_MANAGER;
  if (!rm)
    throw new ConfigError("yarn: the resource manager is --rm host:port or TRIBUTARY_YARN_RESOURCE_MANAGER");
  return rm;
}

const USAGE = `usage: tributary yarn <command> [options]

commands:
  submit [--rm host:port] [--queue q] [--name n] [--user u] [--am-memory MB] [--max-attempts N] [--priority P] [--wait]
         shell --command CMD --num-containers N [--container-memory MB]
         mapcombine --input DIR|webhdfs://host:port/dir --group-by COLUMN [--sum COLUMN] --output PATH [--container-memory MB]
  list [--state S] [--queue q]
  status <application-id>
  kill <application-id>
  logs <application-id> [--file AppMaster.stdout]
`;

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const log = createLogger("yarn");
  if (command === "am") {
    const { values } = parseArgs({ args: rest, options: { job: { type: "string" } } });
    await runMaster(decodeJob(String(values.job)), log);
    return;
  }
  if (command === "task") {
    const { values } = parseArgs({
      args: rest,
      options: { job: { type: "string" }, file: { type: "string" }, report: { type: "string" } },
    });
    await runTask(decodeJob(String(values.job)) as MapCombineJob, String(values.file), String(values.report));
    return;
  }
  const common = {
    rm: { type: "string" as const },
    user: { type: "string" as const },
  };
  if (command === "submit") {
    const split = rest.findIndex((arg) => arg === "shell" || arg === "mapcombine");
    if (split < 0) throw new ConfigError(`yarn submit: name the job type, shell or mapcombine\n\n${USAGE}`);
    const { values } = parseArgs({
      args: rest.slice(0, split),
      options: {
        ...common,
        queue: { type: "string" },
        name: { type: "string" },
        "am-memory": { type: "string" },
        "max-attempts": { type: "string" },
        priority: { type: "string" },
        wait: { type: "boolean" },
      },
    });
    const type = rest[split];
    const jobArgs = parseArgs({
      args: rest.slice(split + 1),
      options: {
        command: { type: "string" },
        "num-containers": { type: "string" },
        "container-memory": { type: "string" },
        input: { type: "string" },
        "group-by": { type: "string" },
        sum: { type: "string" },
        output: { type: "string" },
      },
    }).values;
    const memory = Number(jobArgs["container-memory"] ?? 512);
    let job: Job;
    if (type === "shell") {
      if (!jobArgs.command) throw new ConfigError("yarn submit shell: --command is required");
      job = {
        type: "shell",
        command: jobArgs.command,
        numContainers: Number(jobArgs["num-containers"] ?? 1),
        containerMemory: memory,
      };
    } else {
      if (!jobArgs.input || !jobArgs["group-by"] || !jobArgs.output)
        throw new ConfigError("yarn submit mapcombine: --input, --group-by and --output are required");
      job = {
        type: "mapcombine",
        input: jobArgs.input,
        groupBy: jobArgs["group-by"],
        sum: jobArgs.sum,
        output: jobArgs.output,
        containerMemory: memory,
        user: values.user,
      };
    }
    const client = new YarnClient(rmAddress(values.rm), values.user ?? userInfo().username);
    const id = await client.submit({
      job,
      queue: values.queue,
      name: values.name,
      amMemory: values["am-memory"] ? Number(values["am-memory"]) : undefined,
      maxAttempts: values["max-attempts"] ? Number(values["max-attempts"]) : undefined,
      priority: values.priority ? Number(values.priority) : undefined,
    });
    process.stdout.write(`Submitted application ${id}\n`);
    if (values.wait) {
      const app = await client.waitForFinal(id);
      const line = `${id} ${app.state} ${app.finalStatus}${app.diagnostics ? `: ${app.diagnostics}` : ""}\n`;
      // An application that did not succeed is an error: its diagnostics go where errors go.
      if (app.finalStatus === "SUCCEEDED") process.stdout.write(line);
      else {
        process.stderr.write(line);
        process.exitCode = 1;
      }
    }
    return;
  }
  if (command === "list" || command === "status" || command === "kill" || command === "logs") {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { ...common, state: { type: "string" }, queue: { type: "string" }, file: { type: "string" } },
    });
    const client = new YarnClient(rmAddress(values.rm), values.user ?? userInfo().username);
    if (command === "list") {
      const apps = await client.apps({
        ...(values.state ? { states: values.state } : {}),
        ...(values.queue ? { queue: values.queue } : {}),
      });
      process.stdout.write("Application-Id\tApplication-Name\tUser\tQueue\tState\tFinal-State\n");
      for (const app of apps)
        process.stdout.write(
          `${app.id}\t${app.name}\t${app.user}\t${app.queue}\t${app.state}\t${app.finalStatus}\n`,
        );
      return;
    }
    const id = positionals[0];
    if (!id) throw new ConfigError(`yarn ${command}: give the application id`);
    if (command === "status") process.stdout.write(`${JSON.stringify(await client.app(id), null, 2)}\n`);
    if (command === "kill") process.stdout.write(`Killing application ${id}: ${await client.kill(id)}\n`);
    if (command === "logs") process.stdout.write(await client.logs(id, values.file ?? "AppMaster.stdout"));
    return;
  }
  process.stdout.write(USAGE);
  if (command !== "--help" && command !== "-h") process.exitCode = 2;
}
