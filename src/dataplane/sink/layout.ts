/**
 * Where a record lands and what a file is called. Pure functions: the whole naming contract of
 * the sink's output is in this file.
 *
 * Layout: `dt=YYYY-MM-DD/hr=HH/<topic>-<partition>-<firstOffset>-<lastOffset>.<ext>` (Hive-style
 * partition directories, UTC event time). A closed file holds the contiguous offset range in
 * its name, so a file re-written after a crash gets the same name, and the closed files of a
 * partition tell on their own how far that partition is durably written.
 */

export type SinkFormat = "parquet" | "avro";

export interface TimeBucket {
  /** `dt=YYYY-MM-DD/hr=HH`, the directory of the bucket. */
  directory: string;
  /** Milliseconds since the epoch at the start of the hour. */
  hourStartMs: number;
}

const hourMs = 3_600_000;

export function timeBucket(eventTimeMs: number): TimeBucket {
  if (!Number.isFinite(eventTimeMs))
    throw new Error(`event time ${eventTimeMs} is not a finite number of milliseconds`);
  const hourStartMs = Math.floor(eventTimeMs / hourMs) * hourMs;
  const iso = new Date(hourStartMs).toISOString();
  return { directory: `dt=${iso.slice(0, 10)}/hr=${iso.slice(11, 13)}`, hourStartMs };
}

export function closedFileName(
  topic: string,
  partition: number,
  firstOffset: bigint,
  lastOffset: bigint,
  format: SinkFormat,
): string {
  return `${topic}-${partition}-${firstOffset}-${lastOffset}.${format}`;
}

/**
 * The temporary name of a file being written. It starts with a dot, which Hive, Spark and
 * Trino skip when listing a partition directory, and it carries the writer's id so that two
 * sink processes (before and after a rebalance) never write the same temporary file.
 */
export function temporaryFileName(
  topic: string,
  partition: number,
  firstOffset: bigint,
  writerId: string,
): string {
  return `.${topic}-${partition}-${firstOffset}.${writerId}.tmp`;
}

export interface ClosedFile {
  path: string;
  topic: string;
  partition: number;
  firstOffset: bigint;
  lastOffset: bigint;
  format: SinkFormat;
}

// Topic names may contain '-', '.', '_'; the three numbers are anchored at the end.
const closedPattern = /^(.+)-(\d+)-(\d+)-(\d+)\.(parquet|avro)$/;
const temporaryPattern = /^\.(.+)-(\d+)-(\d+)\.([A-Za-z0-9_]+)\.tmp$/;

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function parseClosedFile(path: string): ClosedFile | undefined {
  const match = closedPattern.exec(baseName(path));
  if (!match) return undefined;
  return {
    path,
    topic: match[1]!,
    partition: Number(match[2]),
    firstOffset: BigInt(match[3]!),
    lastOffset: BigInt(match[4]!),
    format: match[5] as SinkFormat,
  };
}

export function parseTemporaryFile(
  path: string,
): { topic: string; partition: number; firstOffset: bigint; writerId: string } | undefined {
  const match = temporaryPattern.exec(baseName(path));
  if (!match) return undefined;
  return {
    topic: match[1]!,
    partition: Number(match[2]),
    firstOffset: BigInt(match[3]!),
    writerId: match[4]!,
  };
}

export interface RollPolicy {
  /** Roll once the file (written bytes plus an estimate of what is still buffered) reaches this size. */
  maxBytes: number;
  /** Roll once the file has been open this long, so a quiet topic still gets its data closed and committed. */
  maxAgeMs: number;
}

export type RollReason = "size" | "age" | "bucket" | "schema" | "shutdown";

export interface OpenFileState {
  bucket: TimeBucket;
  schemaKey: string;
  openedAtMs: number;
  estimatedBytes: number;
}

/**
 * Whether the open file must be closed before a record of `bucket`/`schemaKey` is appended. A
 * file holds one hour of one schema: a record of another hour or another writer schema closes it.
 */
export function rollBeforeAppend(
  file: OpenFileState,
  bucket: TimeBucket,
  schemaKey: string,
): RollReason | undefined {
  if (file.bucket.hourStartMs !== bucket.hourStartMs) return "bucket";
  if (file.schemaKey !== schemaKey) return "schema";
  return undefined;
}

/** Whether the open file has grown or aged enough to be closed now. */
export function rollAfterAppend(
  file: OpenFileState,
  policy: RollPolicy,
  nowMs: number,
): RollReason | undefined {
  if (file.estimatedBytes >= policy.maxBytes) return "size";
  if (nowMs - file.openedAtMs >= policy.maxAgeMs) return "age";
  return undefined;
}
