import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** What the buffer gauges show, read when they are scraped rather than set on every request. */
export interface BufferState {
  bufferedEvents: number;
  bufferedBytes: number;
  fill: number;
  kafkaAvailable: boolean;
}

/** The collector's Prometheus metrics, in a registry of their own so several collectors can share a process (tests, bench). */
export class CollectorMetrics {
  readonly registry = new Registry();
  /** The pipeline's state, set by the pipeline (`watchBuffer`); the gauges read it when collected. */
  private bufferState: (() => BufferState) | undefined;
  readonly eventsAccepted = new Counter({
    name: "tributary_collector_events_accepted_total",
    help: "Events validated and acknowledged by Kafka on the events topic",
    registers: [this.registry],
  });
  readonly eventsRefused = new Counter({
    name: "tributary_collector_events_refused_total",
    help: "Events refused as invalid (each is also dead-lettered)",
    registers: [this.registry],
  });
  readonly eventsDeadLettered = new Counter({
    name: "tributary_collector_events_dead_lettered_total",
    help: "Refused events acknowledged by Kafka on the dead-letter topic",
    registers: [this.registry],
  });
  readonly requests = new Counter({
    name: "tributary_collector_requests_total",
    help: "HTTP requests by route and status code",
    labelNames: ["route", "code"] as const,
    registers: [this.registry],
  });
  readonly produceLatency = new Histogram({
    name: "tributary_collector_produce_latency_seconds",
    help: "Time from handing a batch to Kafka to its acknowledgement (acks=all)",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly batchEvents = new Histogram({
    name: "tributary_collector_batch_events",
    help: "Messages per batch sent to Kafka",
    buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500],
    registers: [this.registry],
  });
  readonly bufferedEvents = new Gauge({
    name: "tributary_collector_buffered_events",
    help: "Messages waiting for or in a Kafka send",
    registers: [this.registry],
    collect: () => {
      const state = this.bufferState?.();
      if (state) this.bufferedEvents.set(state.bufferedEvents);
    },
  });
  readonly bufferedBytes = new Gauge({
    name: "tributary_collector_buffered_bytes",
    help: "Bytes of messages waiting for or in a Kafka send",
    registers: [this.registry],
    collect: () => {
      const state = this.bufferState?.();
      if (state) this.bufferedBytes.set(state.bufferedBytes);
    },
  });
  readonly bufferFill = new Gauge({
    name: "tributary_collector_buffer_fill_ratio",
    help: "The fuller of events/limit and bytes/limit; at 1 requests get 429",
    registers: [this.registry],
    collect: () => {
      const state = this.bufferState?.();
      if (state) this.bufferFill.set(state.fill);
    },
  });
  readonly kafkaAvailable = new Gauge({
    name: "tributary_collector_kafka_available",
    help: "1 when the producer is connected and its sends complete, else 0 (requests get 503)",
    registers: [this.registry],
    collect: () => {
      const state = this.bufferState?.();
      if (state) this.kafkaAvailable.set(state.kafkaAvailable ? 1 : 0);
    },
  });

  /** Makes the buffer gauges show `state()` whenever they are scraped. */
  watchBuffer(state: () => BufferState): void {
    this.bufferState = state;
  }
}
