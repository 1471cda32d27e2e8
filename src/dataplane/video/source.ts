/**
 * One source and the ffmpeg that reads it, supervised: started again with exponential backoff
 * when it exits (the camera dropped, the URL is unreachable, the stream is not video), killed and
 * started again when no frame came for `frozenAfterMs` (a stream that stalls without closing).
 * Each source has its own process, so a bad source costs only its own status line.
 *
 * A pulled source runs for as long as it is assigned to this pod. A pushed source runs while a
 * camera posts to it: the request body is ffmpeg's stdin, and the source is disconnected when the
 * request ends.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { readdir, rmdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { Logger } from "../../log.js";
import {
  type ArchiveOptions,
  type FrameInfo,
  ffmpegArgs,
  isNoise,
  type PulledInput,
  type PushedInput,
  parseShowinfo,
  type SamplingOptions,
} from "./ffmpeg.js";
import { FrameSplitter, type ImageFrame } from "./frames.js";
import type { VideoMetrics } from "./metrics.js";
import type { FramePublisher } from "./publisher.js";

export interface SegmentStore {
  /** Stores a finished local segment file of `source` and removes it locally. */
  store(source: string, localPath: string): Promise<void>;
}

export interface SourceSettings {
  ffmpeg: string;
  sampling: SamplingOptions;
  frozenAfterMs: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  archive?: Omit<ArchiveOptions, "prefix"> & { store: SegmentStore };
}

export interface SourceStatus {
  name: string;
  kind: "pull" | "push";
  connected: boolean;
  framesPublished: number;
  framesDropped: number;
  framesPerSecond: number;
  queuedFrames: number;
  lastFrameTime?: string;
  lastError?: string;
  restarts: number;
  segmentsArchived: number;
}

/** ffmpeg's connect timeout plus its probing of a live stream. */
const STARTUP_GRACE_MS = 10_000;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const wake = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    signal.addEventListener("abort", wake, { once: true });
  });

export class VideoSource {
  connected = false;
  lastError?: string;
  restarts = 0;
  segmentsArchived = 0;
  private sequence = 0;
  private readonly stopping = new AbortController();
  private child?: ChildProcess;
  private running?: Promise<void>;
  private uploads: Promise<void> = Promise.resolve();
  /** Whether the scratch directories of an earlier process were queued for upload. */
  private sweptEarlierRuns = false;

  constructor(
    readonly name: string,
    readonly input: PulledInput | PushedInput,
    private readonly settings: SourceSettings,
    private readonly publisher: FramePublisher,
    private readonly metrics: VideoMetrics,
    private readonly log: Logger,
  ) {
    this.metrics.connected.set({ source: name }, 0);
  }

  get busy(): boolean {
    return this.child !== undefined;
  }

  /** Pulled sources: run ffmpeg, and again after each exit, until stopped. */
  start(): void {
    if (this.input.kind !== "url" || this.running) return;
    this.running = this.supervise();
  }

  private async supervise(): Promise<void> {
    let backoff = this.settings.initialBackoffMs;
    while (!this.stopping.signal.aborted) {
      const started = Date.now();
      const outcome = await this.runOnce(undefined);
      if (this.stopping.signal.aborted) break;
      this.lastError = outcome.error;
      this.log.warn(
        { source: this.name, error: outcome.error, retryInMs: backoff },
        "source stopped; reconnecting",
      );
      // A run that delivered frames for a while was a working connection: start the backoff over.
      if (outcome.frames > 0 && Date.now() - started > 10_000) backoff = this.settings.initialBackoffMs;
      await sleep(backoff, this.stopping.signal);
      backoff = Math.min(backoff * 2, this.settings.maxBackoffMs);
      this.restarts += 1;
      this.metrics.restarts.inc({ source: this.name });
    }
  }

  /** Pushed sources: ffmpeg reads the request body; resolves when the stream ends. */
  async acceptPush(body: Readable): Promise<{ frames: number; error?: string }> {
    return this.runOnce(body);
  }

  /**
   * Kills ffmpeg and does not start it again; waits for its last segments to be stored, until
   * `deadline` (ms since the epoch): a BlockPool that does not answer must not hold the pod past
   * its grace period. Segments not stored by then stay in the scratch directory, and are named
   * in a warning.
   */
  async stop(deadline = Number.POSITIVE_INFINITY): Promise<void> {
    this.stopping.abort();
    this.child?.kill("SIGTERM");
    const child = this.child;
    const kill = setTimeout(() => child?.kill("SIGKILL"), 3_000);
    await this.running;
    clearTimeout(kill);
    let timer: NodeJS.Timeout | undefined;
    const stored = await Promise.race([
      this.uploads.then(() => true),
      new Promise<boolean>((resolve) => {
        if (Number.isFinite(deadline))
          timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
      }),
    ]);
    clearTimeout(timer);
    if (!stored) {
      const left = this.settings.archive ? await this.scratchSegments() : [];
      this.log.warn(
        {
          source: this.name,
          directory: this.settings.archive ? this.segmentDirectory() : undefined,
          segments: left,
        },
        "stopping before every segment was archived: the rest stay in the scratch directory",
      );
    }
    this.metrics.connected.set({ source: this.name }, 0);
  }

  status(): SourceStatus {
    const counters = this.publisher.counters(this.name);
    return {
      name: this.name,
      kind: this.input.kind === "url" ? "pull" : "push",
      connected: this.connected,
      framesPublished: counters.published,
      framesDropped: counters.dropped,
      framesPerSecond: this.publisher.rate(this.name),
      queuedFrames: this.publisher.queued(this.name),
      ...(counters.lastFrameTime ? { lastFrameTime: new Date(counters.lastFrameTime).toISOString() } : {}),
      ...(this.lastError || counters.lastKafkaError
        ? { lastError: this.lastError ?? `Kafka: ${counters.lastKafkaError}` }
        : {}),
      restarts: this.restarts,
      segmentsArchived: this.segmentsArchived,
    };
  }

  private runOnce(stdin: Readable | undefined): Promise<{ frames: number; error?: string }> {
    const { sampling, archive } = this.settings;
    // Each run of ffmpeg writes into a directory of its own: segments are named by the second
    // they start in, and an ffmpeg started again within that second must not truncate the last
    // segment of the one before while it is being stored. The sweep after the run's exit empties
    // the directory and removes it; one left by an earlier process is swept before the first run.
    const runDirectory = archive ? join(this.segmentDirectory(), `run-${Date.now()}`) : undefined;
    if (archive && !this.sweptEarlierRuns) {
      this.sweptEarlierRuns = true;
      for (const name of readdirSafe(this.segmentDirectory()))
        this.sweepSegments(join(this.segmentDirectory(), name));
    }
    const archiveOptions = runDirectory
      ? { ...archive!, directory: runDirectory, prefix: this.name }
      : undefined;
    if (archiveOptions) mkdirSync(archiveOptions.directory, { recursive: true });
    const args = ffmpegArgs(this.input, sampling, archiveOptions);
    const child = spawn(this.settings.ffmpeg, args, {
      stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe", archive ? "pipe" : "ignore"],
    });
    this.child = child;
    const splitter = new FrameSplitter(sampling.codec);
    const infos: FrameInfo[] = [];
    const images: ImageFrame[] = [];
    const recentErrors: string[] = [];
    let frames = 0;
    let lastFrameAt = Date.now();
    let frozen = false;

    const emit = (image: ImageFrame, info: FrameInfo | undefined) => {
      frames += 1;
      lastFrameAt = Date.now();
      if (!this.connected) {
        this.connected = true;
        this.metrics.connected.set({ source: this.name }, 1);
        this.log.info({ source: this.name }, "source connected: frames flowing");
      }
      this.publisher.enqueue({
        source: this.name,
        sequence: this.sequence++,
        captureTime: lastFrameAt,
        ptsTime: info?.ptsTime ?? Number.NaN,
        keyFrame: sampling.keyFramesOnly ? true : (info?.keyFrame ?? false),
        codec: sampling.codec,
        width: image.width,
        height: image.height,
        data: image.data,
      });
    };
    // showinfo's line for a frame is written before the frame's image; the two pipes are read
    // independently, so images wait briefly for their line, in order.
    const pair = () => {
      while (images.length > 0 && (infos.length > 0 || images.length > 8))
        emit(images.shift()!, infos.shift());
    };

    child.stdout!.on("data", (chunk: Buffer) => {
      for (const image of splitter.push(chunk)) images.push(image);
      pair();
    });
    let stderrTail = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (text: string) => {
      const lines = (stderrTail + text).split("\n");
      stderrTail = lines.pop() ?? "";
      for (const line of lines) {
        const info = parseShowinfo(line);
        if (info) infos.push(info);
        else if (line.trim() && !isNoise(line)) {
          recentErrors.push(line.trim().replace(/^\[[^\]]*\]\s*/, ""));
          if (recentErrors.length > 4) recentErrors.shift();
        }
      }
      pair();
    });
    if (archive) {
      let listTail = "";
      const segmentList = child.stdio[3] as Readable;
      segmentList.setEncoding("utf8");
      segmentList.on("data", (text: string) => {
        const lines = (listTail + text).split("\n");
        listTail = lines.pop() ?? "";
        for (const line of lines)
          if (line.trim()) this.archiveSegment(join(runDirectory!, line.trim().split("/").pop()!));
      });
    }
    if (stdin) {
      stdin.pipe(child.stdin!);
      child.stdin!.on("error", () => undefined); // ffmpeg gave up on the input: its exit says why
    }

    const watchdog = setInterval(
      () => {
        if (Date.now() - lastFrameAt > this.settings.frozenAfterMs) {
          frozen = true;
          child.kill("SIGKILL");
        }
      },
      Math.min(1_000, this.settings.frozenAfterMs / 4),
    );

    return new Promise((resolve) => {
      let spawnError: string | undefined;
      child.once("error", (error) => {
        spawnError = `cannot run ffmpeg (${this.settings.ffmpeg}): ${error.message}`;
      });
      child.once("close", (code, signal) => {
        clearInterval(watchdog);
        this.child = undefined;
        pair();
        for (const image of images.splice(0)) emit(image, infos.shift());
        if (this.connected) {
          this.connected = false;
          this.metrics.connected.set({ source: this.name }, 0);
        }
        if (runDirectory) this.sweepSegments(runDirectory);
        const detail = recentErrors.at(-1);
        let error: string | undefined;
        if (spawnError) error = spawnError;
        else if (frozen && frames === 0)
          error = `no frame within ${Math.round((this.settings.frozenAfterMs + STARTUP_GRACE_MS) / 1000)} s of connecting: the source sends nothing ffmpeg can decode${detail ? ` (${detail})` : ""}`;
        else if (frozen)
          error = `no frame for ${Math.round(this.settings.frozenAfterMs / 1000)} s: the stream is frozen; reconnecting`;
        else if (this.stopping.signal.aborted) error = undefined;
        else if (code === 0 && stdin) error = undefined;
        else if (code === 0) error = `the stream ended${detail ? `: ${detail}` : ""}`;
        else
          error = `ffmpeg exited with ${signal ?? `code ${code}`}${detail ? `: ${detail}` : ""}${frames === 0 ? " (no frame decoded: unreachable, or not a video stream)" : ""}`;
        if (splitter.skippedBytes > 0)
          this.log.warn(
            { source: this.name, bytes: splitter.skippedBytes },
            "skipped bytes that were no image",
          );
        resolve({ frames, error });
      });
    });
  }

  private segmentDirectory(): string {
    return join(this.settings.archive!.directory, this.name);
  }

  private archiveSegment(path: string): void {
    const store = this.settings.archive!.store;
    this.uploads = this.uploads.then(async () => {
      try {
        await store.store(this.name, path);
        this.segmentsArchived += 1;
      } catch (error) {
        this.log.warn(
          { source: this.name, path, error: (error as Error).message },
          "segment not archived yet; kept locally",
        );
      }
    });
  }

  /**
   * The segments of an ended run of ffmpeg that it did not list (it was killed while writing
   * them): stored as far as they go; then its directory is removed.
   */
  private sweepSegments(directory: string): void {
    this.uploads = this.uploads.then(async () => {
      const names = await readdir(directory).catch(() => [] as string[]);
      for (const name of names.sort()) {
        const path = join(directory, name);
        try {
          await this.settings.archive!.store.store(this.name, path);
          this.segmentsArchived += 1;
        } catch (error) {
          // Gone already: stored by the sweep of a source object that had this camera before.
          if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
          this.log.warn(
            { source: this.name, path, error: (error as Error).message },
            "segment not archived; dropped",
          );
          await unlink(path).catch(() => undefined);
        }
      }
      await rmdir(directory).catch(() => undefined);
    });
  }

  /** Segment files still in the scratch directory, across runs. */
  private async scratchSegments(): Promise<string[]> {
    const runs = await readdir(this.segmentDirectory()).catch(() => [] as string[]);
    const files = await Promise.all(
      runs.map(async (run) =>
        (await readdir(join(this.segmentDirectory(), run)).catch(() => [] as string[])).map((name) =>
          join(run, name),
        ),
      ),
    );
    return files.flat();
  }
}

function readdirSafe(directory: string): string[] {
  try {
    return readdirSync(directory).sort();
  } catch {
    return [];
  }
}
