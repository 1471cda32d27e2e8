/**
 * Every field of the API that reaches a mount path or a file path: a volume's subPath must stay
 * inside the volume, a BlockPool directory must be a path the name nodes accept. zod refuses
 * them for the operator and a CEL rule on the same field refuses them at the API server.
 */
import { describe, expect, it } from "vitest";
import { customResourceDefinitions, type SchemaNode } from "../../src/api/crds.js";
import { definitionOf, parseSpec } from "../../src/api/index.js";

const topic = (target: Record<string, unknown>) => ({
  sinks: [{ name: "lake", format: "parquet", target }],
});
const cdcStream = (files: Record<string, unknown>) => ({
  source: { postgres: { host: "db", database: "shop", credentialsSecret: { name: "db" } } },
  target: { topicPrefix: "shop" },
  snapshot: { files },
});
const videoCollector = (archive: Record<string, unknown>) => ({
  sources: [{ name: "cam", url: "rtsp://cam:554/s" }],
  topic: { name: "frames" },
  archive: { enabled: true, ...archive },
});

/** The message of the one issue zod reports for `spec` of `kind`, with its field path. */
function refusal(kind: string, spec: unknown): string {
  const result = parseSpec(definitionOf(kind), { metadata: { namespace: "ns", name: "x" }, spec });
  expect(result.ok, `${kind} ${JSON.stringify(spec)} should be refused`).toBe(false);
  return result.ok ? "" : result.message;
}

function accepted(kind: string, spec: unknown): boolean {
  const result = parseSpec(definitionOf(kind), { metadata: { namespace: "ns", name: "x" }, spec });
  return result.ok;
}

const subPathMessage =
  "must be a relative path inside the volume, without a leading '/' or a '..' component (e.g. clickstream/avro)";
const directoryMessage =
  "must be an absolute path in the BlockPool: a leading '/', no empty, '.' or '..' component and no ':' (e.g. /lake/clickstream)";

describe("a volume's subPath", () => {
  const volume = (subPath: string) => topic({ volume: { claimName: "archive", subPath } });

  it.each(["", "avro", "clickstream/avro", "a/./b", "avro/", "..avro", "avro..", "a/..b/c", "a/b../c"])(
    "accepts %j",
    (subPath) => {
      expect(accepted("Topic", volume(subPath))).toBe(true);
    },
  );

  it.each(["..", "../escape", "a/../../escape", "a/..", "a/../b", "/etc", "/"])("refuses %j", (subPath) => {
    expect(refusal("Topic", volume(subPath))).toBe(
      `Topic ns/x: spec.sinks[0].target.volume.subPath: ${subPathMessage}`,
    );
  });
});

describe("a BlockPool directory", () => {
  const sink = (path: string) => topic({ blockPool: { blockPool: "lake", path } });

  it.each([
    "/",
    "/lake",
    "/lake/clickstream",
    "/lake/.hidden",
    "/lake/v1.2",
    "/a/..b",
    "/a/b..",
    "/a-b/c_d e",
  ])("accepts %j", (path) => {
    expect(accepted("Topic", sink(path))).toBe(true);
  });

  it.each([
    "",
    "lake",
    "lake/clickstream",
    "/lake/../etc",
    "/..",
    "/lake/..",
    "/lake/./clickstream",
    "/.",
    "//lake",
    "/lake//clickstream",
    "/lake/",
    "/lake:8020/x",
    "/lake/\u0000",
  ])("refuses %j", (path) => {
    expect(refusal("Topic", sink(path))).toBe(
      `Topic ns/x: spec.sinks[0].target.blockPool.path: ${directoryMessage}`,
    );
  });
});

describe("every path field", () => {
  it("is checked by zod where it appears, naming the field", () => {
    const cases: Array<[string, unknown, string]> = [
      [
        "Topic",
        topic({ volume: { claimName: "a", subPath: "../x" } }),
        "spec.sinks[0].target.volume.subPath",
      ],
      [
        "Topic",
        topic({ blockPool: { blockPool: "lake", path: "/a/../b" } }),
        "spec.sinks[0].target.blockPool.path",
      ],
      [
        "CDCStream",
        cdcStream({ volume: { claimName: "a", subPath: "../x" } }),
        "spec.snapshot.files.volume.subPath",
      ],
      [
        "CDCStream",
        cdcStream({ blockPool: { blockPool: "lake", path: "/a/./b" } }),
        "spec.snapshot.files.blockPool.path",
      ],
      [
        "VideoCollector",
        videoCollector({ volume: { claimName: "a", subPath: "/x" } }),
        "spec.archive.volume.subPath",
      ],
      [
        "VideoCollector",
        videoCollector({ blockPool: { blockPool: "lake", path: "video" } }),
        "spec.archive.blockPool.path",
      ],
      [
        "BlockPool",
        { erasureCoding: [{ path: "/lake/../cold", policy: "XOR-2-1" }] },
        "spec.erasureCoding[0].path",
      ],
      ["BlockPool", { quotas: [{ path: "/lake/", files: 10 }] }, "spec.quotas[0].path"],
    ];
    for (const [kind, spec, field] of cases) {
      expect(refusal(kind, spec)).toMatch(
        new RegExp(`^${kind} ns/x: ${field.replace(/[.[\]]/g, "\\$&")}: must be`),
      );
    }
  });

  it("carries its CEL rule into the CRD, in place of a pattern", () => {
    const found: string[] = [];
    const visit = (node: SchemaNode, path: string) => {
      const rules = (node["x-kubernetes-validations"] ?? []) as Array<{ rule: string; message: string }>;
      for (const { rule, message } of rules) {
        if (message === subPathMessage || message === directoryMessage) {
          found.push(`${path} ${message === subPathMessage ? "subPath" : "directory"}`);
          expect(node.pattern, path).toBeUndefined();
          expect(node.maxLength, path).toBe(4096);
          expect(rule, path).toContain(
            message === subPathMessage ? "'(^|/)[.][.](/|$)'" : "'(^|/)[.][.]?(/|$)'",
          );
        }
      }
      for (const [name, child] of Object.entries((node.properties as Record<string, SchemaNode>) ?? {})) {
        visit(child, `${path}.${name}`);
      }
      if (node.items) visit(node.items as SchemaNode, `${path}[]`);
    };
    for (const crd of customResourceDefinitions()) {
      visit(crd.spec.versions[0]!.schema.openAPIV3Schema, crd.spec.names.kind);
    }
    expect(found.sort()).toEqual(
      [
        "BlockPool.spec.erasureCoding[].path directory",
        "BlockPool.spec.quotas[].path directory",
        "CDCStream.spec.snapshot.files.blockPool.path directory",
        "CDCStream.spec.snapshot.files.volume.subPath subPath",
        "Topic.spec.sinks[].target.blockPool.path directory",
        "Topic.spec.sinks[].target.volume.subPath subPath",
        "VideoCollector.spec.archive.blockPool.path directory",
        "VideoCollector.spec.archive.volume.subPath subPath",
      ].sort(),
    );
  });
});
