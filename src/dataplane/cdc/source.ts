/**
 * The PostgreSQL side of the connector outside the stream itself: connections, the checks a DBA
 * would make first (wal_level, the tables, their keys and replica identity, the slot), the
 * publication the connector owns, and the problems it reports in words a DBA understands.
 */
import type pg from "pg";
import { caFileFor, connectPostgres } from "../../postgres/connect.js";
import type { CdcConfig } from "./config.js";
import { sessionOptions } from "./values.js";

/** A condition the user or DBA must fix; the connector reports it and retries with backoff. */
export class SourceProblem extends Error {
  override name = "SourceProblem";
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export type PgSettings = Pick<
  CdcConfig,
  "pgHost" | "pgPort" | "pgDatabase" | "pgUser" | "pgPassword" | "pgSslMode" | "pgSslRootCertFile"
> &
  Partial<Pick<CdcConfig, "name">>;

export const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;
export const quoteLiteral = (text: string): string => `'${text.replace(/'/g, "''")}'`;
export const qualified = (schema: string, table: string): string =>
  `${quoteIdent(schema)}.${quoteIdent(table)}`;

/** Every value comes back as PostgreSQL's text form; values.ts converts it, as for the stream. */
const rawText = { getTypeParser: () => (value: string) => value };

function clientConfig(
  settings: PgSettings,
  replication = false,
  // The stream's `<namespace>/<name>`: how the operator (and a DBA in pg_stat_activity) tells the
  // connector's own walsender from another client holding the slot.
  applicationName = settings.name?.slice(0, 63) ?? "tributary-cdc",
): Omit<pg.ClientConfig, "ssl"> {
  return {
    host: settings.pgHost,
    port: settings.pgPort,
    database: settings.pgDatabase,
    user: settings.pgUser,
    ...(settings.pgPassword !== undefined ? { password: settings.pgPassword } : {}),
    options: sessionOptions,
    application_name: applicationName,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    types: rawText,
    ...(replication ? { replication: "database" } : {}),
  } as pg.ClientConfig;
}

/**
 * Connects; with sslmode prefer, TLS is tried first and a server without it is then reached in
 * the clear, as libpq does.
 */
export async function connect(
  settings: PgSettings,
  replication = false,
  applicationName?: string,
): Promise<pg.Client> {
  const client = await connectPostgres(
    clientConfig(settings, replication, applicationName),
    settings.pgSslMode,
    caFileFor(settings.pgSslMode, settings.pgSslRootCertFile),
  ).catch((error: unknown) => {
    throw explainPgError(error, settings);
  });
  client.on("error", () => undefined);
  return client;
}

/** A PostgreSQL or network error as a SourceProblem when it is one a DBA would fix; else as it is. */
export function explainPgError(error: unknown, settings: PgSettings): unknown {
  if (error instanceof SourceProblem) return error;
  const where = `PostgreSQL at ${settings.pgHost}:${settings.pgPort}`;
  const code = (error as { code?: string }).code;
  const message = (error as Error).message ?? String(error);
  switch (code) {
    case "28P01":
      return new SourceProblem(
        "AuthenticationFailed",
        `${where} refused the password of user '${settings.pgUser}' (${message}); check the password in the credentials Secret`,
      );
    case "28000":
      return new SourceProblem(
        "AuthenticationFailed",
        `${where} refused user '${settings.pgUser}' for database '${settings.pgDatabase}' (${message}); check pg_hba.conf allows it, for replication connections too`,
      );
    case "3D000":
      return new SourceProblem("DatabaseNotFound", `${where} has no database '${settings.pgDatabase}'`);
    case "42501":
      return new SourceProblem(
        "InsufficientPrivilege",
        `${where}: user '${settings.pgUser}' lacks a privilege: ${message}. It needs REPLICATION, SELECT on the captured tables, and ownership of them (or CREATE on the database) to manage the publication`,
      );
    case "55006":
      return new SourceProblem(
        "SlotInUse",
        `${where}: ${message}; another connector or client is streaming from this slot`,
      );
    case "ECONNREFUSED":
    case "ENOTFOUND":
    case "EHOSTUNREACH":
    case "ETIMEDOUT":
      return new SourceProblem("DatabaseUnreachable", `${where} cannot be reached: ${message}`);
    default:
      if (/timeout expired|Connection terminated/i.test(message)) {
        return new SourceProblem("DatabaseUnreachable", `${where} cannot be reached: ${message}`);
      }
      return error;
  }
}

export interface CapturedTable {
  schema: string;
  table: string;
  oid: number;
  /** Primary key columns in key order; empty when the table has none. */
  primaryKey: string[];
  replicaIdentity: string;
}

export const tableId = (t: { schema: string; table: string }): string => `${t.schema}.${t.table}`;

export interface SourcePlan {
  tables: CapturedTable[];
  tablesWithoutFullIdentity: string[];
  problems: { reason: string; message: string }[];
}

function matches(pattern: string, schema: string, table: string): boolean {
  const [patternSchema, patternTable] = pattern.split(".") as [string, string];
  return patternSchema === schema && (patternTable === "*" || patternTable === table);
}

/** Checks wal_level, picks the tables, sets REPLICA IDENTITY FULL where asked, and syncs the publication. */
export async function prepareSource(client: pg.Client, config: CdcConfig): Promise<SourcePlan> {
  const walLevel = (await client.query<{ wal_level: string }>("SHOW wal_level")).rows[0]!.wal_level;
  if (walLevel !== "logical") {
    throw new SourceProblem(
      "WalLevelNotLogical",
      `PostgreSQL at ${config.pgHost}:${config.pgPort} runs with wal_level=${walLevel}; logical replication needs wal_level=logical (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)`,
    );
  }
  const problems: SourcePlan["problems"] = [];
  const candidates = await client.query<{
    nspname: string;
    relname: string;
    oid: string;
    relreplident: string;
    pk: string[] | string | null;
  }>(`SELECT n.nspname, c.relname, c.oid, c.relreplident,
        (SELECT array_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum))
           FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])
          WHERE i.indrelid = c.oid AND i.indisprimary) AS pk
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
     ORDER BY 1, 2`);
  const include = config.tablesInclude;
  const exclude = config.tablesExclude ?? [];
  const chosen = candidates.rows.filter(
    (row) =>
      (!include?.length || include.some((p) => matches(p, row.nspname, row.relname))) &&
      !exclude.some((p) => matches(p, row.nspname, row.relname)),
  );
  for (const pattern of include ?? []) {
    const [schema, table] = pattern.split(".") as [string, string];
    if (!candidates.rows.some((row) => matches(pattern, row.nspname, row.relname))) {
      problems.push({
        reason: "TableNotFound",
        message:
          table === "*"
            ? `schema '${schema}' of database '${config.pgDatabase}' holds no table to capture (${pattern})`
            : `table ${pattern} does not exist in database '${config.pgDatabase}'; its changes are not captured until it is created`,
      });
    }
  }

  const tables: CapturedTable[] = [];
  const withoutFull: string[] = [];
  for (const row of chosen) {
    const id = `${row.nspname}.${row.relname}`;
    // With raw text types an aggregated name[] comes back as its array literal.
    const pk =
      row.pk === null
        ? []
        : Array.isArray(row.pk)
          ? row.pk
          : row.pk
              .replace(/^\{|\}$/g, "")
              .split(",")
              .map((n) => n.replace(/^"|"$/g, ""));
    let identity = row.relreplident;
    if (config.beforeImages && identity !== "f") {
      try {
        await client.query(`ALTER TABLE ${qualified(row.nspname, row.relname)} REPLICA IDENTITY FULL`);
        identity = "f";
      } catch (error) {
        problems.push({
          reason: "ReplicaIdentityNotFull",
          message: `cannot set REPLICA IDENTITY FULL on ${id} (${(error as Error).message}); updates and deletes carry only the old primary key. A table owner can run: ALTER TABLE ${id} REPLICA IDENTITY FULL`,
        });
      }
    }
    if (identity !== "f") withoutFull.push(id);
    if (pk.length === 0) {
      if (identity === "f") {
        problems.push({
          reason: "NoPrimaryKey",
          message: `table ${id} has no primary key: its events carry a null key (no per-row order across partitions) and it cannot be re-snapshotted incrementally; add a primary key`,
        });
      } else {
        problems.push({
          reason: "NoPrimaryKey",
          message: `table ${id} has no primary key and no REPLICA IDENTITY FULL, so PostgreSQL could not publish its updates and deletes; it is left out of the publication. Add a primary key or set REPLICA IDENTITY FULL`,
        });
        continue;
      }
    }
    tables.push({
      schema: row.nspname,
      table: row.relname,
      oid: Number(row.oid),
      primaryKey: pk,
      replicaIdentity: identity,
    });
  }
  await syncPublication(client, config.publication, tables);
  return { tables, tablesWithoutFullIdentity: withoutFull, problems };
}

/** Creates the publication, or sets its table list to exactly the captured tables. */
export async function syncPublication(
  client: pg.Client,
  publication: string,
  tables: CapturedTable[],
): Promise<void> {
  const list = tables.map((t) => qualified(t.schema, t.table)).join(", ");
  const existing = await client.query<{ puballtables: string }>(
    "SELECT puballtables FROM pg_publication WHERE pubname = $1",
    [publication],
  );
  if (existing.rowCount === 0) {
    await client.query(`CREATE PUBLICATION ${quoteIdent(publication)}${list ? ` FOR TABLE ${list}` : ""}`);
    return;
  }
  if (existing.rows[0]!.puballtables === "t") return;
  const current = await client.query<{ schemaname: string; tablename: string }>(
    "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1",
    [publication],
  );
  const want = new Set(tables.map(tableId));
  const have = new Set(current.rows.map((r) => `${r.schemaname}.${r.tablename}`));
  if (want.size === have.size && [...want].every((t) => have.has(t))) return;
  if (list) {
    await client.query(`ALTER PUBLICATION ${quoteIdent(publication)} SET TABLE ${list}`);
  } else {
    const drop = current.rows.map((r) => qualified(r.schemaname, r.tablename)).join(", ");
    await client.query(`ALTER PUBLICATION ${quoteIdent(publication)} DROP TABLE ${drop}`);
  }
}

export interface SlotInfo {
  plugin: string;
  database: string;
  activePid: number | null;
  confirmedFlushLsn: string | null;
  walStatus: string | null;
}

export async function slotInfo(client: pg.Client, slot: string): Promise<SlotInfo | undefined> {
  const result = await client.query<{
    plugin: string;
    database: string;
    active_pid: string | null;
    confirmed_flush_lsn: string | null;
    wal_status: string | null;
  }>(
    "SELECT plugin, database, active_pid, confirmed_flush_lsn, wal_status FROM pg_replication_slots WHERE slot_name = $1",
    [slot],
  );
  const row = result.rows[0];
  if (!row) return undefined;
  return {
    plugin: row.plugin,
    database: row.database,
    activePid: row.active_pid === null ? null : Number(row.active_pid),
    confirmedFlushLsn: row.confirmed_flush_lsn,
    walStatus: row.wal_status,
  };
}

/** Ends another backend's hold on nothing: only reports who holds the slot, in a DBA's words. */
export async function slotHolder(client: pg.Client, pid: number): Promise<string> {
  const result = await client.query<{
    application_name: string;
    client_addr: string | null;
    usename: string;
  }>("SELECT application_name, client_addr::text, usename FROM pg_stat_activity WHERE pid = $1", [pid]);
  const row = result.rows[0];
  return row
    ? `PID ${pid} (user ${row.usename}, application '${row.application_name}'${row.client_addr ? `, from ${row.client_addr}` : ""})`
    : `PID ${pid}`;
}

/** The primary key columns of a table, in key order; empty when it has none. */
export async function primaryKeyOf(client: pg.Client, schema: string, table: string): Promise<string[]> {
  const result = await client.query<{ attname: string }>(
    `SELECT a.attname FROM pg_index i
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])
      WHERE i.indrelid = $1::regclass AND i.indisprimary
      ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [qualified(schema, table)],
  );
  return result.rows.map((r) => r.attname);
}
