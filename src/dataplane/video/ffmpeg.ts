/**
 * The ffmpeg command of one source, pure: what to read, how to sample, scale and encode, and
 * where the archive segments go. ffmpeg decodes; Tributary only cuts its output into frames.
 *
 *   input     rtsp(s) over TCP with a socket timeout; http(s) MJPEG with the arrival time as the
 *             timestamp (multipart MJPEG carries none); HLS and other http(s) streams with their
 *             own timestamps; file:// read at its native rate (-re) and looped, as a camera would send it;
 *             a pushed stream from stdin.
 *   sampling  fps=N, or -skip_frame nokey (the decoder skips everything but key frames, which
 *             costs a fraction of a full decode) with every decoded frame kept.
 *   frames    scale (aspect kept with -2), showinfo (one stderr line per output frame: its pts
 *             and key-frame flag, matched to the images in order), encode, image2pipe to stdout
 *             with passthrough timing so that each filtered frame is exactly one image.
 *   archive   the original video stream copied (or re-encoded to H.264) into segments, whose
 *             names ffmpeg writes to fd 3 as each one closes.
 */
import type { ImageCodec } from "./frames.js";

export interface PulledInput {
  kind: "url";
  url: string;
}

export interface PushedInput {
  kind: "push";
  format: "mpegts" | "mjpeg" | "jpeg";
}

export interface SamplingOptions {
  fps: number;
  keyFramesOnly: boolean;
  codec: ImageCodec;
  /** 1..100. */
  quality: number;
  width?: number;
  height?: number;
}

export interface ArchiveOptions {
  /** Local directory ffmpeg writes segments into before they are uploaded. */
  directory: string;
  /** File name prefix, the source's name. */
  prefix: string;
  segmentSeconds: number;
  format: "mpegts" | "mp4";
  codec: "copy" | "h264";
}

/** Seconds ffmpeg waits on a silent socket before it gives up (then the supervisor reconnects). */
export const SOCKET_TIMEOUT_SECONDS = 10;

/** mjpeg's qscale runs 2 (best) to 31 (smallest); the API's quality runs 1..100 the other way. */
export function jpegQscale(quality: number): number {
  return Math.round(31 - ((Math.min(100, Math.max(1, quality)) - 1) * 29) / 99);
}

function inputArgs(input: PulledInput | PushedInput): string[] {
  if (input.kind === "push") {
    switch (input.format) {
      case "mpegts":
        return ["-f", "mpegts", "-i", "pipe:0"];
      case "mjpeg":
        return ["-use_wallclock_as_timestamps", "1", "-f", "mpjpeg", "-i", "pipe:0"];
      case "jpeg":
        return ["-use_wallclock_as_timestamps", "1", "-f", "jpeg_pipe", "-i", "pipe:0"];
    }
  }
  const url = input.url;
  const timeoutMicros = String(SOCKET_TIMEOUT_SECONDS * 1_000_000);
  if (/^rtsps?:/.test(url)) return ["-rtsp_transport", "tcp", "-timeout", timeoutMicros, "-i", url];
  if (/^https?:/.test(url)) {
    const hls = /\.m3u8($|\?)/.test(url);
    return [...(hls ? [] : ["-use_wallclock_as_timestamps", "1"]), "-rw_timeout", timeoutMicros, "-i", url];
  }
  // A recording replayed as a camera: at its own rate, looped, so it never ends.
  if (url.startsWith("file://")) return ["-re", "-stream_loop", "-1", "-i", url.slice("file://".length)];
  return ["-i", url];
}

function encoderArgs(sampling: SamplingOptions): string[] {
  switch (sampling.codec) {
    case "jpeg":
      return ["-c:v", "mjpeg", "-q:v", String(jpegQscale(sampling.quality))];
    case "webp":
      return ["-c:v", "libwebp", "-quality", String(sampling.quality), "-compression_level", "2"];
    case "png":
      return ["-c:v", "png"];
  }
}

export function videoFilter(sampling: SamplingOptions): string {
  const filters: string[] = [];
  if (!sampling.keyFramesOnly) filters.push(`fps=${sampling.fps}`);
  if (sampling.width !== undefined || sampling.height !== undefined) {
    // -2 keeps the aspect ratio with an even size, which the chroma subsampling needs.
    filters.push(`scale=${sampling.width ?? -2}:${sampling.height ?? -2}`);
  }
  filters.push("showinfo=checksum=0");
  return filters.join(",");
}

/** The whole argument list (after the ffmpeg binary) for one source. */
export function ffmpegArgs(
  input: PulledInput | PushedInput,
  sampling: SamplingOptions,
  archive?: ArchiveOptions,
): string[] {
  const args = ["-hide_banner", "-nostats", "-loglevel", "info"];
  if (input.kind === "url") args.push("-nostdin");
  if (sampling.keyFramesOnly) args.push("-skip_frame", "nokey");
  // Live input: start decoding after 2 s of probing, not ffmpeg's default 5 s of a low bit rate.
  if (!(input.kind === "url" && input.url.startsWith("file://"))) args.push("-analyzeduration", "2000000");
  args.push(...inputArgs(input));
  args.push(
    "-map",
    "0:v:0",
    "-an",
    "-sn",
    "-dn",
    "-vf",
    videoFilter(sampling),
    "-fps_mode",
    "passthrough",
    ...encoderArgs(sampling),
    "-f",
    "image2pipe",
    "pipe:1",
  );
  if (archive) {
    const extension = archive.format === "mp4" ? "mp4" : "ts";
    args.push(
      "-map",
      "0:v:0",
      "-an",
      ...(archive.codec === "copy"
        ? ["-c:v", "copy"]
        : [
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            String(Math.max(1, archive.segmentSeconds) * 25),
          ]),
      "-f",
      "segment",
      "-segment_time",
      String(archive.segmentSeconds),
      "-segment_format",
      archive.format,
      "-reset_timestamps",
      "1",
      "-strftime",
      "1",
      "-segment_list",
      "pipe:3",
      "-segment_list_type",
      "flat",
      `${archive.directory}/${archive.prefix}-%Y%m%dT%H%M%SZ.${extension}`,
    );
  }
  return args;
}

export interface FrameInfo {
  /** Output frame number. */
  n: number;
  /** Presentation time in seconds of the stream's clock. */
  ptsTime: number;
  keyFrame: boolean;
}

const showinfoLine = /\bn:\s*(\d+)\s+pts:\s*-?\d+\s+pts_time:(\S+).*?\biskey:(\d)/;

/** A showinfo frame line, or undefined for any other stderr line. */
export function parseShowinfo(line: string): FrameInfo | undefined {
  if (!line.includes("Parsed_showinfo")) return undefined;
  const match = showinfoLine.exec(line);
  if (!match) return undefined;
  return { n: Number(match[1]), ptsTime: Number(match[2]), keyFrame: match[3] === "1" };
}

/** stderr lines that are noise for a user reading lastError. */
export function isNoise(line: string): boolean {
  return (
    line.includes("Parsed_showinfo") ||
    line.includes("deprecated pixel format") ||
    /^\s/.test(line) ||
    /^(Input|Output|Stream mapping|Press)/.test(line)
  );
}
