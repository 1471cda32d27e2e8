/** The video collector's Prometheus metrics, one label per source. */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export class VideoMetrics {
  readonly registry = new Registry();
  readonly framesPublished = new Counter({
    name: "tributary_video_frames_published_total",
    help: "Frames Kafka acknowledged, per source.",
    labelNames: ["source"] as const,
    registers: [this.registry],
  });
  readonly framesDropped = new Counter({
    name: "tributary_video_frames_dropped_total",
    help: "Frames dropped, per source and reason: queue (Kafka behind or away, the oldest unsent went) or kafka (Kafka refused them for good: too large, not authorized).",
    labelNames: ["source", "reason"] as const,
    registers: [this.registry],
  });
  readonly bytesPublished = new Counter({
    name: "tributary_video_bytes_published_total",
    help: "Encoded frame bytes Kafka acknowledged, per source.",
    labelNames: ["source"] as const,
    registers: [this.registry],
  });
  readonly connected = new Gauge({
    name: "tributary_video_source_connected",
    help: "1 while the source's ffmpeg delivers frames.",
    labelNames: ["source"] as const,
    registers: [this.registry],
  });
  readonly framesPerSecond = new Gauge({
    name: "tributary_video_source_fps",
    help: "Frames per second published over the last 10 s, per source.",
    labelNames: ["source"] as const,
    registers: [this.registry],
  });
  readonly queuedFrames = new Gauge({
    name: "tributary_video_queued_frames",
    help: "Frames waiting for Kafka, per source.",
    labelNames: ["source"] as const,
    registers: [this.registry],
  });
  readonly restarts = new Counter({
    name: "tributary_video_ffmpeg_restarts_total",
    help: "Times a source's ffmpeg was started again (the source dropped, froze or failed).",
    labelNames: ["source"] as const,
    registers: [this.registry],
  });
  readonly captureToAck = new Histogram({
    name: "tributary_video_capture_to_ack_seconds",
    help: "From ffmpeg writing a frame to Kafka acknowledging it.",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly assignedSources = new Gauge({
    name: "tributary_video_assigned_sources",
    help: "Sources this collector pod takes.",
    registers: [this.registry],
  });
}
