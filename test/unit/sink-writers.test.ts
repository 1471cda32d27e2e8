import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import avro from "avsc";
import { parquetMetadataAsync } from "hyparquet";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { clickEventType } from "../../src/dataplane/clickstream/schema.js";
import { type AvroCodec, avroFileWriterFactory } from "../../src/dataplane/sink/avroFile.js";
import type { RecordFileWriterFactory } from "../../src/dataplane/sink/format.js";
import {
  type ParquetCodec,
  parquetFileWriterFactory,
  parquetPlanFromAvro,
} from "../../src/dataplane/sink/parquetFile.js";
import { LocalDirectoryTarget } from "../../src/dataplane/sink/target.js";
import { clickEvents } from "../support/click-events.js";
import { countingFile, readAvro, readParquet } from "../support/sink-files.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sink-writers-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeFile(
  factory: RecordFileWriterFactory,
  name: string,
  rows: readonly unknown[],
): Promise<string> {
  const target = new LocalDirectoryTarget(dir);
  const file = await target.create(`tmp/.${name}.tmp`);
  const writer = factory(file, clickEventType, { topic: "clicks", partition: 0, firstOffset: 0n });
  for (const row of rows) await writer.append(row, 160);
  await writer.finish({ "tributary.kafka.offsets": `0-${rows.length - 1}` });
  await file.closeDurably();
  await target.rename(`tmp/.${name}.tmp`, `dt=2026-11-26/hr=07/${name}`);
  return join(dir, "dt=2026-11-26", "hr=07", name);
}

/** hyparquet gives timestamps as Date; the Avro record has epoch milliseconds. */
function fromParquet(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) out[key] = value instanceof Date ? value.getTime() : value;
  return out;
}

describe("Parquet file writer", () => {
  it.each<ParquetCodec>(["snappy", "gzip", "uncompressed"])(
    "writes rows hyparquet reads back unchanged (%s), in row groups with statistics",
    async (codec) => {
      const rows = clickEvents(2_500);
      const factory = parquetFileWriterFactory({
        rowGroupRows: 1_000,
        codec,
        timestampFields: ["eventTime", "receivedAt"],
      });
      const path = await writeFile(factory, "clicks-0-0-2499.parquet", rows);

      const { rows: read } = await readParquet(path);
      expect(read.map(fromParquet)).toEqual(rows);

      const { file, close } = await countingFile(path);
      const metadata = await parquetMetadataAsync(file);
      await close();
      expect(metadata.row_groups.map((group) => Number(group.num_rows))).toEqual([1000, 1000, 500]);
      const eventTime = metadata.row_groups[0]!.columns.find(
        (c) => c.meta_data?.path_in_schema[0] === "eventTime",
      )!;
      expect(eventTime.meta_data?.statistics?.min_value).toEqual(new Date(rows[0]!.eventTime));
      expect(eventTime.meta_data?.statistics?.max_value).toEqual(new Date(rows[999]!.eventTime));
      const userId = metadata.row_groups[0]!.columns.find(
        (c) => c.meta_data?.path_in_schema[0] === "userId",
      )!;
      expect(Number(userId.meta_data?.statistics?.null_count)).toBe(
        rows.slice(0, 1000).filter((r) => r.userId === null).length,
      );
      expect(metadata.key_value_metadata?.find((kv) => kv.key === "tributary.kafka.offsets")?.value).toBe(
        "0-2499",
      );
    },
  );

  it("maps Avro types to Parquet: optional unions, nested records as groups, timestamps, JSON for the rest", () => {
    const type = avro.Type.forSchema({
      type: "record",
      name: "Mixed",
      fields: [
        { name: "at", type: "long" },
        { name: "count", type: "long" },
        { name: "maybe", type: ["null", "int"] },
        { name: "tags", type: { type: "array", items: "string" } },
        { name: "inner", type: { type: "record", name: "Inner", fields: [{ name: "ok", type: "boolean" }] } },
      ],
    });
    const { schema } = parquetPlanFromAvro(type, ["at"]);
    expect(schema).toEqual([
      { name: "root", num_children: 5 },
      {
        name: "at",
        repetition_type: "REQUIRED",
        type: "INT64",
        converted_type: "TIMESTAMP_MILLIS",
        logical_type: { type: "TIMESTAMP", isAdjustedToUTC: true, unit: "MILLIS" },
      },
      { name: "count", repetition_type: "REQUIRED", type: "INT64" },
      { name: "maybe", repetition_type: "OPTIONAL", type: "INT32" },
      { name: "tags", repetition_type: "REQUIRED", type: "BYTE_ARRAY", converted_type: "JSON" },
      { name: "inner", repetition_type: "REQUIRED", num_children: 1 },
      { name: "ok", repetition_type: "REQUIRED", type: "BOOLEAN" },
    ]);
    expect(() => parquetPlanFromAvro(avro.Type.forSchema("string"))).toThrow(/needs an Avro record schema/);
  });

  it("writes the same bytes for the same records (a re-written file replaces itself)", async () => {
    const rows = clickEvents(1_200);
    const factory = parquetFileWriterFactory({ rowGroupRows: 500 });
    const first = await readFile(await writeFile(factory, "a.parquet", rows));
    const second = await readFile(await writeFile(factory, "b.parquet", rows));
    expect(second.equals(first)).toBe(true);
  });
});

describe("Avro container file writer", () => {
  it.each<AvroCodec>(["null", "deflate", "snappy"])(
    "writes records avsc's decoder reads back (%s)",
    async (codec) => {
      const rows = clickEvents(3_000);
      const path = await writeFile(avroFileWriterFactory(codec, 16 * 1024), "clicks-0-0-2999.avro", rows);
      const { rows: read, schema } = await readAvro(path);
      expect(read.map((row) => ({ ...row, request: { ...(row.request as object) } }))).toEqual(rows);
      expect(schema).toEqual(clickEventType.schema());
    },
  );

  it("writes the same bytes for the same records: the sync marker comes from the file's identity", async () => {
    const rows = clickEvents(500);
    const first = await readFile(await writeFile(avroFileWriterFactory("deflate"), "a.avro", rows));
    const second = await readFile(await writeFile(avroFileWriterFactory("deflate"), "b.avro", rows));
    expect(second.equals(first)).toBe(true);
  });
});
