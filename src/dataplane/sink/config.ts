/**
 * The sink's configuration: flags (`--roll-max-bytes 134217728`) over environment variables
 * (`TRIBUTARY_SINK_ROLL_MAX_BYTES=134217728`) over defaults, validated with zod.
 */
import { hostname } from "node:os";
import { z } from "zod";
import { configUsage, inputKeys, parseRoleConfig, positiveInteger, splitList } from "../config.js";
import { kafkaSecurity, kafkaSecurityFields, withoutSecuritySettings } from "../kafkaClient.js";

const topicName = z.string({ error: "topic is required" }).regex(/^[A-Za-z0-9._-]{1,249}$/, {
  error: "must be 1-249 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
});

const list = (what: string) => splitList(`${what} is required`);

/** Where files go: targetDir, a local directory; or targetWebhdfs with targetPath, a BlockPool. */
interface TargetSettings {
  targetDir?: string;
  targetWebhdfs?: string[];
  targetPath?: string;
}

/** Exactly one target, and a BlockPool one whole; the sink's and the snapshot job's rule. */
export function checkTarget(config: TargetSettings, ctx: z.RefinementCtx): void {
  const local = config.targetDir !== undefined;
  const remote = config.targetWebhdfs !== undefined || config.targetPath !== undefined;
  if (local === remote) {
    ctx.addIssue({
      code: "custom",
      path: [local ? "targetDir" : "targetPath"],
      message: local
        ? "give either targetDir or targetWebhdfs with targetPath, not both"
        : "a target is required: targetDir (a local directory) or targetWebhdfs with targetPath (a BlockPool)",
    });
  } else if (remote && (!config.targetWebhdfs?.length || config.targetPath === undefined)) {
    ctx.addIssue({
      code: "custom",
      path: [config.targetWebhdfs?.length ? "targetPath" : "targetWebhdfs"],
      message:
        "a BlockPool target needs both targetWebhdfs (host:port,...) and targetPath (an absolute path)",
    });
  }
}

export const sinkConfigSchema = z
  .object({
    brokers: list("brokers (host:port,host:port)").pipe(
      z
        .array(z.string().regex(/^[^\s:]+:\d+$/, { error: "each broker must be host:port" }))
        .min(1, { error: "brokers is required (host:port,host:port)" }),
    ),
    topic: topicName,
    groupId: z.string().min(1).optional(),
    format: z.enum(["parquet", "avro"], { error: "format must be parquet or avro" }).default("parquet"),
    /** Avro: null | deflate | snappy. Parquet: snappy | gzip | uncompressed. */
    codec: z.string().optional(),
    /** A local (mounted) directory to write to; or targetWebhdfs and targetPath for a BlockPool. */
    targetDir: z.string().startsWith("/", { error: "targetDir must be an absolute path" }).optional(),
    /** WebHDFS addresses of a BlockPool's name nodes (host:port,host:port). */
    targetWebhdfs: list("targetWebhdfs (host:port,host:port)")
      .pipe(
        z
          .array(z.string().regex(/^[^\s:]+:\d+$/, { error: "each WebHDFS address must be host:port" }))
          .min(1, { error: "targetWebhdfs needs at least one host:port" }),
      )
      .optional(),
    /** The directory in the BlockPool the files go to. */
    targetPath: z.string().startsWith("/", { error: "targetPath must be an absolute path" }).optional(),
    /** 128 MiB: one HDFS block, the usual target size of a data-lake file. */
    rollMaxBytes: positiveInteger("rollMaxBytes").default(128 * 1024 * 1024),
    /** Ten minutes: how long records may wait in an open file before they are durable and committed. */
    rollMaxAgeMs: positiveInteger("rollMaxAgeMs").default(10 * 60 * 1000),
    /** 50,000 clickstream rows are a few MB of Parquet: statistics stay selective, memory stays small. */
    rowGroupRows: positiveInteger("rowGroupRows").default(50_000),
    /** Values: Confluent wire format with the schema registry, or JSON objects of `schemaFile`. */
    valueFormat: z.enum(["confluent-avro", "json"]).default("confluent-avro"),
    schemaFile: z.string().optional(),
    schemasTopic: topicName.optional(),
    eventTimeField: z.string().min(1).default("eventTime"),
    /** Top-level longs written to Parquet as TIMESTAMP_MILLIS (the clickstream schema's two times). */
    timestampFields: list("timestampFields").default(["eventTime", "receivedAt"]),
    deadLetterTopic: topicName.optional(),
    /** A killed sink's partitions move to the others after this long (the broker allows 6 s to 30 min). */
    sessionTimeoutMs: positiveInteger("sessionTimeoutMs").default(30_000),
    writerId: z
      .string()
      .regex(/^[A-Za-z0-9_]{1,64}$/, { error: "writerId must be 1-64 characters of A-Z, a-z, 0-9 or _" })
      .optional(),
    metricsHost: z.string().default("0.0.0.0"),
    /** 0 picks a free port (tests); the port is logged. */
    metricsPort: z.coerce.number().int().min(0).max(65535).default(9464),
    ...kafkaSecurityFields,
  })
  .superRefine((config, ctx) => {
    checkTarget(config, ctx);
    const codecs =
      config.format === "avro" ? ["null", "deflate", "snappy"] : ["snappy", "gzip", "uncompressed"];
    if (config.codec !== undefined && !codecs.includes(config.codec)) {
      ctx.addIssue({
        code: "custom",
        path: ["codec"],
        message: `codec '${config.codec}' is not one of ${codecs.join(", ")} for format ${config.format}`,
      });
    }
    if (config.valueFormat === "json" && !config.schemaFile) {
      ctx.addIssue({
        code: "custom",
        path: ["schemaFile"],
        message: "valueFormat json needs schemaFile (an Avro record schema)",
      });
    }
  })
  .transform((config, ctx) => ({
    ...withoutSecuritySettings(config),
    kafkaSecurity: kafkaSecurity(config, ctx),
    groupId: config.groupId ?? `tributary-sink-${config.topic}`,
    codec: config.codec ?? (config.format === "avro" ? "deflate" : "snappy"),
    deadLetterTopic: config.deadLetterTopic ?? `${config.topic}.dlq`,
    // The pod name is unique among live pods; the pid separates restarts in the same container.
    writerId: config.writerId ?? `${hostname().replace(/[^A-Za-z0-9]/g, "_")}_${process.pid}`,
  }));

export type SinkConfig = z.output<typeof sinkConfigSchema>;

const sinkRole = {
  role: "sink",
  envPrefix: "TRIBUTARY_SINK_",
  schema: sinkConfigSchema,
  keys: inputKeys(sinkConfigSchema),
};

export const usage = (): string => configUsage(sinkRole);

export function parseSinkConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): SinkConfig {
  return parseRoleConfig(sinkRole, argv, env);
}
