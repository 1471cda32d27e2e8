/**
 * Live test cameras for the VideoCollector tests and bench: ffmpeg's testsrc, served by a local
 * process as a camera would serve it.
 *
 *   MjpegCamera  an HTTP server streaming multipart MJPEG (ffmpeg -f mpjpeg) to every client,
 *                each joining at a part boundary; it can be killed and restarted on its port,
 *                or frozen (connections stay open, no more bytes).
 *   HlsCamera    ffmpeg writing a live H.264 HLS playlist (1 s segments) into a directory that a
 *                small HTTP server serves.
 *   GarbageCamera an HTTP server answering 200 with random bytes forever.
 * Plus a Kafka reader that reassembles frames, and ffprobe of one image.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import kafkajs from "kafkajs";
import { FrameReassembler, type ReadFrame } from "../../src/dataplane/video/reader.js";
import { testEnv } from "./env.js";
import { reservedPort } from "./ports.js";

export const ffmpegPath = (): string => testEnv().ffmpeg;
export const ffprobePath = (): string => testEnv().ffmpeg.replace(/ffmpeg$/, "ffprobe");

async function listen(server: Server, port = 0, host = "127.0.0.1"): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

export interface CameraOptions {
  size?: string;
  rate?: number;
  /** Address to listen on; 127.0.0.1 by default (the node's bridge address for pods to reach). */
  host?: string;
}

/** ffmpeg's input of every test camera: `testsrc` of this size and rate, read in real time. */
export function testSourceArgs({ size = "320x240", rate = 10 }: CameraOptions = {}): string[] {
  return [
    "-hide_banner",
    "-loglevel",
    "error",
    "-re",
    "-f",
    "lavfi",
    "-i",
    `testsrc=size=${size}:rate=${rate}`,
  ];
}

/** H.264 as the test cameras encode it: the fastest preset, 4:2:0 as players expect. */
const h264Args = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"];

/**
 * A camera pushing `seconds` of H.264 in MPEG-TS to `url` (a VideoCollector's push endpoint), as
 * `ffmpeg -f mpegts <url>` does; resolves when ffmpeg exits.
 */
export async function pushTestStream(url: string, seconds: number): Promise<void> {
  const push = spawn(
    ffmpegPath(),
    [...testSourceArgs(), "-t", String(seconds), ...h264Args, "-f", "mpegts", url],
    { stdio: "ignore" },
  );
  await new Promise((resolve) => push.once("exit", resolve));
}

const BOUNDARY = Buffer.from("--ffmpeg\r\n");

export class MjpegCamera {
  private server?: Server;
  private ffmpeg?: ChildProcess;
  private clients = new Set<ServerResponse>();
  private joining = new Set<ServerResponse>();
  private frozen = false;
  port = 0;

  constructor(private readonly options: CameraOptions = {}) {}

  get url(): string {
    return `http://${this.options.host ?? "127.0.0.1"}:${this.port}/video.mjpg`;
  }

  static async start(options: CameraOptions = {}): Promise<MjpegCamera> {
    const camera = new MjpegCamera(options);
    await camera.restart();
    return camera;
  }

  /** Starts serving (again, on the same port after a kill). */
  async restart(): Promise<void> {
    this.frozen = false;
    this.ffmpeg = spawn(
      ffmpegPath(),
      [...testSourceArgs(this.options), "-q:v", "5", "-f", "mpjpeg", "pipe:1"],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    this.ffmpeg.stdout!.on("data", (chunk: Buffer) => {
      if (this.frozen) return;
      for (const client of this.clients) client.write(chunk);
      if (this.joining.size > 0) {
        const at = chunk.indexOf(BOUNDARY);
        if (at >= 0) {
          for (const client of this.joining) {
            client.write(chunk.subarray(at));
            this.clients.add(client);
          }
          this.joining.clear();
        }
      }
    });
    this.server = createServer((request, response) => {
      response.writeHead(200, { "content-type": "multipart/x-mixed-replace;boundary=ffmpeg" });
      this.joining.add(response);
      request.on("close", () => {
        this.clients.delete(response);
        this.joining.delete(response);
      });
    });
    // A port of its own from the start, not an ephemeral one that another process's connection
    // could take while the camera is down.
    this.port ||= await reservedPort();
    await listen(this.server, this.port, this.options.host);
  }

  /** Keeps every connection open but sends nothing more: a stream that stalls without closing. */
  freeze(): void {
    this.frozen = true;
  }

  /** The camera goes away: connections cut, port closed. */
  async kill(): Promise<void> {
    this.ffmpeg?.kill("SIGKILL");
    for (const client of [...this.clients, ...this.joining]) client.destroy();
    this.clients.clear();
    this.joining.clear();
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}

export class HlsCamera {
  private ffmpeg?: ChildProcess;
  private server?: Server;
  port = 0;

  private constructor(readonly directory: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/live.m3u8`;
  }

  static async start(options: CameraOptions & { gop?: number } = {}): Promise<HlsCamera> {
    const camera = new HlsCamera(await mkdtemp(join(tmpdir(), "tributary-hls-")));
    const { rate = 10, gop = rate } = options;
    camera.ffmpeg = spawn(
      ffmpegPath(),
      [
        ...testSourceArgs(options),
        ...h264Args,
        "-tune",
        "zerolatency",
        "-g",
        String(gop),
        "-keyint_min",
        String(gop),
        "-sc_threshold",
        "0",
        "-f",
        "hls",
        "-hls_time",
        "1",
        "-hls_list_size",
        "6",
        "-hls_flags",
        "delete_segments",
        join(camera.directory, "live.m3u8"),
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    camera.server = createServer((request, response) => {
      const name = (request.url ?? "/").split("?")[0]!.replace(/^\/+/, "");
      if (!/^[\w.-]+$/.test(name)) {
        response.writeHead(404).end();
        return;
      }
      readFile(join(camera.directory, name)).then(
        (body) => {
          response.writeHead(200, {
            "content-type": name.endsWith(".m3u8") ? "application/vnd.apple.mpegurl" : "video/mp2t",
          });
          response.end(body);
        },
        () => response.writeHead(404).end(),
      );
    });
    camera.port = await listen(camera.server);
    // Wait for the playlist to have a few segments.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const text = await readFile(join(camera.directory, "live.m3u8"), "utf8").catch(() => "");
      if ((text.match(/#EXTINF/g) ?? []).length >= 2) break;
      if (Date.now() > deadline) throw new Error("the HLS test camera wrote no playlist in 30 s");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return camera;
  }

  async stop(): Promise<void> {
    this.ffmpeg?.kill("SIGKILL");
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
    await rm(this.directory, { recursive: true, force: true });
  }
}

/** Answers every request with endless random bytes: not video. */
export class GarbageCamera {
  private timer?: NodeJS.Timeout;
  private server?: Server;
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}/garbage`;
  }

  static async start(): Promise<GarbageCamera> {
    const camera = new GarbageCamera();
    const clients = new Set<ServerResponse>();
    camera.server = createServer((request, response) => {
      response.writeHead(200, { "content-type": "application/octet-stream" });
      clients.add(response);
      request.on("close", () => clients.delete(response));
    });
    camera.timer = setInterval(() => {
      for (const client of clients) client.write(randomBytes(4096));
    }, 50);
    camera.port = await listen(camera.server);
    return camera;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}

/** Consumes a topic from the beginning and collects whole frames (chunks reassembled). */
export class FrameCollector {
  readonly frames: ReadFrame[] = [];
  readonly reassembler = new FrameReassembler();
  private consumer?: kafkajs.Consumer;

  static async start(brokers: string[], topic: string): Promise<FrameCollector> {
    const collector = new FrameCollector();
    const kafka = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING });
    collector.consumer = kafka.consumer({ groupId: `video-test-${topic}-${Date.now()}` });
    await collector.consumer.connect();
    await collector.consumer.subscribe({ topic, fromBeginning: true });
    await collector.consumer.run({
      eachMessage: async ({ message, partition }) => {
        const frame = collector.reassembler.push(message, partition);
        if (frame) collector.frames.push(frame);
      },
    });
    return collector;
  }

  of(camera: string): ReadFrame[] {
    return this.frames.filter((frame) => frame.camera === camera);
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect();
  }
}

/** What ffprobe reads in one image: its codec, width and height. */
export async function probeImage(data: Buffer): Promise<{ codec: string; width: number; height: number }> {
  const output = await new Promise<string>((resolve, reject) => {
    const child = execFile(
      ffprobePath(),
      ["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json", "-i", "pipe:0"],
      (error, stdout, stderr) =>
        error ? reject(new Error(`ffprobe: ${stderr || error.message}`)) : resolve(stdout),
    );
    child.stdin!.end(data);
  });
  const stream = (JSON.parse(output) as { streams: { codec_name: string; width: number; height: number }[] })
    .streams[0]!;
  return { codec: stream.codec_name, width: stream.width, height: stream.height };
}

/** ffprobe of a media file: the video stream's codec, its frame count and the container's duration. */
export async function probeFile(path: string): Promise<{ codec: string; frames: number; duration: number }> {
  const output = await new Promise<string>((resolve, reject) =>
    execFile(
      ffprobePath(),
      [
        "-v",
        "error",
        "-count_frames",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=codec_name,nb_read_frames:format=duration",
        "-of",
        "json",
        path,
      ],
      (error, stdout, stderr) =>
        error ? reject(new Error(`ffprobe ${path}: ${stderr || error.message}`)) : resolve(stdout),
    ),
  );
  const parsed = JSON.parse(output) as {
    streams: { codec_name: string; nb_read_frames: string }[];
    format: { duration: string };
  };
  return {
    codec: parsed.streams[0]!.codec_name,
    frames: Number(parsed.streams[0]!.nb_read_frames),
    duration: Number(parsed.format.duration),
  };
}

export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * A minimal RTSP camera: ffmpeg encodes testsrc to H.264 and sends it as RTP over UDP to this
 * process, which serves it to RTSP clients over TCP (RTP interleaved in the RTSP connection, as
 * `-rtsp_transport tcp` asks): OPTIONS, DESCRIBE (ffmpeg's own SDP), SETUP, PLAY, TEARDOWN.
 */
export class RtspCamera {
  private ffmpeg?: ChildProcess;
  private server?: import("node:net").Server;
  private udp?: import("node:dgram").Socket;
  private readonly players = new Set<import("node:net").Socket>();
  private sdp = "";
  port = 0;

  get url(): string {
    return `rtsp://127.0.0.1:${this.port}/live`;
  }

  static async start(options: CameraOptions = {}): Promise<RtspCamera> {
    const { createSocket } = await import("node:dgram");
    const { createServer: createTcpServer } = await import("node:net");
    const camera = new RtspCamera();
    const directory = await mkdtemp(join(tmpdir(), "tributary-rtsp-"));
    camera.udp = createSocket("udp4");
    await new Promise<void>((resolve) => camera.udp!.bind(0, "127.0.0.1", () => resolve()));
    camera.udp.on("message", (packet) => {
      const frame = Buffer.allocUnsafe(4 + packet.length);
      frame[0] = 0x24; // '$', channel 0, length
      frame[1] = 0;
      frame.writeUInt16BE(packet.length, 2);
      packet.copy(frame, 4);
      for (const player of camera.players) player.write(frame);
    });
    const { rate = 10 } = options;
    const sdpFile = join(directory, "live.sdp");
    camera.ffmpeg = spawn(
      ffmpegPath(),
      [
        ...testSourceArgs(options),
        ...h264Args,
        "-tune",
        "zerolatency",
        "-g",
        String(rate),
        "-payload_type",
        "96",
        "-f",
        "rtp",
        "-sdp_file",
        sdpFile,
        `rtp://127.0.0.1:${camera.udp.address().port}`,
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    const deadline = Date.now() + 30_000;
    while (!camera.sdp) {
      const text = await readFile(sdpFile, "utf8").catch(() => "");
      if (text.includes("m=video")) {
        camera.sdp = `${text
          .replace(/c=IN IP4 [^\r\n]*/, "c=IN IP4 0.0.0.0")
          .replace(/(m=video[^\r\n]*)/, "$1\r\na=control:streamid=0")
          .replace(/\r?\n/g, "\r\n")
          .trim()}\r\n`;
      } else if (Date.now() > deadline) {
        throw new Error("the RTSP test camera's ffmpeg wrote no SDP in 30 s");
      } else {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    await rm(directory, { recursive: true, force: true });
    camera.server = createTcpServer((socket) => {
      let buffered = "";
      socket.on("error", () => camera.players.delete(socket));
      socket.on("close", () => camera.players.delete(socket));
      socket.on("data", (chunk) => {
        buffered += chunk.toString("latin1");
        for (;;) {
          const end = buffered.indexOf("\r\n\r\n");
          if (end < 0) break;
          const request = buffered.slice(0, end);
          buffered = buffered.slice(end + 4);
          const [method, url] = request.split(" ");
          const cseq = /CSeq:\s*(\d+)/i.exec(request)?.[1] ?? "0";
          const reply = (headers: string[], body = "") =>
            socket.write(
              `RTSP/1.0 200 OK\r\nCSeq: ${cseq}\r\n${headers.map((h) => `${h}\r\n`).join("")}${body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ""}\r\n${body}`,
            );
          if (method === "DESCRIBE")
            reply(["Content-Type: application/sdp", `Content-Base: ${url}/`], camera.sdp);
          else if (method === "SETUP")
            reply(["Transport: RTP/AVP/TCP;unicast;interleaved=0-1", "Session: 4711;timeout=60"]);
          else if (method === "PLAY") {
            reply(["Session: 4711", "Range: npt=0.000-"]);
            camera.players.add(socket);
          } else if (method === "OPTIONS")
            reply(["Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"]);
          else reply(["Session: 4711"]);
        }
      });
    });
    camera.port = await new Promise<number>((resolve) =>
      camera.server!.listen(0, "127.0.0.1", () => resolve((camera.server!.address() as AddressInfo).port)),
    );
    return camera;
  }

  async stop(): Promise<void> {
    this.ffmpeg?.kill("SIGKILL");
    for (const player of this.players) player.destroy();
    this.udp?.close();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}

/**
 * A stand-in segment file as ffmpeg leaves one in a scratch directory: `bytes` bytes of `fill`
 * under `name`, for the archive stores (which do not read what a segment holds). Its path.
 */
export async function writeSegment(
  directory: string,
  name: string,
  bytes: number,
  fill: number,
): Promise<string> {
  await mkdir(directory, { recursive: true });
  const path = join(directory, name);
  await writeFile(path, Buffer.alloc(bytes, fill));
  return path;
}
