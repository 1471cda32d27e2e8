/**
 * VideoCollector: pods that pull camera streams (or receive pushed ones), cut them into
 * frames with ffmpeg, compress each frame and publish it to a Kafka topic keyed by source,
 * optionally archiving the original stream as segments.
 */
import { z } from "zod";
import {
  clusterOperationSchema,
  deletionPolicySchema,
  dns1123Label,
  exactlyOneFileTargetRule,
  fileTargetFields,
  kafkaClusterField,
  kafkaTopicName,
  roleFields,
  secretRefSchema,
} from "./common.js";
import { commonStatusFields } from "./conditions.js";
import { defineResource, type ResourceOf, readyColumn } from "./resource.js";

export const videoSourceSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(63)
      .regex(dns1123Label)
      .describe(
        "Name of the source, unique in the collector; the Kafka key of its frames, so a source's frames stay in order.",
      ),
    url: z
      .string()
      .max(2048)
      .regex(/^(rtsp|rtsps|http|https|file|srt|udp):\/\/\S+$/)
      .optional()
      .describe(
        "Stream to pull: rtsp://, rtsps://, http(s):// (MJPEG, HLS, a file), srt://, udp:// or file:// (a path inside the pod, for tests and replays). Exactly one of url or push.",
      ),
    credentialsSecret: secretRefSchema
      .optional()
      .describe("Secret with 'username' and 'password' for the stream, kept out of the URL."),
    push: z
      .object({
        format: z
          .enum(["mpegts", "mjpeg", "jpeg"])
          .default("mpegts")
          .describe(
            "What the sender posts: an MPEG-TS stream, a multipart MJPEG stream, or single JPEG images.",
          ),
      })
      .optional()
      .describe(
        "Accept the stream pushed by the camera instead: the collector Service takes it at POST /v1/sources/<name>. Exactly one of url or push.",
      ),
  })
  .describe("One camera or stream.");

export const videoCollectorSpecSchema = z
  .object({
    sources: z
      .array(videoSourceSchema)
      .min(1)
      .max(256)
      .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] })
      .describe("Streams to collect; spread over the collector pods by name."),
    frames: z
      .object({
        fps: z
          .number()
          .gt(0)
          .max(120)
          .default(1)
          .describe(
            "Frames sampled per second of video and source; default 1. Fractions allowed (0.2 = one every 5 s). Ignored with keyFramesOnly.",
          ),
        keyFramesOnly: z
          .boolean()
          .default(false)
          .describe(
            "Publish only the stream's key frames (I-frames), decoding nothing else: the cheapest sampling, at the camera's GOP rate.",
          ),
        width: z
          .number()
          .int()
          .min(16)
          .max(7680)
          .optional()
          .describe(
            "Width of published frames in pixels; with height omitted the aspect ratio is kept. Source width when both are omitted.",
          ),
        height: z
          .number()
          .int()
          .min(16)
          .max(4320)
          .optional()
          .describe("Height of published frames in pixels; with width omitted the aspect ratio is kept."),
        codec: z
          .enum(["jpeg", "webp", "png"])
          .default("jpeg")
          .describe(
            "Image codec of each frame: jpeg (fast, lossy), webp (smaller, lossy) or png (lossless, large).",
          ),
        quality: z
          .number()
          .int()
          .min(1)
          .max(100)
          .default(80)
          .describe("Quality of lossy codecs, 1 (smallest) to 100 (best); ignored for png."),
      })
      .prefault({})
      .describe("How frames are sampled, scaled and compressed."),
    topic: z
      .object({
        kafka: kafkaClusterField("that receives the frames"),
        name: z
          .string()
          .min(1)
          .max(249)
          .regex(kafkaTopicName)
          .describe("Kafka topic the frames are published to (one message per frame, key = source name)."),
        partitions: z
          .number()
          .int()
          .min(1)
          .max(10000)
          .default(6)
          .describe(
            "Partitions of the topic when the collector creates it; a source's frames all go to one.",
          ),
        replicationFactor: z
          .number()
          .int()
          .min(1)
          .max(10)
          .default(3)
          .describe("Replication factor of the topic when the collector creates it."),
      })
      .describe("Where frames are published."),
    maxFrameBytes: z
      .number()
      .int()
      .min(1024)
      .max(104857600)
      .default(1000000)
      .describe(
        "Largest Kafka message the collector writes, in bytes; default 1000000, below Kafka's default message.max.bytes. A larger frame is split into chunks of this size (headers chunk-index, chunk-count, frame-id) that `tributary video-read` and src/dataplane/video/reader.ts reassemble.",
      ),
    archive: z
      .object({
        enabled: z.boolean().default(false).describe("Archive the original streams (no re-encoding)."),
        segmentSeconds: z
          .number()
          .int()
          .min(1)
          .max(3600)
          .default(60)
          .describe("Length of each archived segment file in seconds (cut at the next key frame)."),
        format: z
          .enum(["mpegts", "mp4"])
          .default("mpegts")
          .describe("Container of the segments: MPEG-TS (survives a cut-off write) or MP4."),
        codec: z
          .enum(["copy", "h264"])
          .default("copy")
          .describe(
            "copy keeps the camera's own encoding (H.264 from most cameras, no CPU spent); h264 re-encodes with libx264 (for MJPEG cameras).",
          ),
        ...fileTargetFields,
      })
      .prefault({})
      .describe(
        "Archive of the original streams as segment files under '<path>/<source>/'; exactly one of blockPool or volume when enabled (a BlockPool is written through WebHDFS).",
      ),
    collector: z
      .object({
        ...roleFields({ what: "video collector", replicas: { default: 1 } }),
        port: z
          .number()
          .int()
          .min(1)
          .max(65535)
          .default(8080)
          .describe("Port of the collector Service that receives pushed streams and serves health."),
        queueFrames: z
          .number()
          .int()
          .min(1)
          .max(10000)
          .default(30)
          .describe(
            "Frames kept per source while Kafka is slow or away; beyond it the oldest unsent frame is dropped and counted, so memory stays bounded.",
          ),
        frozenAfterSeconds: z
          .number()
          .int()
          .min(2)
          .max(3600)
          .default(15)
          .describe(
            "A source that yields no frame for this long is reconnected (at least three sampling periods).",
          ),
      })
      .prefault({})
      .describe(
        "The collector pods (a StatefulSet) that run ffmpeg and publish frames; pulled sources are spread over the replicas by pod ordinal, and move when the replica count changes.",
      ),
    deletionPolicy: deletionPolicySchema("Retain", "the archived segment files are deleted"),
    clusterOperation: clusterOperationSchema,
  })
  .describe("Desired state of the video collector.");

export const videoCollectorStatusSchema = z
  .object({
    ...commonStatusFields,
    sourcesLive: z.number().int().min(0).optional().describe("Sources currently delivering frames."),
    sourcesTotal: z.number().int().min(0).optional().describe("Sources declared in the spec."),
    framesPerSecond: z
      .number()
      .min(0)
      .optional()
      .describe("Frames published per second over the last minute, all sources."),
    droppedFrames: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Frames dropped since the collector started (too large, or Kafka unavailable)."),
    sources: z
      .array(
        z
          .object({
            name: z.string().describe("Name of the source."),
            live: z.boolean().describe("Whether the source delivered a frame recently."),
            pod: z.string().optional().describe("The collector pod that takes the source."),
            framesPublished: z
              .number()
              .int()
              .min(0)
              .optional()
              .describe("Frames Kafka acknowledged since that pod started."),
            framesDropped: z
              .number()
              .int()
              .min(0)
              .optional()
              .describe("Frames dropped since that pod started (Kafka behind: the oldest unsent go first)."),
            framesPerSecond: z.number().min(0).optional().describe("Frames per second measured lately."),
            lastFrameTime: z.iso
              .datetime({ offset: true })
              .optional()
              .describe("When its last frame was published."),
            message: z.string().optional().describe("The last error reading the source, if any."),
          })
          .describe("State of one source."),
      )
      .optional()
      .describe("State of each source."),
  })
  .describe("Observed state of the video collector.");

export const videoCollectorDefinition = defineResource({
  kind: "VideoCollector",
  description:
    "Collectors that pull or receive camera streams, sample them into compressed frames, publish the frames to a Kafka topic and optionally archive the streams.",
  plural: "videocollectors",
  shortNames: ["vc"],
  spec: videoCollectorSpecSchema,
  status: videoCollectorStatusSchema,
  printerColumns: [
    readyColumn("Whether the collectors run and publish."),
    {
      name: "Live",
      type: "integer",
      jsonPath: ".status.sourcesLive",
      description: "Sources delivering frames.",
    },
    { name: "Sources", type: "integer", jsonPath: ".status.sourcesTotal", description: "Declared sources." },
    {
      name: "FPS",
      type: "number",
      jsonPath: ".status.framesPerSecond",
      description: "Frames published per second.",
    },
    {
      name: "Topic",
      type: "string",
      jsonPath: ".spec.topic.name",
      description: "Kafka topic of the frames.",
    },
    {
      name: "Age",
      type: "date",
      jsonPath: ".metadata.creationTimestamp",
      description: "Time since creation.",
    },
  ],
  validations: [
    {
      path: "spec.sources[]",
      rule: "has(self.url) != has(self.push)",
      message: "spec.sources[] needs exactly one of url or push",
    },
    {
      path: "spec.archive",
      rule: `!self.enabled || (${exactlyOneFileTargetRule})`,
      message: "spec.archive needs exactly one of blockPool or volume when enabled",
    },
  ],
});

export type VideoCollectorSpec = z.infer<typeof videoCollectorSpecSchema>;
export type VideoCollectorStatus = z.infer<typeof videoCollectorStatusSchema>;
export type VideoSource = z.infer<typeof videoSourceSchema>;
export type VideoCollector = ResourceOf<typeof videoCollectorDefinition>;
