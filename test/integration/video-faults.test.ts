/**
 * `tributary video` when Kafka goes away, and with two replicas sharing the cameras.
 *
 * Kafka: a private single-node broker (test/support/kafka.ts), never the shared one, is killed
 * with `kill -9` and started again: the collector does not crash, keeps its memory bounded by
 * dropping the oldest unsent frames and counting them, turns not ready, and publishes again once
 * the broker is back.
 *
 * Replicas: two collectors as pods 0 and 1 of a StatefulSet read one sources file; each takes the
 * cameras rendezvous hashing gives its ordinal, and when the file says one replica (a scale-down)
 * pod 0 takes over pod 1's cameras.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ownerOrdinal } from "../../src/dataplane/video/assignment.js";
import { videoConfigSchema } from "../../src/dataplane/video/config.js";
import { type RunningVideoCollector, startVideoCollector } from "../../src/dataplane/video/main.js";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics, PrivateKafka } from "../support/kafka.js";
import { FrameCollector, ffmpegPath, MjpegCamera, until } from "../support/video.js";

/** Its ports are picked from a range that other processes' ephemeral ports may take: try again. */
async function startPrivateKafka(): Promise<PrivateKafka> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await PrivateKafka.start();
    } catch (error) {
      if (attempt >= 3) throw error;
    }
  }
}

const logger = pino({ level: process.env.TRIBUTARY_LOG_LEVEL ?? "silent" });

describe("tributary video when Kafka is killed and restarted (private broker)", () => {
  const topic = uniqueName("video-outage");
  let kafka: PrivateKafka;
  let camera: MjpegCamera;
  let collector: RunningVideoCollector;
  const source = () => collector.status().sources[0]!;

  beforeAll(async () => {
    [kafka, camera] = await Promise.all([startPrivateKafka(), MjpegCamera.start({ rate: 10 })]);
    await createTopics(kafka.brokers, [{ topic, numPartitions: 1 }]);
    collector = await startVideoCollector(
      videoConfigSchema.parse({
        brokers: kafka.brokers,
        topic,
        podName: "video-outage-0",
        host: "127.0.0.1",
        port: 0,
        ffmpeg: ffmpegPath(),
        fps: 5,
        queueFrames: 10,
        sources: JSON.stringify([{ name: "gate", url: camera.url }]),
      }),
      logger,
    );
  });

  afterAll(async () => {
    await collector?.close();
    await camera?.kill();
    await kafka?.stop();
  });

  it("drops and counts the oldest frames while Kafka is away, stays up, and publishes again after", async () => {
    await until("frames published", () => source().framesPublished >= 10);
    expect(source().framesDropped).toBe(0);
    await kafka.kill();
    await until("frames dropped while Kafka is away", () => source().framesDropped >= 20, 90_000);
    // Memory stays bounded: never more than queueFrames waiting.
    expect(source().queuedFrames).toBeLessThanOrEqual(10);
    expect(source().connected).toBe(true);
    await until(
      "not ready while Kafka is away",
      async () => (await fetch(`${collector.url}/readyz`)).status === 503,
      60_000,
    );
    const metrics = await (await fetch(`${collector.url}/metrics`)).text();
    expect(metrics).toMatch(/tributary_video_frames_dropped_total\{source="gate",reason="queue"\} [1-9]/);

    await kafka.restart();
    const published = source().framesPublished;
    await until(
      "frames published after the restart",
      () => source().framesPublished >= published + 10,
      90_000,
    );
    await until("ready again", async () => (await fetch(`${collector.url}/readyz`)).status === 200);
    const frames = await FrameCollector.start(kafka.brokers, topic);
    try {
      await until(
        "the frames after the outage in Kafka",
        () => frames.of("gate").length >= published + 10,
        60_000,
      );
      const got = frames.of("gate");
      // In order; the gap in sequence numbers is the frames dropped.
      got.forEach((frame, i) => {
        if (i > 0) expect(frame.sequence).toBeGreaterThan(got[i - 1]!.sequence);
      });
      expect(got.at(-1)!.sequence + 1 - got.length).toBeGreaterThan(0);
    } finally {
      await frames.stop();
    }
  });
});

describe("two collector replicas share the cameras", () => {
  const topic = uniqueName("video-replicas");
  const brokers = testEnv().kafkaBrokers;
  let dropTopic: () => Promise<void>;
  let directory: string;
  let cameras: MjpegCamera[];
  let pods: RunningVideoCollector[];
  const names = ["cam-a", "cam-b", "cam-c", "cam-d", "cam-e", "cam-f"];
  const document = (replicas: number) =>
    JSON.stringify({ replicas, sources: names.map((name, i) => ({ name, url: cameras[i]!.url })) });

  beforeAll(async () => {
    dropTopic = await createTopics(brokers, [{ topic, numPartitions: 3 }]);
    directory = await mkdtemp(join(tmpdir(), "tributary-video-replicas-"));
    cameras = await Promise.all(names.map(() => MjpegCamera.start({ size: "160x120", rate: 5 })));
    await writeFile(join(directory, "sources.json"), document(2));
    pods = await Promise.all(
      [0, 1].map((ordinal) =>
        startVideoCollector(
          videoConfigSchema.parse({
            brokers,
            topic,
            podName: `lobby-collector-${ordinal}`,
            host: "127.0.0.1",
            port: 0,
            ffmpeg: ffmpegPath(),
            fps: 1,
            sourcesFile: join(directory, "sources.json"),
            reloadIntervalMs: 200,
          }),
          logger,
        ),
      ),
    );
  });

  afterAll(async () => {
    await Promise.all((pods ?? []).map((pod) => pod.close()));
    await Promise.all((cameras ?? []).map((camera) => camera.kill()));
    await rm(directory, { recursive: true, force: true });
    await dropTopic?.();
  });

  it("splits the cameras by ordinal, and pod 0 takes pod 1's cameras on a scale-down", async () => {
    const taken = (pod: RunningVideoCollector) =>
      pod
        .status()
        .sources.map((s) => s.name)
        .sort();
    const expected = (ordinal: number) => names.filter((name) => ownerOrdinal(name, 2) === ordinal).sort();
    expect(taken(pods[0]!)).toEqual(expected(0));
    expect(taken(pods[1]!)).toEqual(expected(1));
    expect(expected(0).length).toBeGreaterThan(0);
    expect(expected(1).length).toBeGreaterThan(0);
    await until("every camera connected on its pod", () =>
      pods.every((pod) => pod.status().sources.every((s) => s.connected)),
    );

    // Scale-down: pod 1 goes, the file says one replica.
    await pods[1]!.close();
    const frames = await FrameCollector.start(brokers, topic);
    try {
      await writeFile(join(directory, "sources.json"), document(1));
      await until("pod 0 to take every camera", () => taken(pods[0]!).length === names.length, 30_000);
      await until("every camera connected on pod 0", () =>
        pods[0]!.status().sources.every((s) => s.connected),
      );
      await until("frames of pod 1's former cameras from pod 0", () =>
        expected(1).every((name) => frames.of(name).some((frame) => frame.collector === "lobby-collector-0")),
      );
    } finally {
      await frames.stop();
    }
  });
});
