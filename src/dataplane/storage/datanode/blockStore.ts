/**
 * A data node's replicas on its local volume, laid out like HDFS's:
 *
 *   <dir>/current/rbw/blk_<id>, blk_<id>_<gs>.meta        replicas being written
 *   <dir>/current/finalized/blk_<id>, blk_<id>_<gs>.meta  finalized replicas
 *
 * The meta file is a 7-byte header (version, checksum type, bytes per checksum) followed by one
 * big-endian CRC32C per 512-byte chunk. A replica is written under rbw/, both files are fsynced,
 * then renamed into finalized/ (meta first, data last, then the directory is fsynced): the data
 * file's presence in finalized/ is the commit point, so a half-written block is never visible as
 * finalized, and replicas left in rbw/ by a crash are discarded at start (never acknowledged).
 */
import { type FileHandle, mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BYTES_PER_CHECKSUM, chunkChecksums, crc32c, verifyChunkChecksums } from "../crc32c.js";
import { type ExtendedBlock, RemoteException } from "../protocol.js";

const META_VERSION = 1;
/** DataChecksum.Type.CRC32C's id in HDFS. */
const CHECKSUM_TYPE_CRC32C = 2;
const HEADER_BYTES = 7;
/** Read and verify in runs of whole chunks: 1 MiB keeps syscalls few and memory bounded. */
const READ_CHUNKS = 2048;

export interface ReplicaInfo {
  blockId: number;
  generationStamp: number;
  numBytes: number;
}

export interface FinishedReplica extends ExtendedBlock {
  /** CRC32C of the meta file's checksum array: equal on two replicas iff every chunk checksum is equal. */
  checksum: number;
}

export class BlockStore {
  private readonly finalized = new Map<number, ReplicaInfo>();
  private readonly rbwDir: string;
  private readonly finalizedDir: string;

  /** Called when a finalized replica's files are found gone from disk (deleted behind our back). */
  onVanished: (blockId: number) => void = () => undefined;

  constructor(readonly dir: string) {
    this.rbwDir = join(dir, "current", "rbw");
    this.finalizedDir = join(dir, "current", "finalized");
  }

  async open(): Promise<void> {
    await rm(this.rbwDir, { recursive: true, force: true });
    await mkdir(this.rbwDir, { recursive: true });
    await mkdir(this.finalizedDir, { recursive: true });
    const names = await readdir(this.finalizedDir);
    const metas = new Map<number, number>();
    for (const name of names) {
      const meta = /^blk_(\d+)_(\d+)\.meta$/.exec(name);
      if (meta) metas.set(Number(meta[1]), Number(meta[2]));
    }
    for (const name of names) {
      const data = /^blk_(\d+)$/.exec(name);
      if (!data) continue;
      const blockId = Number(data[1]);
      const generationStamp = metas.get(blockId);
      // A data file without its meta cannot be verified: treat as never finalized.
      if (generationStamp === undefined) {
        await rm(join(this.finalizedDir, name), { force: true });
        continue;
      }
      const { size } = await stat(join(this.finalizedDir, name));
      this.finalized.set(blockId, { blockId, generationStamp, numBytes: size });
    }
  }

  get(blockId: number): ReplicaInfo | undefined {
    return this.finalized.get(blockId);
  }

  list(): ReplicaInfo[] {
    return [...this.finalized.values()];
  }

  get dfsUsed(): number {
    let used = 0;
    for (const replica of this.finalized.values()) used += replica.numBytes;
    return used;
  }

  blockPath(blockId: number): string {
    return join(this.finalizedDir, `blk_${blockId}`);
  }

  metaPath(blockId: number, generationStamp: number): string {
    return join(this.finalizedDir, `blk_${blockId}_${generationStamp}.meta`);
  }

  /** Starts a replica under rbw/. The caller writes, then `finish`es (durable, finalized) or `abort`s. */
  async createRbw(blockId: number, generationStamp: number): Promise<ReplicaWriter> {
    const dataPath = join(this.rbwDir, `blk_${blockId}`);
    const metaPath = join(this.rbwDir, `blk_${blockId}_${generationStamp}.meta`);
    const data = await open(dataPath, "w");
    const meta = await open(metaPath, "w").catch(async (error) => {
      await data.close();
      throw error;
    });
    return new ReplicaWriter(this, blockId, generationStamp, dataPath, metaPath, data, meta);
  }

  /** @internal Called by ReplicaWriter once its files are durable. */
  async commit(writer: ReplicaWriter, numBytes: number): Promise<void> {
    const previous = this.finalized.get(writer.blockId);
    const metaTarget = this.metaPath(writer.blockId, writer.generationStamp);
    await rename(writer.metaPath, metaTarget);
    await rename(writer.dataPath, this.blockPath(writer.blockId));
    if (previous && previous.generationStamp !== writer.generationStamp) {
      await rm(this.metaPath(previous.blockId, previous.generationStamp), { force: true });
    }
    await fsyncDir(this.finalizedDir);
    this.finalized.set(writer.blockId, {
      blockId: writer.blockId,
      generationStamp: writer.generationStamp,
      numBytes,
    });
  }

  async delete(blockId: number): Promise<boolean> {
    const replica = this.finalized.get(blockId);
    if (!replica) return false;
    this.finalized.delete(blockId);
    await rm(this.blockPath(blockId), { force: true });
    await rm(this.metaPath(blockId, replica.generationStamp), { force: true });
    return true;
  }

  /**
   * Yields `[offset, offset + length)` of a finalized replica, verifying every chunk the range
   * touches against the meta file before yielding it. A mismatch throws ChecksumException.
   */
  async *read(blockId: number, offset = 0, length?: number): AsyncGenerator<Buffer> {
    const replica = this.finalized.get(blockId);
    if (!replica) throw replicaNotFound(blockId);
    const end = Math.min(replica.numBytes, length === undefined ? replica.numBytes : offset + length);
    if (offset > replica.numBytes)
      throw new RemoteException(
        "IOException",
        `offset ${offset} beyond block ${blockId} length ${replica.numBytes}`,
      );
    let data: FileHandle;
    let meta: FileHandle;
    try {
      data = await open(this.blockPath(blockId), "r");
    } catch (error) {
      throw this.vanished(blockId, error);
    }
    try {
      meta = await open(this.metaPath(blockId, replica.generationStamp), "r");
    } catch (error) {
      await data.close();
      throw this.vanished(blockId, error);
    }
    try {
      const header = Buffer.alloc(HEADER_BYTES);
      await meta.read(header, 0, HEADER_BYTES, 0);
      const bytesPerChecksum = header.readUInt32BE(3);
      const lastChunk = Math.ceil(end / bytesPerChecksum);
      // One run of whole chunks and their sums, read into fresh buffers so the bytes can be
      // yielded without a copy while the next run is already being read.
      const readRun = async (chunk: number) => {
        const chunks = Math.min(READ_CHUNKS, lastChunk - chunk);
        const start = chunk * bytesPerChecksum;
        const want = Math.min(chunks * bytesPerChecksum, replica.numBytes - start);
        const buffer = Buffer.allocUnsafe(want);
        const sums = Buffer.allocUnsafe(chunks * 4);
        const [{ bytesRead }, { bytesRead: sumsRead }] = await Promise.all([
          data.read(buffer, 0, want, start),
          meta.read(sums, 0, chunks * 4, HEADER_BYTES + chunk * 4),
        ]);
        if (bytesRead !== want || sumsRead !== chunks * 4) {
          throw checksumError(blockId, start, "replica is shorter than its length");
        }
        return { chunk, chunks, start, buffer, sums };
      };
      let next: Promise<Awaited<ReturnType<typeof readRun>>> | undefined;
      try {
        let chunk = Math.floor(offset / bytesPerChecksum);
        if (chunk < lastChunk) next = readRun(chunk);
        while (next) {
          const run = await next;
          chunk += run.chunks;
          next = chunk < lastChunk ? readRun(chunk) : undefined;
          next?.catch(() => undefined);
          const bad = verifyChunkChecksums(run.buffer, run.sums, 0, bytesPerChecksum);
          if (bad >= 0) throw checksumError(blockId, run.start + bad * bytesPerChecksum, "checksum mismatch");
          const sliceFrom = Math.max(0, offset - run.start);
          const sliceTo = Math.min(run.buffer.length, end - run.start);
          yield run.buffer.subarray(sliceFrom, sliceTo);
        }
      } finally {
        // Never close the files under a read still in flight.
        await next?.catch(() => undefined);
      }
    } finally {
      await data.close();
      await meta.close();
    }
  }

  /** Like HDFS's DirectoryScanner finding a replica gone from disk: forget it and let the name node know. */
  private vanished(blockId: number, error: unknown): unknown {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") return error;
    this.finalized.delete(blockId);
    this.onVanished(blockId);
    return replicaNotFound(blockId);
  }

  /** Reads the whole replica, verifying every chunk (the block scanner's check). */
  async verify(blockId: number): Promise<void> {
    for await (const _ of this.read(blockId)) {
      // Reading is the verification.
    }
  }
}

/**
 * Bytes of a replica queued for its data file and not yet written: past this, `write` waits. The
 * socket keeps being read while the file write is in flight, and what arrives meanwhile goes to
 * the file in one writev, so a 128 MiB block costs a few hundred writes rather than one per
 * socket read, and the receiver never waits for the disk unless it falls this far behind.
 */
const MAX_WRITE_BACKLOG = 8 * 1024 * 1024;
/** Buffers per writev (Linux's IOV_MAX is 1024). */
const MAX_WRITEV_BUFFERS = 512;
/**
 * Bytes written to a replica's file between two background fdatasyncs while it is received. The
 * page cache would otherwise hold the whole block dirty until `finish`, whose one fsync then
 * writes all of it to the disk while the pipeline waits; flushed as it arrives, the disk works
 * while the network does, and the final fsync only has the tail left. Nothing is acknowledged
 * by these: `finish` still fsyncs both files before the replica counts.
 */
const WRITEBACK_BYTES = 16 * 1024 * 1024;

/**
 * Receives a replica's bytes in any slicing, checksumming every whole 512-byte chunk in one bulk
 * call per piece (crc32c's chunkChecksums) as they arrive, and writing them to the rbw file behind
 * the receiver. Nothing is durable, or acknowledged, before `finish` has fsynced both files.
 */
export class ReplicaWriter {
  private numBytes = 0;
  /** The chunk that the pieces so far end inside of: its first `partialLength` bytes. */
  private readonly partial = Buffer.allocUnsafe(BYTES_PER_CHECKSUM);
  private partialLength = 0;
  private readonly sums: Buffer[] = [];
  /** Received, checksummed, not yet handed to the file. */
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  /** Bytes handed to the file so far (the next write's position). */
  private filePosition = 0;
  private writing: Promise<void> | undefined;
  private writingBytes = 0;
  /** Bytes in the file at the last background fdatasync, and that sync while it runs. */
  private syncedPosition = 0;
  private syncing: Promise<void> | undefined;
  private failure: Error | undefined;
  private done = false;

  constructor(
    private readonly store: BlockStore,
    readonly blockId: number,
    readonly generationStamp: number,
    readonly dataPath: string,
    readonly metaPath: string,
    private readonly data: FileHandle,
    private readonly meta: FileHandle,
  ) {}

  /**
   * Checksums `bytes` and queues them for the file; resolves at once unless the file is behind
   * by MAX_WRITE_BACKLOG. The buffer is kept until written: the caller must not reuse it.
   */
  async write(bytes: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    this.checksum(bytes);
    this.numBytes += bytes.length;
    if (bytes.length > 0) {
      this.queued.push(bytes);
      this.queuedBytes += bytes.length;
    }
    this.startWrite();
    while (this.writing && this.queuedBytes + this.writingBytes >= MAX_WRITE_BACKLOG) await this.writing;
    if (this.failure) throw this.failure;
  }

  private checksum(bytes: Buffer): void {
    let input = bytes;
    if (this.partialLength > 0) {
      const head = input.subarray(0, BYTES_PER_CHECKSUM - this.partialLength);
      this.partial.set(head, this.partialLength);
      this.partialLength += head.length;
      input = input.subarray(head.length);
      if (this.partialLength < BYTES_PER_CHECKSUM) return;
      this.sums.push(chunkChecksums(this.partial));
      this.partialLength = 0;
    }
    const whole = input.length - (input.length % BYTES_PER_CHECKSUM);
    if (whole > 0) this.sums.push(chunkChecksums(input.subarray(0, whole)));
    if (whole < input.length) {
      this.partial.set(input.subarray(whole));
      this.partialLength = input.length - whole;
    }
  }

  /** Hands everything queued to the file in one writev, unless a write is in flight already. */
  private startWrite(): void {
    if (this.writing || this.queued.length === 0 || this.failure) return;
    const batch = this.queued.splice(0, MAX_WRITEV_BUFFERS);
    let bytes = 0;
    for (const buffer of batch) bytes += buffer.length;
    this.queuedBytes -= bytes;
    this.writingBytes = bytes;
    const position = this.filePosition;
    this.filePosition += bytes;
    this.writing = writeFully(this.data, batch, bytes, position).then(
      () => {
        this.writing = undefined;
        this.writingBytes = 0;
        this.startWriteback();
        this.startWrite();
      },
      (error: Error) => {
        this.writing = undefined;
        this.writingBytes = 0;
        this.failure = error;
      },
    );
  }

  /** Starts an fdatasync of what is in the file, once WRITEBACK_BYTES more are there and none runs. */
  private startWriteback(): void {
    if (this.syncing || this.done || this.filePosition - this.syncedPosition < WRITEBACK_BYTES) return;
    this.syncedPosition = this.filePosition;
    this.syncing = this.data.datasync().then(
      () => {
        this.syncing = undefined;
      },
      (error: Error) => {
        this.syncing = undefined;
        this.failure ??= error;
      },
    );
  }

  /** Resolves once every queued byte is in the file (not yet durable); throws a write's failure. */
  private async flushed(): Promise<void> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.writing) await this.writing;
      else if (this.queued.length > 0) this.startWrite();
      else return;
    }
  }

  /** Makes the replica durable and finalized; returns what upstream nodes compare against. */
  async finish(): Promise<FinishedReplica> {
    if (this.partialLength > 0) {
      this.sums.push(chunkChecksums(this.partial.subarray(0, this.partialLength)));
      this.partialLength = 0;
    }
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt16BE(META_VERSION, 0);
    header.writeUInt8(CHECKSUM_TYPE_CRC32C, 2);
    header.writeUInt32BE(BYTES_PER_CHECKSUM, 3);
    const sums = Buffer.concat(this.sums);
    await Promise.all([this.flushed(), writeFully(this.meta, [header, sums], HEADER_BYTES + sums.length, 0)]);
    await this.syncing;
    if (this.failure) throw this.failure;
    // Both files in one round: the kernel flushes them concurrently.
    await Promise.all([this.data.sync(), this.meta.sync()]);
    await Promise.all([this.data.close(), this.meta.close()]);
    this.done = true;
    await this.store.commit(this, this.numBytes);
    return {
      blockId: this.blockId,
      generationStamp: this.generationStamp,
      numBytes: this.numBytes,
      checksum: crc32c(sums),
    };
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.failure ??= new Error("replica write aborted");
    this.queued = [];
    await this.writing?.catch(() => undefined);
    await this.syncing;
    await this.data.close().catch(() => undefined);
    await this.meta.close().catch(() => undefined);
    await rm(this.dataPath, { force: true });
    await rm(this.metaPath, { force: true });
  }
}

/** writev until all `total` bytes of `buffers` are in the file at `position` (a writev may write less). */
async function writeFully(
  file: FileHandle,
  buffers: Buffer[],
  total: number,
  position: number,
): Promise<void> {
  let written = (await file.writev(buffers, position)).bytesWritten;
  while (written < total) {
    let skip = written;
    const rest: Buffer[] = [];
    for (const buffer of buffers) {
      if (skip >= buffer.length) skip -= buffer.length;
      else {
        rest.push(skip > 0 ? buffer.subarray(skip) : buffer);
        skip = 0;
      }
    }
    const { bytesWritten } = await file.writev(rest, position + written);
    if (bytesWritten === 0) throw new Error(`short write at ${position + written}`);
    written += bytesWritten;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export const replicaNotFound = (blockId: number) =>
  new RemoteException("ReplicaNotFoundException", `Replica not found for blk_${blockId}`);

const checksumError = (blockId: number, position: number, why: string) =>
  new RemoteException("ChecksumException", `Checksum error: blk_${blockId} at ${position}: ${why}`);
