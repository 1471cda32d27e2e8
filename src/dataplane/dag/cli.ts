/**
 * `tributary dag <command>`: a Dag's runs and tasks from its state in Redis, and requests to its
 * scheduler (trigger, clear, backfill, mark), which applies them on its next pass. Reach the
 * Dag with --redis-url (TRIBUTARY_DAG_REDIS_URL) and --namespace/--dag or --key-prefix, e.g.
 * from a pod or through `kubectl port-forward` to the Dag's Redis.
 */
import { parseArgs } from "node:util";
import { ConfigError } from "../config.js";
import { readLog } from "./logs.js";
import { connectRedis, DagStore, defaultKeyPrefix, type Request } from "./store.js";
import { dagSummary, runTree } from "./views.js";

const usage = `usage: tributary dag <command> [options]

commands:
  status                               last and next run, runs by state, failing tasks
  runs [--limit N]                     runs, newest first
  tasks [RUN]                          task instances of a run (the newest by default)
  tree [RUN]                           a run's task states as a tree
  logs RUN TASK [--try N]              the log of a task's try (the latest by default)
  trigger [--param k=v ...] [--run-id ID] [--logical-date RFC3339]
  clear RUN [--task T ...] [--no-downstream] [--only-failed]
  backfill --from RFC3339 --to RFC3339
  mark RUN [--task T] --state success|failed

connection (flag, or environment variable):
  --redis-url        TRIBUTARY_DAG_REDIS_URL       redis://host:port of the Dag's state
  --redis-password   TRIBUTARY_DAG_REDIS_PASSWORD
  --namespace, --dag                               the Dag (key prefix tributary:<namespace>:<dag>:)
  --key-prefix       TRIBUTARY_DAG_KEY_PREFIX      instead of --namespace/--dag
`;

export async function main(
  argv: string[],
  out: (text: string) => void = (text) => process.stdout.write(text),
) {
  const { values, positionals } = (() => {
    try {
      return parseArgs({
        args: argv,
        allowPositionals: true,
        options: {
          "redis-url": { type: "string" },
          "redis-password": { type: "string" },
          namespace: { type: "string" },
          dag: { type: "string" },
          "key-prefix": { type: "string" },
          limit: { type: "string" },
          param: { type: "string", multiple: true },
          "run-id": { type: "string" },
          "logical-date": { type: "string" },
          task: { type: "string", multiple: true },
          "no-downstream": { type: "boolean" },
          "only-failed": { type: "boolean" },
          from: { type: "string" },
          to: { type: "string" },
          state: { type: "string" },
          try: { type: "string" },
          json: { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
      });
    } catch (error) {
      throw new ConfigError(`${(error as Error).message}\n\n${usage}`);
    }
  })();
  const [command, ...args] = positionals;
  if (values.help || !command) {
    out(usage);
    return;
  }
  const redisUrl = values["redis-url"] ?? process.env.TRIBUTARY_DAG_REDIS_URL;
  if (!redisUrl) throw new ConfigError(`--redis-url (TRIBUTARY_DAG_REDIS_URL) is required\n\n${usage}`);
  const prefix =
    values["key-prefix"] ??
    process.env.TRIBUTARY_DAG_KEY_PREFIX ??
    (values.namespace && values.dag ? defaultKeyPrefix(values.namespace, values.dag) : undefined);
  if (!prefix) throw new ConfigError(`name the Dag: --namespace and --dag, or --key-prefix\n\n${usage}`);
  const redis = connectRedis(redisUrl, values["redis-password"] ?? process.env.TRIBUTARY_DAG_REDIS_PASSWORD, {
    maxRetriesPerRequest: 3,
  });
  const store = new DagStore(redis, prefix);
  try {
    const request = async (body: Request, what: string) => {
      await store.request(body);
      out(`${what}: the scheduler applies it on its next pass\n`);
    };
    const latestRun = async () => {
      const id = args[0] ?? (await store.runIds(1))[0];
      if (!id) throw new ConfigError("the Dag has no run yet");
      return id;
    };
    switch (command) {
      case "status": {
        const summary = await dagSummary(store);
        if (values.json) return void out(`${JSON.stringify(summary, null, 2)}\n`);
        const last = summary.lastRun;
        out(
          `${[
            `scheduler:  ${summary.scheduler ? `${summary.scheduler.identity} (epoch ${summary.scheduler.epoch})` : "none has run"}`,
            `last run:   ${last ? `${last.id} ${last.state} (start ${last.startDate ?? "-"}, end ${last.endDate ?? "-"})` : "-"}`,
            `next run:   ${summary.nextRun || "-"}`,
            `runs:       ${Object.entries(summary.runs)
              .map(([state, count]) => `${count} ${state}`)
              .join(", ")}`,
            ...summary.failingTasks.map(
              (task) =>
                `failing:    ${task.runId} ${task.taskId} try ${task.try} ${task.state}: ${task.error}`,
            ),
          ].join("\n")}\n`,
        );
        return;
      }
      case "runs": {
        const records = await store.readRuns(await store.runIds(Number(values.limit ?? 25)));
        if (values.json)
          return out(
            `${JSON.stringify(
              records.map((record) => record.run),
              null,
              2,
            )}\n`,
          );
        const rows = records.map((record) => [
          record.run.id,
          record.run.state,
          record.run.type,
          record.run.startDate ?? "-",
          record.run.endDate ?? "-",
          Object.keys(record.run.params).length ? JSON.stringify(record.run.params) : "",
        ]);
        out(table(["RUN", "STATE", "TYPE", "START", "END", "PARAMS"], rows));
        return;
      }
      case "tasks":
      case "tree": {
        const runId = await latestRun();
        const record = await store.readRun(runId);
        if (!record) throw new ConfigError(`no run ${runId}`);
        const graph = (await store.graph()) ?? {
          tasks: [...record.instances.keys()].map((id) => ({ id, dependsOn: [], queue: "default" })),
        };
        if (command === "tree") return void out(`${runTree(graph, record)}\n`);
        const rows = graph.tasks.map((task) => {
          const ti = record.instances.get(task.id);
          return [
            task.id,
            ti?.state ?? "none",
            String(ti?.try ?? 0),
            ti?.startDate ?? "-",
            ti?.endDate ?? "-",
            ti?.worker ?? "",
            (ti?.error ?? "").slice(0, 80),
          ];
        });
        out(table(["TASK", "STATE", "TRY", "START", "END", "WORKER", "ERROR"], rows));
        return;
      }
      case "logs": {
        const [runId, taskId] = args;
        if (!runId || !taskId) throw new ConfigError(`logs needs RUN and TASK\n\n${usage}`);
        let tryNumber = values.try ? Number(values.try) : undefined;
        if (tryNumber === undefined) {
          const record = await store.readRun(runId);
          tryNumber = record?.instances.get(taskId)?.try ?? 1;
        }
        for (const entry of await readLog(redis, store.keys.log(runId, taskId, tryNumber)))
          out(`${entry.line}\n`);
        return;
      }
      case "trigger": {
        const params: Record<string, string> = {};
        for (const pair of values.param ?? []) {
          const at = pair.indexOf("=");
          if (at <= 0) throw new ConfigError(`--param ${pair}: expected key=value`);
          params[pair.slice(0, at)] = pair.slice(at + 1);
        }
        return await request(
          {
            type: "trigger",
            params,
            ...(values["run-id"] ? { runId: values["run-id"] } : {}),
            ...(values["logical-date"] ? { logicalDate: iso(values["logical-date"], "--logical-date") } : {}),
          },
          "trigger requested",
        );
      }
      case "clear": {
        const runId = args[0];
        if (!runId) throw new ConfigError(`clear needs RUN\n\n${usage}`);
        return await request(
          {
            type: "clear",
            runId,
            taskIds: values.task ?? [],
            downstream: !values["no-downstream"],
            ...(values["only-failed"] ? { onlyFailed: true } : {}),
          },
          `clear of ${runId} requested`,
        );
      }
      case "backfill": {
        if (!values.from || !values.to) throw new ConfigError(`backfill needs --from and --to\n\n${usage}`);
        return await request(
          { type: "backfill", from: iso(values.from, "--from"), to: iso(values.to, "--to") },
          `backfill ${values.from} .. ${values.to} requested`,
        );
      }
      case "mark": {
        const runId = args[0];
        const state = values.state;
        if (!runId || (state !== "success" && state !== "failed")) {
          throw new ConfigError(`mark needs RUN and --state success|failed\n\n${usage}`);
        }
        const taskId = values.task?.[0];
        return await request(
          { type: "mark", runId, state, ...(taskId ? { taskId } : {}) },
          `mark ${state} requested`,
        );
      }
      default:
        throw new ConfigError(`unknown command '${command}'\n\n${usage}`);
    }
  } finally {
    redis.disconnect();
  }
}

function iso(value: string, flag: string): string {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new ConfigError(`${flag} ${value}: expected an RFC 3339 date`);
  return date.toISOString();
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}
