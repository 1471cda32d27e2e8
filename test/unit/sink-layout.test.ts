import { describe, expect, it } from "vitest";
import {
  closedFileName,
  parseClosedFile,
  parseTemporaryFile,
  rollAfterAppend,
  rollBeforeAppend,
  temporaryFileName,
  timeBucket,
} from "../../src/dataplane/sink/layout.js";

describe("sink layout", () => {
  it("buckets event times by UTC date and hour, Hive style", () => {
    expect(timeBucket(Date.UTC(2026, 10, 26, 7, 59, 59, 999)).directory).toBe("dt=2026-11-26/hr=07");
    expect(timeBucket(Date.UTC(2026, 10, 26, 8, 0, 0, 0)).directory).toBe("dt=2026-11-26/hr=08");
    expect(timeBucket(Date.UTC(2026, 11, 31, 23, 30)).directory).toBe("dt=2026-12-31/hr=23");
    expect(() => timeBucket(Number.NaN)).toThrow(/not a finite number/);
  });

  it("names closed files by offset range and parses them back, even for topics with dashes", () => {
    const name = closedFileName("click-stream.v2", 3, 1000n, 1999n, "parquet");
    expect(name).toBe("click-stream.v2-3-1000-1999.parquet");
    expect(parseClosedFile(`dt=2026-11-26/hr=07/${name}`)).toEqual({
      path: `dt=2026-11-26/hr=07/${name}`,
      topic: "click-stream.v2",
      partition: 3,
      firstOffset: 1000n,
      lastOffset: 1999n,
      format: "parquet",
    });
    expect(parseClosedFile("dt=2026-11-26/hr=07/notes.txt")).toBeUndefined();
  });

  it("gives temporary files a hidden name that carries the writer id and never parses as closed", () => {
    const name = temporaryFileName("clicks", 0, 42n, "pod_a_17");
    expect(name.startsWith(".")).toBe(true);
    expect(parseClosedFile(name)).toBeUndefined();
    expect(parseTemporaryFile(`dt=2026-11-26/hr=07/${name}`)).toEqual({
      topic: "clicks",
      partition: 0,
      firstOffset: 42n,
      writerId: "pod_a_17",
    });
  });

  it("rolls before a record of another hour or schema, and after size or age", () => {
    const bucket = timeBucket(Date.UTC(2026, 10, 26, 7));
    const file = { bucket, schemaKey: "1", openedAtMs: 1_000, estimatedBytes: 10 };
    expect(rollBeforeAppend(file, bucket, "1")).toBeUndefined();
    expect(rollBeforeAppend(file, timeBucket(Date.UTC(2026, 10, 26, 8)), "1")).toBe("bucket");
    expect(rollBeforeAppend(file, bucket, "2")).toBe("schema");
    const policy = { maxBytes: 100, maxAgeMs: 5_000 };
    expect(rollAfterAppend(file, policy, 2_000)).toBeUndefined();
    expect(rollAfterAppend({ ...file, estimatedBytes: 100 }, policy, 2_000)).toBe("size");
    expect(rollAfterAppend(file, policy, 6_000)).toBe("age");
  });
});
