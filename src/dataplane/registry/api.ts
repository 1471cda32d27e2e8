/**
 * Confluent Schema Registry's REST API over Tributary's registry (src/dataplane/avro/registry.ts):
 * the routes, their request checks and their response shapes, without HTTP. Reads come from the
 * registry's in-memory view of the schemas topic; writes (register, config, delete) go through
 * the topic, so registrations from the REST API, the collectors and the CDC connectors agree.
 *
 * Shapes follow Confluent's API reference (docs.confluent.io/platform/current/schema-registry/develop/api.html):
 * an AVRO schema omits `schemaType`, `POST /subjects/{s}/versions` answers `{"id": n}`, versions are
 * `latest`, `-1` or 1..2^31-1, `?deleted=true` shows soft-deleted versions, `?permanent=true`
 * deletes for good what was soft-deleted first.
 */
import type avro from "avsc";
import {
  COMPATIBILITY_LEVELS,
  type Compatibility,
  InvalidSchemaError,
  parseSchema,
  type RegisteredSchema,
  type SchemaRegistry,
  schemaIdOf,
  storedSchemaText,
} from "../avro/registry.js";
import {
  ErrorCode,
  invalidSchema,
  RestError,
  schemaNotFound,
  subjectNotFound,
  versionNotFound,
} from "./errors.js";

export interface ApiRequest {
  method: string;
  /** Path segments, percent-decoded: `/subjects/a%2Fb/versions` is ["subjects", "a/b", "versions"]. */
  segments: string[];
  query: URLSearchParams;
  /** The parsed JSON body of POST and PUT (undefined when empty). */
  body: unknown;
}

export interface ApiResponse {
  status: number;
  body: unknown;
}

interface Route {
  /** The path template, the `route` label of the metrics. */
  template: string;
  /** Whether a miss (404) is worth reading the topic to its end and a second try. */
  catchUpOnMiss: boolean;
  run: (registry: SchemaRegistry, request: ApiRequest) => Promise<unknown> | unknown;
}

const MAX_VERSION = 2 ** 31 - 1;

const flag = (query: URLSearchParams, name: string) => query.get(name)?.toLowerCase() === "true";

/** Confluent's version ids: a positive 32-bit integer, or `latest` / -1. */
function parseVersion(text: string): number | "latest" {
  if (text === "latest" || text === "-1") return "latest";
  const version = /^\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(version) || version < 1 || version > MAX_VERSION) {
    throw new RestError(
      422,
      ErrorCode.invalidVersion,
      `The specified version '${text}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string "latest"`,
    );
  }
  return version;
}

function parseId(text: string): number {
  const id = /^\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(id) || id > MAX_VERSION) throw schemaNotFound(text);
  return id;
}

function assertSubject(registry: SchemaRegistry, subject: string, includeDeleted: boolean): void {
  if (registry.versions(subject, { includeDeleted }).length === 0) throw subjectNotFound(subject);
}

/** One version of a subject; `latest` is the newest that is not soft-deleted (any with deleted). */
function versionOf(
  registry: SchemaRegistry,
  subject: string,
  versionText: string,
  includeDeleted: boolean,
): RegisteredSchema {
  const version = parseVersion(versionText);
  const versions = registry.versions(subject, { includeDeleted });
  if (versions.length === 0) throw subjectNotFound(subject);
  const found = version === "latest" ? versions.at(-1) : versions.find((v) => v.version === version);
  if (!found) throw versionNotFound(versionText);
  return found;
}

/** The `schema` (a string) of a request body; only AVRO, and without references. */
function schemaOfBody(body: unknown): { text: string; type: avro.Type } {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw invalidSchema('the body must be a JSON object such as {"schema": "..."}');
  }
  const { schema, schemaType, references } = body as {
    schema?: unknown;
    schemaType?: unknown;
    references?: unknown;
  };
  if (schemaType !== undefined && schemaType !== null && String(schemaType).toUpperCase() !== "AVRO") {
    throw invalidSchema(
      `schemaType ${JSON.stringify(schemaType)} is not supported: Tributary's registry holds AVRO schemas only (the schemas its collectors, sinks and connectors write)`,
    );
  }
  if (Array.isArray(references) && references.length > 0) {
    throw invalidSchema(
      "schema references are not supported: register the schema with its named types inlined",
    );
  }
  if (typeof schema !== "string" || schema.trim() === "") {
    throw invalidSchema('the body has no "schema" string (the Avro schema as JSON text)');
  }
  try {
    return { text: schema, type: parseSchema(schema) };
  } catch (error) {
    if (error instanceof InvalidSchemaError) throw invalidSchema(error.message);
    throw error;
  }
}

function parseLevel(body: unknown): Compatibility {
  const raw = (body as { compatibility?: unknown; compatibilityLevel?: unknown } | null) ?? {};
  const value = raw.compatibility ?? raw.compatibilityLevel;
  const level = typeof value === "string" ? value.toUpperCase() : "";
  if (!(COMPATIBILITY_LEVELS as readonly string[]).includes(level)) {
    throw new RestError(
      422,
      ErrorCode.invalidCompatibilityLevel,
      `Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive`,
    );
  }
  return level as Compatibility;
}

/** A version as Confluent shows it: AVRO is the default type, so `schemaType` is left out. */
function versionBody(registered: RegisteredSchema) {
  return {
    subject: registered.subject,
    version: registered.version,
    id: registered.id,
    schema: registered.schema,
  };
}

function compatibilityAnswer(problems: string[], verbose: boolean) {
  return verbose
    ? { is_compatible: problems.length === 0, messages: problems }
    : { is_compatible: problems.length === 0 };
}

type Handlers = Record<string, Route>;

/** Routes by `<METHOD> <template>`; `{s}` (subject), `{v}` (version) and `{id}` match one segment. */
const routes: Handlers = {
  "GET /": { template: "/", catchUpOnMiss: false, run: () => ({}) },
  "GET /schemas/types": { template: "/schemas/types", catchUpOnMiss: false, run: () => ["AVRO"] },
  "GET /schemas": {
    template: "/schemas",
    catchUpOnMiss: false,
    run: (registry, { query }) => {
      const prefix = query.get("subjectPrefix") ?? "";
      const includeDeleted = flag(query, "deleted");
      const latestOnly = flag(query, "latestOnly");
      return registry
        .subjectNames({ includeDeleted })
        .filter((subject) => subject.startsWith(prefix))
        .flatMap((subject) => {
          const versions = registry.versions(subject, { includeDeleted });
          return latestOnly ? versions.slice(-1) : versions;
        })
        .map(versionBody);
    },
  },
  "GET /schemas/ids/{id}": {
    template: "/schemas/ids/{id}",
    catchUpOnMiss: true,
    run: (registry, { segments }) => {
      const id = parseId(segments[2]!);
      const known = registry.schemaById(id);
      if (!known) throw schemaNotFound(id);
      return { schema: known.schema };
    },
  },
  "GET /schemas/ids/{id}/schema": {
    template: "/schemas/ids/{id}/schema",
    catchUpOnMiss: true,
    run: (registry, { segments }) => {
      const id = parseId(segments[2]!);
      const known = registry.schemaById(id);
      if (!known) throw schemaNotFound(id);
      return JSON.parse(known.schema);
    },
  },
  "GET /schemas/ids/{id}/subjects": {
    template: "/schemas/ids/{id}/subjects",
    catchUpOnMiss: true,
    run: (registry, { segments, query }) => {
      const id = parseId(segments[2]!);
      if (!registry.schemaById(id)) throw schemaNotFound(id);
      const versions = registry.versionsOfId(id, { includeDeleted: flag(query, "deleted") });
      return [...new Set(versions.map((v) => v.subject))];
    },
  },
  "GET /schemas/ids/{id}/versions": {
    template: "/schemas/ids/{id}/versions",
    catchUpOnMiss: true,
    run: (registry, { segments, query }) => {
      const id = parseId(segments[2]!);
      if (!registry.schemaById(id)) throw schemaNotFound(id);
      return registry
        .versionsOfId(id, { includeDeleted: flag(query, "deleted") })
        .map((v) => ({ subject: v.subject, version: v.version }));
    },
  },
  "GET /subjects": {
    template: "/subjects",
    catchUpOnMiss: false,
    run: (registry, { query }) => {
      const prefix = query.get("subjectPrefix") ?? "";
      return registry
        .subjectNames({ includeDeleted: flag(query, "deleted") })
        .filter((subject) => subject.startsWith(prefix));
    },
  },
  "GET /subjects/{s}/versions": {
    template: "/subjects/{s}/versions",
    catchUpOnMiss: true,
    run: (registry, { segments, query }) => {
      const subject = segments[1]!;
      const versions = registry.versions(subject, { includeDeleted: flag(query, "deleted") });
      if (versions.length === 0) throw subjectNotFound(subject);
      return versions.map((v) => v.version);
    },
  },
  "GET /subjects/{s}/versions/{v}": {
    template: "/subjects/{s}/versions/{v}",
    catchUpOnMiss: true,
    run: (registry, { segments, query }) =>
      versionBody(versionOf(registry, segments[1]!, segments[3]!, flag(query, "deleted"))),
  },
  "GET /subjects/{s}/versions/{v}/schema": {
    template: "/subjects/{s}/versions/{v}/schema",
    catchUpOnMiss: true,
    run: (registry, { segments, query }) =>
      JSON.parse(versionOf(registry, segments[1]!, segments[3]!, flag(query, "deleted")).schema),
  },
  "GET /subjects/{s}/versions/{v}/referencedby": {
    template: "/subjects/{s}/versions/{v}/referencedby",
    catchUpOnMiss: true,
    // References are not supported, so nothing refers to any version.
    run: (registry, { segments }) => {
      versionOf(registry, segments[1]!, segments[3]!, true);
      return [];
    },
  },
  "POST /subjects/{s}/versions": {
    template: "/subjects/{s}/versions",
    catchUpOnMiss: false,
    run: async (registry, { segments, body }) => {
      const subject = segments[1]!;
      const { text } = schemaOfBody(body);
      const requestedId = (body as { id?: unknown }).id;
      const contentId = schemaIdOf(storedSchemaText(text));
      if (
        requestedId !== undefined &&
        requestedId !== null &&
        requestedId !== -1 &&
        requestedId !== contentId
      ) {
        // Ids are content-addressed here: an import under another id would mislead every reader.
        throw invalidSchema(
          `schema ids are derived from the schema's content here; this schema's id is ${contentId}, not ${String(requestedId)}`,
        );
      }
      const registered = await registry.register(subject, text);
      return { id: registered.id };
    },
  },
  "POST /subjects/{s}": {
    template: "/subjects/{s}",
    catchUpOnMiss: true,
    run: (registry, { segments, query, body }) => {
      const subject = segments[1]!;
      const includeDeleted = flag(query, "deleted");
      const { text } = schemaOfBody(body);
      assertSubject(registry, subject, includeDeleted);
      const found = registry.lookup(subject, text, { includeDeleted });
      if (!found) throw new RestError(404, ErrorCode.schemaNotFound, "Schema not found");
      return versionBody(found);
    },
  },
  "DELETE /subjects/{s}": {
    template: "/subjects/{s}",
    catchUpOnMiss: true,
    run: (registry, { segments, query }) =>
      registry.deleteSubject(segments[1]!, { permanent: flag(query, "permanent") }),
  },
  "DELETE /subjects/{s}/versions/{v}": {
    template: "/subjects/{s}/versions/{v}",
    catchUpOnMiss: true,
    run: (registry, { segments, query }) => {
      const subject = segments[1]!;
      const permanent = flag(query, "permanent");
      // `latest` is the newest live version; a permanent delete acts on soft-deleted versions.
      const registered = versionOf(registry, subject, segments[3]!, permanent);
      return registry.deleteVersion(subject, registered.version, { permanent });
    },
  },
  "POST /compatibility/subjects/{s}/versions/{v}": {
    template: "/compatibility/subjects/{s}/versions/{v}",
    catchUpOnMiss: true,
    run: (registry, { segments, query, body }) => {
      const subject = segments[2]!;
      const { text } = schemaOfBody(body);
      const version = parseVersion(segments[4]!);
      const verbose = flag(query, "verbose");
      if (version === "latest") {
        // Against what a registration would be checked against; a subject without versions
        // accepts any schema, as Confluent answers.
        return compatibilityAnswer(registry.compatibilityProblems(subject, text), verbose);
      }
      versionOf(registry, subject, segments[4]!, false);
      return compatibilityAnswer(registry.compatibilityProblems(subject, text, { version }), verbose);
    },
  },
  "POST /compatibility/subjects/{s}/versions": {
    template: "/compatibility/subjects/{s}/versions",
    catchUpOnMiss: true,
    run: (registry, { segments, query, body }) => {
      const subject = segments[2]!;
      const { text } = schemaOfBody(body);
      // Every live version, whatever the level's transitivity: Confluent's answer for this route.
      const level = registry.compatibilityOf(subject);
      const transitive =
        level === "NONE" || level.endsWith("_TRANSITIVE") ? level : (`${level}_TRANSITIVE` as Compatibility);
      return compatibilityAnswer(
        registry.compatibilityProblems(subject, text, { level: transitive }),
        flag(query, "verbose"),
      );
    },
  },
  "GET /config": {
    template: "/config",
    catchUpOnMiss: false,
    run: (registry) => ({ compatibilityLevel: registry.globalCompatibility() }),
  },
  "PUT /config": {
    template: "/config",
    catchUpOnMiss: false,
    run: async (registry, { body }) => {
      const level = parseLevel(body);
      await registry.setGlobalCompatibility(level);
      return { compatibility: level };
    },
  },
  "DELETE /config": {
    template: "/config",
    catchUpOnMiss: false,
    run: async (registry) => {
      const previous = registry.globalCompatibility();
      await registry.setGlobalCompatibility(registry.defaultCompatibility);
      return { compatibilityLevel: previous };
    },
  },
  "GET /config/{s}": {
    template: "/config/{s}",
    catchUpOnMiss: true,
    run: (registry, { segments, query }) => {
      const subject = segments[1]!;
      const own = registry.subjectCompatibility(subject);
      if (own) return { compatibilityLevel: own };
      if (flag(query, "defaultToGlobal")) return { compatibilityLevel: registry.globalCompatibility() };
      throw new RestError(
        404,
        ErrorCode.subjectLevelCompatibilityNotConfigured,
        `Subject '${subject}' does not have subject-level compatibility configured`,
      );
    },
  },
  "PUT /config/{s}": {
    template: "/config/{s}",
    catchUpOnMiss: false,
    run: async (registry, { segments, body }) => {
      const level = parseLevel(body);
      await registry.setCompatibility(segments[1]!, level);
      return { compatibility: level };
    },
  },
  "DELETE /config/{s}": {
    template: "/config/{s}",
    catchUpOnMiss: false,
    run: async (registry, { segments }) => {
      const subject = segments[1]!;
      if (registry.subjectCompatibility(subject) === undefined) {
        if (registry.versions(subject, { includeDeleted: true }).length === 0) throw subjectNotFound(subject);
        throw new RestError(
          404,
          ErrorCode.subjectLevelCompatibilityNotConfigured,
          `Subject '${subject}' does not have subject-level compatibility configured`,
        );
      }
      return { compatibilityLevel: await registry.deleteSubjectCompatibility(subject) };
    },
  },
  "GET /mode": { template: "/mode", catchUpOnMiss: false, run: () => ({ mode: "READWRITE" }) },
  "GET /mode/{s}": { template: "/mode/{s}", catchUpOnMiss: false, run: () => ({ mode: "READWRITE" }) },
  "PUT /mode": {
    template: "/mode",
    catchUpOnMiss: false,
    run: (_registry, { body }) => {
      const mode = String((body as { mode?: unknown } | null)?.mode ?? "").toUpperCase();
      if (mode !== "READWRITE") {
        throw new RestError(
          422,
          ErrorCode.invalidMode,
          `Invalid mode '${mode}': this registry is always READWRITE (IMPORT and READONLY are not supported)`,
        );
      }
      return { mode };
    },
  },
};

/** The template of a path: the fixed words kept, the parameters replaced by their names. */
function templateOf(segments: string[]): string | undefined {
  const [head, second, third, fourth, fifth, ...rest] = segments;
  if (rest.length > 0) return undefined;
  switch (head) {
    case undefined:
      return "/";
    case "schemas":
      if (second === undefined) return "/schemas";
      if (second === "types" && third === undefined) return "/schemas/types";
      if (second === "ids" && third !== undefined && fifth === undefined) {
        if (fourth === undefined) return "/schemas/ids/{id}";
        if (["schema", "subjects", "versions"].includes(fourth)) return `/schemas/ids/{id}/${fourth}`;
      }
      return undefined;
    case "subjects":
      if (second === undefined) return "/subjects";
      if (third === undefined) return "/subjects/{s}";
      if (third !== "versions") return undefined;
      if (fourth === undefined) return "/subjects/{s}/versions";
      if (fifth === undefined) return "/subjects/{s}/versions/{v}";
      if (fifth === "schema" || fifth === "referencedby") return `/subjects/{s}/versions/{v}/${fifth}`;
      return undefined;
    case "compatibility":
      if (second !== "subjects" || third === undefined || fourth !== "versions") return undefined;
      return fifth === undefined
        ? "/compatibility/subjects/{s}/versions"
        : "/compatibility/subjects/{s}/versions/{v}";
    case "config":
    case "mode":
      if (third !== undefined) return undefined;
      return second === undefined ? `/${head}` : `/${head}/{s}`;
    default:
      return undefined;
  }
}

export type Resolved =
  | { kind: "route"; template: string; route: Route }
  | { kind: "notFound" }
  | { kind: "methodNotAllowed"; template: string };

export function resolve(method: string, segments: string[]): Resolved {
  const template = templateOf(segments);
  if (template === undefined) return { kind: "notFound" };
  const route = routes[`${method} ${template}`];
  if (!route) return { kind: "methodNotAllowed", template };
  return { kind: "route", template, route };
}

/** Whether a route reads (and so may be retried after catching up) and needs a body. */
export function needsBody(method: string): boolean {
  return method === "POST" || method === "PUT";
}

/**
 * Runs a resolved route. A read that misses (a subject, version or id not known here) reads the
 * topic to its end once and tries again: another replica may have just registered it, and a
 * consumer that got an id from a message must find it on whichever replica it asks.
 */
export async function runRoute(
  registry: SchemaRegistry,
  route: Route,
  request: ApiRequest,
  catchUp: () => Promise<void>,
): Promise<ApiResponse> {
  try {
    return { status: 200, body: await route.run(registry, request) };
  } catch (error) {
    const missed =
      route.catchUpOnMiss &&
      error instanceof RestError &&
      [
        ErrorCode.subjectNotFound,
        ErrorCode.versionNotFound,
        ErrorCode.schemaNotFound,
        ErrorCode.subjectLevelCompatibilityNotConfigured,
      ].includes(error.errorCode as 40401);
    if (!missed) throw error;
    await catchUp();
    return { status: 200, body: await route.run(registry, request) };
  }
}
