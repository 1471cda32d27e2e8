/**
 * Cuts ffmpeg's image2pipe output (images back to back on stdout, no framing) into frames.
 *
 * The stream arrives in pipe-sized chunks (64 KiB) that do not line up with frames. A frame that
 * lies inside one chunk is handed out as a `subarray` of it (no copy); only a frame spread over
 * several chunks is joined, once. Each codec finds the end of an image from its own structure:
 *
 *   jpeg  walk the marker segments by their lengths up to SOS, then look for EOI (FF D9) in the
 *         entropy-coded data, where a literal FF is always stuffed as FF 00: a quantisation or
 *         Huffman table that happens to hold FF D9 is never mistaken for the end.
 *   webp  RIFF: the size in bytes 4..8 says where the file ends.
 *   png   the signature, then chunks by their lengths up to IEND.
 *
 * Bytes that do not start an image of the codec (ffmpeg never writes them, but a broken pipe or a
 * garbage source might) are skipped up to the next image start and counted.
 */

export type ImageCodec = "jpeg" | "webp" | "png";

export interface ImageFrame {
  data: Buffer;
  width: number;
  height: number;
}

/** A frame that grows past this without an end is not an image: the splitter resynchronises. */
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A queue of chunks read by absolute offset from the start of the current frame. */
class ChunkQueue {
  parts: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    this.parts.push(chunk);
    this.length += chunk.length;
  }

  byte(offset: number): number {
    let position = offset;
    for (const part of this.parts) {
      if (position < part.length) return part[position]!;
      position -= part.length;
    }
    return -1;
  }

  uint16be(offset: number): number {
    return (this.byte(offset) << 8) | this.byte(offset + 1);
  }

  uint32le(offset: number): number {
    return (
      (this.byte(offset) | (this.byte(offset + 1) << 8) | (this.byte(offset + 2) << 16)) +
      this.byte(offset + 3) * 0x1000000
    );
  }

  uint32be(offset: number): number {
    return this.byte(offset) * 0x1000000 + ((this.byte(offset + 1) << 16) | this.uint16be(offset + 2));
  }

  /** Bytes [0, end) as one Buffer: a view of the first chunk when it holds them all. */
  take(end: number): Buffer {
    const first = this.parts[0]!;
    let taken: Buffer;
    if (first.length >= end) {
      taken = first.subarray(0, end);
    } else {
      taken = Buffer.allocUnsafe(end);
      let written = 0;
      for (const part of this.parts) {
        const n = Math.min(part.length, end - written);
        part.copy(taken, written, 0, n);
        written += n;
        if (written === end) break;
      }
    }
    this.drop(end);
    return taken;
  }

  /** Forgets bytes [0, count). */
  drop(count: number): void {
    let remaining = count;
    while (remaining > 0 && this.parts.length > 0) {
      const first = this.parts[0]!;
      if (first.length <= remaining) {
        remaining -= first.length;
        this.parts.shift();
      } else {
        this.parts[0] = first.subarray(remaining);
        remaining = 0;
      }
    }
    this.length = Math.max(0, this.length - count);
  }

  /** The first offset >= from where `a` is followed by `b`, or -1; searches each chunk with indexOf. */
  indexOfPair(a: number, b: number, from: number): number {
    let base = 0;
    for (let index = 0; index < this.parts.length; index++) {
      const part = this.parts[index]!;
      const end = base + part.length;
      if (end > from) {
        let start = Math.max(0, from - base);
        for (;;) {
          const at = part.indexOf(a, start);
          if (at < 0) break;
          const next = at + 1 < part.length ? part[at + 1] : this.parts[index + 1]?.[0];
          if (next === undefined) return -1;
          if (next === b) return base + at;
          start = at + 1;
        }
      }
      base = end;
    }
    return -1;
  }
}

interface JpegState {
  /** Offset of the next marker segment in the header walk. */
  segment: number;
  /** Offset from which to look for EOI; set once SOS is passed. */
  scanFrom?: number;
  width: number;
  height: number;
}

export class FrameSplitter {
  private readonly queue = new ChunkQueue();
  private jpeg: JpegState = { segment: 2, width: 0, height: 0 };
  /** Bytes skipped because they did not start an image. */
  skippedBytes = 0;

  constructor(readonly codec: ImageCodec) {}

  /** Bytes held for an image not yet complete. */
  get pendingBytes(): number {
    return this.queue.length;
  }

  /** Adds a chunk of ffmpeg's output; returns the images it completed, in order. */
  push(chunk: Buffer): ImageFrame[] {
    if (chunk.length === 0) return [];
    this.queue.push(chunk);
    const frames: ImageFrame[] = [];
    for (;;) {
      if (!this.synchronise()) break;
      const frame = this.next();
      if (!frame) {
        if (this.queue.length > MAX_IMAGE_BYTES) this.resynchronise(1);
        else break;
        continue;
      }
      frames.push(frame);
    }
    return frames;
  }

  /** Makes the queue start at an image start; false when more bytes are needed to tell. */
  private synchronise(): boolean {
    const q = this.queue;
    for (;;) {
      if (q.length < 2) return false;
      if (this.startsImage()) return true;
      if (this.codec === "webp" || this.codec === "png") {
        if (q.length < (this.codec === "png" ? 8 : 12)) return false;
      }
      this.resynchronise(1);
    }
  }

  private startsImage(): boolean {
    const q = this.queue;
    switch (this.codec) {
      case "jpeg":
        return q.byte(0) === 0xff && q.byte(1) === 0xd8;
      case "webp":
        if (q.length < 12) return q.byte(0) === 0x52; // 'R': wait for the rest of the header
        return (
          q.byte(0) === 0x52 &&
          q.byte(1) === 0x49 &&
          q.byte(2) === 0x46 &&
          q.byte(3) === 0x46 &&
          q.byte(8) === 0x57 &&
          q.byte(9) === 0x45 &&
          q.byte(10) === 0x42 &&
          q.byte(11) === 0x50
        );
      case "png":
        for (let i = 0; i < Math.min(8, q.length); i++) if (q.byte(i) !== PNG_SIGNATURE[i]) return false;
        return true;
    }
  }

  /** Drops bytes up to the next possible image start after `from`. */
  private resynchronise(from: number): void {
    const q = this.queue;
    const first = this.codec === "jpeg" ? 0xff : this.codec === "webp" ? 0x52 : 0x89;
    let skip = q.length;
    let base = 0;
    for (const part of q.parts) {
      const at = part.indexOf(first, Math.max(0, from - base));
      if (at >= 0) {
        skip = base + at;
        break;
      }
      base += part.length;
    }
    this.skippedBytes += skip;
    q.drop(skip);
    this.jpeg = { segment: 2, width: 0, height: 0 };
  }

  private next(): ImageFrame | undefined {
    switch (this.codec) {
      case "jpeg":
        return this.nextJpeg();
      case "webp":
        return this.nextWebp();
      case "png":
        return this.nextPng();
    }
  }

  private nextJpeg(): ImageFrame | undefined {
    const q = this.queue;
    const state = this.jpeg;
    while (state.scanFrom === undefined) {
      if (q.length < state.segment + 4) return undefined;
      if (q.byte(state.segment) !== 0xff) {
        this.resynchronise(1);
        return undefined;
      }
      const marker = q.byte(state.segment + 1);
      if (marker === 0xff) {
        state.segment += 1; // fill byte
        continue;
      }
      const length = q.uint16be(state.segment + 2);
      // SOF0..SOF15 (not DHT C4, JPG C8, DAC CC): precision, height, width.
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        if (q.length < state.segment + 9) return undefined;
        state.height = q.uint16be(state.segment + 5);
        state.width = q.uint16be(state.segment + 7);
      }
      state.segment += 2 + length;
      if (marker === 0xda) state.scanFrom = state.segment;
    }
    const eoi = q.indexOfPair(0xff, 0xd9, state.scanFrom);
    if (eoi < 0) {
      // Everything before the last byte has no EOI: look from there next time.
      state.scanFrom = Math.max(state.scanFrom, q.length - 1);
      return undefined;
    }
    const frame = { data: q.take(eoi + 2), width: state.width, height: state.height };
    this.jpeg = { segment: 2, width: 0, height: 0 };
    return frame;
  }

  private nextWebp(): ImageFrame | undefined {
    const q = this.queue;
    if (q.length < 12) return undefined;
    const total = q.uint32le(4) + 8;
    if (total > MAX_IMAGE_BYTES || total < 12) {
      this.resynchronise(1);
      return undefined;
    }
    if (q.length < total) return undefined;
    const data = q.take(total);
    return { data, ...webpSize(data) };
  }

  private nextPng(): ImageFrame | undefined {
    const q = this.queue;
    let offset = 8;
    for (;;) {
      if (q.length < offset + 8) return undefined;
      const length = q.uint32be(offset);
      const isEnd =
        q.byte(offset + 4) === 0x49 &&
        q.byte(offset + 5) === 0x45 &&
        q.byte(offset + 6) === 0x4e &&
        q.byte(offset + 7) === 0x44;
      offset += 12 + length;
      if (offset > MAX_IMAGE_BYTES) {
        this.resynchronise(1);
        return undefined;
      }
      if (isEnd) break;
    }
    if (q.length < offset) return undefined;
    const width = q.uint32be(16);
    const height = q.uint32be(20);
    return { data: q.take(offset), width, height };
  }
}

/** Width and height of a WebP file from its VP8, VP8L or VP8X chunk. */
export function webpSize(data: Buffer): { width: number; height: number } {
  const chunk = data.toString("latin1", 12, 16);
  if (chunk === "VP8 " && data.length >= 30) {
    return { width: data.readUInt16LE(26) & 0x3fff, height: data.readUInt16LE(28) & 0x3fff };
  }
  if (chunk === "VP8L" && data.length >= 25) {
    const bits = data.readUInt32LE(21);
    return { width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
  }
  if (chunk === "VP8X" && data.length >= 30) {
    return { width: data.readUIntLE(24, 3) + 1, height: data.readUIntLE(27, 3) + 1 };
  }
  return { width: 0, height: 0 };
}
