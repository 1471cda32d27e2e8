/**
 * A Dag's children, pure: the spec as a ConfigMap the scheduler reads, the scheduler Deployment
 * and its Service (REST API), the worker Deployment, and, only when a task runs as a Kubernetes
 * Job, the workers' ServiceAccount with a Role that may create and follow Jobs in the namespace.
 */
import { createHash } from "node:crypto";
import { parseQuantity } from "../../api/common.js";
import type { DagSpec } from "../../api/dag.js";
import { defaultKeyPrefix } from "../../dataplane/dag/store.js";
import { secretEnvName } from "../../dataplane/dag/worker.js";
import { ownerReference } from "../../operator/apply.js";
import type { KubeObject, ResourceType } from "../../operator/kube.js";
import { childLabels, selectorLabels } from "../common.js";
import { mergePodTemplate } from "../podOverrides.js";
import { withPodSecurity } from "../podSecurity.js";
import { blockPoolClientLabels } from "../topic/build.js";

export const serviceAccountType: ResourceType = {
  group: "",
  version: "v1",
  kind: "ServiceAccount",
  plural: "serviceaccounts",
};
export const roleType: ResourceType = {
  group: "rbac.authorization.k8s.io",
  version: "v1",
  kind: "Role",
  plural: "roles",
};
export const roleBindingType: ResourceType = {
  group: "rbac.authorization.k8s.io",
  version: "v1",
  kind: "RoleBinding",
  plural: "rolebindings",
};

export const schedulerPort = 8080;
export const workerPort = 8080;
export const specMountPath = "/etc/tributary/dag";

export const schedulerName = (dag: string) => `${dag}-scheduler`;
export const workersName = (dag: string) => `${dag}-workers`;
export const specConfigMapName = (dag: string) => `${dag}-dag-spec`;

export interface DagBuildInput {
  resource: KubeObject;
  spec: DagSpec;
  image: string;
  /** Redis of the Dag: spec.redis.url, else the operator's default. */
  redisUrl: string;
  /** host:port of the resource manager of each YarnQueue yarnApplication tasks may name. */
  resourceManagers?: Record<string, string>;
  /** host:port of the WebHDFS of each BlockPool waitForFile tasks may name. */
  blockPools?: Record<string, string>;
}

export const keyPrefixOf = (input: Pick<DagBuildInput, "resource" | "spec">) =>
  input.spec.redis?.keyPrefix ??
  defaultKeyPrefix(input.resource.metadata.namespace ?? "default", input.resource.metadata.name);

export const needsJobs = (spec: DagSpec) =>
  spec.tasks.some(
    (task) => (task.runAs ?? (task.image ? "job" : "worker")) === "job" && !task.http && !task.platform,
  );

export function desiredChildren(input: DagBuildInput): KubeObject[] {
  const children: KubeObject[] = [specConfigMap(input), schedulerService(input), schedulerDeployment(input)];
  if (needsJobs(input.spec)) children.push(...jobRbac(input));
  children.push(workerDeployment(input));
  return children;
}

function metadata(input: DagBuildInput, name: string, component: string) {
  return {
    name,
    namespace: input.resource.metadata.namespace,
    labels: childLabels(input.resource, component),
    ownerReferences: [ownerReference(input.resource)],
  };
}

const replicas = (input: DagBuildInput, desired: number) =>
  input.spec.clusterOperation.stopped ? 0 : desired;

const specJson = (spec: DagSpec) => JSON.stringify(spec);

export function specConfigMap(input: DagBuildInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: metadata(input, specConfigMapName(input.resource.metadata.name), "scheduler"),
    data: { "spec.json": specJson(input.spec) },
  };
}

/** The connection variables both roles take, with their prefix. */
function connectionEnv(input: DagBuildInput, prefix: string) {
  const { spec } = input;
  return [
    { name: `${prefix}REDIS_URL`, value: input.redisUrl },
    ...(spec.redis?.passwordSecret
      ? [
          {
            name: `${prefix}REDIS_PASSWORD`,
            valueFrom: {
              secretKeyRef: { name: spec.redis.passwordSecret.name, key: spec.redis.passwordSecret.key },
            },
          },
        ]
      : []),
    { name: `${prefix}KEY_PREFIX`, value: keyPrefixOf(input) },
    { name: `${prefix}QUEUE_BACKEND`, value: spec.queueBackend },
    ...(spec.rabbitmq ? [{ name: `${prefix}RABBITMQ_URL`, value: spec.rabbitmq.url }] : []),
    ...(spec.rabbitmq?.passwordSecret
      ? [
          {
            name: `${prefix}RABBITMQ_PASSWORD`,
            valueFrom: {
              secretKeyRef: {
                name: spec.rabbitmq.passwordSecret.name,
                key: spec.rabbitmq.passwordSecret.key,
              },
            },
          },
        ]
      : []),
    { name: `${prefix}IDENTITY`, valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    { name: `${prefix}DAG`, value: input.resource.metadata.name },
    { name: `${prefix}HEARTBEAT_SECONDS`, value: String(spec.workers.heartbeatSeconds) },
  ];
}

export function schedulerService(input: DagBuildInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(input, schedulerName(input.resource.metadata.name), "scheduler"),
    spec: {
      selector: selectorLabels(input.resource, "scheduler"),
      ports: [{ name: "http", port: schedulerPort, targetPort: "http", protocol: "TCP" }],
    },
  };
}

export function schedulerDeployment(input: DagBuildInput): KubeObject {
  const { resource, spec } = input;
  const prefix = "TRIBUTARY_DAG_SCHEDULER_";
  const template = {
    metadata: {
      labels: childLabels(resource, "scheduler"),
      // The scheduler reads the spec once at start: a new spec rolls it.
      annotations: {
        "tributary.dev/spec-hash": createHash("sha256").update(specJson(spec)).digest("hex").slice(0, 16),
      },
    },
    spec: {
      terminationGracePeriodSeconds: 30,
      containers: [
        {
          name: "scheduler",
          image: input.image,
          args: ["dag-scheduler"],
          env: [
            ...connectionEnv(input, prefix),
            { name: `${prefix}SPEC_FILE`, value: `${specMountPath}/spec.json` },
            { name: `${prefix}PORT`, value: String(schedulerPort) },
            ...(resource.metadata.creationTimestamp
              ? [{ name: `${prefix}CREATED_AT`, value: resource.metadata.creationTimestamp }]
              : []),
          ],
          ports: [{ name: "http", containerPort: schedulerPort, protocol: "TCP" }],
          ...(spec.scheduler.resources ? { resources: spec.scheduler.resources } : {}),
          // Ready while it is the Dag's active scheduler.
          readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5 },
          livenessProbe: {
            httpGet: { path: "/healthz", port: "http" },
            periodSeconds: 10,
            failureThreshold: 6,
          },
          volumeMounts: [{ name: "spec", mountPath: specMountPath, readOnly: true }],
        },
      ],
      volumes: [{ name: "spec", configMap: { name: specConfigMapName(resource.metadata.name) } }],
    },
  };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: metadata(input, schedulerName(resource.metadata.name), "scheduler"),
    spec: {
      replicas: replicas(input, 1),
      selector: { matchLabels: selectorLabels(resource, "scheduler") },
      // The old scheduler stops before the new starts; should one linger (a partitioned node),
      // the new one's epoch refuses its writes.
      strategy: { type: "Recreate" },
      template: withPodSecurity(mergePodTemplate(template, spec.scheduler.podOverrides), {
        callsApiServer: false,
      }),
    },
  };
}

/** V8's old space at three quarters of the worker's memory limit (256 MiB without one). */
export function workerHeapMiB(spec: DagSpec): number {
  const limit = spec.workers.resources?.limits?.memory;
  if (limit === undefined) return 256;
  return Math.max(64, Math.floor((parseQuantity(limit) * 0.75) / (1024 * 1024)));
}

/** A variable holding `map` as JSON; none for an empty or absent map. */
const jsonEnv = (name: string, map: Record<string, string> | undefined) =>
  map && Object.keys(map).length > 0 ? [{ name, value: JSON.stringify(map) }] : [];

/** The pools waitForFile tasks name: the worker pods carry the client label of the first. */
const sensedPools = (spec: DagSpec) => [
  ...new Set(
    spec.tasks.flatMap((task) => (task.platform?.waitForFile ? [task.platform.waitForFile.blockPool] : [])),
  ),
];

export function workerDeployment(input: DagBuildInput): KubeObject {
  const { resource, spec } = input;
  const prefix = "TRIBUTARY_WORKER_";
  const jobs = needsJobs(spec);
  // Secrets of tasks that run in the worker reach it as variables the task's env then names.
  const secretRefs = new Map<string, { name: string; key: string }>();
  for (const task of spec.tasks) {
    if ((task.runAs ?? (task.image ? "job" : "worker")) !== "worker") continue;
    for (const variable of task.env ?? []) {
      if (variable.secretKeyRef)
        secretRefs.set(
          secretEnvName(variable.secretKeyRef.name, variable.secretKeyRef.key),
          variable.secretKeyRef,
        );
    }
  }
  const template = {
    // A BlockPool's NetworkPolicy admits pods labelled as its clients; a label holds one pool.
    metadata: {
      labels: { ...childLabels(resource, "worker"), ...blockPoolClientLabels(sensedPools(spec)[0]) },
    },
    spec: {
      // Running tries are killed on SIGTERM and retried elsewhere once their heartbeat expires.
      terminationGracePeriodSeconds: 30,
      // Always named: left out, the API server's copy in the deprecated serviceAccount field
      // would bring the Job identity back after the last Job task is gone.
      serviceAccountName: jobs ? workersName(resource.metadata.name) : "default",
      containers: [
        {
          name: "worker",
          image: input.image,
          args: ["worker"],
          env: [
            ...connectionEnv(input, prefix),
            { name: `${prefix}QUEUES`, value: spec.workers.queues.join(",") },
            { name: `${prefix}CONCURRENCY`, value: String(spec.workers.concurrency) },
            { name: `${prefix}MAX_RESULT_BYTES`, value: String(spec.workers.maxResultBytes) },
            { name: `${prefix}LOG_LINES_PER_TRY`, value: String(spec.workers.logLinesPerTry) },
            { name: `${prefix}PORT`, value: String(workerPort) },
            { name: `${prefix}NAMESPACE`, valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
            { name: `${prefix}JOBS`, value: String(jobs) },
            { name: `${prefix}JOB_IMAGE`, value: input.image },
            ...jsonEnv(`${prefix}RESOURCE_MANAGERS`, input.resourceManagers),
            ...jsonEnv(`${prefix}BLOCK_POOLS`, input.blockPools),
            { name: "NODE_OPTIONS", value: `--max-old-space-size=${workerHeapMiB(spec)}` },
            ...[...secretRefs].map(([name, ref]) => ({
              name,
              valueFrom: { secretKeyRef: { name: ref.name, key: ref.key } },
            })),
          ],
          ports: [{ name: "http", containerPort: workerPort, protocol: "TCP" }],
          ...(spec.workers.resources ? { resources: spec.workers.resources } : {}),
          readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5 },
          livenessProbe: {
            httpGet: { path: "/healthz", port: "http" },
            periodSeconds: 10,
            failureThreshold: 6,
          },
          // Tries run in scratch directories here; the root filesystem stays read-only.
          volumeMounts: [{ name: "scratch", mountPath: "/tmp" }],
        },
      ],
      volumes: [{ name: "scratch", emptyDir: {} }],
    },
  };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: metadata(input, workersName(resource.metadata.name), "worker"),
    spec: {
      replicas: replicas(input, spec.workers.replicas),
      selector: { matchLabels: selectorLabels(resource, "worker") },
      template: withPodSecurity(mergePodTemplate(template, spec.workers.podOverrides), {
        callsApiServer: jobs,
      }),
    },
  };
}

/** The workers' identity when tasks run as Jobs: create and follow Jobs, read their pods' logs. */
export function jobRbac(input: DagBuildInput): KubeObject[] {
  const name = workersName(input.resource.metadata.name);
  return [
    { apiVersion: "v1", kind: "ServiceAccount", metadata: metadata(input, name, "worker") },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: metadata(input, name, "worker"),
      rules: [
        { apiGroups: ["batch"], resources: ["jobs"], verbs: ["create", "get", "list", "watch", "delete"] },
        { apiGroups: [""], resources: ["pods"], verbs: ["get", "list"] },
        { apiGroups: [""], resources: ["pods/log"], verbs: ["get"] },
      ],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: metadata(input, name, "worker"),
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
      subjects: [{ kind: "ServiceAccount", name, namespace: input.resource.metadata.namespace }],
    },
  ];
}
