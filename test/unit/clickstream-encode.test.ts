/**
 * The collector's hand-written ClickEvent encoder against avsc's writer for the same schema, on
 * random valid events: the same bytes, message after message, including once the arena they are
 * written into is replaced (earlier messages keep their bytes). A seeded generator keeps failures
 * reproducible.
 */
import { describe, expect, it } from "vitest";
import { encodeWith } from "../../src/dataplane/avro/registry.js";
import { encodeClickEvent } from "../../src/dataplane/clickstream/encode.js";
import {
  checkEvent,
  clickEventType,
  completeEvent,
  EVENT_TYPES,
  type ServerContext,
} from "../../src/dataplane/clickstream/schema.js";

function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  return { next, pick };
}

// Multi-byte text (2, 3 and 4 bytes of UTF-8) around the 64-byte boundary of the short-string path.
// Lone surrogates are left out: avsc writes them as 3 invalid bytes below 64 bytes, Node's
// encoder (and avsc above 64) as U+FFFD; the collector always writes U+FFFD.
const pieces = ["a", "Z", "/", "?", "#", "é", "ß", "€", "中", "😀", "-", "_", "=", "&", "%20"];

function text(g: ReturnType<typeof generator>, min: number, max: number): string {
  const length = min + Math.floor(g.next() * (max - min + 1));
  let out = "";
  while (out.length < length) out += g.pick(pieces);
  return out.slice(0, length).replace(/[\ud800-\udbff]$/, "x");
}

function randomEvent(g: ReturnType<typeof generator>): Record<string, unknown> {
  const lengths = [1, 10, 21, 22, 40, 63, 64, 65, 200, 3000];
  const event: Record<string, unknown> = {
    eventType: g.pick(EVENT_TYPES),
    eventTime: g.pick([
      1764140400123,
      "2026-11-26T06:59:00.123Z",
      "2026-11-26T07:00:00+01:00",
      "1764140400000",
      946684800000,
    ]),
    request: {
      url: g.pick([
        "/",
        "/watch",
        "/watch?v=1",
        "/p?q=1#frag",
        "https://tube.example",
        "https://tube.example?x=1",
        "http://tube.example/a/b?c=d&e=f#g",
        "https://tube.example/#only",
        `https://tube.example/${text(g, 1, 100)}?${text(g, 0, 100)}`,
        `/${text(g, 0, 70)}`,
        `/${"a".repeat(g.pick([62, 63, 64, 8190, 8191]))}`,
        `https://tube.example/watch?${"q".repeat(g.pick([63, 64, 8000]))}`,
      ]),
      ...(g.next() < 0.5 ? { method: g.pick(["GET", "post", "Delete"]) } : {}),
      ...(g.next() < 0.7 ? { videoId: g.pick([null, "", "vid1", text(g, 1, 256)]) } : {}),
    },
  };
  if (g.next() < 0.8)
    event.eventId = g.pick(["6f1c0d2e-8a4b-4c3d-9e2f-1a2b3c4d5e6f", "6F1C0D2E-8A4B-4C3D-9E2F-1A2B3C4D5E6F"]);
  if (g.next() < 0.8) event.sessionId = g.pick(["session-0001", "s".repeat(128), "A_b-C_d-E"]);
  if (g.next() < 0.8) event.userId = g.pick([null, "", "user-1", text(g, 1, g.pick([1, 63, 64, 256]))]);
  if (g.next() < 0.8)
    event.userAgent = g.pick([
      text(g, 1, g.pick(lengths.filter((l) => l <= 2048))),
      // ASCII of every length class: one varint byte, two, and the longest field.
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
      "u".repeat(g.pick([63, 64, 2048])),
    ]);
  if (g.next() < 0.8) event.referrer = g.pick([null, "", "https://r.example/", text(g, 1, 500)]);
  return event;
}

describe("collector's ClickEvent encoder", () => {
  it("writes avsc's bytes for every valid event, across arenas", () => {
    const g = generator(15);
    const written: { ours: Buffer; avsc: Buffer }[] = [];
    for (let i = 0; i < 6000; i++) {
      const context: ServerContext = {
        receivedAt: 1764140460000 + i,
        collectorId: g.pick(["c", "collector-0", "pod-ü-1"]),
        clientIp: g.pick(["192.0.2.1", "2001:db8::1"]),
        sessionId: "cookie-session-1",
        ...(g.next() < 0.5 ? { userAgent: text(g, 1, 300) } : {}),
        ...(g.next() < 0.5 ? { referrer: "https://ref.example/" } : {}),
      };
      const checked = checkEvent(randomEvent(g), context);
      if (!checked.ok) continue;
      const id = 1 + (i % 300);
      written.push({
        ours: encodeClickEvent(id, checked.input, checked.eventId, context),
        avsc: encodeWith(id, clickEventType, completeEvent(checked.input, checked.eventId, context)),
      });
    }
    // Enough bytes to fill several arenas of 256 KiB.
    expect(written.reduce((sum, w) => sum + w.ours.length, 0)).toBeGreaterThan(1024 * 1024);
    for (const { ours, avsc } of written) expect(ours.toString("hex")).toBe(avsc.toString("hex"));
  });
});
