/**
 * `tributary cdc-snapshot`'s configuration: flags over `TRIBUTARY_CDC_SNAPSHOT_*` variables (how
 * the CDCStream controller sets them in the Job's pod) over defaults, validated with zod.
 */
import { z } from "zod";
import { configUsage, inputKeys, parseRoleConfig, positiveInteger, splitList } from "../config.js";
import { checkTarget } from "../sink/config.js";

const list = splitList();

export const snapshotFilesConfigSchema = z
  .object({
    /** `<namespace>/<name>` of the CDCStream, for logs and the manifest. */
    name: z.string().optional(),
    pgHost: z.string({ error: "pgHost is required" }).min(1),
    pgPort: z.coerce.number().int().min(1).max(65535).default(5432),
    pgDatabase: z.string({ error: "pgDatabase is required" }).min(1),
    pgUser: z.string({ error: "pgUser is required" }).min(1),
    pgPassword: z.string().default(""),
    pgSslMode: z.enum(["disable", "prefer", "require", "verify-ca", "verify-full"]).default("prefer"),
    pgSslRootCertFile: z.string().startsWith("/").optional(),
    tablesInclude: list.default([]),
    tablesExclude: list.default([]),
    format: z.enum(["parquet", "avro"], { error: "format must be parquet or avro" }).default("parquet"),
    /** A local (mounted) directory; or targetWebhdfs with targetPath for a BlockPool. */
    targetDir: z.string().startsWith("/", { error: "targetDir must be an absolute path" }).optional(),
    targetWebhdfs: list.optional(),
    targetPath: z.string().startsWith("/", { error: "targetPath must be an absolute path" }).optional(),
    fetchSize: positiveInteger("fetchSize").default(10_240),
    /** Rows per row group: what a Parquet file holds in memory before it is encoded and flushed. */
    rowGroupRows: positiveInteger("rowGroupRows").default(50_000),
    /** A new part file after this many bytes; a BlockPool file is held in memory until it closes. */
    maxFileBytes: positiveInteger("maxFileBytes").default(64 * 1024 * 1024),
    /** The scheduled time (ISO 8601) the snapshot is named after; now when omitted. */
    snapshotTime: z.iso.datetime({ offset: true }).optional(),
    /** Where the summary for the operator goes: the container's termination message. */
    terminationLog: z.string().default("/dev/termination-log"),
  })
  .superRefine(checkTarget);

export type SnapshotFilesConfig = z.output<typeof snapshotFilesConfigSchema>;

const role = {
  role: "cdc-snapshot",
  envPrefix: "TRIBUTARY_CDC_SNAPSHOT_",
  schema: snapshotFilesConfigSchema,
  keys: inputKeys(snapshotFilesConfigSchema),
};

export const usage = (): string => configUsage(role);

export function parseSnapshotFilesConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): SnapshotFilesConfig {
  return parseRoleConfig(role, argv, env);
}
