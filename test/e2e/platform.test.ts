/**
 * Tributary as a user runs it: `helm install` of the chart with the image built from the
 * Dockerfile, onto a cluster with a real node (the test environment's, or the one KUBECONFIG
 * names), then resources applied with kubectl and data followed through the pods.
 *
 * Every namespace here enforces the `restricted` Pod Security Standard, so every pod the chart
 * and the controllers generate must pass it. The steps share one installation and run in order.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { waitFor } from "../integration/operator-harness.js";
import { clickEvents } from "../support/click-events.js";
import { uniqueName } from "../support/env.js";
import {
  createRestrictedNamespace,
  e2eCluster,
  helm,
  installChart,
  isReady,
  kubectl,
  kubectlJson,
  type PodSummary,
  pods,
  portForward,
  root,
  uniqueRelease,
  webHdfs,
} from "./cluster.js";

const release = uniqueRelease("tributary");
const operatorNamespace = uniqueName("e2e-operator");
const namespace = uniqueName("e2e");
const operatorSelector = `app.kubernetes.io/name=tributary,app.kubernetes.io/instance=${release}`;
/** The chart names the Lease after the release (`<fullname>-operator`). */
const leaseName = `${release}-operator`;
// Kafka topics of this run: unique, so a rerun never meets a previous run's data.
const suffix = namespace.slice(4);

/** A resource's condition, from kubectl. */
async function condition(kind: string, name: string, type: string) {
  const object = await kubectlJson<{
    status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
  }>(["get", kind, name, "-n", namespace]);
  return object.status?.conditions?.find((entry) => entry.type === type);
}

async function apply(manifest: unknown): Promise<void> {
  await kubectl(["apply", "--server-side", "-n", namespace, "-f", "-"], JSON.stringify(manifest));
}

/** What a user sees when a wait fails: the resource's conditions and its pods. */
async function describeFailure(selector: string): Promise<string> {
  const seen = await pods(namespace, selector).catch(() => [] as PodSummary[]);
  return seen
    .map(
      (pod) =>
        `${pod.metadata.name}: ${pod.status?.phase} ${JSON.stringify(pod.status?.containerStatuses?.map((c) => c.state))}`,
    )
    .join("\n");
}

async function waitReady(kind: string, name: string, selector: string, timeoutSeconds = 300): Promise<void> {
  try {
    await kubectl([
      "wait",
      "-n",
      namespace,
      `${kind}/${name}`,
      "--for=condition=Ready",
      `--timeout=${timeoutSeconds}s`,
    ]);
  } catch (error) {
    const ready = await condition(kind, name, "Ready").catch(() => undefined);
    throw new Error(
      `${kind}/${name} did not become Ready: ${JSON.stringify(ready)}\n${await describeFailure(selector)}\n${(error as Error).message}`,
    );
  }
}

/** The operator's Lease holder: the name of the leading pod. */
async function leader(): Promise<string | undefined> {
  const lease = await kubectlJson<{ spec?: { holderIdentity?: string } }>([
    "get",
    "lease",
    leaseName,
    "-n",
    operatorNamespace,
  ]).catch(() => undefined);
  return lease?.spec?.holderIdentity;
}

const podOf = (identity: string | undefined) => identity?.split("_")[0];

/** Example manifests, with requests and storage fitted to the cluster under test. */
// biome-ignore lint/suspicious/noExplicitAny: a manifest is edited field by field, as YAML is.
type Manifest = Record<string, any>;

function example(file: string): Manifest {
  return parse(readFileSync(join(root, "manifests", "examples", file), "utf8")) as Manifest;
}

const small = { requests: { cpu: "20m", memory: "64Mi" }, limits: { memory: "512Mi" } };

beforeAll(async () => {
  // The operator watches every namespace (the ClusterRole install); the resources go in one more.
  await createRestrictedNamespace(namespace);
  await installChart({ release, namespace: operatorNamespace, set: ["schemaRegistry.enabled=true"] });
}, 600_000);

afterAll(async () => {
  // Resources first, while the operator runs to release them (finalizers), then the chart.
  await kubectl(["delete", "tributary", "--all", "-n", namespace, "--wait=true", "--timeout=180s"]).catch(
    () => {},
  );
  await helm(["uninstall", release, "--namespace", operatorNamespace, "--wait"]).catch(() => {});
  await kubectl(["delete", "namespace", namespace, operatorNamespace, "--wait=false"]).catch(() => {});
}, 600_000);

describe("the operator installed with helm", () => {
  it("runs two ready replicas, one of which holds the Lease", async () => {
    const replicas = await waitFor(
      "two ready operator pods",
      async () => {
        const ready = (await pods(operatorNamespace, operatorSelector)).filter(isReady);
        return ready.length === 2 ? ready : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    );
    const holder = await waitFor("a Lease holder", leader, { timeoutMs: 60_000, intervalMs: 500 });
    // client-go style identity: <pod name>_<uuid>.
    expect(replicas.map((pod) => pod.metadata.name)).toContain(holder.split("_")[0]);
  });

  it("hands over to the other replica when the leader's pod is deleted", async () => {
    const before = await waitFor("a Lease holder", leader, { timeoutMs: 60_000, intervalMs: 500 });
    const others = (await pods(operatorNamespace, operatorSelector))
      .filter(isReady)
      .map((pod) => pod.metadata.name)
      .filter((name) => name !== podOf(before));
    expect(others).toHaveLength(1);
    const started = Date.now();
    await kubectl(["delete", "pod", podOf(before)!, "-n", operatorNamespace, "--wait=false"]);
    const after = await waitFor(
      "the standby to take the Lease",
      async () => {
        const holder = await leader();
        return holder && podOf(holder) !== podOf(before) ? holder : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    // The standby usually wins; the ReplicaSet's new pod may win the race too. Either is a hand-over.
    const replicas = (await pods(operatorNamespace, operatorSelector)).map((pod) => pod.metadata.name);
    expect(replicas).toContain(podOf(after));
    console.log(
      `leadership moved from ${before} to ${after} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  });
});

describe("the examples whose data plane exists", () => {
  it("become Ready with their pods running: the BlockPool lake and the Topic clickstream", async () => {
    const pool = example("blockpool.yaml");
    // Fitted to a small node: the default StorageClass, small volumes and requests.
    for (const role of [pool.spec.nameNodes, pool.spec.dataNodes]) {
      role.storage = { size: "1Gi" };
      role.resources = small;
    }
    pool.spec.nameNodes.sharedEdits = { size: "1Gi" };
    pool.spec.deletionPolicy = "Delete";
    await apply(pool);

    const topic = example("topic.yaml");
    // The cluster's own Kafka (the operator's default), a topic of this run, small pods.
    delete topic.spec.kafka;
    topic.spec.topicName = `e2e.${suffix}.clickstream`;
    topic.spec.deletionPolicy = "Delete";
    topic.spec.ingest.clickstream.resources = small;
    for (const sink of topic.spec.sinks) sink.resources = small;
    await apply({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "clickstream-archive" },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    await apply(topic);

    await waitReady("blockpool", "lake", "app.kubernetes.io/instance=lake", 420);
    await waitReady("topic", "clickstream", "app.kubernetes.io/instance=clickstream", 300);
    // 2 name nodes + 5 data nodes; 3 collectors + 2 + 1 sink pods, all running. Every one is
    // ready but the standby name node, which answers /readyz 503 so that the pool's Service
    // sends clients to the active one only.
    const standby = await waitFor(
      "13 running pods, all ready but the standby name node",
      async () => {
        const running = [
          ...(await pods(namespace, "app.kubernetes.io/instance=lake")),
          ...(await pods(namespace, "app.kubernetes.io/instance=clickstream")),
        ].filter((pod) => pod.status?.phase === "Running" && !pod.metadata.deletionTimestamp);
        const waiting = running.filter((pod) => !isReady(pod));
        const standbyName = (
          await kubectlJson<{ status?: { standbyNameNode?: string } }>([
            "get",
            "blockpool",
            "lake",
            "-n",
            namespace,
          ])
        ).status?.standbyNameNode;
        if (running.length === 13 && waiting.length === 1 && waiting[0]!.metadata.name === standbyName)
          return standbyName;
        throw new Error(
          `${running.length} running pods, not ready: ${waiting.map((pod) => pod.metadata.name).join(", ")}; standby ${standbyName}`,
        );
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    );
    expect(standby).toMatch(/^lake-namenode-[01]$/);
    const printed = await kubectl(["get", "tributary", "-n", namespace]);
    console.log(printed);
    expect(printed).toMatch(/lake\s+True/);
  }, 900_000);
});

/** Runs a Node.js script in a pod's container: the image's own runtime and libraries. */
async function nodeInPod(target: string, script: string, inNamespace = namespace): Promise<string> {
  return kubectl(["exec", "-n", inNamespace, target, "--", "node", "--input-type=module", "-e", script]);
}

/**
 * Asks Kafka from inside the cluster, with kafkajs in the operator's pod: Kafka advertises
 * addresses for the pods, which this process may not reach on another cluster.
 */
async function kafkaInCluster<T>(body: string): Promise<T> {
  const brokers = JSON.stringify(e2eCluster().podKafkaBrokers);
  const script = `import { Kafka, logLevel } from "kafkajs";
const admin = new Kafka({ clientId: "tributary-e2e", brokers: ${brokers}, logLevel: logLevel.NOTHING }).admin();
await admin.connect();
const result = await (async () => { ${body} })();
await admin.disconnect();
console.log(JSON.stringify(result));`;
  return JSON.parse(await nodeInPod(`deployment/${release}`, script, operatorNamespace)) as T;
}

// Lists the Parquet files under the sink's volume and the eventId of every row, with the image's
// hyparquet: the files a user's query engine would read.
const readSinkFiles = `
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parquetReadObjects } from "hyparquet";
const root = "/var/lib/tributary/sink";
const files = readdirSync(root, { recursive: true }).map(String).filter((f) => f.endsWith(".parquet"));
const ids = [];
for (const file of files) {
  const bytes = readFileSync(join(root, file));
  const rows = await parquetReadObjects({ file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), columns: ["eventId"] });
  for (const row of rows) ids.push(row.eventId);
}
console.log(JSON.stringify({ files, ids }));
`;

describe("a Topic with a clickstream collector and a Parquet sink", () => {
  const topicName = `e2e.${suffix}.clicks`;

  it("takes events over HTTP into Kafka and into Parquet files on the sink's volume, counted exactly", async () => {
    await apply({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "clicks-lake" },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    await apply({
      apiVersion: "tributary.dev/v1alpha1",
      kind: "Topic",
      metadata: { name: "clicks" },
      spec: {
        topicName,
        partitions: 3,
        replicationFactor: 3,
        config: { "min.insync.replicas": "2" },
        deletionPolicy: "Delete",
        ingest: { clickstream: { replicas: 1, resources: small } },
        sinks: [
          {
            name: "files",
            format: "parquet",
            target: { volume: { claimName: "clicks-lake" } },
            partitionBy: "hour",
            roll: { maxAgeSeconds: 5 },
            resources: small,
          },
        ],
      },
    });
    await waitReady("topic", "clicks", "app.kubernetes.io/instance=clicks");

    const events = clickEvents(1000, { seed: 7, startMs: Date.now() - 3_600_000, spanMs: 3_600_000 });
    const forward = await portForward(namespace, "service/clicks-collector", 8080);
    try {
      for (let start = 0; start < events.length; start += 250) {
        const response = await fetch(`http://127.0.0.1:${forward.port}/v1/events`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(events.slice(start, start + 250)),
        });
        const body = (await response.json()) as { accepted: number; refused: number };
        expect(response.status, JSON.stringify(body)).toBe(200);
        expect(body).toMatchObject({ accepted: 250, refused: 0 });
      }
    } finally {
      forward.close();
    }

    // Kafka: every acknowledged event is in the topic, once (an idempotent producer).
    const offsets = await kafkaInCluster<{ high: string }[]>(
      `return admin.fetchTopicOffsets(${JSON.stringify(topicName)});`,
    );
    expect(offsets.reduce((sum, partition) => sum + Number(partition.high), 0)).toBe(events.length);

    // The sink's files: every event exactly once, read inside the sink's pod.
    const written = await waitFor(
      "the sink to commit Parquet files holding every event",
      async () => {
        const listed = JSON.parse(await nodeInPod("deployment/clicks-sink-files", readSinkFiles)) as {
          files: string[];
          ids: string[];
        };
        return listed.ids.length >= events.length ? listed : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 3000 },
    );
    expect(written.files.length).toBeGreaterThan(0);
    expect(written.ids.length).toBe(events.length);
    expect(new Set(written.ids)).toEqual(new Set(events.map((event) => event.eventId)));
  }, 600_000);
});

describe("the BlockPool lake", () => {
  const cluster = () => e2eCluster();
  const upload = join(root, "package-lock.json");
  const content = () => readFileSync(upload);

  async function pool() {
    return kubectlJson<{
      status?: {
        activeNameNode?: string;
        standbyNameNode?: string;
        liveDataNodes?: number;
        underReplicatedBlocks?: number;
        missingBlocks?: number;
      };
    }>(["get", "blockpool", "lake", "-n", namespace]);
  }

  async function readBack(): Promise<Buffer> {
    const read = await webHdfs(namespace, "lake", "GET", "/e2e/package-lock.json", "op=OPEN");
    expect(read.status, read.body.toString().slice(0, 300)).toBe(200);
    return read.body;
  }

  it.skipIf(!cluster().podNetworkReachable)(
    "stores and returns a file through WebHDFS with curl",
    async () => {
      const mkdirs = await webHdfs(namespace, "lake", "PUT", "/e2e", "op=MKDIRS");
      expect(mkdirs.status, mkdirs.body.toString()).toBe(200);
      const created = await webHdfs(
        namespace,
        "lake",
        "PUT",
        "/e2e/package-lock.json",
        "op=CREATE&overwrite=true",
        upload,
      );
      expect(created.status, created.body.toString()).toBe(201);
      expect((await readBack()).equals(content())).toBe(true);
      const locations = await webHdfs(
        namespace,
        "lake",
        "GET",
        "/e2e/package-lock.json",
        "op=GETFILEBLOCKLOCATIONS",
      );
      const blocks = (
        JSON.parse(locations.body.toString()) as { BlockLocations: { BlockLocation: { hosts: string[] }[] } }
      ).BlockLocations.BlockLocation;
      expect(blocks.length).toBeGreaterThan(0);
      for (const block of blocks) expect(block.hosts).toHaveLength(3);
    },
  );

  it.skipIf(!cluster().podNetworkReachable)(
    "fails over to the standby when the active name node's pod is deleted",
    async () => {
      const before = await waitFor(
        "an active and a standby name node in status",
        async () => {
          const status = (await pool()).status;
          return status?.activeNameNode && status.standbyNameNode ? status : undefined;
        },
        { timeoutMs: 180_000, intervalMs: 1000 },
      );
      await kubectl(["delete", "pod", before.activeNameNode!, "-n", namespace, "--wait=false"]);
      const after = await waitFor(
        "the standby to become active",
        async () => {
          const status = (await pool()).status;
          return status?.activeNameNode === before.standbyNameNode ? status : undefined;
        },
        { timeoutMs: 240_000, intervalMs: 1000 },
      );
      expect(after.activeNameNode).toBe(before.standbyNameNode);
      // The pool's Service sends clients to the ready (active) name node: the new active joins it
      // once its readiness probe passes, a few seconds after it took over.
      await waitFor(
        `${after.activeNameNode} serving behind the Service lake`,
        async () => {
          const slices = await kubectlJson<{
            items: { endpoints?: { conditions?: { ready?: boolean }; targetRef?: { name?: string } }[] }[];
          }>(["get", "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=lake"]);
          return slices.items.some((slice) =>
            (slice.endpoints ?? []).some(
              (endpoint) => endpoint.targetRef?.name === after.activeNameNode && endpoint.conditions?.ready,
            ),
          );
        },
        { timeoutMs: 120_000, intervalMs: 500 },
      );
      // As a WebHDFS client with a failover policy would, read until the new active answers.
      const seen: string[] = [];
      const read = await waitFor(
        "the file read back through the new active",
        async () => {
          const answer = await webHdfs(namespace, "lake", "GET", "/e2e/package-lock.json", "op=OPEN");
          if (answer.status === 200) return answer.body;
          seen.push(`${answer.status} ${answer.body.toString().slice(0, 200)}`);
          return undefined;
        },
        { timeoutMs: 60_000, intervalMs: 1000 },
      );
      if (seen.length > 0) console.log(`reads refused while the new active took over: ${seen.join(" | ")}`);
      expect(read.equals(content())).toBe(true);
    },
  );

  it.skipIf(!cluster().podNetworkReachable)(
    "brings a deleted data node back and keeps three replicas",
    async () => {
      const victim = "lake-datanode-0";
      const old = await kubectlJson<{ metadata: { uid: string } }>(["get", "pod", victim, "-n", namespace]);
      await kubectl(["delete", "pod", victim, "-n", namespace]);
      await waitFor(
        `${victim} recreated and ready`,
        async () => {
          const [pod] = (await pods(namespace, "app.kubernetes.io/instance=lake")).filter(
            (candidate) => candidate.metadata.name === victim,
          );
          const current = await kubectlJson<{ metadata: { uid: string } }>([
            "get",
            "pod",
            victim,
            "-n",
            namespace,
          ]);
          return pod && isReady(pod) && current.metadata.uid !== old.metadata.uid;
        },
        { timeoutMs: 240_000, intervalMs: 1000 },
      );
      const status = await waitFor(
        "five live data nodes and no under-replicated block in status",
        async () => {
          const current = (await pool()).status;
          return current?.liveDataNodes === 5 && current.underReplicatedBlocks === 0 ? current : undefined;
        },
        { timeoutMs: 240_000, intervalMs: 2000 },
      );
      expect(status.missingBlocks ?? 0).toBe(0);
      expect((await readBack()).equals(content())).toBe(true);
    },
  );
});

describe("a pod that cannot work", () => {
  it("turns its resource Degraded with the pod's reason", async () => {
    await apply({
      apiVersion: "tributary.dev/v1alpha1",
      kind: "Topic",
      metadata: { name: "broken" },
      spec: {
        topicName: `e2e.${suffix}.broken`,
        partitions: 1,
        replicationFactor: 3,
        deletionPolicy: "Delete",
        ingest: {
          clickstream: {
            replicas: 1,
            resources: small,
            // An image no node holds and no registry serves: the pod can never start.
            podOverrides: { spec: { containers: [{ name: "collector", image: "tributary:no-such-tag" }] } },
          },
        },
      },
    });
    const degraded = await waitFor(
      "the Topic to turn Degraded",
      async () => {
        const found = await condition("topic", "broken", "Degraded");
        return found?.status === "True" ? found : undefined;
      },
      { timeoutMs: 240_000, intervalMs: 1000 },
    );
    expect(degraded.message).toMatch(/ErrImagePull|ImagePullBackOff/);
    expect(degraded.message).toContain("broken-collector");
    expect((await condition("topic", "broken", "Ready"))?.status).toBe("False");
    await kubectl(["delete", "topic", "broken", "-n", namespace, "--wait=true", "--timeout=120s"]);
  });
});

describe("deletion and uninstall", () => {
  it("leave no pod, claim or topic behind that deletionPolicy Delete says should go", async () => {
    await kubectl([
      "delete",
      "topic",
      "clicks",
      "clickstream",
      "-n",
      namespace,
      "--wait=true",
      "--timeout=180s",
    ]);
    await kubectl(["delete", "blockpool", "lake", "-n", namespace, "--wait=true", "--timeout=180s"]);
    await waitFor(
      "the pods and claims of the deleted resources to go",
      async () => {
        const left = await kubectlJson<{ items: { kind: string; metadata: { name: string } }[] }>([
          "get",
          "pods,persistentvolumeclaims",
          "-n",
          namespace,
          "-l",
          "app.kubernetes.io/managed-by=tributary",
        ]);
        return left.items.length === 0 ? true : undefined;
      },
      { timeoutMs: 240_000, intervalMs: 1000 },
    );
    const topics = await kafkaInCluster<string[]>("return admin.listTopics();");
    expect(topics.filter((topic) => topic.startsWith(`e2e.${suffix}.`))).toEqual([]);

    await helm(["uninstall", release, "--namespace", operatorNamespace, "--wait"]);
    await waitFor(
      "the operator's pods to go",
      async () => ((await pods(operatorNamespace, operatorSelector)).length === 0 ? true : undefined),
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
  });
});
