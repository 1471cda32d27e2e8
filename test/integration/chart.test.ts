/**
 * The Helm chart against the real kube-apiserver: the rendered objects apply (dry-run first),
 * the operator pods pass the "restricted" Pod Security Standard, and the chart's ServiceAccount,
 * authenticated by a token the API server issues for it, can do the operator's job and nothing
 * else. Last, the operator itself runs with that token and reconciles a BlockPool.
 *
 * Each scenario installs into its own release namespace, removed at the end. The CRDs are
 * cluster-scoped and shared with other test files: they are server-side applied, never deleted.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CoreV1Api,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadYaml,
  PatchStrategy,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import {
  ApiError,
  builtin,
  collectionPath,
  KubeClient,
  type KubeObject,
  type ResourceType,
} from "../../src/operator/kube.js";
import { offNodeNamespaceAnnotations, testEnv, uniqueName } from "../support/env.js";

const root = join(import.meta.dirname, "..", "..");
const chart = join(root, "charts", "tributary");
const fieldManager = "tributary-chart-tests";

const blockPool: ResourceType = {
  group: "tributary.dev",
  version: "v1alpha1",
  kind: "BlockPool",
  plural: "blockpools",
};
const node: ResourceType = { group: "", version: "v1", kind: "Node", plural: "nodes", namespaced: false };
const clusterRole: ResourceType = {
  group: "rbac.authorization.k8s.io",
  version: "v1",
  kind: "ClusterRole",
  plural: "clusterroles",
  namespaced: false,
};
const roleBinding: ResourceType = {
  group: "rbac.authorization.k8s.io",
  version: "v1",
  kind: "RoleBinding",
  plural: "rolebindings",
};

interface Manifest extends KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

/** The API server's version, which `helm install` would render for. */
let kubeVersion: string;

/**
 * Parses manifests into client-node's typed models. KubernetesObjectApi serializes a known kind
 * through its model, which reads model property names: a plain object's `x-kubernetes-*` or
 * `default` keys (JSON names) would be dropped silently, leaving a CRD the API server refuses.
 */
function loadManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .filter((document) => document.contents !== null)
    .map((document) => loadYaml<Manifest>(document.toString()));
}

/** `helm template` of the chart into objects, as `helm install` would create them. */
function renderChart(release: string, namespace: string, set: string[] = []): Manifest[] {
  const args = ["template", release, chart, "--namespace", namespace, "--kube-version", kubeVersion];
  for (const value of set) args.push("--set", value);
  const result = spawnSync(testEnv().helm, args, { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`helm template ${set.join(" ")} failed: ${result.stderr}`);
  return loadManifests(result.stdout);
}

async function serverSideApply(api: KubernetesObjectApi, objects: Manifest[], dryRun?: "All"): Promise<void> {
  for (const object of objects) {
    try {
      await api.patch(object, undefined, dryRun, fieldManager, true, PatchStrategy.ServerSideApply);
    } catch (error) {
      throw new Error(
        `applying ${object.kind} ${object.metadata.namespace ?? ""}/${object.metadata.name}${dryRun ? " (dry run)" : ""}: ${String(error)}`,
      );
    }
  }
}

/** Thrown by a check to end a wait at once: waiting longer cannot help. */
class StopWaiting extends Error {}

/** Polls until `check` answers something truthy; a timeout reports the last answer or error. */
async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | null | false>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (error) {
      if (error instanceof StopWaiting) throw error;
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what}; last seen: ${last instanceof Error ? last.message : JSON.stringify(last)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** A kubeconfig for the same API server that authenticates with a bearer token only. */
function tokenConfig(admin: KubeConfig, token: string): KubeConfig {
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error("the test environment's kubeconfig has no current cluster");
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [cluster],
    users: [{ name: "tributary-operator", token }],
    contexts: [{ name: "tributary-operator", cluster: cluster.name, user: "tributary-operator" }],
    currentContext: "tributary-operator",
  });
  return config;
}

/** Asks the API server (TokenRequest) for a token of the ServiceAccount, as the kubelet does for a pod. */
async function serviceAccountToken(admin: KubeConfig, namespace: string, name: string): Promise<string> {
  const core = admin.makeApiClient(CoreV1Api);
  const request = await core.createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const token = request.status?.token;
  if (!token) throw new Error(`no token issued for ServiceAccount ${namespace}/${name}`);
  return token;
}

async function expectForbidden(what: string, attempt: () => Promise<unknown>): Promise<void> {
  const outcome = await attempt().then(
    () => "allowed",
    (error: unknown) => error,
  );
  expect(outcome, `${what}: expected 403 Forbidden`).toBeInstanceOf(ApiError);
  expect((outcome as ApiError).statusCode, `${what}: ${(outcome as ApiError).message}`).toBe(403);
}

/** POST with dryRun=All: the authorizer judges the request, nothing is stored. */
function dryRunCreate(client: KubeClient, type: ResourceType, object: KubeObject) {
  return client.request("POST", collectionPath(type, object.metadata.namespace), {
    body: object,
    query: { dryRun: "All" },
  });
}

const labelsOf = (object: KubeObject | undefined) => object?.metadata.labels ?? {};

let admin: KubeConfig;
let adminClient: KubeClient;
let adminObjects: KubernetesObjectApi;

beforeAll(async () => {
  admin = new KubeConfig();
  admin.loadFromFile(testEnv().kubeconfig);
  adminClient = new KubeClient(admin);
  adminObjects = KubernetesObjectApi.makeApiClient(admin);
  kubeVersion = (await adminClient.request<{ gitVersion: string }>("GET", "/version")).gitVersion;
  // Helm installs a chart's crds/ before its templates; so does this test, with server-side
  // apply, since other test files apply the same CRDs.
  const crds = readdirSync(join(chart, "crds"))
    .filter((file) => file.endsWith(".yaml"))
    .flatMap((file) => loadManifests(readFileSync(join(chart, "crds", file), "utf8")));
  expect(crds.length).toBeGreaterThan(0);
  await serverSideApply(adminObjects, crds);
  for (const crd of crds) {
    await waitFor(`CRD ${crd.metadata.name} established`, async () => {
      const stored = await adminClient.get(builtin.customResourceDefinition, undefined, crd.metadata.name);
      const conditions = (stored.status as { conditions?: { type: string; status: string }[] }).conditions;
      return conditions?.some((condition) => condition.type === "Established" && condition.status === "True");
    });
  }
});

afterAll(() => {
  adminClient?.close();
});

/** Removes finalizers left on BlockPools so that deleting their namespace cannot hang. */
async function releaseBlockPools(namespace: string): Promise<void> {
  const pools = await adminClient.list(blockPool, namespace).catch(() => ({ items: [] as KubeObject[] }));
  for (const pool of pools.items) {
    await adminClient
      .mergePatch(blockPool, namespace, pool.metadata.name, { metadata: { finalizers: null } })
      .catch(() => undefined);
  }
}

/** SIGTERM, then SIGKILL if the process has not exited within 15 s; resolves once it has exited. */
async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

async function createNamespace(name: string, labels: Record<string, string> = {}): Promise<void> {
  await adminClient.create(builtin.namespace, {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name, labels, annotations: offNodeNamespaceAnnotations },
  });
}

describe("the chart, watching one namespace", () => {
  const release = "tributary";
  const releaseNamespace = uniqueName("chart-release");
  const watched = uniqueName("chart-watched");
  const elsewhere = uniqueName("chart-elsewhere");
  const leaseName = "tributary-operator";
  const work = mkdtempSync(join(tmpdir(), "tributary-chart-"));
  let objects: Manifest[];
  let operatorConfig: KubeConfig;
  let operatorClient: KubeClient;
  let operatorProcess: ChildProcess | undefined;

  beforeAll(async () => {
    // The namespace enforces the "restricted" Pod Security Standard: the operator pods must meet it.
    await createNamespace(releaseNamespace, { "pod-security.kubernetes.io/enforce": "restricted" });
    await createNamespace(watched);
    await createNamespace(elsewhere);
    objects = renderChart(release, releaseNamespace, [`watchNamespaces={${watched}}`]);
  });

  afterAll(async () => {
    // A test that failed midway leaves the operator running: stop it, and only once it is gone
    // release the finalizers it put on BlockPools, or it could put them back meanwhile.
    await stopProcess(operatorProcess);
    operatorClient?.close();
    for (const object of objects ?? []) {
      if (object.kind === "ClusterRole" || object.kind === "ClusterRoleBinding") {
        await adminObjects.delete(object).catch(() => undefined);
      }
    }
    for (const namespace of [watched, elsewhere, releaseNamespace]) {
      await releaseBlockPools(namespace);
      await adminClient.delete(builtin.namespace, undefined, namespace);
    }
    rmSync(work, { recursive: true, force: true });
  });

  it("applies with dry-run=All, then for real, and its operator pods pass the restricted policy", async () => {
    const kinds = objects.map((object) => `${object.kind}/${object.metadata.namespace}`);
    // Watching one namespace, the chart asks for one thing cluster-wide: reading nodes (their
    // zones are BlockPool racks).
    expect(
      objects.filter((object) => object.kind.startsWith("Cluster")).map((object) => object.kind),
    ).toEqual(["ClusterRole", "ClusterRoleBinding"]);
    expect(kinds).toEqual(
      expect.arrayContaining([
        `ServiceAccount/${releaseNamespace}`,
        `Role/${watched}`,
        `RoleBinding/${watched}`,
        `Role/${releaseNamespace}`,
        `Deployment/${releaseNamespace}`,
        `Service/${releaseNamespace}`,
        `PodDisruptionBudget/${releaseNamespace}`,
      ]),
    );
    await serverSideApply(adminObjects, objects, "All");
    const deployment = await adminClient.find(builtin.deployment, releaseNamespace, release);
    expect(deployment, "a dry run stores nothing").toBeUndefined();

    await serverSideApply(adminObjects, objects);
    for (const object of objects) {
      const stored = await adminObjects.read({
        apiVersion: object.apiVersion,
        kind: object.kind,
        metadata: { name: object.metadata.name, namespace: object.metadata.namespace },
      });
      expect(stored.metadata?.labels?.["app.kubernetes.io/instance"]).toBe(release);
    }
    // Applying again changes nothing: the chart's output is stable under server-side apply.
    await serverSideApply(adminObjects, objects);

    // The ReplicaSet controller creates the pods only if Pod Security admission lets them in.
    const pods = await waitFor("the two operator pods", async () => {
      const list = await adminClient.list(builtin.pod, releaseNamespace, {
        labelSelector: "app.kubernetes.io/component=operator,app.kubernetes.io/instance=tributary",
      });
      return list.items.length === 2 ? list.items : undefined;
    });
    for (const pod of pods) {
      expect((pod.spec as { serviceAccountName: string }).serviceAccountName).toBe("tributary");
    }
  });

  it("its ServiceAccount token does the operator's job in the watched namespace", async () => {
    const token = await serviceAccountToken(admin, releaseNamespace, "tributary");
    operatorConfig = tokenConfig(admin, token);
    operatorClient = new KubeClient(operatorConfig);
    const asOperator = KubernetesObjectApi.makeApiClient(operatorConfig);

    // Read the custom resources, cluster-scoped nowhere: in the watched namespace.
    await adminClient.create(blockPool, {
      apiVersion: "tributary.dev/v1alpha1",
      kind: "BlockPool",
      metadata: { name: "by-hand", namespace: watched },
      spec: {},
    });
    const pool = await operatorClient.get(blockPool, watched, "by-hand");
    expect((await operatorClient.list(blockPool, watched)).items).toHaveLength(1);

    // The children a BlockPool has, created and then changed with server-side apply.
    const labels = { "app.kubernetes.io/managed-by": "tributary", "app.kubernetes.io/name": "chart-check" };
    const selector = { matchLabels: labels };
    const podTemplate = {
      metadata: { labels },
      spec: { containers: [{ name: "main", image: "tributary:test", args: ["--help"] }] },
    };
    const children = (generation: string): Manifest[] => [
      {
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: "chart-check", namespace: watched, labels: { ...labels, generation } },
        spec: { clusterIP: "None", selector: labels, ports: [{ name: "rpc", port: 8020 }] },
      },
      {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "chart-check", namespace: watched, labels },
        data: { generation },
      },
      {
        apiVersion: "apps/v1",
        kind: "StatefulSet",
        metadata: { name: "chart-check", namespace: watched, labels: { ...labels, generation } },
        spec: { serviceName: "chart-check", replicas: 0, selector, template: podTemplate },
      },
      {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "chart-check", namespace: watched, labels: { ...labels, generation } },
        spec: { replicas: 0, selector, template: podTemplate },
      },
      {
        apiVersion: "policy/v1",
        kind: "PodDisruptionBudget",
        metadata: { name: "chart-check", namespace: watched, labels: { ...labels, generation } },
        spec: { maxUnavailable: 1, selector },
      },
    ];
    await serverSideApply(asOperator, children("1"));
    await serverSideApply(asOperator, children("2"));
    expect(labelsOf(await operatorClient.get(builtin.statefulSet, watched, "chart-check")).generation).toBe(
      "2",
    );
    expect(
      labelsOf(await operatorClient.get(builtin.podDisruptionBudget, watched, "chart-check")).generation,
    ).toBe("2");
    // What the StatefulSet and Deployment controllers make, read only; credentials by name only
    // (an absent Secret answers 404, not 403).
    await operatorClient.list(builtin.pod, watched);
    await operatorClient.list(builtin.node);
    await operatorClient.list(builtin.persistentVolumeClaim, watched);
    expect(await operatorClient.find(builtin.secret, watched, "chart-check-absent")).toBeUndefined();

    // Pruning: a child the spec no longer asks for is deleted, of each kind that is pruned.
    for (const child of children("2")) {
      const type = [
        builtin.service,
        builtin.configMap,
        builtin.statefulSet,
        builtin.deployment,
        builtin.podDisruptionBudget,
      ].find((candidate) => candidate.kind === child.kind)!;
      await operatorClient.delete(type, watched, child.metadata.name);
      expect(await adminClient.find(type, watched, child.metadata.name), child.kind).toBeUndefined();
    }

    // The finalizer dance (a merge patch of metadata) and the status subresource.
    await operatorClient.mergePatch(blockPool, watched, "by-hand", {
      metadata: { finalizers: ["tributary.dev/finalizer"], resourceVersion: pool.metadata.resourceVersion },
    });
    await operatorClient.apply(
      blockPool,
      {
        apiVersion: "tributary.dev/v1alpha1",
        kind: "BlockPool",
        metadata: { name: "by-hand", namespace: watched },
        status: { observedGeneration: 1, liveDataNodes: 0 },
      },
      "tributary",
      "status",
    );
    const patched = await adminClient.get(blockPool, watched, "by-hand");
    expect(patched.metadata.finalizers).toEqual(["tributary.dev/finalizer"]);
    expect(patched.status).toMatchObject({ observedGeneration: 1, liveDataNodes: 0 });
    await operatorClient.mergePatch(blockPool, watched, "by-hand", { metadata: { finalizers: null } });

    // An event about it, and the series bump of a repeated one.
    const eventName = `by-hand.${Date.now().toString(16)}`;
    await operatorClient.create(builtin.event, {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name: eventName, namespace: watched },
      eventTime: `${new Date().toISOString().slice(0, 23)}000Z`,
      reportingController: "tributary.dev/operator",
      reportingInstance: "chart-test",
      action: "Reconcile",
      reason: "ChartCheck",
      note: "the chart's ServiceAccount records events",
      type: "Normal",
      regarding: {
        apiVersion: "tributary.dev/v1alpha1",
        kind: "BlockPool",
        name: "by-hand",
        namespace: watched,
        uid: pool.metadata.uid,
      },
    });
    await operatorClient.mergePatch(builtin.event, watched, eventName, {
      series: { count: 2, lastObservedTime: `${new Date().toISOString().slice(0, 23)}000Z` },
    });

    // Its Lease, in the release namespace: created, read, renewed, then released (empty
    // holder) so the operator started below need not wait for it to expire.
    const now = `${new Date().toISOString().slice(0, 23)}000Z`;
    await operatorClient.create(builtin.lease, {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: leaseName, namespace: releaseNamespace },
      spec: { holderIdentity: "chart-test", leaseDurationSeconds: 15, acquireTime: now, renewTime: now },
    });
    const lease = await operatorClient.get(builtin.lease, releaseNamespace, leaseName);
    await operatorClient.replace(builtin.lease, {
      ...lease,
      spec: { ...(lease.spec as object), renewTime: now },
    });
    const renewed = await operatorClient.get(builtin.lease, releaseNamespace, leaseName);
    await operatorClient.replace(builtin.lease, {
      ...renewed,
      spec: { ...(renewed.spec as object), holderIdentity: null, leaseDurationSeconds: 1 },
    });

    await adminClient.delete(blockPool, watched, "by-hand");
  });

  it("its ServiceAccount token is forbidden outside its role", async () => {
    const client = operatorClient;
    const pod: KubeObject = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "chart-check", namespace: watched },
      spec: { containers: [{ name: "main", image: "tributary:test" }] },
    };
    await expectForbidden("delete a node", () => client.delete(node, undefined, "chart-check-no-such-node"));
    // Secrets are read by name: listing or watching them, even where it watches, is refused.
    await expectForbidden("list secrets in every namespace", () => client.list(builtin.secret));
    await expectForbidden("list secrets in the watched namespace", () =>
      client.list(builtin.secret, watched),
    );
    await expectForbidden("watch secrets in the watched namespace", () =>
      client.list(builtin.secret, watched, { watch: true, timeoutSeconds: 1 }),
    );
    await expectForbidden("read a secret outside the watched namespace", () =>
      client.get(builtin.secret, releaseNamespace, "chart-check"),
    );
    await expectForbidden("list BlockPools in every namespace", () => client.list(blockPool));
    await expectForbidden("list BlockPools in an unwatched namespace", () =>
      client.list(blockPool, elsewhere),
    );
    await expectForbidden("create StatefulSets in an unwatched namespace", () =>
      dryRunCreate(client, builtin.statefulSet, {
        apiVersion: "apps/v1",
        kind: "StatefulSet",
        metadata: { name: "chart-check", namespace: elsewhere },
      }),
    );
    await expectForbidden("create a ClusterRole", () =>
      dryRunCreate(client, clusterRole, {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRole",
        metadata: { name: "chart-check" },
        rules: [],
      }),
    );
    await expectForbidden("bind itself to cluster-admin", () =>
      dryRunCreate(client, roleBinding, {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: "chart-check", namespace: watched },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
        subjects: [{ kind: "ServiceAccount", name: "tributary", namespace: releaseNamespace }],
      }),
    );
    await expectForbidden("create a pod", () => dryRunCreate(client, builtin.pod, pod));
    await expectForbidden("write a pod's status", () =>
      client.mergePatch(builtin.pod, watched, "chart-check", { status: { phase: "Running" } }, "status"),
    );
    // A BlockPool's cluster secret is created once; no Secret is ever changed.
    await dryRunCreate(client, builtin.secret, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "chart-check", namespace: watched },
    });
    await expectForbidden("change a secret", () =>
      client.mergePatch(builtin.secret, watched, "chart-check", { data: {} }),
    );
    // delete is for pruning children; claims hold data and are never pruned.
    await expectForbidden("delete a PersistentVolumeClaim", () =>
      client.delete(builtin.persistentVolumeClaim, watched, "chart-check"),
    );
    await expectForbidden("delete a pod", () => client.delete(builtin.pod, watched, "chart-check"));
    await expectForbidden("delete a secret", () => client.delete(builtin.secret, watched, "chart-check"));
    await expectForbidden("delete a Deployment in an unwatched namespace", () =>
      client.delete(builtin.deployment, elsewhere, "chart-check"),
    );
    await expectForbidden("create a Lease outside the release namespace", () =>
      dryRunCreate(client, builtin.lease, {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: leaseName, namespace: watched },
      }),
    );
    await expectForbidden("read another component's Lease", () =>
      client.get(builtin.lease, releaseNamespace, "someone-else"),
    );
  });

  it("the operator, running as that ServiceAccount with the chart's arguments, reconciles a BlockPool", {
    timeout: 240_000,
  }, async () => {
    const kubeconfig = join(work, "operator.kubeconfig");
    writeFileSync(kubeconfig, operatorConfig.exportConfig(), { mode: 0o600 });
    const deployment = objects.find((object) => object.kind === "Deployment")!;
    const container = (deployment.spec as { template: { spec: { containers: { args: string[] }[] } } })
      .template.spec.containers[0]!;
    // The Deployment's own arguments; only the ports change, so that nothing else on this
    // machine is in the way (0 picks free ones).
    const args = container.args.map((arg) =>
      arg.startsWith("--health-port=")
        ? "--health-port=0"
        : arg.startsWith("--metrics-port=")
          ? "--metrics-port=0"
          : arg,
    );
    expect(args).toContain(`--namespaces=${watched}`);
    expect(args).toContain(`--lease-namespace=${releaseNamespace}`);
    let output = "";
    const child = spawn(
      join(root, "node_modules", ".bin", "tsx"),
      [join(root, "src", "cli.ts"), ...args, `--kubeconfig=${kubeconfig}`],
      {
        cwd: root,
        env: { ...process.env, KUBECONFIG: kubeconfig, POD_NAME: "chart-test" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    operatorProcess = child;
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    // Every wait below ends at once, with the operator's output, if the operator has exited.
    const running = () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new StopWaiting(`the operator exited (${child.exitCode ?? child.signalCode}):\n${output}`);
      }
    };

    const healthPort = await waitFor(
      "the operator to serve its probes",
      async () => {
        running();
        return Number(/"healthPort":(\d+)/.exec(output)?.[1]) || undefined;
      },
      90_000,
    );
    // Ready means every informer listed and watches: the Role allows what the runtime needs.
    await waitFor("the operator to be ready", async () => {
      running();
      const response = await fetch(`http://127.0.0.1:${healthPort}/readyz`);
      return response.ok;
    });
    const holder = await waitFor("the operator to take its Lease", async () => {
      running();
      const lease = await adminClient.get(builtin.lease, releaseNamespace, leaseName);
      const identity = (lease.spec as { holderIdentity?: string }).holderIdentity;
      return identity?.startsWith("chart-test_") ? identity : undefined;
    });
    expect(holder).toMatch(/^chart-test_/);

    const created = await adminClient.create(blockPool, {
      apiVersion: "tributary.dev/v1alpha1",
      kind: "BlockPool",
      metadata: { name: "lake", namespace: watched },
      spec: { rackAwareness: {} },
    });
    const reconciled = await waitFor("the BlockPool's status", async () => {
      running();
      const stored = await adminClient.get(blockPool, watched, "lake");
      const status = stored.status as { observedGeneration?: number; conditions?: { type: string }[] };
      return status?.observedGeneration === stored.metadata.generation &&
        status.conditions?.some((condition) => condition.type === "Ready")
        ? stored
        : undefined;
    });
    expect(reconciled.metadata.finalizers).toContain("tributary.dev/finalizer");
    const statefulSets = await adminClient.list(builtin.statefulSet, watched, {
      labelSelector: "app.kubernetes.io/instance=lake",
    });
    expect(statefulSets.items.length).toBeGreaterThan(0);
    for (const statefulSet of statefulSets.items) {
      expect(statefulSet.metadata.ownerReferences?.[0]).toMatchObject({
        kind: "BlockPool",
        name: "lake",
        uid: created.metadata.uid,
        controller: true,
      });
    }
    // Pruning with the chart's rights: the rack table goes with rackAwareness.
    expect(await adminClient.find(builtin.configMap, watched, "lake-topology")).toBeDefined();
    await adminClient.mergePatch(blockPool, watched, "lake", { spec: { rackAwareness: null } });
    await waitFor("the rack table to be pruned", async () => {
      running();
      return !(await adminClient.find(builtin.configMap, watched, "lake-topology"));
    });

    // Deleting it runs the finalizer: the operator removes it with its own rights.
    await adminClient.delete(blockPool, watched, "lake");
    await waitFor("the BlockPool to be gone", async () => {
      running();
      return !(await adminClient.find(blockPool, watched, "lake"));
    });

    child.kill("SIGTERM");
    expect(await exited, output).toBe(0);
    expect(output, "the operator was refused something it needs").not.toMatch(/forbidden|\b403\b/i);
    // Graceful shutdown released the Lease for a standby.
    const lease = await adminClient.get(builtin.lease, releaseNamespace, leaseName);
    expect((lease.spec as { holderIdentity?: string }).holderIdentity ?? "").toBe("");
  });
});

describe("the chart, watching every namespace", () => {
  const release = uniqueName("tributary-cluster");
  const releaseNamespace = uniqueName("chart-cluster");
  const other = uniqueName("chart-other");
  let objects: Manifest[];

  beforeAll(async () => {
    await createNamespace(releaseNamespace, { "pod-security.kubernetes.io/enforce": "restricted" });
    await createNamespace(other);
    objects = renderChart(release, releaseNamespace);
  });

  afterAll(async () => {
    // The ClusterRole and its binding belong to this release alone (named after it).
    for (const object of objects ?? []) {
      if (object.kind === "ClusterRole" || object.kind === "ClusterRoleBinding") {
        await adminObjects.delete(object).catch(() => undefined);
      }
    }
    for (const namespace of [other, releaseNamespace]) {
      await adminClient.delete(builtin.namespace, undefined, namespace);
    }
  });

  it("applies, may read and write children anywhere, and is still forbidden outside its role", async () => {
    expect(objects.map((object) => object.kind)).toEqual(
      expect.arrayContaining(["ClusterRole", "ClusterRoleBinding"]),
    );
    await serverSideApply(adminObjects, objects, "All");
    await serverSideApply(adminObjects, objects);
    const client = new KubeClient(
      tokenConfig(admin, await serviceAccountToken(admin, releaseNamespace, release)),
    );
    try {
      // The informers of a cluster-wide operator list and watch across namespaces.
      await waitFor("the ClusterRoleBinding to take effect", async () => {
        await client.list(blockPool);
        return true;
      });
      await client.list(builtin.statefulSet);
      await client.list(builtin.podDisruptionBudget);
      expect(await client.find(builtin.secret, other, "chart-check-absent")).toBeUndefined();
      await dryRunCreate(client, builtin.service, {
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: "chart-check", namespace: other },
        spec: { ports: [{ port: 80 }] },
      });

      await expectForbidden("delete a node", () =>
        client.delete(node, undefined, "chart-check-no-such-node"),
      );
      await expectForbidden("create a ClusterRole", () =>
        dryRunCreate(client, clusterRole, {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "ClusterRole",
          metadata: { name: "chart-check" },
          rules: [],
        }),
      );
      await expectForbidden("create a pod", () =>
        dryRunCreate(client, builtin.pod, {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: "chart-check", namespace: other },
          spec: { containers: [{ name: "main", image: "tributary:test" }] },
        }),
      );
      // A BlockPool's cluster secret is created once; no Secret is ever changed.
      await dryRunCreate(client, builtin.secret, {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "chart-check", namespace: other },
      });
      await expectForbidden("change a secret", () =>
        client.mergePatch(builtin.secret, other, "chart-check", { data: {} }),
      );
      await expectForbidden("list secrets in every namespace", () => client.list(builtin.secret));
      await expectForbidden("delete a PersistentVolumeClaim", () =>
        client.delete(builtin.persistentVolumeClaim, other, "chart-check"),
      );
      await expectForbidden("create a Lease outside the release namespace", () =>
        dryRunCreate(client, builtin.lease, {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: `${release}-operator`, namespace: other },
        }),
      );
    } finally {
      client.close();
    }
  });
});

describe("helm itself", () => {
  const release = uniqueName("tributary-helm");
  const namespace = uniqueName("chart-helm");
  const helm = (...args: string[]) =>
    spawnSync(testEnv().helm, [...args, "--kubeconfig", testEnv().kubeconfig], { encoding: "utf8" });

  afterAll(async () => {
    helm("uninstall", release, "--namespace", namespace);
    await adminClient.delete(builtin.namespace, undefined, namespace);
  });

  it("installs the release on the real API server and uninstalls it, leaving the CRDs", async () => {
    // helm checks Chart.yaml's kubeVersion against the server's own version here.
    const install = helm("install", release, chart, "--namespace", namespace, "--create-namespace");
    expect(install.status, install.stderr).toBe(0);
    expect(install.stdout).toContain(
      `Tributary ${/appVersion: "?([^"\n]+)/.exec(readFileSync(join(chart, "Chart.yaml"), "utf8"))![1]} is installed`,
    );
    expect(await adminClient.find(builtin.deployment, namespace, release)).toBeDefined();
    expect(await adminClient.find(clusterRole, undefined, release)).toBeDefined();

    const uninstall = helm("uninstall", release, "--namespace", namespace);
    expect(uninstall.status, uninstall.stderr).toBe(0);
    expect(await adminClient.find(clusterRole, undefined, release)).toBeUndefined();
    await waitFor("the operator Deployment to be gone", async () => {
      const deployment = await adminClient.find(builtin.deployment, namespace, release);
      return !deployment || deployment.metadata.deletionTimestamp !== undefined;
    });
    // Deleting a CRD deletes every resource of its kind: helm never removes a chart's crds/.
    for (const file of readdirSync(join(chart, "crds"))) {
      const name = file.replace(/\.yaml$/, "");
      expect(await adminClient.find(builtin.customResourceDefinition, undefined, name), name).toBeDefined();
    }
  });
});
