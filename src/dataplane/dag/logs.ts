/**
 * A try's log, shipped line by line to a Redis stream that outlives the worker pod, capped at
 * `maxLines` (the oldest trimmed) and expiring after `retentionSeconds`. The worker holds at most
 * `maxBufferedBytes` of it: past that the task's pipes are paused until Redis has caught up, so a
 * task that prints gigabytes slows down rather than growing the worker.
 */
import type { Readable } from "node:stream";
import type { Redis } from "ioredis";

export const maxLineBytes = 16 * 1024;

export class LogShipper {
  private lines: string[] = [];
  private bytes = 0;
  private flushing: Promise<void> | undefined;
  private readonly paused = new Set<Readable>();
  private readonly sources = new Set<Readable>();
  private failed: Error | undefined;
  private expirySet = false;
  /** Lines written, for the worker's metrics. */
  written = 0;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly options: { maxLines: number; retentionSeconds: number; maxBufferedBytes?: number },
  ) {}

  private get limit() {
    return this.options.maxBufferedBytes ?? 1024 * 1024;
  }

  /** Follows a pipe of the task: whole lines, a line longer than 16 KiB cut in pieces. */
  follow(source: Readable, stream: "stdout" | "stderr") {
    this.sources.add(source);
    let partial = "";
    source.setEncoding("utf8");
    source.on("data", (chunk: string) => {
      let text = partial + chunk;
      partial = "";
      let newline = text.indexOf("\n");
      while (newline !== -1) {
        this.add(text.slice(0, newline), stream);
        text = text.slice(newline + 1);
        newline = text.indexOf("\n");
      }
      while (text.length > maxLineBytes) {
        this.add(text.slice(0, maxLineBytes), stream);
        text = text.slice(maxLineBytes);
      }
      partial = text;
      if (this.bytes > this.limit) {
        source.pause();
        this.paused.add(source);
      }
    });
    source.on("end", () => {
      if (partial) this.add(partial, stream);
      partial = "";
    });
  }

  /** A line from the worker itself (start, end, error). */
  note(text: string) {
    this.add(text, "worker");
  }

  private add(line: string, stream: string) {
    // The stream tag rides in the line to keep one field per entry.
    const entry = stream === "stdout" ? line : `[${stream}] ${line}`;
    this.lines.push(entry);
    this.bytes += entry.length;
    if (!this.flushing) this.flushing = this.flushLoop();
  }

  private async flushLoop() {
    try {
      while (this.lines.length > 0) {
        const batch = this.lines.splice(0, 512);
        const pipeline = this.redis.pipeline();
        for (const line of batch) {
          pipeline.xadd(this.key, "MAXLEN", "~", this.options.maxLines, "*", "l", line);
        }
        if (!this.expirySet) {
          pipeline.expire(this.key, this.options.retentionSeconds);
          this.expirySet = true;
        }
        const results = (await pipeline.exec()) ?? [];
        const error = results.find(([err]) => err)?.[0];
        if (error) throw error;
        this.written += batch.length;
        for (const line of batch) this.bytes -= line.length;
        if (this.bytes <= this.limit / 4) {
          for (const source of this.paused) source.resume();
          this.paused.clear();
        }
      }
    } catch (error) {
      this.failed = error as Error;
      this.lines = [];
      this.bytes = 0;
      for (const source of this.paused) source.resume();
      this.paused.clear();
    } finally {
      this.flushing = undefined;
    }
  }

  /** Waits until every line so far is in Redis; throws when Redis refused them. */
  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.failed) throw this.failed;
  }
}

/** The log of a try, oldest line first (at most `count` lines from `after`, a stream id). */
export async function readLog(
  redis: Redis,
  key: string,
  options: { after?: string; count?: number } = {},
): Promise<{ id: string; line: string }[]> {
  const start = options.after ? `(${options.after}` : "-";
  const entries = await redis.xrange(key, start, "+", "COUNT", options.count ?? 10_000);
  return entries.map(([id, fields]) => ({ id, line: fields[1] ?? "" }));
}
