/**
 * Reading frames back from a VideoCollector's topic: `FrameReassembler` turns Kafka messages into
 * whole frames, joining the chunks of a frame larger than the collector's message size (headers
 * frame-id, chunk-index, chunk-count). The chunks of a frame follow one another under the
 * camera's key, in one partition; a frame whose chunks stop short (the collector died between
 * them) is dropped when the camera's next frame begins, and counted. A frame the collector sent
 * twice (it sends a batch again when Kafka's answer was lost) is passed over: a frame from the
 * same collector and camera no later, in capture time and sequence, than the last one returned.
 *
 * `tributary video-read --brokers … --topic … [--camera c] [--count n] [--out dir]` prints one JSON
 * line per frame (headers, size) and, with --out, writes each image to <dir>/<camera>-<sequence>.<ext>.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { IHeaders, KafkaMessage } from "kafkajs";
import { z } from "zod";
import { createLogger } from "../../log.js";
import { configUsage, inputKeys, parseRoleConfig } from "../config.js";
import { createKafkaClient } from "../kafkaClient.js";
import { Header } from "./publisher.js";

export interface ReadFrame {
  camera: string;
  sequence: number;
  captureTime: number;
  ptsTime: number;
  codec: string;
  width: number;
  height: number;
  keyFrame: boolean;
  collector: string;
  /** How many Kafka messages carried it. */
  chunks: number;
  data: Buffer;
  partition?: number;
  offset?: string;
}

function header(headers: IHeaders | undefined, name: string): string | undefined {
  const value = headers?.[name];
  if (value === undefined) return undefined;
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined ? undefined : Buffer.isBuffer(first) ? first.toString("utf8") : String(first);
}

interface Partial {
  frameId: string;
  count: number;
  parts: Buffer[];
  first: KafkaMessage;
}

export class FrameReassembler {
  private readonly partial = new Map<string, Partial>();
  /** The last offset taken of each partition, to pass over what a consumer group delivers again. */
  private readonly lastOffsets = new Map<number, bigint>();
  /** Frames whose chunks never all arrived. */
  incompleteFrames = 0;
  /** Messages delivered a second time (after a rebalance, from the last committed offset) and passed over. */
  redelivered = 0;
  /** Frames the collector wrote twice (a send retried after Kafka's answer was lost), passed over. */
  duplicates = 0;
  /** The last frame returned of each collector and camera. */
  private readonly lastFrames = new Map<string, { captureTime: number; sequence: number }>();

  /**
   * A whole frame, or undefined while a chunked frame is still incomplete. With its partition,
   * a message at or below an offset already taken is passed over: a frame is returned once.
   */
  push(message: KafkaMessage, partition?: number): ReadFrame | undefined {
    if (partition !== undefined && message.offset !== undefined) {
      const offset = BigInt(message.offset);
      const last = this.lastOffsets.get(partition);
      if (last !== undefined && offset <= last) {
        this.redelivered += 1;
        return undefined;
      }
      this.lastOffsets.set(partition, offset);
    }
    const headers = message.headers;
    const camera = header(headers, Header.camera) ?? message.key?.toString("utf8") ?? "";
    const frameId = header(headers, Header.frameId);
    const value = message.value ?? Buffer.alloc(0);
    if (frameId === undefined) {
      if (this.partial.delete(camera)) this.incompleteFrames += 1;
      return this.once(this.frame(message, value, 1, partition));
    }
    const index = Number(header(headers, Header.chunkIndex));
    const count = Number(header(headers, Header.chunkCount));
    let pending = this.partial.get(camera);
    if (pending && pending.frameId !== frameId) {
      this.partial.delete(camera);
      this.incompleteFrames += 1;
      pending = undefined;
    }
    if (!pending) {
      if (index !== 0) {
        this.incompleteFrames += index === count - 1 ? 1 : 0;
        return undefined;
      }
      pending = { frameId, count, parts: [], first: message };
      this.partial.set(camera, pending);
    }
    if (index !== pending.parts.length) {
      this.partial.delete(camera);
      this.incompleteFrames += 1;
      return undefined;
    }
    pending.parts.push(value);
    if (pending.parts.length < pending.count) return undefined;
    this.partial.delete(camera);
    return this.once(this.frame(pending.first, Buffer.concat(pending.parts), pending.count, partition));
  }

  /** The frame, unless it is a copy of one already returned. */
  private once(frame: ReadFrame): ReadFrame | undefined {
    const key = `${frame.collector}\u0000${frame.camera}`;
    const last = this.lastFrames.get(key);
    if (last && frame.sequence <= last.sequence && frame.captureTime <= last.captureTime) {
      this.duplicates += 1;
      return undefined;
    }
    this.lastFrames.set(key, { captureTime: frame.captureTime, sequence: frame.sequence });
    return frame;
  }

  private frame(message: KafkaMessage, data: Buffer, chunks: number, partition?: number): ReadFrame {
    const headers = message.headers;
    return {
      camera: header(headers, Header.camera) ?? message.key?.toString("utf8") ?? "",
      sequence: Number(header(headers, Header.sequence)),
      captureTime: Number(header(headers, Header.captureTime)),
      ptsTime: Number(header(headers, Header.ptsTime) || Number.NaN),
      codec: header(headers, Header.codec) ?? "",
      width: Number(header(headers, Header.width)),
      height: Number(header(headers, Header.height)),
      keyFrame: header(headers, Header.keyFrame) === "true",
      collector: header(headers, Header.collector) ?? "",
      chunks,
      data,
      partition,
      offset: message.offset,
    };
  }
}

const readConfigSchema = z.object({
  brokers: z.string().transform((value) =>
    value
      .split(",")
      .map((b) => b.trim())
      .filter(Boolean),
  ),
  topic: z.string().min(1),
  camera: z.string().optional(),
  count: z.coerce.number().int().positive().optional(),
  out: z.string().optional(),
  fromBeginning: z
    .enum(["true", "false"])
    .default("true")
    .transform((value) => value === "true"),
  groupId: z.string().default(`tributary-video-read-${process.pid}-${Date.now()}`),
});

const readRole = {
  role: "video-read",
  envPrefix: "TRIBUTARY_VIDEO_READ_",
  schema: readConfigSchema,
  keys: inputKeys(readConfigSchema),
};

const extensions: Record<string, string> = { jpeg: "jpg", webp: "webp", png: "png" };

export async function main(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(configUsage(readRole));
    return;
  }
  const config = parseRoleConfig(readRole, argv);
  const log = createLogger("video-read");
  const kafka = createKafkaClient({ clientId: "tributary-video-read", brokers: config.brokers, logger: log });
  const consumer = kafka.consumer({ groupId: config.groupId });
  await consumer.connect();
  await consumer.subscribe({ topic: config.topic, fromBeginning: config.fromBeginning });
  if (config.out) await mkdir(config.out, { recursive: true });
  const reassembler = new FrameReassembler();
  let seen = 0;
  await new Promise<void>((resolve, reject) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    consumer
      .run({
        eachMessage: async ({ message, partition }) => {
          if (config.count !== undefined && seen >= config.count) return;
          const frame = reassembler.push(message, partition);
          if (!frame || (config.camera && frame.camera !== config.camera)) return;
          seen += 1;
          const { data, ...rest } = frame;
          process.stdout.write(`${JSON.stringify({ ...rest, bytes: data.length })}\n`);
          if (config.out) {
            await writeFile(
              join(config.out, `${frame.camera}-${frame.sequence}.${extensions[frame.codec] ?? "bin"}`),
              data,
            );
          }
          if (config.count !== undefined && seen >= config.count) resolve();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
}
