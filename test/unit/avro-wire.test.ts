import avro from "avsc";
import { describe, expect, it } from "vitest";
import {
  canRead,
  encodeWith,
  frame,
  InvalidSchemaError,
  parseSchema,
  readFrame,
  schemaIdOf,
  schemaText,
  subjectForTopic,
  WireFormatError,
} from "../../src/dataplane/avro/registry.js";

const schema = {
  type: "record",
  name: "Row",
  namespace: "dev.tributary.test",
  fields: [
    { name: "id", type: "long" },
    { name: "name", type: "string" },
  ],
} as const;

describe("Confluent wire format", () => {
  const type = parseSchema(schema);

  it("frames an Avro body behind magic 0 and a big-endian schema id", () => {
    const message = encodeWith(0x01020304, type, { id: 7, name: "seven" });
    expect([...message.subarray(0, 5)]).toEqual([0, 1, 2, 3, 4]);
    expect(type.fromBuffer(message.subarray(5))).toEqual({ id: 7, name: "seven" });
    expect(frame(0x01020304, type.toBuffer({ id: 7, name: "seven" }))).toEqual(message);
    expect(readFrame(message)).toEqual({ id: 0x01020304, bodyOffset: 5 });
  });

  it("grows its scratch buffer for values larger than it", () => {
    const name = "n".repeat(200_000);
    const message = encodeWith(9, type, { id: 1, name });
    expect(type.fromBuffer(message.subarray(5))).toEqual({ id: 1, name });
    // And encodes small values correctly afterwards.
    expect(type.fromBuffer(encodeWith(9, type, { id: 2, name: "b" }).subarray(5))).toEqual({
      id: 2,
      name: "b",
    });
  });

  it("refuses short messages and other magic bytes with what it found", () => {
    expect(() => readFrame(Buffer.from([0, 0, 1]))).toThrow(
      new WireFormatError("message of 3 bytes is shorter than the 5-byte wire header"),
    );
    expect(() => readFrame(Buffer.from([2, 0, 0, 0, 1, 0]))).toThrow(/magic byte 2, expected 0/);
  });

  it("refuses a value that does not match the schema", () => {
    expect(() => encodeWith(1, type, { id: "seven", name: "x" })).toThrow();
  });
});

describe("schema ids, parsing and compatibility", () => {
  it("derives the same id from the same schema, another from a changed default", () => {
    const a = schemaText(parseSchema(schema));
    expect(schemaIdOf(a)).toBe(schemaIdOf(schemaText(parseSchema(JSON.stringify(schema)))));
    const withDefault = { ...schema, fields: [...schema.fields, { name: "x", type: "int", default: 1 }] };
    const otherDefault = { ...schema, fields: [...schema.fields, { name: "x", type: "int", default: 2 }] };
    expect(schemaIdOf(schemaText(parseSchema(withDefault)))).not.toBe(
      schemaIdOf(schemaText(parseSchema(otherDefault))),
    );
    expect(schemaIdOf(a)).toBeGreaterThan(0);
    expect(schemaIdOf(a)).toBeLessThanOrEqual(0x7fffffff);
  });

  it("reports invalid schemas clearly", () => {
    expect(() => parseSchema("{")).toThrow(InvalidSchemaError);
    expect(() => parseSchema("{")).toThrow(/schema is not valid JSON/);
    expect(() => parseSchema({ type: "record", name: "R", fields: [{ name: "a", type: "nope" }] })).toThrow(
      /schema is not a valid Avro schema: .*nope/,
    );
  });

  it("uses avsc's resolver to tell whether a reader can read a writer", () => {
    const v1 = parseSchema(schema);
    const v2 = parseSchema({
      ...schema,
      fields: [...schema.fields, { name: "tag", type: ["null", "string"], default: null }],
    });
    const v3 = parseSchema({ ...schema, fields: [...schema.fields, { name: "tag", type: "string" }] });
    expect(canRead(v2, v1)).toBeUndefined();
    expect(canRead(v1, v2)).toBeUndefined();
    expect(canRead(v3, v1)).toMatch(/tag/);
    const resolved = v2.fromBuffer(v1.toBuffer({ id: 1, name: "a" }), v2.createResolver(v1));
    expect(resolved).toEqual({ id: 1, name: "a", tag: null });
    expect(avro.Type.isType(v1)).toBe(true);
  });

  it("names subjects after Confluent's TopicNameStrategy", () => {
    expect(subjectForTopic("clicks")).toBe("clicks-value");
  });
});
