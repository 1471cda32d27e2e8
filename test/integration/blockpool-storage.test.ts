/**
 * The BlockPool controller against the real kube-apiserver and a real name node with real data
 * nodes on loopback (StorageCluster): status figures from the name node's /status, a data-node
 * scale-down that decommissions before the StatefulSet shrinks, a name node out of reach that
 * holds the scale-down, and the rack table from Node zone labels.
 *
 * The operator runs in-process with `nameNodeUrl` pointing at the loopback name node instead of
 * its in-cluster DNS name. Data nodes 0-2 advertise 127.0.0.1 (clients can write through them);
 * data node 3 advertises the pod name `lake-datanode-3`, as it would in a pod, so the operator's
 * decommission set and the rack table name it. That name does not resolve here, so nothing is
 * written to it: the file is written before it starts, and its decommission has no block to copy.
 * There is no scheduler and no kubelet: the test binds pods to nodes (pods/binding, what the
 * scheduler does) and reports them running (playKubelet), and plays the kubelet's ConfigMap
 * volume update by writing the table file the name node reads.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockPoolDefinition } from "../../src/api/blockpool.js";
import { createBlockPoolController } from "../../src/controllers/blockpool/reconcile.js";
import { resourceType } from "../../src/controllers/common.js";
import { createLogger } from "../../src/log.js";
import { isNewer } from "../../src/operator/controller.js";
import { Informer } from "../../src/operator/informer.js";
import { builtin, isConflict, isNotFound, type KubeObject, objectPath } from "../../src/operator/kube.js";
import type { Operator } from "../../src/operator/operator.js";
import { uniqueName } from "../support/env.js";
import { unusedPort } from "../support/ports.js";
import {
  applyCrds,
  condition,
  createNamespace,
  deleteNamespace,
  deleteTributaryResources,
  playKubelet,
  startOperator,
  testClient,
  waitFor,
} from "./operator-harness.js";
import { type DataNodeProcess, StorageCluster } from "./storage-cluster.js";

interface PodSpec {
  volumes: { name: string; secret?: { secretName: string } }[];
  containers: { volumeMounts: { name: string; readOnly?: boolean }[] }[];
}

const client = testClient();
const namespace = uniqueName("bp-storage");
const blockPools = resourceType(blockPoolDefinition);
const zoneKey = "topology.kubernetes.io/zone";
const nodeNames = ["a", "b", "c"].map((suffix) => `${namespace}-node-${suffix}`);

/** Where the operator finds each pool's name node: `<pool>-<ordinal>` → base URL; absent, a closed port. */
const nameNodeAt = new Map<string, string>();
let closedPort: string;
let cluster: StorageCluster;
let tableDir: string;
let tableFile: string;
let operator: Operator;

interface PoolStatus {
  activeNameNode?: string;
  standbyNameNode?: string;
  liveDataNodes?: number;
  deadDataNodes?: number;
  decommissioningDataNodes?: number;
  retiringDataNodes?: string[];
  capacityBytes?: number;
  usedBytes?: number;
  files?: number;
  blocks?: number;
  underReplicatedBlocks?: number;
  missingBlocks?: number;
  erasureCodingPolicies?: string[];
  observedGeneration?: number;
}

const getPool = (name: string) => client.get(blockPools, namespace, name);
const statusOf = (pool: KubeObject) => (pool.status ?? {}) as PoolStatus;
const dataNodeReplicas = async (pool: string) =>
  ((await client.get(builtin.statefulSet, namespace, `${pool}-datanode`)).spec as { replicas: number })
    .replicas;
/** The pool's status once it reflects its latest spec. */
const current = async (name: string) => {
  const pool = await getPool(name);
  return statusOf(pool).observedGeneration === pool.metadata.generation ? pool : undefined;
};

/** A data node that advertises its pod's name, as `tributary datanode` does in a pod. */
function startPodNamedDataNode(pool: string, ordinal: number): Promise<DataNodeProcess> {
  // StorageCluster.stop() stops it with the others.
  return cluster.startDataNode(ordinal, { advertisedHost: `${pool}-datanode-${ordinal}`, rack: "/rack-b" });
}

/** The name node's own view of one data node, by the host name it advertised. */
async function nameNodeSays(hostName: string) {
  return (await cluster.status()).datanodes.find((node) => node.hostName === hostName);
}

async function events(pool: string, reason: string): Promise<KubeObject[]> {
  const list = await client.list(builtin.event, namespace);
  return list.items.filter(
    (event) => event.reason === reason && (event.regarding as { name?: string }).name === pool,
  );
}

/** How often an event was recorded: a repeat of the same note extends the first one's series. */
const occurrences = async (pool: string, reason: string) =>
  (await events(pool, reason)).reduce(
    (sum, event) => sum + ((event.series as { count?: number } | undefined)?.count ?? 1),
    0,
  );

async function reconciles(): Promise<number> {
  const metric = await operator.metrics.reconcileTotal.get();
  return metric.values
    .filter((value) => value.labels.kind === "BlockPool")
    .reduce((sum, value) => sum + value.value, 0);
}

beforeAll(async () => {
  // A port that refuses connections. (Not port 1: fetch refuses it as a bad port without connecting.)
  closedPort = `http://127.0.0.1:${await unusedPort()}`;

  // Where a pod has the ConfigMap mounted; the test writes it as the kubelet would.
  tableDir = await mkdtemp(join(tmpdir(), "tributary-topology-"));
  tableFile = join(tableDir, "topology.table");
  cluster = await StorageCluster.start({
    nameNodes: 1,
    dataNodes: 3,
    nameNodeArgs: ["--topology-table", tableFile],
  });
  // Written while every data node is reachable by its advertised address.
  await cluster.client().create("/lake/events.avro", Buffer.from("a".repeat(100_000)));
  await startPodNamedDataNode("lake", 3);
  await cluster.waitFor(async () => (await cluster.status()).liveDataNodes === 4, "four live data nodes");
  nameNodeAt.set("lake-0", `http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}`);

  await applyCrds(client);
  await createNamespace(client, namespace);
  // The pool's cluster secret as the operator would have created it: the name node on loopback
  // already runs with these bytes, and the operator, which creates it only when absent, signs
  // its decommission calls with them.
  await client.create(builtin.secret, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "lake-cluster-secret", namespace },
    data: { secret: cluster.secret!.toString("base64") },
  } as KubeObject);
  operator = await startOperator("blockpool-storage-test", namespace, [
    createBlockPoolController({
      nameNodeUrl: (pool, _namespace, ordinal) => nameNodeAt.get(`${pool}-${ordinal}`) ?? closedPort,
      requestTimeoutMs: 1_000,
      refreshMs: 1_000,
      // Long enough for the test to see the held StatefulSet between two looks at the decommission.
      decommissionPollMs: 2_500,
    }),
  ]);
});

afterAll(async () => {
  await deleteTributaryResources(client, namespace);
  await operator?.stop();
  // Pods bound to a node wait for its kubelet to confirm their end; there is none: end them now.
  const pods = await client.list(builtin.pod, namespace).catch(() => ({ items: [] as KubeObject[] }));
  for (const pod of pods.items) {
    await client
      .request("DELETE", objectPath(builtin.pod, namespace, pod.metadata.name), {
        body: { kind: "DeleteOptions", apiVersion: "v1", gracePeriodSeconds: 0 },
      })
      .catch(() => undefined);
  }
  await deleteNamespace(client, namespace);
  for (const name of nodeNames) await client.delete(builtin.node, undefined, name);
  await cluster?.stop();
  await rm(tableDir, { recursive: true, force: true });
  client.close();
});

describe("BlockPool status from its name node", () => {
  it("fills liveDataNodes, the active name node, files, blocks and capacity from /status; Ready says Serving", async () => {
    await client.create(blockPools, {
      apiVersion: blockPoolDefinition.apiVersion,
      kind: "BlockPool",
      metadata: { name: "lake", namespace },
      spec: {
        nameNodes: { replicas: 1 },
        dataNodes: { replicas: 4 },
        replication: 3,
        rackAwareness: { topologyKey: zoneKey },
      },
    });
    const pool = await waitFor("status from the name node", async () => {
      const stored = await current("lake");
      const status = stored ? statusOf(stored) : undefined;
      return status?.activeNameNode && status.liveDataNodes === 4 && (status.usedBytes ?? 0) > 0
        ? stored
        : undefined;
    });
    const status = statusOf(pool);
    const truth = await cluster.status();
    expect(status).toMatchObject({
      activeNameNode: "lake-namenode-0",
      liveDataNodes: 4,
      deadDataNodes: 0,
      decommissioningDataNodes: 0,
      // "/", "/lake" and the file.
      files: 3,
      blocks: 1,
      missingBlocks: 0,
      erasureCodingPolicies: [],
    });
    expect(status.standbyNameNode).toBeUndefined();
    expect(status.capacityBytes).toBeGreaterThan(0);
    expect(status.capacityBytes).toBe(truth.capacity);
    expect(condition(pool, "Ready")).toMatchObject({ status: "True" });
    expect(condition(pool, "Ready")?.message).toMatch(
      /^active name node lake-namenode-0, 4 live data nodes, 3 files and directories, 1 block/,
    );
    expect(condition(pool, "Degraded")?.status).toBe("False");

    // The cluster secret is kept, not replaced, and both roles mount it read-only.
    const secret = (await client.get(builtin.secret, namespace, "lake-cluster-secret")) as KubeObject & {
      data: Record<string, string>;
    };
    expect(Buffer.from(secret.data.secret!, "base64").equals(cluster.secret!)).toBe(true);
    for (const name of ["lake-namenode", "lake-datanode"]) {
      const statefulSet = await client.get(builtin.statefulSet, namespace, name);
      const pod = (statefulSet.spec as { template: { spec: PodSpec } }).template.spec;
      expect(pod.volumes).toContainEqual(
        expect.objectContaining({
          name: "cluster-secret",
          secret: expect.objectContaining({ secretName: "lake-cluster-secret" }),
        }),
      );
      expect(pod.containers[0]!.volumeMounts).toContainEqual(
        expect.objectContaining({ name: "cluster-secret", readOnly: true }),
      );
    }

    // The kubelet's part: with the pods running, nothing is left in progress.
    const settled = await waitFor(
      "rollout settled",
      async () => {
        await playKubelet(client, namespace, "app.kubernetes.io/instance=lake");
        const stored = await current("lake");
        return stored && condition(stored, "Progressing")?.status === "False" ? stored : undefined;
      },
      { intervalMs: 500 },
    );
    expect(condition(settled, "Ready")?.status).toBe("True");
  });
});

describe("BlockPool data-node scale-down", () => {
  it("decommissions lake-datanode-3 while the StatefulSet stays at 4, then shrinks it to 3", async () => {
    // Every version of the pool and of its data-node StatefulSet, in the API server's order.
    const versions: KubeObject[] = [];
    const watches = [builtin.statefulSet, blockPools].map((type) => {
      const informer = new Informer(client, type, { namespace, log: createLogger("scale-down-watch") });
      informer.on((_event, object) => {
        if (["lake-datanode", "lake"].includes(object.metadata.name!)) versions.push(object);
      });
      informer.start();
      return informer;
    });
    await Promise.all(watches.map((informer) => informer.synced));
    try {
      await client.mergePatch(blockPools, namespace, "lake", { spec: { dataNodes: { replicas: 3 } } });
      await waitFor("the StatefulSet at 3", async () => (await dataNodeReplicas("lake")) === 3);
      const shrunk = await waitFor("the watch to see the StatefulSet at 3", async () =>
        versions.find(
          (version) =>
            version.kind === "StatefulSet" && (version.spec as { replicas: number }).replicas === 3,
        ),
      );
      // The operator said it was decommissioning the node while the StatefulSet still had it.
      const waiting = versions.find(
        (version) =>
          version.kind === "BlockPool" && condition(version, "Progressing")?.reason === "Decommissioning",
      );
      expect(waiting).toBeDefined();
      expect(isNewer(shrunk, waiting!)).toBe(true);
      expectDecommissioning(waiting!);
    } finally {
      await Promise.all(watches.map((informer) => informer.stop()));
    }
    // The name node had finished before the pod was removed.
    expect((await nameNodeSays("lake-datanode-3"))?.adminState).toBe("DECOMMISSIONED");
    const done = await waitFor("the scale-down reported done", async () => {
      const stored = await current("lake");
      return stored && condition(stored, "Progressing")?.reason !== "Decommissioning" ? stored : undefined;
    });
    expect(statusOf(done).retiringDataNodes).toBeUndefined();
    expect(await occurrences("lake", "Decommissioning")).toBe(1);
    const finished = await events("lake", "Decommissioned");
    expect(finished).toHaveLength(1);
    expect(finished[0]!.note).toBe("lake-datanode-3 decommissioned: scaling data nodes from 4 to 3");
  });

  /** What the status says while the operator waits for the name node. */
  function expectDecommissioning(waiting: KubeObject): void {
    expect(statusOf(waiting).retiringDataNodes).toEqual(["lake-datanode-3"]);
    expect(condition(waiting, "Progressing")).toMatchObject({ status: "True" });
    expect(condition(waiting, "Progressing")?.message).toMatch(
      /^decommissioning before scaling data nodes from 4 to 3: 0\/1 done \(lake-datanode-3 DECOMMISSION_INPROGRESS\)/,
    );
    expect(condition(waiting, "Ready")?.status).toBe("True");
  }

  it("scaling back up puts the node back in service", async () => {
    await client.mergePatch(blockPools, namespace, "lake", { spec: { dataNodes: { replicas: 4 } } });
    await waitFor("the StatefulSet at 4", async () => (await dataNodeReplicas("lake")) === 4);
    await waitFor(
      "lake-datanode-3 recommissioned",
      async () => (await nameNodeSays("lake-datanode-3"))?.adminState === "NORMAL",
    );
  });

  it("holds the StatefulSet while the name node cannot be reached, says why, and shrinks once it can", async () => {
    await playKubelet(client, namespace, "app.kubernetes.io/instance=lake");
    nameNodeAt.delete("lake-0");
    const fallback = await waitFor("health from the StatefulSets alone", async () => {
      const stored = await getPool("lake");
      return condition(stored, "Ready")?.message.includes("name nodes not reachable from the operator")
        ? stored
        : undefined;
    });
    expect(condition(fallback, "Ready")?.message).toContain("ECONNREFUSED");
    expect(statusOf(fallback).activeNameNode).toBeUndefined();

    await client.mergePatch(blockPools, namespace, "lake", { spec: { dataNodes: { replicas: 3 } } });
    const blocked = await waitFor("Progressing NameNodeUnreachable", async () => {
      const stored = await current("lake");
      return stored && condition(stored, "Progressing")?.reason === "NameNodeUnreachable"
        ? stored
        : undefined;
    });
    const message = condition(blocked, "Progressing")!.message;
    expect(message).toMatch(
      /^data nodes stay at 4 \(spec.dataNodes.replicas is 3\): lake-datanode-3 must be decommissioned first/,
    );
    expect(message).toContain("ECONNREFUSED");
    expect(statusOf(blocked).retiringDataNodes).toEqual(["lake-datanode-3"]);
    // Several more looks at it, and still no shrink.
    const seen = await reconciles();
    await waitFor("three more reconciles", async () => (await reconciles()) >= seen + 3, {
      timeoutMs: 30_000,
    });
    expect(await dataNodeReplicas("lake")).toBe(4);
    expect(condition(await getPool("lake"), "Progressing")?.reason).toBe("NameNodeUnreachable");

    nameNodeAt.set("lake-0", `http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}`);
    await waitFor(
      "the StatefulSet at 3 once the name node answers",
      async () => (await dataNodeReplicas("lake")) === 3,
    );
    expect((await nameNodeSays("lake-datanode-3"))?.adminState).toBe("DECOMMISSIONED");
  });
});

describe("BlockPool rack topology from node zone labels", () => {
  it("lists each scheduled data-node pod with its node's zone, follows relabels, and the name node reads it", async () => {
    // Four data-node pods again (lake-datanode-3 back in service).
    await client.mergePatch(blockPools, namespace, "lake", { spec: { dataNodes: { replicas: 4 } } });
    // The StatefulSet controller may still be carrying out the scale-down to 3 when the spec says
    // 4 again: it can delete lake-datanode-3 and create it anew. Wait until it has acted on the
    // latest spec and the four pods are there.
    await waitFor("the data-node StatefulSet settled at four pods", async () => {
      const set = await client.get(builtin.statefulSet, namespace, "lake-datanode");
      const status = set.status as { observedGeneration?: number; replicas?: number } | undefined;
      if (status?.observedGeneration !== set.metadata.generation || status?.replicas !== 4) return false;
      const pods = await client.list(builtin.pod, namespace, {
        labelSelector: "app.kubernetes.io/instance=lake,app.kubernetes.io/component=datanode",
      });
      return pods.items.filter((pod) => !pod.metadata.deletionTimestamp).length === 4;
    });
    for (const [index, name] of nodeNames.entries()) {
      await client.create(builtin.node, {
        apiVersion: "v1",
        kind: "Node",
        // The last node has no zone: its pods are on /default-rack.
        metadata: { name, labels: index < 2 ? { [zoneKey]: `zone-${"ab"[index]}` } : {} },
      });
    }
    const nameNodes = await client.get(builtin.statefulSet, namespace, "lake-namenode");
    const podSpec = (
      nameNodes.spec as {
        template: {
          spec: {
            volumes: { name: string; configMap?: { name: string } }[];
            containers: { env: { name: string; value?: string }[]; volumeMounts: { mountPath: string }[] }[];
          };
        };
      }
    ).template.spec;
    expect(podSpec.volumes).toContainEqual({
      name: "topology",
      configMap: expect.objectContaining({ name: "lake-topology" }),
    });
    expect(podSpec.containers[0]!.env).toContainEqual({
      name: "TRIBUTARY_TOPOLOGY_TABLE",
      value: "/etc/tributary/topology/topology.table",
    });

    // No scheduler runs: bind the StatefulSet's pods the way it would.
    const placement = { 0: nodeNames[0]!, 1: nodeNames[1]!, 2: nodeNames[2]!, 3: nodeNames[0]! };
    for (const [ordinal, node] of Object.entries(placement)) {
      const pod = `lake-datanode-${ordinal}`;
      // As a scheduler does, bind the pod that exists now; one replaced meanwhile is bound anew.
      await waitFor(`${pod} bound to ${node}`, async () => {
        const found = await client.find(builtin.pod, namespace, pod);
        if (!found || found.metadata.deletionTimestamp) return false;
        if ((found.spec as { nodeName?: string }).nodeName === node) return true;
        try {
          await client.request("POST", `${objectPath(builtin.pod, namespace, pod)}/binding`, {
            body: {
              apiVersion: "v1",
              kind: "Binding",
              metadata: { name: pod, namespace, uid: found.metadata.uid },
              target: { apiVersion: "v1", kind: "Node", name: node },
            },
          });
          return true;
        } catch (error) {
          if (isNotFound(error) || isConflict(error)) return false;
          throw error;
        }
      });
    }
    const tableOf = async () =>
      (
        (await client.find(builtin.configMap, namespace, "lake-topology"))?.data as
          | Record<string, string>
          | undefined
      )?.["topology.table"];
    const table = await waitFor("the rack table", async () => {
      const text = await tableOf();
      return text?.split("\n").filter(Boolean).length === 4 ? text : undefined;
    });
    expect(table).toBe(
      "lake-datanode-0 /zone-a\nlake-datanode-1 /zone-b\nlake-datanode-2 /default-rack\nlake-datanode-3 /zone-a\n",
    );

    // A node's zone label changes: every pod on it moves.
    await client.mergePatch(builtin.node, undefined, nodeNames[0]!, {
      metadata: { labels: { [zoneKey]: "zone-c" } },
    });
    const relabelled = await waitFor("the table after a relabel", async () => {
      const text = await tableOf();
      return text?.includes("lake-datanode-3 /zone-c") ? text : undefined;
    });
    expect(relabelled).toBe(
      "lake-datanode-0 /zone-c\nlake-datanode-1 /zone-b\nlake-datanode-2 /default-rack\nlake-datanode-3 /zone-c\n",
    );

    // The kubelet's part: the mounted file follows the ConfigMap. The name node re-reads it and
    // places the data node that advertises its pod name on the pod's rack.
    await writeFile(tableFile, relabelled);
    await waitFor("the name node to place lake-datanode-3 in zone-c", async () => {
      const node = (await cluster.status()).datanodes as { hostName: string; networkLocation?: string }[];
      return node.find((entry) => entry.hostName === "lake-datanode-3")?.networkLocation === "/zone-c";
    });
    expect(await readFile(tableFile, "utf8")).toBe(relabelled);
  });
});

describe("BlockPool stopped", () => {
  it("is not a scale-down: every role goes to 0 at once, nothing decommissioned", async () => {
    await waitFor(
      "lake-datanode-3 in service",
      async () => (await nameNodeSays("lake-datanode-3"))?.adminState === "NORMAL",
    );
    const before = await occurrences("lake", "Decommissioning");
    await client.mergePatch(blockPools, namespace, "lake", { spec: { clusterOperation: { stopped: true } } });
    await waitFor("stopped", async () => {
      const [nameNodes, dataNodes] = await Promise.all([
        client.get(builtin.statefulSet, namespace, "lake-namenode"),
        dataNodeReplicas("lake"),
      ]);
      return (nameNodes.spec as { replicas: number }).replicas === 0 && dataNodes === 0;
    });
    expect(await occurrences("lake", "Decommissioning")).toBe(before);
    expect((await cluster.status()).datanodes.map((node) => node.adminState)).toEqual([
      "NORMAL",
      "NORMAL",
      "NORMAL",
      "NORMAL",
    ]);
  });
});
