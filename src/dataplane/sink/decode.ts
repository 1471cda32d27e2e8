import type { Type } from "avsc";
import {
  readFrame,
  type SchemaRegistry,
  SchemaRegistryError,
  UnknownSchemaIdError,
} from "../avro/registry.js";

export interface DecodedRecord {
  ok: true;
  /** Identifies the writer schema; a file holds records of one schema key only. */
  schemaKey: string;
  type: Type;
  record: unknown;
}

export interface Undecodable {
  ok: false;
  /** Why the value could not be decoded, for the dead-letter record. */
  reason: string;
}

export interface RecordDecoder {
  decode(value: Buffer | null): Promise<DecodedRecord | Undecodable>;
}

/**
 * Values in the Confluent wire format (magic byte 0, 4-byte schema id, Avro binary), schemas
 * looked up by id in the schema registry. Each record keeps its writer schema: the files of a
 * schema id are written with that schema, and a new id rolls the file.
 */
export class ConfluentAvroDecoder implements RecordDecoder {
  private readonly types = new Map<number, Type>();

  constructor(private readonly registry: SchemaRegistry) {}

  async decode(value: Buffer | null): Promise<DecodedRecord | Undecodable> {
    if (value === null) return { ok: false, reason: "the message has no value (a tombstone)" };
    let id: number;
    try {
      id = readFrame(value).id;
    } catch (error) {
      return { ok: false, reason: (error as Error).message };
    }
    let type = this.types.get(id);
    if (!type) {
      try {
        type = await this.registry.typeById(id);
      } catch (error) {
        if (error instanceof UnknownSchemaIdError) return { ok: false, reason: error.message };
        // A registry that cannot be read is not the record's fault: stop rather than dead-letter.
        throw error;
      }
      this.types.set(id, type);
    }
    try {
      // fromBuffer refuses trailing bytes, so a body written with another schema rarely passes.
      const record = type.fromBuffer(value.subarray(readFrame(value).bodyOffset));
      return { ok: true, schemaKey: String(id), type, record };
    } catch (error) {
      const reason = error instanceof SchemaRegistryError ? error.message : (error as Error).message;
      return { ok: false, reason: `value does not decode with schema id ${id}: ${reason}` };
    }
  }
}

/**
 * Values that are JSON objects of a fixed Avro record schema (plain records, no registry):
 * for topics fed by other producers and for tests of the file writers.
 */
export class JsonRecordDecoder implements RecordDecoder {
  private readonly schemaKey: string;

  constructor(private readonly type: Type) {
    this.schemaKey = `json:${type.name ?? type.typeName}`;
  }

  async decode(value: Buffer | null): Promise<DecodedRecord | Undecodable> {
    if (value === null) return { ok: false, reason: "the message has no value (a tombstone)" };
    let parsed: unknown;
    try {
      parsed = JSON.parse(value.toString("utf8"));
    } catch (error) {
      return { ok: false, reason: `value is not JSON: ${(error as Error).message}` };
    }
    const problems: string[] = [];
    const valid = this.type.isValid(parsed, {
      errorHook: (path, found) =>
        problems.push(`${path.join(".") || "(record)"}: got ${JSON.stringify(found)}`),
    });
    if (!valid) {
      return {
        ok: false,
        reason: `value does not match schema ${this.type.name}: ${problems.slice(0, 3).join("; ")}`,
      };
    }
    return { ok: true, schemaKey: this.schemaKey, type: this.type, record: parsed };
  }
}
