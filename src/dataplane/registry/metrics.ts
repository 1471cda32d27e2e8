import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** The schema registry server's Prometheus metrics, in a registry of their own (tests run several). */
export class SchemaRegistryMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: "tributary_schema_registry_requests_total",
    help: "HTTP requests by route (the path template), method and status code",
    labelNames: ["route", "method", "code"] as const,
    registers: [this.registry],
  });
  readonly requestDuration = new Histogram({
    name: "tributary_schema_registry_request_duration_seconds",
    help: "Time to answer a request, by route and method",
    labelNames: ["route", "method"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly subjects = new Gauge({
    name: "tributary_schema_registry_subjects",
    help: "Subjects with a version that is not soft-deleted",
    registers: [this.registry],
  });
  readonly appliedOffset = new Gauge({
    name: "tributary_schema_registry_applied_offset",
    help: "Next offset of the schemas topic this instance will apply",
    registers: [this.registry],
  });
  readonly lagRecords = new Gauge({
    name: "tributary_schema_registry_lag_records",
    help: "Records of the schemas topic not yet applied (at the last check)",
    registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: "tributary_schema_registry_ready",
    help: "1 once the schemas topic was read to its end and the reader is running",
    registers: [this.registry],
  });
}
