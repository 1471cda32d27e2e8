/**
 * Every pod the controllers build, judged by the real kube-apiserver's Pod Security admission in
 * a namespace that enforces the `restricted` standard. Admission only warns about Deployments and
 * StatefulSets and refuses the Pods their controllers later make, so each workload's pod template
 * is submitted as the Pod it becomes, with server-side dry run: admitted or refused, never
 * stored, never scheduled. One pod that breaks the standard proves the namespace does refuse.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockPoolDefinition, blockPoolSpecSchema } from "../../src/api/blockpool.js";
import { cdcStreamDefinition, cdcStreamSpecSchema } from "../../src/api/cdcstream.js";
import { topicDefinition, topicSpecSchema } from "../../src/api/topic.js";
import { desiredChildren as blockPoolChildren } from "../../src/controllers/blockpool/build.js";
import { desiredChildren as cdcStreamChildren, snapshotJob } from "../../src/controllers/cdcstream/build.js";
import { desiredChildren as topicChildren } from "../../src/controllers/topic/build.js";
import {
  ApiError,
  builtin,
  collectionPath,
  type KubeObject,
  type ResourceType,
} from "../../src/operator/kube.js";
import { uniqueName } from "../support/env.js";
import type { PodTemplate } from "../support/pod-templates.js";
import { deleteNamespace, testClient, waitFor } from "./operator-harness.js";

const client = testClient();
const serviceAccounts: ResourceType = {
  group: "",
  version: "v1",
  kind: "ServiceAccount",
  plural: "serviceaccounts",
};
const namespace = uniqueName("pod-security");

const owner = (kind: string, apiVersion: string, name: string): KubeObject => ({
  apiVersion,
  kind,
  metadata: { name, namespace, uid: `${name}-uid`, generation: 1 },
});

interface Workload {
  kind: string;
  metadata: { name: string };
  spec: {
    template: PodTemplate;
    volumeClaimTemplates?: { metadata: { name: string } }[];
  };
}

const workloadsOf = (children: KubeObject[]) =>
  children.filter(
    (child) => child.kind === "Deployment" || child.kind === "StatefulSet",
  ) as unknown as Workload[];

/** A Topic with a clickstream collector, a sink to a volume and a sink to a BlockPool, behind TLS and SASL. */
const topicWorkloads = () =>
  workloadsOf(
    topicChildren({
      resource: owner("Topic", topicDefinition.apiVersion, "clicks"),
      spec: topicSpecSchema.parse({
        ingest: { clickstream: { replicas: 2 } },
        sinks: [
          { name: "files", format: "parquet", target: { volume: { claimName: "clicks-files" } } },
          { name: "pool", format: "avro", target: { blockPool: { blockPool: "lake", path: "/clicks" } } },
        ],
        kafka: {
          bootstrapServers: ["kafka.example:9093"],
          tls: {
            caSecret: { name: "kafka-ca", key: "ca.crt" },
            clientCertificateSecret: { name: "kafka-client" },
          },
          sasl: { credentialsSecret: { name: "kafka-user" } },
        },
      }),
      image: "registry.example/tributary:test",
      brokers: ["kafka.example:9093"],
      kafkaSecretVersions: ["kafka-ca@1", "kafka-client@1", "kafka-user@1"],
    }),
  );

/** A BlockPool with an active and a standby name node, three data nodes and the rack table mounted. */
const blockPoolWorkloads = () =>
  workloadsOf(
    blockPoolChildren({
      resource: owner("BlockPool", blockPoolDefinition.apiVersion, "lake"),
      spec: blockPoolSpecSchema.parse({
        nameNodes: { replicas: 2 },
        dataNodes: { replicas: 3 },
        rackAwareness: {},
      }),
      image: "registry.example/tributary:test",
      topologyTable: "lake-datanode-0 /eu-west-1a\n",
    }),
  );

/**
 * A CDCStream with TLS to the database and Kafka behind TLS and SASL: its connector StatefulSet,
 * and the Jobs of its scheduled snapshots to a volume and to a BlockPool.
 */
const cdcStreamWorkloads = () => {
  const spec = (files: Record<string, unknown>) =>
    cdcStreamSpecSchema.parse({
      source: {
        postgres: {
          host: "shop-db.databases.svc",
          database: "shop",
          credentialsSecret: { name: "shop-db" },
          sslMode: "verify-full",
          sslRootCertSecret: { name: "shop-db-ca", key: "ca.crt" },
        },
      },
      target: {
        topicPrefix: "shop",
        kafka: {
          bootstrapServers: ["kafka.example:9093"],
          tls: { caSecret: { name: "kafka-ca", key: "ca.crt" } },
          sasl: { credentialsSecret: { name: "kafka-user" } },
        },
      },
      snapshot: { schedule: "0 2 * * *", files },
    });
  const resource = owner("CDCStream", cdcStreamDefinition.apiVersion, "shop");
  const input = (files: Record<string, unknown>) => ({
    resource,
    spec: spec(files),
    image: "registry.example/tributary:test",
    brokers: ["kafka.example:9093"],
  });
  const volume = input({ volume: { claimName: "lake" } });
  const time = new Date("2026-12-06T01:00:00Z");
  return [
    ...workloadsOf(cdcStreamChildren(volume)),
    snapshotJob({ ...volume, time }),
    {
      ...snapshotJob({ ...input({ blockPool: { blockPool: "lake", path: "/lake/shop" } }), time }),
      metadata: { name: "shop-snapshot-pool" },
    },
  ] as unknown as Workload[];
};

/**
 * The first pod a workload's controller would create: its template, plus for a StatefulSet the
 * claim of each volumeClaimTemplate, which the StatefulSet controller adds as a volume.
 */
function firstPod(workload: Workload): KubeObject {
  const { template, volumeClaimTemplates = [] } = workload.spec;
  const name = `${workload.metadata.name}-0`;
  const claims = volumeClaimTemplates.map((claim) => ({
    name: claim.metadata.name,
    persistentVolumeClaim: { claimName: `${claim.metadata.name}-${name}` },
  }));
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { ...template.metadata, name, namespace },
    spec: { ...template.spec, volumes: [...(template.spec.volumes ?? []), ...claims] },
  };
}

/** Creates the pod with dryRun=All: admission judges it, nothing is stored. */
const dryRunCreate = (pod: KubeObject) =>
  client.request<KubeObject>("POST", collectionPath(builtin.pod, namespace), {
    body: pod,
    query: { dryRun: "All" },
  });

beforeAll(async () => {
  await client.create(builtin.namespace, {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: {
      name: namespace,
      labels: {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
      },
    },
  });
  // Admission looks up the pod's service account, which the controller manager creates shortly
  // after the namespace: before it, every pod is refused for a reason that is not the test's.
  await waitFor("the namespace's default ServiceAccount", () =>
    client.find(serviceAccounts, namespace, "default"),
  );
});

afterAll(async () => {
  await deleteNamespace(client, namespace);
  client.close();
});

/** Each workload's first pod as the API server judged it: `<workload>: admitted` or its refusal. */
async function judge(workloads: Workload[]): Promise<string[]> {
  const verdicts: string[] = [];
  for (const workload of workloads) {
    const what = `${workload.kind}/${workload.metadata.name}`;
    try {
      const admitted = await dryRunCreate(firstPod(workload));
      verdicts.push(`${what}: ${admitted.kind === "Pod" ? "admitted" : JSON.stringify(admitted)}`);
    } catch (error) {
      verdicts.push(`${what}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return verdicts;
}

describe("pods the controllers build, in a namespace enforcing the restricted Pod Security Standard", () => {
  it("admits every Topic pod: the collector and both kinds of sinks", async () => {
    expect(await judge(topicWorkloads())).toEqual([
      "Deployment/clicks-collector: admitted",
      "Deployment/clicks-sink-files: admitted",
      "Deployment/clicks-sink-pool: admitted",
    ]);
  });

  it("admits every BlockPool pod: name nodes and data nodes", async () => {
    expect(await judge(blockPoolWorkloads())).toEqual([
      "StatefulSet/lake-namenode: admitted",
      "StatefulSet/lake-datanode: admitted",
    ]);
  });

  it("admits every CDCStream pod: the connector and the snapshot Jobs", async () => {
    expect(await judge(cdcStreamWorkloads())).toEqual([
      "StatefulSet/shop-connector: admitted",
      "Job/shop-snapshot-29941980: admitted",
      "Job/shop-snapshot-pool: admitted",
    ]);
  });

  it("refuses a pod that breaks the standard, so the admissions above mean something", async () => {
    // The collector's own pod without its security contexts: root allowed, capabilities kept.
    const collector = firstPod(topicWorkloads()[0]!);
    const { securityContext: _pod, ...podSpec } = collector.spec as PodTemplate["spec"];
    const pod: KubeObject = {
      ...collector,
      metadata: { ...collector.metadata, name: "collector-without-security" },
      spec: {
        ...podSpec,
        containers: podSpec.containers.map(({ securityContext: _container, ...container }) => container),
      },
    };
    const refused = await dryRunCreate(pod).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).statusCode).toBe(403);
    expect((refused as ApiError).message).toContain('violates PodSecurity "restricted:latest"');
  });
});
