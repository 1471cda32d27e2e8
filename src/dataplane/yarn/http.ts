/**
 * The small HTTP layer the YARN roles share: JSON bodies with a size bound, YARN's
 * RemoteException error shape, and a client with one retry policy for calls between roles.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

export const MAX_BODY_BYTES = 4 * 1024 * 1024;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly exception: string,
    message: string,
  ) {
    super(message);
  }
}

export async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new HttpError(413, "BadRequestException", `request body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (error) {
    throw new HttpError(400, "BadRequestException", `request body is not JSON: ${(error as Error).message}`);
  }
}

export function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  response.end(text);
}

/** YARN's web services answer errors as {"RemoteException": {exception, message, javaClassName}}. */
export function sendError(response: ServerResponse, error: unknown) {
  if (error instanceof HttpError) {
    sendJson(response, error.status, {
      RemoteException: {
        exception: error.exception,
        message: error.message,
        javaClassName: `org.apache.hadoop.yarn.webapp.${error.exception}`,
      },
    });
    return;
  }
  sendJson(response, 500, {
    RemoteException: {
      exception: "InternalServerError",
      message: error instanceof Error ? error.message : String(error),
      javaClassName: "java.lang.Exception",
    },
  });
}

export interface CallOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** A call to another role; a non-2xx answer throws an HttpError carrying the remote message. */
export async function callJson<T>(url: string, options: CallOptions = {}): Promise<T> {
  const response = await fetch(url, {
    method: options.method ?? (options.body === undefined ? "GET" : "POST"),
    headers: { "content-type": "application/json", ...options.headers },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
  });
  const text = await response.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  if (!response.ok) {
    const remote = (body as { RemoteException?: { exception: string; message: string } } | undefined)
      ?.RemoteException;
    throw new HttpError(
      response.status,
      remote?.exception ?? "HttpError",
      remote?.message ?? `${response.status} ${response.statusText}: ${text.slice(0, 500)}`,
    );
  }
  return body as T;
}

/** Retries a call while the other side is unreachable or restarting (connection errors, 5xx). */
export async function withRetry<T>(
  what: () => Promise<T>,
  options: { attempts?: number; delayMs?: number } = {},
): Promise<T> {
  const attempts = options.attempts ?? 5;
  let delay = options.delayMs ?? 200;
  for (let attempt = 1; ; attempt++) {
    try {
      return await what();
    } catch (error) {
      const retriable = !(error instanceof HttpError) || error.status >= 500;
      if (!retriable || attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }
}

/** Container tokens: the resource manager signs what a container may use; node managers verify. */
export interface ContainerTokenFields {
  containerId: string;
  appId: string;
  nodeId: string;
  user: string;
  memory: number;
  vcores: number;
  isAM: boolean;
}

export function signContainerToken(key: Buffer, fields: ContainerTokenFields): string {
  const payload = Buffer.from(JSON.stringify(fields)).toString("base64url");
  const mac = createHmac("sha256", key).update(payload).digest("base64url");
  return `${payload}.${mac}`;
}

export function verifyContainerToken(key: Buffer, token: string): ContainerTokenFields | null {
  const [payload, mac] = token.split(".");
  if (!payload || !mac) return null;
  const expected = createHmac("sha256", key).update(payload).digest();
  const given = Buffer.from(mac, "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  try {
    return JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as ContainerTokenFields;
  } catch {
    return null;
  }
}
