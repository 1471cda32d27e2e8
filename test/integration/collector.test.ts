import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { request } from "node:http";
import { resolve } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SchemaRegistry } from "../../src/dataplane/avro/registry.js";
import { collectorConfigSchema } from "../../src/dataplane/clickstream/config.js";
import type { DeadLetter } from "../../src/dataplane/clickstream/deadLetter.js";
import { type RunningCollector, startCollector } from "../../src/dataplane/clickstream/main.js";
import type { ClickEvent } from "../../src/dataplane/clickstream/schema.js";
import type { EventsResponse } from "../../src/dataplane/clickstream/server.js";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics, type ReadMessage, readTopic } from "../support/kafka.js";

const logger = pino({ level: process.env.TRIBUTARY_LOG_LEVEL ?? "silent" });

function event(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    eventType: "page_view",
    eventTime: new Date().toISOString(),
    request: { method: "GET", url: "https://tube.example/watch?v=abc&t=10", videoId: "abc" },
    ...overrides,
  };
}

async function post(
  base: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: () => Promise<unknown> }> {
  const response = await fetch(`${base}/v1/events`, {
    method: "POST",
    headers: { "content-type": "application/json", "user-agent": "test-agent/1.0", ...headers },
    body,
  });
  return { status: response.status, headers: response.headers, json: () => response.json() };
}

describe("clickstream collector against the shared Kafka cluster", () => {
  const brokers = testEnv().kafkaBrokers;
  const topic = uniqueName("clicks");
  const dlqTopic = `${topic}.dlq`;
  const schemasTopic = uniqueName("clicks-schemas");
  let deleteTopics: () => Promise<void>;
  let collector: RunningCollector;
  let registry: SchemaRegistry;

  beforeAll(async () => {
    deleteTopics = await createTopics(brokers, [
      { topic, numPartitions: 6 },
      { topic: dlqTopic, numPartitions: 1 },
    ]);
    const config = collectorConfigSchema.parse({
      brokers,
      topic,
      schemasTopic,
      host: "127.0.0.1",
      port: 0,
      collectorId: "collector-test-0",
      maxBodyBytes: 64 * 1024,
      maxEventsPerRequest: 100,
    });
    collector = await startCollector(config, logger);
    registry = await SchemaRegistry.connect({ brokers, topic: schemasTopic });
  });

  afterAll(async () => {
    await collector?.close();
    await registry?.close();
    await deleteTopics?.();
    const cleanup = await createTopicsCleanup(brokers, [schemasTopic]);
    await cleanup();
  });

  async function decodedEvents(): Promise<(ClickEvent & { partition: number; key: string | null })[]> {
    const messages = await readTopic(brokers, topic);
    return Promise.all(
      messages.map(async (m: ReadMessage) => ({
        ...((await registry.decode(m.value)) as ClickEvent),
        partition: m.partition,
        key: m.key,
      })),
    );
  }

  it("accepts one JSON event, fills what the server knows and sets a session cookie", async () => {
    const eventId = randomUUID();
    const response = await post(base(), JSON.stringify(event({ eventId, userId: "user-7" })), {
      "x-forwarded-for": "203.0.113.9, 10.0.0.1",
      referer: "https://search.example/?q=cats",
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      accepted: 1,
      refused: 0,
      results: [{ index: 0, status: "accepted", eventId }],
    });
    const cookie = response.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/^tributary_sid=[0-9a-f-]{36}; Path=\/; Max-Age=1800; HttpOnly; SameSite=Lax$/);
    const sessionId = /tributary_sid=([^;]+)/.exec(cookie)![1]!;

    const stored = (await decodedEvents()).find((e) => e.eventId === eventId)!;
    expect(stored).toMatchObject({
      eventType: "page_view",
      sessionId,
      key: sessionId,
      userId: "user-7",
      userAgent: "test-agent/1.0",
      clientIp: "203.0.113.9",
      referrer: "https://search.example/?q=cats",
      collectorId: "collector-test-0",
      request: { method: "GET", path: "/watch", query: "v=abc&t=10", videoId: "abc" },
    });
    expect(stored.receivedAt).toBeGreaterThanOrEqual(stored.eventTime - 1000);
  });

  it("accepts batches as {events: [...]}, as a JSON array and as NDJSON, keeping the cookie's session", async () => {
    const cookie = "tributary_sid=batch-session-0001";
    const ids: string[] = Array.from({ length: 9 }, () => randomUUID());
    const wrapped = await post(
      base(),
      JSON.stringify({ events: ids.slice(0, 3).map((eventId) => event({ eventId })) }),
      {
        cookie,
      },
    );
    const array = await post(base(), JSON.stringify(ids.slice(3, 6).map((eventId) => event({ eventId }))), {
      cookie,
    });
    const ndjson = await post(
      base(),
      ids
        .slice(6)
        .map((eventId) => JSON.stringify(event({ eventId })))
        .join("\n"),
      {
        cookie,
        "content-type": "application/x-ndjson",
      },
    );
    for (const response of [wrapped, array, ndjson]) {
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ accepted: 3, refused: 0 });
      expect(response.headers.get("set-cookie")).toMatch(/^tributary_sid=batch-session-0001;/);
    }
    const stored = (await decodedEvents()).filter((e) => ids.includes(e.eventId));
    expect(stored.map((e) => e.eventId).sort()).toEqual([...ids].sort());
    expect(new Set(stored.map((e) => e.sessionId))).toEqual(new Set(["batch-session-0001"]));
  });

  it("answers the tracking pixel with a GIF and records its event", async () => {
    const eventId = randomUUID();
    const query = new URLSearchParams({
      eventId,
      eventType: "play",
      eventTime: String(Date.now()),
      videoId: "v-42",
    });
    const response = await fetch(`${base()}/v1/pixel.gif?${query}`, {
      headers: { referer: "https://tube.example/watch/v-42", "user-agent": "pixel-agent" },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("image/gif");
    const gif = Buffer.from(await response.arrayBuffer());
    expect(gif.subarray(0, 6).toString("latin1")).toBe("GIF89a");
    expect(gif.readUInt16LE(6)).toBe(1);
    expect(gif.readUInt16LE(8)).toBe(1);
    const stored = (await decodedEvents()).find((e) => e.eventId === eventId)!;
    expect(stored).toMatchObject({
      eventType: "play",
      userAgent: "pixel-agent",
      clientIp: "127.0.0.1",
      request: {
        method: "GET",
        url: "https://tube.example/watch/v-42",
        path: "/watch/v-42",
        videoId: "v-42",
      },
    });

    // A <noscript> pixel sends nothing but its Referer: a page view at the received time.
    const page = `https://tube.example/noscript/${randomUUID()}`;
    const bare = await fetch(`${base()}/v1/pixel.gif`, { headers: { referer: page, "user-agent": "no-js" } });
    expect(bare.status).toBe(200);
    const head = await fetch(`${base()}/v1/pixel.gif`, {
      method: "HEAD",
      headers: { referer: `${page}/head` },
    });
    expect(head.status).toBe(200);
    const noscript = (await decodedEvents()).filter((e) => e.request.url.startsWith(page));
    expect(noscript).toHaveLength(1);
    expect(noscript[0]).toMatchObject({ eventType: "page_view", userAgent: "no-js" });
    expect(noscript[0]!.eventTime).toBe(noscript[0]!.receivedAt);

    // A refused pixel still answers the GIF (an <img> shows no JSON); the reason is in a header.
    const refused = await fetch(`${base()}/v1/pixel.gif?eventType=z%C3%BCrich`, {
      headers: { referer: page, "x-forwarded-proto": "https" },
    });
    expect(refused.status).toBe(200);
    expect(refused.headers.get("x-tributary-refused")).toBe(
      'eventType: eventType must be one of page_view, click, play, pause, seek, ended, heartbeat, got "z?rich"',
    );
    expect(refused.headers.get("set-cookie")).toMatch(/; HttpOnly; SameSite=Lax; Secure$/);
  });

  it("keeps each session in one partition, in the order its events were sent", async () => {
    const sessions = Array.from({ length: 8 }, (_, i) => `order-session-${i}-${randomUUID().slice(0, 8)}`);
    // 25 rounds; each round posts one batch holding the next event of every session, and two
    // rounds run concurrently so batches interleave in the collector's buffer.
    const rounds = 25;
    const postRound = (round: number) =>
      post(
        base(),
        JSON.stringify({
          events: sessions.map((sessionId) =>
            event({ sessionId, eventType: "seek", request: { url: `/seq/${round}` } }),
          ),
        }),
      );
    for (let round = 0; round < rounds; round += 2) {
      const pair = await Promise.all([
        postRound(round),
        ...(round + 1 < rounds ? [postRound(round + 1)] : []),
      ]);
      for (const response of pair) expect(response.status).toBe(200);
    }
    const stored = await decodedEvents();
    for (const sessionId of sessions) {
      const ofSession = stored.filter((e) => e.sessionId === sessionId);
      expect(ofSession).toHaveLength(rounds);
      expect(new Set(ofSession.map((e) => e.partition)).size).toBe(1);
      const sequence = ofSession.map((e) => Number(e.request.path.split("/")[2]));
      // Two rounds sent concurrently may land either way round; rounds of different pairs may not.
      for (let i = 1; i < sequence.length; i++) {
        expect(Math.floor(sequence[i]! / 2)).toBeGreaterThanOrEqual(Math.floor(sequence[i - 1]! / 2));
      }
      expect([...sequence].sort((a, b) => a - b)).toEqual(Array.from({ length: rounds }, (_, i) => i));
    }
    // Sessions hash to different partitions: the key spreads the load.
    expect(
      new Set(stored.filter((e) => sessions.includes(e.sessionId)).map((e) => e.partition)).size,
    ).toBeGreaterThan(1);
  });

  it("refuses invalid events with per-field reasons and dead-letters them, accepting the valid ones", async () => {
    const goodId = randomUUID();
    const badTime = event({ eventTime: "next tuesday", userId: "u1" });
    const badMany = { eventType: "jump", request: { url: "no-slash", method: "FETCH" }, sessionId: "x" };
    const response = await post(
      base(),
      JSON.stringify({ events: [badTime, event({ eventId: goodId }), badMany, "not an object"] }),
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as EventsResponse;
    expect(body.accepted).toBe(1);
    expect(body.refused).toBe(3);
    expect(body.results[1]).toEqual({ index: 1, status: "accepted", eventId: goodId });
    expect(body.results[0]).toEqual({
      index: 0,
      status: "refused",
      errors: [
        {
          field: "eventTime",
          message:
            'eventTime "next tuesday" is not an ISO 8601 datetime with a zone (e.g. 2026-11-26T07:00:00.000Z)',
        },
      ],
    });
    const fields = body.results[2]?.status === "refused" ? body.results[2].errors.map((e) => e.field) : [];
    expect(fields).toEqual(["eventType", "eventTime", "sessionId", "request.method", "request.url"]);
    expect(body.results[3]).toMatchObject({ status: "refused", errors: [{ field: "" }] });

    const letters = (await readTopic(brokers, dlqTopic)).map(
      (m) => JSON.parse(m.value.toString()) as DeadLetter,
    );
    const forTime = letters.find((l) => (l.raw as { eventTime?: string }).eventTime === "next tuesday")!;
    expect(forTime).toMatchObject({
      reason: "invalid-event",
      raw: badTime,
      index: 0,
      topic,
      collectorId: "collector-test-0",
      errors: [{ field: "eventTime" }],
    });
    expect(Date.parse(forTime.receivedAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(letters.some((l) => l.raw === "not an object")).toBe(true);
    expect(letters.some((l) => (l.raw as { eventType?: string }).eventType === "jump")).toBe(true);

    const unparseable = await post(base(), "{not json");
    expect(unparseable.status).toBe(400);
    const after = (await readTopic(brokers, dlqTopic)).map(
      (m) => JSON.parse(m.value.toString()) as DeadLetter,
    );
    expect(after.some((l) => l.reason === "unparseable-body" && l.raw === "{not json")).toBe(true);
  });

  it("answers 413 for a body over the limit and for too many events", async () => {
    const big = JSON.stringify(event({ userId: "x".repeat(100 * 1024) }));
    const declared = await post(base(), big);
    expect(declared.status).toBe(413);
    expect(await declared.json()).toEqual({
      error: `request body of ${Buffer.byteLength(big)} bytes is larger than the limit of 65536 bytes`,
    });
    // Chunked (no Content-Length): the collector counts while reading.
    const chunked = await new Promise<number>((resolveStatus, reject) => {
      const req = request(`${base()}/v1/events`, {
        method: "POST",
        headers: { "content-type": "application/json" },
      });
      req.on("response", (res) => {
        res.resume();
        resolveStatus(res.statusCode ?? 0);
      });
      req.on("error", reject);
      for (let i = 0; i < 10; i++) req.write("x".repeat(10 * 1024));
      req.end();
    });
    expect(chunked).toBe(413);
    const many = await post(base(), JSON.stringify({ events: Array.from({ length: 101 }, () => event()) }));
    expect(many.status).toBe(413);
    expect(await many.json()).toEqual({ error: "101 events in one request; at most 100 are taken" });
  });

  it("runs as `tributary collector` and on SIGTERM answers what it took, flushes and exits 0", async () => {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        resolve(import.meta.dirname, "../../src/cli.ts"),
        "collector",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
      ],
      {
        env: {
          ...process.env,
          TRIBUTARY_COLLECTOR_BROKERS: brokers.join(","),
          TRIBUTARY_COLLECTOR_TOPIC: topic,
          TRIBUTARY_COLLECTOR_SCHEMAS_TOPIC: schemasTopic,
          TRIBUTARY_COLLECTOR_COLLECTOR_ID: "collector-cli",
          TRIBUTARY_LOG_LEVEL: "info",
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolveExit) =>
      child.once("exit", (code) => resolveExit(code)),
    );
    try {
      const deadline = Date.now() + 60_000;
      let port: number | undefined;
      while (port === undefined) {
        const match = /"port":(\d+).*"msg":"collector listening"/.exec(output);
        if (match) port = Number(match[1]);
        else if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`collector did not start:\n${output}`);
        else await new Promise((r) => setTimeout(r, 100));
      }
      const url = `http://127.0.0.1:${port}`;
      const batches = Array.from({ length: 10 }, () => Array.from({ length: 10 }, () => randomUUID()));
      const responses = batches.map((ids) =>
        post(url, JSON.stringify({ events: ids.map((eventId) => event({ eventId })) })).then(
          (r) => r.status,
          () => 0,
        ),
      );
      const first = await Promise.race(responses);
      expect(first).toBe(200);
      child.kill("SIGTERM");
      const statuses = await Promise.all(responses);
      expect(await exited).toBe(0);
      expect(output).toMatch(/"msg":"collector stopped"/);
      // What the collector answered 200 for before it stopped is in the topic.
      const stored = new Set((await decodedEvents()).map((e) => e.eventId));
      const acknowledged = batches.filter((_, i) => statuses[i] === 200).flat();
      expect(acknowledged.length).toBeGreaterThan(0);
      expect(acknowledged.filter((id) => !stored.has(id))).toEqual([]);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  it("refuses to start when the topic or its dead-letter topic is missing, naming them", async () => {
    const missing = uniqueName("missing");
    const config = collectorConfigSchema.parse({
      brokers,
      topic: missing,
      schemasTopic,
      topicWaitMs: 500,
      host: "127.0.0.1",
      port: 0,
    });
    await expect(startCollector(config, logger)).rejects.toThrow(
      `Kafka topics '${missing}', '${missing}.dlq' do not exist; create them (the Topic resource does) before starting the collector`,
    );
  });

  it("reports health, readiness and metrics", async () => {
    expect((await fetch(`${base()}/healthz`)).status).toBe(200);
    // Ready once its last look at the brokers was answered: one slow metadata answer from the
    // shared Kafka makes it not ready until the next look.
    const deadline = Date.now() + 60_000;
    let ready = await fetch(`${base()}/readyz`);
    while (ready.status !== 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      ready = await fetch(`${base()}/readyz`);
    }
    expect(ready.status, await ready.text()).toBe(200);
    const metrics = await (await fetch(`${base()}/metrics`)).text();
    expect(metrics).toMatch(/tributary_collector_events_accepted_total \d+/);
    expect(metrics).toMatch(/tributary_collector_events_dead_lettered_total [1-9]/);
    expect(metrics).toMatch(/tributary_collector_produce_latency_seconds_bucket/);
    expect(metrics).toMatch(/tributary_collector_buffer_fill_ratio 0/);
  });

  function base(): string {
    return collector.url;
  }
});

async function createTopicsCleanup(brokers: string[], topics: string[]): Promise<() => Promise<void>> {
  const { default: kafkajs } = await import("kafkajs");
  return async () => {
    const admin = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.disconnect();
  };
}
