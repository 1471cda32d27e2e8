/**
 * The archive: each source's video as segment files in a real BlockPool (test/integration/
 * storage-cluster.ts), written through WebHDFS while frames go to Kafka, and played back with
 * ffprobe. An H.264 camera is copied into MPEG-TS segments as it is; an MJPEG camera is
 * re-encoded to H.264 in MP4 segments. deletionPolicy Delete removes the archive directory. A
 * BlockPool that takes connections and never answers does not hold the collector's shutdown: the
 * segments it did not store stay in the scratch directory. Two segments of one name (ffmpeg
 * started again within a second) are both kept; a segment left in the scratch directory by an
 * earlier process is stored when the collector starts.
 */
import { readdir, writeFile } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockPoolDefinition } from "../../src/api/blockpool.js";
import { videoCollectorDefinition } from "../../src/api/videocollector.js";
import { cleanupVideoCollector } from "../../src/controllers/videocollector/reconcile.js";
import { WebHdfsSegmentStore } from "../../src/dataplane/video/archive.js";
import { videoConfigSchema } from "../../src/dataplane/video/config.js";
import { type RunningVideoCollector, startVideoCollector } from "../../src/dataplane/video/main.js";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics } from "../support/kafka.js";
import { ffmpegPath, HlsCamera, MjpegCamera, probeFile, until, writeSegment } from "../support/video.js";
import { StorageCluster } from "./storage-cluster.js";

const logger = pino({ level: process.env.TRIBUTARY_LOG_LEVEL ?? "silent" });

/** The segment files under a source's scratch directory, in every run's directory. */
async function segmentsIn(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { recursive: true }).catch(() => [] as string[]);
  return entries.filter((name) => /\.(ts|mp4)$/.test(name));
}

describe("archive segments in a BlockPool", () => {
  const brokers = testEnv().kafkaBrokers;
  const topic = uniqueName("video-archive");
  let dropTopic: () => Promise<void>;
  let storage: StorageCluster;
  let hls: HlsCamera;
  let mjpeg: MjpegCamera;
  const collectors: RunningVideoCollector[] = [];

  beforeAll(async () => {
    dropTopic = await createTopics(brokers, [{ topic, numPartitions: 1 }]);
    [storage, hls, mjpeg] = await Promise.all([
      StorageCluster.start({ dataNodes: 3 }),
      HlsCamera.start({ size: "320x240", rate: 10, gop: 10 }),
      MjpegCamera.start({ size: "320x240", rate: 10 }),
    ]);
  });

  afterAll(async () => {
    await Promise.all(collectors.map((collector) => collector.close()));
    await Promise.all([hls?.stop(), mjpeg?.kill()]);
    await storage?.stop();
    await dropTopic?.();
  });

  const start = (
    name: string,
    url: string,
    format: "mpegts" | "mp4",
    codec: "copy" | "h264",
    overrides: Record<string, unknown> = {},
  ) =>
    startVideoCollector(
      videoConfigSchema.parse({
        brokers,
        topic,
        podName: `archive-${name}-0`,
        host: "127.0.0.1",
        port: 0,
        ffmpeg: ffmpegPath(),
        fps: 1,
        sources: JSON.stringify([{ name, url }]),
        archiveWebhdfs: storage.webhdfsAddresses().join(","),
        archivePath: "/video/lobby",
        archiveSegmentSeconds: 2,
        archiveFormat: format,
        archiveCodec: codec,
        archiveScratchDir: join(tmpdir(), uniqueName("video-scratch")),
        ...overrides,
      }),
      logger,
    );

  async function playBack(directory: string, extension: string) {
    const client = storage.client();
    let names: string[] = [];
    await until(
      `3 segments in ${directory}`,
      async () => {
        names = (await client.list(directory).catch(() => []))
          .map((entry) => entry.pathSuffix)
          .filter((name) => name.endsWith(extension));
        return names.length >= 3;
      },
      90_000,
    );
    for (const name of names.slice(0, 2)) {
      const local = join(tmpdir(), uniqueName("segment") + extension);
      await writeFile(local, await client.open(`${directory}/${name}`));
      const probed = await probeFile(local);
      expect(probed.codec).toBe("h264");
      expect(probed.frames).toBeGreaterThan(5);
      expect(probed.duration).toBeGreaterThan(0.5);
    }
  }

  it("copies an H.264 camera into MPEG-TS segments that play back", async () => {
    const collector = await start("entrance", hls.url, "mpegts", "copy");
    collectors.push(collector);
    await playBack("/video/lobby/entrance", ".ts");
    expect(collector.status().sources[0]!.segmentsArchived).toBeGreaterThanOrEqual(3);
    expect(collector.status().sources[0]!.framesPublished).toBeGreaterThan(0);
  });

  it("re-encodes an MJPEG camera into H.264 MP4 segments that play back", async () => {
    const collector = await start("stairs", mjpeg.url, "mp4", "h264");
    collectors.push(collector);
    await playBack("/video/lobby/stairs", ".mp4");
  });

  it("deletes the archive directory when a deletionPolicy Delete collector goes, and keeps it with Retain", async () => {
    // An archive of its own, stored as a collector stores one: the collectors of the tests above
    // upload under /video/lobby until the end, and an upload creates its parent directories again.
    const path = "/video/hall";
    await new WebHdfsSegmentStore(storage.webhdfsAddresses(), path).store(
      "entrance",
      await writeSegment(join(tmpdir(), uniqueName("segments")), "entrance-20261206T101500Z.ts", 1_000, 1),
    );
    const resource = (deletionPolicy: string) => ({
      apiVersion: videoCollectorDefinition.apiVersion,
      kind: "VideoCollector",
      metadata: { name: "hall", namespace: "cams" },
      spec: {
        sources: [{ name: "entrance", url: hls.url }],
        topic: { name: topic },
        archive: { enabled: true, blockPool: { blockPool: "lake", path } },
        deletionPolicy,
      },
    });
    const events: string[] = [];
    // What the cleanup reads of the operator's context: the pool from the cache, events, a logger.
    const context = {
      log: logger,
      event: async (_r: unknown, _t: string, _reason: string, note: string) => {
        events.push(note);
      },
      cachedObjects: () => [
        {
          apiVersion: blockPoolDefinition.apiVersion,
          kind: "BlockPool",
          metadata: { name: "lake", namespace: "cams" },
          spec: {},
        },
      ],
    } as unknown as Parameters<typeof cleanupVideoCollector>[1];
    const settings = { webHdfsAddress: () => storage.webhdfsAddresses()[0]! };
    const client = storage.client();
    await cleanupVideoCollector(resource("Retain") as never, context, settings);
    expect((await client.list(`${path}/entrance`)).map((file) => file.pathSuffix)).toEqual([
      "entrance-20261206T101500Z.ts",
    ]);
    await cleanupVideoCollector(resource("Delete") as never, context, settings);
    await expect(client.list(path)).rejects.toThrow(/FileNotFound|does not exist|not found/i);
    expect(events).toEqual([`deleted the archive ${path} in BlockPool lake`]);
  });

  it("closes within its shutdown timeout when the BlockPool takes the upload and never answers", async () => {
    const held = new Set<Socket>();
    const silent = createServer((socket) => {
      held.add(socket);
      socket.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as { port: number };
    const scratch = join(tmpdir(), uniqueName("video-scratch"));
    try {
      const collector = await start("hallway", hls.url, "mpegts", "copy", {
        archiveWebhdfs: `127.0.0.1:${port}`,
        archiveScratchDir: scratch,
        shutdownTimeoutMs: 2_000,
      });
      // A finished segment is out for upload once ffmpeg has started the next one.
      await until(
        "two segments in the scratch directory",
        async () => (await segmentsIn(join(scratch, "hallway"))).length >= 2,
        60_000,
      );
      await until("the upload's connection held", () => held.size > 0, 30_000);
      await collector.close();
      expect(collector.status().sources[0]!.segmentsArchived).toBe(0);
      expect((await segmentsIn(join(scratch, "hallway"))).length).toBeGreaterThan(0);
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it("keeps two different segments of one name, and stores a segment once when its store is retried", async () => {
    const store = new WebHdfsSegmentStore(storage.webhdfsAddresses(), "/video/names");
    const local = join(tmpdir(), uniqueName("segments"));
    const segment = (bytes: number, fill: number) =>
      writeSegment(local, "door-20261206T101500Z.ts", bytes, fill);
    await store.store("door", await segment(1_000, 1));
    await store.store("door", await segment(2_000, 2));
    // The first one again, as a retry after its rename had succeeded: not stored a second time.
    await store.store("door", await segment(1_000, 1));
    await store.store("door", await segment(3_000, 3));
    const client = storage.client();
    const files = (await client.list("/video/names/door")).map((f) => [f.pathSuffix, f.length]);
    expect(files.sort()).toEqual([
      ["door-20261206T101500Z-1.ts", 2_000],
      ["door-20261206T101500Z-2.ts", 3_000],
      ["door-20261206T101500Z.ts", 1_000],
    ]);
    expect((await client.open("/video/names/door/door-20261206T101500Z-1.ts"))[0]).toBe(2);
  });

  it("stores the segments an earlier process left in the scratch directory when it starts", async () => {
    const scratch = join(tmpdir(), uniqueName("video-scratch"));
    await writeSegment(join(scratch, "porch", "run-1"), "porch-20261206T090000Z.ts", 4_096, 7);
    const collector = await start("porch", hls.url, "mpegts", "copy", { archiveScratchDir: scratch });
    collectors.push(collector);
    const client = storage.client();
    await until(
      "the leftover segment in the pool",
      async () =>
        (await client.list("/video/lobby/porch").catch(() => [])).some(
          (f) => f.pathSuffix === "porch-20261206T090000Z.ts" && f.length === 4_096,
        ),
      60_000,
    );
    await until(
      "its run directory removed",
      async () => !(await readdir(join(scratch, "porch"))).includes("run-1"),
    );
  });
});
