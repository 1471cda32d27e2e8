/**
 * `tributary video`'s configuration: flags over `TRIBUTARY_VIDEO_*` variables over defaults.
 *
 * The sources and the replica count may change while the pod runs: the controller writes them to
 * a ConfigMap mounted at `--sources-file` ({"replicas": n, "sources": [...]}), which the collector
 * reads again every few seconds, so a source added, removed or moved by a scale change is picked
 * up without restarting the other sources. `--sources` (JSON) serves a collector run by hand.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import {
  booleanFlag,
  brokerList,
  ConfigError,
  configUsage,
  inputKeys,
  parseRoleConfig,
  positiveInteger,
  splitList,
} from "../config.js";
import { kafkaSecurity, kafkaSecurityFields, withoutSecuritySettings } from "../kafkaClient.js";

export const sourceEntrySchema = z
  .object({
    name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, { error: "a source name is a DNS label" }),
    url: z.string().min(1).optional(),
    push: z.object({ format: z.enum(["mpegts", "mjpeg", "jpeg"]).default("mpegts") }).optional(),
  })
  .refine((source) => (source.url === undefined) !== (source.push === undefined), {
    error: "a source needs exactly one of url or push",
  });

export const sourcesDocumentSchema = z.object({
  replicas: z.number().int().min(1).default(1),
  sources: z.array(sourceEntrySchema),
});

export type SourceEntry = z.output<typeof sourceEntrySchema>;
export type SourcesDocument = z.output<typeof sourcesDocumentSchema>;

export const videoConfigSchema = z
  .object({
    brokers: brokerList,
    topic: z.string({ error: "topic is required" }).regex(/^[A-Za-z0-9._-]{1,249}$/, {
      error: "topic must be 1-249 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
    }),
    clientId: z.string().min(1).default("tributary-video"),
    /** The pod's name; its trailing ordinal says which pulled sources it takes. */
    podName: z.string().min(1).default(hostname()),
    /** Sources as JSON (a list, or {"replicas", "sources"}); or sourcesFile. */
    sources: z.string().optional(),
    sourcesFile: z.string().optional(),
    /** How often sourcesFile is read again. */
    reloadIntervalMs: positiveInteger("reloadIntervalMs").default(3_000),
    /** Directory with <source>/username and <source>/password for sources that need a login. */
    credentialsDir: z.string().optional(),
    fps: z.coerce.number().gt(0).max(120).default(1),
    keyFramesOnly: booleanFlag.default(false),
    codec: z.enum(["jpeg", "webp", "png"]).default("jpeg"),
    quality: z.coerce.number().int().min(1).max(100).default(80),
    width: positiveInteger("width").optional(),
    height: positiveInteger("height").optional(),
    /** Below the broker's message.max.bytes; larger frames are chunked. */
    maxMessageBytes: positiveInteger("maxMessageBytes").min(4096).default(1_000_000),
    queueFrames: positiveInteger("queueFrames").default(30),
    frozenAfterMs: positiveInteger("frozenAfterMs").default(15_000),
    initialBackoffMs: positiveInteger("initialBackoffMs").default(500),
    maxBackoffMs: positiveInteger("maxBackoffMs").default(30_000),
    host: z.string().default("0.0.0.0"),
    port: z.coerce.number().int().min(0).max(65535).default(8080),
    ffmpeg: z.string().default("ffmpeg"),
    /** WebHDFS name nodes (host:port,...) of the BlockPool the archive goes to. */
    archiveWebhdfs: splitList().optional(),
    /** A directory (a mounted volume) the archive goes to instead. */
    archiveTargetDir: z.string().optional(),
    /** Where in the BlockPool, or under archiveTargetDir: segments go to <path>/<source>/. */
    archivePath: z.string().default("/"),
    archiveSegmentSeconds: positiveInteger("archiveSegmentSeconds").default(60),
    archiveFormat: z.enum(["mpegts", "mp4"]).default("mpegts"),
    archiveCodec: z.enum(["copy", "h264"]).default("copy"),
    /** Local scratch directory for segments being written. */
    archiveScratchDir: z.string().default("/tmp/tributary-video-segments"),
    topicWaitMs: z.coerce.number().int().min(0).default(15_000),
    shutdownTimeoutMs: positiveInteger("shutdownTimeoutMs").default(10_000),
    ...kafkaSecurityFields,
  })
  .refine((config) => config.sources !== undefined || config.sourcesFile !== undefined, {
    error: "sources (JSON) or sourcesFile is required",
    path: ["sources"],
  })
  .refine((config) => !(config.archiveWebhdfs && config.archiveTargetDir), {
    error: "archiveWebhdfs and archiveTargetDir exclude each other",
    path: ["archiveTargetDir"],
  })
  .transform((config, ctx) => ({
    ...withoutSecuritySettings(config),
    kafkaSecurity: kafkaSecurity(config, ctx),
  }));

export type VideoConfig = z.output<typeof videoConfigSchema>;
export type VideoConfigInput = z.input<typeof videoConfigSchema>;

const videoRole = {
  role: "video",
  envPrefix: "TRIBUTARY_VIDEO_",
  schema: videoConfigSchema,
  keys: inputKeys(videoConfigSchema),
};

export const usage = (): string => configUsage(videoRole);

export function parseVideoConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): VideoConfig {
  return parseRoleConfig(videoRole, argv, env);
}

/** The sources and replica count: from --sources, else read from --sources-file now. */
export function readSources(config: Pick<VideoConfig, "sources" | "sourcesFile">): SourcesDocument {
  const text = config.sources ?? readFileSync(config.sourcesFile!, "utf8");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`sources: not JSON: ${(error as Error).message}`);
  }
  const parsed = sourcesDocumentSchema.safeParse(Array.isArray(raw) ? { sources: raw } : raw);
  if (!parsed.success) {
    throw new ConfigError(
      `sources: ${parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ")}`,
    );
  }
  const names = new Set<string>();
  for (const source of parsed.data.sources) {
    if (names.has(source.name)) throw new ConfigError(`sources: '${source.name}' is named twice`);
    names.add(source.name);
  }
  return parsed.data;
}

/** The URL with the login from credentialsDir/<source>/{username,password}, when there is one. */
export function urlWithCredentials(url: string, source: string, credentialsDir?: string): string {
  if (!credentialsDir) return url;
  let username: string;
  let password: string;
  try {
    username = readFileSync(join(credentialsDir, source, "username"), "utf8").trim();
    password = readFileSync(join(credentialsDir, source, "password"), "utf8").trim();
  } catch {
    return url;
  }
  const parsed = new URL(url);
  parsed.username = username;
  parsed.password = password;
  return parsed.toString();
}

export { ConfigError };
