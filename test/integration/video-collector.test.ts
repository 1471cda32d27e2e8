/**
 * `tributary video` against live test cameras (ffmpeg testsrc served over HTTP MJPEG, HLS and
 * RTSP, and pushed over HTTP) and the test environment's Kafka: frames at the sampled rate, decodable, in
 * order, with their headers; bad sources reported without touching the others; a camera killed
 * and restarted, a frozen one; frames larger than a message chunked and reassembled.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { videoConfigSchema } from "../../src/dataplane/video/config.js";
import { type RunningVideoCollector, startVideoCollector } from "../../src/dataplane/video/main.js";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics } from "../support/kafka.js";
import { unusedPort } from "../support/ports.js";
import {
  FrameCollector,
  ffmpegPath,
  GarbageCamera,
  HlsCamera,
  MjpegCamera,
  probeImage,
  pushTestStream,
  RtspCamera,
  until,
} from "../support/video.js";

const logger = pino({ level: process.env.TRIBUTARY_LOG_LEVEL ?? "silent" });

describe("tributary video with live cameras", () => {
  const topic = uniqueName("video-frames");
  const brokers = testEnv().kafkaBrokers;
  let dropTopics: () => Promise<void>;
  let north: MjpegCamera;
  let south: MjpegCamera;
  let hls: HlsCamera;
  let garbage: GarbageCamera;
  let rtsp: RtspCamera;
  let collector: RunningVideoCollector;
  let frames: FrameCollector;
  const source = (name: string) => collector.status().sources.find((s) => s.name === name)!;

  beforeAll(async () => {
    dropTopics = await createTopics(brokers, [{ topic, numPartitions: 3 }]);
    [north, south, hls, garbage, rtsp] = await Promise.all([
      MjpegCamera.start({ size: "640x480", rate: 10 }),
      MjpegCamera.start({ size: "640x480", rate: 10 }),
      HlsCamera.start({ size: "320x240", rate: 10, gop: 10 }),
      GarbageCamera.start(),
      RtspCamera.start({ size: "320x240", rate: 10 }),
    ]);
    const unreachable = await unusedPort();
    collector = await startVideoCollector(
      videoConfigSchema.parse({
        brokers,
        topic,
        podName: "video-test-0",
        host: "127.0.0.1",
        port: 0,
        ffmpeg: ffmpegPath(),
        fps: 2,
        width: 320,
        quality: 70,
        frozenAfterMs: 4_000,
        initialBackoffMs: 300,
        maxBackoffMs: 2_000,
        sources: JSON.stringify([
          { name: "north", url: north.url },
          { name: "south", url: south.url },
          { name: "unreachable", url: `http://127.0.0.1:${unreachable}/video.mjpg` },
          { name: "garbage", url: garbage.url },
          { name: "pushed", push: { format: "mpegts" } },
          { name: "gate", url: rtsp.url },
        ]),
      }),
      logger,
    );
    frames = await FrameCollector.start(brokers, topic);
  });

  afterAll(async () => {
    await collector?.close();
    await frames?.stop();
    await Promise.all([north?.kill(), south?.kill(), hls?.stop(), garbage?.stop(), rtsp?.stop()]);
    await dropTopics?.();
  });

  it("publishes frames at the sampled rate, in order, decodable, with their headers", async () => {
    await until(
      "12 frames of each camera in Kafka",
      () => frames.of("north").length >= 12 && frames.of("south").length >= 12,
      90_000,
    );
    for (const camera of ["north", "south"]) {
      const got = frames.of(camera);
      // In order, one partition, consecutive sequence numbers from one collector.
      expect(new Set(got.map((f) => f.partition)).size).toBe(1);
      got.forEach((frame, i) => {
        if (i > 0) {
          expect(frame.sequence).toBe(got[i - 1]!.sequence + 1);
          expect(frame.captureTime).toBeGreaterThanOrEqual(got[i - 1]!.captureTime);
          expect(frame.ptsTime).toBeGreaterThan(got[i - 1]!.ptsTime);
        }
      });
      expect(got[0]).toMatchObject({
        camera,
        codec: "jpeg",
        width: 320,
        height: 240,
        collector: "video-test-0",
        chunks: 1,
      });
      // The sampled rate, from the stream's own clock (2 fps ± 25 %), not from the wall clock.
      const window = got.slice(2);
      const seconds = window.at(-1)!.ptsTime - window[0]!.ptsTime;
      const rate = (window.length - 1) / seconds;
      expect(rate).toBeGreaterThan(1.5);
      expect(rate).toBeLessThan(2.5);
      for (const frame of [got[0]!, got.at(-1)!]) {
        expect(await probeImage(frame.data)).toEqual({ codec: "mjpeg", width: 320, height: 240 });
      }
    }
    expect(source("north")).toMatchObject({ connected: true, framesDropped: 0 });
    expect(source("north").framesPublished).toBeGreaterThanOrEqual(12);
  });

  it("pulls an RTSP camera (H.264 over RTP, interleaved on TCP) at the sampled rate", async () => {
    await until("8 frames of the RTSP camera", () => frames.of("gate").length >= 8, 90_000);
    const got = frames.of("gate");
    const window = got.slice(2);
    const rate = (window.length - 1) / (window.at(-1)!.ptsTime - window[0]!.ptsTime);
    expect(rate).toBeGreaterThan(1.5);
    expect(rate).toBeLessThan(2.5);
    expect(await probeImage(got.at(-1)!.data)).toEqual({ codec: "mjpeg", width: 320, height: 240 });
    expect(source("gate")).toMatchObject({ connected: true, kind: "pull" });
  });

  it("reports an unreachable URL and a source that is not video on their own lines, the others unaffected", async () => {
    await until("both bad sources to report an error", () =>
      Boolean(source("unreachable").lastError && source("garbage").lastError),
    );
    expect(source("unreachable")).toMatchObject({ connected: false, framesPublished: 0 });
    expect(source("unreachable").lastError).toMatch(/Connection refused|no frame decoded/);
    expect(source("garbage")).toMatchObject({ connected: false, framesPublished: 0 });
    expect(source("garbage").lastError).toMatch(/ffmpeg exited|Invalid data|nothing ffmpeg can decode/);
    const before = source("north").framesPublished;
    await until("north to keep publishing", () => source("north").framesPublished >= before + 3);
    const response = await fetch(`${collector.url}/status`);
    const body = (await response.json()) as { sources: { name: string; lastError?: string }[] };
    expect(body.sources.find((s) => s.name === "unreachable")?.lastError).toBeTruthy();
    const metrics = await (await fetch(`${collector.url}/metrics`)).text();
    expect(metrics).toMatch(/tributary_video_frames_published_total\{source="north"\} \d+/);
    expect(metrics).toMatch(/tributary_video_source_connected\{source="unreachable"\} 0/);
    expect((await fetch(`${collector.url}/readyz`)).status).toBe(200);
  });

  it("reconnects to a camera that was killed and restarted, and resumes", async () => {
    await north.kill();
    await until("north to be disconnected", () => !source("north").connected);
    expect(source("north").lastError).toBeTruthy();
    const before = frames.of("north").length;
    await north.restart();
    await until("north to reconnect", () => source("north").connected);
    await until("frames of north after the restart", () => frames.of("north").length >= before + 4);
    const got = frames.of("north");
    got.forEach((frame, i) => {
      if (i > 0) expect(frame.sequence).toBeGreaterThan(got[i - 1]!.sequence);
    });
    expect(source("north").restarts).toBeGreaterThan(0);
    // The other camera never stopped.
    expect(source("south").connected).toBe(true);
  });

  it("restarts a camera whose stream freezes without closing", async () => {
    south.freeze();
    await until(
      "the frozen stream to be noticed",
      () => /frozen/.test(source("south").lastError ?? ""),
      60_000,
    );
    await south.kill();
    await south.restart();
    const before = frames.of("south").length;
    await until("south to resume", () => frames.of("south").length >= before + 3);
  });

  it("takes a pushed MPEG-TS stream over HTTP", async () => {
    await pushTestStream(`${collector.url}/v1/sources/pushed`, 4);
    await until("pushed frames", () => frames.of("pushed").length >= 5);
    expect(frames.of("pushed")[0]).toMatchObject({ codec: "jpeg", width: 320, height: 240 });
    // A push to a source that is not declared is refused with the reason.
    const refused = await fetch(`${collector.url}/v1/sources/nobody`, { method: "POST", body: "x" });
    expect(refused.status).toBe(404);
    expect(await refused.text()).toMatch(/no pushed source 'nobody'/);
  });

  it("samples only key frames of an H.264 stream", async () => {
    const topicKeys = uniqueName("video-keys");
    const drop = await createTopics(brokers, [{ topic: topicKeys, numPartitions: 1 }]);
    const keys = await startVideoCollector(
      videoConfigSchema.parse({
        brokers,
        topic: topicKeys,
        podName: "video-keys-0",
        host: "127.0.0.1",
        port: 0,
        ffmpeg: ffmpegPath(),
        keyFramesOnly: true,
        codec: "webp",
        sources: JSON.stringify([{ name: "hls", url: hls.url }]),
      }),
      logger,
    );
    const read = await FrameCollector.start(brokers, topicKeys);
    try {
      await until("4 key frames", () => read.of("hls").length >= 4, 60_000);
      const got = read.of("hls");
      // One ffmpeg run (its clock starts again after a restart), each frame once.
      expect(keys.status().sources[0]!.restarts).toBe(0);
      got.forEach((frame, i) => {
        if (i > 0) expect(frame.sequence).toBe(got[i - 1]!.sequence + 1);
      });
      // GOP of 10 frames at 10 fps: a key frame per second of the stream's clock.
      for (let i = 1; i < got.length; i++) {
        expect(got[i]!.ptsTime - got[i - 1]!.ptsTime).toBeCloseTo(1, 1);
        expect(got[i]!.keyFrame).toBe(true);
      }
      expect(await probeImage(got[0]!.data)).toEqual({ codec: "webp", width: 320, height: 240 });
    } finally {
      await keys.close();
      await read.stop();
      await drop();
    }
  });

  it("chunks frames larger than a Kafka message, and the reader puts them back together", async () => {
    const topicBig = uniqueName("video-big");
    const drop = await createTopics(brokers, [{ topic: topicBig, numPartitions: 1 }]);
    const big = await startVideoCollector(
      videoConfigSchema.parse({
        brokers,
        topic: topicBig,
        podName: "video-big-0",
        host: "127.0.0.1",
        port: 0,
        ffmpeg: ffmpegPath(),
        fps: 1,
        codec: "png",
        maxMessageBytes: 16_384,
        sources: JSON.stringify([{ name: "north", url: north.url }]),
      }),
      logger,
    );
    const read = await FrameCollector.start(brokers, topicBig);
    try {
      await until("3 whole frames", () => read.of("north").length >= 3, 60_000);
      for (const frame of read.of("north")) {
        expect(frame.chunks).toBeGreaterThan(1);
        expect(await probeImage(frame.data)).toEqual({ codec: "png", width: 640, height: 480 });
      }
    } finally {
      await big.close();
      await read.stop();
      await drop();
    }
  });
});
