/**
 * The operator's side of the connector's HTTP API: `GET /status` for the CDCStream's status and
 * `POST /snapshots` for the ad hoc snapshots spec.snapshot.requests asks for. Every call has a
 * deadline, and answers are checked with zod, so a connector of another version is reported as an
 * error, never as made-up figures (as the BlockPool's name-node client does).
 */
import { z } from "zod";
import { unreachable } from "../http.js";

const count = z.number().min(0);

export const connectorStatusSchema = z.object({
  state: z.enum(["starting", "snapshotting", "streaming", "stopped", "failed"]),
  slotName: z.string().optional(),
  publicationName: z.string().optional(),
  confirmedFlushLsn: z.string().nullish(),
  lagBytes: count.nullish(),
  lagSeconds: count.nullish(),
  eventsPerSecond: count.nullish(),
  lastEventTime: z.string().nullish(),
  tables: z.array(z.string()).default([]),
  tablesWithoutFullIdentity: z.array(z.string()).default([]),
  snapshot: z
    .object({
      tablesDone: count.optional(),
      tablesTotal: count.optional(),
      rowsRead: count.optional(),
      completedAt: z.string().nullish(),
    })
    .optional(),
  snapshotRequests: z
    .array(
      z.object({
        id: z.string(),
        state: z.enum(["Pending", "Running", "Completed", "Failed"]),
        rows: count.optional(),
        message: z.string().optional(),
      }),
    )
    .default([]),
  problems: z.array(z.object({ reason: z.string(), message: z.string() })).default([]),
});
export type ConnectorStatus = z.infer<typeof connectorStatusSchema>;

export class ConnectorError extends Error {
  override name = "ConnectorError";
}

async function call<T>(
  method: "GET" | "POST",
  url: string,
  schema: z.ZodType<T> | undefined,
  timeoutMs: number,
  body?: unknown,
): Promise<T | undefined> {
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, {
      method,
      signal: AbortSignal.timeout(timeoutMs),
      ...(body === undefined
        ? {}
        : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
    });
    text = await response.text();
  } catch (error) {
    throw new ConnectorError(`${method} ${url}: ${unreachable(error, timeoutMs)}`);
  }
  if (!response.ok) throw new ConnectorError(`${method} ${url}: ${response.status} ${text.slice(0, 300)}`);
  if (!schema) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConnectorError(`${method} ${url}: the answer is not JSON: ${text.slice(0, 200)}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new ConnectorError(`${method} ${url}: unexpected answer (${issues.join("; ")})`);
  }
  return parsed.data;
}

/** `GET /status` of the connector at `baseUrl` (no path). */
export async function connectorStatus(baseUrl: string, timeoutMs: number): Promise<ConnectorStatus> {
  return (await call("GET", `${baseUrl}/status`, connectorStatusSchema, timeoutMs))!;
}

/** `POST /snapshots`: asks for an ad hoc snapshot; the connector ignores an id it already has. */
export async function requestSnapshot(
  baseUrl: string,
  request: { id: string; tables: readonly string[] },
  timeoutMs: number,
): Promise<void> {
  await call("POST", `${baseUrl}/snapshots`, undefined, timeoutMs, request);
}
