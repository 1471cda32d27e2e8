import type { Logger } from "../../log.js";
import type { DecodedRecord } from "./decode.js";
import type { RecordFileWriter, RecordFileWriterFactory } from "./format.js";
import {
  closedFileName,
  type OpenFileState,
  parseClosedFile,
  parseTemporaryFile,
  type RollPolicy,
  type RollReason,
  rollAfterAppend,
  rollBeforeAppend,
  type SinkFormat,
  temporaryFileName,
  timeBucket,
} from "./layout.js";
import type { SinkFile, SinkTarget } from "./target.js";

/** What the sink counts; the main process turns these into Prometheus metrics. */
export interface SinkObserver {
  recordWritten(topic: string, partition: number): void;
  recordSkipped(topic: string, partition: number): void;
  fileClosed(topic: string, partition: number, bytes: number, records: number, reason: RollReason): void;
}

export interface PartitionWriterOptions {
  topic: string;
  partition: number;
  target: SinkTarget;
  format: SinkFormat;
  writerFactory: RecordFileWriterFactory;
  roll: RollPolicy;
  /** Unique to this process: temporary files of other writers are leftovers of a dead process. */
  writerId: string;
  /** Commits `nextOffset` (the offset of the next record to read) for this partition. */
  commit: (nextOffset: bigint) => Promise<void>;
  now?: () => number;
  observer?: SinkObserver;
  log?: Logger;
}

interface OpenFile extends OpenFileState {
  temporaryPath: string;
  file: SinkFile;
  writer: RecordFileWriter;
  firstOffset: bigint;
  lastOffset: bigint;
  records: number;
}

/**
 * Rolls one Kafka partition into files. The rule that makes the sink lose nothing and repeat
 * little: at any moment at most one file of the partition is open, it holds a contiguous range
 * of offsets, and the committed offset never passes the first offset of the open file. So
 * everything before the committed offset is in closed, durable files; a crash loses only the
 * open file, which is rebuilt from the same offsets after a restart.
 *
 * The closed files' names carry their offset ranges, so on (re)assignment the partition's
 * durable progress is also read from the target: a crash between renaming a file into place
 * and committing its offsets would otherwise write those records a second time (the same idea
 * as Kafka Connect's HDFS sink, which recovers offsets from the file names it wrote).
 */
export class PartitionWriter {
  readonly topic: string;
  readonly partition: number;
  private readonly now: () => number;
  private open: OpenFile | undefined;
  /** The highest offset that is written (to the open or a closed file), dead-lettered or already durable. */
  private handledThrough = -1n;
  /** The last offset this writer committed, or the one the group had committed when it started. */
  private committedNext = -1n;

  constructor(private readonly options: PartitionWriterOptions) {
    this.topic = options.topic;
    this.partition = options.partition;
    this.now = options.now ?? Date.now;
  }

  /** The offset the next record must have to be new to this writer. */
  get nextOffset(): bigint {
    return this.handledThrough + 1n;
  }

  get hasOpenFile(): boolean {
    return this.open !== undefined;
  }

  /**
   * Called once, before the first record of an assignment: `firstFetchedOffset` is where the
   * consumer group resumed. Removes temporary files that dead writers left for this partition
   * and learns from closed files how far the partition is already durable.
   */
  async recover(firstFetchedOffset: bigint): Promise<void> {
    const { topic, partition, target, writerId } = this.options;
    let durableThrough = -1n;
    for (const path of await target.list()) {
      const closed = parseClosedFile(path);
      if (closed && closed.topic === topic && closed.partition === partition) {
        // Files that start before the committed offset are covered by the commit already; only
        // a file closed after it (and not committed before a crash) moves the start forward.
        if (closed.firstOffset >= firstFetchedOffset && closed.lastOffset > durableThrough) {
          durableThrough = closed.lastOffset;
        }
        continue;
      }
      const temporary = parseTemporaryFile(path);
      if (
        temporary &&
        temporary.topic === topic &&
        temporary.partition === partition &&
        temporary.writerId !== writerId
      ) {
        this.options.log?.info(
          { topic, partition, path },
          "removing a temporary file left by a stopped sink",
        );
        await target.remove(path);
      }
    }
    this.committedNext = firstFetchedOffset;
    this.handledThrough = durableThrough >= firstFetchedOffset ? durableThrough : firstFetchedOffset - 1n;
    if (durableThrough >= firstFetchedOffset) {
      this.options.log?.info(
        {
          topic,
          partition,
          committedOffset: String(firstFetchedOffset),
          durableThrough: String(durableThrough),
        },
        "closed files hold records past the committed offset; skipping them",
      );
    }
    await this.commitIfAdvanced();
  }

  /** Whether `offset` is already written, dead-lettered or durable (re-delivered after a rebalance or restart). */
  alreadyHandled(offset: bigint): boolean {
    return offset <= this.handledThrough;
  }

  async append(
    offset: bigint,
    eventTimeMs: number,
    decoded: DecodedRecord,
    encodedSize: number,
  ): Promise<void> {
    if (this.alreadyHandled(offset)) {
      this.options.observer?.recordSkipped(this.topic, this.partition);
      return;
    }
    const bucket = timeBucket(eventTimeMs);
    if (this.open) {
      const reason = rollBeforeAppend(this.open, bucket, decoded.schemaKey);
      if (reason) await this.closeOpenFile(reason);
    }
    const open = this.open ?? (await this.openFile(offset, bucket, decoded));
    await open.writer.append(decoded.record, encodedSize);
    open.lastOffset = offset;
    open.records++;
    open.estimatedBytes = open.writer.estimatedBytes();
    this.handledThrough = offset;
    this.options.observer?.recordWritten(this.topic, this.partition);
    const reason = rollAfterAppend(open, this.options.roll, this.now());
    if (reason) await this.closeOpenFile(reason);
  }

  /** A record that went to the dead-letter topic (acknowledged there) counts as handled. */
  deadLettered(offset: bigint): void {
    if (offset > this.handledThrough) this.handledThrough = offset;
  }

  /** Closes the open file when it is older than the roll policy allows (called by a timer). */
  async rollIfAged(): Promise<void> {
    if (this.open && this.now() - this.open.openedAtMs >= this.options.roll.maxAgeMs) {
      await this.closeOpenFile("age");
    }
  }

  /** Commits the furthest offset before which everything is durable, if it moved. */
  async commitIfAdvanced(): Promise<void> {
    const durableNext = this.open ? this.open.firstOffset : this.handledThrough + 1n;
    if (durableNext <= this.committedNext) return;
    await this.options.commit(durableNext);
    this.committedNext = durableNext;
  }

  /**
   * Writes the open file's trailer, makes it durable, renames it into place (durably), then
   * commits. Only then are its records acknowledged to Kafka.
   */
  async closeOpenFile(reason: RollReason): Promise<void> {
    const open = this.open;
    if (!open) return;
    this.open = undefined;
    const { target, format, topic, partition } = this.options;
    if (open.records === 0) {
      // Its only records were rejected by the format (and dead-lettered): nothing to keep.
      await open.file.abort();
      await this.commitIfAdvanced();
      return;
    }
    const finalPath = `${open.bucket.directory}/${closedFileName(topic, partition, open.firstOffset, open.lastOffset, format)}`;
    try {
      await open.writer.finish({
        "tributary.kafka.topic": topic,
        "tributary.kafka.partition": String(partition),
        "tributary.kafka.offsets": `${open.firstOffset}-${open.lastOffset}`,
      });
      await open.file.closeDurably();
      // An existing file of the same name holds the same offsets (from a run that crashed
      // before committing); replacing it with the same records is harmless.
      await target.rename(open.temporaryPath, finalPath);
    } catch (error) {
      await open.file.abort().catch(() => undefined);
      throw new Error(
        `closing sink file ${target.location}/${finalPath} (offsets ${open.firstOffset}-${open.lastOffset}) failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
    this.options.observer?.fileClosed(topic, partition, open.file.bytesWritten, open.records, reason);
    this.options.log?.debug(
      { topic, partition, path: finalPath, records: open.records, bytes: open.file.bytesWritten, reason },
      "closed sink file",
    );
    await this.commitIfAdvanced();
  }

  /** Drops the open file without closing it: the partition was revoked or its state is suspect. */
  async abort(): Promise<void> {
    const open = this.open;
    this.open = undefined;
    if (open) await open.file.abort();
  }

  private async openFile(
    firstOffset: bigint,
    bucket: ReturnType<typeof timeBucket>,
    decoded: DecodedRecord,
  ): Promise<OpenFile> {
    const { target, topic, partition, writerId, writerFactory } = this.options;
    const temporaryPath = `${bucket.directory}/${temporaryFileName(topic, partition, firstOffset, writerId)}`;
    // A temporary file of this writer with this first offset can only be left by an earlier
    // attempt of this same process that failed; it holds nothing durable.
    await target.remove(temporaryPath);
    const file = await target.create(temporaryPath);
    const writer = writerFactory(file, decoded.type, { topic, partition, firstOffset });
    this.open = {
      temporaryPath,
      file,
      writer,
      bucket,
      schemaKey: decoded.schemaKey,
      openedAtMs: this.now(),
      estimatedBytes: 0,
      firstOffset,
      lastOffset: firstOffset,
      records: 0,
    };
    return this.open;
  }
}
