import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type ClickEvent, clickEventType } from "../../src/dataplane/clickstream/schema.js";
import { avroFileWriterFactory } from "../../src/dataplane/sink/avroFile.js";
import type { DecodedRecord } from "../../src/dataplane/sink/decode.js";
import { RecordRejectedError } from "../../src/dataplane/sink/format.js";
import { parseClosedFile, type SinkFormat } from "../../src/dataplane/sink/layout.js";
import { parquetFileWriterFactory } from "../../src/dataplane/sink/parquetFile.js";
import { PartitionWriter, type PartitionWriterOptions } from "../../src/dataplane/sink/partitionWriter.js";
import { LocalDirectoryTarget } from "../../src/dataplane/sink/target.js";
import { clickEvents } from "../support/click-events.js";
import { readAvro, readParquet } from "../support/sink-files.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sink-partition-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const hour = 3_600_000;
const seven = Date.UTC(2026, 10, 26, 7);

function decoded(record: ClickEvent): DecodedRecord {
  return { ok: true, schemaKey: "1", type: clickEventType, record };
}

function setup(format: SinkFormat, overrides: Partial<PartitionWriterOptions> = {}) {
  const commits: bigint[] = [];
  let now = 0;
  const target = new LocalDirectoryTarget(dir);
  const writer = new PartitionWriter({
    topic: "clicks",
    partition: 0,
    target,
    format,
    writerFactory:
      format === "parquet" ? parquetFileWriterFactory({ rowGroupRows: 100 }) : avroFileWriterFactory("null"),
    roll: { maxBytes: 1 << 30, maxAgeMs: 60_000 },
    writerId: "test_a",
    commit: async (offset) => {
      commits.push(offset);
    },
    now: () => now,
    ...overrides,
  });
  return { writer, commits, target, advance: (ms: number) => (now += ms) };
}

async function closedFiles(target: LocalDirectoryTarget) {
  return (await target.list())
    .map((path) => parseClosedFile(path))
    .filter((file) => file !== undefined)
    .sort((a, b) => Number(a.firstOffset - b.firstOffset));
}

async function allRows(format: SinkFormat, target: LocalDirectoryTarget): Promise<string[]> {
  const ids: string[] = [];
  for (const file of await closedFiles(target)) {
    const path = join(dir, ...file.path.split("/"));
    const { rows } = format === "parquet" ? await readParquet(path, ["eventId"]) : await readAvro(path);
    ids.push(...rows.map((row) => row.eventId as string));
  }
  return ids;
}

describe("PartitionWriter", () => {
  it("commits nothing while the only file is open, then commits its end once it is closed durably", async () => {
    const { writer, commits, target } = setup("parquet");
    await writer.recover(0n);
    const events = clickEvents(10, { startMs: seven, spanMs: 1000 });
    for (const [offset, event] of events.entries())
      await writer.append(BigInt(offset), event.eventTime, decoded(event), 160);
    expect(commits).toEqual([]);
    expect(await closedFiles(target)).toEqual([]);
    expect((await target.list()).map((path) => path.split("/").pop())).toEqual([".clicks-0-0.test_a.tmp"]);

    // A record of the next hour closes the first file; its offsets are then committed.
    const next = clickEvents(1, { startMs: seven + hour, seed: 7 })[0]!;
    await writer.append(10n, next.eventTime, decoded(next), 160);
    expect(commits).toEqual([10n]);
    expect((await closedFiles(target)).map((f) => f.path)).toEqual([
      "dt=2026-11-26/hr=07/clicks-0-0-9.parquet",
    ]);

    await writer.closeOpenFile("shutdown");
    expect(commits).toEqual([10n, 11n]);
    expect((await closedFiles(target)).map((f) => f.path)).toEqual([
      "dt=2026-11-26/hr=07/clicks-0-0-9.parquet",
      "dt=2026-11-26/hr=08/clicks-0-10-10.parquet",
    ]);
    expect(await allRows("parquet", target)).toEqual([...events, next].map((e) => e.eventId));
  });

  it.each<SinkFormat>(["parquet", "avro"])(
    "rolls %s files by size into contiguous offset ranges",
    async (format) => {
      const { writer, commits, target } = setup(format, { roll: { maxBytes: 20_000, maxAgeMs: 60_000 } });
      await writer.recover(0n);
      const events = clickEvents(1_000, { startMs: seven, spanMs: 1000 });
      for (const [offset, event] of events.entries())
        await writer.append(BigInt(offset), event.eventTime, decoded(event), 160);
      await writer.closeOpenFile("shutdown");

      const files = await closedFiles(target);
      expect(files.length).toBeGreaterThan(2);
      let expectedFirst = 0n;
      for (const file of files) {
        expect(file.firstOffset).toBe(expectedFirst);
        expectedFirst = file.lastOffset + 1n;
      }
      expect(expectedFirst).toBe(1000n);
      expect(commits).toEqual(files.map((file) => file.lastOffset + 1n));
      expect(await allRows(format, target)).toEqual(events.map((e) => e.eventId));
    },
  );

  it("closes a file that reached its maximum age, even when no record arrives", async () => {
    const { writer, commits, advance, target } = setup("avro");
    await writer.recover(0n);
    const [event] = clickEvents(1, { startMs: seven });
    await writer.append(0n, event!.eventTime, decoded(event!), 160);
    advance(59_999);
    await writer.rollIfAged();
    expect(commits).toEqual([]);
    advance(1);
    await writer.rollIfAged();
    expect(commits).toEqual([1n]);
    expect((await closedFiles(target)).map((f) => f.path)).toEqual(["dt=2026-11-26/hr=07/clicks-0-0-0.avro"]);
  });

  it("after a crash, removes the dead writer's temporary file and skips what closed files already hold", async () => {
    const events = clickEvents(30, { startMs: seven, spanMs: 1000 });
    // The first process closes two files but dies before committing the second (its commit is lost).
    const first = setup("parquet", { roll: { maxBytes: 1 << 30, maxAgeMs: 60_000 } });
    await first.writer.recover(0n);
    for (let offset = 0; offset < 10; offset++) {
      await first.writer.append(BigInt(offset), events[offset]!.eventTime, decoded(events[offset]!), 160);
    }
    await first.writer.closeOpenFile("size");
    for (let offset = 10; offset < 20; offset++) {
      await first.writer.append(BigInt(offset), events[offset]!.eventTime, decoded(events[offset]!), 160);
    }
    await first.writer.closeOpenFile("size");
    for (let offset = 20; offset < 25; offset++) {
      await first.writer.append(BigInt(offset), events[offset]!.eventTime, decoded(events[offset]!), 160);
    }
    expect(first.commits).toEqual([10n, 20n]);
    const committed = 10n; // the group saw only the first commit

    const second = setup("parquet", { writerId: "test_b" });
    await second.writer.recover(committed);
    expect(second.commits).toEqual([20n]);
    expect((await second.target.list()).some((path) => path.includes(".test_a.tmp"))).toBe(false);
    for (let offset = Number(committed); offset < 30; offset++) {
      await second.writer.append(BigInt(offset), events[offset]!.eventTime, decoded(events[offset]!), 160);
    }
    await second.writer.closeOpenFile("shutdown");
    expect(second.commits).toEqual([20n, 30n]);
    expect((await closedFiles(second.target)).map((f) => `${f.firstOffset}-${f.lastOffset}`)).toEqual([
      "0-9",
      "10-19",
      "20-29",
    ]);
    expect(await allRows("parquet", second.target)).toEqual(events.map((e) => e.eventId));
  });

  it("commits past dead-lettered records only when no open file precedes them", async () => {
    const { writer, commits } = setup("avro");
    await writer.recover(0n);
    writer.deadLettered(0n);
    await writer.commitIfAdvanced();
    expect(commits).toEqual([1n]);
    const [event] = clickEvents(1, { startMs: seven });
    await writer.append(1n, event!.eventTime, decoded(event!), 160);
    writer.deadLettered(2n);
    await writer.commitIfAdvanced();
    expect(commits).toEqual([1n]);
    await writer.closeOpenFile("shutdown");
    expect(commits).toEqual([1n, 3n]);
  });

  it("rejects a record the format cannot hold without corrupting the file, and keeps no file of rejects only", async () => {
    const { writer, commits, target } = setup("parquet");
    await writer.recover(0n);
    const [good] = clickEvents(1, { startMs: seven });
    const bad = { ...good!, receivedAt: 1.5 } as ClickEvent; // an INT64 column cannot hold 1.5
    await expect(writer.append(0n, seven, decoded(bad), 160)).rejects.toBeInstanceOf(RecordRejectedError);
    writer.deadLettered(0n);
    await writer.closeOpenFile("shutdown");
    expect(commits).toEqual([1n]);
    expect(await target.list()).toEqual([]);

    await expect(writer.append(1n, seven, decoded(bad), 160)).rejects.toBeInstanceOf(RecordRejectedError);
    writer.deadLettered(1n);
    await writer.append(2n, seven, decoded(good!), 160);
    await writer.closeOpenFile("shutdown");
    expect(commits).toEqual([1n, 3n]);
    expect(await allRows("parquet", target)).toEqual([good!.eventId]);
  });

  it("aborting drops the open file without committing", async () => {
    const { writer, commits } = setup("parquet");
    await writer.recover(0n);
    const [event] = clickEvents(1, { startMs: seven });
    await writer.append(0n, event!.eventTime, decoded(event!), 160);
    await writer.abort();
    expect(commits).toEqual([]);
    expect(await readdir(join(dir, "dt=2026-11-26", "hr=07"))).toEqual([]);
  });
});
