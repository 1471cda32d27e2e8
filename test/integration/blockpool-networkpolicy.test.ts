/**
 * A BlockPool's NetworkPolicy, made by the operator against the real API server: the pool's pods
 * admit the pool's own pods, the operator's pods, pods labelled as the pool's clients and the
 * spec's allowFrom; turning it off prunes it. The test environment's network plugin does not
 * enforce NetworkPolicy, so what is checked is the object the API server stored.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockPoolDefinition } from "../../src/api/blockpool.js";
import { createBlockPoolController, networkPolicyType } from "../../src/controllers/blockpool/reconcile.js";
import { resourceType } from "../../src/controllers/common.js";
import type { KubeClient, KubeObject } from "../../src/operator/kube.js";
import type { Operator } from "../../src/operator/operator.js";
import { uniqueName } from "../support/env.js";
import {
  applyCrds,
  createNamespace,
  deleteNamespace,
  deleteTributaryResources,
  startOperator,
  testClient,
  waitFor,
} from "./operator-harness.js";

const blockPools = resourceType(blockPoolDefinition);
const namespace = uniqueName("bp-netpol");
let client: KubeClient;
let operator: Operator | undefined;

type Peer = {
  podSelector?: { matchLabels?: Record<string, string> };
  namespaceSelector?: { matchLabels?: Record<string, string> };
};
type PolicySpec = {
  podSelector: { matchLabels: Record<string, string> };
  policyTypes: string[];
  ingress: { from: Peer[] }[];
};

beforeAll(async () => {
  client = testClient();
  await applyCrds(client);
  await createNamespace(client, namespace);
  operator = await startOperator("blockpool-networkpolicy-test", namespace, [
    // No name node answers here: the pool reports that, and its children are made all the same.
    createBlockPoolController({
      nameNodeUrl: () => "http://127.0.0.1:1",
      requestTimeoutMs: 500,
      operatorNamespace: "tributary-system",
    }),
  ]);
});

afterAll(async () => {
  await deleteTributaryResources(client, namespace);
  await operator?.stop();
  await deleteNamespace(client, namespace);
  client.close();
});

describe("BlockPool NetworkPolicy", () => {
  it("admits the pool's pods, the operator's, labelled clients and allowFrom; is pruned when turned off", async () => {
    await client.create(blockPools, {
      apiVersion: blockPoolDefinition.apiVersion,
      kind: "BlockPool",
      metadata: { name: "lake", namespace },
      spec: {
        nameNodes: { replicas: 1 },
        dataNodes: { replicas: 3 },
        networkPolicy: {
          allowFrom: [
            {
              namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "analytics" } },
              podSelector: { matchExpressions: [{ key: "app", operator: "In", values: ["spark"] }] },
            },
          ],
        },
      },
    });
    const policy = await waitFor("the pool's NetworkPolicy", () =>
      client.find(networkPolicyType, namespace, "lake-access"),
    );
    const owner = policy.metadata.ownerReferences?.[0];
    expect(owner).toMatchObject({ kind: "BlockPool", name: "lake", controller: true });
    const spec = policy.spec as PolicySpec;
    const poolPods = { "app.kubernetes.io/name": "blockpool", "app.kubernetes.io/instance": "lake" };
    expect(spec.podSelector).toEqual({ matchLabels: poolPods });
    expect(spec.policyTypes).toEqual(["Ingress"]);
    expect(spec.ingress).toEqual([
      {
        from: [
          { podSelector: { matchLabels: poolPods } },
          {
            podSelector: {
              matchLabels: {
                "app.kubernetes.io/component": "operator",
                "app.kubernetes.io/part-of": "tributary",
              },
            },
            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "tributary-system" } },
          },
          { podSelector: { matchLabels: { "tributary.dev/blockpool-client": "lake" } } },
          {
            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "analytics" } },
            podSelector: { matchExpressions: [{ key: "app", operator: "In", values: ["spark"] }] },
          },
        ],
      },
    ]);
    // The policy selects the pods the StatefulSets make.
    const nameNodes = await client.get(
      { group: "apps", version: "v1", kind: "StatefulSet", plural: "statefulsets" },
      namespace,
      "lake-namenode",
    );
    const podLabels = (nameNodes.spec as { template: { metadata: { labels: Record<string, string> } } })
      .template.metadata.labels;
    expect(podLabels).toMatchObject(poolPods);

    await client.mergePatch(blockPools, namespace, "lake", { spec: { networkPolicy: { enabled: false } } });
    await waitFor("the NetworkPolicy pruned", async () =>
      (await client.find(networkPolicyType, namespace, "lake-access")) === undefined ? true : undefined,
    );
  });

  it("is refused at the door when a selector names an operator Kubernetes does not know", async () => {
    const refused = client.create(blockPools, {
      apiVersion: blockPoolDefinition.apiVersion,
      kind: "BlockPool",
      metadata: { name: "bad", namespace },
      spec: {
        nameNodes: { replicas: 1 },
        dataNodes: { replicas: 3 },
        networkPolicy: {
          allowFrom: [{ podSelector: { matchExpressions: [{ key: "app", operator: "Like" }] } }],
        },
      },
    } as KubeObject);
    await expect(refused).rejects.toThrow(/operator/);
  });
});
