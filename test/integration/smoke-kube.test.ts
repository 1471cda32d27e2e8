import { CoreV1Api, KubeConfig, Watch } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testEnv, uniqueName } from "../support/env.js";

// Proves our Kubernetes client against the real kube-apiserver of the test environment.
describe("kube-apiserver smoke", () => {
  const kc = new KubeConfig();
  let core: CoreV1Api;
  const namespace = uniqueName("smoke-kube");

  beforeAll(async () => {
    kc.loadFromFile(testEnv().kubeconfig);
    core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
  });

  afterAll(async () => {
    await core.deleteNamespace({ name: namespace });
  });

  it("creates, watches and deletes a ConfigMap", async () => {
    const seen: string[] = [];
    // Watch from the resourceVersion of a list taken before any write: the API server then
    // delivers every later event whenever the watch connection is set up, so no pause is needed.
    const listed = await core.listNamespacedConfigMap({ namespace, fieldSelector: "metadata.name=greeting" });
    expect(listed.items).toEqual([]);
    const watch = new Watch(kc);
    let resolveDeleted: () => void = () => undefined;
    let rejectDeleted: (error: unknown) => void = () => undefined;
    const deleted = new Promise<void>((resolve, reject) => {
      resolveDeleted = resolve;
      rejectDeleted = reject;
    });
    deleted.catch(() => undefined); // awaited below; this only keeps an early failure from being unhandled
    // Resolves once the API server has answered the watch request: it is registered.
    const request = await watch.watch(
      `/api/v1/namespaces/${namespace}/configmaps`,
      // kube-controller-manager publishes kube-root-ca.crt into every namespace: watch ours only.
      { fieldSelector: "metadata.name=greeting", resourceVersion: listed.metadata?.resourceVersion },
      (phase, object: { metadata?: { name?: string } }) => {
        seen.push(`${phase} ${object.metadata?.name}`);
        if (phase === "DELETED") resolveDeleted();
      },
      (error) => {
        rejectDeleted(error ?? new Error(`the watch ended before DELETED; seen: ${seen.join(", ")}`));
      },
    );

    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: "greeting" }, data: { hello: "world" } },
    });
    const read = await core.readNamespacedConfigMap({ namespace, name: "greeting" });
    expect(read.data).toEqual({ hello: "world" });
    await core.patchNamespacedConfigMap({
      namespace,
      name: "greeting",
      body: [{ op: "replace", path: "/data/hello", value: "tributary" }],
    });
    await core.deleteNamespacedConfigMap({ namespace, name: "greeting" });
    try {
      await deleted;
    } finally {
      request.abort();
    }

    expect(seen).toEqual(["ADDED greeting", "MODIFIED greeting", "DELETED greeting"]);
  });

  it("runs with RBAC authorization: an unprivileged service account is forbidden", async () => {
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: "nobody" } } });
    const token = await core.createNamespacedServiceAccountToken({
      namespace,
      name: "nobody",
      body: { spec: { expirationSeconds: 600, audiences: [] } },
    });
    const cluster = kc.getCurrentCluster()!;
    const asNobody = new KubeConfig();
    asNobody.loadFromOptions({
      clusters: [cluster],
      users: [{ name: "nobody", token: token.status!.token }],
      contexts: [{ name: "nobody", cluster: cluster.name, user: "nobody" }],
      currentContext: "nobody",
    });
    const error = await asNobody
      .makeApiClient(CoreV1Api)
      .listNamespacedSecret({ namespace })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 403 });
  });
});
