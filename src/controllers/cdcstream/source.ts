/**
 * What the operator itself asks of the source database, with the CDCStream's own credentials:
 *
 * - preflight: the checks a DBA would make before handing a database to a CDC connector, read
 *   only, so they show as `Degraded` with PostgreSQL's own words even while the connector pod
 *   crash-loops or has not been scheduled;
 * - release: dropping the replication slot and the publication when a CDCStream with
 *   deletionPolicy Delete goes (an abandoned slot makes PostgreSQL keep WAL until its disk fills).
 */
import type pg from "pg";
import type { PostgresSource } from "../../api/cdcstream.js";
import { connectPostgres } from "../../postgres/connect.js";
import type { SpecProblem } from "../common.js";

/** Condition reasons of the source's problems, one per thing a DBA fixes. */
export const SourceReason = {
  DatabaseUnavailable: "DatabaseUnavailable",
  AuthenticationFailed: "AuthenticationFailed",
  DatabaseNotFound: "DatabaseNotFound",
  WalLevelNotLogical: "WalLevelNotLogical",
  MissingReplicationPrivilege: "MissingReplicationPrivilege",
  TableNotFound: "TableNotFound",
  NoReplicaIdentity: "NoReplicaIdentity",
  SlotInUse: "SlotInUse",
  SlotIncompatible: "SlotIncompatible",
  SecretNotFound: "SecretNotFound",
} as const;

export interface Credentials {
  user: string;
  password: string;
}

export interface SourceConnection {
  source: PostgresSource;
  credentials: Credentials;
  /** PEM of the CA for verify-ca / verify-full, read from sslRootCertSecret. */
  caCertificate?: string;
  /** Overrides host:port (tests put a proxy in between); default the spec's. */
  connectTimeoutMs?: number;
}

/** A connected client; the caller ends it. `prefer` tries TLS first and plaintext when refused. */
export async function connectSource(connection: SourceConnection): Promise<pg.Client> {
  const { source, credentials } = connection;
  const client = await connectPostgres(
    {
      host: source.host,
      port: source.port,
      database: source.database,
      user: credentials.user,
      password: credentials.password,
      connectionTimeoutMillis: connection.connectTimeoutMs ?? 5_000,
      application_name: "tributary-operator",
      // A check must never hang a reconcile.
      statement_timeout: 10_000,
      query_timeout: 15_000,
    },
    source.sslMode,
    connection.caCertificate,
  );
  // An error after connect (the server going away) must not crash the operator.
  client.on("error", () => {});
  return client;
}

const where = (source: PostgresSource) => `${source.host}:${source.port}/${source.database}`;

/** A connection failure in the words a DBA reads: which role, which database, what the server said. */
export function connectionProblem(error: unknown, connection: SourceConnection): SpecProblem {
  const { source, credentials } = connection;
  const code = (error as { code?: string }).code;
  const said = error instanceof Error ? error.message : String(error);
  if (code === "28P01") {
    return {
      reason: SourceReason.AuthenticationFailed,
      message: `PostgreSQL ${where(source)} refused role "${credentials.user}": ${said}; check the username and password in Secret ${source.credentialsSecret.name}`,
    };
  }
  if (code === "28000") {
    return {
      reason: SourceReason.AuthenticationFailed,
      message: `PostgreSQL ${where(source)} refused role "${credentials.user}": ${said}; create the role (with LOGIN and REPLICATION) or allow it in pg_hba.conf`,
    };
  }
  if (code === "3D000") {
    return {
      reason: SourceReason.DatabaseNotFound,
      message: `PostgreSQL ${source.host}:${source.port}: ${said}; spec.source.postgres.database names a database the server does not have`,
    };
  }
  return {
    reason: SourceReason.DatabaseUnavailable,
    message: `cannot reach PostgreSQL ${where(source)}: ${code && !said.includes(code) ? `${code} ` : ""}${said}`,
  };
}

export interface PreflightInput extends SourceConnection {
  slotName: string;
  publicationName: string;
  /** The connector pod's IP, when it has one: its walsender is ours, not someone else's. */
  connectorPodIp?: string;
  /** The connector's name as it tells PostgreSQL (application_name), e.g. `<namespace>/<name>`. */
  connectorApplicationNames: readonly string[];
}

export interface PreflightResult {
  problems: SpecProblem[];
  /** The captured tables, as schema.table, when the database could be read. */
  tables?: string[];
  /** Captured tables without REPLICA IDENTITY FULL (only their key reaches the 'before' image). */
  tablesWithoutFullIdentity?: string[];
}

interface TableRow {
  schema: string;
  table: string;
  has_pk: boolean;
  replident: string;
}

const splitName = (name: string) => {
  const dot = name.indexOf(".");
  return { schema: name.slice(0, dot), table: name.slice(dot + 1) };
};

/** Every check, read only, on one connection; a failed connection is one problem. */
export async function preflight(input: PreflightInput): Promise<PreflightResult> {
  let client: pg.Client;
  try {
    client = await connectSource(input);
  } catch (error) {
    return { problems: [connectionProblem(error, input)] };
  }
  try {
    return await checks(client, input);
  } catch (error) {
    return { problems: [connectionProblem(error, input)] };
  } finally {
    await client.end().catch(() => {});
  }
}

async function checks(client: pg.Client, input: PreflightInput): Promise<PreflightResult> {
  const { source, credentials } = input;
  const problems: SpecProblem[] = [];
  const walLevel = (await client.query<{ wal_level: string }>("SHOW wal_level")).rows[0]!.wal_level;
  if (walLevel !== "logical") {
    problems.push({
      reason: SourceReason.WalLevelNotLogical,
      message: `PostgreSQL ${where(source)} has wal_level = ${walLevel}; logical replication needs wal_level = logical (ALTER SYSTEM SET wal_level = logical, then restart the server)`,
    });
  }
  const role = (
    await client.query<{ rolreplication: boolean; rolsuper: boolean }>(
      "SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user",
    )
  ).rows[0];
  if (role && !role.rolreplication && !role.rolsuper) {
    problems.push({
      reason: SourceReason.MissingReplicationPrivilege,
      message: `role "${credentials.user}" lacks the REPLICATION attribute needed to create and read a replication slot (ALTER ROLE "${credentials.user}" WITH REPLICATION)`,
    });
  }

  const all = (
    await client.query<TableRow>(
      `SELECT n.nspname AS schema, c.relname AS table,
              EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
              c.relreplident AS replident
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'`,
    )
  ).rows;
  const byName = new Map(all.map((row) => [`${row.schema}.${row.table}`, row]));
  const { include, exclude } = source.tables;
  let captured: TableRow[];
  if (include) {
    captured = [];
    for (const entry of include) {
      const { schema, table } = splitName(entry);
      if (table === "*") {
        const tables = all.filter((row) => row.schema === schema);
        if (tables.length === 0) {
          problems.push({
            reason: SourceReason.TableNotFound,
            message: `spec.source.postgres.tables.include: schema "${schema}" has no tables in database ${source.database} (or does not exist, or role "${credentials.user}" cannot see it)`,
          });
        }
        captured.push(...tables);
      } else {
        const row = byName.get(entry);
        if (row) captured.push(row);
        else {
          problems.push({
            reason: SourceReason.TableNotFound,
            message: `spec.source.postgres.tables.include: table ${entry} does not exist in database ${source.database} (names are case-sensitive; check \\dt ${schema}.* as role "${credentials.user}")`,
          });
        }
      }
    }
  } else {
    const excluded = (row: TableRow) =>
      (exclude ?? []).some((entry) => {
        const { schema, table } = splitName(entry);
        return row.schema === schema && (table === "*" || row.table === table);
      });
    captured = all.filter((row) => !excluded(row));
  }
  captured = [...new Map(captured.map((row) => [`${row.schema}.${row.table}`, row])).values()];
  const withoutKey = captured.filter((row) => !row.has_pk && row.replident !== "f");
  for (const row of withoutKey) {
    problems.push({
      reason: SourceReason.NoReplicaIdentity,
      message: `table ${row.schema}.${row.table} has no primary key and its REPLICA IDENTITY is not FULL: once it is published, PostgreSQL refuses its UPDATEs and DELETEs ("cannot update table because it does not have a replica identity") and its change events would have no key; add a primary key, or ALTER TABLE ${row.schema}.${row.table} REPLICA IDENTITY FULL`,
    });
  }

  const slot = (
    await client.query<{
      plugin: string | null;
      database: string | null;
      active: boolean;
      active_pid: number | null;
      client_addr: string | null;
      application_name: string | null;
    }>(
      `SELECT s.plugin, s.database, s.active, s.active_pid,
              host(a.client_addr) AS client_addr, a.application_name
         FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
        WHERE s.slot_name = $1`,
      [input.slotName],
    )
  ).rows[0];
  if (slot) {
    if (slot.plugin !== "pgoutput" || slot.database !== source.database) {
      problems.push({
        reason: SourceReason.SlotIncompatible,
        message: `replication slot ${input.slotName} exists with plugin ${slot.plugin ?? "none (a physical slot)"} on database ${slot.database ?? "none"}; the connector needs a logical slot with plugin pgoutput on ${source.database}: choose another spec.source.postgres.slotName or drop that slot`,
      });
    } else if (slot.active && !isOurs(slot, input)) {
      problems.push({
        reason: SourceReason.SlotInUse,
        message: `replication slot ${input.slotName} is in use by another connection (pid ${slot.active_pid}, client ${slot.client_addr ?? "local socket"}, application "${slot.application_name ?? ""}"), not by this CDCStream's connector; a slot has one reader: stop that client, or SELECT pg_terminate_backend(${slot.active_pid}) if it is stale`,
      });
    }
  }
  return {
    problems,
    tables: captured.map((row) => `${row.schema}.${row.table}`).sort(),
    tablesWithoutFullIdentity: captured
      .filter((row) => row.replident !== "f")
      .map((row) => `${row.schema}.${row.table}`)
      .sort(),
  };
}

function isOurs(
  slot: { client_addr: string | null; application_name: string | null },
  input: PreflightInput,
): boolean {
  if (input.connectorPodIp && slot.client_addr === input.connectorPodIp) return true;
  return slot.application_name !== null && input.connectorApplicationNames.includes(slot.application_name);
}

export interface ReleaseOutcome {
  slotDropped: boolean;
  publicationDropped: boolean;
  /** The walsender that still held the slot and was terminated. */
  terminatedPid?: number;
}

/**
 * Drops the slot and the publication. A slot still held by a walsender (the connector's pod has
 * gone, its connection has not timed out yet) is freed with pg_terminate_backend first, but only
 * when `terminate` says the connector pod is gone: otherwise the caller waits for it.
 */
export async function releaseSourceState(
  connection: SourceConnection,
  slotName: string,
  publicationName: string,
  terminate: boolean,
): Promise<ReleaseOutcome> {
  const client = await connectSource(connection);
  try {
    const outcome: ReleaseOutcome = { slotDropped: false, publicationDropped: false };
    const slot = (
      await client.query<{ active_pid: number | null }>(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
        [slotName],
      )
    ).rows[0];
    if (slot) {
      if (slot.active_pid !== null) {
        if (!terminate) throw new SlotStillActive(slotName, slot.active_pid);
        await client.query("SELECT pg_terminate_backend($1)", [slot.active_pid]);
        outcome.terminatedPid = slot.active_pid;
        // The walsender lets go of the slot as it exits.
        for (let attempt = 0; attempt < 50; attempt++) {
          const still = await client.query(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
            [slotName],
          );
          if (still.rowCount === 0) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      await client.query("SELECT pg_drop_replication_slot($1)", [slotName]);
      outcome.slotDropped = true;
    }
    const publication = await client.query("SELECT 1 FROM pg_publication WHERE pubname = $1", [
      publicationName,
    ]);
    if ((publication.rowCount ?? 0) > 0) {
      await client.query(`DROP PUBLICATION IF EXISTS ${quoteIdentifier(publicationName)}`);
      outcome.publicationDropped = true;
    }
    return outcome;
  } finally {
    await client.end().catch(() => {});
  }
}

export class SlotStillActive extends Error {
  override name = "SlotStillActive";
  constructor(
    readonly slotName: string,
    readonly pid: number,
  ) {
    super(`replication slot ${slotName} is still read by pid ${pid}`);
  }
}

export const quoteIdentifier = (name: string) => `"${name.replaceAll('"', '""')}"`;
