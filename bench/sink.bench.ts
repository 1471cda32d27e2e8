/**
 * Sink file writers on the same clickstream rows: Parquet through hyparquet-writer (what the sink
 * uses) and through parquetjs-lite (what the design first named), Avro object container files
 * with each codec, all written through the sink's own target (write, fsync, rename, fsync dir),
 * beside JSON lines written the same way as the reference of the same run. Also the sink's whole
 * per-record path (Confluent wire format decode + Parquet write), and Avro encode beside
 * JSON.stringify. One measured round per case after a warm-up; the machine is shared, so run it
 * a few times before trusting a digit.
 *
 *   npx tsx -e 'import("./bench/sink.bench.ts").then(m => m.run())'
 *   SINK_BENCH_ROWS=50000 npx tsx -e 'import("./bench/sink.bench.ts").then(m => m.run())'
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeWith } from "../src/dataplane/avro/registry.js";
import { type ClickEvent, clickEventType } from "../src/dataplane/clickstream/schema.js";
import { avroFileWriterFactory } from "../src/dataplane/sink/avroFile.js";
import { ChunkedOutput, type RecordFileWriterFactory } from "../src/dataplane/sink/format.js";
import { parquetFileWriterFactory } from "../src/dataplane/sink/parquetFile.js";
import { LocalDirectoryTarget } from "../src/dataplane/sink/target.js";
import { clickEvents } from "../test/support/click-events.js";

const ROWS = Number(process.env.SINK_BENCH_ROWS ?? 200_000);
const WARMUP_ROWS = Math.min(20_000, ROWS);
const ROW_GROUP_ROWS = 50_000;

interface Figure {
  name: string;
  seconds: number;
  bytes: number;
}

type Case = (dir: string, rows: readonly ClickEvent[], name: string) => Promise<string>;

/** Writes rows through one of the sink's file writers and closes the file as the sink does. */
function sinkWriterCase(factory: RecordFileWriterFactory, encoded?: Buffer[]): Case {
  return async (dir, rows, name) => {
    const target = new LocalDirectoryTarget(dir);
    const file = await target.create(`.${name}.tmp`);
    const writer = factory(file, clickEventType, { topic: "bench", partition: 0, firstOffset: 0n });
    if (encoded) {
      // The sink's whole per-record path: decode the wire format, then append.
      for (let i = 0; i < rows.length; i++) {
        const message = encoded[i]!;
        await writer.append(clickEventType.fromBuffer(message.subarray(5)), message.byteLength);
      }
    } else {
      for (const row of rows) await writer.append(row, 160);
    }
    await writer.finish({});
    await file.closeDurably();
    await target.rename(`.${name}.tmp`, name);
    return join(dir, name);
  };
}

/** The reference: one JSON document per line, through the same target and the same chunking. */
const jsonLines: Case = async (dir, rows, name) => {
  const target = new LocalDirectoryTarget(dir);
  const file = await target.create(`.${name}.tmp`);
  const output = new ChunkedOutput(file);
  for (const row of rows) {
    output.push(Buffer.from(`${JSON.stringify(row)}\n`));
    if (output.congested) await output.drain();
  }
  await output.drain();
  await file.closeDurably();
  await target.rename(`.${name}.tmp`, name);
  return join(dir, name);
};

interface ParquetjsWriter {
  appendRow(row: Record<string, unknown>): Promise<void>;
  close(): Promise<void>;
}
interface Parquetjs {
  ParquetSchema: new (fields: Record<string, unknown>) => unknown;
  ParquetWriter: {
    openFile(schema: unknown, path: string, options: { rowGroupSize: number }): Promise<ParquetjsWriter>;
  };
}

/** parquetjs-lite with SNAPPY, the same columns (request as a nested group) and row groups. */
const parquetjsLite: Case = async (dir, rows, name) => {
  const parquet = createRequire(import.meta.url)("parquetjs-lite") as Parquetjs;
  const text = (optional = false) => ({
    type: "UTF8",
    compression: "SNAPPY",
    ...(optional ? { optional } : {}),
  });
  const schema = new parquet.ParquetSchema({
    eventId: text(),
    eventType: text(),
    eventTime: { type: "TIMESTAMP_MILLIS", compression: "SNAPPY" },
    receivedAt: { type: "TIMESTAMP_MILLIS", compression: "SNAPPY" },
    sessionId: text(),
    userId: text(true),
    userAgent: text(),
    clientIp: text(),
    referrer: text(true),
    request: {
      fields: { method: text(), url: text(), path: text(), query: text(), videoId: text(true) },
    },
    collectorId: text(),
  });
  const path = join(dir, name);
  const writer = await parquet.ParquetWriter.openFile(schema, path, { rowGroupSize: ROW_GROUP_ROWS });
  for (const row of rows) {
    // parquetjs-lite leaves an optional field out rather than taking null.
    const { userId, referrer, request, ...rest } = row;
    const { videoId, ...requestRest } = request;
    await writer.appendRow({
      ...rest,
      ...(userId === null ? {} : { userId }),
      ...(referrer === null ? {} : { referrer }),
      request: { ...requestRest, ...(videoId === null ? {} : { videoId }) },
    });
  }
  await writer.close();
  return path;
};

async function measure(dir: string, name: string, run: Case, rows: readonly ClickEvent[]): Promise<Figure> {
  await run(dir, rows.slice(0, WARMUP_ROWS), `warmup-${name}`);
  const start = process.hrtime.bigint();
  const path = await run(dir, rows, name);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { name, seconds, bytes: (await stat(path)).size };
}

function encodeRates(rows: readonly ClickEvent[]): {
  avro: number;
  json: number;
  avroBytes: number;
  jsonBytes: number;
} {
  const sample = rows.slice(0, Math.min(rows.length, 100_000));
  let avroBytes = 0;
  let jsonBytes = 0;
  let start = process.hrtime.bigint();
  for (const row of sample) avroBytes += clickEventType.toBuffer(row).byteLength;
  const avroSeconds = Number(process.hrtime.bigint() - start) / 1e9;
  start = process.hrtime.bigint();
  for (const row of sample) jsonBytes += Buffer.byteLength(JSON.stringify(row));
  const jsonSeconds = Number(process.hrtime.bigint() - start) / 1e9;
  return {
    avro: sample.length / avroSeconds,
    json: sample.length / jsonSeconds,
    avroBytes: avroBytes / sample.length,
    jsonBytes: jsonBytes / sample.length,
  };
}

export async function run(): Promise<void> {
  const rows = clickEvents(ROWS);
  const encoded = rows.map((row) => encodeWith(1, clickEventType, row));
  const dir = await mkdtemp(join(tmpdir(), "sink-bench-"));
  try {
    const cases: [string, Case][] = [
      ["JSON lines (reference)", jsonLines],
      ["Avro container, null codec", sinkWriterCase(avroFileWriterFactory("null"))],
      ["Avro container, deflate", sinkWriterCase(avroFileWriterFactory("deflate"))],
      ["Avro container, snappy", sinkWriterCase(avroFileWriterFactory("snappy"))],
      [
        "Parquet hyparquet-writer, snappy",
        sinkWriterCase(parquetFileWriterFactory({ rowGroupRows: ROW_GROUP_ROWS })),
      ],
      [
        "Parquet hyparquet-writer + wire decode",
        sinkWriterCase(parquetFileWriterFactory({ rowGroupRows: ROW_GROUP_ROWS }), encoded),
      ],
      ["Parquet parquetjs-lite, snappy", parquetjsLite],
    ];
    const figures: Figure[] = [];
    for (const [name, run] of cases)
      figures.push(await measure(dir, name.replace(/[^a-z0-9]+/gi, "_"), run, rows));
    const reference = figures[0]!;
    const referenceRate = ROWS / reference.seconds;
    process.stdout.write(
      `sink writers: ${ROWS} clickstream rows (11 fields, request nested), one file each, fsync'd\n`,
    );
    console.table(
      figures.map((figure, i) => ({
        case: cases[i]![0],
        "rows/s": Math.round(ROWS / figure.seconds),
        "× JSON lines speed": Number((ROWS / figure.seconds / referenceRate).toFixed(2)),
        "file MB": Number((figure.bytes / 1e6).toFixed(2)),
        "bytes/row": Number((figure.bytes / ROWS).toFixed(1)),
        "× JSON lines size": Number((figure.bytes / reference.bytes).toFixed(3)),
      })),
    );
    const hyparquet = figures[4]!;
    const parquetjs = figures[6]!;
    process.stdout.write(
      `hyparquet-writer vs parquetjs-lite: ×${(parquetjs.seconds / hyparquet.seconds).toFixed(2)} rows/s, ` +
        `file ×${(parquetjs.bytes / hyparquet.bytes).toFixed(2)} smaller\n`,
    );
    const encode = encodeRates(rows);
    process.stdout.write(
      `encode one record: avsc toBuffer ${Math.round(encode.avro)}/s (${encode.avroBytes.toFixed(0)} B), ` +
        `JSON.stringify ${Math.round(encode.json)}/s (${encode.jsonBytes.toFixed(0)} B), ` +
        `Avro ×${(encode.avro / encode.json).toFixed(2)} the speed, ×${(encode.avroBytes / encode.jsonBytes).toFixed(2)} the size\n`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
