/**
 * The connector's HTTP: `/healthz` (the process is alive), `/readyz` (streaming), `/metrics`,
 * `GET /status` (the JSON the CDCStream controller copies into the resource's status), and
 * `POST /snapshots` / `GET /snapshots` for ad hoc incremental snapshots.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { z } from "zod";

export interface StatusSource {
  status(): unknown;
  ready(): boolean;
  requestSnapshot(id: string, tables: string[]): { created: boolean; request: unknown };
  snapshotRequests(): unknown[];
}

const snapshotBody = z.object({
  id: z.string({ error: "id is required" }).regex(/^[A-Za-z0-9._-]{1,128}$/, {
    error: "id must be 1-128 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
  }),
  tables: z
    .array(z.string().regex(/^[^.\s]+\.[^.\s]+$/, { error: "each table must be schema.table" }), {
      error: "tables is required: a list of schema.table",
    })
    .min(1, { error: "tables needs at least one schema.table" })
    .max(512),
});

const MAX_BODY = 64 * 1024;

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": typeof body === "string" ? "text/plain" : "application/json" });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new Error(`body larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export async function startServer(
  host: string,
  port: number,
  source: StatusSource,
  registry: Registry,
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    void (async () => {
      try {
        if (req.method === "GET" && path === "/healthz") return reply(res, 200, "ok\n");
        if (req.method === "GET" && path === "/readyz") {
          return source.ready() ? reply(res, 200, "ready\n") : reply(res, 503, "not streaming\n");
        }
        if (req.method === "GET" && path === "/metrics") {
          res.writeHead(200, { "content-type": registry.contentType });
          return res.end(await registry.metrics());
        }
        if (req.method === "GET" && path === "/status") return reply(res, 200, source.status());
        if (path === "/snapshots" && req.method === "GET") return reply(res, 200, source.snapshotRequests());
        if (path === "/snapshots" && req.method === "POST") {
          let parsed: unknown;
          try {
            parsed = JSON.parse(await readBody(req));
          } catch (error) {
            return reply(res, 400, { error: `body is not JSON: ${(error as Error).message}` });
          }
          const body = snapshotBody.safeParse(parsed);
          if (!body.success) {
            return reply(res, 400, {
              error: body.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; "),
            });
          }
          try {
            const { created, request } = source.requestSnapshot(body.data.id, body.data.tables);
            return reply(res, created ? 201 : 200, request);
          } catch (error) {
            return reply(res, 409, { error: (error as Error).message });
          }
        }
        reply(res, 404, { error: `no ${req.method} ${path}` });
      } catch (error) {
        reply(res, 500, { error: (error as Error).message });
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return { server, port: (server.address() as AddressInfo).port };
}
