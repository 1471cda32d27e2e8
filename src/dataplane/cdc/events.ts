/**
 * Debezium's change-event envelope for one captured table: the key (primary key columns), the
 * value `{before, after, source, op, ts_ms, transaction}`, and their encoding as Debezium's JSON
 * without schemas or as Avro in Confluent's wire format with subjects `<topic>-key` and
 * `<topic>-value` in the schema registry Topic already keeps.
 */

import type { Logger } from "../../log.js";
import {
  IncompatibleSchemaError,
  type RegisteredSchema,
  type SchemaRegistry,
  subjectForTopic,
} from "../avro/registry.js";
import type { TupleValue } from "./pgoutput.js";
import { UNCHANGED_TOAST } from "./pgoutput.js";
import type { Converter, Format, TypeCatalog } from "./values.js";

export const CONNECTOR_VERSION = "tributary-0.1.0";

export type Op = "c" | "u" | "d" | "r" | "t";

export interface SourceInfo {
  version: string;
  connector: "postgresql";
  name: string;
  ts_ms: number;
  snapshot: "true" | "false" | "first" | "last" | "incremental";
  db: string;
  sequence: string | null;
  schema: string;
  table: string;
  txId: number | null;
  lsn: number | null;
  xmin: number | null;
}

export interface TransactionInfo {
  id: string;
  total_order: number;
  data_collection_order: number;
}

export type Row = Record<string, unknown>;

const avroName = (text: string) => {
  const cleaned = text.replace(/[^A-Za-z0-9_]/g, "_");
  return /^[A-Za-z_]/.test(cleaned) ? cleaned : `_${cleaned}`;
};

/** Everything the connector knows about one captured table's current shape. */
export class TableCodec {
  readonly topic: string;
  readonly id: string;
  private converters: Converter[] = [];
  private unavailable: unknown[] = [];
  private names: string[] = [];
  private keyIndexes: number[] = [];
  private keySchema: RegisteredSchema | undefined;
  private valueSchema: RegisteredSchema | undefined;
  private shape = "";

  constructor(
    readonly schema: string,
    readonly table: string,
    topicPrefix: string,
    private readonly format: Format,
    private readonly catalog: TypeCatalog,
    /** Primary key columns from the catalog; the relation's key flags are the replica identity. */
    private primaryKey: string[],
  ) {
    this.topic = `${topicPrefix}.${schema}.${table}`;
    this.id = `${schema}.${table}`;
  }

  get hasKey(): boolean {
    return this.keyIndexes.length > 0;
  }

  get columnNames(): readonly string[] {
    return this.names;
  }

  setPrimaryKey(columns: string[]): void {
    this.primaryKey = columns;
  }

  /**
   * Adopts a relation's columns (from a pgoutput Relation message or a snapshot's field list).
   * Returns true when the shape changed, so an Avro codec must register new schemas.
   */
  adopt(columns: { name: string; typeOid: number }[]): boolean {
    this.names = columns.map((c) => c.name);
    this.converters = columns.map((c) => this.catalog.converter(c.typeOid, this.format));
    this.unavailable = columns.map((c) => this.catalog.unavailable(c.typeOid, this.format));
    this.keyIndexes = this.primaryKey.map((name) => this.names.indexOf(name)).filter((i) => i >= 0);
    if (this.keyIndexes.length !== this.primaryKey.length) this.keyIndexes = [];
    const shape = JSON.stringify([columns.map((c) => [c.name, c.typeOid]), this.keyIndexes]);
    const changed = shape !== this.shape;
    this.shape = shape;
    if (changed && this.format === "avro") {
      this.keySchema = undefined;
      this.valueSchema = undefined;
      this.pendingColumns = columns;
    }
    return changed;
  }

  private pendingColumns: { name: string; typeOid: number }[] | undefined;

  /** Registers the Avro key and value schemas of the current shape (after `adopt` changed it). */
  async register(registry: SchemaRegistry, log: Logger): Promise<void> {
    const columns = this.pendingColumns;
    if (this.format !== "avro" || !columns) return;
    const namespace = this.topic.split(".").map(avroName).join(".");
    const valueRecord = {
      type: "record",
      name: "Value",
      namespace,
      fields: columns.map((c) => ({
        name: avroName(c.name),
        type: ["null", this.catalog.avroSchema(c.typeOid)],
        default: null,
      })),
    };
    const envelope = {
      type: "record",
      name: "Envelope",
      namespace,
      "connect.name": `${this.topic}.Envelope`,
      fields: [
        { name: "before", type: ["null", valueRecord], default: null },
        { name: "after", type: ["null", `${namespace}.Value`], default: null },
        { name: "source", type: sourceAvroSchema },
        { name: "op", type: "string" },
        { name: "ts_ms", type: ["null", "long"], default: null },
        { name: "transaction", type: ["null", transactionAvroSchema], default: null },
      ],
    };
    const register = async (subject: string, schema: object) => {
      try {
        return await registry.register(subject, schema);
      } catch (error) {
        if (!(error instanceof IncompatibleSchemaError)) throw error;
        // The table already changed in the database; refusing its events would stop the stream
        // for good. The new version is registered and the break is logged for the consumers.
        log.warn({ subject, err: error }, "table change is not backward compatible; registering anyway");
        return registry.register(subject, schema, { compatibility: "NONE" });
      }
    };
    this.valueSchema = await register(subjectForTopic(this.topic), envelope);
    if (this.keyIndexes.length > 0) {
      const keyRecord = {
        type: "record",
        name: "Key",
        namespace,
        fields: this.keyIndexes.map((i) => ({
          name: avroName(columns[i]!.name),
          type: this.catalog.avroSchema(columns[i]!.typeOid),
        })),
      };
      this.keySchema = await register(`${this.topic}-key`, keyRecord);
    }
    this.pendingColumns = undefined;
  }

  get needsRegistration(): boolean {
    return this.pendingColumns !== undefined;
  }

  /** A tuple from pgoutput as a row; `fallback` (the old row) fills unchanged TOAST values. */
  tupleRow(values: TupleValue[], fallback?: Row | null): Row {
    const row: Row = {};
    const names = this.names;
    for (let i = 0; i < names.length; i++) {
      const value = values[i];
      const name = this.format === "avro" ? avroName(names[i]!) : names[i]!;
      if (value === null || value === undefined) row[name] = null;
      else if (value === UNCHANGED_TOAST) {
        const old = fallback?.[name];
        row[name] =
          old !== undefined && old !== null && old !== this.unavailable[i] ? old : this.unavailable[i];
      } else row[name] = this.converters[i]!(value);
    }
    return row;
  }

  /** A snapshot row (text values by column position, as `pg` returns them in array mode). */
  textRow(values: (string | null)[]): Row {
    return this.tupleRow(values);
  }

  private fieldConverters: { signature: string; converters: Converter[]; names: string[] } | undefined;

  /**
   * A row read by a query whose columns may differ from the stream's current relation (a column
   * added since the last Relation message): each value is converted by its own field's type.
   */
  fieldsRow(fields: { name: string; typeOid: number }[], values: (string | null)[]): Row {
    const signature = JSON.stringify(fields);
    if (this.fieldConverters?.signature !== signature) {
      this.fieldConverters = {
        signature,
        converters: fields.map((f) => this.catalog.converter(f.typeOid, this.format)),
        names: fields.map((f) => (this.format === "avro" ? avroName(f.name) : f.name)),
      };
    }
    const { converters, names } = this.fieldConverters;
    const row: Row = {};
    for (let i = 0; i < names.length; i++) {
      const value = values[i];
      row[names[i]!] = value === null || value === undefined ? null : converters[i]!(value);
    }
    return row;
  }

  /** The key of a row, or null for a table without primary key. */
  key(row: Row): Row | null {
    if (this.keyIndexes.length === 0) return null;
    const key: Row = {};
    for (const i of this.keyIndexes) {
      const name = this.format === "avro" ? avroName(this.names[i]!) : this.names[i]!;
      key[name] = row[name];
    }
    return key;
  }

  /** True when the key of `before` is unknown (the old tuple had no key values). */
  keyText(row: Row | null): string {
    return row ? JSON.stringify(this.key(row)) : "null";
  }

  encodeKey(key: Row | null): string | Buffer | null {
    if (key === null) return null;
    if (this.format === "json") return JSON.stringify(key);
    return encodeAvro(this.keySchema!, key);
  }

  encodeValue(value: ChangeValue | null): string | Buffer | null {
    if (value === null) return null;
    if (this.format === "json") return JSON.stringify(value);
    return encodeAvro(this.valueSchema!, value);
  }
}

function encodeAvro(registered: RegisteredSchema, value: unknown): Buffer {
  const body = registered.type.toBuffer(value);
  const framed = Buffer.allocUnsafe(5 + body.length);
  framed[0] = 0;
  framed.writeInt32BE(registered.id, 1);
  body.copy(framed, 5);
  return framed;
}

export interface ChangeValue {
  before: Row | null;
  after: Row | null;
  source: SourceInfo;
  op: Op;
  ts_ms: number;
  transaction: TransactionInfo | null;
}

const sourceAvroSchema = {
  type: "record",
  name: "Source",
  namespace: "io.debezium.connector.postgresql",
  fields: [
    { name: "version", type: "string" },
    { name: "connector", type: "string" },
    { name: "name", type: "string" },
    { name: "ts_ms", type: "long" },
    { name: "snapshot", type: ["null", "string"], default: null },
    { name: "db", type: "string" },
    { name: "sequence", type: ["null", "string"], default: null },
    { name: "schema", type: "string" },
    { name: "table", type: "string" },
    { name: "txId", type: ["null", "long"], default: null },
    { name: "lsn", type: ["null", "long"], default: null },
    { name: "xmin", type: ["null", "long"], default: null },
  ],
};

const transactionAvroSchema = {
  type: "record",
  name: "ConnectDefault",
  namespace: "io.debezium.connector.common",
  fields: [
    { name: "id", type: "string" },
    { name: "total_order", type: "long" },
    { name: "data_collection_order", type: "long" },
  ],
};
