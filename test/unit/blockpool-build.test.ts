import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { blockPoolSpecSchema } from "../../src/api/blockpool.js";
import {
  dataNodeStatefulSet,
  desiredChildren,
  nameNodeStatefulSet,
} from "../../src/controllers/blockpool/build.js";
import { desiredClusterSecret, ensureClusterSecret } from "../../src/controllers/blockpool/clusterSecret.js";
import { roleState, statefulSetHealth } from "../../src/controllers/blockpool/status.js";
import { validateBlockPool } from "../../src/controllers/blockpool/validate.js";
import { dataNodeConfig } from "../../src/dataplane/storage/datanode/main.js";
import { nameNodeConfig } from "../../src/dataplane/storage/namenode/main.js";
import type { KubeClient, KubeObject } from "../../src/operator/kube.js";
import { expectRestricted, podTemplates } from "../support/pod-templates.js";

interface PodSpecWithVolumes {
  volumes: unknown[];
  containers: { volumeMounts: unknown[] }[];
}

const resource: KubeObject = {
  apiVersion: "tributary.dev/v1alpha1",
  kind: "BlockPool",
  metadata: { name: "lake", namespace: "data", uid: "1234-uid", generation: 1 },
};

const build = (spec: unknown = {}) => ({
  resource,
  spec: blockPoolSpecSchema.parse(spec),
  image: "registry/tributary:9",
});

type Workload = {
  spec: {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: { containers: Array<Record<string, unknown>>; affinity: unknown; tolerations?: unknown };
    };
    volumeClaimTemplates: Array<{
      spec: { resources: { requests: { storage: string } }; storageClassName?: string };
    }>;
    persistentVolumeClaimRetentionPolicy: { whenDeleted: string; whenScaled: string };
  };
};

describe("BlockPool build", () => {
  it("gives an active and a standby name node one shared edit log, owned by the pool only with Delete", () => {
    const claimOf = (spec: unknown) =>
      desiredChildren(build(spec)).find((c) => c.kind === "PersistentVolumeClaim");
    const retained = claimOf({});
    expect(retained).toMatchObject({
      metadata: { name: "lake-namenode-edits" },
      spec: { accessModes: ["ReadWriteMany"] },
    });
    expect(retained?.metadata.ownerReferences).toBeUndefined();
    expect(claimOf({ deletionPolicy: "Delete" })?.metadata.ownerReferences).toHaveLength(1);
    expect(claimOf({ nameNodes: { replicas: 1 }, dataNodes: { replicas: 3 } })).toBeUndefined();
    // Its class is its own: the per-pod claims' class rarely offers ReadWriteMany.
    expect(
      claimOf({
        nameNodes: {
          storage: { size: "10Gi", storageClassName: "fast-ssd" },
          sharedEdits: { storageClassName: "nfs" },
        },
      })?.spec,
    ).toEqual({
      accessModes: ["ReadWriteMany"],
      resources: { requests: { storage: "5Gi" } },
      storageClassName: "nfs",
    });

    const pod = (
      nameNodeStatefulSet(build()) as unknown as Workload & {
        spec: { template: { spec: { volumes: unknown[] } } };
      }
    ).spec.template.spec;
    expect(pod.volumes).toContainEqual({
      name: "shared-edits",
      persistentVolumeClaim: { claimName: "lake-namenode-edits" },
    });
    expect(pod.containers[0]!.volumeMounts).toContainEqual({
      name: "shared-edits",
      mountPath: "/var/lib/tributary/name",
    });
  });

  it("builds the name-node and data-node StatefulSets, their Services and budgets, all owned by the pool", () => {
    const children = desiredChildren(build());
    expect(children.map((child) => `${child.kind}/${child.metadata.name}`).sort()).toEqual([
      "NetworkPolicy/lake-access",
      "PersistentVolumeClaim/lake-namenode-edits",
      "PodDisruptionBudget/lake-datanode",
      "PodDisruptionBudget/lake-namenode",
      "Service/lake",
      "Service/lake-datanode",
      "Service/lake-namenode",
      "StatefulSet/lake-datanode",
      "StatefulSet/lake-namenode",
    ]);
    for (const child of children) {
      expect(child.metadata.namespace).toBe("data");
      // The shared edit log follows deletionPolicy (Retain by default): see the next test.
      if (child.kind === "PersistentVolumeClaim") continue;
      expect(child.metadata.ownerReferences).toEqual([
        {
          apiVersion: "tributary.dev/v1alpha1",
          kind: "BlockPool",
          name: "lake",
          uid: "1234-uid",
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
      expect(child.metadata.labels?.["app.kubernetes.io/managed-by"]).toBe("tributary");
    }
  });

  it("admits to the pool's pods only the pool, the operator, labelled clients and allowFrom; none when disabled", () => {
    const policyOf = (spec: unknown, operatorNamespace?: string) =>
      desiredChildren({ ...build(spec), operatorNamespace }).find((child) => child.kind === "NetworkPolicy");
    const peers = (policy: KubeObject | undefined) =>
      (policy!.spec as { ingress: { from: unknown[] }[] }).ingress[0]!.from;
    const pool = { "app.kubernetes.io/name": "blockpool", "app.kubernetes.io/instance": "lake" };
    const operatorPods = {
      "app.kubernetes.io/component": "operator",
      "app.kubernetes.io/part-of": "tributary",
    };
    expect(peers(policyOf({}))).toEqual([
      { podSelector: { matchLabels: pool } },
      // No operator namespace known: the operator's pods in any namespace.
      { podSelector: { matchLabels: operatorPods }, namespaceSelector: {} },
      { podSelector: { matchLabels: { "tributary.dev/blockpool-client": "lake" } } },
    ]);
    const extra = { namespaceSelector: { matchLabels: { team: "analytics" } } };
    expect(peers(policyOf({ networkPolicy: { allowFrom: [extra] } }, "ops"))).toEqual([
      { podSelector: { matchLabels: pool } },
      {
        podSelector: { matchLabels: operatorPods },
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ops" } },
      },
      { podSelector: { matchLabels: { "tributary.dev/blockpool-client": "lake" } } },
      extra,
    ]);
    // Every pod of the pool is selected: both StatefulSets' pods carry the pool's labels.
    const policy = policyOf({});
    expect(policy?.spec).toMatchObject({ podSelector: { matchLabels: pool }, policyTypes: ["Ingress"] });
    for (const set of desiredChildren(build()).filter((child) => child.kind === "StatefulSet"))
      expect((set as unknown as Workload).spec.template.metadata.labels).toMatchObject(pool);
    expect(policyOf({ networkPolicy: { enabled: false } })).toBeUndefined();
  });

  it("runs active + standby name nodes and the data nodes from the operator's image and role command", () => {
    const input = build();
    const nameNodes = nameNodeStatefulSet(input) as unknown as Workload;
    const dataNodes = dataNodeStatefulSet(input) as unknown as Workload;
    expect(nameNodes.spec.replicas).toBe(2);
    expect(dataNodes.spec.replicas).toBe(3);
    expect(nameNodes.spec.template.spec.containers[0]).toMatchObject({
      name: "namenode",
      image: "registry/tributary:9",
      command: ["tributary", "namenode"],
    });
    expect(dataNodes.spec.template.spec.containers[0]).toMatchObject({
      image: "registry/tributary:9",
      command: ["tributary", "datanode"],
    });
    // The selector must match the template's labels, or the API server refuses the StatefulSet.
    for (const workload of [nameNodes, dataNodes]) {
      for (const [key, value] of Object.entries(workload.spec.selector.matchLabels)) {
        expect(workload.spec.template.metadata.labels[key]).toBe(value);
      }
      expect(JSON.stringify(workload.spec.template.spec.affinity)).toContain("kubernetes.io/hostname");
    }
  });

  it("takes volume claims from storage and the claims' fate from deletionPolicy", () => {
    const retained = dataNodeStatefulSet(
      build({ dataNodes: { storage: { size: "50Gi", storageClassName: "fast" } } }),
    ) as unknown as Workload;
    expect(retained.spec.volumeClaimTemplates[0]!.spec).toMatchObject({
      resources: { requests: { storage: "50Gi" } },
      storageClassName: "fast",
    });
    expect(retained.spec.persistentVolumeClaimRetentionPolicy).toEqual({
      whenDeleted: "Retain",
      whenScaled: "Retain",
    });
    const deleted = dataNodeStatefulSet(build({ deletionPolicy: "Delete" })) as unknown as Workload;
    expect(deleted.spec.persistentVolumeClaimRetentionPolicy.whenDeleted).toBe("Delete");
  });

  it("scales every role to 0 when stopped", () => {
    const input = build({ clusterOperation: { stopped: true } });
    expect((nameNodeStatefulSet(input) as unknown as Workload).spec.replicas).toBe(0);
    expect((dataNodeStatefulSet(input) as unknown as Workload).spec.replicas).toBe(0);
  });

  it("merges podOverrides over the generated pod template", () => {
    const workload = dataNodeStatefulSet(
      build({
        dataNodes: {
          podOverrides: {
            spec: {
              tolerations: [{ key: "storage", operator: "Exists" }],
              containers: [
                { name: "datanode", env: [{ name: "EXTRA", value: "1" }] },
                { name: "exporter", image: "x" },
              ],
            },
          },
        },
      }),
    ) as unknown as Workload;
    const containers = workload.spec.template.spec.containers;
    expect(containers.map((container) => container.name)).toEqual(["datanode", "exporter"]);
    expect(containers[0]!.image).toBe("registry/tributary:9");
    expect((containers[0]!.env as Array<{ name: string }>).map((variable) => variable.name)).toContain(
      "EXTRA",
    );
    expect((containers[0]!.env as Array<{ name: string }>).map((variable) => variable.name)).toContain(
      "TRIBUTARY_REPLICATION",
    );
    expect(workload.spec.template.spec.tolerations).toEqual([{ key: "storage", operator: "Exists" }]);
  });

  it("sets variables the name and data nodes' configs read: permissions, block size in bytes", () => {
    const input = build({ permissions: { enabled: false, superusers: ["hdfs", "etl"] } });
    const envOf = (workload: Workload) =>
      Object.fromEntries(
        (workload.spec.template.spec.containers[0]!.env as Array<{ name: string; value?: string }>)
          .filter((variable) => variable.value !== undefined)
          .map((variable) => [variable.name, variable.value]),
      );
    // The cluster secret's mount, stood in for by a file of this test.
    const secret = randomBytes(32);
    const secretFile = join(mkdtempSync(join(tmpdir(), "tributary-secret-")), "secret");
    writeFileSync(secretFile, secret);
    const mounted = (workload: Workload) => {
      const env = envOf(workload);
      expect(env.TRIBUTARY_CLUSTER_SECRET_FILE).toBe("/etc/tributary/cluster-secret/secret");
      return { ...env, TRIBUTARY_CLUSTER_SECRET_FILE: secretFile };
    };
    const config = nameNodeConfig([], mounted(nameNodeStatefulSet(input) as unknown as Workload));
    const dataNode = dataNodeConfig([], mounted(dataNodeStatefulSet(input) as unknown as Workload));
    expect(dataNode.nameNodes).toHaveLength(2);
    expect(config.clusterSecret).toEqual(secret);
    expect(dataNode.clusterSecret).toEqual(secret);
    expect(config.permissionsEnabled).toBe(false);
    expect(config.superusers).toEqual(["hdfs", "etl"]);
    expect(config.blockSize).toBe(128 * 1024 * 1024);
    expect(nameNodeConfig([], {}).permissionsEnabled).toBe(true);
    expect(nameNodeConfig([], {}).clusterSecret).toBeUndefined();
    expect(() => nameNodeConfig([], { TRIBUTARY_CLUSTER_SECRET_FILE: "/nonexistent/secret" })).toThrow(
      /cannot read the cluster secret from \/nonexistent\/secret/,
    );
  });

  it("mounts the pool's cluster secret read-only into both roles, readable by the pod's group only", () => {
    for (const workload of [nameNodeStatefulSet(build()), dataNodeStatefulSet(build())]) {
      const pod = (workload as unknown as { spec: { template: { spec: PodSpecWithVolumes } } }).spec.template
        .spec;
      expect(pod.volumes).toContainEqual({
        name: "cluster-secret",
        secret: {
          secretName: "lake-cluster-secret",
          items: [{ key: "secret", path: "secret" }],
          defaultMode: 0o440,
        },
      });
      expect(pod.containers[0]!.volumeMounts).toContainEqual({
        name: "cluster-secret",
        mountPath: "/etc/tributary/cluster-secret",
        readOnly: true,
      });
    }
  });

  it("creates the cluster secret once: 32 random bytes owned by the pool, kept when it exists", async () => {
    const created: KubeObject[] = [];
    let stored: KubeObject | undefined;
    const client = {
      find: async () => stored,
      get: async () => stored,
      create: async (_type: unknown, object: KubeObject) => {
        created.push(object);
        stored = object;
        return object;
      },
    } as unknown as KubeClient;
    const first = await ensureClusterSecret(client, resource);
    expect(first).toHaveLength(32);
    expect(created).toHaveLength(1);
    expect(created[0]!.metadata).toMatchObject({
      name: "lake-cluster-secret",
      namespace: "data",
      ownerReferences: [{ kind: "BlockPool", name: "lake", controller: true }],
    });
    // A second reconcile reads it back and creates nothing.
    expect(await ensureClusterSecret(client, resource)).toEqual(first);
    expect(created).toHaveLength(1);
    expect(desiredClusterSecret(resource, first)).toEqual(desiredClusterSecret(resource, first));
  });

  it("runs every pod under the restricted Pod Security Standard, without a service-account token", () => {
    const input = { ...build({ rackAwareness: {} }), topologyTable: "lake-datanode-0 /eu-west-1a\n" };
    const templates = podTemplates(desiredChildren(input));
    expect(templates.map((entry) => entry.workload)).toEqual([
      "StatefulSet/lake-namenode",
      "StatefulSet/lake-datanode",
    ]);
    for (const entry of templates) {
      expectRestricted(entry);
      // With a read-only root, the pod's own volumes are where it writes.
      expect(entry.template.spec.containers[0]!.volumeMounts).toContainEqual({
        name: "data",
        mountPath: "/var/lib/tributary",
      });
    }
  });

  it("restricts a sidecar from podOverrides too, and lets the user's own security fields win", () => {
    const workload = dataNodeStatefulSet(
      build({
        dataNodes: {
          podOverrides: {
            spec: {
              automountServiceAccountToken: true,
              securityContext: { supplementalGroups: [2000] },
              containers: [
                { name: "datanode", securityContext: { readOnlyRootFilesystem: false } },
                { name: "exporter", image: "exporter:1" },
              ],
            },
          },
        },
      }),
    );
    const [entry] = podTemplates([workload]);
    const pod = entry!.template.spec;
    expect(pod.automountServiceAccountToken).toBe(true);
    expect(pod.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 1000,
      fsGroup: 1000,
      seccompProfile: { type: "RuntimeDefault" },
      supplementalGroups: [2000],
    });
    expect(pod.containers.map((container) => [container.name, container.securityContext])).toEqual([
      [
        "datanode",
        { allowPrivilegeEscalation: false, readOnlyRootFilesystem: false, capabilities: { drop: ["ALL"] } },
      ],
      [
        "exporter",
        { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
      ],
    ]);
    expect(pod.containers[0]!.command).toEqual(["tributary", "datanode"]);
  });

  it("is pure: the same input builds the same objects", () => {
    const input = build({ erasureCoding: [{ path: "/cold", policy: "RS-3-2" }], dataNodes: { replicas: 5 } });
    expect(desiredChildren(input)).toEqual(desiredChildren(input));
  });
});

describe("BlockPool validation", () => {
  it("accepts the defaults", () => {
    expect(validateBlockPool(blockPoolSpecSchema.parse({}))).toEqual([]);
  });

  it("refuses a replication above the data nodes", () => {
    const problems = validateBlockPool(blockPoolSpecSchema.parse({ replication: 4 }));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.reason).toBe("InsufficientDataNodes");
    expect(problems[0]!.message).toContain("spec.replication is 4");
  });

  it("refuses an erasure-coding policy that needs more data nodes than there are", () => {
    const problems = validateBlockPool(
      blockPoolSpecSchema.parse({
        dataNodes: { replicas: 5 },
        erasureCoding: [{ path: "/cold", policy: "RS-6-3" }],
      }),
    );
    expect(problems.map((problem) => problem.reason)).toEqual(["InsufficientDataNodes"]);
    expect(problems[0]!.message).toContain(
      "spec.erasureCoding[0] (/cold) uses RS-6-3, which needs at least 9 data nodes",
    );
  });
});

describe("BlockPool status", () => {
  const statefulSet = (generation: number, status: Record<string, number>): KubeObject => ({
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: { name: "x", generation },
    status,
  });

  it("is Progressing until every role's pods are ready on the current generation, then Ready", () => {
    const waiting = statefulSetHealth(
      [
        roleState(
          "name nodes",
          2,
          statefulSet(1, { observedGeneration: 1, replicas: 2, readyReplicas: 1, updatedReplicas: 2 }),
        ),
        roleState("data nodes", 3, undefined),
      ],
      false,
    );
    expect(waiting.ready.status).toBe("False");
    expect(waiting.progressing).toMatchObject({ status: "True", reason: "WaitingForChildren" });
    expect(waiting.progressing.message).toContain("name nodes 1/2 ready");
    const stale = roleState(
      "data nodes",
      3,
      statefulSet(2, { observedGeneration: 1, replicas: 3, readyReplicas: 3, updatedReplicas: 3 }),
    );
    expect(stale.settled).toBe(false);
    const ready = statefulSetHealth(
      [
        roleState(
          "name nodes",
          2,
          statefulSet(1, { observedGeneration: 1, replicas: 2, readyReplicas: 2, updatedReplicas: 2 }),
        ),
        roleState(
          "data nodes",
          3,
          statefulSet(1, { observedGeneration: 1, replicas: 3, readyReplicas: 3, updatedReplicas: 3 }),
        ),
      ],
      false,
    );
    expect(ready.ready).toMatchObject({ status: "True", reason: "ChildrenReady" });
    expect(ready.progressing.status).toBe("False");
  });
});

describe("BlockPool rack awareness and held scale-downs", () => {
  type PodSpec = {
    volumes?: { name: string; configMap?: { name: string } }[];
    containers: {
      env: { name: string; value?: string }[];
      volumeMounts: { name: string; mountPath: string }[];
    }[];
  };
  const podSpec = (statefulSet: KubeObject) =>
    (statefulSet.spec as { template: { spec: PodSpec } }).template.spec;

  it("with rackAwareness: a <pool>-topology ConfigMap, mounted into the name nodes with its path in the environment", () => {
    const input = {
      ...build({ rackAwareness: {} }),
      topologyTable: "lake-datanode-0 /eu-west-1a\n",
    };
    const children = desiredChildren(input);
    const configMap = children.find((child) => child.kind === "ConfigMap")!;
    expect(configMap.metadata).toMatchObject({ name: "lake-topology", namespace: "data" });
    expect(configMap.metadata.ownerReferences?.[0]).toMatchObject({ kind: "BlockPool", uid: "1234-uid" });
    expect(configMap.data).toEqual({ "topology.table": "lake-datanode-0 /eu-west-1a\n" });
    // Applied before the StatefulSet whose pods mount it.
    expect(children.indexOf(configMap)).toBeLessThan(
      children.findIndex((child) => child.metadata.name === "lake-namenode" && child.kind === "StatefulSet"),
    );

    const nameNode = podSpec(nameNodeStatefulSet(input));
    expect(nameNode.volumes).toContainEqual({ name: "topology", configMap: { name: "lake-topology" } });
    expect(nameNode.containers[0]!.volumeMounts).toContainEqual({
      name: "topology",
      mountPath: "/etc/tributary/topology",
      readOnly: true,
    });
    expect(nameNode.containers[0]!.env).toContainEqual({
      name: "TRIBUTARY_TOPOLOGY_TABLE",
      value: "/etc/tributary/topology/topology.table",
    });
    // The data nodes learn their rack from the name node, not from a variable of their own.
    const dataNode = podSpec(dataNodeStatefulSet(input));
    for (const spec of [nameNode, dataNode]) {
      expect(spec.containers[0]!.env.map((variable) => variable.name)).not.toContain(
        "TRIBUTARY_RACK_TOPOLOGY_KEY",
      );
    }
    expect(dataNode.containers[0]!.env.map((variable) => variable.name)).not.toContain(
      "TRIBUTARY_TOPOLOGY_TABLE",
    );
  });

  it("without rackAwareness: no ConfigMap, nothing mounted", () => {
    const input = build({});
    expect(desiredChildren(input).some((child) => child.kind === "ConfigMap")).toBe(false);
    const nameNode = podSpec(nameNodeStatefulSet(input));
    expect((nameNode.volumes ?? []).map((volume) => volume.name)).not.toContain("topology");
  });

  it("holds the data nodes at the replicas it is given while they decommission; stopped is still 0", () => {
    const replicas = (statefulSet: KubeObject) => (statefulSet.spec as { replicas: number }).replicas;
    expect(
      replicas(dataNodeStatefulSet({ ...build({ dataNodes: { replicas: 3 } }), dataNodeReplicas: 4 })),
    ).toBe(4);
    expect(replicas(dataNodeStatefulSet(build({ dataNodes: { replicas: 3 } })))).toBe(3);
    expect(
      replicas(
        dataNodeStatefulSet({
          ...build({ dataNodes: { replicas: 3 }, clusterOperation: { stopped: true } }),
          dataNodeReplicas: 4,
        }),
      ),
    ).toBe(0);
  });
});
