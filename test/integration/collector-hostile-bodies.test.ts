/**
 * Bodies a client should never send, sent as a client would: each must be answered with a 4xx
 * that says why (never a 500 or a 503 the client retries forever), and what is dead-lettered must
 * fit in a Kafka message however large the body was.
 */
import { randomUUID } from "node:crypto";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectorConfigSchema } from "../../src/dataplane/clickstream/config.js";
import { DEAD_LETTER_ENVELOPE_BYTES, type DeadLetter } from "../../src/dataplane/clickstream/deadLetter.js";
import { type RunningCollector, startCollector } from "../../src/dataplane/clickstream/main.js";
import type { EventsResponse } from "../../src/dataplane/clickstream/server.js";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics, readTopic } from "../support/kafka.js";

const logger = pino({ level: process.env.TRIBUTARY_LOG_LEVEL ?? "silent" });

/** Kafka's default message.max.bytes: a dead letter over it would be refused on every retry. */
const KAFKA_MESSAGE_MAX_BYTES = 1024 * 1024 + 12;
const RAW_LIMIT = 64 * 1024;
const MiB = 1024 * 1024;

function event(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    eventId: randomUUID(),
    eventType: "click",
    eventTime: new Date().toISOString(),
    userAgent: "hostile-test/1.0",
    request: { url: "/watch/hostile" },
    ...overrides,
  };
}

interface Answer {
  status: number;
  body: { error?: string } & Partial<EventsResponse>;
}

describe("clickstream collector refusing hostile bodies (shared Kafka cluster)", () => {
  const brokers = testEnv().kafkaBrokers;
  const topic = uniqueName("clicks-hostile");
  const dlqTopic = `${topic}.dlq`;
  const schemasTopic = uniqueName("clicks-hostile-schemas");
  let deleteTopics: () => Promise<void>;
  let collector: RunningCollector;

  beforeAll(async () => {
    deleteTopics = await createTopics(brokers, [
      { topic, numPartitions: 3 },
      { topic: dlqTopic, numPartitions: 1 },
    ]);
    collector = await startCollector(
      collectorConfigSchema.parse({
        brokers,
        topic,
        schemasTopic,
        host: "127.0.0.1",
        port: 0,
        collectorId: "collector-hostile-0",
        // Larger than Kafka's message size, as a Topic may set it: the dead letter must still fit.
        maxBodyBytes: 2 * MiB,
        deadLetterRawBytes: RAW_LIMIT,
      }),
      logger,
    );
  });

  afterAll(async () => {
    await collector?.close();
    await deleteTopics?.();
    const { default: kafkajs } = await import("kafkajs");
    const admin = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
    await admin.disconnect();
  });

  async function post(body: string | Buffer, contentType = "application/json", marker = randomUUID()) {
    const response = await fetch(`${collector.url}/v1/events`, {
      method: "POST",
      // The session cookie tells this request's dead letter apart from the others'.
      headers: { "content-type": contentType, cookie: `tributary_sid=${marker}` },
      body,
    });
    const answer: Answer = { status: response.status, body: (await response.json()) as Answer["body"] };
    return { answer, marker };
  }

  /** The dead letters keyed by this request's session, with the size of each Kafka message. */
  async function lettersOf(marker: string): Promise<{ letter: DeadLetter; bytes: number }[]> {
    const messages = await readTopic(brokers, dlqTopic);
    return messages
      .filter((m) => m.key === marker)
      .map((m) => ({ letter: JSON.parse(m.value.toString("utf8")) as DeadLetter, bytes: m.value.length }));
  }

  function expectBounded(bytes: number, letter: DeadLetter): void {
    expect(bytes).toBeLessThanOrEqual(RAW_LIMIT + DEAD_LETTER_ENVELOPE_BYTES);
    expect(bytes).toBeLessThan(KAFKA_MESSAGE_MAX_BYTES);
    expect(Buffer.byteLength(JSON.stringify(letter.raw))).toBeLessThanOrEqual(RAW_LIMIT);
  }

  it("answers 400 to a body nested 10,000 deep, saying so, and dead-letters it", async () => {
    const body = `${"[".repeat(10_000)}${"]".repeat(10_000)}`;
    const { answer, marker } = await post(body);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatch(
      /^the body is not clickstream events: it nests arrays and objects more than 32 levels deep \(at \[0\]\[0\]/,
    );
    const [dead, ...more] = await lettersOf(marker);
    expect(more).toEqual([]);
    expect(dead!.letter).toMatchObject({
      reason: "refused-body",
      raw: body,
      rawBytes: 20_000,
      rawTruncated: false,
      errors: [{ field: "", message: answer.body.error }],
      topic,
      collectorId: "collector-hostile-0",
    });
    expectBounded(dead!.bytes, dead!.letter);
  });

  it("answers 400 to a deeply nested event inside a batch and cuts its dead letter to the limit", async () => {
    const depth = 150_000;
    const deep = `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
    const body = `{"events":[${JSON.stringify(event())},${deep}]}`;
    const { answer, marker } = await post(body);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatch(/more than 32 levels deep \(at events\[1\]\.a\.a\.a/);
    const [dead] = await lettersOf(marker);
    expect(dead!.letter).toMatchObject({
      reason: "refused-body",
      rawBytes: Buffer.byteLength(body),
      rawTruncated: true,
    });
    expect(body.startsWith(dead!.letter.raw as string)).toBe(true);
    expectBounded(dead!.bytes, dead!.letter);
  });

  it("answers 400 to an unparseable body larger than Kafka's message size, keeping its start and size", async () => {
    const body = "this is not JSON; ".repeat(Math.ceil((1.5 * MiB) / 18));
    const { answer, marker } = await post(body);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toBe(
      'the body is neither a JSON event, {"events": [...]}, a JSON array nor NDJSON (one event per line)',
    );
    const [dead] = await lettersOf(marker);
    expect(dead!.letter).toMatchObject({
      reason: "unparseable-body",
      rawBytes: Buffer.byteLength(body),
      rawTruncated: true,
    });
    expect(body.startsWith(dead!.letter.raw as string)).toBe(true);
    // Cut close to the limit, not far below it.
    expect(Buffer.byteLength(JSON.stringify(dead!.letter.raw))).toBeGreaterThan(RAW_LIMIT - 64);
    expectBounded(dead!.bytes, dead!.letter);
  });

  it("bounds the dead letter of a body whose escaping alone would outgrow Kafka's message size", async () => {
    // 200 KiB of control characters: JSON writes each as \u0001, six bytes.
    const body = "\u0001".repeat(200 * 1024);
    const { answer, marker } = await post(body, "text/plain");
    expect(answer.status).toBe(400);
    const [dead] = await lettersOf(marker);
    expect(dead!.letter).toMatchObject({
      reason: "unparseable-body",
      rawBytes: 200 * 1024,
      rawTruncated: true,
    });
    expect(body.startsWith(dead!.letter.raw as string)).toBe(true);
    expectBounded(dead!.bytes, dead!.letter);
  });

  it("answers 400 to a string longer than the collector takes, naming the field", async () => {
    const huge = "x".repeat(1.2 * MiB);
    const { answer, marker } = await post(JSON.stringify(event({ userAgent: huge })));
    expect(answer.status).toBe(400);
    expect(answer.body.error).toBe(
      `the body holds a string of ${huge.length} characters at userAgent; the collector takes strings of up to 65536 characters (no field of an event is longer than 8192)`,
    );
    const [dead] = await lettersOf(marker);
    expect(dead!.letter).toMatchObject({
      reason: "refused-body",
      rawBytes: Buffer.byteLength(JSON.stringify(event({ userAgent: huge }))),
      rawTruncated: true,
    });
    expectBounded(dead!.bytes, dead!.letter);
  });

  it("answers 400 to NDJSON with one enormous line holding an event, naming the line", async () => {
    const body = [JSON.stringify(event()), JSON.stringify(event({ referrer: "r".repeat(1.2 * MiB) }))].join(
      "\n",
    );
    const { answer, marker } = await post(body, "application/x-ndjson");
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatch(
      /^the body holds a string of 1258291 characters on line 2 at referrer;/,
    );
    const [dead] = await lettersOf(marker);
    expect(dead!.letter).toMatchObject({ reason: "refused-body", rawBytes: Buffer.byteLength(body) });
    expectBounded(dead!.bytes, dead!.letter);
  });

  it("refuses an enormous NDJSON line that is not JSON by its line number, accepting the others, and bounds its dead letter", async () => {
    const good = event();
    const garbage = "not json at all ".repeat((1.2 * MiB) / 16);
    const { answer, marker } = await post([JSON.stringify(good), garbage].join("\n"), "application/x-ndjson");
    // The other line's event is acknowledged: a 4xx would tell the client to drop it.
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      accepted: 1,
      refused: 1,
      results: [
        { index: 0, status: "accepted", eventId: good.eventId },
        {
          index: 1,
          status: "refused",
          errors: [{ field: "", message: "line 2 of the NDJSON body is not valid JSON" }],
        },
      ],
    });
    const [dead] = await lettersOf(marker);
    expect(dead!.letter).toMatchObject({
      reason: "invalid-event",
      index: 1,
      rawBytes: Buffer.byteLength(garbage),
      rawTruncated: true,
    });
    expect(garbage.startsWith(dead!.letter.raw as string)).toBe(true);
    expectBounded(dead!.bytes, dead!.letter);
  });

  it("keeps per-field errors short when a refused value is long, and keys the dead letter by the cookie's session", async () => {
    const digits = "9".repeat(60_000);
    const longSession = "s".repeat(60_000);
    const { answer, marker } = await post(
      JSON.stringify(event({ eventTime: digits, sessionId: longSession })),
    );
    expect(answer.status).toBe(200);
    expect(answer.body.refused).toBe(1);
    const errors = answer.body.results?.[0]?.status === "refused" ? answer.body.results[0].errors : [];
    expect(errors.map((e) => e.field)).toEqual(["eventTime", "sessionId"]);
    for (const error of errors) expect(error.message.length).toBeLessThan(200);
    expect(errors[0]!.message).toBe(
      `eventTime ${"9".repeat(40)}… (60000 characters) is not a whole number of epoch milliseconds`,
    );
    // The dead letter is keyed by the request's own session, not by the refused 60,000-character one.
    const [dead, ...more] = await lettersOf(marker);
    expect(more).toEqual([]);
    expect(dead!.letter.errors).toEqual(errors);
    expectBounded(dead!.bytes, dead!.letter);
  });

  it("answers 400 to a body that is not UTF-8, saying where, and dead-letters its bytes", async () => {
    const prefix = Buffer.from('{"eventType":"click","eventTime":"2026-01-01T00:00:00Z","userAgent":"caf');
    // Latin-1 é: a client that did not encode its body as UTF-8.
    const body = Buffer.concat([prefix, Buffer.from([0xe9]), Buffer.from('","request":{"url":"/"}}')]);
    const { answer, marker } = await post(body);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toBe(
      `the body is not valid UTF-8 (byte 0xe9 at offset ${prefix.length}); send JSON and NDJSON as UTF-8`,
    );
    const [dead] = await lettersOf(marker);
    expect(dead!.letter).toMatchObject({
      reason: "unparseable-body",
      rawEncoding: "base64",
      rawBytes: body.length,
      rawTruncated: false,
    });
    expect(Buffer.from(dead!.letter.raw as string, "base64")).toEqual(body);
    expectBounded(dead!.bytes, dead!.letter);
  });

  it("still accepts valid events after all of it", async () => {
    const good = event();
    const { answer } = await post(JSON.stringify({ events: [good] }));
    expect(answer).toEqual({
      status: 200,
      body: { accepted: 1, refused: 0, results: [{ index: 0, status: "accepted", eventId: good.eventId }] },
    });
  });
});
