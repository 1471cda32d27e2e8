/**
 * CDCStream: a connector that streams row changes of PostgreSQL tables into Kafka through
 * logical replication (pgoutput), with before and after images, plus full snapshots on start
 * and on a schedule. Topic naming and snapshot modes follow Debezium's PostgreSQL connector so
 * its consumers feel at home.
 */
import { z } from "zod";
import {
  clusterOperationSchema,
  cronOrPresetSchema,
  deletionPolicySchema,
  exactlyOneFileTargetRule,
  fileTargetFields,
  kafkaClusterField,
  kafkaTopicName,
  roleFields,
  secretKeyRefSchema,
  secretRefSchema,
} from "./common.js";
import { commonStatusFields } from "./conditions.js";
import { defineResource, type ResourceOf, readyColumn } from "./resource.js";

/** `schema.table`, or `schema.*` for every table of a schema; unquoted PostgreSQL identifiers. */
const tableName = /^[A-Za-z_][A-Za-z0-9_$]*\.([A-Za-z_][A-Za-z0-9_$]*|\*)$/;
/** PostgreSQL replication slot and publication names: lower case, digits, underscore. */
/** `schema.table`: an ad hoc snapshot names tables, not schemas. */
const concreteTableName = /^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$/;
const slotName = /^[a-z0-9_]{1,63}$/;
const lsn = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/;

export const postgresSourceSchema = z
  .object({
    host: z.string().min(1).max(253).describe("Host name or address of the PostgreSQL primary."),
    port: z.number().int().min(1).max(65535).default(5432).describe("PostgreSQL port; default 5432."),
    database: z
      .string()
      .min(1)
      .max(63)
      .describe("Database to capture. Immutable: the replication slot belongs to one database."),
    credentialsSecret: secretRefSchema.describe(
      "Secret with the keys 'username' and 'password' of a role with REPLICATION and SELECT on the captured tables (and CREATE on the database when the operator creates the publication).",
    ),
    sslMode: z
      .enum(["disable", "prefer", "require", "verify-ca", "verify-full"])
      .default("prefer")
      .describe(
        "libpq sslmode towards the database; verify-full checks the server certificate and host name.",
      ),
    sslRootCertSecret: secretKeyRefSchema
      .optional()
      .describe("CA certificate (PEM) for verify-ca and verify-full; the system trust store when omitted."),
    tables: z
      .object({
        include: z
          .array(z.string().max(127).regex(tableName))
          .max(512)
          .optional()
          .describe(
            "Tables to capture as schema.table, or schema.* for all tables of a schema; all tables when omitted.",
          ),
        exclude: z
          .array(z.string().max(127).regex(tableName))
          .max(512)
          .optional()
          .describe("Tables not to capture, as schema.table or schema.*; only when include is omitted."),
      })
      .prefault({})
      .describe("Which tables are captured; every table of the database by default."),
    publicationName: z
      .string()
      .regex(slotName)
      .optional()
      .describe(
        "PostgreSQL publication that lists the captured tables; 'tributary_<namespace>_<name>' (sanitised) when omitted. The operator creates it and keeps its table list in line with spec.source.postgres.tables.",
      ),
    slotName: z
      .string()
      .regex(slotName)
      .optional()
      .describe(
        "Logical replication slot (plugin pgoutput) that keeps the stream's position; 'tributary_<namespace>_<name>' (sanitised) when omitted. Immutable: a new slot would lose or repeat changes.",
      ),
    beforeImages: z
      .boolean()
      .default(true)
      .describe(
        "Set REPLICA IDENTITY FULL on captured tables so updates and deletes carry the whole old row (the 'before' image); without it only the primary key of the old row is known.",
      ),
  })
  .describe("The PostgreSQL database (wal_level=logical) whose changes are streamed.");

export const cdcStreamSpecSchema = z
  .object({
    source: z
      .object({ postgres: postgresSourceSchema })
      .describe("Where changes come from. PostgreSQL is the only source type for now."),
    target: z
      .object({
        kafka: kafkaClusterField("that receives the change events"),
        topicPrefix: z
          .string()
          .min(1)
          .max(200)
          .regex(kafkaTopicName)
          .describe(
            "Prefix of the change topics: each table's changes go to '<topicPrefix>.<schema>.<table>', as Debezium names them. Immutable: renaming would split a table's history across topics.",
          ),
        partitions: z
          .number()
          .int()
          .min(1)
          .max(10000)
          .default(1)
          .describe(
            "Partitions of each change topic the operator creates; default 1. Events are keyed by primary key, so any count keeps per-row order.",
          ),
        replicationFactor: z
          .number()
          .int()
          .min(1)
          .max(32767)
          .default(3)
          .describe("Replication factor of each change topic the operator creates; default 3."),
        format: z
          .enum(["json", "avro"])
          .default("json")
          .describe("Encoding of the change events: json, or avro with the schema in a header."),
      })
      .describe("Where change events go."),
    snapshot: z
      .object({
        mode: z
          .enum(["initial", "initial_only", "always", "when_needed", "never"])
          .default("initial")
          .describe(
            "When the connector reads whole tables: initial (once, when the slot is new, then streams), initial_only (snapshot then stop), always (on every connector start), when_needed (when the slot is missing or behind the oldest WAL), never (stream only).",
          ),
        schedule: cronOrPresetSchema
          .optional()
          .describe(
            "Cron expression of 5 fields (minute hour day-of-month month day-of-week, e.g. '0 2 * * *') or preset (@daily, @hourly, ...) for periodic full snapshots while streaming continues, read in timeZone; none when omitted. A field out of range or a date that never comes turns the CDCStream Degraded with reason InvalidSchedule.",
          ),
        timeZone: z
          .string()
          .max(64)
          .default("UTC")
          .describe(
            "IANA time zone the schedule is read in, e.g. Europe/Paris; default UTC. An unknown zone turns the CDCStream Degraded with reason InvalidSchedule.",
          ),
        toTopics: z
          .boolean()
          .default(true)
          .describe("Emit snapshot rows into the change topics as read events (op 'r'), as Debezium does."),
        files: z
          .object({
            ...fileTargetFields,
            format: z
              .enum(["avro", "parquet"])
              .default("parquet")
              .describe("File format of the snapshot: parquet (columnar) or avro (row-oriented)."),
          })
          .optional()
          .describe(
            "Also write each snapshot as files under '<path>/<schema>.<table>/snapshot=<time>/' in a BlockPool or a volume (exactly one).",
          ),
        fetchSize: z
          .number()
          .int()
          .min(1)
          .max(1000000)
          .default(10240)
          .describe("Rows fetched per round trip while reading a table."),
        requests: z
          .array(
            z
              .object({
                id: z
                  .string()
                  .min(1)
                  .max(63)
                  .regex(/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/)
                  .describe(
                    "Identifies the request; the connector runs each id once (Debezium's execute-snapshot signal id).",
                  ),
                tables: z
                  .array(z.string().max(127).regex(concreteTableName))
                  .min(1)
                  .max(512)
                  .describe("Tables to read again, as schema.table; each must be captured."),
              })
              .describe("An ad hoc snapshot of some tables, read while streaming continues."),
          )
          .max(64)
          .optional()
          .describe(
            "Ad hoc incremental snapshots (Debezium's incremental snapshots, without locking tables): each new id is sent to the connector once; status.snapshotRequests shows how each went. Remove old entries when done.",
          ),
      })
      .prefault({})
      .describe("Full reads of the captured tables, taken at a consistent point of the slot."),
    connector: z
      .object(
        roleFields({
          what: "connector",
          replicas: {
            default: 1,
            min: 1,
            max: 1,
            note: "Always 1: a replication slot has at most one consumer, so the stream cannot be spread over pods (a restarted pod resumes from the slot's confirmed LSN).",
          },
        }),
      )
      .prefault({})
      .describe("The connector pod that reads the slot and produces to Kafka."),
    heartbeatIntervalSeconds: z
      .number()
      .int()
      .min(0)
      .max(3600)
      .default(10)
      .describe(
        "Seconds between heartbeats that confirm the slot's position even when captured tables are idle, so PostgreSQL can recycle WAL; 0 disables them.",
      ),
    maxBatchSize: z
      .number()
      .int()
      .min(1)
      .max(100000)
      .default(2048)
      .describe("Most change events produced to Kafka in one batch."),
    deletionPolicy: deletionPolicySchema(
      "Delete",
      "the replication slot and the publication are dropped (an abandoned slot makes PostgreSQL keep WAL forever); change topics and snapshot files are kept",
    ),
    clusterOperation: clusterOperationSchema,
  })
  .describe("Desired state of the change stream.");

export const cdcStreamStatusSchema = z
  .object({
    ...commonStatusFields,
    slotName: z.string().optional().describe("Replication slot in use."),
    publicationName: z.string().optional().describe("Publication in use."),
    confirmedFlushLsn: z
      .string()
      .regex(lsn)
      .optional()
      .describe("Last LSN confirmed to PostgreSQL: every change up to it is acknowledged by Kafka."),
    lagBytes: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("WAL bytes between the server's current LSN and confirmedFlushLsn."),
    lagSeconds: z
      .number()
      .min(0)
      .optional()
      .describe(
        "Seconds between the newest change committed in the source and the last one acknowledged by Kafka.",
      ),
    eventsPerSecond: z.number().min(0).optional().describe("Change events produced per second, lately."),
    lastEventTime: z.iso
      .datetime({ offset: true })
      .optional()
      .describe("Commit time of the last change event produced."),
    connectorState: z
      .string()
      .optional()
      .describe("What the connector reports doing: starting, snapshotting, streaming, stopped or failed."),
    tables: z.array(z.string()).optional().describe("Tables being captured, as schema.table."),
    tablesWithoutFullIdentity: z
      .array(z.string())
      .optional()
      .describe(
        "Captured tables without REPLICA IDENTITY FULL: their updates and deletes carry only the old primary key, no whole 'before' image.",
      ),
    snapshotProgress: z
      .object({
        tablesDone: z.number().int().min(0).optional().describe("Tables read completely."),
        tablesTotal: z.number().int().min(0).optional().describe("Tables the snapshot reads."),
        rowsRead: z.number().int().min(0).optional().describe("Rows read so far."),
        completedAt: z.iso
          .datetime({ offset: true })
          .optional()
          .describe("When the snapshot completed; absent while it runs."),
      })
      .optional()
      .describe("Progress of the connector's initial snapshot into the change topics."),
    snapshotRequests: z
      .array(
        z
          .object({
            id: z.string().describe("The request's id in spec.snapshot.requests."),
            state: z
              .enum(["Pending", "Running", "Completed", "Failed"])
              .describe("Pending (not started or not yet accepted), Running, Completed or Failed."),
            rows: z.number().int().min(0).optional().describe("Rows read by the request."),
            message: z.string().optional().describe("Why it failed or waits."),
          })
          .describe("One ad hoc snapshot request as the connector reports it."),
      )
      .max(64)
      .optional()
      .describe("Each spec.snapshot.requests entry as the connector reports it."),
    snapshots: z
      .array(
        z
          .object({
            time: z.iso.datetime({ offset: true }).describe("Scheduled time of the snapshot."),
            job: z.string().describe("The Job that took it."),
            result: z.enum(["Running", "Succeeded", "Failed"]).describe("Running, Succeeded or Failed."),
            rows: z.number().int().min(0).optional().describe("Rows written, over every table."),
            manifest: z.string().optional().describe("Path of its _manifest.json, written last."),
            lsn: z.string().optional().describe("WAL position of the snapshot's consistent point."),
            message: z.string().optional().describe("Why it failed: the Job's last words."),
          })
          .describe("One scheduled snapshot to files."),
      )
      .max(10)
      .optional()
      .describe("The most recent scheduled snapshots to files, newest first (at most 10)."),
    lastScheduleTime: z.iso
      .datetime({ offset: true })
      .optional()
      .describe("Scheduled time of the last snapshot Job created."),
    lastSnapshotTime: z.iso
      .datetime({ offset: true })
      .optional()
      .describe("When the last full snapshot completed."),
    lastSnapshotRows: z.number().int().min(0).optional().describe("Rows read by the last full snapshot."),
    nextSnapshotTime: z.iso
      .datetime({ offset: true })
      .optional()
      .describe("When the next scheduled snapshot starts."),
  })
  .describe("Observed state of the change stream.");

export const cdcStreamDefinition = defineResource({
  kind: "CDCStream",
  description:
    "A change data capture stream: PostgreSQL row changes, with before and after images, streamed into Kafka through logical replication, plus full snapshots on start and on a schedule.",
  plural: "cdcstreams",
  shortNames: ["cdc"],
  spec: cdcStreamSpecSchema,
  status: cdcStreamStatusSchema,
  printerColumns: [
    readyColumn("Whether the connector is streaming."),
    {
      name: "State",
      type: "string",
      jsonPath: ".status.connectorState",
      description: "What the connector does: starting, snapshotting, streaming, stopped or failed.",
    },
    {
      name: "Database",
      type: "string",
      jsonPath: ".spec.source.postgres.database",
      description: "Captured database.",
    },
    { name: "Slot", type: "string", jsonPath: ".status.slotName", description: "Replication slot." },
    {
      name: "LSN",
      type: "string",
      jsonPath: ".status.confirmedFlushLsn",
      description: "Confirmed flush LSN.",
    },
    {
      name: "Lag",
      type: "integer",
      jsonPath: ".status.lagBytes",
      description: "Replication lag in WAL bytes.",
    },
    {
      name: "Last Snapshot",
      type: "date",
      jsonPath: ".status.lastSnapshotTime",
      description: "Time since the last full snapshot.",
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
      path: "spec.source.postgres.database",
      rule: "self == oldSelf",
      message: "spec.source.postgres.database is immutable: the replication slot belongs to one database",
    },
    {
      path: "spec.source.postgres",
      rule: "has(self.slotName) == has(oldSelf.slotName)",
      message: "spec.source.postgres.slotName cannot be added or removed after creation",
      fieldPath: ".slotName",
    },
    {
      path: "spec.source.postgres.slotName",
      rule: "self == oldSelf",
      message: "spec.source.postgres.slotName is immutable: a new slot would lose or repeat changes",
    },
    {
      path: "spec.target.topicPrefix",
      rule: "self == oldSelf",
      message:
        "spec.target.topicPrefix is immutable: renaming would split each table's history across topics",
    },
    {
      path: "spec.source.postgres.tables",
      rule: "!(has(self.include) && has(self.exclude))",
      message: "spec.source.postgres.tables: set include or exclude, not both",
    },
    {
      path: "spec.snapshot.files",
      rule: exactlyOneFileTargetRule,
      message: "spec.snapshot.files needs exactly one of blockPool or volume",
    },
    {
      path: "spec.snapshot.requests",
      rule: "self.all(r, self.exists_one(s, s.id == r.id))",
      message: "spec.snapshot.requests: each id must be unique",
    },
    {
      path: "spec.snapshot",
      rule: "!has(self.schedule) || self.toTopics || has(self.files)",
      message: "spec.snapshot.schedule needs a destination: toTopics true or files",
      fieldPath: ".schedule",
    },
  ],
});

export type CDCStreamSpec = z.infer<typeof cdcStreamSpecSchema>;
export type CDCStreamStatus = z.infer<typeof cdcStreamStatusSchema>;
export type PostgresSource = z.infer<typeof postgresSourceSchema>;
export type CDCStream = ResourceOf<typeof cdcStreamDefinition>;
