import { describe, expect, it } from "vitest";
import { NOT_JSON, parseBody as parse, UnparseableLine } from "../../src/dataplane/clickstream/body.js";
import { parseCollectorConfig } from "../../src/dataplane/clickstream/config.js";
import {
  type ClickEvent,
  clickEventType,
  type ServerContext,
  validateEvent,
} from "../../src/dataplane/clickstream/schema.js";

const receivedAt = Date.UTC(2026, 10, 26, 7, 0, 0);
const parseBody = (body: Buffer, contentType: string | undefined) =>
  parse(body, contentType, { maxStringLength: 64 * 1024 });
const context: ServerContext = {
  receivedAt,
  collectorId: "collector-0",
  clientIp: "198.51.100.4",
  sessionId: "cookie-session-1",
  userAgent: "header-agent",
  referrer: "https://header.example/",
};

const valid = {
  eventType: "play",
  eventTime: "2026-11-26T06:59:58.250+01:00",
  request: { url: "https://tube.example/watch?v=abc#t=3", videoId: "abc" },
};

function errorsOf(raw: unknown): Record<string, string> {
  const result = validateEvent(raw, context);
  if (result.ok) throw new Error("expected the event to be refused");
  return Object.fromEntries(result.errors.map((e) => [e.field, e.message]));
}

describe("clickstream event validation", () => {
  it("completes a valid event with what the server knows", () => {
    const result = validateEvent(valid, context);
    expect(result.ok).toBe(true);
    const event = (result as { event: ClickEvent }).event;
    expect(event).toMatchObject({
      eventType: "play",
      eventTime: Date.UTC(2026, 10, 26, 5, 59, 58, 250),
      receivedAt,
      sessionId: "cookie-session-1",
      userId: null,
      userAgent: "header-agent",
      clientIp: "198.51.100.4",
      referrer: "https://header.example/",
      collectorId: "collector-0",
      request: { method: "GET", url: valid.request.url, path: "/watch", query: "v=abc", videoId: "abc" },
    });
    expect(event.eventId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("lets the event's own fields win over headers and cookie, but never over the client IP", () => {
    const result = validateEvent(
      {
        ...valid,
        sessionId: "event-session-9",
        userAgent: "event-agent",
        referrer: "https://event.example/",
        userId: "user-1",
        clientIp: "10.9.9.9",
        eventId: "0D3A5F4E-1111-4222-8333-444455556666",
        request: { url: "/p", method: "post" },
      },
      context,
    );
    expect(result).toMatchObject({
      ok: true,
      event: {
        sessionId: "event-session-9",
        userAgent: "event-agent",
        referrer: "https://event.example/",
        userId: "user-1",
        clientIp: "198.51.100.4",
        eventId: "0d3a5f4e-1111-4222-8333-444455556666",
        request: { method: "POST", path: "/p", query: "" },
      },
    });
  });

  it("takes epoch milliseconds as a number or a string of digits", () => {
    for (const eventTime of [receivedAt - 5000, String(receivedAt - 5000)]) {
      const result = validateEvent({ ...valid, eventTime }, context);
      expect(result).toMatchObject({ ok: true, event: { eventTime: receivedAt - 5000 } });
    }
  });

  it("names every bad field and what was expected", () => {
    expect(errorsOf({})).toEqual({
      eventType: "eventType is required",
      eventTime: "eventTime is required (ISO 8601 datetime or epoch milliseconds)",
      request: "request is required (an object with url, and method, videoId)",
    });
    expect(
      errorsOf({
        eventType: "jump",
        eventTime: 1_700_000_000,
        sessionId: "short",
        userId: 42,
        request: { url: "watch", method: "FETCH", videoId: ["x"] },
      }),
    ).toEqual({
      eventType: 'eventType must be one of page_view, click, play, pause, seek, ended, heartbeat, got "jump"',
      eventTime: "eventTime 1700000000 looks like epoch seconds; send epoch milliseconds or ISO 8601",
      sessionId: "sessionId must be 8 to 128 characters of A-Z, a-z, 0-9, _ or -",
      userId: "userId must be a string, got number",
      "request.method":
        'request.method must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, got "FETCH"',
      "request.url": "request.url must be a path starting with / or an absolute http(s) URL",
      "request.videoId": "request.videoId must be a string, got an array",
    });
    expect(errorsOf({ ...valid, eventTime: "2026-11-26 07:00" })).toEqual({
      eventTime:
        'eventTime "2026-11-26 07:00" is not an ISO 8601 datetime with a zone (e.g. 2026-11-26T07:00:00.000Z)',
    });
    expect(errorsOf({ ...valid, eventTime: "2026-02-30T10:00:00Z" })).toEqual({
      eventTime: 'eventTime "2026-02-30T10:00:00Z" is not a valid date',
    });
    expect(errorsOf({ ...valid, eventTime: "1999-12-31T23:59:59Z" })).toEqual({
      eventTime: "eventTime 1999-12-31T23:59:59.000Z is before 2000-01-01",
    });
    expect(errorsOf({ ...valid, eventTime: receivedAt + 2 * 86_400_000 })).toEqual({
      eventTime:
        "eventTime 2026-11-28T07:00:00.000Z is more than a day after the collector's clock (2026-11-26T07:00:00.000Z)",
    });
    expect(errorsOf({ ...valid, eventId: "not-a-uuid" })).toEqual({
      eventId: "eventId must be a UUID (8-4-4-4-12 hex digits)",
    });
    expect(errorsOf({ ...valid, userId: "u".repeat(257) })).toEqual({
      userId: "userId is longer than 256 characters",
    });
    expect(errorsOf([valid])).toEqual({ "": "an event must be a JSON object, got an array" });
  });

  it("refuses an event without a user agent when the request had none either", () => {
    const { userAgent: _ignored, ...withoutAgent } = context;
    const result = validateEvent(valid, withoutAgent);
    expect(result).toEqual({ ok: false, errors: [{ field: "userAgent", message: "userAgent is required" }] });
  });

  it("nulls empty optional fields rather than refusing them", () => {
    const { referrer: _ignored, ...noReferrer } = context;
    const result = validateEvent({ ...valid, userId: "", referrer: "" }, noReferrer);
    expect(result).toMatchObject({ ok: true, event: { userId: null, referrer: null } });
  });
});

describe("clickstream Avro encoding", () => {
  it("round-trips a validated event, smaller than its JSON", () => {
    const result = validateEvent({ ...valid, userId: "user-1" }, context);
    if (!result.ok) throw new Error("valid event refused");
    const encoded = clickEventType.toBuffer(result.event);
    expect(clickEventType.fromBuffer(encoded)).toEqual(result.event);
    expect(encoded.length).toBeLessThan(Buffer.byteLength(JSON.stringify(result.event)));
  });

  it("is a record in the dev.tributary.clickstream namespace", () => {
    expect(clickEventType.name).toBe("dev.tributary.clickstream.ClickEvent");
  });
});

describe("request bodies", () => {
  it("reads one event, a wrapped batch, an array and NDJSON", () => {
    expect(parseBody(Buffer.from('{"eventType":"play"}'), "application/json")).toEqual({
      events: [{ eventType: "play" }],
    });
    expect(parseBody(Buffer.from('{"events":[{"a":1},{"a":2}]}'), undefined)).toEqual({
      events: [{ a: 1 }, { a: 2 }],
    });
    expect(parseBody(Buffer.from("[1,2]"), "text/plain")).toEqual({ events: [1, 2] });
    expect(parseBody(Buffer.from('{"a":1}\n\n{"a":2}\n'), "application/x-ndjson")).toEqual({
      events: [{ a: 1 }, { a: 2 }],
    });
  });

  it("keeps a bad NDJSON line as a refusable event with its line number", () => {
    const parsed = parseBody(Buffer.from('{"a":1}\n{oops\n'), "application/json");
    expect(parsed).toEqual({ events: [{ a: 1 }, new UnparseableLine(2, "{oops")] });
  });

  it("calls a body that is not JSON at all unparseable", () => {
    expect(parseBody(Buffer.from("hello"), "application/json")).toEqual({
      refused: { reason: "unparseable-body", message: NOT_JSON },
    });
    expect(parseBody(Buffer.from("hello\n{oops"), "application/x-ndjson")).toEqual({
      refused: { reason: "unparseable-body", message: NOT_JSON },
    });
  });
});

describe("collector configuration", () => {
  it("takes flags over environment variables and derives the dead-letter topic", () => {
    const config = parseCollectorConfig(["--topic", "clicks", "--port=9000"], {
      TRIBUTARY_COLLECTOR_BROKERS: "k1:9092, k2:9092",
      TRIBUTARY_COLLECTOR_PORT: "1234",
      TRIBUTARY_COLLECTOR_MAX_BODY_BYTES: "2048",
    });
    expect(config).toMatchObject({
      brokers: ["k1:9092", "k2:9092"],
      topic: "clicks",
      dlqTopic: "clicks.dlq",
      port: 9000,
      maxBodyBytes: 2048,
      trustForwardedFor: true,
    });
  });

  it("names the flag and the environment variable of a bad value", () => {
    expect(() => parseCollectorConfig(["--topic", "clicks", "--max-buffered-events=-3"], {})).toThrow(
      /--brokers \(TRIBUTARY_COLLECTOR_BROKERS\): .*\n.*--max-buffered-events \(TRIBUTARY_COLLECTOR_MAX_BUFFERED_EVENTS\): maxBufferedEvents must be positive/,
    );
    expect(() => parseCollectorConfig(["--nope", "1"], {})).toThrow(/Unknown option '--nope'/);
  });
});
