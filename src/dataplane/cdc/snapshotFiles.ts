/**
 * A full snapshot of a database's tables into Parquet (or Avro) files, at one consistent point:
 * every table is read in ONE `REPEATABLE READ READ ONLY` transaction, so a row committed while the
 * dump runs appears in no file, and the transaction's WAL position and snapshot are recorded. Rows
 * stream through a server-side cursor (`FETCH fetchSize`) into the sink's file writers, which
 * flush a row group every `rowGroupRows` rows and start a new file after `maxFileBytes`: memory
 * holds one row group and, for a BlockPool (whose files are sent whole on close), one file, never a
 * table. Layout, as Hive-style readers expect:
 *
 *   <target>/<schema>.<table>/snapshot=<yyyymmddThhmmssZ>/part-00000.parquet
 *   <target>/_snapshots/snapshot=<yyyymmddThhmmssZ>/_manifest.json     written last
 *
 * Files appear by rename only once complete; the manifest (WAL position, snapshot, per-table row
 * counts, files and column schema) is written after every file, so a reader that finds it knows
 * the snapshot is whole, and a snapshot without one is incomplete (a crashed run).
 */
import { randomBytes } from "node:crypto";
import avro, { type Type } from "avsc";
import type pg from "pg";
import { avroFileWriterFactory } from "../sink/avroFile.js";
import type { RecordFileWriter } from "../sink/format.js";
import { parquetFileWriterFactory } from "../sink/parquetFile.js";
import type { SinkTarget } from "../sink/target.js";

export interface SnapshotFilesOptions {
  /** A connected client; the dump runs its transaction on it. */
  client: pg.Client;
  target: SinkTarget;
  format: "parquet" | "avro";
  /** `schema.table` or `schema.*`; every table when empty. */
  include: readonly string[];
  exclude: readonly string[];
  fetchSize: number;
  rowGroupRows: number;
  maxFileBytes: number;
  /** The scheduled time the snapshot is named after. */
  time: Date;
  /** `<namespace>/<name>` of the CDCStream, recorded in the manifest. */
  stream?: string;
  /** Called after each fetched batch (metrics, logs). */
  onProgress?: (table: string, rows: number) => void | Promise<void>;
}

export interface ColumnManifest {
  name: string;
  /** The field name in the files (a PostgreSQL name Avro cannot hold is folded to [A-Za-z0-9_]). */
  field: string;
  /** PostgreSQL's type, as format_type() writes it. */
  type: string;
  nullable: boolean;
}

export interface TableManifest {
  table: string;
  rows: number;
  files: string[];
  columns: ColumnManifest[];
}

export interface SnapshotManifest {
  format: "tributary.cdc.snapshot/v1";
  stream?: string;
  database: string;
  fileFormat: "parquet" | "avro";
  snapshotTime: string;
  startedAt: string;
  completedAt: string;
  /** pg_current_wal_lsn() inside the transaction: changes after it are in the change stream. */
  lsn: string;
  /** pg_current_snapshot() of the transaction (xmin:xmax:xip): exactly which transactions are in. */
  snapshot: string;
  /** The first transaction id not visible to the snapshot (its xmax). */
  txid: string;
  totalRows: number;
  tables: TableManifest[];
  manifest: string;
}

/** `20261206T020000Z`: a time as a path component (BlockPool paths hold no ':'). */
export function snapshotStamp(time: Date): string {
  return time
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/[-:]/g, "");
}

export const manifestPath = (time: Date) => `_snapshots/snapshot=${snapshotStamp(time)}/_manifest.json`;

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

interface ColumnRow {
  name: string;
  oid: number;
  type: string;
  notnull: boolean;
}

/** OIDs of the types written as their own Avro/Parquet type; every other type is its text form. */
const Oid = {
  bool: 16,
  bytea: 17,
  int8: 20,
  int2: 21,
  int4: 23,
  float4: 700,
  float8: 701,
  timestamptz: 1184,
} as const;

/**
 * pg's parsers for the types mapped natively, raw text for the rest: numeric stays exact, a
 * timestamp without time zone stays as written, json and arrays keep PostgreSQL's own text.
 */
export function snapshotTypeParsers(types: typeof pg.types): pg.CustomTypesConfig {
  const native = new Set<number>([
    Oid.bool,
    Oid.bytea,
    Oid.int2,
    Oid.int4,
    Oid.float4,
    Oid.float8,
    Oid.timestamptz,
  ]);
  return {
    getTypeParser: ((oid: number, format?: "text" | "binary") =>
      native.has(oid)
        ? types.getTypeParser(oid, format ?? "text")
        : (value: string) => value) as pg.CustomTypesConfig["getTypeParser"],
  };
}

function avroTypeOf(column: ColumnRow): avro.schema.AvroSchema {
  switch (column.oid) {
    case Oid.bool:
      return "boolean";
    case Oid.int2:
    case Oid.int4:
      return "int";
    case Oid.int8:
      return "long";
    case Oid.float4:
      return "float";
    case Oid.float8:
      return "double";
    case Oid.bytea:
      return "bytes";
    case Oid.timestamptz:
      return { type: "long", logicalType: "timestamp-millis" };
    default:
      return "string";
  }
}

const fieldName = (name: string, used: Set<string>) => {
  let field = name.replace(/[^A-Za-z0-9_]/g, "_");
  if (!/^[A-Za-z_]/.test(field)) field = `_${field}`;
  while (used.has(field)) field = `${field}_`;
  used.add(field);
  return field;
};

interface TablePlan {
  schema: string;
  table: string;
  columns: (ColumnRow & { field: string })[];
  type: Type;
  timestampFields: string[];
}

function planTable(schema: string, table: string, columns: ColumnRow[]): TablePlan {
  const used = new Set<string>();
  const planned = columns.map((column) => ({ ...column, field: fieldName(column.name, used) }));
  const type = avro.Type.forSchema(
    {
      type: "record",
      name: fieldName(`${schema}_${table}`, new Set()),
      fields: planned.map((column) => {
        const base = avroTypeOf(column);
        return { name: column.field, type: column.notnull ? base : ["null", base] };
      }),
    } as avro.schema.RecordType,
    { wrapUnions: false },
  );
  return {
    schema,
    table,
    columns: planned,
    type,
    timestampFields: planned.filter((column) => column.oid === Oid.timestamptz).map((column) => column.field),
  };
}

/** A rough size of a row for the writers' size estimate: what its values hold, not how they encode. */
function rowSize(row: Record<string, unknown>): number {
  let size = 0;
  for (const key in row) {
    const value = row[key];
    size += typeof value === "string" ? value.length : Buffer.isBuffer(value) ? value.byteLength : 8;
  }
  return size;
}

/** The captured tables, resolved in the snapshot's own transaction (same rules as the connector). */
async function resolveTables(
  client: pg.Client,
  include: readonly string[],
  exclude: readonly string[],
): Promise<{ schema: string; table: string }[]> {
  const { rows } = await client.query<{ schema: string; table: string }>(
    `SELECT n.nspname AS schema, c.relname AS table
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
      ORDER BY 1, 2`,
  );
  const matches = (entry: string, row: { schema: string; table: string }) => {
    const dot = entry.indexOf(".");
    const schema = entry.slice(0, dot);
    const table = entry.slice(dot + 1);
    return row.schema === schema && (table === "*" || row.table === table);
  };
  if (include.length > 0) {
    for (const entry of include) {
      if (!entry.endsWith(".*") && !rows.some((row) => matches(entry, row))) {
        throw new Error(`table ${entry} does not exist (spec.source.postgres.tables.include)`);
      }
    }
    return rows.filter((row) => include.some((entry) => matches(entry, row)));
  }
  return rows.filter((row) => !exclude.some((entry) => matches(entry, row)));
}

/** Writes one table's files; returns its manifest entry. */
async function dumpTable(
  options: SnapshotFilesOptions,
  plan: TablePlan,
  directory: string,
): Promise<TableManifest> {
  const { client, target, format } = options;
  const extension = format === "parquet" ? "parquet" : "avro";
  const name = `${plan.schema}.${plan.table}`;
  const factory =
    format === "parquet"
      ? parquetFileWriterFactory({
          rowGroupRows: options.rowGroupRows,
          codec: "snappy",
          timestampFields: plan.timestampFields,
        })
      : avroFileWriterFactory("deflate");
  // avsc's long and timestamp-millis take numbers: int8 text and Dates are converted for Avro only
  // (Parquet's writer takes int8 as BigInt from the exact text).
  const longs = plan.columns.filter((column) => column.oid === Oid.int8).map((column) => column.field);
  const renamed = plan.columns.filter((column) => column.field !== column.name);
  const files: string[] = [];
  let rows = 0;
  let part = 0;
  let open:
    | { writer: RecordFileWriter; file: Awaited<ReturnType<SinkTarget["create"]>>; final: string }
    | undefined;
  const close = async () => {
    if (!open) return;
    await open.writer.finish({ "tributary.snapshot.table": name });
    await open.file.closeDurably();
    await target.rename(open.file.path, open.final);
    files.push(open.final);
    open = undefined;
  };
  const cursor = `tributary_snapshot_${part}_${randomBytes(4).toString("hex")}`;
  await client.query(
    `DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT ${plan.columns.map((column) => quote(column.name)).join(", ") || "*"} FROM ${quote(plan.schema)}.${quote(plan.table)}`,
  );
  try {
    for (;;) {
      const batch = await client.query(`FETCH ${options.fetchSize} FROM ${cursor}`);
      if (batch.rows.length === 0) break;
      for (const row of batch.rows as Record<string, unknown>[]) {
        for (const column of renamed) row[column.field] = row[column.name];
        if (format === "avro") {
          for (const field of longs) if (row[field] != null) row[field] = Number(row[field]);
          for (const field of plan.timestampFields) {
            const value = row[field];
            if (value instanceof Date) row[field] = value.getTime();
          }
        }
        if (!open) {
          const final = `${directory}/part-${String(part).padStart(5, "0")}.${extension}`;
          const file = await target.create(
            `${directory}/.part-${String(part).padStart(5, "0")}.${randomBytes(4).toString("hex")}.tmp`,
          );
          part++;
          open = {
            file,
            final,
            writer: factory(file, plan.type, { topic: name, partition: part, firstOffset: BigInt(rows) }),
          };
        }
        await open.writer.append(row, rowSize(row));
        rows++;
        if (open.writer.estimatedBytes() >= options.maxFileBytes) await close();
      }
      await options.onProgress?.(name, rows);
    }
  } finally {
    await client.query(`CLOSE ${cursor}`).catch(() => {});
  }
  await close();
  return {
    table: name,
    rows,
    files,
    columns: plan.columns.map((column) => ({
      name: column.name,
      field: column.field,
      type: column.type,
      nullable: !column.notnull,
    })),
  };
}

/** Takes the snapshot; resolves with its manifest once `_manifest.json` is written. */
export async function takeSnapshot(options: SnapshotFilesOptions): Promise<SnapshotManifest> {
  const { client, time } = options;
  const startedAt = new Date();
  const stamp = snapshotStamp(time);
  await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  let point: { lsn: string; snapshot: string; xmax: string; database: string };
  const tables: TableManifest[] = [];
  try {
    // The first statement fixes the transaction's snapshot: every table below is read as of it.
    point = (
      await client.query<{ lsn: string; snapshot: string; xmax: string; database: string }>(
        `SELECT pg_current_wal_lsn()::text AS lsn, pg_current_snapshot()::text AS snapshot,
                pg_snapshot_xmax(pg_current_snapshot())::text AS xmax, current_database() AS database`,
      )
    ).rows[0]!;
    const resolved = await resolveTables(client, options.include, options.exclude);
    for (const { schema, table } of resolved) {
      const columns = (
        await client.query<ColumnRow>(
          `SELECT a.attname AS name, a.atttypid::int AS oid, format_type(a.atttypid, a.atttypmod) AS type,
                  a.attnotnull AS notnull
             FROM pg_attribute a
            WHERE a.attrelid = ($1 || '.' || $2)::regclass AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum`,
          [quote(schema), quote(table)],
        )
      ).rows;
      const plan = planTable(schema, table, columns);
      tables.push(await dumpTable(options, plan, `${schema}.${table}/snapshot=${stamp}`));
    }
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
  const manifest: SnapshotManifest = {
    format: "tributary.cdc.snapshot/v1",
    ...(options.stream ? { stream: options.stream } : {}),
    database: point.database,
    fileFormat: options.format,
    snapshotTime: time.toISOString(),
    startedAt: startedAt.toISOString(),
    completedAt: new Date().toISOString(),
    lsn: point.lsn,
    snapshot: point.snapshot,
    txid: point.xmax,
    totalRows: tables.reduce((sum, table) => sum + table.rows, 0),
    tables,
    manifest: manifestPath(time),
  };
  // Last, and by rename: its presence says every file above is complete.
  const final = manifestPath(time);
  const file = await options.target.create(`${final}.${randomBytes(4).toString("hex")}.tmp`);
  await file.write(Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
  await file.closeDurably();
  await options.target.rename(file.path, final);
  return manifest;
}
