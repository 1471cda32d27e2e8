/**
 * The connector's configuration: flags (`--pg-host db`) over environment variables
 * (`TRIBUTARY_CDC_PG_HOST=db`, which is how the CDCStream controller sets them in the pod) over
 * defaults, validated with zod. The keys are the contract with the controller; docs/cdcstream.md
 * lists them.
 */
import { z } from "zod";
import {
  booleanFlag,
  configUsage,
  inputKeys,
  parseRoleConfig,
  positiveInteger,
  splitList,
} from "../config.js";
import { kafkaSecurity, kafkaSecurityFields, withoutSecuritySettings } from "../kafkaClient.js";

/** `schema.table` or `schema.*`, unquoted identifiers as the CDCStream's schema allows. */
const tablePattern = /^[A-Za-z_][A-Za-z0-9_$]*\.([A-Za-z_][A-Za-z0-9_$]*|\*)$/;
const tableList = (what: string) =>
  splitList().pipe(
    z.array(z.string().regex(tablePattern, { error: `each ${what} entry must be schema.table or schema.*` })),
  );

const identifier = (what: string) =>
  z.string().regex(/^[a-z0-9_]{1,63}$/, { error: `${what} must be 1-63 characters of a-z, 0-9 or _` });

export const snapshotModes = ["initial", "initial_only", "always", "when_needed", "never"] as const;
export type SnapshotMode = (typeof snapshotModes)[number];

export const cdcConfigSchema = z
  .object({
    /** `<namespace>/<name>` of the CDCStream; labels logs and metrics. */
    name: z.string({ error: "name is required (<namespace>/<name> of the CDCStream)" }).min(1),
    pgHost: z.string({ error: "pgHost is required" }).min(1),
    pgPort: z.coerce.number().int().min(1).max(65535).default(5432),
    pgDatabase: z.string({ error: "pgDatabase is required" }).min(1),
    pgUser: z.string({ error: "pgUser is required" }).min(1),
    pgPassword: z.string().optional(),
    pgSslMode: z
      .enum(["disable", "prefer", "require", "verify-ca", "verify-full"], {
        error: "pgSslMode must be one of disable, prefer, require, verify-ca, verify-full",
      })
      .default("prefer"),
    pgSslRootCertFile: z
      .string()
      .startsWith("/", { error: "pgSslRootCertFile must be an absolute path" })
      .optional(),
    tablesInclude: tableList("tablesInclude").optional(),
    tablesExclude: tableList("tablesExclude").optional(),
    publication: identifier("publication"),
    slot: identifier("slot"),
    beforeImages: booleanFlag.default(true),
    topicPrefix: z.string({ error: "topicPrefix is required" }).regex(/^[A-Za-z0-9._-]{1,200}$/, {
      error: "topicPrefix must be 1-200 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
    }),
    partitions: positiveInteger("partitions").default(1),
    replicationFactor: positiveInteger("replicationFactor").default(3),
    format: z.enum(["json", "avro"], { error: "format must be json or avro" }).default("json"),
    snapshotMode: z
      .enum(snapshotModes, { error: `snapshotMode must be one of ${snapshotModes.join(", ")}` })
      .default("initial"),
    snapshotToTopics: booleanFlag.default(true),
    fetchSize: positiveInteger("fetchSize").default(10_240),
    /** 0 turns heartbeats off. */
    heartbeatIntervalSeconds: z.coerce.number().int().min(0).max(3600).default(10),
    maxBatchSize: positiveInteger("maxBatchSize").default(2048),
    /** Also write BEGIN/END records with event counts to `<topicPrefix>.transaction`. */
    transactionTopic: booleanFlag.default(false),
    /** Rows per chunk of an incremental (ad hoc) snapshot. */
    incrementalChunkSize: positiveInteger("incrementalChunkSize").default(1024),
    kafkaBootstrap: splitList("kafkaBootstrap is required (host:port,host:port)").pipe(
      z
        .array(z.string().regex(/^[^\s:]+:\d+$/, { error: "each broker must be host:port" }))
        .min(1, { error: "kafkaBootstrap needs at least one host:port" }),
    ),
    /** Kafka topic of the Avro schema registry. */
    schemasTopic: z.string().optional(),
    stateDir: z
      .string()
      .startsWith("/", { error: "stateDir must be an absolute path" })
      .default("/var/lib/tributary/cdc"),
    httpHost: z.string().default("0.0.0.0"),
    /** 0 picks a free port (tests); the port is logged. */
    httpPort: z.coerce.number().int().min(0).max(65535).default(8080),
    ...kafkaSecurityFields,
  })
  .superRefine((config, ctx) => {
    if (config.tablesInclude?.length && config.tablesExclude?.length) {
      ctx.addIssue({
        code: "custom",
        path: ["tablesExclude"],
        message: "give tablesInclude or tablesExclude, not both",
      });
    }
  })
  .transform((config, ctx) => ({
    ...withoutSecuritySettings(config),
    kafkaSecurity: kafkaSecurity(config, ctx),
  }));

export type CdcConfig = z.output<typeof cdcConfigSchema>;

const cdcRole = {
  role: "cdc",
  envPrefix: "TRIBUTARY_CDC_",
  schema: cdcConfigSchema,
  keys: inputKeys(cdcConfigSchema),
};

export const usage = (): string => configUsage(cdcRole);

export function parseCdcConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): CdcConfig {
  return parseRoleConfig(cdcRole, argv, env);
}
