/**
 * `tributary cdc-snapshot` on a real PostgreSQL table (the test environment's): rows/s of a whole
 * snapshot into Parquet and into Avro files (read in one REPEATABLE READ transaction through a
 * cursor, written through the sink's writers and local target, manifest last), beside the
 * reference of the same run: the same cursor reading the same rows and writing nothing, which is
 * what the database and the driver alone allow. The resident memory the process gains during each
 * snapshot shows that it streams. One measured round per case after a warm-up.
 *
 *   npx tsx -e 'import("./bench/cdc-snapshot.bench.ts").then(m => m.run())'
 *   CDC_SNAPSHOT_BENCH_ROWS=50000 npx tsx -e 'import("./bench/cdc-snapshot.bench.ts").then(m => m.run())'
 */
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { snapshotTypeParsers, takeSnapshot } from "../src/dataplane/cdc/snapshotFiles.js";
import { LocalDirectoryTarget } from "../src/dataplane/sink/target.js";
import { testEnv, uniqueName } from "../test/support/env.js";

const ROWS = Number(process.env.CDC_SNAPSHOT_BENCH_ROWS ?? 300_000);
const FETCH = 10_240;

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/** Samples the resident set while `work` runs; returns its peak growth in MiB. */
async function peakRssGrowth<T>(work: () => Promise<T>): Promise<{ result: T; mib: number }> {
  const start = process.memoryUsage().rss;
  let peak = start;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, mib: (peak - start) / 2 ** 20 };
  } finally {
    clearInterval(timer);
  }
}

export async function run(): Promise<void> {
  const database = uniqueName("cdcsnapbench").replaceAll("-", "_");
  const admin = new pg.Client({ connectionString: testEnv().postgresUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(testEnv().postgresUrl);
  url.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: url.toString(), types: snapshotTypeParsers(pg.types) });
  await client.connect();
  const dir = await mkdtemp(join(tmpdir(), "cdc-snapshot-bench-"));
  try {
    await client.query(`CREATE TABLE public.orders (
      id bigint PRIMARY KEY, customer text NOT NULL, total numeric(12, 2), weight double precision,
      placed_at timestamptz, paid boolean, note text, items int, attrs jsonb)`);
    await client.query(
      `INSERT INTO public.orders
       SELECT g, 'customer-' || (g % 9973), (g * 1.25)::numeric(12, 2), g / 3.0,
              timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second', g % 2 = 0,
              CASE WHEN g % 5 = 0 THEN NULL ELSE md5(g::text) END, g % 1000, jsonb_build_object('g', g)
         FROM generate_series(1, ${ROWS}) g`,
    );
    await client.query("VACUUM ANALYZE public.orders");

    const fetchOnly = async () => {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      await client.query("DECLARE c NO SCROLL CURSOR FOR SELECT * FROM public.orders");
      let rows = 0;
      for (;;) {
        const batch = await client.query(`FETCH ${FETCH} FROM c`);
        if (batch.rows.length === 0) break;
        rows += batch.rows.length;
      }
      await client.query("COMMIT");
      return rows;
    };
    let round = 0;
    const snapshot = (format: "parquet" | "avro") => async () => {
      const out = join(dir, `${format}-${round++}`);
      const manifest = await takeSnapshot({
        client,
        target: new LocalDirectoryTarget(out),
        format,
        include: ["public.orders"],
        exclude: [],
        fetchSize: FETCH,
        rowGroupRows: 50_000,
        maxFileBytes: 64 * 1024 * 1024,
        time: new Date(),
      });
      return { rows: manifest.totalRows, bytes: await directoryBytes(out) };
    };

    // Warm-up: the table's pages in the buffer cache, the writers' code compiled.
    await fetchOnly();
    await snapshot("parquet")();

    const figures: { case: string; seconds: number; rows: number; bytes?: number; mib: number }[] = [];
    for (const [name, work] of [
      ["cursor fetch only (reference)", async () => ({ rows: await fetchOnly(), bytes: undefined })],
      ["snapshot → Parquet (snappy)", snapshot("parquet")],
      ["snapshot → Avro (deflate)", snapshot("avro")],
    ] as const) {
      const started = process.hrtime.bigint();
      const { result, mib } = await peakRssGrowth(work as () => Promise<{ rows: number; bytes?: number }>);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      figures.push({
        case: name,
        seconds,
        rows: result.rows,
        ...(result.bytes ? { bytes: result.bytes } : {}),
        mib,
      });
    }
    const reference = figures[0]!.rows / figures[0]!.seconds;
    console.table(
      figures.map((figure) => ({
        case: figure.case,
        rows: figure.rows,
        "rows/s": Math.round(figure.rows / figure.seconds),
        "× fetch": Number((figure.rows / figure.seconds / reference).toFixed(2)),
        MB: figure.bytes === undefined ? "" : (figure.bytes / 1e6).toFixed(1),
        "peak RSS growth MiB": Math.round(figure.mib),
      })),
    );
  } finally {
    await client.end();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
    await rm(dir, { recursive: true, force: true });
  }
}
