import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { customResourceDefinitions, type SchemaNode } from "../../src/api/crds.js";
import {
  apiVersion,
  blockPoolDefinition,
  cdcStreamDefinition,
  dagDefinition,
  definitionOf,
  parseQuantity,
  parseSpec,
  resources,
  topicDefinition,
  videoCollectorDefinition,
  yarnQueueDefinition,
} from "../../src/api/index.js";

const examplesDir = join(import.meta.dirname, "..", "..", "manifests", "examples");

/** Every schema node with its path, children first visited after their parent. */
function* walk(node: SchemaNode, path: string): Generator<[string, SchemaNode]> {
  yield [path, node];
  for (const [name, child] of Object.entries((node.properties as Record<string, SchemaNode>) ?? {})) {
    yield* walk(child, `${path}.${name}`);
  }
  if (node.items) yield* walk(node.items as SchemaNode, `${path}[]`);
  if (typeof node.additionalProperties === "object")
    yield* walk(node.additionalProperties as SchemaNode, `${path}{}`);
}

/** The node at `spec.sinks[].target`-style paths, as the definitions' validation paths write them. */
function nodeAt(root: SchemaNode, path: string): SchemaNode {
  let node = root;
  for (const segment of path ? path.split(".") : []) {
    const name = segment.replace(/\[\]$/, "");
    node = (node.properties as Record<string, SchemaNode>)[name]!;
    if (segment.endsWith("[]")) node = node.items as SchemaNode;
  }
  return node;
}

function rulesAt(root: SchemaNode, path: string): string[] {
  const rules = (nodeAt(root, path)["x-kubernetes-validations"] ?? []) as Array<{ rule: string }>;
  return rules.map((entry) => entry.rule);
}

function schemaOf(kind: string): SchemaNode {
  const crd = customResourceDefinitions().find((candidate) => candidate.spec.names.kind === kind)!;
  return crd.spec.versions[0]!.schema.openAPIV3Schema;
}

describe("resource definitions", () => {
  it("declares the six kinds of tributary.dev/v1alpha1 with their short names and category", () => {
    expect(apiVersion).toBe("tributary.dev/v1alpha1");
    expect(resources.map((r) => [r.kind, r.plural, r.shortNames])).toEqual([
      ["Topic", "topics", ["tp"]],
      ["CDCStream", "cdcstreams", ["cdc"]],
      ["VideoCollector", "videocollectors", ["vc"]],
      ["BlockPool", "blockpools", ["bp"]],
      ["YarnQueue", "yarnqueues", ["yq"]],
      ["Dag", "dags", ["dag"]],
    ]);
    for (const definition of resources) {
      expect(definition.apiVersion).toBe(apiVersion);
      expect(definition.categories).toEqual(["tributary"]);
      expect(definition.singular).toBe(definition.kind.toLowerCase());
      expect(definition.listKind).toBe(`${definition.kind}List`);
      expect(definitionOf(definition.kind)).toBe(definition);
    }
    expect(() => definitionOf("KafkaTopic")).toThrow(/unknown kind 'KafkaTopic'/);
  });

  it("shows READY from the Ready condition first and AGE last in every printer column list", () => {
    for (const definition of resources) {
      const columns = definition.printerColumns;
      expect(columns[0]).toMatchObject({
        name: "Ready",
        jsonPath: '.status.conditions[?(@.type=="Ready")].status',
      });
      expect(columns.at(-1)).toMatchObject({
        name: "Age",
        type: "date",
        jsonPath: ".metadata.creationTimestamp",
      });
      expect(columns.length, `${definition.kind} shows its key figures`).toBeGreaterThanOrEqual(4);
    }
  });
});

describe("generated schemas", () => {
  it("describes every field of spec and status (kubectl explain)", () => {
    const undescribed: string[] = [];
    for (const definition of resources) {
      const root = schemaOf(definition.kind);
      for (const part of ["spec", "status"]) {
        const node = (root.properties as Record<string, SchemaNode>)[part]!;
        for (const [path, child] of walk(node, `${definition.kind}.${part}`)) {
          // Map values and list items inherit the description of the field that holds them.
          if (path.endsWith("{}") || (path.endsWith("[]") && child.type !== "object")) continue;
          if (typeof child.description !== "string" || child.description.length < 3) undescribed.push(path);
        }
      }
    }
    expect(undescribed).toEqual([]);
  });

  it("is structural: every node typed, no references, unions only as int-or-string, no additionalProperties: false", () => {
    for (const definition of resources) {
      for (const [path, node] of walk(schemaOf(definition.kind), definition.kind)) {
        expect(node.$ref, path).toBeUndefined();
        expect(node.oneOf, path).toBeUndefined();
        expect(node.allOf, path).toBeUndefined();
        expect(node.additionalProperties === false, path).toBe(false);
        if (node["x-kubernetes-int-or-string"]) {
          expect(node.anyOf, path).toEqual([{ type: "integer" }, { type: "string" }]);
          expect(node.type, path).toBeUndefined();
        } else {
          expect(node.anyOf, path).toBeUndefined();
          expect(typeof node.type, path).toBe("string");
        }
        if (node.properties) expect(node.type, path).toBe("object");
      }
    }
  });

  it("keeps podOverrides as a free-form pod template", () => {
    const overrides = nodeAt(schemaOf("Topic"), "spec.ingest.clickstream.podOverrides");
    expect(overrides).toMatchObject({ type: "object", "x-kubernetes-preserve-unknown-fields": true });
    expect(overrides.properties).toBeUndefined();
  });

  it("attaches immutability and cross-field CEL rules where the definitions say", () => {
    const topic = schemaOf("Topic");
    expect(rulesAt(topic, "spec.topicName")).toEqual(["self == oldSelf"]);
    expect(rulesAt(topic, "spec.replicationFactor")).toEqual(["self == oldSelf"]);
    expect(rulesAt(topic, "spec.partitions")).toEqual(["self >= oldSelf"]);
    expect(rulesAt(topic, "spec.sinks[].target")).toEqual(["has(self.blockPool) != has(self.volume)"]);
    expect(rulesAt(schemaOf("YarnQueue"), "")).toContain("!self.metadata.name.contains('.')");
    for (const definition of resources) {
      for (const validation of definition.validations) {
        expect(validation.message, `${definition.kind} ${validation.path}`).toMatch(/spec\.|metadata\./);
      }
    }
  });
});

describe("defaults", () => {
  it("gives a Topic 3 partitions, replication factor 3, Retain and no sinks", () => {
    const spec = topicDefinition.spec.parse({});
    expect(spec).toMatchObject({
      partitions: 3,
      replicationFactor: 3,
      config: {},
      deletionPolicy: "Retain",
      sinks: [],
      clusterOperation: { reconciliationPaused: false, stopped: false },
    });
    expect(spec.topicName).toBeUndefined();
    const withIngest = topicDefinition.spec.parse({
      ingest: { clickstream: {} },
      sinks: [{ name: "lake", format: "parquet", target: { blockPool: { blockPool: "lake", path: "/x" } } }],
    });
    expect(withIngest.ingest?.clickstream).toMatchObject({
      replicas: 2,
      port: 8080,
      serviceType: "ClusterIP",
      maxBatchEvents: 500,
      maxBodyBytes: "1Mi",
      maxBufferedBytes: "64Mi",
    });
    expect(withIngest.sinks[0]).toMatchObject({
      partitionBy: "hour",
      roll: { maxBytes: "128Mi", maxAgeSeconds: 300 },
      compression: "snappy",
      replicas: 1,
    });
  });

  it("gives a CDCStream port 5432, an initial snapshot, one connector and Delete", () => {
    const spec = cdcStreamDefinition.spec.parse({
      source: { postgres: { host: "db", database: "shop", credentialsSecret: { name: "db" } } },
      target: { topicPrefix: "shop" },
    });
    expect(spec.source.postgres).toMatchObject({
      port: 5432,
      sslMode: "prefer",
      beforeImages: true,
      tables: {},
    });
    expect(spec.snapshot).toMatchObject({
      mode: "initial",
      toTopics: true,
      timeZone: "UTC",
      fetchSize: 10240,
    });
    expect(spec.connector.replicas).toBe(1);
    expect(spec.target).toMatchObject({ partitions: 1, replicationFactor: 3, format: "json" });
    expect(spec.heartbeatIntervalSeconds).toBe(10);
    expect(spec.deletionPolicy).toBe("Delete");
  });

  it("gives a VideoCollector 1 fps JPEG frames at quality 80 and no archive", () => {
    const spec = videoCollectorDefinition.spec.parse({
      sources: [{ name: "cam", url: "rtsp://cam:554/s" }],
      topic: { name: "frames" },
    });
    expect(spec.frames).toEqual({ fps: 1, keyFramesOnly: false, codec: "jpeg", quality: 80 });
    expect(spec.maxFrameBytes).toBe(1000000);
    expect(spec.archive).toEqual({ enabled: false, segmentSeconds: 60, format: "mpegts", codec: "copy" });
    expect(spec.collector).toMatchObject({ replicas: 1, port: 8080 });
    expect(spec.deletionPolicy).toBe("Retain");
  });

  it("gives a BlockPool two name nodes, three data nodes, replication 3 and 128Mi blocks", () => {
    const spec = blockPoolDefinition.spec.parse({ erasureCoding: [{ path: "/cold", policy: "RS-6-3" }] });
    expect(spec.nameNodes).toMatchObject({ replicas: 2, storage: { size: "5Gi" } });
    expect(spec.dataNodes).toMatchObject({ replicas: 3, storage: { size: "10Gi" } });
    expect(spec).toMatchObject({ replication: 3, blockSize: "128Mi", quotas: [], webHdfs: { port: 9870 } });
    expect(spec.erasureCoding).toEqual([{ path: "/cold", policy: "RS-6-3", cellSize: "1Mi" }]);
    expect(spec.deletionPolicy).toBe("Retain");
  });

  it("gives a YarnQueue the default cluster, elastic maximum capacity and RUNNING; the root its processes", () => {
    const child = yarnQueueDefinition.spec.parse({ capacity: 40 });
    expect(child).toMatchObject({
      cluster: "default",
      capacity: 40,
      maximumCapacity: 100,
      userLimitFactor: 1,
      minimumUserLimitPercent: 100,
      maximumAMResourcePercent: 0.1,
      state: "RUNNING",
    });
    expect(child.root).toBeUndefined();
    const root = yarnQueueDefinition.spec.parse({ root: {} });
    expect(root.root).toMatchObject({
      resourceManager: { replicas: 1 },
      nodeManagers: { replicas: 2, vcores: 4, memory: "8Gi", storage: { size: "10Gi" } },
      minimumAllocation: { vcores: 1, memory: "1Gi" },
      deletionPolicy: "Delete",
      clusterOperation: { reconciliationPaused: false, stopped: false },
    });
  });

  it("gives a Dag manual runs, all_success tasks on the default queue and two workers", () => {
    const spec = dagDefinition.spec.parse({ tasks: [{ id: "a", command: ["true"] }] });
    expect(spec.schedule).toBeUndefined();
    expect(spec).toMatchObject({
      catchup: false,
      maxActiveRuns: 16,
      paused: false,
      timeZone: "UTC",
      pools: [],
    });
    expect(spec.defaultArgs).toEqual({ retries: 0, retryDelaySeconds: 300, retryExponentialBackoff: false });
    expect(spec.tasks[0]).toMatchObject({ dependsOn: [], triggerRule: "all_success", queue: "default" });
    expect(spec.workers).toMatchObject({ replicas: 2, concurrency: 4, queues: ["default"] });
    expect(spec.scheduler.replicas).toBe(1);
    expect(
      dagDefinition.spec.parse({ schedule: null, tasks: [{ id: "a", command: ["true"] }] }).schedule,
    ).toBeNull();
  });
});

describe("parsing", () => {
  it("refuses malformed specs with the field's path in the message", () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ["Topic", { partitions: 0 }, /spec\.partitions/],
      ["Topic", { partitions: "three" }, /spec\.partitions/],
      ["Topic", { sinks: [{ name: "s", format: "orc", target: {} }] }, /spec\.sinks\[0\]\.format/],
      ["BlockPool", { replication: 513 }, /spec\.replication/],
      [
        "BlockPool",
        { erasureCoding: [{ path: "relative", policy: "RS-6-3" }] },
        /spec\.erasureCoding\[0\]\.path/,
      ],
      [
        "CDCStream",
        { source: { postgres: { host: "db" } }, target: { topicPrefix: "x" } },
        /spec\.source\.postgres\.database/,
      ],
      ["Dag", { tasks: [{ id: "bad id", command: ["x"] }] }, /spec\.tasks\[0\]\.id/],
      ["Dag", { schedule: "every day", tasks: [{ id: "a", command: ["x"] }] }, /spec\.schedule/],
      ["YarnQueue", { capacity: 120 }, /spec\.capacity/],
    ];
    for (const [kind, spec, field] of cases) {
      const result = parseSpec(definitionOf(kind), { metadata: { namespace: "ns", name: "x" }, spec });
      expect(result.ok, `${kind} ${JSON.stringify(spec)}`).toBe(false);
      if (!result.ok) {
        expect(result.message).toContain(`${kind} ns/x: `);
        expect(result.message).toMatch(field);
      }
    }
  });

  it("reads Kubernetes quantities as numbers", () => {
    expect(parseQuantity("128Mi")).toBe(128 * 1024 * 1024);
    expect(parseQuantity("1k")).toBe(1000);
    expect(parseQuantity("500m")).toBe(0.5);
    expect(parseQuantity("1.5Gi")).toBe(1.5 * 2 ** 30);
    expect(parseQuantity("2e3")).toBe(2000);
    expect(parseQuantity(4096)).toBe(4096);
    expect(() => parseQuantity("12 MB")).toThrow(/not a Kubernetes quantity/);
  });

  it("accepts every example in manifests/examples", () => {
    const files = readdirSync(examplesDir).filter((file) => file.endsWith(".yaml"));
    const kinds = new Set<string>();
    for (const file of files) {
      for (const document of parseAllDocuments(readFileSync(join(examplesDir, file), "utf8"))) {
        const object = document.toJS() as {
          apiVersion: string;
          kind: string;
          metadata: { name: string };
          spec: unknown;
        };
        expect(object.apiVersion, file).toBe(apiVersion);
        const result = parseSpec(definitionOf(object.kind), object);
        expect(result.ok ? "" : result.message, file).toBe("");
        kinds.add(object.kind);
      }
    }
    expect([...kinds].sort()).toEqual(resources.map((r) => r.kind).sort());
  });
});
