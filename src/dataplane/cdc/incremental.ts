/**
 * Ad hoc snapshots of chosen tables while the stream goes on, without locks: Debezium's
 * incremental snapshot (after Netflix's DBLog). A table is read in primary-key chunks; each chunk
 * is framed by a low and a high watermark written into the WAL with pg_logical_emit_message:
 *
 *   emit low  →  SELECT the chunk (it sees every transaction committed before it)  →  emit high
 *
 * The stream meets the low watermark, then the changes committed while the chunk was read, then
 * the high watermark. A chunk row whose key changed inside that window is dropped (the stream
 * already carries a newer image of it); the others are emitted as `op: "r"` at the high
 * watermark, in stream order. So a row is never emitted older than the stream's last word on it.
 *
 * One race is PostgreSQL's own: a transaction's commit record is written to the WAL before the
 * transaction becomes visible to new snapshots. A transaction that committed just before the low
 * watermark, in WAL order, can still be invisible to the chunk's SELECT; the stream then carries
 * its change before the window opens, and the chunk's older row would be emitted after it. So
 * the chunk is read in a REPEATABLE READ transaction that also returns its snapshot
 * (pg_current_snapshot), and the stream remembers the xids it saw commit: if a transaction the
 * snapshot could not see had already committed before the low watermark, the chunk is thrown
 * away and read again between new watermarks.
 *
 * Requests come over `POST /snapshots` and are kept, with the last key read, in the state file,
 * so a restarted connector continues a request from its last finished chunk.
 */
import type pg from "pg";
import type { Connector, Session } from "./connector.js";
import type { Row, TableCodec } from "./events.js";
import type { Lsn } from "./lsn.js";
import { primaryKeyOf, qualified, quoteIdent } from "./source.js";
import type { ConnectorState, SnapshotRequest } from "./state.js";

export const WATERMARK_PREFIX = "tributary-watermark";

interface Window {
  id: string;
  codec: TableCodec;
  open: boolean;
  touched: Set<string>;
  rows: Row[] | undefined;
  /** The chunk snapshot's in-progress xids (32-bit, as pgoutput carries them). */
  invisible: number[];
  /** The stream's commit count when it met the low watermark. */
  openedAt: number;
  /** Set when a transaction invisible to the chunk committed before the window opened. */
  raced: boolean;
  done: () => void;
  closed: Promise<void>;
}

/** How many recent commits the stream remembers for that check; a racing commit is moments old. */
const REMEMBERED_COMMITS = 65_536;

/** The in-progress xids of a pg_current_snapshot() text (`xmin:xmax:xip,...`), cut to 32 bits. */
export function snapshotInProgress(snapshot: string): number[] {
  const xip = snapshot.split(":")[2] ?? "";
  return xip === "" ? [] : xip.split(",").map((xid) => Number(BigInt(xid) & 0xffffffffn));
}

/**
 * Whether any of a chunk snapshot's invisible transactions had committed by the time the stream
 * met the low watermark (`commits`: xid → the stream's commit count at its commit).
 */
export function committedBefore(
  invisible: readonly number[],
  commits: ReadonlyMap<number, number>,
  openedAt: number,
): boolean {
  return invisible.some((xid) => (commits.get(xid) ?? Number.POSITIVE_INFINITY) <= openedAt);
}

export class IncrementalSnapshots {
  private window: Window | undefined;
  private wake: (() => void) | undefined;
  /** xid → the stream's commit count when it committed, the last REMEMBERED_COMMITS of them. */
  private readonly commits = new Map<number, number>();
  private commitCount = 0;

  constructor(
    private readonly connector: Connector,
    private readonly state: ConnectorState,
    private readonly save: () => Promise<void>,
  ) {}

  request(id: string, tables: string[]): { created: boolean; request: SnapshotRequest } {
    const existing = this.state.requests.find((r) => r.id === id);
    if (existing) {
      if (existing.tables.join(",") !== tables.join(",")) {
        throw new Error(
          `snapshot request '${id}' exists for tables ${existing.tables.join(", ")}; use another id`,
        );
      }
      return { created: false, request: existing };
    }
    const request: SnapshotRequest = {
      id,
      tables,
      state: "Pending",
      rows: 0,
      tableIndex: 0,
      requestedAt: new Date().toISOString(),
    };
    this.state.requests.push(request);
    // Keep the last 100 requests; older finished ones drop off.
    while (this.state.requests.length > 100) {
      const index = this.state.requests.findIndex((r) => r.state === "Completed" || r.state === "Failed");
      if (index < 0) break;
      this.state.requests.splice(index, 1);
    }
    void this.save();
    this.wake?.();
    return { created: true, request };
  }

  list(): unknown[] {
    return this.state.requests.map(({ id, tables, state, rows, message, requestedAt, completedAt }) => ({
      id,
      tables,
      state,
      rows,
      message: message ?? null,
      requestedAt,
      completedAt: completedAt ?? null,
    }));
  }

  /** Runs pending requests while the session streams. */
  async work(session: Session): Promise<void> {
    while (!session.isClosed) {
      const request = this.state.requests.find((r) => r.state === "Pending" || r.state === "Running");
      if (!request) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, 1_000).unref();
        });
        continue;
      }
      await this.runRequest(session, request);
    }
  }

  private async runRequest(session: Session, request: SnapshotRequest): Promise<void> {
    const log = this.connector.log;
    if (request.state === "Pending") {
      request.state = "Running";
      await this.save();
      log.info({ id: request.id, tables: request.tables }, "incremental snapshot started");
    }
    while (request.tableIndex < request.tables.length && !session.isClosed) {
      const tableName = request.tables[request.tableIndex]!;
      const codec = this.connector.codecById(tableName);
      const failWith = async (message: string) => {
        request.state = "Failed";
        request.message = message;
        request.completedAt = new Date().toISOString();
        await this.save();
        log.warn({ id: request.id }, message);
      };
      if (!codec) {
        return failWith(`table ${tableName} is not captured by this stream (not in its publication)`);
      }
      const primaryKey = await primaryKeyOf(session.sourceClient, codec.schema, codec.table);
      if (primaryKey.length === 0) {
        return failWith(
          `table ${tableName} has no primary key: an incremental snapshot reads it in primary-key chunks`,
        );
      }
      const done = await this.chunk(session, request, codec, primaryKey);
      if (done) {
        request.tableIndex++;
        request.lastKey = undefined;
      }
      await this.save();
    }
    if (session.isClosed) return;
    request.state = "Completed";
    request.completedAt = new Date().toISOString();
    await this.save();
    log.info({ id: request.id, rows: request.rows }, "incremental snapshot completed");
  }

  /** Reads one chunk between watermarks; true when it was the table's last. */
  private async chunk(
    session: Session,
    request: SnapshotRequest,
    codec: TableCodec,
    primaryKey: string[],
  ): Promise<boolean> {
    const size = this.connector.config.incrementalChunkSize;
    await session.producer.room(Math.max(20_000, this.connector.config.maxBatchSize * 8));
    const client = session.sourceClient;
    const id = `${request.id}/${request.tableIndex}/${JSON.stringify(request.lastKey ?? null)}`;
    let done!: () => void;
    const closed = new Promise<void>((resolve) => {
      done = resolve;
    });
    const window: Window = {
      id,
      codec,
      open: false,
      touched: new Set(),
      rows: undefined,
      invisible: [],
      openedAt: 0,
      raced: false,
      done,
      closed,
    };
    this.window = window;
    try {
      await client.query("SELECT pg_logical_emit_message(true, $1, $2)", [
        WATERMARK_PREFIX,
        JSON.stringify({ low: id }),
      ]);
      const keys = primaryKey.map(quoteIdent).join(", ");
      const after = request.lastKey
        ? ` WHERE (${keys}) > (${primaryKey.map((_, i) => `$${i + 1}`).join(", ")})`
        : "";
      let result: pg.QueryResult;
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      try {
        const snapshot = await client.query<{ snapshot: string }>(
          "SELECT pg_current_snapshot()::text AS snapshot",
        );
        window.invisible = snapshotInProgress(snapshot.rows[0]!.snapshot);
        result = await client.query({
          text: `SELECT * FROM ${qualified(codec.schema, codec.table)}${after} ORDER BY ${keys} LIMIT ${size}`,
          values: (request.lastKey ?? []) as string[],
          rowMode: "array",
        });
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw error;
      }
      const fields = result.fields.map((f) => ({ name: f.name, typeOid: f.dataTypeID }));
      const rows = (result.rows as (string | null)[][]).map((values) => codec.fieldsRow(fields, values));
      window.rows = rows;
      const last = result.rows[result.rows.length - 1] as (string | null)[] | undefined;
      await client.query("SELECT pg_logical_emit_message(true, $1, $2)", [
        WATERMARK_PREFIX,
        JSON.stringify({ high: id }),
      ]);
      // The stream emits the chunk when it reaches the high watermark.
      await Promise.race([closed, session.finished]);
      if (session.isClosed) return false;
      if (window.raced) {
        this.connector.log.debug({ id }, "a commit raced the chunk's snapshot; reading the chunk again");
        return false;
      }
      if (last) {
        request.lastKey = primaryKey.map((name) => last[fields.findIndex((f) => f.name === name)] ?? null);
      }
      request.rows += rows.length;
      this.connector.metrics.snapshotRows.inc({ kind: "incremental" }, rows.length);
      return rows.length < size;
    } finally {
      if (this.window === window) this.window = undefined;
    }
  }

  /** A change read from the stream: inside an open window, its key's chunk row is stale. */
  onChange(codec: TableCodec, key: Row | null): void {
    const window = this.window;
    if (!window?.open || window.codec !== codec || key === null) return;
    window.touched.add(JSON.stringify(key));
  }

  /** A transaction the stream saw commit. */
  onCommit(xid: number): void {
    this.commits.set(xid, ++this.commitCount);
    if (this.commits.size > REMEMBERED_COMMITS) this.commits.delete(this.commits.keys().next().value!);
  }

  onWatermark(session: Session, content: string, walStart: Lsn): void {
    const window = this.window;
    let mark: { low?: string; high?: string };
    try {
      mark = JSON.parse(content) as { low?: string; high?: string };
    } catch {
      return;
    }
    if (!window) return;
    if (mark.low === window.id) {
      window.open = true;
      window.openedAt = this.commitCount;
    } else if (mark.high === window.id && window.open && window.rows) {
      window.raced = committedBefore(window.invisible, this.commits, window.openedAt);
      for (const row of window.raced ? [] : window.rows) {
        const key = window.codec.key(row);
        if (key !== null && window.touched.has(JSON.stringify(key))) continue;
        session.pushRead(window.codec, row, walStart);
      }
      window.open = false;
      window.done();
    }
  }
}
