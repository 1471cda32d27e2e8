import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Registry } from "prom-client";
import type { RollReason } from "./layout.js";
import type { SinkObserver } from "./partitionWriter.js";

/** The sink's Prometheus metrics; one registry per sink so tests can run several in a process. */
export class SinkMetrics implements SinkObserver {
  readonly registry = new Registry();
  private readonly recordsWritten = new Counter({
    name: "tributary_sink_records_written_total",
    help: "Records appended to sink files",
    labelNames: ["topic", "partition"],
    registers: [this.registry],
  });
  private readonly recordsSkipped = new Counter({
    name: "tributary_sink_records_skipped_total",
    help: "Re-delivered records skipped because a closed file already holds them",
    labelNames: ["topic", "partition"],
    registers: [this.registry],
  });
  private readonly deadLetters = new Counter({
    name: "tributary_sink_dead_letters_total",
    help: "Records sent to the dead-letter topic because they could not be decoded",
    labelNames: ["topic", "partition"],
    registers: [this.registry],
  });
  private readonly filesClosed = new Counter({
    name: "tributary_sink_files_closed_total",
    help: "Files closed durably and renamed into place, by roll reason",
    labelNames: ["topic", "reason"],
    registers: [this.registry],
  });
  private readonly bytesWritten = new Counter({
    name: "tributary_sink_bytes_written_total",
    help: "Bytes of closed sink files",
    labelNames: ["topic"],
    registers: [this.registry],
  });
  private readonly lag = new Gauge({
    name: "tributary_sink_lag_records",
    help: "Records between the partition's high watermark and the next record the sink will handle",
    labelNames: ["topic", "partition"],
    registers: [this.registry],
  });

  recordWritten(topic: string, partition: number): void {
    this.recordsWritten.inc({ topic, partition: String(partition) });
  }

  recordSkipped(topic: string, partition: number): void {
    this.recordsSkipped.inc({ topic, partition: String(partition) });
  }

  deadLettered(topic: string, partition: number): void {
    this.deadLetters.inc({ topic, partition: String(partition) });
  }

  fileClosed(topic: string, _partition: number, bytes: number, _records: number, reason: RollReason): void {
    this.filesClosed.inc({ topic, reason });
    this.bytesWritten.inc({ topic }, bytes);
  }

  setLag(topic: string, partition: number, records: number): void {
    this.lag.set({ topic, partition: String(partition) }, Math.max(0, records));
  }

  forgetPartition(topic: string, partition: number): void {
    this.lag.remove({ topic, partition: String(partition) });
  }
}

export interface HealthSource {
  live(): boolean;
  ready(): boolean;
}

/** `/healthz` (liveness), `/readyz` (joined its consumer group) and `/metrics`. */
export async function startHealthServer(
  port: number,
  host: string,
  health: HealthSource,
  registry: Registry,
): Promise<{ server: Server; port: number }> {
  const server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      registry.metrics().then(
        (text) => {
          response.writeHead(200, { "content-type": registry.contentType });
          response.end(text);
        },
        (error: unknown) => {
          response.writeHead(500, { "content-type": "text/plain" });
          response.end(`metrics failed: ${(error as Error).message}\n`);
        },
      );
      return;
    }
    const check = path === "/healthz" ? health.live() : path === "/readyz" ? health.ready() : undefined;
    if (check === undefined) {
      response.writeHead(404, { "content-type": "text/plain" });
      response.end("not found: try /healthz, /readyz or /metrics\n");
      return;
    }
    response.writeHead(check ? 200 : 503, { "content-type": "text/plain" });
    response.end(check ? "ok\n" : "not ready\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
