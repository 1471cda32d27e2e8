/**
 * The schema registry's pure parts: the stored form of schemas with logical types (what
 * consumers outside Tributary read), the REST routes' templates, Confluent's error mapping and
 * the role's configuration.
 */
import { describe, expect, it } from "vitest";
import {
  canRead,
  DeletionRefusedError,
  IncompatibleSchemaError,
  InvalidSchemaError,
  parseSchema,
  SchemaRegistryError,
  SubjectNotFoundError,
  schemaIdOf,
  storedSchemaText,
  UnknownSchemaIdError,
} from "../../src/dataplane/avro/registry.js";
import { resolve } from "../../src/dataplane/registry/api.js";
import { ConfigError, parseSchemaRegistryConfig } from "../../src/dataplane/registry/config.js";
import { toRestError } from "../../src/dataplane/registry/errors.js";

const row = {
  type: "record",
  name: "Row",
  namespace: "dev.tributary.test",
  fields: [
    { name: "at", type: { type: "long", logicalType: "timestamp-micros" } },
    { name: "amount", type: { type: "bytes", logicalType: "decimal", scale: 2, precision: 10 } },
    { name: "uid", type: ["null", { type: "string", logicalType: "uuid" }], default: null },
    { name: "day", type: { type: "int", logicalType: "date" } },
    { name: "custom", type: { type: "string", logicalType: "io.example.Custom", "x-unit": "m" } },
  ],
};

describe("the stored form of a schema", () => {
  it("keeps logical types and their attributes, whatever order they came in", () => {
    const stored = JSON.parse(storedSchemaText(row));
    expect(stored.fields.map((field: { type: unknown }) => field.type)).toEqual([
      { type: "long", logicalType: "timestamp-micros" },
      { type: "bytes", logicalType: "decimal", precision: 10, scale: 2 },
      ["null", { type: "string", logicalType: "uuid" }],
      { type: "int", logicalType: "date" },
      { type: "string", logicalType: "io.example.Custom", "x-unit": "m" },
    ]);
    const reordered = {
      ...row,
      fields: [
        row.fields[0],
        { name: "amount", type: { precision: 10, logicalType: "decimal", type: "bytes", scale: 2 } },
        ...row.fields.slice(2),
      ],
    };
    expect(storedSchemaText(reordered)).toBe(storedSchemaText(row));
    expect(storedSchemaText(JSON.stringify(row, null, 2))).toBe(storedSchemaText(row));
    // Stable: the stored text stores as itself, so its content id never drifts.
    expect(storedSchemaText(storedSchemaText(row))).toBe(storedSchemaText(row));
    expect(schemaIdOf(storedSchemaText(row))).toBe(schemaIdOf(storedSchemaText(JSON.stringify(row))));
  });

  it("decodes into the same values as before: the runtime type is the underlying one", () => {
    const type = parseSchema(storedSchemaText(row));
    const value = {
      at: 1_765_000_000_123_456,
      amount: Buffer.from([0x12, 0xd6, 0x87]),
      uid: "0b5e2a5c-6a8e-4c4b-9d0f-1f2e3d4c5b6a",
      day: 20_000,
      custom: "x",
    };
    expect(type.fromBuffer(type.toBuffer(value))).toEqual(value);
    // A schema without the logical annotations reads the same data, both ways.
    const plain = parseSchema({
      ...row,
      fields: row.fields.map((field) => ({
        ...field,
        type: JSON.parse(JSON.stringify(field.type).replace(/,?"logicalType":"[^"]+"/g, "")),
      })),
    });
    expect(canRead(plain, type)).toBeUndefined();
    expect(canRead(type, plain)).toBeUndefined();
  });

  it("refuses what is not an Avro schema", () => {
    expect(() => storedSchemaText('{"type":"recrd"}')).toThrow(InvalidSchemaError);
    expect(() => storedSchemaText("{not json")).toThrow(InvalidSchemaError);
  });
});

describe("the REST routes", () => {
  it.each([
    ["GET", "/", "/"],
    ["GET", "/schemas/ids/7", "/schemas/ids/{id}"],
    ["GET", "/schemas/ids/7/versions", "/schemas/ids/{id}/versions"],
    ["GET", "/subjects/a.b-value/versions/latest/schema", "/subjects/{s}/versions/{v}/schema"],
    ["POST", "/subjects/x", "/subjects/{s}"],
    ["DELETE", "/subjects/x/versions/3", "/subjects/{s}/versions/{v}"],
    ["POST", "/compatibility/subjects/x/versions/latest", "/compatibility/subjects/{s}/versions/{v}"],
    ["PUT", "/config/x", "/config/{s}"],
    ["GET", "/mode", "/mode"],
  ])("%s %s is %s", (method, path, template) => {
    const resolved = resolve(method, path.split("/").filter(Boolean));
    expect(resolved).toMatchObject({ kind: "route", template });
  });

  it("tells an unknown path from a known path with another method", () => {
    expect(resolve("GET", ["subjects", "x", "versions", "1", "nope"])).toEqual({ kind: "notFound" });
    expect(resolve("GET", ["elsewhere"])).toEqual({ kind: "notFound" });
    expect(resolve("PATCH", ["subjects"])).toEqual({ kind: "methodNotAllowed", template: "/subjects" });
  });
});

describe("Confluent's error codes", () => {
  it.each([
    [new SubjectNotFoundError("s"), 404, 40401],
    [new SubjectNotFoundError("s", 3), 404, 40402],
    [new UnknownSchemaIdError(9), 404, 40403],
    [new DeletionRefusedError(40405, "not soft deleted"), 404, 40405],
    [new InvalidSchemaError("bad"), 422, 42201],
    [new IncompatibleSchemaError("s", "BACKWARD", 1, "no default"), 409, 409],
    [new SchemaRegistryError("reading 't' to offset 9 took more than 30000 ms (at 3)"), 500, 50002],
    [new Error("broker down"), 500, 50001],
  ])("%s → HTTP %i, error_code %i", (error, status, code) => {
    const rest = toRestError(error);
    expect(rest.status).toBe(status);
    expect(rest.body.error_code).toBe(code);
  });
});

describe("the schema-registry role's configuration", () => {
  it("defaults to Confluent's port and Tributary's schemas topic", () => {
    expect(parseSchemaRegistryConfig([], { TRIBUTARY_SCHEMA_REGISTRY_BROKERS: "k:9092" })).toMatchObject({
      brokers: ["k:9092"],
      port: 8081,
      schemasTopic: "_tributary_schemas",
      defaultCompatibility: "BACKWARD",
      maxBodyBytes: 1024 * 1024,
    });
    expect(
      parseSchemaRegistryConfig(["--default-compatibility", "full_transitive"], {
        TRIBUTARY_SCHEMA_REGISTRY_BROKERS: "k:9092",
      }).defaultCompatibility,
    ).toBe("FULL_TRANSITIVE");
  });

  it("names the flag and the variable of a bad value", () => {
    expect(() => parseSchemaRegistryConfig([], {})).toThrow(ConfigError);
    expect(() =>
      parseSchemaRegistryConfig(["--default-compatibility", "sometimes"], {
        TRIBUTARY_SCHEMA_REGISTRY_BROKERS: "k:9092",
      }),
    ).toThrow(/--default-compatibility \(TRIBUTARY_SCHEMA_REGISTRY_DEFAULT_COMPATIBILITY\)/);
    expect(() =>
      parseSchemaRegistryConfig([], {
        TRIBUTARY_SCHEMA_REGISTRY_BROKERS: "k:9092",
        TRIBUTARY_SCHEMA_REGISTRY_SASL_USERNAME: "u",
      }),
    ).toThrow(/saslMechanism/);
  });
});
