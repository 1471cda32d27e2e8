import { describe, expect, it } from "vitest";
import {
  type ChangeEvent,
  cdcTestResources,
  connectorEnv,
  fold,
  type RunningConnector,
  readChanges,
  startConnector,
  type TestDatabase,
  waitUntil,
} from "../support/cdc.js";

const { database, connector } = cdcTestResources();

const topicOf = (db: TestDatabase, table: string) => `${db.name.replace(/_/g, "-")}.public.${table}`;

/** Waits until the slot confirmed everything written so far: then Kafka holds every change. */
async function caughtUp(db: TestDatabase, running: RunningConnector): Promise<void> {
  const target = (await db.query("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0].lsn as string;
  await waitUntil(`slot confirmed ${target}`, async () => {
    const status = await running.status();
    const result = await db.query(
      "SELECT confirmed_flush_lsn >= $1::pg_lsn AS done FROM pg_replication_slots WHERE slot_name = $2",
      [target, status.slotName],
    );
    return result.rows[0]?.done === true;
  });
}

async function streaming(running: RunningConnector): Promise<void> {
  await waitUntil("connector streaming", async () => (await running.status()).state === "streaming");
}

describe("cdc connector", () => {
  it("maps every type into Debezium's envelope for insert, update, delete and truncate", async () => {
    const db = await database("cdc_types");
    await db.query("CREATE TYPE mood AS ENUM ('happy', 'sad')");
    await db.query(`CREATE TABLE types (
      id bigint PRIMARY KEY, b boolean, i2 smallint, i4 integer, i8 bigint, r real, d double precision,
      n numeric(20,6), tz timestamptz, ts timestamp, dt date, tm time, j json, jb jsonb,
      arr int[], tarr text[], u uuid, by bytea, e mood, t text, nothing text)`);
    const running = await connector(db, { SNAPSHOT_MODE: "never", TRANSACTION_TOPIC: "true" });
    await streaming(running);

    await db.query(`INSERT INTO types VALUES (1, true, 1, 2, 9007199254740991, 1.5, 2.25,
      '12345678901234.123456', '2024-05-01 12:00:00.123456+02', '2024-05-01 10:00:00.5', '2024-05-01',
      '10:00:00.25', '{"a":  1}', '{"a":  1}', '{1,2,NULL}', '{"a b",c}',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x0102ff', 'happy', 'x', NULL)`);
    await db.query("UPDATE types SET t = 'y', e = 'sad' WHERE id = 1");
    await db.query("DELETE FROM types WHERE id = 1");
    await db.query("INSERT INTO types (id, t) VALUES (2, 'z')");
    await db.query("TRUNCATE types");
    await caughtUp(db, running);

    const events = await readChanges(topicOf(db, "types"));
    const ops = events.map((e) => e.value?.op ?? "tombstone");
    expect(ops).toEqual(["c", "u", "d", "tombstone", "c", "t"]);
    const [created, updated, deleted, tombstone, , truncated] = events as ChangeEvent[];
    expect(created!.key).toEqual({ id: 1 });
    expect(created!.value!.before).toBeNull();
    expect(created!.value!.after).toEqual({
      id: 1,
      b: true,
      i2: 1,
      i4: 2,
      i8: 9007199254740991,
      r: 1.5,
      d: 2.25,
      n: "12345678901234.123456",
      tz: "2024-05-01T10:00:00.123456Z",
      ts: Date.UTC(2024, 4, 1, 10) * 1000 + 500_000,
      dt: Date.UTC(2024, 4, 1) / 86_400_000,
      tm: 36_000_250_000,
      j: '{"a":  1}',
      jb: '{"a": 1}',
      arr: [1, 2, null],
      tarr: ["a b", "c"],
      u: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
      by: Buffer.from([1, 2, 255]).toString("base64"),
      e: "happy",
      t: "x",
      nothing: null,
    });
    const source = created!.value!.source;
    expect(source).toMatchObject({
      connector: "postgresql",
      name: db.name.replace(/_/g, "-"),
      db: db.name,
      schema: "public",
      table: "types",
      snapshot: "false",
    });
    expect(typeof source.txId).toBe("number");
    expect(typeof source.lsn).toBe("number");
    expect(typeof source.ts_ms).toBe("number");
    expect(created!.value!.transaction).toMatchObject({ total_order: 1, data_collection_order: 1 });

    // REPLICA IDENTITY FULL (beforeImages defaults to true): the whole old row.
    expect(updated!.value!.before).toMatchObject({ id: 1, t: "x", e: "happy", n: "12345678901234.123456" });
    expect(updated!.value!.after).toMatchObject({ id: 1, t: "y", e: "sad", arr: [1, 2, null] });
    expect(deleted!.value!.before).toMatchObject({ id: 1, t: "y" });
    expect(deleted!.value!.after).toBeNull();
    expect(tombstone!.key).toEqual({ id: 1 });
    expect(truncated!.key).toBeNull();
    expect(truncated!.value).toMatchObject({ op: "t", before: null, after: null });

    const status = await running.status();
    expect(status.tables).toEqual(["public.types"]);
    expect(status.tablesWithoutFullIdentity).toEqual([]);
    expect(status.problems).toEqual([]);

    // The transaction topic: BEGIN and END with the event count of each transaction.
    const transactions = await readChanges(`${db.name.replace(/_/g, "-")}.transaction`);
    const ends = transactions.map(
      (e) => e.value as unknown as { status: string; event_count: number | null },
    );
    expect(ends.filter((t) => t.status === "BEGIN")).toHaveLength(5);
    expect(ends.filter((t) => t.status === "END").map((t) => t.event_count)).toEqual([1, 1, 1, 1, 1]);
  });

  it("marks unchanged TOAST values and lists tables without full replica identity when before images are off", async () => {
    const db = await database("cdc_toast");
    await db.query("CREATE TABLE docs (id int PRIMARY KEY, body text, tags text[], counter int)");
    // Incompressible text larger than a page goes out of line (TOAST).
    await db.query(
      "INSERT INTO docs SELECT 1, string_agg(md5(random()::text), ''), ARRAY['a'], 0 FROM generate_series(1, 400)",
    );
    const running = await connector(db, { SNAPSHOT_MODE: "never", BEFORE_IMAGES: "false" });
    await streaming(running);
    await db.query("UPDATE docs SET counter = counter + 1 WHERE id = 1");
    await caughtUp(db, running);
    const [update] = await readChanges(topicOf(db, "docs"));
    expect(update!.value!.op).toBe("u");
    expect(update!.value!.before).toBeNull();
    expect(update!.value!.after).toMatchObject({ id: 1, counter: 1, body: "__debezium_unavailable_value" });
    expect((await running.status()).tablesWithoutFullIdentity).toEqual(["public.docs"]);
  });

  it("snapshots then streams under concurrent writes with no gap and no duplicate", async () => {
    const db = await database("cdc_fold");
    await db.query("CREATE TABLE items (id int PRIMARY KEY, v text, n int)");
    await db.query("INSERT INTO items SELECT g, 'v' || g, 0 FROM generate_series(1, 3000) g");
    let writing = true;
    let nextId = 3001;
    const writer = (async () => {
      const { default: pg } = await import("pg");
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      let round = 0;
      while (writing || round < 40) {
        round++;
        await client.query("BEGIN");
        await client.query("INSERT INTO items VALUES ($1, 'new', 0), ($2, 'new', 0)", [nextId, nextId + 1]);
        nextId += 2;
        await client.query("UPDATE items SET n = n + 1, v = 'u' || $1 WHERE id % 97 = $2", [
          round,
          round % 97,
        ]);
        await client.query("DELETE FROM items WHERE id = $1", [1 + ((round * 37) % 3000)]);
        await client.query("COMMIT");
      }
      await client.end();
    })();
    const running = await connector(db, { FETCH_SIZE: "500", PARTITIONS: "3" });
    await streaming(running);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    writing = false;
    await writer;
    await caughtUp(db, running);

    const topic = topicOf(db, "items");
    const events = await readChanges(topic);
    // Per key, events must read as one history: a create never meets a known row, an update or
    // delete always does, and every snapshot read is the first word on its key.
    const seen = new Map<string, boolean>();
    for (const event of events) {
      if (!event.value) continue;
      const { op, before, after } = event.value;
      const key = String((after ?? before)!.id);
      if (op === "r") {
        expect(seen.has(key), `snapshot read of ${key} after stream events`).toBe(false);
        seen.set(key, true);
      } else if (op === "c") {
        expect(seen.get(key), `create of existing ${key}`).not.toBe(true);
        seen.set(key, true);
      } else {
        expect(seen.get(key), `${op} of unknown ${key}`).toBe(true);
        seen.set(key, op !== "d");
      }
    }
    const folded = fold(events, (row) => String(row.id));
    const table = await db.query("SELECT id, v, n FROM items ORDER BY id");
    expect(folded.size).toBe(table.rowCount);
    for (const row of table.rows) expect(folded.get(String(row.id))).toEqual(row);
    const status = await running.status();
    expect(status.snapshot.tablesDone).toBe(1);
    expect(status.snapshot.completedAt).not.toBeNull();
    expect(events.filter((e) => e.value?.op === "r")).toHaveLength(status.snapshot.rowsRead);
    expect(new Set(events.map((e) => e.partition)).size).toBeGreaterThan(1);
  });

  it("carries a column added and a column dropped mid-stream without a restart", async () => {
    const db = await database("cdc_ddl");
    await db.query("CREATE TABLE people (id int PRIMARY KEY, name text, age int)");
    const running = await connector(db, { SNAPSHOT_MODE: "never" });
    await streaming(running);
    await db.query("INSERT INTO people VALUES (1, 'ann', 30)");
    await db.query("ALTER TABLE people ADD COLUMN email text DEFAULT 'none'");
    await db.query("INSERT INTO people VALUES (2, 'bob', 40, 'bob@example.com')");
    await db.query("ALTER TABLE people DROP COLUMN age");
    await db.query("UPDATE people SET name = 'anne' WHERE id = 1");
    await caughtUp(db, running);
    const events = (await readChanges(topicOf(db, "people"))).filter((e) => e.value);
    expect(events.map((e) => e.value!.after)).toEqual([
      { id: 1, name: "ann", age: 30 },
      { id: 2, name: "bob", age: 40, email: "bob@example.com" },
      { id: 1, name: "anne", email: "none" },
    ]);
    expect(events[2]!.value!.before).toEqual({ id: 1, name: "ann", email: "none" });
    const metrics = await (await fetch(`http://127.0.0.1:${running.port}/metrics`)).text();
    expect(metrics).not.toMatch(/tributary_cdc_errors_total\{/);
  });

  it("re-snapshots a table incrementally while writes continue, idempotent by request id", async () => {
    const db = await database("cdc_incr");
    await db.query("CREATE TABLE stock (sku int PRIMARY KEY, qty int, note text)");
    await db.query("INSERT INTO stock SELECT g, g % 10, 'n' FROM generate_series(1, 2500) g");
    const running = await connector(db, { SNAPSHOT_MODE: "never", INCREMENTAL_CHUNK_SIZE: "300" });
    await streaming(running);
    let writing = true;
    const writer = (async () => {
      const { default: pg } = await import("pg");
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      let round = 0;
      while (writing) {
        round++;
        await client.query("UPDATE stock SET qty = qty + 1, note = $1 WHERE sku % 50 = $2", [
          `r${round}`,
          round % 50,
        ]);
        await client.query("DELETE FROM stock WHERE sku = $1", [(round * 13) % 2500]);
        await client.query("INSERT INTO stock VALUES ($1, 1, 'added') ON CONFLICT DO NOTHING", [
          3000 + round,
        ]);
      }
      await client.end();
    })();
    const post = (body: unknown) =>
      fetch(`http://127.0.0.1:${running.port}/snapshots`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    expect((await post({ id: "resync-1", tables: ["public.stock"] })).status).toBe(201);
    expect((await post({ id: "resync-1", tables: ["public.stock"] })).status).toBe(200);
    const bad = await post({ id: "x", tables: ["stock"] });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/schema\.table/);
    await waitUntil("incremental snapshot completed", async () => {
      const request = (await running.status()).snapshotRequests.find((r) => r.id === "resync-1");
      return request?.state === "Completed" ? request : undefined;
    });
    writing = false;
    await writer;
    await caughtUp(db, running);
    const events = await readChanges(topicOf(db, "stock"));
    const reads = events.filter((e) => e.value?.op === "r");
    expect(reads.length).toBeGreaterThan(2000);
    expect(reads.every((e) => e.value!.source.snapshot === "incremental")).toBe(true);
    // Only the incremental reads and the stream since the connector started: the fold must still
    // give every row exactly as the table holds it, so no read was older than the stream.
    const folded = fold(events, (row) => String(row.sku));
    const table = await db.query("SELECT sku, qty, note FROM stock ORDER BY sku");
    for (const row of table.rows) expect(folded.get(String(row.sku))).toEqual(row);
    expect(folded.size).toBe(table.rowCount);

    // A table the stream does not capture fails the request with a reason.
    expect((await post({ id: "ghost", tables: ["public.ghost"] })).status).toBe(201);
    const ghost = await waitUntil("request failed", async () => {
      const request = (await running.status()).snapshotRequests.find((r) => r.id === "ghost");
      return request?.state === "Failed" ? request : undefined;
    });
    expect(ghost.message).toMatch(/not captured/);
  });

  it("snapshots and stops with initial_only, leaving no slot behind", async () => {
    const db = await database("cdc_only");
    await db.query("CREATE TABLE once (id int PRIMARY KEY, v text)");
    await db.query("INSERT INTO once SELECT g, 'v' FROM generate_series(1, 500) g");
    const running = await connector(db, { SNAPSHOT_MODE: "initial_only" });
    const status = await waitUntil("stopped after the snapshot", async () => {
      const s = await running.status();
      return s.state === "stopped" ? s : undefined;
    });
    expect(status.snapshot).toMatchObject({ tablesDone: 1, tablesTotal: 1, rowsRead: 500 });
    const slots = await db.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [
      status.slotName,
    ]);
    expect(slots.rowCount).toBe(0);
    const events = await readChanges(topicOf(db, "once"));
    expect(events.map((e) => e.value!.op)).toEqual(Array(500).fill("r"));
    expect(events[0]!.value!.source.snapshot).toBe("first");
    expect(events[499]!.value!.source.snapshot).toBe("last");
    expect((await fetch(`http://127.0.0.1:${running.port}/readyz`)).status).toBe(503);
  });

  it("re-reads the tables at every start with always, and streams on from the slot", async () => {
    const db = await database("cdc_always");
    await db.query("CREATE TABLE t (id int PRIMARY KEY, v text)");
    await db.query("INSERT INTO t VALUES (1, 'a'), (2, 'b')");
    const env = connectorEnv(db, { SNAPSHOT_MODE: "always" });
    const first = await startConnector(env);
    await streaming(first);
    await db.query("UPDATE t SET v = 'b2' WHERE id = 2");
    await caughtUp(db, first);
    await first.stop();
    // Written while no connector runs: the slot keeps it.
    await db.query("INSERT INTO t VALUES (3, 'c')");
    const second = await connector(db, { SNAPSHOT_MODE: "always" });
    await streaming(second);
    await caughtUp(db, second);
    const events = (await readChanges(topicOf(db, "t"))).filter((e) => e.value);
    const ops = events.map((e) => `${e.value!.op}${(e.value!.after ?? e.value!.before)!.id}`);
    expect(ops.slice(0, 3)).toEqual(["r1", "r2", "u2"]);
    // The second start reads all three rows, and the insert made while it was down is streamed too.
    expect(
      ops
        .slice(3)
        .filter((op) => op.startsWith("r"))
        .sort(),
    ).toEqual(["r1", "r2", "r3"]);
    expect(ops).toContain("c3");
    const folded = fold(events, (row) => String(row.id));
    expect([...folded.values()]).toEqual(
      expect.arrayContaining([
        { id: 1, v: "a" },
        { id: 2, v: "b2" },
        { id: 3, v: "c" },
      ]),
    );
  });

  it("keeps a quiet slot advancing with heartbeats", async () => {
    const db = await database("cdc_quiet");
    const busy = await database("cdc_busy");
    await db.query("CREATE TABLE idle (id int PRIMARY KEY)");
    await busy.query("CREATE TABLE churn (id serial PRIMARY KEY, pad text)");
    const running = await connector(db, { SNAPSHOT_MODE: "never" });
    await streaming(running);
    const slot = (await running.status()).slotName;
    // WAL written elsewhere in the cluster: the quiet slot must not hold it.
    await busy.query("INSERT INTO churn (pad) SELECT repeat('x', 200) FROM generate_series(1, 2000)");
    const target = (await db.query("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0].lsn as string;
    await waitUntil("quiet slot confirmed past the other database's writes", async () => {
      const result = await db.query(
        "SELECT confirmed_flush_lsn >= $1::pg_lsn AS done FROM pg_replication_slots WHERE slot_name = $2",
        [target, slot],
      );
      return result.rows[0]?.done === true;
    });
    const status = await running.status();
    expect(status.confirmedFlushLsn).not.toBeNull();
    expect(status.lagBytes).not.toBeNull();
  });
});
