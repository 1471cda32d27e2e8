/**
 * The collector's hand-written fast path (`validInput`) against the zod schema it stands in for
 * (`schemaInput`), on events mutated at random from a valid one: whatever the fast path accepts,
 * the schema accepts with the same result. It may decline an event the schema takes (then the
 * schema decides), never the other way round. A seeded generator keeps failures reproducible.
 */
import { describe, expect, it } from "vitest";
import { type ServerContext, schemaInput, validInput } from "../../src/dataplane/clickstream/schema.js";

const receivedAt = Date.UTC(2026, 10, 26, 7, 0, 0);
const contexts: ServerContext[] = [
  { receivedAt, collectorId: "c", clientIp: "192.0.2.1", sessionId: "cookie-session-1" },
  {
    receivedAt,
    collectorId: "c",
    clientIp: "192.0.2.1",
    sessionId: "cookie-session-1",
    userAgent: "UA/1",
    referrer: "https://r.example/",
  },
  {
    receivedAt,
    collectorId: "c",
    clientIp: "192.0.2.1",
    sessionId: "x",
    userAgent: "u".repeat(3000),
    referrer: "r".repeat(9000),
  },
];

const texts = [
  "",
  "a",
  "x".repeat(257),
  "x".repeat(2049),
  "x".repeat(8193),
  "GET",
  "get",
  "Post",
  "FOO",
  "/p",
  "/p?q=1#f",
  "http://a.b/c?d",
  "HTTPS://X",
  "ftp://x",
  "page_view",
  "click",
  "Click",
  "session-0001",
  "ab cd efgh",
  "6f1c0d2e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
  "6F1C0D2E-8A4B-4C3D-9E2F-1A2B3C4D5E6F",
  "not-a-uuid",
  "1764140400000",
  "1764140400",
  "99999999999999999999",
  "2026-11-26T06:59:00.123Z",
  "2026-02-30T07:00:00Z",
  "2026-11-26T07:00Z",
  "2026-11-26T07:00:00+01:00",
  "1999-12-31T23:59:59Z",
  "2026-11-26",
  "2024-02-29T00:00:00Z",
  "2025-02-29T00:00:00Z",
  "2026-04-31T00:00:00Z",
  "2026-13-01T00:00:00Z",
  "2026-00-10T00:00:00Z",
  "2026-05-00T00:00:00Z",
  "0000-02-29T00:00:00Z",
  "9999-12-31T23:59:59Z",
];
const values: unknown[] = [
  undefined,
  null,
  ...texts,
  0,
  1.5,
  1764140400000,
  receivedAt + 2 * 86_400_000,
  1e11 - 1,
  946684799999,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  true,
  [],
  {},
  ["a"],
  2 ** 60,
];
const fields = [
  "eventId",
  "eventType",
  "eventTime",
  "sessionId",
  "userId",
  "userAgent",
  "referrer",
  "request",
];
const requestFields = ["method", "url", "videoId"];

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

describe("the collector's validation fast path", () => {
  it("accepts only what the zod schema accepts, with the same result", () => {
    const next = random(20261126);
    const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]!;
    let fastAccepted = 0;
    let schemaAccepted = 0;
    for (let i = 0; i < 30_000; i++) {
      let event: unknown = {
        eventId: "6f1c0d2e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
        eventType: "click",
        eventTime: receivedAt - 1000,
        sessionId: "session-0001",
        userId: "u",
        userAgent: "UA",
        referrer: null,
        request: { method: "GET", url: "https://x.example/p?q", videoId: "v" },
      };
      for (let change = Math.floor(next() * 4); change > 0; change--) {
        const roll = next();
        const target = event as Record<string, unknown> | null;
        if (roll < 0.6 && target && typeof target === "object") {
          if (next() < 0.2) delete target[pick(fields)];
          else target[pick(fields)] = pick(values);
        } else if (roll < 0.95) {
          const request = target?.request as Record<string, unknown> | undefined;
          if (request && typeof request === "object") {
            if (next() < 0.2) delete request[pick(requestFields)];
            else request[pick(requestFields)] = pick(values);
          }
        } else {
          event = pick(values);
        }
      }
      const context = pick(contexts);
      const fast = validInput(event, context);
      const schema = schemaInput(event, context);
      if (schema.success) schemaAccepted++;
      if (fast === undefined) continue;
      fastAccepted++;
      expect(schema.success, JSON.stringify(event)).toBe(true);
      expect(JSON.parse(JSON.stringify(fast)), JSON.stringify(event)).toEqual(
        JSON.parse(JSON.stringify(schema.data)),
      );
    }
    // Both paths saw plenty of valid events, and the fast path took nearly all of them.
    expect(schemaAccepted).toBeGreaterThan(3_000);
    expect(fastAccepted / schemaAccepted).toBeGreaterThan(0.95);
  });
});
