/**
 * A Dag task's built-in platform operations, run by a worker:
 *
 * - `waitForFile`: a sensor on a BlockPool (WebHDFS GETFILESTATUS until the path exists).
 * - `cdcSnapshot`: an ad hoc snapshot of a CDCStream, asked of its connector (`POST /snapshots`,
 *   the call behind `spec.snapshot.requests`) and followed until the connector reports it
 *   Completed or Failed. The request id is the try's own, so a worker that takes the same try
 *   again follows the snapshot already under way instead of starting another.
 * - `yarnApplication`: an application in a YarnQueue, submitted to its cluster's resource manager
 *   (YARN's REST API, as `yarn submit` does) and followed to its final state; a try that ends
 *   early (timeout, clear, mark) kills it. As with the snapshot, a try taken again finds its
 *   application by name and follows it.
 */
import { z } from "zod";
import { YarnClient } from "../yarn/client.js";
import { shellQuote } from "../yarn/master.js";
import { substitute, type TaskMessage } from "./model.js";
import type { TryContext, TryOutcome } from "./worker.js";

/** Where a worker reaches the resources platform tasks name; the Dag controller fills them in. */
export interface PlatformTargets {
  /** host:port of a BlockPool's WebHDFS; default `<pool>:9870`. */
  blockPoolAddress?: (pool: string) => string;
  /** host:port of a CDCStream's connector; default `<stream>-connector:8080`. */
  cdcStreamAddress?: (stream: string) => string;
  /** host:port of the resource manager of each YarnQueue the Dag's tasks name. */
  resourceManagers?: Readonly<Record<string, string>>;
  /** How an application master starts `tributary` on a node manager; default as this process started. */
  tributaryCommand?: string;
  /** The Dag's name: the user applications are submitted as, and part of request ids. */
  dag?: string;
}

/** Waits `ms`, or until `signal` aborts (then throws its reason). */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
  if (signal.aborted) throw signal.reason;
}

/** `call` until it answers or the try ends, noting each failure in the try's log (every 5 s). */
async function askPatiently<T>(
  context: TryContext,
  signal: AbortSignal,
  what: string,
  call: () => Promise<T>,
): Promise<T> {
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      context.log.note(`${what}: ${(error as Error).message}; asking again in 5 s`);
      await pause(5_000, signal);
    }
  }
}

/** One name per try, the same whichever worker runs it: `<dag>.<task>.<run>.<try>`, cut to `max`. */
function tryName(context: TryContext, max: number): string {
  const { message, options } = context;
  const name = `${options.dag ?? "dag"}.${message.taskId}.${message.runId}.${message.try}`.replace(
    /[^A-Za-z0-9._-]/g,
    "_",
  );
  return name.length <= max ? name : name.slice(name.length - max);
}

export async function runPlatform(context: TryContext, signal: AbortSignal): Promise<TryOutcome> {
  const action = context.message.action;
  if (action.kind !== "platform") throw new Error("not a platform task");
  const { waitForFile, cdcSnapshot, yarnApplication } = action.platform;
  if (waitForFile) return waitForBlockPoolFile(context, waitForFile, signal);
  if (cdcSnapshot) return takeCdcSnapshot(context, cdcSnapshot, signal);
  if (yarnApplication) return runYarnApplication(context, yarnApplication, signal);
  return { outcome: "failed", error: "platform: none of waitForFile, cdcSnapshot, yarnApplication is set" };
}

type Platform = Extract<TaskMessage["action"], { kind: "platform" }>["platform"];

async function waitForBlockPoolFile(
  context: TryContext,
  waitForFile: NonNullable<Platform["waitForFile"]>,
  signal: AbortSignal,
): Promise<TryOutcome> {
  const address = (context.options.blockPoolAddress ?? ((pool) => `${pool}:9870`))(waitForFile.blockPool);
  const target = substitute(waitForFile.path, context.message);
  const url = `http://${address}/webhdfs/v1${encodeURI(target)}?op=GETFILESTATUS&user.name=tributary`;
  for (;;) {
    try {
      const response = await fetch(url, { signal });
      await response.arrayBuffer();
      if (response.status === 200) {
        context.log.note(`${target} exists in BlockPool ${waitForFile.blockPool}`);
        return { outcome: "success" };
      }
      context.log.note(`${target} not yet in BlockPool ${waitForFile.blockPool} (${response.status})`);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      context.log.note(`BlockPool ${waitForFile.blockPool} did not answer: ${(error as Error).message}`);
    }
    await pause(waitForFile.pollSeconds * 1000, signal);
  }
}

const connectorStatus = z.object({ state: z.string(), tables: z.array(z.string()).default([]) });
const snapshotRequests = z.array(
  z.object({
    id: z.string(),
    state: z.enum(["Pending", "Running", "Completed", "Failed"]),
    rows: z.number().nullish(),
    message: z.string().nullish(),
  }),
);

/** A JSON answer of the connector, checked against `schema`; an error names the call. */
async function connectorCall<T>(
  url: string,
  schema: z.ZodType<T>,
  signal: AbortSignal,
  body?: unknown,
): Promise<T | undefined> {
  const response = await fetch(url, {
    signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]),
    ...(body === undefined
      ? {}
      : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (!response.ok)
    throw new Error(
      `${body === undefined ? "GET" : "POST"} ${url} answered ${response.status}: ${text.slice(0, 300)}`,
    );
  if (body !== undefined) return undefined;
  const parsed = schema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${url}: unexpected answer: ${parsed.error.message}`);
  return parsed.data;
}

async function takeCdcSnapshot(
  context: TryContext,
  cdcSnapshot: NonNullable<Platform["cdcSnapshot"]>,
  signal: AbortSignal,
): Promise<TryOutcome> {
  const stream = cdcSnapshot.cdcStream;
  const address = (context.options.cdcStreamAddress ?? ((name) => `${name}-connector:8080`))(stream);
  const base = `http://${address}`;
  const id = tryName(context, 128);
  // The connector, or the way to it, may be coming back (a restarted pod).
  const patiently = <T>(what: string, call: () => Promise<T>) =>
    askPatiently(context, signal, `CDCStream ${stream}: ${what}`, call);
  const known = await patiently("GET /snapshots", () =>
    connectorCall(`${base}/snapshots`, snapshotRequests, signal),
  );
  if (!known?.some((request) => request.id === id)) {
    let tables = cdcSnapshot.tables;
    if (!tables?.length) {
      const status = await patiently("GET /status", () =>
        connectorCall(`${base}/status`, connectorStatus, signal),
      );
      tables = status?.tables ?? [];
      if (tables.length === 0) {
        return {
          outcome: "failed",
          error: `CDCStream ${stream} captures no tables yet (connector state ${status?.state}); name them in platform.cdcSnapshot.tables or retry once it streams`,
        };
      }
    }
    await patiently("POST /snapshots", () =>
      connectorCall(`${base}/snapshots`, snapshotRequests, signal, { id, tables }),
    );
    context.log.note(`asked CDCStream ${stream} for snapshot ${id} of ${tables.join(", ")}`);
  } else {
    context.log.note(
      `following snapshot ${id} of CDCStream ${stream}, asked for by an earlier attempt of this try`,
    );
  }
  let last = "";
  for (;;) {
    const requests = await patiently("GET /snapshots", () =>
      connectorCall(`${base}/snapshots`, snapshotRequests, signal),
    );
    const request = requests?.find((candidate) => candidate.id === id);
    if (!request) {
      return {
        outcome: "failed",
        error: `CDCStream ${stream} no longer lists snapshot ${id} (its connector lost its state)`,
      };
    }
    const now = `${request.state}${request.rows != null ? `, ${request.rows} rows` : ""}`;
    if (now !== last) context.log.note(`snapshot ${id}: ${now}`);
    last = now;
    if (request.state === "Completed") {
      return {
        outcome: "success",
        result: JSON.stringify({ cdcStream: stream, id, rows: request.rows ?? 0 }),
      };
    }
    if (request.state === "Failed") {
      return {
        outcome: "failed",
        error: `snapshot ${id} of CDCStream ${stream} failed: ${request.message ?? "no reason given"}`,
      };
    }
    await pause(2_000, signal);
  }
}

const FINAL_STATES = new Set(["FINISHED", "FAILED", "KILLED"]);

async function runYarnApplication(
  context: TryContext,
  yarnApplication: NonNullable<Platform["yarnApplication"]>,
  signal: AbortSignal,
): Promise<TryOutcome> {
  const { queue } = yarnApplication;
  const rm = context.options.resourceManagers?.[queue];
  if (!rm) {
    return {
      outcome: "failed",
      error: `YarnQueue ${queue} was not found in the Dag's namespace, or its cluster has no root queue, when the Dag was last reconciled`,
    };
  }
  const client = new YarnClient(
    rm,
    yarnApplication.user ?? context.options.dag ?? "dag",
    context.options.tributaryCommand,
  );
  const name = tryName(context, 256);
  const patiently = <T>(what: string, call: () => Promise<T>) =>
    askPatiently(context, signal, `resource manager ${rm}: ${what}`, call);
  const earlier = (await patiently("list applications", () => client.apps({ queue }))).find(
    (app) => app.name === name,
  );
  let id = earlier?.id;
  if (id) context.log.note(`following ${id}, submitted by an earlier attempt of this try`);
  else {
    try {
      id = await client.submit({
        job: {
          type: "shell",
          command: yarnApplication.command.map(shellQuote).join(" "),
          numContainers: yarnApplication.containers,
          containerMemory: yarnApplication.containerMemoryMb,
        },
        queue,
        name,
      });
    } catch (error) {
      // The resource manager refused it (unknown or parent queue, ACL, too large): no retry helps.
      return {
        outcome: "failed",
        error: `submitting to YarnQueue ${queue} at ${rm}: ${(error as Error).message}`,
      };
    }
    context.log.note(`submitted ${id} to queue ${queue}`);
  }
  let last = "";
  try {
    for (;;) {
      const app = await patiently(`application ${id}`, () => client.app(id!));
      const now = `${app.state}${app.finalStatus && app.finalStatus !== "UNDEFINED" ? ` ${app.finalStatus}` : ""}`;
      if (now !== last) context.log.note(`${id}: ${now}`);
      last = now;
      if (FINAL_STATES.has(app.state)) {
        const result = JSON.stringify({ applicationId: id, state: app.state, finalStatus: app.finalStatus });
        if (app.finalStatus === "SUCCEEDED") return { outcome: "success", result };
        return {
          outcome: "failed",
          error: `${id} in YarnQueue ${queue} ended ${app.state}/${app.finalStatus}: ${app.diagnostics || "no diagnostics"}`,
          result,
        };
      }
      await pause(1_000, signal);
    }
  } catch (error) {
    if (signal.aborted) {
      // The try ended (timeout, clear, mark, worker shutdown): the application ends with it.
      await client.kill(id).catch((killError: unknown) => {
        context.log.note(`killing ${id}: ${(killError as Error).message}`);
      });
      context.log.note(`killed ${id}`);
    }
    throw error;
  }
}
