import type { Type } from "avsc";
import type { SinkFile } from "./target.js";

/**
 * A writer of one sink file in one format. Records are the values an avsc `Type` decodes to
 * (unions of null and one type unwrapped, longs as numbers); `encodedSize` is the record's
 * size on the wire, used to estimate the size of what is still buffered.
 */
export interface RecordFileWriter {
  append(record: unknown, encodedSize: number): Promise<void>;
  /** Bytes already in the file plus an estimate of the bytes still buffered for it. */
  estimatedBytes(): number;
  /** Writes everything still buffered and the file's trailer; the caller then closes the file durably. */
  finish(metadata: Record<string, string>): Promise<void>;
}

/** A record the format cannot hold although it decoded; it goes to the dead-letter topic. */
export class RecordRejectedError extends Error {
  override name = "RecordRejectedError";
}

export interface FileIdentity {
  topic: string;
  partition: number;
  firstOffset: bigint;
}

export type RecordFileWriterFactory = (
  file: SinkFile,
  type: Type,
  identity: FileIdentity,
) => RecordFileWriter;

/**
 * Collects small encoder outputs into larger writes: one `write` per chunk of about `chunkBytes`
 * keeps the number of syscalls (or WebHDFS appends) low whatever the encoder emits.
 */
export class ChunkedOutput {
  private chunks: Uint8Array[] = [];
  private pendingBytes = 0;
  private inFlightBytes = 0;
  private writing: Promise<void> = Promise.resolve();
  private failure: unknown;

  constructor(
    private readonly file: SinkFile,
    private readonly chunkBytes = 1 << 20,
  ) {}

  /** Bytes accepted so far, written or not. */
  get totalBytes(): number {
    return this.file.bytesWritten + this.pendingBytes + this.inFlightBytes;
  }

  push(bytes: Uint8Array): void {
    // Kept by reference: callers hand over bytes they no longer touch.
    this.chunks.push(bytes);
    this.pendingBytes += bytes.byteLength;
    if (this.pendingBytes >= this.chunkBytes) this.startWrite();
  }

  /** Resolves once everything pushed so far is written; rethrows the first write error. */
  async drain(): Promise<void> {
    this.startWrite();
    await this.writing;
    if (this.failure) throw this.failure;
  }

  /** Whether the caller should wait before pushing more (bounded memory under a slow disk). */
  get congested(): boolean {
    return this.inFlightBytes + this.pendingBytes > 4 * this.chunkBytes;
  }

  private startWrite(): void {
    if (this.pendingBytes === 0) return;
    const bytes = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.pendingBytes);
    const size = this.pendingBytes;
    this.chunks = [];
    this.pendingBytes = 0;
    this.inFlightBytes += size;
    this.writing = this.writing.then(async () => {
      try {
        if (!this.failure) await this.file.write(bytes);
      } catch (error) {
        this.failure ??= error;
      } finally {
        this.inFlightBytes -= size;
      }
    });
  }
}
