/**
 * What keeps a hostile body from costing the collector more than a 400: the limits a body is read
 * within (body.ts) and the bounds of a dead letter (deadLetter.ts). A seeded generator keeps the
 * randomised cases reproducible.
 */
import { isUtf8 } from "node:buffer";
import { describe, expect, it } from "vitest";
import {
  beyondLimits,
  firstInvalidUtf8,
  MAX_NESTING_DEPTH,
  parseBody,
} from "../../src/dataplane/clickstream/body.js";
import { parseCollectorConfig } from "../../src/dataplane/clickstream/config.js";
import {
  boundedErrors,
  boundedRaw,
  DEAD_LETTER_ENVELOPE_BYTES,
  type DeadLetter,
  encodeDeadLetter,
  jsonStringPrefix,
} from "../../src/dataplane/clickstream/deadLetter.js";
import { type ServerContext, validateEvent } from "../../src/dataplane/clickstream/schema.js";

/** mulberry32: a small seeded generator, so a failing case comes back on the next run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));
const limits = { maxStringLength: 1000 };
const json = (text: string, contentType = "application/json") =>
  parseBody(Buffer.from(text), contentType, limits);

describe("the limits a body is read within", () => {
  it("refuses a body nested 10,000 deep, saying where, and takes one nested to the limit", () => {
    expect(json(`${"[".repeat(10_000)}${"]".repeat(10_000)}`)).toEqual({
      refused: {
        reason: "refused-body",
        message: `the body is not clickstream events: it nests arrays and objects more than 32 levels deep (at ${"[0]".repeat(32)}); an event nests two (itself and its request)`,
      },
    });
    const atLimit = `${"[".repeat(MAX_NESTING_DEPTH)}${"]".repeat(MAX_NESTING_DEPTH)}`;
    expect(json(atLimit)).toHaveProperty("events");
    expect(json(`[${atLimit}]`)).toHaveProperty("refused.reason", "refused-body");
  });

  it("names the event and the line a too deep value is on, cutting a long path", () => {
    const deep = `${'{"context":'.repeat(40)}1${"}".repeat(40)}`;
    // The 33rd level: events[1] is the third, each context one more.
    const inBatch = json(`{"events":[{"eventType":"click"},${deep}]}`);
    expect(inBatch).toHaveProperty(
      "refused.message",
      expect.stringContaining(`(at events[1]${".context".repeat(24)}…); an event nests two`),
    );
    const onLine = json(`{"eventType":"click"}\n{"context":{"context":[[${deep}]]}}`, "application/x-ndjson");
    expect(onLine).toHaveProperty(
      "refused.message",
      expect.stringContaining(`(on line 2 at context.context[0][0]${".context".repeat(23)}…); `),
    );
  });

  it("refuses a string or a property name longer than maxStringLength, naming the field", () => {
    const long = "u".repeat(1001);
    expect(json(JSON.stringify({ events: [{}, { request: { url: long } }] }))).toEqual({
      refused: {
        reason: "refused-body",
        message:
          "the body holds a string of 1001 characters at events[1].request.url; the collector takes strings of up to 1000 characters (no field of an event is longer than 8192)",
      },
    });
    expect(json(JSON.stringify({ context: { [long]: 1 } }))).toHaveProperty(
      "refused.message",
      expect.stringMatching(/^the body holds a property name of 1001 characters at context;/),
    );
    expect(json(JSON.stringify([["a", long]]))).toHaveProperty(
      "refused.message",
      expect.stringMatching(/^the body holds a string of 1001 characters at \[0\]\[1\];/),
    );
    expect(json(`{"eventType":"click"}\n${JSON.stringify(long)}`, "application/x-ndjson")).toHaveProperty(
      "refused.message",
      expect.stringMatching(/^the body holds a string of 1001 characters on line 2;/),
    );
    // Names in the path are cut: they may be as long as the limit.
    const name = "n".repeat(900);
    expect(json(JSON.stringify({ [name]: long }))).toHaveProperty(
      "refused.message",
      expect.stringContaining(` at ${"n".repeat(40)}…;`),
    );
    expect(json(JSON.stringify({ events: [{ request: { url: "u".repeat(1000) } }] }))).toHaveProperty(
      "events",
    );
  });

  it("looks at strings only when asked to", () => {
    expect(beyondLimits({ a: ["x".repeat(50)] }, undefined)).toBeUndefined();
    expect(beyondLimits({ a: ["x".repeat(50)] }, 49)).toEqual({ kind: "string", length: 50, path: ["a", 0] });
    expect(beyondLimits("x".repeat(50), 49)).toEqual({ kind: "string", length: 50, path: [] });
  });

  it("refuses a body that is not UTF-8, naming the first bad byte and where it is", () => {
    const body = Buffer.concat([Buffer.from('{"userAgent":"caf'), Buffer.from([0xe9, 0x22, 0x7d])]);
    expect(parseBody(body, "application/json", limits)).toEqual({
      refused: {
        reason: "unparseable-body",
        message: "the body is not valid UTF-8 (byte 0xe9 at offset 17); send JSON and NDJSON as UTF-8",
      },
    });
  });
});

describe("the first byte that is not UTF-8", () => {
  it("is found for each way of being ill-formed", () => {
    const at = (...bytes: number[]) => firstInvalidUtf8(Uint8Array.from(bytes));
    expect(at(...Buffer.from("é中😀 plain"))).toBe(-1);
    expect(at(0x61, 0x80)).toBe(1); // a continuation byte with no lead
    expect(at(0x61, 0xc0, 0x80)).toBe(1); // overlong "\0"
    expect(at(0xe0, 0x80, 0x80)).toBe(0); // overlong three-byte form
    expect(at(0x61, 0xed, 0xa0, 0x80)).toBe(1); // a UTF-16 surrogate
    expect(at(0xf4, 0x90, 0x80, 0x80)).toBe(0); // above U+10FFFF
    expect(at(0xf5, 0x80, 0x80, 0x80)).toBe(0);
    expect(at(0x61, 0x62, 0xe2, 0x82)).toBe(2); // cut short by the end of the body
    expect(at(0xe2, 0x28, 0xa1)).toBe(0); // a lead without its continuation
  });

  it("agrees with node's isUtf8, and everything before it is UTF-8", () => {
    const next = random(8259);
    const pieces = [
      [0x41],
      [0xc3, 0xa9],
      [0xe4, 0xb8, 0xad],
      [0xf0, 0x9f, 0x98, 0x80],
      [0x80],
      [0xc0],
      [0xed, 0xa0],
      [0xf4, 0x90],
      [0xff],
    ];
    for (let i = 0; i < 20_000; i++) {
      const bytes: number[] = [];
      for (let n = Math.floor(next() * 12); n > 0; n--) {
        // Mostly well-formed, so that ill-formed bytes turn up anywhere in a body.
        bytes.push(...pieces[next() < 0.9 ? Math.floor(next() * 4) : 4 + Math.floor(next() * 5)]!);
      }
      const buffer = Buffer.from(bytes);
      const offset = firstInvalidUtf8(buffer);
      expect(offset === -1, buffer.toString("hex")).toBe(isUtf8(buffer));
      if (offset >= 0) expect(isUtf8(buffer.subarray(0, offset)), buffer.toString("hex")).toBe(true);
    }
  });
});

describe("the start of a text that fits in a number of bytes of JSON", () => {
  it("is the longest one, never splitting a surrogate pair", () => {
    const next = random(20261206);
    const alphabet = [
      "a",
      "~",
      '"',
      "\\",
      "\n",
      "\t",
      "\u0001",
      "\u007f",
      "é",
      "中",
      "\u2028",
      "😀",
      "\ud800",
      "\udc00",
    ];
    for (let i = 0; i < 20_000; i++) {
      let text = "";
      for (let n = Math.floor(next() * 30); n > 0; n--)
        text += alphabet[Math.floor(next() * alphabet.length)];
      const maxBytes = 2 + Math.floor(next() * 60);
      const start = jsonStringPrefix(text, maxBytes);
      const why = JSON.stringify({ text, maxBytes, start });
      expect(text.startsWith(start), why).toBe(true);
      expect(jsonBytes(start), why).toBeLessThanOrEqual(maxBytes);
      if (start.length < text.length) {
        const unit = text.charCodeAt(start.length);
        const following = text.charCodeAt(start.length + 1);
        const pair = unit >= 0xd800 && unit <= 0xdbff && following >= 0xdc00 && following <= 0xdfff;
        expect(jsonBytes(text.slice(0, start.length + (pair ? 2 : 1))), why).toBeGreaterThan(maxBytes);
        expect(text.slice(start.length).startsWith("\udc00") && /[\ud800-\udbff]$/.test(start), why).toBe(
          false,
        );
      }
    }
  });
});

describe("a dead letter's bounds", () => {
  const envelope = {
    reason: "invalid-event" as const,
    errors: [{ field: "eventType", message: "eventType is required" }],
    index: 3,
    receivedAt: "2026-11-26T07:00:00.000Z",
    collectorId: "collector-0",
    clientIp: "198.51.100.4",
    topic: "clicks",
  };

  it("keeps an event that fits as it came, and the start of the JSON of one that does not", () => {
    const event = { eventType: "jump", request: { url: "/" } };
    expect(boundedRaw({ event }, 1024)).toEqual({
      raw: event,
      rawBytes: jsonBytes(event),
      rawTruncated: false,
    });
    const large = { eventType: "jump", userAgent: "\u0001".repeat(10_000) };
    const bounded = boundedRaw({ event: large }, 1024);
    expect(bounded).toMatchObject({ rawBytes: jsonBytes(large), rawTruncated: true });
    expect(JSON.stringify(large).startsWith(bounded.raw as string)).toBe(true);
    expect(jsonBytes(bounded.raw)).toBeLessThanOrEqual(1024);
    expect(jsonBytes(bounded.raw)).toBeGreaterThan(1024 - 6);
  });

  it("cuts text to the limit in JSON, not in characters, and records its size in bytes", () => {
    const text = "é\u0001".repeat(10_000);
    const bounded = boundedRaw({ text }, 1024);
    expect(bounded).toMatchObject({ rawBytes: 30_000, rawTruncated: true });
    expect(text.startsWith(bounded.raw as string)).toBe(true);
    expect(jsonBytes(bounded.raw)).toBeLessThanOrEqual(1024);
    expect(boundedRaw({ text: "{oops" }, 1024)).toEqual({ raw: "{oops", rawBytes: 5, rawTruncated: false });
  });

  it("keeps bytes that are not UTF-8 in base64, cut to the limit", () => {
    const bytes = Buffer.alloc(10_000, 0xff);
    const bounded = boundedRaw({ bytes }, 1024);
    expect(bounded).toMatchObject({ rawEncoding: "base64", rawBytes: 10_000, rawTruncated: true });
    expect(jsonBytes(bounded.raw)).toBeLessThanOrEqual(1024);
    expect(Buffer.from(bounded.raw as string, "base64")).toEqual(bytes.subarray(0, 765));
    expect(boundedRaw({ bytes: Buffer.from([0xff, 0x41]) }, 1024)).toEqual({
      raw: "/0E=",
      rawEncoding: "base64",
      rawBytes: 2,
      rawTruncated: false,
    });
  });

  it("keeps at most 20 errors, each cut, and says how many more there were", () => {
    const errors = Array.from({ length: 100 }, (_, i) => ({
      field: `f${i}.${"\u0001".repeat(1000)}`,
      message: `m${i} ${"\\".repeat(100_000)}`,
    }));
    const bounded = boundedErrors(errors);
    expect(bounded).toHaveLength(20);
    expect(bounded[19]).toEqual({ field: "", message: "and 81 more errors" });
    for (const [i, error] of bounded.slice(0, 19).entries()) {
      expect(error.field.startsWith(`f${i}.`)).toBe(true);
      expect(error.field.endsWith("…")).toBe(true);
      expect(jsonBytes(error.field)).toBeLessThanOrEqual(256);
      expect(jsonBytes(error.message)).toBeLessThanOrEqual(1024);
    }
    const few = [{ field: "eventTime", message: "eventTime is required" }];
    expect(boundedErrors(few)).toEqual(few);
  });

  it("stays under the raw limit plus DEAD_LETTER_ENVELOPE_BYTES whatever came in", () => {
    const hostile = "\u0001\ud800".repeat(200_000);
    const worst = {
      ...envelope,
      reason: "unparseable-body" as const,
      errors: Array.from({ length: 1000 }, () => ({ field: hostile, message: hostile })),
      index: Number.MAX_SAFE_INTEGER,
      collectorId: "c".repeat(253),
      clientIp: "0000:0000:0000:0000:0000:ffff:255.255.255.255",
      topic: "t".repeat(249),
    };
    const rawLimit = 64 * 1024;
    for (const refused of [
      { text: hostile },
      { bytes: Buffer.alloc(2_000_000) },
      { event: { userAgent: hostile } },
    ]) {
      const value = encodeDeadLetter(worst, refused, rawLimit);
      expect(value.length).toBeLessThanOrEqual(rawLimit + DEAD_LETTER_ENVELOPE_BYTES);
      const letter = JSON.parse(value.toString("utf8")) as DeadLetter;
      expect(letter).toMatchObject({ reason: "unparseable-body", rawTruncated: true, topic: worst.topic });
    }
  });

  it("writes the letter's fields in the order a reader expects them", () => {
    const letter = JSON.parse(encodeDeadLetter(envelope, { event: { a: 1 } }, 1024).toString()) as DeadLetter;
    expect(Object.keys(letter)).toEqual([
      "reason",
      "errors",
      "raw",
      "rawBytes",
      "rawTruncated",
      "index",
      "receivedAt",
      "collectorId",
      "clientIp",
      "topic",
    ]);
  });
});

describe("refusal messages quoting a long value", () => {
  const context: ServerContext = {
    receivedAt: Date.UTC(2026, 10, 26, 7, 0, 0),
    collectorId: "collector-0",
    clientIp: "198.51.100.4",
    sessionId: "cookie-session-1",
    userAgent: "agent",
  };

  it("quote only its start and its length", () => {
    const messageOf = (eventTime: string) => {
      const result = validateEvent({ eventType: "click", eventTime, request: { url: "/" } }, context);
      return result.ok ? undefined : result.errors[0]?.message;
    };
    expect(messageOf("9".repeat(60_000))).toBe(
      `eventTime ${"9".repeat(40)}… (60000 characters) is not a whole number of epoch milliseconds`,
    );
    expect(messageOf(`${"0".repeat(60_000)}1`)).toBe(
      `eventTime ${"0".repeat(40)}… (60001 characters) looks like epoch seconds; send epoch milliseconds or ISO 8601`,
    );
  });
});

describe("collector configuration of the bounds", () => {
  const env = { TRIBUTARY_COLLECTOR_BROKERS: "k1:9092", TRIBUTARY_COLLECTOR_TOPIC: "clicks" };

  it("defaults to 64 KiB of a refused body and strings of 64 Ki characters", () => {
    expect(parseCollectorConfig([], env)).toMatchObject({
      deadLetterRawBytes: 65536,
      maxStringLength: 65536,
    });
  });

  it("refuses a dead-letter limit that leaves no room for the letter within a batch", () => {
    expect(() => parseCollectorConfig(["--dead-letter-raw-bytes", String(500 * 1024)], env)).toThrow(
      /--dead-letter-raw-bytes \(TRIBUTARY_COLLECTOR_DEAD_LETTER_RAW_BYTES\): deadLetterRawBytes must leave 32768 bytes for the rest of a dead letter within maxBatchBytes/,
    );
    expect(
      parseCollectorConfig(
        ["--dead-letter-raw-bytes", String(500 * 1024), "--max-batch-bytes", "1000000"],
        env,
      ),
    ).toMatchObject({ deadLetterRawBytes: 512_000 });
  });

  it("refuses a string limit below the longest field of an event", () => {
    expect(() => parseCollectorConfig(["--max-string-length", "1000"], env)).toThrow(
      /maxStringLength must be at least 8192, the longest field of an event \(request.url, referrer\)/,
    );
  });
});
