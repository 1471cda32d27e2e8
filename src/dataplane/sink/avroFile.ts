import { createHash } from "node:crypto";
import { once } from "node:events";
import { crc32, deflateRaw } from "node:zlib";
import avro, { type Type } from "avsc";
import snappy from "snappyjs";
import {
  ChunkedOutput,
  type FileIdentity,
  type RecordFileWriter,
  type RecordFileWriterFactory,
} from "./format.js";
import type { SinkFile } from "./target.js";

export type AvroCodec = "null" | "deflate" | "snappy";

type Codec = (buffer: Buffer, callback: (error: Error | null, result?: Buffer) => void) => void;

const codecs: Record<AvroCodec, Codec> = {
  null: (buffer, callback) => callback(null, buffer),
  deflate: (buffer, callback) => deflateRaw(buffer, callback),
  // The Avro specification's snappy codec: each block is the snappy-compressed data followed by
  // the 4-byte big-endian CRC-32 of the uncompressed data.
  snappy: (buffer, callback) => {
    try {
      const compressed = snappy.compress(buffer);
      const block = Buffer.allocUnsafe(compressed.byteLength + 4);
      block.set(compressed, 0);
      block.writeUInt32BE(crc32(buffer), compressed.byteLength);
      callback(null, block);
    } catch (error) {
      callback(error as Error);
    }
  },
};

/** Decompressors for reading back what `codecs` wrote (tests, tools). */
export const avroDecoderCodecs: Record<AvroCodec, Codec> = {
  null: (buffer, callback) => callback(null, buffer),
  deflate: (buffer, callback) => avro.streams.BlockDecoder.defaultCodecs().deflate!(buffer, callback),
  snappy: (buffer, callback) => {
    try {
      callback(null, Buffer.from(snappy.uncompress(buffer.subarray(0, buffer.byteLength - 4))));
    } catch (error) {
      callback(error as Error);
    }
  },
};

/**
 * The sync marker separates blocks of a container file. Deriving it from the file's identity
 * instead of drawing it at random makes a file re-written from the same records byte for byte
 * the same file, which is what lets a repeat after a crash replace a file with itself.
 */
function syncMarker(identity: FileIdentity): Buffer {
  return createHash("sha256")
    .update(`${identity.topic}\0${identity.partition}\0${identity.firstOffset}`)
    .digest()
    .subarray(0, 16);
}

/** An Avro object container file (row oriented): avsc's BlockEncoder, blocks of `blockBytes`. */
class AvroFileWriter implements RecordFileWriter {
  private readonly encoder: InstanceType<typeof avro.streams.BlockEncoder>;
  private readonly output: ChunkedOutput;
  private encoderError: unknown;

  constructor(file: SinkFile, type: Type, identity: FileIdentity, codec: AvroCodec, blockBytes: number) {
    this.output = new ChunkedOutput(file);
    this.encoder = new avro.streams.BlockEncoder(type, {
      codec,
      codecs: codecs as unknown as avro.CodecOptions,
      blockSize: blockBytes,
      syncMarker: syncMarker(identity),
      writeHeader: "always",
    });
    this.encoder.on("data", (chunk: Buffer) => this.output.push(chunk));
    this.encoder.on("error", (error) => {
      this.encoderError ??= error;
    });
  }

  async append(record: unknown): Promise<void> {
    if (this.encoderError) throw this.encoderError;
    if (!this.encoder.write(record)) await once(this.encoder, "drain");
    if (this.output.congested) await this.output.drain();
  }

  estimatedBytes(): number {
    // The encoder's current block (at most blockBytes) is not counted: the roll size is a target,
    // not a bound, and a block is small against any sensible maxBytes.
    return this.output.totalBytes;
  }

  async finish(): Promise<void> {
    const ended = once(this.encoder, "end");
    this.encoder.end();
    await ended;
    if (this.encoderError) throw this.encoderError;
    await this.output.drain();
  }
}

export function avroFileWriterFactory(
  codec: AvroCodec = "null",
  blockBytes = 1 << 16,
): RecordFileWriterFactory {
  return (file, type, identity) => new AvroFileWriter(file, type, identity, codec, blockBytes);
}
