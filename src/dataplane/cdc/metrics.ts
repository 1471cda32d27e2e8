/** The connector's Prometheus metrics; one registry per connector so tests can run several in a process. */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export class CdcMetrics {
  readonly registry = new Registry();
  readonly events = new Counter({
    name: "tributary_cdc_events_total",
    help: "Change events produced to Kafka and acknowledged, by operation (c, u, d, r, t)",
    labelNames: ["op"],
    registers: [this.registry],
  });
  readonly acked = new Counter({
    name: "tributary_cdc_events_acknowledged_total",
    help: "Events acknowledged by Kafka (acks=-1)",
    registers: [this.registry],
  });
  readonly errors = new Counter({
    name: "tributary_cdc_errors_total",
    help: "Sessions that ended in an error and were retried, by reason",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  readonly lagBytes = new Gauge({
    name: "tributary_cdc_lag_bytes",
    help: "WAL bytes between the server's current LSN and the slot's confirmed flush LSN",
    registers: [this.registry],
  });
  readonly confirmedLsn = new Gauge({
    name: "tributary_cdc_confirmed_flush_lsn",
    help: "Confirmed flush LSN sent to PostgreSQL, as a byte position",
    registers: [this.registry],
  });
  readonly commitToAck = new Histogram({
    name: "tributary_cdc_commit_to_ack_seconds",
    help: "Time from a transaction's commit in PostgreSQL to Kafka's acknowledgement of its last event",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly snapshotRows = new Counter({
    name: "tributary_cdc_snapshot_rows_total",
    help: "Rows read by snapshots (initial and incremental)",
    labelNames: ["kind"],
    registers: [this.registry],
  });
}
