/**
 * A request body read into events, within limits a hostile body cannot stretch.
 *
 * A body is one JSON event, `{"events": [...]}`, a JSON array, or NDJSON (one event per line; a
 * line that is not JSON becomes an event that validation refuses with the line number). Before any
 * event is looked at, the body as a whole must be UTF-8 (RFC 8259 §8.1), nest arrays and objects
 * at most MAX_NESTING_DEPTH levels deep, and hold no string longer than `maxStringLength`. No
 * tracker sends a body that breaks one of these, and one that does would be refused again: it is
 * refused whole, with a reason the server answers 400 with and dead-letters.
 */
import { isUtf8 } from "node:buffer";
import { MAX_URL_LENGTH } from "./schema.js";

/**
 * An event nests two levels (itself and its request), four in `{"events": [...]}`; trackers' own
 * fields add a few. Thirty-two leaves room for those, and keeps what recurses over a refused event
 * (JSON.stringify writing its dead letter) far from the end of the stack, which 10,000 levels reach.
 */
export const MAX_NESTING_DEPTH = 32;

export interface BodyLimits {
  /** The longest string or property name, in characters. */
  maxStringLength: number;
}

export interface BodyRefusal {
  reason: "unparseable-body" | "refused-body";
  /** What the client is told, and what the dead letter records. */
  message: string;
}

export type ParsedBody = { events: unknown[] } | { refused: BodyRefusal };

/** A line of an NDJSON body that is not JSON: validation refuses it with its line number. */
export class UnparseableLine {
  constructor(
    readonly line: number,
    readonly text: string,
  ) {}
}

export const NOT_JSON =
  'the body is neither a JSON event, {"events": [...]}, a JSON array nor NDJSON (one event per line)';

export function parseBody(body: Buffer, contentType: string | undefined, limits: BodyLimits): ParsedBody {
  if (!isUtf8(body)) {
    const offset = firstInvalidUtf8(body);
    const byte = body[offset]!.toString(16).padStart(2, "0");
    return {
      refused: {
        reason: "unparseable-body",
        message: `the body is not valid UTF-8 (byte 0x${byte} at offset ${offset}); send JSON and NDJSON as UTF-8`,
      },
    };
  }
  const text = body.toString("utf8");
  // No string is longer than the body: most bodies need no look at their strings at all.
  const maxString = text.length > limits.maxStringLength ? limits.maxStringLength : undefined;
  const ndjson = /^application\/(x-)?(ndjson|jsonl|jsonlines)\b/i.test(contentType ?? "");
  if (!ndjson) {
    const parsed = parseJson(text);
    if (parsed !== undefined) {
      const beyond = beyondLimits(parsed.value, maxString);
      if (beyond) return { refused: refusal(beyond, undefined, limits) };
      return { events: eventsOf(parsed.value) };
    }
    if (!text.includes("\n")) return { refused: { reason: "unparseable-body", message: NOT_JSON } };
  }
  const events: unknown[] = [];
  let lineNumber = 0;
  let anyParsed = false;
  for (const line of text.split("\n")) {
    lineNumber++;
    if (line.trim() === "") continue;
    const parsed = parseJson(line);
    if (parsed === undefined) {
      events.push(new UnparseableLine(lineNumber, line));
      continue;
    }
    const beyond = beyondLimits(parsed.value, maxString);
    if (beyond) return { refused: refusal(beyond, lineNumber, limits) };
    events.push(parsed.value);
    anyParsed = true;
  }
  if (!anyParsed && events.length > 0) return { refused: { reason: "unparseable-body", message: NOT_JSON } };
  return { events };
}

function parseJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) };
  } catch {
    return undefined;
  }
}

function eventsOf(value: unknown): unknown[] {
  if (Array.isArray(value)) return value;
  if (value !== null && typeof value === "object" && Array.isArray((value as { events?: unknown }).events)) {
    return (value as { events: unknown[] }).events;
  }
  return [value];
}

/** Where in a parsed body a limit is broken: the path of keys and indexes from its top. */
type Beyond =
  | { kind: "depth"; path: (string | number)[] }
  | { kind: "string" | "name"; length: number; path: (string | number)[] };

interface Container {
  value: object;
  depth: number;
  parent: Container | undefined;
  key: string | number;
}

/**
 * The first place `value` nests deeper than MAX_NESTING_DEPTH or holds a string (value or
 * property name) longer than `maxString` (not looked for when undefined). Iterative, so a hostile
 * depth costs a longer array, never the stack; it looks at containers and, only when asked to,
 * strings, which adds about 4 µs to the 45 µs that parsing a batch of 50 events takes.
 */
export function beyondLimits(value: unknown, maxString: number | undefined): Beyond | undefined {
  if (typeof value === "string") {
    return maxString !== undefined && value.length > maxString
      ? { kind: "string", length: value.length, path: [] }
      : undefined;
  }
  if (value === null || typeof value !== "object") return undefined;
  const stack: Container[] = [{ value, depth: 1, parent: undefined, key: "" }];
  while (stack.length > 0) {
    const container = stack.pop()!;
    if (container.depth > MAX_NESTING_DEPTH) return { kind: "depth", path: pathOf(container) };
    const entries = container.value as Record<string, unknown>;
    if (Array.isArray(entries)) {
      for (let i = 0; i < entries.length; i++) {
        const beyond = look(entries[i], i, container, stack, maxString);
        if (beyond) return beyond;
      }
    } else {
      for (const key in entries) {
        if (maxString !== undefined && key.length > maxString) {
          return { kind: "name", length: key.length, path: pathOf(container) };
        }
        const beyond = look(entries[key], key, container, stack, maxString);
        if (beyond) return beyond;
      }
    }
  }
  return undefined;
}

/** Queues `item` when it is a container; says so when it is a string beyond `maxString`. */
function look(
  item: unknown,
  key: string | number,
  container: Container,
  stack: Container[],
  maxString: number | undefined,
): Beyond | undefined {
  if (item !== null && typeof item === "object") {
    stack.push({ value: item, depth: container.depth + 1, parent: container, key });
  } else if (maxString !== undefined && typeof item === "string" && item.length > maxString) {
    return { kind: "string", length: item.length, path: [...pathOf(container), key] };
  }
  return undefined;
}

function pathOf(container: Container): (string | number)[] {
  const path: (string | number)[] = [];
  for (let at: Container | undefined = container; at?.parent !== undefined; at = at.parent) path.push(at.key);
  return path.reverse();
}

/** `events[1].request.url`, as a client would look it up: each name cut to 40 characters, the whole to 200. */
function pathText(path: (string | number)[]): string {
  let text = "";
  for (const key of path) {
    if (text.length >= 200) return `${text}…`;
    if (typeof key === "number") text += `[${key}]`;
    else text += `${text === "" ? "" : "."}${key.length > 40 ? `${key.slice(0, 40)}…` : key}`;
  }
  return text;
}

function refusal(beyond: Beyond, line: number | undefined, limits: BodyLimits): BodyRefusal {
  const at = [
    line !== undefined ? `on line ${line}` : "",
    beyond.path.length > 0 ? `at ${pathText(beyond.path)}` : "",
  ]
    .filter((part) => part !== "")
    .join(" ");
  if (beyond.kind === "depth") {
    return {
      reason: "refused-body",
      message: `the body is not clickstream events: it nests arrays and objects more than ${MAX_NESTING_DEPTH} levels deep (${at}); an event nests two (itself and its request)`,
    };
  }
  const what = beyond.kind === "name" ? "a property name" : "a string";
  return {
    reason: "refused-body",
    message: `the body holds ${what} of ${beyond.length} characters${at ? ` ${at}` : ""}; the collector takes strings of up to ${limits.maxStringLength} characters (no field of an event is longer than ${MAX_URL_LENGTH})`,
  };
}

/**
 * The offset of the first byte of `bytes` that starts no well-formed UTF-8 sequence (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or -1 when there is none.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let following: number;
    let smallest: number;
    let codePoint: number;
    if (lead >= 0xc2 && lead <= 0xdf) {
      following = 1;
      smallest = 0x80;
      codePoint = lead & 0x1f;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      following = 2;
      smallest = 0x800;
      codePoint = lead & 0x0f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      following = 3;
      smallest = 0x10000;
      codePoint = lead & 0x07;
    } else return i;
    if (i + following >= bytes.length) return i;
    for (let k = 1; k <= following; k++) {
      const continuation = bytes[i + k]!;
      if ((continuation & 0xc0) !== 0x80) return i;
      codePoint = (codePoint << 6) | (continuation & 0x3f);
    }
    if (codePoint < smallest || codePoint > 0x10ffff || (codePoint >= 0xd800 && codePoint <= 0xdfff))
      return i;
    i += following + 1;
  }
  return -1;
}
