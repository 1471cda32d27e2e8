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
import { BYTES_PER_CHECKSUM, crc32c } from "../crc32c.js";
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
      let chunk = Math.floor(offset / bytesPerChecksum);
      const lastChunk = Math.ceil(end / bytesPerChecksum);
      const buffer = Buffer.allocUnsafe(READ_CHUNKS * bytesPerChecksum);
      const sums = Buffer.allocUnsafe(READ_CHUNKS * 4);
      while (chunk < lastChunk) {
        const chunks = Math.min(READ_CHUNKS, lastChunk - chunk);
        const start = chunk * bytesPerChecksum;
        const want = Math.min(chunks * bytesPerChecksum, replica.numBytes - start);
        const { bytesRead } = await data.read(buffer, 0, want, start);
        const { bytesRead: sumsRead } = await meta.read(sums, 0, chunks * 4, HEADER_BYTES + chunk * 4);
        if (bytesRead !== want || sumsRead !== chunks * 4) {
          throw checksumError(blockId, start, "replica is shorter than its length");
        }
        for (let c = 0; c < chunks; c++) {
          const from = c * bytesPerChecksum;
          const to = Math.min(want, from + bytesPerChecksum);
          if (crc32c(buffer, 0, from, to) !== sums.readUInt32BE(c * 4)) {
            throw checksumError(blockId, start + from, "checksum mismatch");
          }
        }
        const sliceFrom = Math.max(0, offset - start);
        const sliceTo = Math.min(want, end - start);
        yield Buffer.from(buffer.subarray(sliceFrom, sliceTo));
        chunk += chunks;
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

/** Receives a replica's bytes in any slicing, checksumming per 512-byte chunk as they arrive. */
export class ReplicaWriter {
  private numBytes = 0;
  private partial = Buffer.alloc(0);
  private readonly sums: Buffer[] = [];
  private sumsPending: number[] = [];
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

  async write(bytes: Buffer): Promise<void> {
    let input = bytes;
    if (this.partial.length > 0) {
      const need = BYTES_PER_CHECKSUM - this.partial.length;
      const head = input.subarray(0, need);
      this.partial = Buffer.concat([this.partial, head]);
      input = input.subarray(head.length);
      if (this.partial.length === BYTES_PER_CHECKSUM) {
        this.sumsPending.push(crc32c(this.partial));
        this.partial = Buffer.alloc(0);
      }
    }
    const whole = input.length - (input.length % BYTES_PER_CHECKSUM);
    for (let at = 0; at < whole; at += BYTES_PER_CHECKSUM) {
      this.sumsPending.push(crc32c(input, 0, at, at + BYTES_PER_CHECKSUM));
    }
    if (whole < input.length) this.partial = Buffer.from(input.subarray(whole));
    this.flushSums();
    await this.data.write(bytes);
    this.numBytes += bytes.length;
  }

  private flushSums(): void {
    if (this.sumsPending.length === 0) return;
    const out = Buffer.allocUnsafe(this.sumsPending.length * 4);
    for (const [i, sum] of this.sumsPending.entries()) out.writeUInt32BE(sum, i * 4);
    this.sums.push(out);
    this.sumsPending = [];
  }

  /** Makes the replica durable and finalized; returns what upstream nodes compare against. */
  async finish(): Promise<FinishedReplica> {
    if (this.partial.length > 0) {
      this.sumsPending.push(crc32c(this.partial));
      this.partial = Buffer.alloc(0);
    }
    this.flushSums();
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt16BE(META_VERSION, 0);
    header.writeUInt8(CHECKSUM_TYPE_CRC32C, 2);
    header.writeUInt32BE(BYTES_PER_CHECKSUM, 3);
    const sums = Buffer.concat(this.sums);
    await this.meta.write(Buffer.concat([header, sums]));
    await this.data.sync();
    await this.meta.sync();
    await this.data.close();
    await this.meta.close();
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
    await this.data.close().catch(() => undefined);
    await this.meta.close().catch(() => undefined);
    await rm(this.dataPath, { force: true });
    await rm(this.metaPath, { force: true });
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
