/**
 * The desired children of a YarnQueue cluster, pure: the root queue's spec in, objects out.
 *
 *   <root>-resourcemanager  StatefulSet (1 pod, a claim for its state journal) and Service (REST on 8088)
 *   <root>-nodemanager      StatefulSet (spec.root.nodeManagers: count, vcores, memory; a claim each
 *                           for container work and log directories) and its headless Service
 *
 * The queue tree is not in any pod spec: the operator PUTs it to the resource manager (YARN's
 * refreshQueues), so a queue change applies live without restarting anything.
 */
import { parseQuantity } from "../../api/common.js";
import type { YarnQueueSpec } from "../../api/yarnqueue.js";
import { ownerReference } from "../../operator/apply.js";
import type { KubeObject } from "../../operator/kube.js";
import { childLabels, claimRetention, dataClaimTemplate, selectorLabels } from "../common.js";
import { mergePodTemplate } from "../podOverrides.js";
import { withPodSecurity } from "../podSecurity.js";

export const ports = { resourceManager: 8088, nodeManager: 8042 } as const;

export const resourceManagerName = (root: string) => `${root}-resourcemanager`;
export const nodeManagerName = (root: string) => `${root}-nodemanager`;

export interface YarnBuildInput {
  /** The root YarnQueue (name, namespace, uid). */
  resource: KubeObject;
  spec: YarnQueueSpec & { root: NonNullable<YarnQueueSpec["root"]> };
  image: string;
}

const mb = (quantity: string | number) => Math.floor(parseQuantity(quantity) / 1024 / 1024);

export function resourceManagerAddress(resource: KubeObject): string {
  return `${resourceManagerName(resource.metadata.name)}.${resource.metadata.namespace}.svc:${ports.resourceManager}`;
}

export function desiredChildren(input: YarnBuildInput): KubeObject[] {
  return [
    resourceManagerService(input),
    nodeManagerService(input),
    resourceManagerStatefulSet(input),
    nodeManagerStatefulSet(input),
  ];
}

function metadata(input: YarnBuildInput, name: string, component: string) {
  return {
    name,
    namespace: input.resource.metadata.namespace,
    labels: childLabels(input.resource, component),
    ownerReferences: [ownerReference(input.resource)],
  };
}

interface Role {
  component: "resourcemanager" | "nodemanager";
  replicas: number;
  resources?: unknown;
  podOverrides?: Record<string, unknown>;
  storage: { size: string | number; storageClassName?: string };
  port: number;
  env: object[];
  terminationGracePeriodSeconds: number;
}

function statefulSet(input: YarnBuildInput, name: string, role: Role): KubeObject {
  const selector = selectorLabels(input.resource, role.component);
  const template = {
    metadata: { labels: childLabels(input.resource, role.component) },
    spec: {
      terminationGracePeriodSeconds: role.terminationGracePeriodSeconds,
      containers: [
        {
          name: role.component,
          image: input.image,
          command: ["tributary", role.component],
          env: [
            { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
            { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
            ...role.env,
          ],
          ports: [{ name: "http", containerPort: role.port, protocol: "TCP" }],
          ...(role.resources ? { resources: role.resources } : {}),
          volumeMounts: [{ name: "data", mountPath: "/var/lib/tributary" }],
          readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5 },
          livenessProbe: {
            httpGet: { path: "/healthz", port: "http" },
            periodSeconds: 10,
            failureThreshold: 6,
          },
        },
      ],
    },
  };
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: metadata(input, name, role.component),
    spec: {
      replicas: input.spec.root.clusterOperation.stopped ? 0 : role.replicas,
      serviceName: name,
      podManagementPolicy: "Parallel",
      selector: { matchLabels: selector },
      // Neither role calls the API server: the resource manager is told the queues over REST.
      template: withPodSecurity(mergePodTemplate(template, role.podOverrides), { callsApiServer: false }),
      volumeClaimTemplates: [dataClaimTemplate(input.resource, role.component, role.storage)],
      persistentVolumeClaimRetentionPolicy: claimRetention(input.spec.root.deletionPolicy),
      updateStrategy: { type: "RollingUpdate" },
    },
  };
}

export function resourceManagerStatefulSet(input: YarnBuildInput): KubeObject {
  const { root } = input.spec;
  const rm = root.resourceManager as typeof root.resourceManager & { storage?: Role["storage"] };
  return statefulSet(input, resourceManagerName(input.resource.metadata.name), {
    component: "resourcemanager",
    // One resource manager: its journal is the cluster's state (a standby is not built yet).
    replicas: 1,
    resources: rm.resources,
    podOverrides: rm.podOverrides,
    storage: rm.storage ?? { size: "1Gi" },
    port: ports.resourceManager,
    terminationGracePeriodSeconds: 30,
    env: [
      { name: "TRIBUTARY_RESOURCEMANAGER_PORT", value: String(ports.resourceManager) },
      { name: "TRIBUTARY_RESOURCEMANAGER_STATE_DIR", value: "/var/lib/tributary/yarn" },
      { name: "TRIBUTARY_RESOURCEMANAGER_ADVERTISED_ADDRESS", value: resourceManagerAddress(input.resource) },
      { name: "TRIBUTARY_RESOURCEMANAGER_CLUSTER_ID", value: input.spec.cluster },
      {
        name: "TRIBUTARY_RESOURCEMANAGER_MINIMUM_ALLOCATION_MB",
        value: String(mb(root.minimumAllocation.memory)),
      },
      {
        name: "TRIBUTARY_RESOURCEMANAGER_MINIMUM_ALLOCATION_VCORES",
        value: String(root.minimumAllocation.vcores),
      },
      {
        name: "TRIBUTARY_RESOURCEMANAGER_MAXIMUM_ALLOCATION_MB",
        value: String(mb(root.maximumAllocation.memory)),
      },
      {
        name: "TRIBUTARY_RESOURCEMANAGER_MAXIMUM_ALLOCATION_VCORES",
        value: String(root.maximumAllocation.vcores),
      },
    ],
  });
}

export function nodeManagerStatefulSet(input: YarnBuildInput): KubeObject {
  const role = input.spec.root.nodeManagers;
  const name = nodeManagerName(input.resource.metadata.name);
  return statefulSet(input, name, {
    component: "nodemanager",
    replicas: role.replicas,
    resources: role.resources,
    podOverrides: role.podOverrides,
    storage: role.storage ?? { size: "10Gi" },
    port: ports.nodeManager,
    // Containers get SIGTERM, then SIGKILL 250 ms later, before the node manager exits.
    terminationGracePeriodSeconds: 30,
    env: [
      { name: "TRIBUTARY_NODEMANAGER_RESOURCE_MANAGER", value: resourceManagerAddress(input.resource) },
      { name: "TRIBUTARY_NODEMANAGER_PORT", value: String(ports.nodeManager) },
      { name: "TRIBUTARY_NODEMANAGER_VCORES", value: String(role.vcores) },
      { name: "TRIBUTARY_NODEMANAGER_MEMORY", value: String(mb(role.memory)) },
      { name: "TRIBUTARY_NODEMANAGER_LOCAL_DIR", value: "/var/lib/tributary/yarn/local" },
      { name: "TRIBUTARY_NODEMANAGER_LOG_DIR", value: "/var/lib/tributary/yarn/logs" },
      // Each node manager is reached at <pod>.<service>.<namespace>.svc.
      { name: "TRIBUTARY_NODEMANAGER_SERVICE", value: name },
    ],
  });
}

export function resourceManagerService(input: YarnBuildInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(input, resourceManagerName(input.resource.metadata.name), "resourcemanager"),
    spec: {
      type: "ClusterIP",
      selector: selectorLabels(input.resource, "resourcemanager"),
      ports: [{ name: "http", port: ports.resourceManager, targetPort: "http" }],
    },
  };
}

export function nodeManagerService(input: YarnBuildInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(input, nodeManagerName(input.resource.metadata.name), "nodemanager"),
    spec: {
      clusterIP: "None",
      // Masters reach node managers by pod name to start containers, ready or not yet.
      publishNotReadyAddresses: true,
      selector: selectorLabels(input.resource, "nodemanager"),
      ports: [{ name: "http", port: ports.nodeManager, targetPort: "http" }],
    },
  };
}
