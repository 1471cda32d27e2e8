/**
 * The sink's files read by independent readers (hyparquet for Parquet, avsc's container decoder
 * for Avro), and the point of a column format: a query that needs two columns reads only those
 * column chunks (plus the footer) from Parquet, while a row format must read every byte.
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClickEvent, clickEventType } from "../../src/dataplane/clickstream/schema.js";
import { avroFileWriterFactory } from "../../src/dataplane/sink/avroFile.js";
import type { RecordFileWriterFactory } from "../../src/dataplane/sink/format.js";
import { parquetFileWriterFactory } from "../../src/dataplane/sink/parquetFile.js";
import { LocalDirectoryTarget } from "../../src/dataplane/sink/target.js";
import { clickEvents } from "../support/click-events.js";
import { readAvro, readParquet } from "../support/sink-files.js";

let dir: string;
const events = clickEvents(50_000);
const paths: Record<"parquet" | "avro", string> = { parquet: "", avro: "" };

async function write(factory: RecordFileWriterFactory, name: string): Promise<string> {
  const target = new LocalDirectoryTarget(dir);
  const file = await target.create(`.${name}.tmp`);
  const writer = factory(file, clickEventType, { topic: "clicks", partition: 0, firstOffset: 0n });
  for (const event of events) await writer.append(event, 160);
  await writer.finish({});
  await file.closeDurably();
  await target.rename(`.${name}.tmp`, name);
  return join(dir, name);
}

/** The query: distinct logged-in users who started a video. Needs eventType and userId only. */
function playingUsers(rows: Record<string, unknown>[]): Set<string> {
  const users = new Set<string>();
  for (const row of rows)
    if (row.eventType === "play" && row.userId !== null) users.add(row.userId as string);
  return users;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sink-reader-"));
  paths.parquet = await write(parquetFileWriterFactory({ rowGroupRows: 10_000 }), "clicks-0-0-49999.parquet");
  // Deflate makes the Avro file as small as it gets: the comparison is against Avro's best case.
  paths.avro = await write(avroFileWriterFactory("deflate"), "clicks-0-0-49999.avro");
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("reading sink files", () => {
  it("independent readers read back every record of both formats", async () => {
    const parquet = await readParquet(paths.parquet);
    expect(parquet.rows).toHaveLength(events.length);
    expect(parquet.rows[12_345]!.eventId).toBe(events[12_345]!.eventId);
    const avro = await readAvro(paths.avro);
    expect(avro.rows.map((row) => ({ ...row, request: { ...(row.request as object) } }))).toEqual(
      events as ClickEvent[],
    );
  });

  it("a query on two columns reads fewer bytes from Parquet than from Avro, with the same answer", async () => {
    const parquet = await readParquet(paths.parquet, ["eventType", "userId"]);
    const avro = await readAvro(paths.avro);
    const expected = playingUsers(events as unknown as Record<string, unknown>[]);
    expect(playingUsers(parquet.rows)).toEqual(expected);
    expect(playingUsers(avro.rows)).toEqual(expected);

    const avroSize = (await stat(paths.avro)).size;
    const parquetSize = (await stat(paths.parquet)).size;
    expect(avro.bytesRead).toBe(avroSize);
    expect(parquet.bytesRead).toBeLessThan(parquetSize);
    expect(parquet.bytesRead).toBeLessThan(avro.bytesRead);
    console.info(
      `two-column query: Parquet read ${parquet.bytesRead} of ${parquetSize} bytes, Avro read ${avro.bytesRead} of ${avroSize} bytes`,
    );
  });
});
