/**
 * The generated CRDs judged by the real kube-apiserver: they install and become Established,
 * every example applies, and malformed resources are refused with a message naming the field.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  ApiException,
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { customResourceDefinitions } from "../../src/api/crds.js";
import { definitionOf, group, resources, version } from "../../src/api/index.js";
import { testEnv, uniqueName } from "../support/env.js";

const fieldManager = "tributary-crds-test";
const examplesDir = join(import.meta.dirname, "..", "..", "manifests", "examples");
const applyPatch = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);

// Examples are mutated freely below to build malformed variants; their spec is left untyped.
// biome-ignore lint/suspicious/noExplicitAny: see above
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; spec?: any };

let kubeConfig: KubeConfig;
let custom: CustomObjectsApi;
let extensions: ApiextensionsV1Api;
let core: CoreV1Api;
const namespace = uniqueName("crds");

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The API server's own words for a refused request: its Status message. */
function refusal(error: unknown): { code: number; message: string } {
  if (!(error instanceof ApiException)) throw error;
  const body = typeof error.body === "string" ? error.body : JSON.stringify(error.body);
  try {
    return { code: error.code, message: (JSON.parse(body) as { message: string }).message };
  } catch {
    return { code: error.code, message: body };
  }
}

/**
 * Retries `attempt` until it stops throwing. A CRD's new schema reaches the API server's
 * handlers shortly after the update is stored, so the first request after an apply may still
 * be judged by the previous schema.
 */
async function eventually<T>(attempt: () => Promise<T>, what: string): Promise<T> {
  let last: unknown;
  for (let round = 0; round < 60; round++) {
    try {
      return await attempt();
    } catch (error) {
      last = error;
      await sleep(250);
    }
  }
  throw new Error(`${what}: still failing: ${last instanceof Error ? last.message : String(last)}`);
}

function pluralOf(kind: string): string {
  return definitionOf(kind).plural;
}

function apply(object: Obj) {
  return custom.patchNamespacedCustomObject(
    {
      group,
      version,
      namespace,
      plural: pluralOf(object.kind),
      name: object.metadata.name,
      body: { ...object, metadata: { ...object.metadata, namespace } },
      fieldManager,
      fieldValidation: "Strict",
      force: true,
    },
    applyPatch,
  );
}

function createDryRun(object: Obj) {
  return custom.createNamespacedCustomObject({
    group,
    version,
    namespace,
    plural: pluralOf(object.kind),
    body: { ...object, metadata: { ...object.metadata, namespace } },
    dryRun: "All",
    fieldValidation: "Strict",
  });
}

/**
 * Asserts the API server refuses `request` with a message matching every pattern. Only an
 * acceptance is retried (the new schema may not be live yet); a refusal is judged at once.
 */
async function expectRefused(request: () => Promise<unknown>, ...patterns: RegExp[]): Promise<string> {
  const { code, message } = await eventually(
    async () => {
      try {
        await request();
      } catch (error) {
        return refusal(error);
      }
      throw new Error(`the API server accepted a request expected to fail with ${patterns.join(", ")}`);
    },
    `refusal matching ${patterns.join(", ")}`,
  );
  expect([400, 422], message).toContain(code);
  for (const pattern of patterns) expect(message).toMatch(pattern);
  return message;
}

function examples(): Obj[] {
  const objects: Obj[] = [];
  for (const file of readdirSync(examplesDir).filter((name) => name.endsWith(".yaml"))) {
    for (const document of parseAllDocuments(readFileSync(join(examplesDir, file), "utf8"))) {
      objects.push(document.toJS() as Obj);
    }
  }
  return objects;
}

function example(kind: string): Obj {
  const found = examples().find((object) => object.kind === kind);
  if (!found) throw new Error(`no example of ${kind} in manifests/examples`);
  return structuredClone(found);
}

function kubectl(...args: string[]): string {
  const env = testEnv();
  return execFileSync(env.kubectl, ["--kubeconfig", env.kubeconfig, ...args], { encoding: "utf8" });
}

beforeAll(async () => {
  kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(testEnv().kubeconfig);
  custom = kubeConfig.makeApiClient(CustomObjectsApi);
  extensions = kubeConfig.makeApiClient(ApiextensionsV1Api);
  core = kubeConfig.makeApiClient(CoreV1Api);

  for (const crd of customResourceDefinitions()) {
    await custom.patchClusterCustomObject(
      {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        name: crd.metadata.name,
        body: crd,
        fieldManager,
        force: true,
      },
      applyPatch,
    );
  }
  for (const crd of customResourceDefinitions()) {
    await eventually(async () => {
      const stored = await extensions.readCustomResourceDefinition({ name: crd.metadata.name });
      const established = stored.status?.conditions?.find((condition) => condition.type === "Established");
      if (established?.status !== "True") throw new Error(`${crd.metadata.name} is not Established yet`);
    }, `waiting for ${crd.metadata.name} to be Established`);
  }
  await core.createNamespace({ body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await core?.deleteNamespace({ name: namespace }).catch(() => undefined);
});

describe("CRDs on the API server", () => {
  it("are accepted with every kind's names, short names, category and status subresource", async () => {
    for (const definition of resources) {
      const stored = await extensions.readCustomResourceDefinition({ name: `${definition.plural}.${group}` });
      expect(stored.spec.names).toMatchObject({
        kind: definition.kind,
        plural: definition.plural,
        shortNames: definition.shortNames,
        categories: ["tributary"],
      });
      expect(stored.spec.versions[0]?.subresources?.status).toBeDefined();
      const conditions = stored.status?.conditions ?? [];
      expect(conditions.find((c) => c.type === "NamesAccepted")?.status).toBe("True");
      // A non-structural schema or a CEL rule over the cost budget shows up here.
      expect(conditions.find((c) => c.type === "NonStructuralSchema")).toBeUndefined();
    }
  });

  it("applies every example in manifests/examples", async () => {
    const objects = examples();
    expect(new Set(objects.map((object) => object.kind)).size).toBe(resources.length);
    for (const object of objects) {
      const applied = (await eventually(
        () => apply(object),
        `applying ${object.kind} ${object.metadata.name}`,
      )) as Obj;
      expect(applied.metadata.name).toBe(object.metadata.name);
    }
  });

  it("fills in the schema's defaults", async () => {
    const minimal: Obj = {
      apiVersion: `${group}/${version}`,
      kind: "Topic",
      metadata: { name: "defaults" },
      spec: {},
    };
    const stored = (await eventually(() => apply(minimal), "applying a minimal Topic")) as Obj;
    expect(stored.spec).toMatchObject({
      partitions: 3,
      replicationFactor: 3,
      deletionPolicy: "Retain",
      config: {},
      sinks: [],
      clusterOperation: { reconciliationPaused: false, stopped: false },
    });
    const pool = (await apply({
      apiVersion: `${group}/${version}`,
      kind: "BlockPool",
      metadata: { name: "defaults" },
      spec: {},
    })) as Obj;
    expect(pool.spec).toMatchObject({
      nameNodes: { replicas: 2, storage: { size: "5Gi" } },
      dataNodes: { replicas: 3, storage: { size: "10Gi" } },
      replication: 3,
      blockSize: "128Mi",
    });
  });

  it("refuses a wrong type, naming the field", async () => {
    const topic = example("Topic");
    topic.spec.partitions = "twelve";
    await expectRefused(() => createDryRun(topic), /spec\.partitions/, /integer/);

    const pool = example("BlockPool");
    pool.spec.quotas = "none";
    await expectRefused(() => createDryRun(pool), /spec\.quotas/, /must be of type array/);

    const video = example("VideoCollector");
    video.spec.archive.enabled = "yes";
    await expectRefused(() => createDryRun(video), /spec\.archive\.enabled/, /boolean/);
  });

  it("refuses a missing required field, naming it", async () => {
    const stream = example("CDCStream");
    delete stream.spec.source.postgres.database;
    await expectRefused(() => createDryRun(stream), /spec\.source\.postgres\.database/, /Required/);

    const dag = example("Dag");
    delete dag.spec.tasks;
    await expectRefused(() => createDryRun(dag), /spec\.tasks/, /Required/);
  });

  it("refuses values out of range, naming the field", async () => {
    const pool = example("BlockPool");
    pool.spec.replication = 513;
    await expectRefused(() => createDryRun(pool), /spec\.replication/, /less than or equal to 512/);

    const topic = example("Topic");
    topic.spec.partitions = 0;
    await expectRefused(() => createDryRun(topic), /spec\.partitions/, /greater than or equal to 1/);

    const queue = example("YarnQueue");
    queue.spec.root.nodeManagers.vcores = 0;
    await expectRefused(() => createDryRun(queue), /spec\.root\.nodeManagers\.vcores/);

    const video = example("VideoCollector");
    video.spec.frames.quality = 101;
    await expectRefused(() => createDryRun(video), /spec\.frames\.quality/);
  });

  it("refuses unknown fields (fieldValidation=Strict), naming them", async () => {
    const topic = example("Topic");
    topic.spec.partitionCount = 12;
    await expectRefused(() => createDryRun(topic), /unknown field "spec\.partitionCount"/);

    const dag = example("Dag");
    dag.spec.tasks[0].retry = 3;
    await expectRefused(() => createDryRun(dag), /unknown field "spec\.tasks\[0\]\.retry"/);
  });

  it("refuses a value outside an enum, naming the field and the allowed values", async () => {
    const topic = example("Topic");
    topic.spec.deletionPolicy = "Keep";
    await expectRefused(() => createDryRun(topic), /spec\.deletionPolicy/, /"Retain", "Delete"/);

    const dag = example("Dag");
    dag.spec.tasks[1].triggerRule = "all_succeeded";
    await expectRefused(() => createDryRun(dag), /spec\.tasks\[1\]\.triggerRule/, /all_success/);

    const pool = example("BlockPool");
    pool.spec.erasureCoding[0].policy = "RS-4-2";
    await expectRefused(() => createDryRun(pool), /spec\.erasureCoding\[0\]\.policy/);
  });

  it("refuses a malformed pattern, naming the field", async () => {
    const dag = example("Dag");
    dag.spec.tasks[0].id = "wait for files";
    await expectRefused(() => createDryRun(dag), /spec\.tasks\[0\]\.id/);

    const topic = example("Topic");
    topic.spec.ingest.clickstream.maxBodyBytes = "2 megabytes";
    await expectRefused(() => createDryRun(topic), /spec\.ingest\.clickstream\.maxBodyBytes/);

    // Only the schedule's shape is the API server's to check; its fields are the operator's.
    for (const schedule of ["0 0 * * * *", "* * * *", "every day"]) {
      const dagWithSchedule = example("Dag");
      dagWithSchedule.spec.schedule = schedule;
      await expectRefused(() => createDryRun(dagWithSchedule), /spec\.schedule/);
    }
  });

  it("refuses changes to immutable fields, naming the field", async () => {
    const topic = example("Topic");
    topic.metadata.name = "immutable";
    await eventually(() => apply(topic), "creating a Topic");

    await expectRefused(
      () => apply({ ...topic, spec: { ...topic.spec, replicationFactor: 2 } }),
      /spec\.replicationFactor/,
      /immutable/,
    );
    await expectRefused(
      () => apply({ ...topic, spec: { ...topic.spec, topicName: "web.clickstream.v2" } }),
      /spec\.topicName/,
      /immutable/,
    );
    await expectRefused(
      () => apply({ ...topic, spec: { ...topic.spec, partitions: 6 } }),
      /spec\.partitions/,
      /cannot decrease/,
    );
    const { topicName: _dropped, ...withoutName } = topic.spec;
    await expectRefused(
      () => apply({ ...topic, spec: withoutName }),
      /spec\.topicName/,
      /cannot be added or removed/,
    );
    // Growing partitions is allowed.
    const grown = (await apply({ ...topic, spec: { ...topic.spec, partitions: 24 } })) as Obj;
    expect(grown.spec.partitions).toBe(24);

    const stream = example("CDCStream");
    await eventually(() => apply(stream), "creating a CDCStream");
    const moved = structuredClone(stream);
    moved.spec.source.postgres.slotName = "another_slot";
    await expectRefused(() => apply(moved), /spec\.source\.postgres\.slotName/, /immutable/);
    const otherDatabase = structuredClone(stream);
    otherDatabase.spec.source.postgres.database = "shop_v2";
    await expectRefused(() => apply(otherDatabase), /spec\.source\.postgres\.database/, /immutable/);
    const renamed = structuredClone(stream);
    renamed.spec.target.topicPrefix = "shop2";
    await expectRefused(() => apply(renamed), /spec\.target\.topicPrefix/, /immutable/);

    const queue = examples().find((object) => object.kind === "YarnQueue" && object.metadata.name === "etl")!;
    await eventually(() => apply(queue), "creating a YarnQueue");
    await expectRefused(
      () => apply({ ...queue, spec: { ...queue.spec, cluster: "batch" } }),
      /spec\.cluster/,
      /immutable/,
    );
    await expectRefused(
      () => apply({ ...queue, spec: { ...queue.spec, parent: "adhoc" } }),
      /spec\.parent/,
      /immutable/,
    );
    await expectRefused(
      () => apply({ ...queue, spec: { ...queue.spec, root: {} } }),
      /spec\.root/,
      /cannot be added or removed/,
    );
  });

  it("enforces cross-field rules, naming the field", async () => {
    const topic = example("Topic");
    topic.spec.sinks[0].target.volume = { claimName: "lake" };
    await expectRefused(
      () => createDryRun(topic),
      /spec\.sinks\[0\]\.target/,
      /exactly one of blockPool or volume/,
    );

    const avro = example("Topic");
    avro.spec.sinks[1].compression = "zstd";
    await expectRefused(() => createDryRun(avro), /spec\.sinks\[1\]\.compression/);

    const insync = example("Topic");
    insync.spec.config["min.insync.replicas"] = "4";
    await expectRefused(() => createDryRun(insync), /spec\.config/, /min\.insync\.replicas/);

    const pool = example("BlockPool");
    pool.spec.dataNodes.replicas = 2;
    await expectRefused(() => createDryRun(pool), /spec\.replication/, /data nodes/);

    const dag = example("Dag");
    dag.spec.tasks[1].dependsOn = ["wait_for_file"];
    await expectRefused(() => createDryRun(dag), /spec\.tasks/, /dependsOn must name tasks of this Dag/);

    const queue = examples().find(
      (object) => object.kind === "YarnQueue" && object.metadata.name === "adhoc",
    )!;
    await expectRefused(
      () => createDryRun({ ...queue, spec: { ...queue.spec, maximumCapacity: 30 } }),
      /spec\.maximumCapacity/,
    );
    await expectRefused(
      () => createDryRun({ ...queue, metadata: { name: "ad.hoc" } }),
      /metadata\.name/,
      /must not contain '\.'/,
    );

    const video = example("VideoCollector");
    video.spec.sources[0].push = { format: "mjpeg" };
    await expectRefused(() => createDryRun(video), /spec\.sources\[0\]/, /exactly one of url or push/);
  });

  it("enforces every create-time CEL rule of every kind", async () => {
    // One malformed variant of an example per rule, each refused with that rule's message.
    type Path = Array<string | number>;
    const cases: Array<{
      kind: string;
      name?: string;
      set?: [Path, unknown];
      unset?: Path;
      refusal: RegExp;
    }> = [
      { kind: "Topic", set: [["spec", "config", "Retention.MS"], "1"], refusal: /spec\.config keys/ },
      { kind: "Topic", set: [["spec", "sinks", 1, "parquet"], {}], refusal: /parquet is only allowed/ },
      {
        kind: "CDCStream",
        set: [["spec", "source", "postgres", "tables", "exclude"], ["public.audit"]],
        refusal: /include or exclude, not both/,
      },
      {
        kind: "CDCStream",
        set: [["spec", "snapshot", "files", "volume"], { claimName: "snapshots" }],
        refusal: /spec\.snapshot\.files needs exactly one/,
      },
      { kind: "CDCStream", unset: ["spec", "snapshot", "files"], refusal: /schedule needs a destination/ },
      {
        kind: "VideoCollector",
        unset: ["spec", "archive", "blockPool"],
        refusal: /spec\.archive needs exactly one/,
      },
      { kind: "BlockPool", set: [["spec", "erasureCoding", 0, "policy"], "RS-6-3"], refusal: /RS-6-3: 9/ },
      {
        kind: "BlockPool",
        set: [["spec", "quotas", 0], { path: "/empty" }],
        refusal: /spec\.quotas\[0\]: .*needs bytes, files or both/,
      },
      { kind: "YarnQueue", name: "etl", set: [["metadata", "name"], "root"], refusal: /'root' is reserved/ },
      {
        kind: "YarnQueue",
        name: "analytics-root",
        set: [["spec", "parent"], "etl"],
        refusal: /spec\.parent must be omitted on the root queue/,
      },
      { kind: "YarnQueue", name: "etl", unset: ["spec", "capacity"], refusal: /spec\.capacity is required/ },
      {
        kind: "Dag",
        set: [["spec", "tasks", 1, "dependsOn"], ["sessions"]],
        refusal: /must not name the task itself/,
      },
      { kind: "Dag", unset: ["spec", "tasks", 3, "command"], refusal: /needs a command, an image, or both/ },
      {
        kind: "Dag",
        set: [["spec", "tasks", 1, "pool"], "lake"],
        refusal: /pool must name a pool of spec\.pools/,
      },
      {
        kind: "Dag",
        set: [["spec", "endDate"], "2025-12-31T00:00:00Z"],
        refusal: /spec\.endDate must be after spec\.startDate/,
      },
      {
        kind: "Dag",
        set: [["spec", "tasks", 1, "env", 0, "value"], "hunter2"],
        refusal: /exactly one of value or secretKeyRef/,
      },
      // Paths: a volume's subPath stays inside the volume, a BlockPool directory is one the name
      // nodes accept.
      ...["../escape", "avro/../../escape", "..", "/srv/avro"].map((subPath) => ({
        kind: "Topic",
        set: [["spec", "sinks", 1, "target", "volume", "subPath"], subPath] as [Path, unknown],
        refusal: /spec\.sinks\[1\]\.target\.volume\.subPath: .*must be a relative path inside the volume/,
      })),
      {
        kind: "Topic",
        set: [["spec", "sinks", 0, "target", "blockPool", "path"], "/lake/../etc"],
        refusal: /spec\.sinks\[0\]\.target\.blockPool\.path: .*must be an absolute path in the BlockPool/,
      },
      {
        kind: "CDCStream",
        set: [["spec", "snapshot", "files", "blockPool", "path"], "/lake/./snapshots"],
        refusal: /spec\.snapshot\.files\.blockPool\.path: .*must be an absolute path in the BlockPool/,
      },
      {
        kind: "VideoCollector",
        set: [["spec", "archive", "blockPool", "path"], "video/loading-dock"],
        refusal: /spec\.archive\.blockPool\.path: .*must be an absolute path in the BlockPool/,
      },
      ...["/lake/../archive", "/..", "/lake//archive", "/lake/archive/", "lake/archive", "/lake:archive"].map(
        (path) => ({
          kind: "BlockPool",
          set: [["spec", "erasureCoding", 0, "path"], path] as [Path, unknown],
          refusal: /spec\.erasureCoding\[0\]\.path: .*must be an absolute path in the BlockPool/,
        }),
      ),
      {
        kind: "BlockPool",
        set: [["spec", "quotas", 0, "path"], "/lake/clickstream/.."],
        refusal: /spec\.quotas\[0\]\.path: .*must be an absolute path in the BlockPool/,
      },
    ];
    for (const { kind, name, set, unset, refusal: expected } of cases) {
      const object = structuredClone(
        examples().find((o) => o.kind === kind && (name === undefined || o.metadata.name === name))!,
      );
      const path = set?.[0] ?? unset!;
      // biome-ignore lint/suspicious/noExplicitAny: walks an example by a path of keys
      const parent = path.slice(0, -1).reduce<any>((node, key) => node[key], object);
      if (set) parent[path.at(-1)!] = set[1];
      else delete parent[path.at(-1)!];
      await expectRefused(() => createDryRun(object), expected);
    }
  });

  it("accepts paths whose components only look like '.' or '..'", async () => {
    const topic = example("Topic");
    topic.metadata.name = "odd-paths";
    topic.spec.sinks[0].target.blockPool.path = "/lake/.hidden/v1..2/..raw";
    topic.spec.sinks[1].target.volume.subPath = "avro/..old/./x..";
    await eventually(() => createDryRun(topic), "a Topic with unusual but valid paths");
    const root = example("Topic");
    root.metadata.name = "root-paths";
    root.spec.sinks[0].target.blockPool.path = "/";
    root.spec.sinks[1].target.volume.subPath = "";
    await eventually(() => createDryRun(root), "a Topic writing at the roots");
  });

  it("refuses duplicate list keys (tasks by id)", async () => {
    const dag = example("Dag");
    dag.spec.tasks.push({ ...dag.spec.tasks[0] });
    await expectRefused(() => createDryRun(dag), /spec\.tasks\[5\]/, /Duplicate value/);
  });

  it("serves short names, the tributary category, printer columns and explain", async () => {
    const columns = kubectl("get", "topics", "-n", namespace).split("\n")[0];
    expect(columns).toMatch(/NAME\s+READY\s+TOPIC\s+PARTITIONS\s+RF\s+COLLECTORS\s+AGE/);
    expect(kubectl("get", "tp", "-n", namespace, "-o", "name")).toMatch(/topic\.tributary\.dev\/clickstream/);
    const all = kubectl("get", "tributary", "-n", namespace, "-o", "name");
    for (const kind of ["topic", "cdcstream", "videocollector", "blockpool", "yarnqueue", "dag"]) {
      expect(all).toContain(`${kind}.tributary.dev/`);
    }
    expect(kubectl("explain", "blockpool.spec.replication")).toMatch(/Copies of each block/);
  });

  it("takes status through the status subresource only", async () => {
    const status = {
      observedGeneration: 1,
      topicName: "web.clickstream.v1",
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "Reconciled",
          message: "",
          lastTransitionTime: "2026-01-01T00:00:00Z",
          observedGeneration: 1,
        },
      ],
    };
    const body = {
      apiVersion: `${group}/${version}`,
      kind: "Topic",
      metadata: { name: "clickstream", namespace },
      status,
    };
    await custom.patchNamespacedCustomObjectStatus(
      { group, version, namespace, plural: "topics", name: "clickstream", body, fieldManager, force: true },
      applyPatch,
    );
    const stored = (await custom.getNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: "topics",
      name: "clickstream",
    })) as Obj & { status: typeof status };
    expect(stored.status.conditions[0]?.reason).toBe("Reconciled");
    expect(kubectl("get", "tp", "clickstream", "-n", namespace)).toMatch(
      /clickstream\s+True\s+web\.clickstream\.v1/,
    );

    await expectRefused(
      () =>
        custom.patchNamespacedCustomObjectStatus(
          {
            group,
            version,
            namespace,
            plural: "topics",
            name: "clickstream",
            body: { ...body, status: { conditions: [{ ...status.conditions[0], status: "Maybe" }] } },
            fieldManager,
            force: true,
          },
          applyPatch,
        ),
      /status\.conditions\[0\]\.status/,
    );
  });
});
