/**
 * The operator's side of the name node's HTTP API (the WebHDFS port): `GET /status` for the
 * BlockPool's status and `PUT /admin/decommission` before a data-node scale-down. Every call has
 * a deadline: a reconcile must not hang on a name node that is starting, gone, or unreachable
 * from where the operator runs. Answers are checked with zod, so a name node of another version
 * is reported as an error, never as made-up figures.
 */
import { z } from "zod";
import { signRequest } from "../../dataplane/storage/clusterAuth.js";
import { unreachable } from "../http.js";

/** A data node as the name node reports it (HDFS's DatanodeInfo, the fields the operator reads). */
const dataNodeReportSchema = z.object({
  hostName: z.string(),
  xferPort: z.number().optional(),
  datanodeUuid: z.string().optional(),
  /** NORMAL | DECOMMISSION_INPROGRESS | DECOMMISSIONED | DEAD; kept open so a new state is not an error. */
  adminState: z.string(),
});
export type DataNodeReport = z.infer<typeof dataNodeReportSchema>;

const count = z.number().min(0);

const nameNodeStatusSchema = z.object({
  haState: z.string(),
  liveDataNodes: count,
  deadDataNodes: count.optional(),
  capacity: count.optional(),
  used: count.optional(),
  files: count.optional(),
  blocks: count.optional(),
  underReplicatedBlocks: count.optional(),
  missingBlocks: count.optional(),
  erasureCodingPolicies: z.array(z.object({ path: z.string(), policy: z.string() })).optional(),
  datanodes: z.array(dataNodeReportSchema).default([]),
});
export type NameNodeStatus = z.infer<typeof nameNodeStatusSchema>;

const decommissionAnswerSchema = z.object({ datanodes: z.array(dataNodeReportSchema) });

/** A name node that did not answer, or answered with an error; the message says which and why. */
export class NameNodeError extends Error {
  constructor(
    message: string,
    /** The HTTP status when the name node answered (503 from a standby), undefined when it did not. */
    readonly statusCode?: number,
    /** The RemoteException's exception name (StandbyException), when the body carried one. */
    readonly exception?: string,
  ) {
    super(message);
    this.name = "NameNodeError";
  }
}

async function call<T>(
  method: "GET" | "PUT",
  url: string,
  schema: z.ZodType<T>,
  timeoutMs: number,
  body?: unknown,
  secret?: Buffer,
): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      signal: AbortSignal.timeout(timeoutMs),
      headers: {
        // Administration is for the pool's own operator: signed with the pool's cluster secret.
        ...signRequest(secret, method, new URL(url).pathname),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    throw new NameNodeError(`${method} ${url}: ${unreachable(error, timeoutMs)}`);
  }
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    throw new NameNodeError(`${method} ${url}: ${unreachable(error, timeoutMs)}`, response.status);
  }
  if (!response.ok) {
    const remote = remoteException(text);
    throw new NameNodeError(
      `${method} ${url}: ${response.status} ${remote ? `${remote.exception}: ${remote.message}` : text.slice(0, 200)}`,
      response.status,
      remote?.exception,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new NameNodeError(
      `${method} ${url}: the answer is not JSON: ${text.slice(0, 200)}`,
      response.status,
    );
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new NameNodeError(`${method} ${url}: unexpected answer (${issues.join("; ")})`, response.status);
  }
  return parsed.data;
}

/** The `{"RemoteException": {exception, message}}` body WebHDFS errors carry. */
function remoteException(text: string): { exception: string; message: string } | undefined {
  try {
    const body = JSON.parse(text) as { RemoteException?: { exception?: string; message?: string } };
    const remote = body.RemoteException;
    if (remote?.exception) return { exception: remote.exception, message: remote.message ?? "" };
  } catch {
    // Not JSON: the caller shows the raw text.
  }
  return undefined;
}

/** `GET /status` of one name node; `baseUrl` is its HTTP address without a path. */
export function nameNodeStatus(baseUrl: string, timeoutMs: number): Promise<NameNodeStatus> {
  return call("GET", `${baseUrl}/status`, nameNodeStatusSchema, timeoutMs);
}

/**
 * `PUT /admin/decommission`: the whole set of data nodes to keep out of service (level-based,
 * `[]` recommissions every node). Only the active name node accepts it; a standby answers 503.
 * Returns every data node with its admin state after the change.
 */
export async function putDecommission(
  baseUrl: string,
  hosts: readonly string[],
  timeoutMs: number,
  secret?: Buffer,
): Promise<DataNodeReport[]> {
  const answer = await call(
    "PUT",
    `${baseUrl}/admin/decommission`,
    decommissionAnswerSchema,
    timeoutMs,
    { hosts },
    secret,
  );
  return answer.datanodes;
}

/** One name node pod and the base URL the operator reaches it at. */
export interface NameNodeEndpoint {
  pod: string;
  url: string;
}

export type NameNodeAnswer =
  | { pod: string; url: string; status: NameNodeStatus }
  | { pod: string; url: string; error: string };

/** `GET /status` of every name node at once; a failure is an answer too, never a throw. */
export function probeNameNodes(
  endpoints: readonly NameNodeEndpoint[],
  timeoutMs: number,
): Promise<NameNodeAnswer[]> {
  return Promise.all(
    endpoints.map(async ({ pod, url }): Promise<NameNodeAnswer> => {
      try {
        return { pod, url, status: await nameNodeStatus(url, timeoutMs) };
      } catch (error) {
        return { pod, url, error: error instanceof Error ? error.message : String(error) };
      }
    }),
  );
}

/**
 * Sends the decommission set to the active name node. The one that reported itself active is
 * asked first; the others after it, since a failover may have happened since the probe (a
 * standby refuses with 503 and the next is tried).
 */
export async function decommissionThroughActive(
  answers: readonly NameNodeAnswer[],
  hosts: readonly string[],
  timeoutMs: number,
  secret?: Buffer,
): Promise<{ pod: string; datanodes: DataNodeReport[] } | { error: string }> {
  const ordered = [...answers].sort(
    (a, b) =>
      Number("status" in b && b.status.haState === "active") -
      Number("status" in a && a.status.haState === "active"),
  );
  const errors: string[] = [];
  for (const { pod, url } of ordered) {
    try {
      return { pod, datanodes: await putDecommission(url, hosts, timeoutMs, secret) };
    } catch (error) {
      errors.push(`${pod}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return { error: errors.length > 0 ? errors.join("; ") : "the pool has no name node" };
}
