/**
 * The clickstream event: what a client sends (validated with zod, field by field), what the
 * collector adds (received time, client IP, collector id, session and event ids when missing),
 * and the Avro record every event is encoded to on the topic.
 */
import { randomUUID } from "node:crypto";
import avro from "avsc";
import { z } from "zod";

export const EVENT_TYPES = ["page_view", "click", "play", "pause", "seek", "ended", "heartbeat"] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export const HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] as const;

/** Events older than this are a client clock or a parsing error, not history worth keeping. */
const EARLIEST_EVENT_TIME = Date.UTC(2000, 0, 1);
/** Clients' clocks run ahead; a day of skew is tolerated, more is refused. */
const MAX_CLOCK_SKEW_MS = 24 * 60 * 60 * 1000;

/** The longest field of an event: request.url and referrer, URLs as browsers send them. */
export const MAX_URL_LENGTH = 8192;

const SESSION_ID = /^[A-Za-z0-9_-]{8,128}$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;

function text(field: string, max: number) {
  return z
    .string({
      error: (issue) =>
        issue.input === undefined
          ? `${field} is required`
          : `${field} must be a string, got ${describe(issue.input)}`,
    })
    .min(1, { error: `${field} must not be empty` })
    .max(max, { error: `${field} is longer than ${max} characters` });
}

/** A nullable text field: absent or null mean "not known" ("" is turned into null by `normalize`). */
function optionalText(field: string, max: number) {
  return text(field, max).nullish();
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "string" ? `"${value.slice(0, 40)}"` : typeof value;
}

/** Date.parse rolls 2026-02-30 over to March 2; a client sending it has a bug worth reporting. */
function calendarDate(iso: string): boolean {
  // The ISO_8601 pattern guarantees digits at these places. Days 1 to 28 exist in every month of
  // every year, so most dates need no Date object (which took 1% of the collector's CPU).
  const month = (iso.charCodeAt(5) - 48) * 10 + (iso.charCodeAt(6) - 48);
  const day = (iso.charCodeAt(8) - 48) * 10 + (iso.charCodeAt(9) - 48);
  if (month >= 1 && month <= 12 && day >= 1 && day <= 28) return true;
  const year = Number(iso.slice(0, 4));
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/**
 * ISO 8601 with a zone (`2026-11-26T07:00:00.123Z`, `…+01:00`) or epoch milliseconds (a number,
 * or a string of digits as a tracking pixel sends it), parsed to epoch ms; or why it is refused.
 * Shared by the zod schema and the fast path of `validateEvent`.
 */
function eventTimeMillis(value: number | string): number | string {
  let ms: number;
  if (typeof value === "number" || /^\d+$/.test(value)) {
    ms = Number(value);
    if (!Number.isSafeInteger(ms)) {
      return `eventTime ${digits(value)} is not a whole number of epoch milliseconds`;
    }
    // 1e11 ms is 1973, but 1e11 s is the year 5138: a small number is someone sending seconds.
    if (ms < 1e11) {
      return `eventTime ${digits(value)} looks like epoch seconds; send epoch milliseconds or ISO 8601`;
    }
  } else {
    if (!ISO_8601.test(value)) {
      return `eventTime "${value.slice(0, 40)}" is not an ISO 8601 datetime with a zone (e.g. 2026-11-26T07:00:00.000Z)`;
    }
    ms = Date.parse(value);
    if (Number.isNaN(ms) || !calendarDate(value))
      return `eventTime "${value.slice(0, 40)}" is not a valid date`;
  }
  if (ms < EARLIEST_EVENT_TIME) return `eventTime ${new Date(ms).toISOString()} is before 2000-01-01`;
  return ms;
}

/** A string of digits may be as long as the body: a message quotes its start and says how long it is. */
function digits(value: number | string): string {
  return typeof value === "string" && value.length > 40
    ? `${value.slice(0, 40)}… (${value.length} characters)`
    : String(value);
}

const eventTime = z
  .union([z.number(), z.string()], {
    error: (issue) =>
      issue.input === undefined
        ? "eventTime is required (ISO 8601 datetime or epoch milliseconds)"
        : `eventTime must be an ISO 8601 datetime or epoch milliseconds, got ${describe(issue.input)}`,
  })
  .transform((value, ctx) => {
    const ms = eventTimeMillis(value);
    if (typeof ms === "string") {
      ctx.addIssue({ code: "custom", message: ms });
      return z.NEVER;
    }
    return ms;
  });

const request = z.object(
  {
    // Upper-cased by `normalize`, so `get` is taken.
    method: z
      .enum(HTTP_METHODS, {
        error: (issue) =>
          `request.method must be one of ${HTTP_METHODS.join(", ")}, got ${describe(issue.input)}`,
      })
      .default("GET"),
    url: text("request.url", MAX_URL_LENGTH).refine(
      (value) => value.startsWith("/") || /^https?:\/\//i.test(value),
      {
        error: "request.url must be a path starting with / or an absolute http(s) URL",
      },
    ),
    videoId: optionalText("request.videoId", 256),
  },
  {
    error: (issue) =>
      issue.input === undefined
        ? "request is required (an object with url, and method, videoId)"
        : `request must be an object with url (and method, videoId), got ${describe(issue.input)}`,
  },
);

/** What a client sends. Unknown fields are ignored, as trackers add their own. */
export const clickEventInput = z.object(
  {
    eventId: z
      .string({ error: (issue) => `eventId must be a UUID string, got ${describe(issue.input)}` })
      .regex(UUID, { error: "eventId must be a UUID (8-4-4-4-12 hex digits)" })
      .optional(),
    eventType: z.enum(EVENT_TYPES, {
      error: (issue) =>
        issue.input === undefined
          ? "eventType is required"
          : `eventType must be one of ${EVENT_TYPES.join(", ")}, got ${describe(issue.input)}`,
    }),
    eventTime,
    sessionId: z
      .string({ error: (issue) => `sessionId must be a string, got ${describe(issue.input)}` })
      .regex(SESSION_ID, { error: "sessionId must be 8 to 128 characters of A-Z, a-z, 0-9, _ or -" }),
    userId: optionalText("userId", 256),
    userAgent: text("userAgent", 2048),
    referrer: optionalText("referrer", MAX_URL_LENGTH),
    request,
  },
  { error: (issue) => `an event must be a JSON object, got ${describe(issue.input)}` },
);

export type ClickEventInput = z.input<typeof clickEventInput>;

/** The encoded event: the Avro record below, as avsc reads and writes it. */
export interface ClickEvent {
  eventId: string;
  eventType: EventType;
  /** Epoch ms, from the client's clock. */
  eventTime: number;
  /** Epoch ms, from the collector's clock when the request arrived. */
  receivedAt: number;
  sessionId: string;
  userId: string | null;
  userAgent: string;
  clientIp: string;
  referrer: string | null;
  request: {
    method: string;
    url: string;
    path: string;
    query: string;
    videoId: string | null;
  };
  collectorId: string;
}

/** What the collector knows about the request that carried the event. */
export interface ServerContext {
  receivedAt: number;
  collectorId: string;
  clientIp: string;
  /** From the cookie, or freshly made for this response's Set-Cookie. */
  sessionId: string;
  /** From the User-Agent header; used when the event has none. */
  userAgent?: string;
  /** From the Referer header; used when the event has none. */
  referrer?: string;
}

export interface FieldError {
  /** Dotted path of the field, e.g. `request.url`; `""` for the event as a whole. */
  field: string;
  message: string;
}

export type Validation = { ok: true; event: ClickEvent } | { ok: false; errors: FieldError[] };

/** The fields of a valid event as zod's parse yields them (`clickEventInput`'s output). */
export type ValidInput = Pick<
  z.output<typeof clickEventInput>,
  "eventId" | "eventType" | "eventTime" | "sessionId"
> & {
  userId?: string | null;
  userAgent: string;
  referrer?: string | null;
  request: { method: string; url: string; videoId?: string | null };
};

/**
 * Validates one event and completes it with what the server knows. The event's own fields win
 * over the request's headers and cookie (a server-side tracker forwards its users' values);
 * the client IP and received time are always the server's.
 */
export function validateEvent(raw: unknown, context: ServerContext): Validation {
  const checked = checkEvent(raw, context);
  if (!checked.ok) return checked;
  return { ok: true, event: completeEvent(checked.input, checked.eventId, context) };
}

/** The event a valid input makes, completed with what the server knows. */
export function completeEvent(input: ValidInput, eventId: string, context: ServerContext): ClickEvent {
  const { path, query } = splitUrl(input.request.url);
  return {
    eventId,
    eventType: input.eventType,
    eventTime: input.eventTime,
    receivedAt: context.receivedAt,
    sessionId: input.sessionId,
    userId: input.userId ?? null,
    userAgent: input.userAgent,
    clientIp: context.clientIp,
    referrer: input.referrer ?? null,
    request: {
      method: input.request.method,
      url: input.request.url,
      path,
      query,
      videoId: input.request.videoId ?? null,
    },
    collectorId: context.collectorId,
  };
}

export type Checked = { ok: true; input: ValidInput; eventId: string } | { ok: false; errors: FieldError[] };

/**
 * `validateEvent` without building the event: the valid input and the event's id (the client's,
 * lower-cased, or a fresh one), which the collector encodes straight into Avro (encode.ts).
 */
export function checkEvent(raw: unknown, context: ServerContext): Checked {
  let input: ValidInput | undefined = validInput(raw, context);
  if (input === undefined) {
    const parsed = schemaInput(raw, context);
    if (!parsed.success) {
      return {
        ok: false,
        errors: parsed.error.issues.map((issue) => ({ field: issue.path.join("."), message: issue.message })),
      };
    }
    input = parsed.data;
  }
  if (input.eventTime > context.receivedAt + MAX_CLOCK_SKEW_MS) {
    return {
      ok: false,
      errors: [
        {
          field: "eventTime",
          message: `eventTime ${new Date(input.eventTime).toISOString()} is more than a day after the collector's clock (${new Date(context.receivedAt).toISOString()})`,
        },
      ],
    };
  }
  return { ok: true, input, eventId: input.eventId?.toLowerCase() ?? randomUUID() };
}

const EVENT_TYPE_SET: ReadonlySet<string> = new Set(EVENT_TYPES);
const HTTP_METHOD_SET: ReadonlySet<string> = new Set(HTTP_METHODS);
const ABSOLUTE_HTTP_URL = /^https?:\/\//i;

/**
 * The fast path: the same rules as `normalize` then `clickEventInput`, written out by hand, for
 * events that pass them all (nearly every event). It only says "valid, and this is what zod would
 * have made of it" or "ask zod": a refused event always goes through zod, so its per-field
 * messages come from the one schema. Profiled under the bench's load (batches of 50), zod's
 * safeParse with normalize's copies took 10.5% of the collector's CPU, about 3.5 µs an event;
 * this path takes under half of that, most of it the eventTime parsing both share.
 */
export function validInput(raw: unknown, context: ServerContext): ValidInput | undefined {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return undefined;
  const given = raw as Record<string, unknown>;
  const { eventId, eventType } = given;
  if (eventId !== undefined && (typeof eventId !== "string" || !UUID.test(eventId))) return undefined;
  if (typeof eventType !== "string" || !EVENT_TYPE_SET.has(eventType)) return undefined;
  const time = given.eventTime;
  if (typeof time !== "number" && typeof time !== "string") return undefined;
  const eventTime = eventTimeMillis(time);
  if (typeof eventTime !== "number") return undefined;
  const sessionId = absent(given.sessionId) ? context.sessionId : given.sessionId;
  if (typeof sessionId !== "string" || !SESSION_ID.test(sessionId)) return undefined;
  const userId = given.userId === "" ? null : given.userId;
  if (!isNullishText(userId, 256)) return undefined;
  const userAgent = absent(given.userAgent) ? context.userAgent : given.userAgent;
  if (!isText(userAgent, 2048)) return undefined;
  const referrer = absent(given.referrer) ? (context.referrer ?? null) : given.referrer;
  if (!isNullishText(referrer, MAX_URL_LENGTH)) return undefined;
  const request = given.request;
  if (request === null || typeof request !== "object" || Array.isArray(request)) return undefined;
  const { method: givenMethod, url, videoId: givenVideoId } = request as Record<string, unknown>;
  const method =
    givenMethod === undefined ? "GET" : typeof givenMethod === "string" ? givenMethod.toUpperCase() : "";
  if (!HTTP_METHOD_SET.has(method)) return undefined;
  if (!isText(url, MAX_URL_LENGTH) || !(url.startsWith("/") || ABSOLUTE_HTTP_URL.test(url))) return undefined;
  const videoId = givenVideoId === "" ? null : givenVideoId;
  if (!isNullishText(videoId, 256)) return undefined;
  return {
    eventId,
    eventType: eventType as EventType,
    eventTime,
    sessionId,
    userId,
    userAgent,
    referrer,
    request: { method, url, videoId },
  };
}

/** A session id the schema takes: what a dead letter may be keyed by. */
export function isSessionId(value: unknown): value is string {
  return typeof value === "string" && SESSION_ID.test(value);
}

function isText(value: unknown, max: number): value is string {
  return typeof value === "string" && value.length >= 1 && value.length <= max;
}

function isNullishText(value: unknown, max: number): value is string | null | undefined {
  return value === undefined || value === null || isText(value, max);
}

/**
 * Fills what the request knows where the event has nothing, and the lenient spellings trackers
 * use: "" for "not known", a lower-case method. Done here rather than as zod preprocess steps,
 * which cost a pipe per field on the hot path.
 */
/** The slow path, and the reference the fast one is tested against: `normalize` then the zod schema. */
export function schemaInput(raw: unknown, context: ServerContext) {
  return clickEventInput.safeParse(normalize(raw, context));
}

function normalize(raw: unknown, context: ServerContext): unknown {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return raw;
  const given = raw as Record<string, unknown>;
  let request = given.request;
  if (request !== null && typeof request === "object" && !Array.isArray(request)) {
    const { method, videoId } = request as Record<string, unknown>;
    request = {
      ...request,
      method: typeof method === "string" ? method.toUpperCase() : method,
      videoId: videoId === "" ? null : videoId,
    };
  }
  return {
    ...given,
    sessionId: absent(given.sessionId) ? context.sessionId : given.sessionId,
    userId: given.userId === "" ? null : given.userId,
    userAgent: absent(given.userAgent) ? context.userAgent : given.userAgent,
    referrer: absent(given.referrer) ? (context.referrer ?? null) : given.referrer,
    request,
  };
}

function absent(value: unknown): boolean {
  return value === undefined || value === null || value === "";
}

/** Path and raw query (without `?`) of a path-only or absolute URL; the fragment never reaches a server. */
function splitUrl(url: string): { path: string; query: string } {
  let rest = url;
  if (!url.startsWith("/")) {
    const afterScheme = url.indexOf("//") + 2;
    const slash = url.indexOf("/", afterScheme);
    const question = url.indexOf("?", afterScheme);
    const start = slash < 0 ? question : question < 0 ? slash : Math.min(slash, question);
    rest = start < 0 ? "/" : url.slice(start);
  }
  const hash = rest.indexOf("#");
  if (hash >= 0) rest = rest.slice(0, hash);
  const question = rest.indexOf("?");
  const path = question < 0 ? rest : rest.slice(0, question);
  return { path: path === "" ? "/" : path, query: question < 0 ? "" : rest.slice(question + 1) };
}

const nullableString = ["null", "string"];
const timestampMillis = { type: "long", logicalType: "timestamp-millis" };

/**
 * The Avro record on the topic (subject `<topic>-value`). Evolve it by adding fields with
 * defaults: the registry refuses a version that cannot read the previous one (BACKWARD).
 * Timestamps are `timestamp-millis` longs; avsc reads them as numbers.
 */
export const clickEventAvroSchema = {
  type: "record",
  name: "ClickEvent",
  namespace: "dev.tributary.clickstream",
  doc: "One clickstream event as received by a Tributary collector.",
  fields: [
    {
      name: "eventId",
      type: { type: "string", logicalType: "uuid" },
      doc: "UUID; the client's or the collector's",
    },
    {
      name: "eventType",
      type: { type: "enum", name: "EventType", symbols: [...EVENT_TYPES] },
      doc: "What the user did",
    },
    { name: "eventTime", type: timestampMillis, doc: "When it happened, by the client's clock" },
    { name: "receivedAt", type: timestampMillis, doc: "When the collector received it" },
    { name: "sessionId", type: "string", doc: "The session cookie that ties a user's events together" },
    { name: "userId", type: nullableString, default: null, doc: "The logged-in user, null when anonymous" },
    { name: "userAgent", type: "string" },
    { name: "clientIp", type: "string", doc: "First hop of X-Forwarded-For, else the peer address" },
    { name: "referrer", type: nullableString, default: null },
    {
      name: "request",
      type: {
        type: "record",
        name: "Request",
        fields: [
          { name: "method", type: "string" },
          { name: "url", type: "string", doc: "As the client sent it: a path or an absolute URL" },
          { name: "path", type: "string" },
          { name: "query", type: "string", doc: "Raw query string without '?', empty when none" },
          { name: "videoId", type: nullableString, default: null },
        ],
      },
    },
    { name: "collectorId", type: "string", doc: "The collector instance (pod) that received it" },
  ],
} as const;

/** Parsed once: avsc compiles a reader and writer per Type, which is the expensive part. */
export const clickEventType: avro.Type = avro.Type.forSchema(
  clickEventAvroSchema as unknown as avro.schema.AvroSchema,
);
