/**
 * The collector's Avro encoder for ClickEvent, written by hand for the one record it writes on
 * the hot path: from the validated input and the request's context straight into the Confluent
 * wire format (magic byte, schema id, Avro body), without the intermediate ClickEvent object, the
 * request's `{ path, query }` or a per-event buffer and copy. Measured under the bench's load,
 * avsc's compiled writer, its Tap and the scratch-then-copy framing took about 5% of the
 * collector's CPU and the objects they need added to the garbage collector's share.
 *
 * Events are written one after another into a shared arena and each message is a view of its
 * bytes, as Node's own Buffer pool hands out small buffers: an arena is dropped for a new one
 * when an event might not fit, and lives as long as a view of it is waiting for Kafka.
 *
 * The bytes are exactly avsc's for `clickEventAvroSchema` (test/unit/clickstream-encode.test.ts
 * compares them over random events); a change of the schema must change this writer too.
 */
import type { ServerContext, ValidInput } from "./schema.js";
import { EVENT_TYPES } from "./schema.js";

const WIRE_MAGIC = 0;
const ARENA_BYTES = 256 * 1024;
const EVENT_TYPE_INDEX = new Map<string, number>(EVENT_TYPES.map((type, index) => [type, index]));

let arena = Buffer.allocUnsafe(ARENA_BYTES);
let arenaPos = 0;

/**
 * The wire-format message of a valid event: `input` as `validInput` made it, `eventId` the
 * client's (lower-cased) or a fresh one, the rest from the request's context.
 */
export function encodeClickEvent(
  schemaId: number,
  input: ValidInput,
  eventId: string,
  context: ServerContext,
): Buffer {
  const { userId, referrer, request } = input;
  const { url, videoId } = request;
  // A UTF-16 unit takes at most 3 bytes of UTF-8, a string's length at most 3 bytes of varint (no
  // field is longer than 8192), a long at most 10; plus the header, union branches, "/" and "".
  const strings =
    eventId.length +
    input.sessionId.length +
    (userId?.length ?? 0) +
    input.userAgent.length +
    context.clientIp.length +
    (referrer?.length ?? 0) +
    request.method.length +
    2 * url.length +
    (videoId?.length ?? 0) +
    context.collectorId.length;
  const bound = 64 + 3 * strings + 13 * 3;
  if (arenaPos + bound > arena.length) {
    arena = Buffer.allocUnsafe(Math.max(ARENA_BYTES, bound));
    arenaPos = 0;
  }
  const buf = arena;
  const start = arenaPos;
  buf[start] = WIRE_MAGIC;
  buf.writeUInt32BE(schemaId, start + 1);
  let pos = start + 5;
  pos = writeString(buf, pos, eventId, 0, eventId.length);
  pos = writeLong(buf, pos, EVENT_TYPE_INDEX.get(input.eventType)!);
  pos = writeLong(buf, pos, input.eventTime);
  pos = writeLong(buf, pos, context.receivedAt);
  pos = writeString(buf, pos, input.sessionId, 0, input.sessionId.length);
  pos = writeNullableString(buf, pos, userId);
  pos = writeString(buf, pos, input.userAgent, 0, input.userAgent.length);
  pos = writeString(buf, pos, context.clientIp, 0, context.clientIp.length);
  pos = writeNullableString(buf, pos, referrer);
  pos = writeString(buf, pos, request.method, 0, request.method.length);
  pos = writeString(buf, pos, url, 0, url.length);
  // Path and query as splitUrl (schema.ts) cuts them, written from the URL without substrings.
  let rest = 0;
  if (!url.startsWith("/")) {
    const afterScheme = url.indexOf("//") + 2;
    const slash = url.indexOf("/", afterScheme);
    const question = url.indexOf("?", afterScheme);
    rest = slash < 0 ? question : question < 0 ? slash : Math.min(slash, question);
  }
  if (rest < 0) {
    // No path and no query: the path is "/".
    buf[pos++] = 2;
    buf[pos++] = 0x2f;
    buf[pos++] = 0;
  } else {
    const hash = url.indexOf("#", rest);
    const end = hash < 0 ? url.length : hash;
    const question = url.indexOf("?", rest);
    const pathEnd = question < 0 || question > end ? end : question;
    if (pathEnd === rest) {
      buf[pos++] = 2;
      buf[pos++] = 0x2f;
    } else pos = writeString(buf, pos, url, rest, pathEnd);
    if (pathEnd === end) buf[pos++] = 0;
    else pos = writeString(buf, pos, url, pathEnd + 1, end);
  }
  pos = writeNullableString(buf, pos, videoId);
  pos = writeString(buf, pos, context.collectorId, 0, context.collectorId.length);
  arenaPos = pos;
  return buf.subarray(start, pos);
}

function writeNullableString(buf: Buffer, pos: number, value: string | null | undefined): number {
  if (value === null || value === undefined) {
    buf[pos] = 0;
    return pos + 1;
  }
  buf[pos] = 2;
  return writeString(buf, pos + 1, value, 0, value.length);
}

/** Avro's long: zigzag, then 7 bits a byte, low first (exact up to 2^53, as avsc's). */
function writeLong(buf: Buffer, pos: number, n: number): number {
  let zigzag = n >= 0 ? n * 2 : -n * 2 - 1;
  while (zigzag >= 0x80) {
    buf[pos++] = (zigzag % 0x80) | 0x80;
    zigzag = Math.floor(zigzag / 0x80);
  }
  buf[pos++] = zigzag;
  return pos;
}

/** `value.slice(from, to)` as Avro's string: its UTF-8 length, then its UTF-8 bytes. */
function writeString(buf: Buffer, pos: number, value: string, from: number, to: number): number {
  const length = to - from;
  // ASCII, nearly every field: one byte per character, so the length is known before the bytes
  // are written (one varint byte below 64 characters, two below 8192). A JavaScript loop beats a
  // call into Node's encoder at these lengths.
  const head = length < 64 ? 1 : length < 8192 ? 2 : 0;
  if (head !== 0) {
    let at = pos + head;
    for (let i = from; i < to; i++) {
      const code = value.charCodeAt(i);
      if (code >= 0x80) return writeUtf8(buf, pos, value.slice(from, to));
      buf[at++] = code;
    }
    if (head === 1) buf[pos] = length << 1;
    else {
      buf[pos] = ((length << 1) & 0x7f) | 0x80;
      buf[pos + 1] = length >> 6;
    }
    return at;
  }
  return writeUtf8(buf, pos, from === 0 && to === value.length ? value : value.slice(from, to));
}

function writeUtf8(buf: Buffer, pos: number, value: string): number {
  const bytes = Buffer.byteLength(value, "utf8");
  pos = writeLong(buf, pos, bytes);
  return pos + buf.write(value, pos, bytes, "utf8");
}
