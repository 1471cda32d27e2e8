/**
 * CustomResourceDefinitions built from the zod schemas, as plain JSON objects in the API
 * server's wire format. `npm run generate` writes them to `crds/`; tests and the operator can
 * apply them directly without reading files.
 *
 * zod's OpenAPI 3.0 output is close to what Kubernetes wants but not *structural*: this module
 * fixes it up (inlines, types every node, turns free-form values into preserve-unknown-fields,
 * int-or-string unions into `x-kubernetes-int-or-string`) and attaches each kind's CEL rules.
 */
import { stringify } from "yaml";
import { z } from "zod";
import { resources } from "./index.js";
import type { ResourceDefinition, ValidationRule } from "./resource.js";

/** A JSON Schema node in the shape `apiextensions.k8s.io/v1` JSONSchemaProps serialises to. */
export type SchemaNode = { [keyword: string]: unknown };

export interface CustomResourceDefinition {
  apiVersion: "apiextensions.k8s.io/v1";
  kind: "CustomResourceDefinition";
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: {
      kind: string;
      listKind: string;
      plural: string;
      singular: string;
      shortNames: string[];
      categories: string[];
    };
    scope: "Namespaced";
    versions: Array<{
      name: string;
      served: true;
      storage: true;
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: Array<Record<string, unknown>>;
      schema: { openAPIV3Schema: SchemaNode };
    }>;
  };
}

const maxSafe = Number.MAX_SAFE_INTEGER;
const int32Min = -2147483648;
const int32Max = 2147483647;

/** Where in a resource a schema node sits, for error messages: `Topic spec.sinks[].roll`. */
type Where = string;

/**
 * Turns zod's JSON Schema of `spec` or `status` into a structural schema: every node typed,
 * nothing referenced, unions allowed only in the int-or-string form Kubernetes knows.
 */
export function structuralSchema(schema: z.ZodType, where: Where): SchemaNode {
  const json = z.toJSONSchema(schema, {
    target: "openapi-3.0",
    io: "input",
    unrepresentable: "throw",
  }) as SchemaNode;
  delete json.$schema;
  return fixNode(json, where);
}

function fixNode(input: SchemaNode, where: Where): SchemaNode {
  const node: SchemaNode = { ...input };
  // JSONSchemaProps has no propertyNames: map keys are checked by a CEL rule on the map instead.
  for (const keyword of ["$ref", "$defs", "definitions", "allOf", "oneOf", "not", "propertyNames"]) {
    if (keyword in node) {
      throw new Error(
        `${where}: '${keyword}' cannot be expressed in a structural CRD schema; model it as an object`,
      );
    }
  }

  if (node["x-kubernetes-int-or-string"] === true) return intOrString(node, where);
  if ("anyOf" in node) {
    throw new Error(`${where}: a union (anyOf) is not structural; use an enum discriminator and CEL rules`);
  }

  if (node["x-kubernetes-preserve-unknown-fields"] === true) {
    // Free-form: the API server keeps whatever is written; only the type is checked.
    delete node.additionalProperties;
    delete node.properties;
    node.type ??= "object";
    return ordered(node);
  }

  if (node.type === "integer") {
    // zod bounds every integer by the safe-integer range; Kubernetes stores int64, so these
    // bounds say nothing to a user and only clutter `kubectl explain`.
    if (node.minimum === -maxSafe) delete node.minimum;
    if (node.maximum === maxSafe) delete node.maximum;
    if (node.minimum === int32Min && node.maximum === int32Max) node.format = "int32";
    else node.format ??= "int64";
  }

  if (node.type === "string" && node.format === "date-time") {
    // The API server checks date-time itself; zod's regular expression would only repeat it.
    delete node.pattern;
  }

  if (node.properties) {
    const properties: Record<string, SchemaNode> = {};
    for (const [name, child] of Object.entries(node.properties as Record<string, SchemaNode>)) {
      properties[name] = fixNode(child, `${where}.${name}`);
    }
    node.properties = properties;
    if (isPlainObject(node.default)) node.default = withNestedDefaults(node.default, node);
    // Structural schemas prune unknown fields already; `false` here is not allowed with properties.
    if (node.additionalProperties === false) delete node.additionalProperties;
    if (Array.isArray(node.required) && node.required.length === 0) delete node.required;
  } else if (node.type === "object") {
    const values = node.additionalProperties;
    if (values === undefined || values === true || isEmptySchema(values)) {
      delete node.additionalProperties;
      node["x-kubernetes-preserve-unknown-fields"] = true;
    } else if (values !== false) {
      node.additionalProperties = fixNode(values as SchemaNode, `${where}{}`);
    }
  }

  if (node.items) {
    if (Array.isArray(node.items)) throw new Error(`${where}: tuples are not structural`);
    node.items = fixNode(node.items as SchemaNode, `${where}[]`);
  }

  if (typeof node.type !== "string") throw new Error(`${where}: every node of a CRD schema needs a type`);
  return ordered(node);
}

/**
 * One keyword order for every node (what it is, then its bounds, then its children), so the
 * committed YAML reads the same everywhere and diffs stay small.
 */
const keywordOrder = [
  "description",
  "type",
  "format",
  "nullable",
  "default",
  "enum",
  "minimum",
  "exclusiveMinimum",
  "maximum",
  "exclusiveMaximum",
  "minLength",
  "maxLength",
  "pattern",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
  "anyOf",
  "x-kubernetes-int-or-string",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
  "items",
  "additionalProperties",
  "properties",
  "required",
  "x-kubernetes-validations",
];

function ordered(node: SchemaNode): SchemaNode {
  const rank = (key: string) => {
    const index = keywordOrder.indexOf(key);
    return index === -1 ? keywordOrder.length : index;
  };
  const keys = Object.keys(node).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return Object.fromEntries(keys.map((key) => [key, node[key]]));
}

/** The exact form Kubernetes accepts for int-or-string: the bounds and pattern on the node itself. */
function intOrString(node: SchemaNode, where: Where): SchemaNode {
  const members = (node.anyOf as SchemaNode[] | undefined) ?? [];
  const integer = members.find((member) => member.type === "integer");
  const string = members.find((member) => member.type === "string");
  if (members.length !== 2 || !integer || !string) {
    throw new Error(`${where}: x-kubernetes-int-or-string needs exactly an integer and a string member`);
  }
  const out: SchemaNode = {};
  for (const [key, value] of Object.entries(node)) if (key !== "anyOf" && key !== "type") out[key] = value;
  out.anyOf = [{ type: "integer" }, { type: "string" }];
  if (typeof string.pattern === "string") out.pattern = string.pattern;
  if (typeof integer.minimum === "number" && integer.minimum !== -maxSafe) out.minimum = integer.minimum;
  if (typeof integer.maximum === "number" && integer.maximum !== maxSafe) out.maximum = integer.maximum;
  out["x-kubernetes-int-or-string"] = true;
  return ordered(out);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The default of an object with its fields' defaults filled in. The API server would fill them
 * when it applies the default, but it checks CEL rules against the default as written, so a
 * `default: {}` on an object with rules over defaulted fields would be refused.
 */
function withNestedDefaults(value: Record<string, unknown>, node: SchemaNode): Record<string, unknown> {
  const out: Record<string, unknown> = { ...value };
  for (const [name, child] of Object.entries((node.properties as Record<string, SchemaNode>) ?? {})) {
    if (out[name] === undefined && child.default !== undefined) out[name] = structuredClone(child.default);
    if (isPlainObject(out[name]) && child.properties) out[name] = withNestedDefaults(out[name], child);
  }
  return out;
}

function isEmptySchema(value: unknown): boolean {
  return typeof value === "object" && value !== null && Object.keys(value).length === 0;
}

function addRule(node: SchemaNode, rule: Omit<ValidationRule, "path">): void {
  // A copy: rules a field schema carries itself (its meta) may be one array shared by every
  // place the field appears, and this rule belongs to this node only.
  const rules = [...((node["x-kubernetes-validations"] as Array<Record<string, string>> | undefined) ?? [])];
  const entry: Record<string, string> = { rule: rule.rule, message: rule.message };
  if (rule.fieldPath) entry.fieldPath = rule.fieldPath;
  if (rule.reason) entry.reason = rule.reason;
  rules.push(entry);
  node["x-kubernetes-validations"] = rules;
}

/** The node a rule's path (`spec.sinks[].target`) addresses; throws naming the kind when absent. */
function nodeAt(root: SchemaNode, path: string, kind: string): SchemaNode {
  let node = root;
  if (path === "") return node;
  for (const segment of path.split(".")) {
    const match = /^([^[\]]+)((?:\[\])*)$/.exec(segment);
    if (!match) throw new Error(`${kind}: malformed validation path '${path}'`);
    const [, name, brackets = ""] = match;
    const child = (node.properties as Record<string, SchemaNode> | undefined)?.[name!];
    if (!child) throw new Error(`${kind}: validation path '${path}' names no field '${name}'`);
    node = child;
    for (let depth = 0; depth < brackets.length / 2; depth++) {
      const items = node.items as SchemaNode | undefined;
      if (!items) throw new Error(`${kind}: validation path '${path}': '${name}' is not an array`);
      node = items;
    }
  }
  return node;
}

/** The whole `openAPIV3Schema` of a kind: apiVersion, kind, metadata (not described), spec, status. */
export function openApiSchema(definition: ResourceDefinition): SchemaNode {
  const root: SchemaNode = {
    type: "object",
    description: definition.description,
    properties: {
      apiVersion: {
        type: "string",
        description: `Versioned schema of this representation of an object: ${definition.apiVersion}.`,
      },
      kind: { type: "string", description: `Kind of the object: ${definition.kind}.` },
      metadata: { type: "object" },
      spec: structuralSchema(definition.spec, `${definition.kind} spec`),
      status: structuralSchema(definition.status, `${definition.kind} status`),
    },
    required: ["spec"],
  };
  for (const { path, ...rule } of definition.validations) addRule(nodeAt(root, path, definition.kind), rule);
  return root;
}

/** The CustomResourceDefinition of one kind. */
export function customResourceDefinition(definition: ResourceDefinition): CustomResourceDefinition {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: `${definition.plural}.${definition.group}`,
      labels: { "app.kubernetes.io/part-of": "tributary" },
    },
    spec: {
      group: definition.group,
      names: {
        kind: definition.kind,
        listKind: definition.listKind,
        plural: definition.plural,
        singular: definition.singular,
        shortNames: definition.shortNames,
        categories: definition.categories,
      },
      scope: definition.scope,
      versions: [
        {
          name: definition.version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: definition.printerColumns.map((column) => ({ ...column })),
          schema: { openAPIV3Schema: openApiSchema(definition) },
        },
      ],
    },
  };
}

/** The CustomResourceDefinitions of all six kinds, in the order of `resources`. */
export function customResourceDefinitions(): CustomResourceDefinition[] {
  return resources.map((definition) => customResourceDefinition(definition));
}

/** `topics.tributary.dev.yaml`: the file name of a CRD in `crds/`. */
export function crdFileName(crd: CustomResourceDefinition): string {
  return `${crd.metadata.name}.yaml`;
}

/** The YAML text of a CRD as committed in `crds/`. */
export function renderCrd(crd: CustomResourceDefinition): string {
  const header = "# Generated by `npm run generate` from src/api; do not edit by hand.\n";
  return header + stringify(crd, { lineWidth: 0, aliasDuplicateObjects: false });
}
