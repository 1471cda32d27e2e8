/**
 * The schema registry's HTTP server: Confluent's REST API (api.ts) plus health and metrics.
 *
 *   GET  /healthz   the process is alive
 *   GET  /readyz    the schemas topic was read to its end and its reader still runs
 *   GET  /metrics   Prometheus
 *   everything else Confluent Schema Registry's API, answered as `application/vnd.schemaregistry.v1+json`
 *
 * Request bodies are JSON (Confluent's media types, `application/json`, `application/octet-stream`
 * or none), at most `maxBodyBytes`; a larger one is refused with 413 before it is read whole.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../../log.js";
import type { SchemaRegistry } from "../avro/registry.js";
import { type ApiRequest, needsBody, resolve, runRoute } from "./api.js";
import { RestError, toRestError } from "./errors.js";
import type { SchemaRegistryMetrics } from "./metrics.js";

export const CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";

/** Media types a request body may be declared as: Confluent's, plain JSON, and what curl and kcat send. */
const ACCEPTED_BODY_TYPES = new Set([
  "application/vnd.schemaregistry.v1+json",
  "application/vnd.schemaregistry+json",
  "application/json",
  "application/octet-stream",
]);

export interface RegistrySource {
  /** The registry once the topic was read to its end; undefined while starting. */
  current(): SchemaRegistry | undefined;
  /** Why requests cannot be served now (starting, reader stopped), or undefined. */
  notReadyReason(): string | undefined;
}

export class SchemaRegistryServer {
  private readonly server: Server;
  private shuttingDown = false;
  private catchingUp: Promise<void> | undefined;

  constructor(
    private readonly source: RegistrySource,
    private readonly options: { maxBodyBytes: number; host: string; port: number },
    private readonly metrics: SchemaRegistryMetrics,
    private readonly logger: Logger,
  ) {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        this.logger.error({ error: (error as Error).message }, "request failed outside its handler");
        if (!res.headersSent) this.json(res, 500, { error_code: 50001, message: "internal error" });
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 65_000;
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolvePromise, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off("error", reject);
        resolvePromise(this.server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting, lets requests in progress finish (up to `timeoutMs`), then closes. */
  async close(timeoutMs: number): Promise<void> {
    this.shuttingDown = true;
    const closed = new Promise<void>((done) => this.server.close(() => done()));
    this.server.closeIdleConnections();
    const timer = setTimeout(() => this.server.closeAllConnections(), timeoutMs);
    await closed;
    clearTimeout(timer);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    if (this.shuttingDown) res.setHeader("Connection", "close");
    const url = new URL(req.url ?? "/", "http://registry");
    const method = req.method ?? "GET";

    if (method === "GET" && url.pathname === "/healthz") {
      return this.text(res, 200, "ok\n");
    }
    if (method === "GET" && url.pathname === "/readyz") {
      const reason = this.shuttingDown ? "shutting down" : this.source.notReadyReason();
      return reason ? this.text(res, 503, `not ready: ${reason}\n`) : this.text(res, 200, "ready\n");
    }
    if (method === "GET" && url.pathname === "/metrics") {
      const body = await this.metrics.registry.metrics();
      res.writeHead(200, { "Content-Type": this.metrics.registry.contentType });
      res.end(body);
      return;
    }

    let template = "unknown";
    let status = 500;
    try {
      let segments: string[];
      try {
        segments = url.pathname
          .split("/")
          .filter((segment) => segment.length > 0)
          .map((segment) => decodeURIComponent(segment));
      } catch {
        throw new RestError(404, 404, "HTTP 404 Not Found");
      }
      const resolved = resolve(method, segments);
      if (resolved.kind === "notFound") throw new RestError(404, 404, "HTTP 404 Not Found");
      template = resolved.template;
      if (resolved.kind === "methodNotAllowed") throw new RestError(405, 405, "HTTP 405 Method Not Allowed");
      const body = needsBody(method) ? await this.readJson(req) : undefined;
      const registry = this.source.current();
      const reason = this.source.notReadyReason();
      if (!registry || reason) {
        throw new RestError(503, 50003, `The schema registry is not ready yet: ${reason ?? "starting"}`);
      }
      const request: ApiRequest = { method, segments, query: url.searchParams, body };
      const response = await runRoute(registry, resolved.route, request, () => this.catchUp(registry));
      status = response.status;
      this.json(res, status, response.body);
    } catch (error) {
      const restError = toRestError(error);
      status = restError.status;
      if (status >= 500) {
        this.logger.warn({ method, path: url.pathname, error: restError.message }, "request failed");
      }
      this.json(res, status, restError.body, status === 413 ? { Connection: "close" } : {});
    } finally {
      this.metrics.requests.inc({ route: template, method, code: String(status) });
      this.metrics.requestDuration.observe(
        { route: template, method },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
    }
  }

  /** One read of the topic to its end at a time, shared by every request that missed. */
  private catchUp(registry: SchemaRegistry): Promise<void> {
    this.catchingUp ??= registry.sync().finally(() => {
      this.catchingUp = undefined;
    });
    return this.catchingUp;
  }

  private async readJson(req: IncomingMessage): Promise<unknown> {
    const declared = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    if (declared !== "" && !ACCEPTED_BODY_TYPES.has(declared)) {
      req.resume();
      throw new RestError(
        415,
        415,
        `HTTP 415 Unsupported Media Type: send the body as ${CONTENT_TYPE} or application/json, not ${declared}`,
      );
    }
    const limit = this.options.maxBodyBytes;
    const tooLarge = (size: string) =>
      new RestError(413, 413, `Request body of ${size} is larger than the limit of ${limit} bytes`);
    const length = Number(req.headers["content-length"] ?? Number.NaN);
    if (Number.isFinite(length) && length > limit) throw tooLarge(`${length} bytes`);
    // Events rather than async iteration: leaving an iteration early destroys the socket, and the
    // client would see a reset instead of the 413 that says why.
    const chunks = await new Promise<Buffer[]>((resolveBody, reject) => {
      const received: Buffer[] = [];
      let size = 0;
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) {
          req.off("data", onData);
          req.off("end", onEnd);
          req.resume();
          reject(tooLarge(`more than ${limit} bytes`));
          return;
        }
        received.push(chunk);
      };
      const onEnd = () => resolveBody(received);
      req.on("data", onData);
      req.once("end", onEnd);
      req.once("error", reject);
    });
    const text = Buffer.concat(chunks).toString("utf8");
    if (text.trim() === "") return undefined;
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new RestError(400, 400, `The request body is not JSON: ${(error as Error).message}`);
    }
  }

  private json(
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    const payload = JSON.stringify(body);
    res.writeHead(status, {
      "Content-Type": CONTENT_TYPE,
      "Content-Length": Buffer.byteLength(payload),
      ...headers,
    });
    res.end(payload);
  }

  private text(res: ServerResponse, status: number, body: string): void {
    res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8" });
    res.end(body);
  }
}
