import { execFile } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { testEnv, uniqueName } from "../support/env.js";

const run = promisify(execFile);

describe("redis smoke", () => {
  const redis = new Redis(testEnv().redisUrl, { lazyConnect: true });
  afterAll(async () => {
    await redis.quit();
  });

  it("round-trips a value and a list used as a queue", async () => {
    await redis.connect();
    const key = uniqueName("smoke");
    await redis.set(key, "value", "EX", 60);
    expect(await redis.get(key)).toBe("value");
    await redis.lpush(`${key}:queue`, "a", "b");
    expect(await redis.brpop(`${key}:queue`, 1)).toEqual([`${key}:queue`, "a"]);
    await redis.del(key, `${key}:queue`);
  });
});

describe("ffmpeg smoke", () => {
  it("encodes a generated test clip and decodes it into frames", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tributary-ffmpeg-"));
    try {
      const clip = join(dir, "clip.mp4");
      const ffmpeg = testEnv().ffmpeg;
      await run(ffmpeg, [
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=10",
        "-t",
        "1",
        "-pix_fmt",
        "yuv420p",
        clip,
      ]);
      expect((await stat(clip)).size).toBeGreaterThan(0);
      const { stdout } = await run(
        ffmpeg,
        ["-v", "error", "-i", clip, "-f", "image2pipe", "-c:v", "mjpeg", "-"],
        {
          encoding: "buffer",
          maxBuffer: 64 * 1024 * 1024,
        },
      );
      // Count JPEG start-of-image markers: one per decoded frame.
      let frames = 0;
      for (let i = 0; i + 2 < stdout.length; i++) {
        if (stdout[i] === 0xff && stdout[i + 1] === 0xd8 && stdout[i + 2] === 0xff) frames++;
      }
      expect(frames).toBe(10);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
