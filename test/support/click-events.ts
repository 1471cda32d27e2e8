import type { ClickEvent } from "../../src/dataplane/clickstream/schema.js";

/**
 * Deterministic clickstream events shaped like production traffic: a few hundred sessions, a
 * handful of user agents and paths, most users anonymous. The same seed gives the same rows.
 */
export function clickEvents(
  count: number,
  options: { seed?: number; startMs?: number; spanMs?: number } = {},
): ClickEvent[] {
  let state = options.seed ?? 42;
  const random = () => {
    // xorshift32: fast and reproducible, which is all synthetic rows need.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x1_0000_0000;
  };
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const agents = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
  ];
  const types = ["page_view", "click", "play", "pause", "seek", "ended", "heartbeat"] as const;
  const paths = ["/", "/watch", "/search", "/browse/new", "/account", "/watch/live"];
  const referrers = [
    null,
    null,
    "https://www.google.com/",
    "https://news.example.org/article/42",
    "https://t.co/abc",
  ];
  // Padded: a session id has at least 8 characters (the collector refuses shorter ones).
  const sessions = Array.from(
    { length: 400 },
    (_, i) => `sess_${String((i * 2654435761) >>> 0).padStart(10, "0")}`,
  );
  const startMs = options.startMs ?? Date.UTC(2026, 10, 26, 6, 30);
  const spanMs = options.spanMs ?? 2 * 3_600_000;
  const events: ClickEvent[] = [];
  for (let i = 0; i < count; i++) {
    const sessionIndex = Math.floor(random() * sessions.length);
    const path = pick(paths);
    const videoId = path.startsWith("/watch") ? `v${Math.floor(random() * 5000)}` : null;
    const query = videoId ? `v=${videoId}` : random() < 0.2 ? `q=term${Math.floor(random() * 100)}` : "";
    const eventTime = startMs + Math.floor((i / Math.max(1, count)) * spanMs);
    events.push({
      eventId: `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`,
      eventType: pick(types),
      eventTime,
      receivedAt: eventTime + Math.floor(random() * 500),
      sessionId: sessions[sessionIndex]!,
      userId: sessionIndex % 3 === 0 ? `user${sessionIndex}` : null,
      userAgent: agents[sessionIndex % agents.length]!,
      clientIp: `10.${sessionIndex % 256}.${(sessionIndex * 7) % 256}.${(sessionIndex * 13) % 256}`,
      referrer: pick(referrers),
      request: { method: "GET", url: query ? `${path}?${query}` : path, path, query, videoId },
      collectorId: `collector-${sessionIndex % 3}`,
    });
  }
  return events;
}
