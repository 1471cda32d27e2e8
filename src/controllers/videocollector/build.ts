/**
 * The desired children of a VideoCollector, pure: spec in, Kubernetes objects out.
 *
 *   <name>-collector          StatefulSet of `tributary video` pods; Service taking pushed streams
 *   <name>-collector-pods     headless Service: each pod's address, for the operator to read /status
 *   <name>-collector-sources  ConfigMap: {"replicas", "sources"}, which the pods read again every
 *                             few seconds, so a source added or removed, or a replica count change
 *                             that moves sources between pods, needs no pod restart
 *
 * A StatefulSet, because the pod's ordinal is what shards the pulled sources (rendezvous hashing
 * over the replica count, src/dataplane/video/assignment.ts). The rest of the settings are
 * TRIBUTARY_VIDEO_* variables: a change of sampling or output rolls the pods.
 */
import type { VideoCollectorSpec } from "../../api/videocollector.js";
import { ownerReference } from "../../operator/apply.js";
import type { KubeObject } from "../../operator/kube.js";
import { childLabels, selectorLabels } from "../common.js";
import { mergePodTemplate } from "../podOverrides.js";
import { withPodSecurity } from "../podSecurity.js";
import { blockPoolClientLabels, blockPoolWebHdfsAddress, kafkaSecurityPodParts } from "../topic/build.js";

export interface VideoCollectorBuildInput {
  resource: KubeObject;
  spec: VideoCollectorSpec;
  image: string;
  brokers: string[];
  /** spec.webHdfs.port of the archive's BlockPool; 9870 when absent. */
  webHdfsPort?: number;
  kafkaSecretVersions?: string[];
}

export const collectorName = (name: string) => `${name}-collector`;
export const podsServiceName = (name: string) => `${name}-collector-pods`;
export const sourcesConfigMapName = (name: string) => `${name}-collector-sources`;
export const sourcesMountPath = "/etc/tributary/video";
export const credentialsMountPath = "/etc/tributary/video-credentials";
export const archiveMountPath = "/var/lib/tributary/archive";
const component = "collector";

/** The document the pods read: replicas and each source without its credentials. */
export function sourcesDocument(spec: VideoCollectorSpec): string {
  return `${JSON.stringify(
    {
      replicas: spec.collector.replicas,
      sources: spec.sources.map((source) =>
        source.url ? { name: source.name, url: source.url } : { name: source.name, push: source.push },
      ),
    },
    null,
    2,
  )}\n`;
}

function metadata(input: VideoCollectorBuildInput, name: string) {
  return {
    name,
    namespace: input.resource.metadata.namespace,
    labels: childLabels(input.resource, component),
    ownerReferences: [ownerReference(input.resource)],
  };
}

export function desiredChildren(input: VideoCollectorBuildInput): KubeObject[] {
  return [sourcesConfigMap(input), pushService(input), podsService(input), collectorStatefulSet(input)];
}

export function sourcesConfigMap(input: VideoCollectorBuildInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: metadata(input, sourcesConfigMapName(input.resource.metadata.name)),
    data: { "sources.json": sourcesDocument(input.spec) },
  } as KubeObject;
}

export function pushService(input: VideoCollectorBuildInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(input, collectorName(input.resource.metadata.name)),
    spec: {
      selector: selectorLabels(input.resource, component),
      ports: [{ name: "http", port: input.spec.collector.port, targetPort: "http", protocol: "TCP" }],
    },
  };
}

export function podsService(input: VideoCollectorBuildInput): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(input, podsServiceName(input.resource.metadata.name)),
    spec: {
      clusterIP: "None",
      // The operator reads a pod's /status while it is not ready too: that is when it matters.
      publishNotReadyAddresses: true,
      selector: selectorLabels(input.resource, component),
      ports: [{ name: "http", port: input.spec.collector.port, targetPort: "http", protocol: "TCP" }],
    },
  };
}

export function collectorStatefulSet(input: VideoCollectorBuildInput): KubeObject {
  const { resource, spec } = input;
  const name = collectorName(resource.metadata.name);
  const kafkaSecurity = kafkaSecurityPodParts(spec.topic.kafka, "TRIBUTARY_VIDEO_");
  const { frames, archive, collector } = spec;
  const credentialSources = spec.sources.filter((source) => source.credentialsSecret);
  const archiveEnabled = archive.enabled && (archive.blockPool || archive.volume);
  const archiveEnv = !archiveEnabled
    ? []
    : [
        archive.blockPool
          ? {
              name: "TRIBUTARY_VIDEO_ARCHIVE_WEBHDFS",
              value: blockPoolWebHdfsAddress(
                archive.blockPool.blockPool,
                resource.metadata.namespace,
                input.webHdfsPort,
              ),
            }
          : { name: "TRIBUTARY_VIDEO_ARCHIVE_TARGET_DIR", value: archiveMountPath },
        {
          name: "TRIBUTARY_VIDEO_ARCHIVE_PATH",
          value: archive.blockPool ? archive.blockPool.path : `/${archive.volume?.subPath ?? ""}`,
        },
        { name: "TRIBUTARY_VIDEO_ARCHIVE_SEGMENT_SECONDS", value: String(archive.segmentSeconds) },
        { name: "TRIBUTARY_VIDEO_ARCHIVE_FORMAT", value: archive.format },
        { name: "TRIBUTARY_VIDEO_ARCHIVE_CODEC", value: archive.codec },
        { name: "TRIBUTARY_VIDEO_ARCHIVE_SCRATCH_DIR", value: "/tmp/segments" },
      ];
  const env = [
    { name: "TRIBUTARY_VIDEO_BROKERS", value: input.brokers.join(",") },
    { name: "TRIBUTARY_VIDEO_TOPIC", value: spec.topic.name },
    { name: "TRIBUTARY_VIDEO_CLIENT_ID", value: `tributary-video-${resource.metadata.name}` },
    // The ordinal in the pod's name says which pulled sources the pod takes.
    { name: "TRIBUTARY_VIDEO_POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    { name: "TRIBUTARY_VIDEO_SOURCES_FILE", value: `${sourcesMountPath}/sources.json` },
    { name: "TRIBUTARY_VIDEO_PORT", value: String(collector.port) },
    { name: "TRIBUTARY_VIDEO_FPS", value: String(frames.fps) },
    { name: "TRIBUTARY_VIDEO_KEY_FRAMES_ONLY", value: String(frames.keyFramesOnly) },
    { name: "TRIBUTARY_VIDEO_CODEC", value: frames.codec },
    { name: "TRIBUTARY_VIDEO_QUALITY", value: String(frames.quality) },
    ...(frames.width !== undefined ? [{ name: "TRIBUTARY_VIDEO_WIDTH", value: String(frames.width) }] : []),
    ...(frames.height !== undefined
      ? [{ name: "TRIBUTARY_VIDEO_HEIGHT", value: String(frames.height) }]
      : []),
    { name: "TRIBUTARY_VIDEO_MAX_MESSAGE_BYTES", value: String(spec.maxFrameBytes) },
    { name: "TRIBUTARY_VIDEO_QUEUE_FRAMES", value: String(collector.queueFrames) },
    { name: "TRIBUTARY_VIDEO_FROZEN_AFTER_MS", value: String(collector.frozenAfterSeconds * 1000) },
    ...(credentialSources.length > 0
      ? [{ name: "TRIBUTARY_VIDEO_CREDENTIALS_DIR", value: credentialsMountPath }]
      : []),
    ...archiveEnv,
    ...kafkaSecurity.env,
  ];
  const volumes: Array<Record<string, unknown>> = [
    { name: "sources", configMap: { name: sourcesConfigMapName(resource.metadata.name) } },
    // ffmpeg writes archive segments here before they are uploaded; the root filesystem is read-only.
    { name: "tmp", emptyDir: {} },
    ...(credentialSources.length > 0
      ? [
          {
            name: "credentials",
            projected: {
              sources: credentialSources.map((source) => ({
                secret: {
                  name: source.credentialsSecret!.name,
                  items: [
                    { key: "username", path: `${source.name}/username` },
                    { key: "password", path: `${source.name}/password` },
                  ],
                },
              })),
            },
          },
        ]
      : []),
    ...(archiveEnabled && archive.volume
      ? [{ name: "archive", persistentVolumeClaim: { claimName: archive.volume.claimName } }]
      : []),
    ...kafkaSecurity.volumes,
  ];
  const volumeMounts = [
    { name: "sources", mountPath: sourcesMountPath, readOnly: true },
    { name: "tmp", mountPath: "/tmp" },
    ...(credentialSources.length > 0
      ? [{ name: "credentials", mountPath: credentialsMountPath, readOnly: true }]
      : []),
    ...(archiveEnabled && archive.volume ? [{ name: "archive", mountPath: archiveMountPath }] : []),
    ...kafkaSecurity.volumeMounts,
  ];
  const versions = input.kafkaSecretVersions ?? [];
  const generatedTemplate = {
    metadata: {
      labels: {
        ...childLabels(resource, component),
        ...blockPoolClientLabels(archiveEnabled ? archive.blockPool?.blockPool : undefined),
      },
      ...(versions.length > 0 ? { annotations: { "tributary.dev/kafka-secrets": versions.join(",") } } : {}),
    },
    spec: {
      // ffmpeg is stopped and the queued frames sent on SIGTERM.
      terminationGracePeriodSeconds: 20,
      containers: [
        {
          name: "video",
          image: input.image,
          args: ["video"],
          env,
          ports: [{ name: "http", containerPort: collector.port, protocol: "TCP" }],
          ...(collector.resources ? { resources: collector.resources } : {}),
          volumeMounts,
          readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5 },
          livenessProbe: {
            httpGet: { path: "/healthz", port: "http" },
            periodSeconds: 10,
            failureThreshold: 6,
          },
        },
      ],
      volumes,
    },
  };
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: metadata(input, name),
    spec: {
      replicas: spec.clusterOperation.stopped ? 0 : collector.replicas,
      serviceName: podsServiceName(resource.metadata.name),
      // Each pod computes its own sources; none waits for another to start.
      podManagementPolicy: "Parallel",
      selector: { matchLabels: selectorLabels(resource, component) },
      template: withPodSecurity(mergePodTemplate(generatedTemplate, collector.podOverrides), {
        callsApiServer: false,
      }),
      updateStrategy: { type: "RollingUpdate" },
    },
  };
}
