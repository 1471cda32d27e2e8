/**
 * `tributary cdc-snapshot` against the real PostgreSQL of the test environment: a table of many
 * rows (several row groups and files) dumped to a volume directory (the real role, as a process)
 * and to a real BlockPool (name node and data nodes as processes), read back with hyparquet and
 * compared with `SELECT *`; rows committed while the dump runs appear in no file (one consistent
 * point); the manifest is written last.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parquetMetadata, parquetReadObjects } from "hyparquet";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type SnapshotManifest,
  snapshotTypeParsers,
  takeSnapshot,
} from "../../src/dataplane/cdc/snapshotFiles.js";
import { LocalDirectoryTarget, type SinkTarget } from "../../src/dataplane/sink/target.js";
import { WebHdfsTarget } from "../../src/dataplane/sink/webhdfsTarget.js";
import { testEnv, uniqueName } from "../support/env.js";
import { readAvro } from "../support/sink-files.js";
import { StorageCluster } from "./storage-cluster.js";

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, "../..");
const database = uniqueName("cdcsnap").replaceAll("-", "_");
const rowCount = 12_000;
const admin = new pg.Client({ connectionString: testEnv().postgresUrl });
const url = new URL(testEnv().postgresUrl);
url.pathname = `/${database}`;
let db: pg.Client;
let dir: string;
let cluster: StorageCluster | undefined;

/** The table as `SELECT *` gives it, in the form the Parquet files hold each value. */
async function expectedRows(): Promise<Record<string, unknown>[]> {
  const reader = new pg.Client({ connectionString: url.toString(), types: snapshotTypeParsers(pg.types) });
  await reader.connect();
  try {
    const { rows } = await reader.query("SELECT * FROM public.orders ORDER BY id");
    return rows.map(normalise);
  } finally {
    await reader.end();
  }
}

/** Values as comparable plain data: BigInt and text int8 as strings, bytes as hex, times as ms. */
function normalise(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) {
    if (typeof value === "bigint") out[key] = value.toString();
    else if (value instanceof Date) out[key] = value.getTime();
    else if (value instanceof Uint8Array) out[key] = Buffer.from(value).toString("hex");
    else out[key] = value ?? null;
  }
  return out;
}

async function parquetRows(bytes: Uint8Array): Promise<Record<string, unknown>[]> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  return ((await parquetReadObjects({ file, utf8: false })) as Record<string, unknown>[]).map(normalise);
}

beforeAll(async () => {
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  await db.query(`CREATE TABLE public.orders (
    id bigint PRIMARY KEY, customer text NOT NULL, total numeric(12, 2), weight double precision,
    placed_at timestamptz, paid boolean, note text, items int, blob bytea, attrs jsonb)`);
  await db.query(
    `INSERT INTO public.orders
     SELECT g, 'customer-' || (g % 97), (g * 1.25)::numeric(12, 2), g / 3.0,
            timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute', g % 2 = 0,
            CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('x', g % 40) END, g % 1000,
            decode(lpad(to_hex(g), 8, '0'), 'hex'), jsonb_build_object('g', g)
       FROM generate_series(1, ${rowCount}) g`,
  );
  await db.query("CREATE TABLE public.empty (id int PRIMARY KEY)");
  dir = await mkdtemp(join(tmpdir(), "cdc-snapshot-"));
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  await db?.end();
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.end();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

/** A target that records the order in which files become visible. */
function recording(target: SinkTarget, renames: string[]): SinkTarget {
  return {
    location: target.location,
    create: (path) => target.create(path),
    rename: async (from, to) => {
      await target.rename(from, to);
      renames.push(to);
    },
    list: () => target.list(),
    remove: (path) => target.remove(path),
  };
}

describe("tributary cdc-snapshot", () => {
  it("dumps a table of many row groups to a volume, equal to SELECT *, manifest last (the real role)", async () => {
    const expected = await expectedRows();
    const out = join(dir, "volume");
    const termination = join(dir, "termination-log");
    const { stderr } = await run(
      process.execPath,
      ["--import", "tsx", "src/cli.ts", "cdc-snapshot", "--row-group-rows", "2500", "--fetch-size", "1000"],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          TRIBUTARY_CDC_SNAPSHOT_NAME: "tests/orders",
          TRIBUTARY_CDC_SNAPSHOT_PG_HOST: url.hostname,
          TRIBUTARY_CDC_SNAPSHOT_PG_PORT: url.port,
          TRIBUTARY_CDC_SNAPSHOT_PG_DATABASE: database,
          TRIBUTARY_CDC_SNAPSHOT_PG_USER: decodeURIComponent(url.username),
          TRIBUTARY_CDC_SNAPSHOT_PG_PASSWORD: decodeURIComponent(url.password),
          TRIBUTARY_CDC_SNAPSHOT_PG_SSL_MODE: "disable",
          TRIBUTARY_CDC_SNAPSHOT_TABLES_INCLUDE: "public.*",
          TRIBUTARY_CDC_SNAPSHOT_TARGET_DIR: out,
          TRIBUTARY_CDC_SNAPSHOT_SNAPSHOT_TIME: "2026-12-06T02:00:00Z",
          TRIBUTARY_CDC_SNAPSHOT_TERMINATION_LOG: termination,
        },
      },
    );
    const summary = JSON.parse(await readFile(termination, "utf8"));
    expect(summary, stderr).toMatchObject({ rows: rowCount, tables: 2 });
    expect(summary.manifest).toBe(`file://${out}/_snapshots/snapshot=20261206T020000Z/_manifest.json`);

    const tableDir = join(out, "public.orders", "snapshot=20261206T020000Z");
    const files = (await readdir(tableDir)).sort();
    expect(files).toEqual(["part-00000.parquet"]);
    const bytes = await readFile(join(tableDir, files[0]!));
    // Streamed in row groups of 2,500 rows: five of them, each flushed as it filled.
    const metadata = parquetMetadata(
      bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    );
    expect(metadata.row_groups.map((group) => Number(group.num_rows))).toEqual([
      2500, 2500, 2500, 2500, 2000,
    ]);
    const rows = await parquetRows(bytes);
    expect(rows).toHaveLength(rowCount);
    expect(rows).toEqual(expected);

    const manifest = JSON.parse(
      await readFile(join(out, "_snapshots/snapshot=20261206T020000Z/_manifest.json"), "utf8"),
    ) as SnapshotManifest;
    expect(manifest.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(manifest.totalRows).toBe(rowCount);
    const orders = manifest.tables.find((table) => table.table === "public.orders")!;
    expect(orders.rows).toBe(rowCount);
    expect(orders.files).toEqual(["public.orders/snapshot=20261206T020000Z/part-00000.parquet"]);
    expect(orders.columns.map((column) => [column.name, column.type, column.nullable])).toEqual([
      ["id", "bigint", false],
      ["customer", "text", false],
      ["total", "numeric(12,2)", true],
      ["weight", "double precision", true],
      ["placed_at", "timestamp with time zone", true],
      ["paid", "boolean", true],
      ["note", "text", true],
      ["items", "integer", true],
      ["blob", "bytea", true],
      ["attrs", "jsonb", true],
    ]);
    expect(manifest.tables.find((table) => table.table === "public.empty")?.rows).toBe(0);
    // Nothing temporary left behind.
    expect((await readdir(tableDir)).some((name) => name.endsWith(".tmp"))).toBe(false);
  }, 120_000);

  it("streams a table larger than the process's whole heap (the real role under --max-old-space-size)", async () => {
    // 100,000 rows of 2 KiB each: about 200 MiB of text, read by a role allowed 96 MiB of heap.
    await db.query("CREATE TABLE public.wide (id bigint PRIMARY KEY, body text NOT NULL)");
    await db.query(
      "INSERT INTO public.wide SELECT g, repeat(md5(g::text), 64) FROM generate_series(1, 100000) g",
    );
    try {
      const out = join(dir, "wide");
      const termination = join(dir, "termination-wide");
      await run(
        process.execPath,
        [
          "--max-old-space-size=96",
          "--import",
          "tsx",
          "src/cli.ts",
          "cdc-snapshot",
          "--row-group-rows",
          "5000",
          "--fetch-size",
          "1000",
          "--max-file-bytes",
          String(32 * 1024 * 1024),
        ],
        {
          cwd: ROOT,
          env: {
            ...process.env,
            TRIBUTARY_CDC_SNAPSHOT_PG_HOST: url.hostname,
            TRIBUTARY_CDC_SNAPSHOT_PG_PORT: url.port,
            TRIBUTARY_CDC_SNAPSHOT_PG_DATABASE: database,
            TRIBUTARY_CDC_SNAPSHOT_PG_USER: decodeURIComponent(url.username),
            TRIBUTARY_CDC_SNAPSHOT_PG_PASSWORD: decodeURIComponent(url.password),
            TRIBUTARY_CDC_SNAPSHOT_PG_SSL_MODE: "disable",
            TRIBUTARY_CDC_SNAPSHOT_TABLES_INCLUDE: "public.wide",
            TRIBUTARY_CDC_SNAPSHOT_TARGET_DIR: out,
            TRIBUTARY_CDC_SNAPSHOT_SNAPSHOT_TIME: "2026-12-06T06:00:00Z",
            TRIBUTARY_CDC_SNAPSHOT_TERMINATION_LOG: termination,
          },
          maxBuffer: 16 * 1024 * 1024,
        },
      );
      const manifest = JSON.parse(
        await readFile(join(out, "_snapshots/snapshot=20261206T060000Z/_manifest.json"), "utf8"),
      ) as SnapshotManifest;
      expect(manifest.totalRows).toBe(100_000);
      let rows = 0;
      let last = 0;
      for (const file of manifest.tables[0]!.files) {
        const bytes = await readFile(join(out, file));
        const metadata = parquetMetadata(
          bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
        );
        rows += Number(metadata.num_rows);
        for (const group of metadata.row_groups) expect(Number(group.num_rows)).toBeLessThanOrEqual(5000);
        last = Math.max(last, metadata.row_groups.length);
      }
      expect(rows).toBe(100_000);
      expect(last).toBeGreaterThan(1);
    } finally {
      await db.query("DROP TABLE public.wide");
    }
  }, 240_000);

  it("keeps to one consistent point: rows committed during the dump are in no file", async () => {
    const expected = await expectedRows();
    const renames: string[] = [];
    const target = recording(new LocalDirectoryTarget(join(dir, "consistent")), renames);
    const reader = new pg.Client({ connectionString: url.toString(), types: snapshotTypeParsers(pg.types) });
    await reader.connect();
    let wrote = false;
    try {
      const manifest = await takeSnapshot({
        client: reader,
        target,
        format: "parquet",
        include: ["public.orders"],
        exclude: [],
        fetchSize: 500,
        rowGroupRows: 2_000,
        maxFileBytes: 64 * 1024,
        time: new Date("2026-12-06T03:00:00Z"),
        onProgress: async () => {
          if (wrote) return;
          wrote = true;
          // Committed by another session after the dump's transaction began: a new row, an
          // update and a delete of rows not read yet. None may appear.
          await db.query("INSERT INTO public.orders (id, customer) VALUES ($1, 'late')", [rowCount + 1]);
          await db.query("UPDATE public.orders SET customer = 'changed' WHERE id = $1", [rowCount]);
          await db.query("DELETE FROM public.orders WHERE id = $1", [rowCount - 1]);
        },
      });
      expect(wrote).toBe(true);
      const files = manifest.tables[0]!.files;
      // Rolled by size: several files, each of whole row groups.
      expect(files.length).toBeGreaterThan(1);
      const rows: Record<string, unknown>[] = [];
      for (const file of files)
        rows.push(...(await parquetRows(await readFile(join(dir, "consistent", file)))));
      expect(rows.sort((a, b) => Number(a.id) - Number(b.id))).toEqual(expected);
      expect(manifest.totalRows).toBe(rowCount);
      // The manifest became visible last, after every data file.
      expect(renames.at(-1)).toBe("_snapshots/snapshot=20261206T030000Z/_manifest.json");
      expect(renames.slice(0, -1)).toEqual(files);
    } finally {
      await reader.end();
      await db.query("DELETE FROM public.orders WHERE id = $1", [rowCount + 1]);
    }
  }, 120_000);

  it("writes Avro container files with the same rows when the format is avro", async () => {
    const expected = await expectedRows();
    const reader = new pg.Client({ connectionString: url.toString(), types: snapshotTypeParsers(pg.types) });
    await reader.connect();
    let manifest: SnapshotManifest;
    try {
      manifest = await takeSnapshot({
        client: reader,
        target: new LocalDirectoryTarget(join(dir, "avro")),
        format: "avro",
        include: ["public.orders"],
        exclude: [],
        fetchSize: 1_000,
        rowGroupRows: 2_000,
        maxFileBytes: 256 * 1024,
        time: new Date("2026-12-06T05:00:00Z"),
      });
    } finally {
      await reader.end();
    }
    const rows: Record<string, unknown>[] = [];
    for (const file of manifest.tables[0]!.files) {
      expect(file).toMatch(/\.avro$/);
      rows.push(...(await readAvro(join(dir, "avro", file))).rows.map(normalise));
    }
    // Avro's long is a JavaScript number in avsc: int8 comes back as a number, not text.
    const sorted = rows
      .map((row) => ({ ...row, id: String(row.id) }))
      .sort((a, b) => Number(a.id) - Number(b.id));
    expect(sorted).toEqual(expected);
  }, 120_000);

  it("dumps into a real BlockPool through WebHDFS, files rolled so memory holds one at a time", async () => {
    const expected = await expectedRows();
    cluster = await StorageCluster.start({ dataNodes: 3 });
    const client = cluster.client();
    const target = new WebHdfsTarget(client, "/lake/orders-db");
    const reader = new pg.Client({ connectionString: url.toString(), types: snapshotTypeParsers(pg.types) });
    await reader.connect();
    let manifest: SnapshotManifest;
    try {
      manifest = await takeSnapshot({
        client: reader,
        target,
        format: "parquet",
        include: ["public.orders"],
        exclude: [],
        fetchSize: 1_000,
        rowGroupRows: 2_000,
        maxFileBytes: 96 * 1024,
        time: new Date("2026-12-06T04:00:00Z"),
      });
    } finally {
      await reader.end();
    }
    const orders = manifest.tables[0]!;
    expect(orders.files.length).toBeGreaterThan(1);
    const rows: Record<string, unknown>[] = [];
    for (const file of orders.files)
      rows.push(...(await parquetRows(await client.open(`/lake/orders-db/${file}`))));
    expect(rows.sort((a, b) => Number(a.id) - Number(b.id))).toEqual(expected);
    const stored = JSON.parse(
      Buffer.from(
        await client.open("/lake/orders-db/_snapshots/snapshot=20261206T040000Z/_manifest.json"),
      ).toString(),
    ) as SnapshotManifest;
    expect(stored.totalRows).toBe(expected.length);
    expect(stored.tables[0]!.files).toEqual(orders.files);
    expect((await target.list()).some((path) => path.endsWith(".tmp"))).toBe(false);
  }, 180_000);
});
