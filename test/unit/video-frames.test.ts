/**
 * ffmpeg's image2pipe output cut into frames: real ffmpeg output for each codec, fed in chunks of
 * every size from one byte up, gives back exactly the images ffmpeg wrote, with their sizes.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ordinalOf, ownerOrdinal } from "../../src/dataplane/video/assignment.js";
import { ffmpegArgs, jpegQscale, parseShowinfo } from "../../src/dataplane/video/ffmpeg.js";
import { FrameSplitter, type ImageCodec } from "../../src/dataplane/video/frames.js";
import { frameMessages } from "../../src/dataplane/video/publisher.js";
import { FrameReassembler } from "../../src/dataplane/video/reader.js";

const ffmpeg = process.env.TRIBUTARY_TESTENV_FFMPEG ?? "ffmpeg";

/** `count` images of testsrc as one image2pipe stream, and each image alone (from a separate run per frame). */
function pipeOutput(codec: ImageCodec, count: number): Buffer {
  const encoder = { jpeg: ["-c:v", "mjpeg", "-q:v", "4"], webp: ["-c:v", "libwebp"], png: ["-c:v", "png"] }[
    codec
  ];
  return execFileSync(
    ffmpeg,
    [
      "-hide_banner",
      "-loglevel",
      "error",
      "-f",
      "lavfi",
      "-i",
      `testsrc=size=96x64:rate=5`,
      "-frames:v",
      String(count),
      ...encoder,
      "-f",
      "image2pipe",
      "pipe:1",
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
}

function split(codec: ImageCodec, stream: Buffer, chunkSize: number) {
  const splitter = new FrameSplitter(codec);
  const frames = [];
  for (let offset = 0; offset < stream.length; offset += chunkSize) {
    frames.push(...splitter.push(stream.subarray(offset, offset + chunkSize)));
  }
  return { frames, splitter };
}

describe("FrameSplitter", () => {
  for (const codec of ["jpeg", "webp", "png"] as const) {
    it(`cuts ${codec} images from any chunking, with their sizes`, () => {
      const stream = pipeOutput(codec, 6);
      const whole = split(codec, stream, stream.length);
      expect(whole.frames).toHaveLength(6);
      expect(Buffer.concat(whole.frames.map((f) => f.data))).toEqual(stream);
      for (const frame of whole.frames) expect([frame.width, frame.height]).toEqual([96, 64]);
      for (const size of [1, 2, 3, 7, 100, 1000, 4096]) {
        const { frames, splitter } = split(codec, stream, size);
        expect(frames.map((f) => f.data)).toEqual(whole.frames.map((f) => f.data));
        expect(splitter.pendingBytes).toBe(0);
      }
    });
  }

  it("hands out a frame inside one chunk as a view of it, without a copy", () => {
    const stream = pipeOutput("jpeg", 2);
    const splitter = new FrameSplitter("jpeg");
    const [first] = splitter.push(stream);
    expect(first!.data.buffer).toBe(stream.buffer);
  });

  it("skips garbage before and between images and counts it", () => {
    const stream = pipeOutput("jpeg", 3);
    const noisy = Buffer.concat([Buffer.from("garbage\xff\x00 bytes"), stream, Buffer.from([1, 2, 3, 0xff])]);
    const { frames, splitter } = split("jpeg", noisy, 333);
    expect(frames).toHaveLength(3);
    expect(splitter.skippedBytes).toBeGreaterThan(10);
  });

  it("finds the end of a JPEG by its segments, not an FF D9 inside a table", () => {
    const [image] = new FrameSplitter("jpeg").push(pipeOutput("jpeg", 1));
    // A COM segment holding FF D9 before the image's own data.
    const comment = Buffer.from([0xff, 0xfe, 0x00, 0x06, 0xff, 0xd9, 0xff, 0xd9]);
    const tricky = Buffer.concat([image!.data.subarray(0, 2), comment, image!.data.subarray(2)]);
    const frames = new FrameSplitter("jpeg").push(tricky);
    expect(frames).toHaveLength(1);
    expect(frames[0]!.data.length).toBe(tricky.length);
  });
});

describe("ffmpeg command and output", () => {
  it("samples with fps, scales keeping the aspect, and parses showinfo lines", () => {
    const args = ffmpegArgs(
      { kind: "url", url: "rtsp://cam/stream" },
      { fps: 5, keyFramesOnly: false, codec: "jpeg", quality: 80, width: 640 },
    );
    expect(args.join(" ")).toContain("-rtsp_transport tcp");
    expect(args[args.indexOf("-vf") + 1]).toBe("fps=5,scale=640:-2,showinfo=checksum=0");
    const keyframes = ffmpegArgs(
      { kind: "url", url: "http://cam/video.mjpg" },
      { fps: 5, keyFramesOnly: true, codec: "webp", quality: 70 },
    );
    expect(keyframes.slice(0, keyframes.indexOf("-i")).join(" ")).toContain("-skip_frame nokey");
    expect(keyframes[keyframes.indexOf("-vf") + 1]).toBe("showinfo=checksum=0");
    expect(jpegQscale(100)).toBe(2);
    expect(jpegQscale(1)).toBe(31);
    expect(
      parseShowinfo(
        "[Parsed_showinfo_2 @ 0x5] n:   3 pts:      3 pts_time:1.5     pos: 78349 fmt:yuvj444p sar:1/1 s:160x120 i:P iskey:1 type:I ",
      ),
    ).toEqual({ n: 3, ptsTime: 1.5, keyFrame: true });
    expect(parseShowinfo("[Parsed_showinfo_2 @ 0x5] color_range:pc")).toBeUndefined();
  });
});

describe("sharding and chunking", () => {
  it("assigns each source to one ordinal; a scale-down moves only the leaving pod's sources", () => {
    const names = Array.from({ length: 60 }, (_, i) => `cam-${i}`);
    const two = names.map((n) => ownerOrdinal(n, 2));
    const three = names.map((n) => ownerOrdinal(n, 3));
    expect(new Set(two)).toEqual(new Set([0, 1]));
    names.forEach((_, i) => {
      if (three[i] !== 2) expect(three[i]).toBe(two[i]);
    });
    expect(ordinalOf("dock-collector-12")).toBe(12);
  });

  it("chunks a frame over the message size and reassembles it", () => {
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
    const frame = {
      source: "cam",
      sequence: 7,
      captureTime: 1700000000000,
      ptsTime: 1.2,
      keyFrame: true,
      codec: "jpeg" as const,
      width: 10,
      height: 20,
      data,
    };
    const messages = frameMessages(frame, 4096, "pod-0");
    expect(messages.length).toBe(4);
    const reassembler = new FrameReassembler();
    const out = messages.map((m, i) =>
      reassembler.push({
        ...m,
        offset: String(i),
        key: Buffer.from("cam"),
        value: m.value as Buffer,
        timestamp: "0",
        attributes: 0,
        headers: m.headers,
      } as never),
    );
    expect(out.slice(0, 3)).toEqual([undefined, undefined, undefined]);
    expect(out[3]!.data).toEqual(data);
    expect(out[3]).toMatchObject({
      camera: "cam",
      sequence: 7,
      chunks: 4,
      width: 10,
      height: 20,
      keyFrame: true,
    });
    // A frame cut short is dropped when the next one starts.
    reassembler.push({ ...messages[0], key: Buffer.from("cam"), offset: "9" } as never);
    const single = frameMessages({ ...frame, sequence: 8, data: data.subarray(0, 100) }, 4096, "pod-0")[0]!;
    expect(reassembler.push({ ...single, key: Buffer.from("cam"), offset: "10" } as never)?.sequence).toBe(8);
    expect(reassembler.incompleteFrames).toBe(1);
  });

  it("returns each frame once when a consumer group delivers a partition's messages again", () => {
    const frame = {
      source: "cam",
      sequence: 1,
      captureTime: 1,
      ptsTime: 0.5,
      keyFrame: true,
      codec: "jpeg" as const,
      width: 10,
      height: 20,
      data: randomBytes(10_000),
    };
    const messages = frameMessages(frame, 4096, "pod-0").map(
      (m, i) => ({ ...m, key: Buffer.from("cam"), offset: String(100 + i) }) as never,
    );
    const reassembler = new FrameReassembler();
    const first = messages.map((m) => reassembler.push(m, 0)).filter(Boolean);
    expect(first.map((f) => f!.sequence)).toEqual([1]);
    // A rebalance rewinds to the last committed offset, inside the frame: nothing comes out twice,
    // and the frame is not counted as incomplete.
    expect(
      messages
        .slice(1)
        .map((m) => reassembler.push(m, 0))
        .filter(Boolean),
    ).toEqual([]);
    expect(reassembler.redelivered).toBe(messages.length - 1);
    expect(reassembler.incompleteFrames).toBe(0);
    // The same offsets of another partition are other messages (another camera's).
    const door = frameMessages({ ...frame, source: "door" }, 4096, "pod-0").map(
      (m, i) => ({ ...m, key: Buffer.from("door"), offset: String(100 + i) }) as never,
    );
    expect(
      door
        .map((m) => reassembler.push(m, 1))
        .filter(Boolean)
        .map((f) => f!.camera),
    ).toEqual(["door"]);
  });

  it("returns each frame once when the collector wrote a batch twice", () => {
    const frame = (sequence: number, captureTime: number, source = "cam") => ({
      source,
      sequence,
      captureTime,
      ptsTime: 0,
      keyFrame: false,
      codec: "jpeg" as const,
      width: 10,
      height: 20,
      data: randomBytes(100),
    });
    let offset = 0;
    const push = (f: ReturnType<typeof frame>, collector = "pod-0") =>
      reassembler.push(
        {
          ...frameMessages(f, 4096, collector)[0]!,
          key: Buffer.from(f.source),
          offset: String(offset++),
        } as never,
        0,
      );
    const reassembler = new FrameReassembler();
    // A batch of 5..7 written, its answer lost, sent again with 8: the copies are passed over.
    const sent = [5, 6, 7, 5, 6, 7, 8].map((n) => push(frame(n, 1000 + n)));
    expect(sent.filter(Boolean).map((f) => f!.sequence)).toEqual([5, 6, 7, 8]);
    expect(reassembler.duplicates).toBe(3);
    // A restarted collector counts from 0 again, later: its frames are new; so are another
    // camera's and another collector's.
    expect(push(frame(0, 5000))?.sequence).toBe(0);
    expect(push(frame(8, 1008, "door"))?.camera).toBe("door");
    expect(push(frame(8, 1008), "pod-1")?.collector).toBe("pod-1");
    expect(reassembler.duplicates).toBe(3);
  });
});
