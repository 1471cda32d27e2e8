/**
 * `tributary schema-registry` against the shared Kafka cluster: Confluent Schema Registry's REST
 * shapes and error codes, two server instances on one schemas topic agreeing with each other and
 * with registry.ts (the collectors' and connectors' own registry), health, metrics and bounded
 * bodies. test/integration/schema-registry-python.test.ts decodes messages with confluent-kafka.
 */
import kafkajs from "kafkajs";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSchema, SchemaRegistry, schemaIdOf, schemaText } from "../../src/dataplane/avro/registry.js";
import { schemaRegistryConfigSchema } from "../../src/dataplane/registry/config.js";
import { type RunningSchemaRegistry, startSchemaRegistryServer } from "../../src/dataplane/registry/main.js";
import { testEnv, uniqueName } from "../support/env.js";

const logger = pino({ level: process.env.TRIBUTARY_LOG_LEVEL ?? "silent" });
const CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";

const user = (fields: object[] = []) =>
  JSON.stringify({
    type: "record",
    name: "User",
    namespace: "dev.tributary.test",
    fields: [{ name: "id", type: "long" }, ...fields],
  });
const v1 = user();
const v2 = user([{ name: "email", type: ["null", "string"], default: null }]);
/** Not BACKWARD-compatible with v1/v2: a new field without a default. */
const incompatible = user([{ name: "age", type: "int" }]);

interface Answer {
  status: number;
  contentType: string | null;
  body: unknown;
}

async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = { "content-type": CONTENT_TYPE },
): Promise<Answer> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // health endpoints answer text
  }
  return { status: response.status, contentType: response.headers.get("content-type"), body: parsed };
}

describe("schema-registry: Confluent's REST API over the schemas topic", () => {
  const brokers = testEnv().kafkaBrokers;
  const schemasTopic = uniqueName("schemas-rest");
  let a: RunningSchemaRegistry;
  let b: RunningSchemaRegistry;
  let registry: SchemaRegistry;

  const start = async () => {
    const running = await startSchemaRegistryServer(
      schemaRegistryConfigSchema.parse({
        brokers,
        schemasTopic,
        host: "127.0.0.1",
        port: 0,
        maxBodyBytes: 64 * 1024,
      }),
      logger,
    );
    await running.ready;
    return running;
  };

  /**
   * Waits for an instance to have read the schemas topic to its end. Each instance answers reads
   * from its own view of the topic, which follows the topic as it is written; only a miss makes it
   * read to the end first. A read that must show a delete, or every version, written through the
   * other instance waits for this.
   */
  const caughtUp = async (instance: RunningSchemaRegistry) => {
    await instance.registry()!.sync();
  };

  beforeAll(async () => {
    a = await start();
    b = await start();
    registry = await SchemaRegistry.connect({ brokers, topic: schemasTopic });
  });

  afterAll(async () => {
    await Promise.allSettled([a?.close(), b?.close(), registry?.close()]);
    const kafka = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it("registers, is idempotent, looks up, lists versions and serves ids in Confluent's shapes", async () => {
    const subject = uniqueName("users-value");
    const first = await call(a.url, "POST", `/subjects/${subject}/versions`, { schema: v1 });
    expect(first.status).toBe(200);
    expect(first.contentType).toBe(CONTENT_TYPE);
    const id1 = (first.body as { id: number }).id;
    expect(first.body).toEqual({ id: schemaIdOf(schemaText(parseSchema(v1))) });
    // The same schema again, even written differently, is the same version and id.
    const again = await call(a.url, "POST", `/subjects/${subject}/versions`, {
      schema: JSON.stringify(JSON.parse(v1), null, 2),
      schemaType: "AVRO",
      references: [],
    });
    expect(again.body).toEqual({ id: id1 });
    const second = await call(a.url, "POST", `/subjects/${subject}/versions`, { schema: v2 });
    const id2 = (second.body as { id: number }).id;
    expect(id2).not.toBe(id1);

    expect((await call(a.url, "GET", "/subjects")).body).toContain(subject);
    expect((await call(a.url, "GET", `/subjects/${subject}/versions`)).body).toEqual([1, 2]);
    const latest = await call(a.url, "GET", `/subjects/${subject}/versions/latest`);
    expect(latest.body).toEqual({ subject, version: 2, id: id2, schema: expect.any(String) });
    expect(JSON.parse((latest.body as { schema: string }).schema)).toEqual(
      JSON.parse(schemaText(parseSchema(v2))),
    );
    expect((await call(a.url, "GET", `/subjects/${subject}/versions/1`)).body).toMatchObject({
      version: 1,
      id: id1,
    });
    expect((await call(a.url, "GET", `/subjects/${subject}/versions/-1/schema`)).body).toMatchObject({
      type: "record",
      name: "dev.tributary.test.User",
    });
    expect((await call(a.url, "GET", `/schemas/ids/${id1}`)).body).toEqual({
      schema: schemaText(parseSchema(v1)),
    });
    expect((await call(a.url, "GET", `/schemas/ids/${id1}/subjects`)).body).toEqual([subject]);
    expect((await call(a.url, "GET", `/schemas/ids/${id2}/versions`)).body).toEqual([
      { subject, version: 2 },
    ]);
    expect((await call(a.url, "GET", "/schemas/types")).body).toEqual(["AVRO"]);

    // Lookup: which version holds this schema.
    expect((await call(a.url, "POST", `/subjects/${subject}`, { schema: v1 })).body).toEqual({
      subject,
      version: 1,
      id: id1,
      schema: schemaText(parseSchema(v1)),
    });
    expect((await call(a.url, "POST", `/subjects/${subject}`, { schema: incompatible })).body).toEqual({
      error_code: 40403,
      message: "Schema not found",
    });
  });

  it("refuses an incompatible schema with 409 and answers compatibility checks, verbose on request", async () => {
    const subject = uniqueName("compat-value");
    await call(a.url, "POST", `/subjects/${subject}/versions`, { schema: v1 });
    const refused = await call(a.url, "POST", `/subjects/${subject}/versions`, { schema: incompatible });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ error_code: 409 });
    expect((refused.body as { message: string }).message).toMatch(/incompatible.*age/);

    const path = `/compatibility/subjects/${subject}/versions/latest`;
    expect((await call(a.url, "POST", path, { schema: v2 })).body).toEqual({ is_compatible: true });
    expect((await call(a.url, "POST", path, { schema: incompatible })).body).toEqual({
      is_compatible: false,
    });
    const verbose = await call(a.url, "POST", `${path}?verbose=true`, { schema: incompatible });
    expect(verbose.body).toEqual({ is_compatible: false, messages: [expect.stringMatching(/age/)] });
    expect(
      (await call(a.url, "POST", `/compatibility/subjects/${subject}/versions/7`, { schema: v2 })).body,
    ).toEqual({ error_code: 40402, message: "Version 7 not found." });
    expect(
      (
        await call(a.url, "POST", `/compatibility/subjects/${uniqueName("none")}/versions/latest`, {
          schema: v2,
        })
      ).body,
    ).toEqual({ is_compatible: true });
  });

  it("keeps a compatibility level per subject and a global one, through the topic", async () => {
    const subject = uniqueName("config-value");
    await call(a.url, "POST", `/subjects/${subject}/versions`, { schema: v1 });
    expect((await call(a.url, "GET", `/config/${subject}`)).body).toMatchObject({ error_code: 40408 });
    expect((await call(a.url, "GET", `/config/${subject}?defaultToGlobal=true`)).body).toEqual({
      compatibilityLevel: "BACKWARD",
    });
    expect((await call(a.url, "PUT", `/config/${subject}`, { compatibility: "none" })).body).toEqual({
      compatibility: "NONE",
    });
    // Set on one instance, read on the other.
    expect((await call(b.url, "GET", `/config/${subject}`)).body).toEqual({ compatibilityLevel: "NONE" });
    expect(
      (await call(b.url, "POST", `/subjects/${subject}/versions`, { schema: incompatible })).status,
    ).toBe(200);
    expect(
      (await call(a.url, "PUT", `/config/${subject}`, { compatibility: "SOMETIMES" })).body,
    ).toMatchObject({
      error_code: 42203,
    });
    expect((await call(a.url, "DELETE", `/config/${subject}`)).body).toEqual({ compatibilityLevel: "NONE" });
    expect((await call(a.url, "GET", "/config")).body).toEqual({ compatibilityLevel: "BACKWARD" });
    expect((await call(a.url, "GET", "/mode")).body).toEqual({ mode: "READWRITE" });
  });

  it("soft-deletes and permanently deletes subjects and versions with Confluent's rules", async () => {
    const subject = uniqueName("delete-value");
    // Ids are content-addressed: schemas of this subject alone, so that a permanent delete frees them.
    const own = (text: string) => JSON.stringify({ ...JSON.parse(text), doc: subject });
    const v1 = own(user());
    const v2 = own(user([{ name: "email", type: ["null", "string"], default: null }]));
    const { id: id1 } = (await call(a.url, "POST", `/subjects/${subject}/versions`, { schema: v1 })).body as {
      id: number;
    };
    await call(a.url, "POST", `/subjects/${subject}/versions`, { schema: v2 });

    expect(
      (await call(a.url, "DELETE", `/subjects/${subject}/versions/1?permanent=true`)).body,
    ).toMatchObject({
      error_code: 40407,
    });
    expect((await call(a.url, "DELETE", `/subjects/${subject}/versions/1`)).body).toBe(1);
    await caughtUp(b);
    expect((await call(b.url, "GET", `/subjects/${subject}/versions`)).body).toEqual([2]);
    expect((await call(b.url, "GET", `/subjects/${subject}/versions?deleted=true`)).body).toEqual([1, 2]);
    expect((await call(b.url, "GET", `/subjects/${subject}/versions/1`)).body).toMatchObject({
      error_code: 40402,
    });
    // A soft-deleted schema still decodes old messages by its id.
    expect((await call(b.url, "GET", `/schemas/ids/${id1}`)).status).toBe(200);

    expect((await call(a.url, "DELETE", `/subjects/${subject}?permanent=true`)).body).toMatchObject({
      error_code: 40405,
    });
    expect((await call(a.url, "DELETE", `/subjects/${subject}`)).body).toEqual([2]);
    expect((await call(a.url, "DELETE", `/subjects/${subject}`)).body).toMatchObject({ error_code: 40404 });
    await caughtUp(b);
    expect((await call(b.url, "GET", "/subjects")).body).not.toContain(subject);
    expect((await call(b.url, "GET", "/subjects?deleted=true")).body).toContain(subject);
    expect((await call(b.url, "GET", `/subjects/${subject}/versions`)).body).toMatchObject({
      error_code: 40401,
    });

    // Registering again after a soft delete numbers on past the deleted versions.
    expect((await call(a.url, "POST", `/subjects/${subject}/versions`, { schema: v1 })).body).toEqual({
      id: id1,
    });
    expect((await call(a.url, "GET", `/subjects/${subject}/versions`)).body).toEqual([3]);
    await call(a.url, "DELETE", `/subjects/${subject}`);

    expect((await call(b.url, "DELETE", `/subjects/${subject}?permanent=true`)).body).toEqual([1, 2, 3]);
    await caughtUp(a);
    expect((await call(a.url, "GET", "/subjects?deleted=true")).body).not.toContain(subject);
    expect((await call(a.url, "GET", `/schemas/ids/${id1}`)).body).toEqual({
      error_code: 40403,
      message: `Schema ${id1} not found`,
    });
    // A registry that reads the topic from the start after the delete agrees.
    const late = await SchemaRegistry.connect({ brokers, topic: schemasTopic });
    try {
      expect(late.subjectNames({ includeDeleted: true })).not.toContain(subject);
      expect(late.schemaById(id1)).toBeUndefined();
    } finally {
      await late.close();
    }
    // The numbering starts over once the versions are gone for good.
    await call(a.url, "POST", `/subjects/${subject}/versions`, { schema: v1 });
    expect((await call(b.url, "GET", `/subjects/${subject}/versions`)).body).toEqual([1]);
  });

  it("two instances and registry.ts agree: a write on one is read on the other at once", async () => {
    const subject = uniqueName("agree-value");
    const { id } = (await call(a.url, "POST", `/subjects/${subject}/versions`, { schema: v1 })).body as {
      id: number;
    };
    // No wait: a miss makes B read the topic to its end before it answers.
    expect((await call(b.url, "GET", `/schemas/ids/${id}`)).status).toBe(200);
    expect((await call(b.url, "GET", `/subjects/${subject}/versions/latest`)).body).toMatchObject({
      id,
      version: 1,
    });

    // The collectors' registry reads what REST wrote, and REST serves what it registers.
    await registry.sync();
    expect(registry.latest(subject)).toMatchObject({ id, version: 1 });
    const fromCollector = await registry.register(subject, v2);
    expect((await call(b.url, "GET", `/subjects/${subject}/versions/2`)).body).toMatchObject({
      id: fromCollector.id,
    });

    // Racing registrations of different schemas on both instances end in one order both agree on.
    const racing = Array.from({ length: 4 }, (_, i) =>
      user([
        { name: "email", type: ["null", "string"], default: null },
        { name: `extra${i}`, type: "string", default: "" },
      ]),
    );
    const subjectRace = uniqueName("race-value");
    const results = await Promise.all(
      racing.map((schema, i) =>
        call(i % 2 === 0 ? a.url : b.url, "POST", `/subjects/${subjectRace}/versions`, {
          schema,
        }).then((answer) => answer.body as { id: number }),
      ),
    );
    expect(new Set(results.map((r) => r.id)).size).toBe(4);
    await Promise.all([caughtUp(a), caughtUp(b)]);
    const fromA = await call(a.url, "GET", `/subjects/${subjectRace}/versions`);
    const fromB = await call(b.url, "GET", `/subjects/${subjectRace}/versions`);
    expect(fromA.body).toEqual([1, 2, 3, 4]);
    expect(fromB.body).toEqual(fromA.body);
    for (const version of [1, 2, 3, 4]) {
      const onA = await call(a.url, "GET", `/subjects/${subjectRace}/versions/${version}`);
      const onB = await call(b.url, "GET", `/subjects/${subjectRace}/versions/${version}`);
      expect(onB.body).toEqual(onA.body);
    }
  });

  it("answers bad requests with Confluent's error codes", async () => {
    const subject = uniqueName("bad-value");
    const invalid = await call(a.url, "POST", `/subjects/${subject}/versions`, {
      schema: '{"type":"recrd"}',
    });
    expect(invalid.status).toBe(422);
    expect(invalid.body).toMatchObject({ error_code: 42201, message: expect.stringMatching(/recrd/) });
    const protobuf = await call(a.url, "POST", `/subjects/${subject}/versions`, {
      schema: 'syntax = "proto3"; message M {}',
      schemaType: "PROTOBUF",
    });
    expect(protobuf.body).toMatchObject({
      error_code: 42201,
      message: expect.stringMatching(/AVRO schemas only/),
    });
    const references = await call(a.url, "POST", `/subjects/${subject}/versions`, {
      schema: v1,
      references: [{ name: "x", subject: "y", version: 1 }],
    });
    expect(references.body).toMatchObject({
      error_code: 42201,
      message: expect.stringMatching(/references/),
    });
    expect((await call(a.url, "POST", `/subjects/${subject}/versions`, { nothing: 1 })).body).toMatchObject({
      error_code: 42201,
    });
    expect((await call(a.url, "POST", `/subjects/${subject}/versions`, "{not json")).body).toMatchObject({
      error_code: 400,
    });
    expect((await call(a.url, "GET", `/subjects/${subject}/versions/0`)).body).toMatchObject({
      error_code: 42202,
    });
    expect((await call(a.url, "GET", `/subjects/${subject}/versions/latest`)).body).toEqual({
      error_code: 40401,
      message: `Subject '${subject}' not found.`,
    });
    expect((await call(a.url, "GET", "/schemas/ids/12345")).body).toEqual({
      error_code: 40403,
      message: "Schema 12345 not found",
    });
    expect((await call(a.url, "GET", "/no/such/route")).body).toEqual({
      error_code: 404,
      message: "HTTP 404 Not Found",
    });
    expect((await call(a.url, "PATCH", "/subjects")).body).toEqual({
      error_code: 405,
      message: "HTTP 405 Method Not Allowed",
    });
    const form = await call(a.url, "POST", `/subjects/${subject}/versions`, `schema=${v1}`, {
      "content-type": "application/x-www-form-urlencoded",
    });
    expect(form.status).toBe(415);
    // application/json is accepted as well as Confluent's own type.
    expect(
      (
        await call(
          a.url,
          "POST",
          `/subjects/${subject}/versions`,
          { schema: v1 },
          { "content-type": "application/json" },
        )
      ).status,
    ).toBe(200);
  });

  it("refuses a body over the limit with 413 before reading it whole, declared or streamed", async () => {
    const big = JSON.stringify({ schema: v1, padding: "x".repeat(100 * 1024) });
    const declared = await call(a.url, "POST", `/subjects/${uniqueName("big")}/versions`, big);
    expect(declared.status).toBe(413);
    expect(declared.body).toMatchObject({ error_code: 413, message: expect.stringMatching(/65536/) });
    const streamed = await fetch(`${a.url}/subjects/${uniqueName("big")}/versions`, {
      method: "POST",
      headers: { "content-type": CONTENT_TYPE },
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 20; i++) controller.enqueue(new TextEncoder().encode("x".repeat(8 * 1024)));
          controller.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(await streamed.json()).toMatchObject({ error_code: 413 });
    // The server is still well.
    expect((await call(a.url, "GET", "/subjects")).status).toBe(200);
  });

  it("serves /healthz, /readyz once caught up, and /metrics", async () => {
    expect((await call(a.url, "GET", "/healthz")).status).toBe(200);
    expect((await call(b.url, "GET", "/readyz")).body).toBe("ready\n");
    const metrics = (await call(a.url, "GET", "/metrics")).body as string;
    expect(metrics).toMatch(
      /tributary_schema_registry_requests_total\{route="\/subjects\/\{s\}\/versions",method="POST",code="200"\} \d+/,
    );
    expect(metrics).toMatch(/tributary_schema_registry_ready 1/);

    // An instance that cannot reach Kafka is alive but not ready, and says why.
    const unreachable = await startSchemaRegistryServer(
      schemaRegistryConfigSchema.parse({
        brokers: ["127.0.0.1:1"],
        schemasTopic,
        host: "127.0.0.1",
        port: 0,
        connectRetryMs: 60_000,
      }),
      logger,
    );
    try {
      expect((await call(unreachable.url, "GET", "/healthz")).status).toBe(200);
      const readyz = await call(unreachable.url, "GET", "/readyz");
      expect(readyz.status).toBe(503);
      expect(readyz.body).toMatch(/reading the schemas topic/);
      const api = await call(unreachable.url, "GET", "/subjects");
      expect(api.status).toBe(503);
      expect(api.body).toMatchObject({ error_code: 50003 });
    } finally {
      await unreachable.close();
    }
  });
});
