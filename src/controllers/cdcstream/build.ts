/**
 * The desired children of a CDCStream, pure: spec in, Kubernetes objects out.
 *
 *   <name>-connector            StatefulSet of exactly one `tributary cdc` pod, a small PVC for its state
 *   <name>-connector            headless Service: the pod's stable DNS name the operator polls
 *   <name>-snapshot-<minutes>   Job of `tributary cdc-snapshot` at each scheduled time (snapshotJob)
 *
 * One pod, never more: a replication slot has one consumer, and a StatefulSet (unlike a
 * Deployment's surge) never runs the replacement beside the pod it replaces. No
 * PodDisruptionBudget: for a single pod it can only forbid every drain (minAvailable 1) or allow
 * every one (maxUnavailable 1), and a connector resumes from its slot after a move.
 *
 * The database password reaches the pod as a `secretKeyRef` variable, never as a value in a spec.
 */

import { createHash } from "node:crypto";
import type { CDCStreamSpec } from "../../api/cdcstream.js";
import type { BlockPoolPath } from "../../api/common.js";
import { ownerReference } from "../../operator/apply.js";
import type { KubeObject, ResourceType } from "../../operator/kube.js";
import { childLabels, selectorLabels } from "../common.js";
import { mergePodTemplate } from "../podOverrides.js";
import { withPodSecurity } from "../podSecurity.js";
import {
  blockPoolClientLabels,
  blockPoolWebHdfsAddress,
  blockPoolWebHdfsPort,
  kafkaSecurityPodParts,
} from "../topic/build.js";

export const jobType: ResourceType = { group: "batch", version: "v1", kind: "Job", plural: "jobs" };

export interface CdcBuildInput {
  /** The stored CDCStream (name, namespace, uid for owner references). */
  resource: KubeObject;
  spec: CDCStreamSpec;
  /** The data-plane image, from the operator's --image. */
  image: string;
  /** Bootstrap brokers: spec.target.kafka's or the operator's default cluster. */
  brokers: readonly string[];
}

export const connectorName = (stream: string) => `${stream}-connector`;
/** The connector's HTTP port: /healthz, /readyz, /metrics, /status, /snapshots. */
export const connectorHttpPort = 8080;
/** Where the connector keeps its state (schema history, pending ad hoc snapshots). */
export const connectorStateDir = "/var/lib/tributary/cdc";
export const sslRootCertMountPath = "/etc/tributary/postgres/ca";
export const snapshotMountPath = "/var/lib/tributary/snapshot";

/**
 * `tributary_<namespace>_<name>` folded to what PostgreSQL accepts as a slot or publication name
 * (lower case, digits, underscore, 63 bytes); a long one keeps a hash of the whole so two streams
 * never share a slot.
 */
export function defaultPgName(resource: KubeObject): string {
  const raw = `tributary_${resource.metadata.namespace ?? ""}_${resource.metadata.name}`;
  const folded = raw.toLowerCase().replace(/[^a-z0-9_]/g, "_");
  if (folded.length <= 63) return folded;
  const hash = createHash("sha256").update(raw).digest("hex").slice(0, 8);
  return `${folded.slice(0, 54)}_${hash}`;
}

export const slotNameOf = (input: Pick<CdcBuildInput, "resource" | "spec">) =>
  input.spec.source.postgres.slotName ?? defaultPgName(input.resource);
export const publicationNameOf = (input: Pick<CdcBuildInput, "resource" | "spec">) =>
  input.spec.source.postgres.publicationName ?? defaultPgName(input.resource);

function metadata(input: CdcBuildInput, name: string, component: string) {
  return {
    name,
    namespace: input.resource.metadata.namespace,
    labels: childLabels(input.resource, component),
    ownerReferences: [ownerReference(input.resource)],
  };
}

/** The database settings both roles read, under their own prefix. */
function postgresEnv(input: CdcBuildInput, prefix: string) {
  const pg = input.spec.source.postgres;
  const secret = pg.credentialsSecret.name;
  return [
    { name: `${prefix}PG_HOST`, value: pg.host },
    { name: `${prefix}PG_PORT`, value: String(pg.port) },
    { name: `${prefix}PG_DATABASE`, value: pg.database },
    { name: `${prefix}PG_USER`, valueFrom: { secretKeyRef: { name: secret, key: "username" } } },
    { name: `${prefix}PG_PASSWORD`, valueFrom: { secretKeyRef: { name: secret, key: "password" } } },
    { name: `${prefix}PG_SSL_MODE`, value: pg.sslMode },
    ...(pg.sslRootCertSecret
      ? [{ name: `${prefix}PG_SSL_ROOT_CERT_FILE`, value: `${sslRootCertMountPath}/ca.crt` }]
      : []),
    ...(pg.tables.include ? [{ name: `${prefix}TABLES_INCLUDE`, value: pg.tables.include.join(",") }] : []),
    ...(pg.tables.exclude ? [{ name: `${prefix}TABLES_EXCLUDE`, value: pg.tables.exclude.join(",") }] : []),
  ];
}

function sslRootCertParts(input: CdcBuildInput) {
  const ca = input.spec.source.postgres.sslRootCertSecret;
  if (!ca) return { volumes: [], volumeMounts: [] };
  return {
    volumes: [{ name: "pg-ca", secret: { secretName: ca.name, items: [{ key: ca.key, path: "ca.crt" }] } }],
    volumeMounts: [{ name: "pg-ca", mountPath: sslRootCertMountPath, readOnly: true }],
  };
}

export function desiredChildren(input: CdcBuildInput): KubeObject[] {
  return [connectorService(input), connectorStatefulSet(input)];
}

export function connectorService(input: CdcBuildInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(input, connectorName(input.resource.metadata.name), "connector"),
    spec: {
      clusterIP: "None",
      // The operator reads /status from a pod that is not ready yet (snapshotting, failing).
      publishNotReadyAddresses: true,
      selector: selectorLabels(input.resource, "connector"),
      ports: [{ name: "http", port: connectorHttpPort, targetPort: "http", protocol: "TCP" }],
    },
  };
}

export function connectorStatefulSet(input: CdcBuildInput): KubeObject {
  const { resource, spec } = input;
  const name = connectorName(resource.metadata.name);
  const prefix = "TRIBUTARY_CDC_";
  const kafkaSecurity = kafkaSecurityPodParts(spec.target.kafka, prefix);
  const ca = sslRootCertParts(input);
  const env = [
    { name: `${prefix}NAME`, value: `${resource.metadata.namespace}/${resource.metadata.name}` },
    ...postgresEnv(input, prefix),
    { name: `${prefix}PUBLICATION`, value: publicationNameOf(input) },
    { name: `${prefix}SLOT`, value: slotNameOf(input) },
    { name: `${prefix}BEFORE_IMAGES`, value: String(spec.source.postgres.beforeImages) },
    { name: `${prefix}TOPIC_PREFIX`, value: spec.target.topicPrefix },
    { name: `${prefix}PARTITIONS`, value: String(spec.target.partitions) },
    { name: `${prefix}REPLICATION_FACTOR`, value: String(spec.target.replicationFactor) },
    { name: `${prefix}FORMAT`, value: spec.target.format },
    { name: `${prefix}SNAPSHOT_MODE`, value: spec.snapshot.mode },
    { name: `${prefix}SNAPSHOT_TO_TOPICS`, value: String(spec.snapshot.toTopics) },
    { name: `${prefix}FETCH_SIZE`, value: String(spec.snapshot.fetchSize) },
    { name: `${prefix}HEARTBEAT_INTERVAL_SECONDS`, value: String(spec.heartbeatIntervalSeconds) },
    { name: `${prefix}MAX_BATCH_SIZE`, value: String(spec.maxBatchSize) },
    { name: `${prefix}KAFKA_BOOTSTRAP`, value: input.brokers.join(",") },
    ...kafkaSecurity.env,
    { name: `${prefix}STATE_DIR`, value: connectorStateDir },
    { name: `${prefix}HTTP_PORT`, value: String(connectorHttpPort) },
  ];
  const generatedTemplate = {
    metadata: { labels: childLabels(resource, "connector") },
    spec: {
      // The connector confirms what Kafka acknowledged and closes its slot connection on SIGTERM.
      terminationGracePeriodSeconds: 30,
      containers: [
        {
          name: "connector",
          image: input.image,
          args: ["cdc"],
          env,
          ports: [{ name: "http", containerPort: connectorHttpPort, protocol: "TCP" }],
          ...(spec.connector.resources ? { resources: spec.connector.resources } : {}),
          volumeMounts: [
            { name: "state", mountPath: connectorStateDir },
            ...ca.volumeMounts,
            ...kafkaSecurity.volumeMounts,
          ],
          // Ready while streaming: `kubectl rollout status` then means changes flow.
          readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5 },
          livenessProbe: {
            httpGet: { path: "/healthz", port: "http" },
            periodSeconds: 10,
            failureThreshold: 6,
          },
        },
      ],
      volumes: [...ca.volumes, ...kafkaSecurity.volumes],
    },
  };
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: metadata(input, name, "connector"),
    spec: {
      // Exactly one: two pods would fight over the one slot. `stopped` scales to zero, slot kept.
      replicas: spec.clusterOperation.stopped ? 0 : 1,
      serviceName: name,
      selector: { matchLabels: selectorLabels(resource, "connector") },
      // The connector talks to PostgreSQL and Kafka, never to the API server.
      template: withPodSecurity(mergePodTemplate(generatedTemplate, spec.connector.podOverrides), {
        callsApiServer: false,
      }),
      volumeClaimTemplates: [
        {
          metadata: { name: "state", labels: childLabels(resource, "connector") },
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
        },
      ],
      // The state is a cache of what the slot and Kafka hold: it goes with the stream.
      persistentVolumeClaimRetentionPolicy: { whenDeleted: "Delete", whenScaled: "Retain" },
      updateStrategy: { type: "RollingUpdate" },
    },
  };
}

/** One Job per scheduled time, named by it, so a second create for the same time is refused. */
export const snapshotJobName = (stream: string, time: Date) =>
  `${stream}-snapshot-${Math.floor(time.getTime() / 60_000)}`;

export interface SnapshotJobInput extends CdcBuildInput {
  /** The scheduled time this Job takes the snapshot for. */
  time: Date;
  /** spec.webHdfs.port of the target BlockPool, read by the reconcile; 9870 when absent. */
  webHdfsPort?: number;
}

function fileTargetEnv(
  files: { blockPool?: BlockPoolPath; volume?: { claimName: string; subPath: string } },
  namespace: string | undefined,
  port: number | undefined,
) {
  const prefix = "TRIBUTARY_CDC_SNAPSHOT_";
  if (files.volume) {
    const sub = files.volume.subPath.replace(/\/+$/, "");
    return [{ name: `${prefix}TARGET_DIR`, value: sub ? `${snapshotMountPath}/${sub}` : snapshotMountPath }];
  }
  return [
    {
      name: `${prefix}TARGET_WEBHDFS`,
      value: blockPoolWebHdfsAddress(files.blockPool!.blockPool, namespace, port ?? blockPoolWebHdfsPort),
    },
    { name: `${prefix}TARGET_PATH`, value: files.blockPool!.path },
  ];
}

/**
 * The Job of one scheduled snapshot to files: `tributary cdc-snapshot` reads every captured table
 * in one REPEATABLE READ transaction and writes `_manifest.json` last; its summary comes back as
 * the container's termination message, which the operator copies into status.snapshots.
 */
export function snapshotJob(input: SnapshotJobInput): KubeObject {
  const { resource, spec, time } = input;
  const files = spec.snapshot.files!;
  const prefix = "TRIBUTARY_CDC_SNAPSHOT_";
  const ca = sslRootCertParts(input);
  const env = [
    { name: `${prefix}NAME`, value: `${resource.metadata.namespace}/${resource.metadata.name}` },
    ...postgresEnv(input, prefix),
    { name: `${prefix}FORMAT`, value: files.format },
    ...fileTargetEnv(files, resource.metadata.namespace, input.webHdfsPort),
    { name: `${prefix}FETCH_SIZE`, value: String(spec.snapshot.fetchSize) },
    { name: `${prefix}SNAPSHOT_TIME`, value: time.toISOString() },
  ];
  const generatedTemplate = {
    metadata: {
      labels: { ...childLabels(resource, "snapshot"), ...blockPoolClientLabels(files.blockPool?.blockPool) },
    },
    spec: {
      restartPolicy: "Never",
      containers: [
        {
          name: "snapshot",
          image: input.image,
          args: ["cdc-snapshot"],
          env,
          ...(spec.connector.resources ? { resources: spec.connector.resources } : {}),
          terminationMessagePolicy: "File",
          volumeMounts: [
            ...(files.volume ? [{ name: "target", mountPath: snapshotMountPath }] : []),
            ...ca.volumeMounts,
          ],
        },
      ],
      volumes: [
        ...(files.volume
          ? [{ name: "target", persistentVolumeClaim: { claimName: files.volume.claimName } }]
          : []),
        ...ca.volumes,
      ],
    },
  };
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: metadata(input, snapshotJobName(resource.metadata.name, time), "snapshot"),
    spec: {
      // One retry: a second attempt writes the same directory again; the manifest comes last.
      backoffLimit: 1,
      // A day to be read back into status; status keeps the result after the Job goes.
      ttlSecondsAfterFinished: 86_400,
      template: withPodSecurity(mergePodTemplate(generatedTemplate, spec.connector.podOverrides), {
        callsApiServer: false,
      }),
    },
  };
}
