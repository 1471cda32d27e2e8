/**
 * PostgreSQL column values (their text form) to the values of Debezium's PostgreSQL connector with
 * its default settings, and the Avro types that hold them:
 *
 * | PostgreSQL | JSON / Avro value | Debezium semantic type |
 * | --- | --- | --- |
 * | boolean, smallint, integer, bigint, real, double | boolean / number (int, long, float, double) | |
 * | numeric, money | string, exact ("1234.5600") | decimal.handling.mode=string |
 * | timestamptz | ISO-8601 UTC string `2024-05-01T10:00:00.123456Z` | io.debezium.time.ZonedTimestamp |
 * | timestamp | microseconds since the epoch (long) | io.debezium.time.MicroTimestamp |
 * | date | days since the epoch (int) | io.debezium.time.Date |
 * | time | microseconds since midnight (long) | io.debezium.time.MicroTime |
 * | timetz | string `10:00:00.5Z` | io.debezium.time.ZonedTime |
 * | json, jsonb | the JSON text as a string | io.debezium.data.Json |
 * | uuid, enum, interval (ISO 8601), text and the rest | string | |
 * | bytea | base64 string in JSON, bytes in Avro | |
 * | arrays | arrays of the element's value (nested for more dimensions) | |
 *
 * The session that produces the text (replication or snapshot) runs with DateStyle ISO, TimeZone
 * UTC, IntervalStyle iso_8601, bytea_output hex and extra_float_digits 3 (sessionOptions), so the
 * text forms parsed here are the only ones that occur.
 */
import type { Client } from "pg";

export type Format = "json" | "avro";

/** Debezium's placeholder for a TOASTed value that an UPDATE did not change and pgoutput did not send. */
export const UNAVAILABLE_VALUE = "__debezium_unavailable_value";

/** libpq `options` that fix the text forms this module parses. */
export const sessionOptions =
  "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 -c bytea_output=hex -c extra_float_digits=3";

interface PgType {
  oid: number;
  name: string;
  /** pg_type.typcategory: A array, B boolean, N numeric, D date/time, E enum, S string, U user... */
  category: string;
  elem: number;
  base: number;
}

export type Converter = (text: string) => unknown;

const MICROS_PER_DAY = 86_400_000_000;

function fraction(text: string | undefined): number {
  if (!text) return 0;
  return Number(`${text}000000`.slice(0, 6));
}

/** `2024-01-02 03:04:05.123456` (optionally ` BC`) → microseconds since 1970-01-01. */
export function timestampMicros(text: string): number {
  if (text === "infinity") return Number.MAX_SAFE_INTEGER;
  if (text === "-infinity") return Number.MIN_SAFE_INTEGER;
  const match =
    /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([+-]\d\d(?::\d\d){0,2})?( BC)?$/.exec(text);
  if (!match) throw new Error(`unexpected timestamp text '${text}'`);
  let year = Number(match[1]);
  if (match[9]) year = 1 - year;
  const ms = Date.UTC(
    0,
    Number(match[2]) - 1,
    Number(match[3]),
    Number(match[4]),
    Number(match[5]),
    Number(match[6]),
  );
  // Date.UTC maps years 0-99 to 1900-1999; set the year apart.
  const date = new Date(ms);
  date.setUTCFullYear(year);
  // A timestamptz in a session that is not in UTC carries an offset: UTC = local - offset.
  let offsetSeconds = 0;
  if (match[8]) {
    const [h = "0", m = "0", sec = "0"] = match[8].slice(1).split(":");
    offsetSeconds = (match[8][0] === "-" ? -1 : 1) * (Number(h) * 3600 + Number(m) * 60 + Number(sec));
  }
  return (date.getTime() - offsetSeconds * 1000) * 1000 + fraction(match[7]);
}

/** `2024-01-02 03:04:05.123456+00` → `2024-01-02T03:04:05.123456Z` (the session runs in UTC). */
export function timestamptzIso(text: string): string {
  if (text === "infinity" || text === "-infinity") return text;
  const match = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d(?::\d\d){0,2})( BC)?$/.exec(text);
  if (!match) return text;
  if (match[3] === "+00" && !match[4]) return `${match[1]}T${match[2]}Z`;
  // An offset other than UTC or a BC date: go through microseconds, which keeps the instant.
  const micros = timestampMicros(text);
  const iso = new Date(Math.floor(micros / 1000)).toISOString();
  const sub = String(((micros % 1_000_000) + 1_000_000) % 1_000_000).padStart(6, "0");
  return `${iso.slice(0, 19)}.${sub}Z`;
}

export function dateDays(text: string): number {
  if (text === "infinity") return 2_147_483_647;
  if (text === "-infinity") return -2_147_483_648;
  return Math.floor(
    timestampMicros(`${text.replace(/ BC$/, "")} 00:00:00${text.endsWith(" BC") ? " BC" : ""}`) /
      MICROS_PER_DAY,
  );
}

export function timeMicros(text: string): number {
  const match = /^(\d\d):(\d\d):(\d\d)(?:\.(\d+))?$/.exec(text);
  if (!match) throw new Error(`unexpected time text '${text}'`);
  return (
    ((Number(match[1]) * 60 + Number(match[2])) * 60 + Number(match[3])) * 1_000_000 + fraction(match[4])
  );
}

function timetzText(text: string): string {
  return text.replace(/\+00$/, "Z");
}

/** PostgreSQL's array literal `{1,NULL,"a b",{2,3}}` → nested arrays of element texts (null for NULL). */
export function parseArrayLiteral(text: string, delimiter = ","): unknown[] {
  let position = 0;
  // A dimension decoration `[1:2]={...}` precedes arrays with non-default bounds.
  if (text[0] === "[") position = text.indexOf("=") + 1;
  const parse = (): unknown[] => {
    const items: unknown[] = [];
    position++; // '{'
    if (text[position] === "}") {
      position++;
      return items;
    }
    for (;;) {
      const c = text[position];
      if (c === "{") {
        items.push(parse());
      } else if (c === '"') {
        position++;
        let value = "";
        while (text[position] !== '"') {
          if (text[position] === "\\") position++;
          value += text[position++];
        }
        position++;
        items.push(value);
      } else {
        let end = position;
        while (text[end] !== delimiter && text[end] !== "}") end++;
        const raw = text.slice(position, end);
        items.push(raw === "NULL" ? null : raw);
        position = end;
      }
      if (text[position] === delimiter) {
        position++;
        continue;
      }
      position++; // '}'
      return items;
    }
  };
  return parse();
}

const byName: Record<string, { json: Converter; avro: Converter; schema: unknown }> = (() => {
  const number: Converter = (text) => Number(text);
  const string: Converter = (text) => text;
  const hex = (text: string) => Buffer.from(text.slice(2), "hex");
  const entry = (convert: Converter, schema: unknown) => ({ json: convert, avro: convert, schema });
  return {
    bool: entry((text) => text === "t", "boolean"),
    int2: entry(number, "int"),
    int4: entry(number, "int"),
    int8: entry(number, "long"),
    oid: entry(number, "long"),
    float4: entry(number, "float"),
    float8: entry(number, "double"),
    numeric: entry(string, { type: "string", "connect.name": "io.debezium.data.VariableScaleDecimal" }),
    timestamptz: entry(timestamptzIso, { type: "string", "connect.name": "io.debezium.time.ZonedTimestamp" }),
    timestamp: entry(timestampMicros, { type: "long", "connect.name": "io.debezium.time.MicroTimestamp" }),
    date: entry(dateDays, { type: "int", "connect.name": "io.debezium.time.Date" }),
    time: entry(timeMicros, { type: "long", "connect.name": "io.debezium.time.MicroTime" }),
    timetz: entry(timetzText, { type: "string", "connect.name": "io.debezium.time.ZonedTime" }),
    json: entry(string, { type: "string", "connect.name": "io.debezium.data.Json" }),
    jsonb: entry(string, { type: "string", "connect.name": "io.debezium.data.Json" }),
    uuid: entry(string, { type: "string", "connect.name": "io.debezium.data.Uuid" }),
    bytea: { json: (text) => hex(text).toString("base64"), avro: hex, schema: "bytes" },
  };
})();

interface Entry {
  json: Converter;
  avro: Converter;
  schema: unknown;
}
const stringEntry: Entry = { json: (text) => text, avro: (text) => text, schema: "string" };

/** The server's types (pg_type), loaded once and again when a relation names an unknown one (a new enum). */
export class TypeCatalog {
  private readonly types = new Map<number, PgType>();

  async load(client: Client): Promise<void> {
    const result = await client.query<{
      oid: string;
      typname: string;
      typcategory: string;
      typelem: string;
      typbasetype: string;
    }>("SELECT oid, typname, typcategory, typelem, typbasetype FROM pg_type");
    for (const row of result.rows) {
      this.types.set(Number(row.oid), {
        oid: Number(row.oid),
        name: row.typname,
        category: row.typcategory,
        elem: Number(row.typelem),
        base: Number(row.typbasetype),
      });
    }
  }

  has(oid: number): boolean {
    return this.types.has(oid);
  }

  name(oid: number): string {
    return this.types.get(oid)?.name ?? String(oid);
  }

  private entryOf(oid: number): Entry {
    let type = this.types.get(oid);
    // A domain reads as its base type.
    while (type && type.base !== 0) type = this.types.get(type.base);
    if (!type) return stringEntry;
    return byName[type.name] ?? stringEntry;
  }

  private arrayElement(oid: number): number | undefined {
    let type = this.types.get(oid);
    while (type && type.base !== 0) type = this.types.get(type.base);
    return type && type.category === "A" && type.elem !== 0 ? type.elem : undefined;
  }

  converter(oid: number, format: Format): Converter {
    const elem = this.arrayElement(oid);
    if (elem !== undefined) {
      const convert = this.converter(elem, format);
      const delimiter = this.types.get(elem)?.name === "box" ? ";" : ",";
      const walk = (items: unknown[]): unknown[] =>
        items.map((item) =>
          item === null ? null : Array.isArray(item) ? walk(item) : convert(item as string),
        );
      return (text) => walk(parseArrayLiteral(text, delimiter));
    }
    return this.entryOf(oid)[format];
  }

  /** The value that stands for an unchanged TOAST column, in the column's own type. */
  unavailable(oid: number, format: Format): unknown {
    const elem = this.arrayElement(oid);
    if (elem !== undefined) {
      const inner = this.unavailable(elem, format);
      // An Avro array of numbers cannot hold the placeholder text: the value is then null.
      return format === "avro" &&
        typeof inner === "string" &&
        this.entryOf(elem).schema !== "string" &&
        typeof this.entryOf(elem).schema !== "object"
        ? null
        : [inner];
    }
    const schema = this.entryOf(oid).schema;
    if (schema === "bytes") {
      const bytes = Buffer.from(UNAVAILABLE_VALUE);
      return format === "avro" ? bytes : bytes.toString("base64");
    }
    return UNAVAILABLE_VALUE;
  }

  /** The Avro type of a column's values (without the null of a nullable column). */
  avroSchema(oid: number): unknown {
    const elem = this.arrayElement(oid);
    if (elem !== undefined) return { type: "array", items: ["null", this.avroSchema(elem)] };
    return this.entryOf(oid).schema;
  }
}
