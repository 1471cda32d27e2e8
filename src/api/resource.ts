/**
 * What every Tributary custom resource declares about itself: its names, its zod schemas and
 * what the API server should show and enforce. The CRDs in `crds/` are generated from these
 * definitions (see `crds.ts`); the operator uses the same definitions to watch, parse and
 * write status, so the schema a user is checked against and the one the code reads are one.
 */
import type { z } from "zod";

export const group = "tributary.dev";
export const version = "v1alpha1";
export const apiVersion = `${group}/${version}` as const;
export type ApiVersion = typeof apiVersion;

/** One column of `kubectl get`, as `additionalPrinterColumns` of the CRD version. */
export interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  jsonPath: string;
  description: string;
  /** 0 shows in `kubectl get`; 1 only in `kubectl get -o wide`. */
  priority?: number;
  format?: string;
}

/** The READY column every kind shows first: the status of its Ready condition. */
export function readyColumn(description: string): PrinterColumn {
  return {
    name: "Ready",
    type: "string",
    jsonPath: '.status.conditions[?(@.type=="Ready")].status',
    description,
  };
}

/**
 * A CEL rule the API server enforces (`x-kubernetes-validations`), attached to the schema node
 * at `path`: dot-separated property names from the object root (`spec`, `spec.topicName`),
 * with `[]` after a name to address the items of an array (`spec.tasks[]`).
 * Rules that mention `oldSelf` are transition rules: they run on update only, which is how
 * immutable fields are expressed (`self == oldSelf`).
 */
export interface ValidationRule {
  path: string;
  rule: string;
  /** What the user reads when the rule fails; name the field and what is expected. */
  message: string;
  /** JSONPath relative to `path` of the field to blame, e.g. `.replicationFactor`. */
  fieldPath?: string;
  reason?: "FieldValueInvalid" | "FieldValueForbidden" | "FieldValueRequired" | "FieldValueDuplicate";
}

export interface ResourceDefinition<
  Spec extends z.ZodType = z.ZodType,
  Status extends z.ZodType = z.ZodType,
  Kind extends string = string,
> {
  group: typeof group;
  version: typeof version;
  apiVersion: ApiVersion;
  kind: Kind;
  /** What the kind is, for `kubectl explain <kind>`. */
  description: string;
  listKind: `${Kind}List`;
  plural: string;
  singular: string;
  shortNames: string[];
  categories: string[];
  scope: "Namespaced";
  spec: Spec;
  status: Status;
  printerColumns: PrinterColumn[];
  validations: ValidationRule[];
}

/**
 * The metadata fields Tributary reads, as JSON carries them (timestamps are RFC 3339 strings).
 * Any richer metadata type, such as the runtime's, is assignable to it.
 */
export interface ResourceMetadata {
  name?: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  creationTimestamp?: string;
  deletionTimestamp?: string;
  [field: string]: unknown;
}

/** A stored custom resource of a definition: spec as parsed (defaults applied), status as written. */
export interface CustomResource<Spec, Status, Kind extends string = string> {
  apiVersion: ApiVersion;
  kind: Kind;
  metadata: ResourceMetadata;
  spec: Spec;
  status?: Status;
}

export type SpecOf<D extends ResourceDefinition> = z.output<D["spec"]>;
export type StatusOf<D extends ResourceDefinition> = z.output<D["status"]>;
export type ResourceOf<D extends ResourceDefinition> = CustomResource<SpecOf<D>, StatusOf<D>, D["kind"]>;

/** Declares a resource definition with the fields every Tributary kind shares. */
export function defineResource<
  Spec extends z.ZodType,
  Status extends z.ZodType,
  Kind extends string,
>(definition: {
  kind: Kind;
  description: string;
  plural: string;
  shortNames: string[];
  spec: Spec;
  status: Status;
  printerColumns: PrinterColumn[];
  validations: ValidationRule[];
}): ResourceDefinition<Spec, Status, Kind> {
  return {
    group,
    version,
    apiVersion,
    listKind: `${definition.kind}List`,
    singular: definition.kind.toLowerCase(),
    categories: ["tributary"],
    scope: "Namespaced",
    ...definition,
  };
}

export type SpecParseResult<S> =
  | { ok: true; spec: S }
  | { ok: false; message: string; issues: z.core.$ZodIssue[] };

/**
 * Parses (and defaults) the spec of a stored object. The API server has already checked the
 * structural schema, so a failure here means a rule only zod knows (or an object written before
 * the CRD was updated); the message names the resource and every offending field.
 */
export function parseSpec<D extends ResourceDefinition>(
  definition: D,
  object: { metadata?: { name?: string; namespace?: string }; spec?: unknown },
): SpecParseResult<SpecOf<D>> {
  const result = definition.spec.safeParse(object.spec ?? {});
  if (result.success) return { ok: true, spec: result.data as SpecOf<D> };
  const name = `${definition.kind} ${object.metadata?.namespace ?? ""}/${object.metadata?.name ?? ""}`;
  const problems = result.error.issues.map((issue) => `${fieldPath("spec", issue.path)}: ${issue.message}`);
  return { ok: false, message: `${name}: ${problems.join("; ")}`, issues: result.error.issues };
}

/** `spec.sinks[0].roll.maxBytes` from a zod issue path. */
export function fieldPath(root: string, path: readonly PropertyKey[]): string {
  let out = root;
  for (const part of path) out += typeof part === "number" ? `[${part}]` : `.${String(part)}`;
  return out;
}
