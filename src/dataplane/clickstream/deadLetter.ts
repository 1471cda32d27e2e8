/**
 * Dead letters: what the collector refused, why, and from whom, as one JSON message on the
 * dead-letter topic.
 *
 * A dead letter is written before the client is answered, so a letter Kafka refuses would leave
 * its request answered 503 on every retry. Kafka refuses a message larger than the broker's
 * `message.max.bytes` (1 MiB by default) or the topic's `max.message.bytes`, and a refused body
 * can be as large as `maxBodyBytes`, larger still once JSON escapes it (a control character takes
 * six bytes). So a letter keeps at most `deadLetterRawBytes` of what came, and records the size it
 * had; the errors are cut too, because some quote what they refuse. Whatever came in, a letter is
 * at most `deadLetterRawBytes + DEAD_LETTER_ENVELOPE_BYTES` bytes.
 */
import type { FieldError } from "./schema.js";

/** A dead-lettered event or body: what came in, why it was refused, and when. */
export interface DeadLetter {
  /**
   * `invalid-event`: one event (or NDJSON line) of the request failed validation; the others
   * may have been accepted. `unparseable-body`: the body is not UTF-8, or not JSON nor NDJSON.
   * `refused-body`: the body is JSON beyond the collector's limits (nesting, string length).
   */
  reason: "invalid-event" | "unparseable-body" | "refused-body";
  errors: FieldError[];
  /**
   * The event as the client sent it (parsed JSON), or the text of a body or NDJSON line that was
   * not JSON. When `rawTruncated`, a string: the start of the event's JSON text, or of the text.
   * When `rawEncoding` is `base64`, the body's bytes, which were not UTF-8.
   */
  raw: unknown;
  rawEncoding?: "base64";
  /** The size of what came in bytes: the body or NDJSON line as received, or the event's JSON text. */
  rawBytes: number;
  /** `raw` holds only the first `deadLetterRawBytes` (in JSON) of what came. */
  rawTruncated: boolean;
  index: number;
  receivedAt: string;
  collectorId: string;
  clientIp: string;
  topic: string;
}

/** What was refused, as the collector holds it. */
export type Refused =
  /** An event parsed from JSON. */
  | { event: unknown }
  /** A body or NDJSON line that is UTF-8 but not JSON. */
  | { text: string }
  /** A body that is not UTF-8. */
  | { bytes: Buffer };

export type DeadLetterEnvelope = Omit<DeadLetter, "raw" | "rawEncoding" | "rawBytes" | "rawTruncated">;

/** No event has more than a dozen fields to be wrong about; more errors than this say nothing more. */
const MAX_ERRORS = 20;
/** In bytes of JSON; a field is a dotted path of the schema's names. */
const MAX_FIELD_BYTES = 256;
/** In bytes of JSON; a message quotes at most a short piece of the value it refuses. */
const MAX_MESSAGE_BYTES = 1024;

/**
 * Room for everything in a letter but `raw`: MAX_ERRORS errors of at most 1,300 bytes each (26 KB),
 * and the fixed fields, with a topic name of up to 249 characters and a collector id of up to 253.
 */
export const DEAD_LETTER_ENVELOPE_BYTES = 32 * 1024;

/** The letter as the message value: `raw` cut to `rawLimitBytes` of JSON, the errors cut too. */
export function encodeDeadLetter(
  envelope: DeadLetterEnvelope,
  refused: Refused,
  rawLimitBytes: number,
): Buffer {
  const { reason, errors, ...where } = envelope;
  const letter: DeadLetter = {
    reason,
    errors: boundedErrors(errors),
    ...boundedRaw(refused, rawLimitBytes),
    ...where,
  };
  return Buffer.from(JSON.stringify(letter));
}

/** `raw` and its size, cut so that `raw` takes at most `limitBytes` in the letter's JSON. */
export function boundedRaw(
  refused: Refused,
  limitBytes: number,
): Pick<DeadLetter, "raw" | "rawEncoding" | "rawBytes" | "rawTruncated"> {
  if ("event" in refused) {
    // Parsed from JSON, so it serialises (and its nesting is bounded by the body's limits).
    const json = JSON.stringify(refused.event) ?? "null";
    const rawBytes = Buffer.byteLength(json);
    return rawBytes <= limitBytes
      ? { raw: refused.event, rawBytes, rawTruncated: false }
      : { raw: jsonStringPrefix(json, limitBytes), rawBytes, rawTruncated: true };
  }
  if ("text" in refused) {
    const raw = jsonStringPrefix(refused.text, limitBytes);
    return { raw, rawBytes: Buffer.byteLength(refused.text), rawTruncated: raw.length < refused.text.length };
  }
  const { bytes } = refused;
  // Base64 writes 4 characters for every 3 bytes; the quotes take 2.
  const kept = Math.min(bytes.length, Math.floor((limitBytes - 2) / 4) * 3);
  return {
    raw: bytes.subarray(0, kept).toString("base64"),
    rawEncoding: "base64",
    rawBytes: bytes.length,
    rawTruncated: kept < bytes.length,
  };
}

/** At most MAX_ERRORS errors, each field and message cut to a size no quoted value can stretch. */
export function boundedErrors(errors: FieldError[]): FieldError[] {
  const kept = errors.length > MAX_ERRORS ? errors.slice(0, MAX_ERRORS - 1) : errors;
  const bounded = kept.map(({ field, message }) => ({
    field: cut(field, MAX_FIELD_BYTES),
    message: cut(message, MAX_MESSAGE_BYTES),
  }));
  if (kept.length < errors.length) {
    bounded.push({ field: "", message: `and ${errors.length - kept.length} more errors` });
  }
  return bounded;
}

/** `text` if its JSON takes at most `maxBytes`, else its longest start that does followed by "…". */
function cut(text: string, maxBytes: number): string {
  const start = jsonStringPrefix(text, maxBytes);
  // "…" is three bytes of UTF-8.
  return start.length === text.length ? text : `${jsonStringPrefix(text, maxBytes - 3)}…`;
}

/**
 * The longest start of `text` that `JSON.stringify` writes in at most `maxBytes` bytes of UTF-8,
 * quotes included. Counted rather than tried, since escaping makes a character take 1 to 6 bytes:
 * `"` and `\` and the short escapes (\n, \t, …) 2, other control characters 6 (\u0001), a lone
 * surrogate 6 (\udc00), non-ASCII 2 to 4. A surrogate pair is never split.
 */
export function jsonStringPrefix(text: string, maxBytes: number): string {
  // Six bytes is the most any character takes: short texts need no counting.
  if (text.length * 6 + 2 <= maxBytes) return text;
  let bytes = 2;
  let i = 0;
  while (i < text.length) {
    const unit = text.charCodeAt(i);
    let width: number;
    let units = 1;
    if (unit === 0x22 || unit === 0x5c) width = 2;
    else if (unit < 0x20)
      width = unit === 8 || unit === 9 || unit === 10 || unit === 12 || unit === 13 ? 2 : 6;
    else if (unit < 0x80) width = 1;
    else if (unit < 0x800) width = 2;
    else if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        width = 4;
        units = 2;
      } else width = 6;
    } else if (unit >= 0xdc00 && unit <= 0xdfff) width = 6;
    else width = 3;
    if (bytes + width > maxBytes) break;
    bytes += width;
    i += units;
  }
  return i === text.length ? text : text.slice(0, i);
}
