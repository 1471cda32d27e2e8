import { gzipSync } from "node:zlib";
import type { Type, types } from "avsc";
import { ByteWriter, ParquetWriter, type SchemaElement } from "hyparquet-writer";
import {
  ChunkedOutput,
  type RecordFileWriter,
  type RecordFileWriterFactory,
  RecordRejectedError,
} from "./format.js";
import type { SinkFile } from "./target.js";

/*
 * Parquet through hyparquet-writer, not parquetjs-lite (the library the design first named),
 * measured by bench/sink.bench.ts on 200,000 clickstream rows (11 fields, `request` nested,
 * SNAPPY, row groups of 50,000, the shared 2-core test machine): hyparquet-writer wrote
 * 38,000-48,000 rows/s into a 4.7 MB file, parquetjs-lite 3,800-6,300 rows/s into 9.7 MB, 7.6
 * to 10 times the rate and half the size in the same runs, because hyparquet-writer
 * dictionary-encodes the repetitive string columns (user agents, paths, referrers) that
 * parquetjs-lite writes plain. Its time goes to snappy, column statistics and garbage
 * collection inside the library, not to this adapter.
 */

export type ParquetCodec = "snappy" | "gzip" | "uncompressed";

/** How one Avro field becomes one Parquet column (or group) and how its values are converted. */
interface ColumnPlan {
  name: string;
  /** Depth-first schema elements of this column, the first being the column itself. */
  elements: SchemaElement[];
  convert: (value: unknown) => unknown;
}

const identity = (value: unknown): unknown => value;
const nullable =
  (convert: (value: unknown) => unknown) =>
  (value: unknown): unknown =>
    value === null || value === undefined ? null : convert(value);

function logicalName(type: Type): string | undefined {
  return type.typeName.startsWith("logical:") ? type.typeName.slice("logical:".length) : undefined;
}

/**
 * Maps an Avro type to Parquet. Primitive types, enums, fixed and records (as groups) map
 * one-to-one; `["null", T]` becomes an OPTIONAL T; arrays, maps and unions of several
 * non-null branches become a JSON string column, which every Parquet reader can read.
 */
function planColumn(name: string, type: Type, optional: boolean, timestamp = false): ColumnPlan {
  const repetition_type = optional ? "OPTIONAL" : "REQUIRED";
  const wrap = (convert: (value: unknown) => unknown) => (optional ? nullable(convert) : convert);
  const leaf = (
    element: Omit<SchemaElement, "name" | "repetition_type">,
    convert = identity,
  ): ColumnPlan => ({
    name,
    elements: [{ name, repetition_type, ...element }],
    convert: wrap(convert),
  });
  const asJson = (): ColumnPlan =>
    leaf({ type: "BYTE_ARRAY", converted_type: "JSON" }, (value) => JSON.stringify(value, jsonReplacer));

  const logical = logicalName(type);
  if (logical === "timestamp-millis" || (timestamp && type.typeName === "long")) {
    return leaf(
      {
        type: "INT64",
        converted_type: "TIMESTAMP_MILLIS",
        logical_type: { type: "TIMESTAMP", isAdjustedToUTC: true, unit: "MILLIS" },
      },
      (value) => (value instanceof Date ? value.getTime() : value),
    );
  }
  if (logical !== undefined) return asJson();

  switch (type.typeName) {
    case "string":
      return leaf({ type: "BYTE_ARRAY", converted_type: "UTF8" });
    case "enum":
      return leaf({ type: "BYTE_ARRAY", converted_type: "UTF8" });
    case "boolean":
      return leaf({ type: "BOOLEAN" });
    case "int":
      return leaf({ type: "INT32" });
    case "long":
      return leaf({ type: "INT64" }, (value) => BigInt(value as number));
    case "float":
      return leaf({ type: "FLOAT" });
    case "double":
      return leaf({ type: "DOUBLE" });
    case "bytes":
      return leaf({ type: "BYTE_ARRAY" });
    case "fixed":
      return leaf({ type: "FIXED_LEN_BYTE_ARRAY", type_length: (type as types.FixedType).size });
    case "record": {
      const fields = (type as types.RecordType).fields.map((field) => planField(field.name, field.type));
      const convertRecord = (value: unknown): unknown => {
        const record = value as Record<string, unknown>;
        const converted: Record<string, unknown> = {};
        for (const field of fields) converted[field.name] = field.convert(record[field.name]);
        return converted;
      };
      return {
        name,
        elements: [
          { name, repetition_type, num_children: fields.length },
          ...fields.flatMap((f) => f.elements),
        ],
        convert: wrap(convertRecord),
      };
    }
    case "union:unwrapped":
    case "union:wrapped": {
      const branches = (type as types.UnwrappedUnionType).types;
      const nonNull = branches.filter((branch) => branch.typeName !== "null");
      if (nonNull.length === 1 && type.typeName === "union:unwrapped") {
        return planColumn(name, nonNull[0]!, true, timestamp);
      }
      return asJson();
    }
    default:
      return asJson();
  }
}

function planField(name: string, type: Type): ColumnPlan {
  return planColumn(name, type, false);
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (Buffer.isBuffer(value)) return value.toString("base64");
  return value;
}

/**
 * The Parquet schema of an Avro record type, and per column how to convert a decoded value.
 * `timestampFields` names top-level `long` fields to write as TIMESTAMP_MILLIS: avsc drops
 * logical types it has no implementation for (`timestamp-millis` among them) when it parses a
 * schema, so a registry's types no longer say which longs are times.
 */
export function parquetPlanFromAvro(
  type: Type,
  timestampFields: readonly string[] = [],
): { schema: SchemaElement[]; columns: ColumnPlan[] } {
  if (type.typeName !== "record") {
    throw new Error(`a Parquet sink needs an Avro record schema, got '${type.typeName}'`);
  }
  const columns = (type as types.RecordType).fields.map((field) =>
    planColumn(field.name, field.type, false, timestampFields.includes(field.name)),
  );
  const schema: SchemaElement[] = [
    { name: "root", num_children: columns.length },
    ...columns.flatMap((c) => c.elements),
  ];
  return { schema, columns };
}

/**
 * A ByteWriter whose bytes leave for the file after every row group, so memory holds one row
 * group of encoded columns at most, never the file.
 */
class StreamingByteWriter extends ByteWriter {
  constructor(private readonly output: ChunkedOutput) {
    super(1 << 20);
  }

  flush(): void {
    if (this.index === 0) return;
    // Copy: the buffer is reused for the next row group as soon as index is reset.
    this.output.push(new Uint8Array(this.buffer.slice(0, this.index)));
    this.index = 0;
  }

  override finish(): void {
    this.flush();
  }
}

/**
 * A Parquet file (column oriented) with column statistics (min, max, null count per column
 * chunk). Rows are kept as column arrays until `rowGroupRows` of them are buffered, then
 * encoded as one row group.
 */
class ParquetFileWriter implements RecordFileWriter {
  private readonly output: ChunkedOutput;
  private readonly writer: ParquetWriter;
  private readonly columns: ColumnPlan[];
  private readonly kvMetadata: { key: string; value: string }[];
  private buffered: unknown[][];
  private readonly converted: unknown[] = [];
  private bufferedRows = 0;
  private bufferedEncodedBytes = 0;
  private flushedEncodedBytes = 0;

  constructor(
    file: SinkFile,
    type: Type,
    private readonly rowGroupRows: number,
    codec: ParquetCodec,
    timestampFields: readonly string[],
  ) {
    const plan = parquetPlanFromAvro(type, timestampFields);
    this.columns = plan.columns;
    this.buffered = this.columns.map(() => []);
    this.output = new ChunkedOutput(file);
    this.kvMetadata = [{ key: "avro.schema", value: JSON.stringify(type.schema({ exportAttrs: true })) }];
    this.writer = new ParquetWriter({
      writer: new StreamingByteWriter(this.output),
      schema: plan.schema,
      codec: codec === "snappy" ? "SNAPPY" : codec === "gzip" ? "GZIP" : "UNCOMPRESSED",
      compressors: { GZIP: (input) => gzipSync(input) },
      statistics: true,
      kvMetadata: this.kvMetadata,
      createdBy: "tributary sink (hyparquet-writer)",
    });
  }

  async append(record: unknown, encodedSize: number): Promise<void> {
    const row = record as Record<string, unknown>;
    const converted = this.converted;
    for (let i = 0; i < this.columns.length; i++) {
      const column = this.columns[i]!;
      try {
        converted[i] = column.convert(row[column.name]);
      } catch (error) {
        throw new RecordRejectedError(
          `field '${column.name}' cannot be written to Parquet: ${(error as Error).message}`,
        );
      }
    }
    // Only a row whose every column converted is buffered: the columns stay the same length.
    for (let i = 0; i < converted.length; i++) this.buffered[i]!.push(converted[i]);
    this.bufferedRows++;
    this.bufferedEncodedBytes += encodedSize;
    if (this.bufferedRows >= this.rowGroupRows) await this.writeRowGroup();
  }

  estimatedBytes(): number {
    // Buffered rows are estimated at the compression ratio the file's earlier row groups achieved
    // (1:1 before the first row group, an overestimate that only makes the first file smaller).
    const written = this.output.totalBytes;
    const ratio = this.flushedEncodedBytes > 0 ? written / this.flushedEncodedBytes : 1;
    return written + this.bufferedEncodedBytes * ratio;
  }

  async finish(metadata: Record<string, string>): Promise<void> {
    if (this.bufferedRows > 0) await this.writeRowGroup();
    for (const [key, value] of Object.entries(metadata)) this.kvMetadata.push({ key, value });
    await this.writer.finish();
    await this.output.drain();
  }

  private async writeRowGroup(): Promise<void> {
    const columnData = this.columns.map((column, i) => ({ name: column.name, data: this.buffered[i]! }));
    await this.writer.write({ columnData, rowGroupSize: this.bufferedRows });
    this.flushedEncodedBytes += this.bufferedEncodedBytes;
    this.buffered = this.columns.map(() => []);
    this.bufferedRows = 0;
    this.bufferedEncodedBytes = 0;
    if (this.output.congested) await this.output.drain();
  }
}

export interface ParquetOptions {
  /** Rows per row group: the unit a reader skips by statistics, and what the sink holds in memory. */
  rowGroupRows?: number;
  codec?: ParquetCodec;
  timestampFields?: readonly string[];
}

export function parquetFileWriterFactory(options: ParquetOptions = {}): RecordFileWriterFactory {
  const { rowGroupRows = 50_000, codec = "snappy", timestampFields = [] } = options;
  if (!Number.isInteger(rowGroupRows) || rowGroupRows < 1) {
    throw new Error(`Parquet row group size must be a positive number of rows, got ${rowGroupRows}`);
  }
  return (file, type) => new ParquetFileWriter(file, type, rowGroupRows, codec, timestampFields);
}
