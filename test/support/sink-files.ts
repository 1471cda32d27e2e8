import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { gunzipSync } from "node:zlib";
import avro from "avsc";
import { type AsyncBuffer, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { avroDecoderCodecs } from "../../src/dataplane/sink/avroFile.js";

/** An AsyncBuffer over a local file that counts the bytes the reader asked for. */
export async function countingFile(
  path: string,
): Promise<{ file: AsyncBuffer; bytesRead: () => number; close: () => Promise<void> }> {
  const { size } = await stat(path);
  const handle = await open(path, "r");
  let bytesRead = 0;
  const file: AsyncBuffer = {
    byteLength: size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const stop = end ?? size;
      const buffer = Buffer.alloc(stop - start);
      await handle.read(buffer, 0, buffer.byteLength, start);
      bytesRead += buffer.byteLength;
      return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
    },
  };
  return {
    file,
    bytesRead: () => bytesRead,
    close: () => handle.close(),
  };
}

/** Reads a Parquet file with hyparquet (an independent reader); `columns` limits what is read. */
export async function readParquet(
  path: string,
  columns?: string[],
): Promise<{ rows: Record<string, unknown>[]; bytesRead: number }> {
  const { file, bytesRead, close } = await countingFile(path);
  try {
    // A small first fetch, so the count shows the column chunks read rather than a footer guess.
    const metadata = await parquetMetadataAsync(file, { initialFetchSize: 16 * 1024 });
    const rows = await parquetReadObjects({
      file,
      metadata,
      compressors: { GZIP: (input: Uint8Array) => new Uint8Array(gunzipSync(input)) },
      ...(columns ? { columns } : {}),
    });
    return { rows, bytesRead: bytesRead() };
  } finally {
    await close();
  }
}

/** Reads an Avro container file with avsc's block decoder; a row format reads every byte. */
export async function readAvro(
  path: string,
): Promise<{ rows: Record<string, unknown>[]; bytesRead: number; schema: unknown }> {
  let bytesRead = 0;
  const rows: Record<string, unknown>[] = [];
  let schema: unknown;
  await new Promise<void>((resolve, reject) => {
    const decoder = new avro.streams.BlockDecoder({
      codecs: avroDecoderCodecs as unknown as avro.CodecOptions,
    });
    decoder.on("metadata", (type: avro.Type) => {
      schema = type.schema();
    });
    decoder.on("data", (row: Record<string, unknown>) => rows.push(row));
    decoder.on("end", resolve);
    decoder.on("error", reject);
    const stream = createReadStream(path);
    stream.on("data", (chunk) => {
      bytesRead += chunk.length;
    });
    stream.on("error", reject);
    stream.pipe(decoder);
  });
  return { rows, bytesRead, schema };
}
