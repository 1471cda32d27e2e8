import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

export interface ProbeServerOptions {
  port: number;
  host?: string;
  registry: Registry;
  /** Ready means: informers synced (a standby that is not leading is ready too, so it can take over). */
  ready: () => boolean;
  /** Healthy means: the process is alive and its loops are not wedged. */
  healthy?: () => boolean;
  /** Which endpoints this port serves; both by default (health and metrics may share a port). */
  serve?: { probes: boolean; metrics: boolean };
}

/**
 * `/healthz` (liveness), `/readyz` (readiness) and `/metrics` (Prometheus) on one port. Probes
 * answer plain text, as kube-apiserver's do, so `curl` and kubelet read them alike.
 */
export class ProbeServer {
  private server: http.Server | undefined;

  constructor(private readonly options: ProbeServerOptions) {}

  async start(): Promise<number> {
    const server = http.createServer((request, response) => {
      void this.handle(request.url ?? "/", response);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.options.port, this.options.host ?? "0.0.0.0", () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(url: string, response: http.ServerResponse): Promise<void> {
    const path = url.split("?")[0];
    const text = (status: number, body: string) => {
      response.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
      response.end(body);
    };
    const serve = this.options.serve ?? { probes: true, metrics: true };
    try {
      if (serve.probes && (path === "/healthz" || path === "/livez")) {
        const healthy = this.options.healthy?.() ?? true;
        text(healthy ? 200 : 500, healthy ? "ok\n" : "unhealthy\n");
      } else if (serve.probes && path === "/readyz") {
        const ready = this.options.ready();
        text(ready ? 200 : 503, ready ? "ok\n" : "informers not synced\n");
      } else if (serve.metrics && path === "/metrics") {
        const body = await this.options.registry.metrics();
        response.writeHead(200, { "content-type": this.options.registry.contentType });
        response.end(body);
      } else {
        text(404, "not found: this port serves /healthz, /readyz or /metrics\n");
      }
    } catch (error) {
      text(500, `${error instanceof Error ? error.message : String(error)}\n`);
    }
  }
}
