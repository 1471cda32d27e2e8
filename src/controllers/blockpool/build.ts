/**
 * The desired children of a BlockPool, pure: spec in, Kubernetes objects out.
 *
 *   <name>-namenode   StatefulSet (active + standby), headless Service, PodDisruptionBudget
 *   <name>-datanode   StatefulSet (one PVC per pod), headless Service, PodDisruptionBudget
 *   <name>            client Service: WebHDFS and RPC of the name nodes
 *   <name>-namenode-edits  ReadWriteMany claim for the shared edit log (with two name nodes)
 *   <name>-topology  ConfigMap: each data-node pod's rack, mounted into the name nodes (with rackAwareness)
 *
 * The Secret `<name>-cluster-secret` both roles mount is not built here: it is created once
 * with random bytes (clusterSecret.ts), never applied.
 */
import type { BlockPoolSpec } from "../../api/blockpool.js";
import { parseQuantity } from "../../api/common.js";
import { ownerReference } from "../../operator/apply.js";
import type { KubeObject } from "../../operator/kube.js";
import { childLabels, claimRetention, dataClaimTemplate, instanceLabels, selectorLabels } from "../common.js";
import { mergePodTemplate } from "../podOverrides.js";
import { withPodSecurity } from "../podSecurity.js";
import { clusterSecretKey, clusterSecretMountPath, clusterSecretName } from "./clusterSecret.js";
import { topologyConfigMapName, topologyMountPath, topologyTableKey } from "./topology.js";

export const ports = {
  /** Client and data-node RPC of the name node (HDFS's 8020). */
  nameNodeRpc: 8020,
  /** Block transfer between clients and data nodes (HDFS's 9866). */
  dataTransfer: 9866,
  /** Health, metrics and the data node's HTTP API (HDFS's 9864). */
  dataNodeHttp: 9864,
} as const;

export interface BlockPoolBuildInput {
  /** The stored BlockPool (name, namespace, uid for owner references). */
  resource: KubeObject;
  spec: BlockPoolSpec;
  /** The data-plane image, from the operator's --image. */
  image: string;
  /**
   * Data-node replicas to apply instead of spec.dataNodes.replicas: the current count, held
   * while the pods a scale-down removes are decommissioned (see decommission.ts).
   */
  dataNodeReplicas?: number;
  /** The rack table (topology.ts) for the `<name>-topology` ConfigMap; used with spec.rackAwareness. */
  topologyTable?: string;
  /** The operator's namespace, whose operator pods the NetworkPolicy admits; unset, any namespace's. */
  operatorNamespace?: string | undefined;
}

export const nameNodeName = (pool: string) => `${pool}-namenode`;
export const dataNodeName = (pool: string) => `${pool}-datanode`;

export function desiredChildren(input: BlockPoolBuildInput): KubeObject[] {
  return [
    ...(input.spec.rackAwareness ? [topologyConfigMap(input)] : []),
    nameNodeService(input),
    dataNodeService(input),
    clientService(input),
    nameNodeStatefulSet(input),
    dataNodeStatefulSet(input),
    disruptionBudget(input, "namenode"),
    disruptionBudget(input, "datanode"),
    ...(input.spec.nameNodes.replicas > 1 ? [sharedEditsClaim(input)] : []),
    ...(input.spec.networkPolicy.enabled ? [networkPolicy(input)] : []),
  ];
}

/** The label that makes a pod of the pool's namespace one of its clients, its value the pool's name. */
export const blockPoolClientLabel = "tributary.dev/blockpool-client";
export const networkPolicyName = (pool: string) => `${pool}-access`;

/**
 * Who may connect to the pool's name and data nodes: the pool's own pods (pipelines,
 * re-replication, heartbeats), the operator's pods (status, decommissioning), pods of the pool's
 * namespace labelled as its clients, and the spec's allowFrom. Everything else is refused by a
 * network plugin that enforces NetworkPolicy. Kubelet probes come from the node and are not
 * subject to it on the common plugins.
 */
export function networkPolicy(input: BlockPoolBuildInput): KubeObject {
  const pool = input.resource.metadata.name;
  const operatorPods = {
    podSelector: {
      matchLabels: { "app.kubernetes.io/component": "operator", "app.kubernetes.io/part-of": "tributary" },
    },
    namespaceSelector: input.operatorNamespace
      ? { matchLabels: { "kubernetes.io/metadata.name": input.operatorNamespace } }
      : {},
  };
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: metadata(input, networkPolicyName(pool), "access"),
    spec: {
      podSelector: { matchLabels: instanceLabels(input.resource) },
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [
            { podSelector: { matchLabels: instanceLabels(input.resource) } },
            operatorPods,
            { podSelector: { matchLabels: { [blockPoolClientLabel]: pool } } },
            ...input.spec.networkPolicy.allowFrom,
          ],
        },
      ],
    },
  };
}

/** Each data-node pod's rack, one `<pod> /<rack>` line each, for the name nodes' block placement. */
export function topologyConfigMap(input: BlockPoolBuildInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: metadata(input, topologyConfigMapName(input.resource.metadata.name), "namenode"),
    data: { [topologyTableKey]: input.topologyTable ?? "" },
  };
}

export const sharedEditsClaimName = (pool: string) => `${pool}-namenode-edits`;

/**
 * The edit log the active name node writes and the standby tails, with the fencing epoch beside
 * it: one ReadWriteMany volume mounted by both name nodes (HDFS's shared-edits directory). Each
 * name node's own volume cannot serve: two name nodes on two logs would both become active.
 * deletionPolicy Retain keeps it (no owner reference) as it keeps the per-pod claims.
 */
export function sharedEditsClaim(input: BlockPoolBuildInput): KubeObject {
  const name = sharedEditsClaimName(input.resource.metadata.name);
  const { ownerReferences, ...withoutOwner } = metadata(input, name, "namenode");
  const storage = input.spec.nameNodes.sharedEdits;
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: input.spec.deletionPolicy === "Delete" ? { ...withoutOwner, ownerReferences } : withoutOwner,
    spec: {
      accessModes: ["ReadWriteMany"],
      resources: { requests: { storage: String(storage.size) } },
      ...(storage.storageClassName ? { storageClassName: storage.storageClassName } : {}),
    },
  };
}

function metadata(input: BlockPoolBuildInput, name: string, component: string) {
  return {
    name,
    namespace: input.resource.metadata.namespace,
    labels: childLabels(input.resource, component),
    ownerReferences: [ownerReference(input.resource)],
  };
}

/** Settings every data-plane process of the pool reads, so name and data nodes agree. */
function poolEnvironment(input: BlockPoolBuildInput) {
  const { spec, resource } = input;
  const namespace = resource.metadata.namespace;
  const nameNodes = Array.from(
    { length: spec.nameNodes.replicas },
    (_, ordinal) =>
      `${nameNodeName(resource.metadata.name)}-${ordinal}.${nameNodeName(resource.metadata.name)}.${namespace}.svc:${ports.nameNodeRpc}`,
  );
  return [
    { name: "TRIBUTARY_BLOCKPOOL", value: resource.metadata.name },
    { name: "TRIBUTARY_NAMENODES", value: nameNodes.join(",") },
    { name: "TRIBUTARY_REPLICATION", value: String(spec.replication) },
    // The roles take bytes; the spec may say "128Mi".
    { name: "TRIBUTARY_BLOCK_SIZE", value: String(parseQuantity(spec.blockSize)) },
    { name: "TRIBUTARY_ERASURE_CODING", value: JSON.stringify(spec.erasureCoding) },
    { name: "TRIBUTARY_QUOTAS", value: JSON.stringify(spec.quotas) },
    { name: "TRIBUTARY_WEBHDFS_PORT", value: String(spec.webHdfs.port) },
    { name: "TRIBUTARY_PERMISSIONS_ENABLED", value: String(spec.permissions.enabled) },
    { name: "TRIBUTARY_SUPERUSERS", value: spec.permissions.superusers.join(",") },
    { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
  ];
}

/**
 * Spreads a role's pods across nodes. Preferred, not required: a development cluster with
 * fewer nodes than pods must still run, and the scheduler spreads whenever it can.
 */
function spreadAcrossNodes(labels: Record<string, string>) {
  return {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        {
          weight: 100,
          podAffinityTerm: { labelSelector: { matchLabels: labels }, topologyKey: "kubernetes.io/hostname" },
        },
      ],
    },
  };
}

interface Role {
  component: "namenode" | "datanode";
  replicas: number;
  resources?: unknown;
  podOverrides?: Record<string, unknown>;
  storage: { size: string | number; storageClassName?: string };
  containerPorts: { name: string; containerPort: number }[];
  httpPort: string;
  /** A claim mounted over the name directory, shared by the active and the standby. */
  sharedEditsClaim?: string;
  /** The rack table ConfigMap, mounted for the name node to read (with rackAwareness). */
  topologyConfigMap?: string;
}

function statefulSet(input: BlockPoolBuildInput, name: string, role: Role): KubeObject {
  const { spec } = input;
  const selector = selectorLabels(input.resource, role.component);
  const volumes = [
    // Read-only to the pod's group (fsGroup, see podSecurity.ts), which the role runs in.
    {
      name: "cluster-secret",
      secret: {
        secretName: clusterSecretName(input.resource.metadata.name),
        items: [{ key: clusterSecretKey, path: clusterSecretKey }],
        defaultMode: 0o440,
      },
    },
    ...(role.sharedEditsClaim
      ? [{ name: "shared-edits", persistentVolumeClaim: { claimName: role.sharedEditsClaim } }]
      : []),
    // Not subPath: the kubelet updates a whole-volume mount in place when the ConfigMap changes.
    ...(role.topologyConfigMap ? [{ name: "topology", configMap: { name: role.topologyConfigMap } }] : []),
  ];
  const generatedTemplate = {
    metadata: { labels: childLabels(input.resource, role.component) },
    spec: {
      affinity: spreadAcrossNodes(selector),
      // Block and edit-log writes finish before the process exits on SIGTERM.
      terminationGracePeriodSeconds: 60,
      volumes,
      containers: [
        {
          name: role.component,
          image: input.image,
          command: ["tributary", role.component],
          env: [
            ...poolEnvironment(input),
            { name: "TRIBUTARY_CLUSTER_SECRET_FILE", value: `${clusterSecretMountPath}/${clusterSecretKey}` },
            ...(role.topologyConfigMap
              ? [{ name: "TRIBUTARY_TOPOLOGY_TABLE", value: `${topologyMountPath}/${topologyTableKey}` }]
              : []),
          ],
          ports: role.containerPorts.map((port) => ({ ...port, protocol: "TCP" })),
          ...(role.resources ? { resources: role.resources } : {}),
          volumeMounts: [
            { name: "data", mountPath: "/var/lib/tributary" },
            { name: "cluster-secret", mountPath: clusterSecretMountPath, readOnly: true },
            ...(role.sharedEditsClaim
              ? [{ name: "shared-edits", mountPath: "/var/lib/tributary/name" }]
              : []),
            ...(role.topologyConfigMap
              ? [{ name: "topology", mountPath: topologyMountPath, readOnly: true }]
              : []),
          ],
          readinessProbe: { httpGet: { path: "/readyz", port: role.httpPort }, periodSeconds: 5 },
          livenessProbe: {
            httpGet: { path: "/healthz", port: role.httpPort },
            periodSeconds: 10,
            failureThreshold: 6,
          },
        },
      ],
    },
  };
  const stopped = spec.clusterOperation.stopped;
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: metadata(input, name, role.component),
    spec: {
      // `stopped` scales to zero; the claims stay, so starting again finds the data.
      replicas: stopped ? 0 : role.replicas,
      serviceName: name,
      // Name nodes and data nodes find each other through the registry, not by start order.
      podManagementPolicy: "Parallel",
      selector: { matchLabels: selector },
      // Name and data nodes talk to each other and their clients, never to the API server.
      template: withPodSecurity(mergePodTemplate(generatedTemplate, role.podOverrides), {
        callsApiServer: false,
      }),
      volumeClaimTemplates: [dataClaimTemplate(input.resource, role.component, role.storage)],
      persistentVolumeClaimRetentionPolicy: claimRetention(spec.deletionPolicy),
      updateStrategy: { type: "RollingUpdate" },
    },
  };
}

/**
 * The role's storage. The API's role type is a union (roles with and without storage), so the
 * field is read through this guard; the schema's default fills it in practice.
 */
function storageOf(role: object, fallbackSize: string): Role["storage"] {
  const storage = (role as { storage?: Role["storage"] }).storage;
  return storage ?? { size: fallbackSize };
}

export function nameNodeStatefulSet(input: BlockPoolBuildInput): KubeObject {
  const role = input.spec.nameNodes;
  return statefulSet(input, nameNodeName(input.resource.metadata.name), {
    component: "namenode",
    replicas: role.replicas,
    resources: role.resources,
    podOverrides: role.podOverrides,
    storage: storageOf(role, "5Gi"),
    containerPorts: [
      { name: "rpc", containerPort: ports.nameNodeRpc },
      { name: "http", containerPort: input.spec.webHdfs.port },
    ],
    httpPort: "http",
    ...(role.replicas > 1 ? { sharedEditsClaim: sharedEditsClaimName(input.resource.metadata.name) } : {}),
    ...(input.spec.rackAwareness
      ? { topologyConfigMap: topologyConfigMapName(input.resource.metadata.name) }
      : {}),
  });
}

export function dataNodeStatefulSet(input: BlockPoolBuildInput): KubeObject {
  const role = input.spec.dataNodes;
  return statefulSet(input, dataNodeName(input.resource.metadata.name), {
    component: "datanode",
    replicas: input.dataNodeReplicas ?? role.replicas,
    resources: role.resources,
    podOverrides: role.podOverrides,
    storage: storageOf(role, "10Gi"),
    containerPorts: [
      { name: "transfer", containerPort: ports.dataTransfer },
      { name: "http", containerPort: ports.dataNodeHttp },
    ],
    httpPort: "http",
  });
}

function headlessService(
  input: BlockPoolBuildInput,
  name: string,
  component: string,
  servicePorts: object[],
) {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(input, name, component),
    spec: {
      clusterIP: "None",
      // Peers must resolve each other before they are ready: the standby finds the active,
      // data nodes register with a name node that is still starting.
      publishNotReadyAddresses: true,
      selector: selectorLabels(input.resource, component),
      ports: servicePorts,
    },
  };
}

export function nameNodeService(input: BlockPoolBuildInput): KubeObject {
  return headlessService(input, nameNodeName(input.resource.metadata.name), "namenode", [
    { name: "rpc", port: ports.nameNodeRpc, targetPort: "rpc" },
    { name: "http", port: input.spec.webHdfs.port, targetPort: "http" },
  ]);
}

export function dataNodeService(input: BlockPoolBuildInput): KubeObject {
  return headlessService(input, dataNodeName(input.resource.metadata.name), "datanode", [
    { name: "transfer", port: ports.dataTransfer, targetPort: "transfer" },
    { name: "http", port: ports.dataNodeHttp, targetPort: "http" },
  ]);
}

/**
 * The address clients use. It selects both name nodes; only the active one reports ready
 * (the standby's /readyz fails), so the Service routes to the active and follows a failover.
 */
export function clientService(input: BlockPoolBuildInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(input, input.resource.metadata.name, "namenode"),
    spec: {
      type: "ClusterIP",
      selector: selectorLabels(input.resource, "namenode"),
      ports: [
        { name: "webhdfs", port: input.spec.webHdfs.port, targetPort: "http" },
        { name: "rpc", port: ports.nameNodeRpc, targetPort: "rpc" },
      ],
    },
  };
}

/**
 * At most one pod of a role down for voluntary disruptions (drains, upgrades): the other
 * name node stays to take over, and with replication >= 2 every block keeps a live copy.
 */
export function disruptionBudget(input: BlockPoolBuildInput, component: "namenode" | "datanode"): KubeObject {
  const name =
    component === "namenode"
      ? nameNodeName(input.resource.metadata.name)
      : dataNodeName(input.resource.metadata.name);
  return {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: metadata(input, name, component),
    spec: { maxUnavailable: 1, selector: { matchLabels: selectorLabels(input.resource, component) } },
  };
}

export function webHdfsEndpoint(input: BlockPoolBuildInput): string {
  const { name, namespace } = input.resource.metadata;
  return `http://${name}.${namespace}.svc:${input.spec.webHdfs.port}/webhdfs/v1`;
}
