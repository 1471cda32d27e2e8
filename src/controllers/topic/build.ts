/**
 * The desired children of a Topic, pure: spec in, Kubernetes objects out.
 *
 *   <name>-collector         Deployment + Service, when spec.ingest.clickstream is set
 *   <name>-sink-<sink name>  Deployment per spec.sinks[] entry
 *
 * Every pod runs the operator's image with a role argument (`collector`, `sink`); the image's
 * entrypoint is `tributary`. The processes read their settings from environment variables
 * (TRIBUTARY_COLLECTOR_*, TRIBUTARY_SINK_*), the names their config parsers define.
 *
 * A cluster behind TLS or SASL (spec.kafka) reaches the pods the Kubernetes way, never as values
 * in the spec: the CA and client-certificate Secrets are read-only volumes whose file paths the
 * process is given, and the SASL username and password are `secretKeyRef` variables.
 */
import { type KafkaClusterRef, parseQuantity } from "../../api/common.js";
import { Reason } from "../../api/conditions.js";
import type { ClickstreamIngest, Sink, TopicSpec } from "../../api/topic.js";
import { ownerReference } from "../../operator/apply.js";
import type { KubeObject } from "../../operator/kube.js";
import { blockPoolClientLabel } from "../blockpool/build.js";
import { childLabels, type SpecProblem, selectorLabels } from "../common.js";
import { mergePodTemplate } from "../podOverrides.js";
import { withPodSecurity } from "../podSecurity.js";

export interface TopicBuildInput {
  /** The stored Topic (name, namespace, uid for owner references). */
  resource: KubeObject;
  spec: TopicSpec;
  /** The data-plane image, from the operator's --image. */
  image: string;
  /** Bootstrap brokers the pods connect to: spec.kafka's or the operator's default cluster. */
  brokers: string[];
  /** spec.webHdfs.port of each BlockPool a sink writes to, read by the reconcile; 9870 when absent. */
  webHdfsPorts?: Record<string, number>;
  /** `<secret>@<resourceVersion>` of the Kafka TLS and SASL Secrets the pods mount or read. */
  kafkaSecretVersions?: string[];
}

/** On the pod template: a new Secret version changes the template, so Kubernetes rolls the pods. */
export const kafkaSecretsAnnotation = "tributary.dev/kafka-secrets";

/** Labels of a role's pods, and the Kafka Secrets' versions they started with. */
function podMetadata(input: TopicBuildInput, component: string) {
  const versions = input.kafkaSecretVersions ?? [];
  return {
    labels: childLabels(input.resource, component),
    ...(versions.length > 0 ? { annotations: { [kafkaSecretsAnnotation]: versions.join(",") } } : {}),
  };
}

/** Where a sink's volume is mounted in its pod. */
export const sinkMountPath = "/var/lib/tributary/sink";
/** The sink's /healthz, /readyz and /metrics. */
export const sinkMetricsPort = 9464;
/** The BlockPool's spec.webHdfs.port default, for a pool the reconcile could not read. */
export const blockPoolWebHdfsPort = 9870;

/** The BlockPool's client Service (the active name node's WebHDFS), as the sink's host:port. */
/**
 * The label a BlockPool's NetworkPolicy admits (`tributary.dev/blockpool-client: <pool>`), for
 * the pod templates of children that read or write a pool; none when they use no pool.
 */
export function blockPoolClientLabels(blockPool: string | undefined): Record<string, string> {
  return blockPool ? { [blockPoolClientLabel]: blockPool } : {};
}

export function blockPoolWebHdfsAddress(
  blockPool: string,
  namespace: string | undefined,
  port = blockPoolWebHdfsPort,
): string {
  return `${blockPool}.${namespace}.svc:${port}`;
}

/** Where the Kafka CA and client certificate are mounted in collector and sink pods. */
export const kafkaCaMountPath = "/etc/tributary/kafka/ca";
export const kafkaClientCertMountPath = "/etc/tributary/kafka/client";

interface KafkaSecurityPodParts {
  env: Array<Record<string, unknown>>;
  volumes: Array<Record<string, unknown>>;
  volumeMounts: Array<Record<string, unknown>>;
}

/** The env, volumes and mounts that give a role spec.kafka's TLS and SASL settings. */
export function kafkaSecurityPodParts(
  kafka: KafkaClusterRef | undefined,
  envPrefix: string,
): KafkaSecurityPodParts {
  const parts: KafkaSecurityPodParts = { env: [], volumes: [], volumeMounts: [] };
  const tls = kafka?.tls;
  if (tls?.enabled) {
    parts.env.push({ name: `${envPrefix}TLS`, value: "true" });
    if (tls.caSecret) {
      parts.env.push({ name: `${envPrefix}TLS_CA_FILE`, value: `${kafkaCaMountPath}/ca.crt` });
      parts.volumes.push({
        name: "kafka-ca",
        secret: { secretName: tls.caSecret.name, items: [{ key: tls.caSecret.key, path: "ca.crt" }] },
      });
      parts.volumeMounts.push({ name: "kafka-ca", mountPath: kafkaCaMountPath, readOnly: true });
    }
    if (tls.clientCertificateSecret) {
      parts.env.push(
        { name: `${envPrefix}TLS_CERT_FILE`, value: `${kafkaClientCertMountPath}/tls.crt` },
        { name: `${envPrefix}TLS_KEY_FILE`, value: `${kafkaClientCertMountPath}/tls.key` },
      );
      parts.volumes.push({
        name: "kafka-client-cert",
        secret: {
          secretName: tls.clientCertificateSecret.name,
          items: [
            { key: "tls.crt", path: "tls.crt" },
            { key: "tls.key", path: "tls.key" },
          ],
        },
      });
      parts.volumeMounts.push({
        name: "kafka-client-cert",
        mountPath: kafkaClientCertMountPath,
        readOnly: true,
      });
    }
  }
  if (kafka?.sasl) {
    const secretName = kafka.sasl.credentialsSecret.name;
    parts.env.push(
      { name: `${envPrefix}SASL_MECHANISM`, value: kafka.sasl.mechanism },
      {
        name: `${envPrefix}SASL_USERNAME`,
        valueFrom: { secretKeyRef: { name: secretName, key: "username" } },
      },
      {
        name: `${envPrefix}SASL_PASSWORD`,
        valueFrom: { secretKeyRef: { name: secretName, key: "password" } },
      },
    );
  }
  return parts;
}

export const collectorName = (topic: string) => `${topic}-collector`;
export const sinkDeploymentName = (topic: string, sink: string) => `${topic}-sink-${sink}`;

/** The Kafka topic of a Topic resource: spec.topicName, else metadata.name. */
export function kafkaTopicName(spec: TopicSpec, resource: KubeObject): string {
  return spec.topicName ?? resource.metadata.name;
}

/** The dead-letter topic of the collectors and sinks: the spec's, else `<topic>.dlq`. */
export function deadLetterTopicName(spec: TopicSpec, resource: KubeObject): string {
  return spec.ingest?.clickstream?.deadLetterTopic ?? `${kafkaTopicName(spec, resource)}.dlq`;
}

export function collectorEndpoint(input: TopicBuildInput): string | undefined {
  const clickstream = input.spec.ingest?.clickstream;
  if (!clickstream) return undefined;
  const { name, namespace } = input.resource.metadata;
  return `http://${collectorName(name)}.${namespace}.svc:${clickstream.port}/v1/events`;
}

/**
 * Sinks the sink process cannot run yet, with why: its Parquet writer has no zstd. They are
 * left out of the desired children and reported; the rest of the Topic still runs.
 */
export function unsupportedSinks(spec: TopicSpec): SpecProblem[] {
  const problems: SpecProblem[] = [];
  spec.sinks.forEach((sink, index) => {
    if (sink.format === "parquet" && sink.compression === "zstd") {
      problems.push({
        reason: Reason.SinkFailing,
        message: `spec.sinks[${index}] (${sink.name}): compression zstd is not supported by the Parquet writer; use none, snappy or gzip`,
      });
    }
  });
  return problems;
}

export function runnableSinks(spec: TopicSpec): Sink[] {
  return spec.sinks.filter((sink) => !(sink.format === "parquet" && sink.compression === "zstd"));
}

export function desiredChildren(input: TopicBuildInput): KubeObject[] {
  const children: KubeObject[] = [];
  const clickstream = input.spec.ingest?.clickstream;
  if (clickstream)
    children.push(collectorService(input, clickstream), collectorDeployment(input, clickstream));
  for (const sink of runnableSinks(input.spec)) children.push(sinkDeployment(input, sink));
  return children;
}

function metadata(input: TopicBuildInput, name: string, component: string) {
  return {
    name,
    namespace: input.resource.metadata.namespace,
    labels: childLabels(input.resource, component),
    ownerReferences: [ownerReference(input.resource)],
  };
}

/** `stopped` scales every role to zero; the topic and the committed offsets stay. */
function replicas(input: TopicBuildInput, desired: number): number {
  return input.spec.clusterOperation.stopped ? 0 : desired;
}

export function collectorService(input: TopicBuildInput, clickstream: ClickstreamIngest): KubeObject {
  const name = collectorName(input.resource.metadata.name);
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(input, name, "collector"),
    spec: {
      type: clickstream.serviceType,
      selector: selectorLabels(input.resource, "collector"),
      ports: [{ name: "http", port: clickstream.port, targetPort: "http", protocol: "TCP" }],
    },
  };
}

export function collectorDeployment(input: TopicBuildInput, clickstream: ClickstreamIngest): KubeObject {
  const { resource, spec } = input;
  const name = collectorName(resource.metadata.name);
  const kafkaSecurity = kafkaSecurityPodParts(spec.kafka, "TRIBUTARY_COLLECTOR_");
  const env = [
    { name: "TRIBUTARY_COLLECTOR_BROKERS", value: input.brokers.join(",") },
    { name: "TRIBUTARY_COLLECTOR_TOPIC", value: kafkaTopicName(spec, resource) },
    { name: "TRIBUTARY_COLLECTOR_DLQ_TOPIC", value: deadLetterTopicName(spec, resource) },
    { name: "TRIBUTARY_COLLECTOR_PORT", value: String(clickstream.port) },
    { name: "TRIBUTARY_COLLECTOR_MAX_EVENTS_PER_REQUEST", value: String(clickstream.maxBatchEvents) },
    { name: "TRIBUTARY_COLLECTOR_MAX_BODY_BYTES", value: String(parseQuantity(clickstream.maxBodyBytes)) },
    {
      name: "TRIBUTARY_COLLECTOR_MAX_BUFFERED_BYTES",
      value: String(parseQuantity(clickstream.maxBufferedBytes)),
    },
    { name: "TRIBUTARY_COLLECTOR_LINGER_MS", value: String(clickstream.lingerMs) },
    { name: "TRIBUTARY_COLLECTOR_CLIENT_ID", value: `tributary-collector-${resource.metadata.name}` },
    // Each event names the pod that took it, which tells apart the replicas in a trace.
    { name: "TRIBUTARY_COLLECTOR_COLLECTOR_ID", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    ...kafkaSecurity.env,
  ];
  const generatedTemplate = {
    metadata: podMetadata(input, "collector"),
    spec: {
      // The collector answers requests in progress and flushes its buffer to Kafka on SIGTERM.
      terminationGracePeriodSeconds: 30,
      containers: [
        {
          name: "collector",
          image: input.image,
          args: ["collector"],
          env,
          ports: [{ name: "http", containerPort: clickstream.port, protocol: "TCP" }],
          ...(clickstream.resources ? { resources: clickstream.resources } : {}),
          // Ready means the producer is connected and Kafka acknowledges: no traffic before that.
          readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5 },
          livenessProbe: {
            httpGet: { path: "/healthz", port: "http" },
            periodSeconds: 10,
            failureThreshold: 6,
          },
          ...(kafkaSecurity.volumeMounts.length > 0 ? { volumeMounts: kafkaSecurity.volumeMounts } : {}),
        },
      ],
      ...(kafkaSecurity.volumes.length > 0 ? { volumes: kafkaSecurity.volumes } : {}),
    },
  };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: metadata(input, name, "collector"),
    spec: {
      replicas: replicas(input, clickstream.replicas),
      selector: { matchLabels: selectorLabels(resource, "collector") },
      // Collectors are stateless: replace one pod at a time and keep the capacity.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: withPodSecurity(mergePodTemplate(generatedTemplate, clickstream.podOverrides), {
        callsApiServer: false,
      }),
    },
  };
}

/** The sink's codec name for the API's compression name. */
function sinkCodec(sink: Sink): string {
  if (sink.compression === "none") return sink.format === "avro" ? "null" : "uncompressed";
  return sink.compression;
}

export function sinkDeployment(input: TopicBuildInput, sink: Sink): KubeObject {
  const { resource, spec } = input;
  const name = sinkDeploymentName(resource.metadata.name, sink.name);
  const component = `sink-${sink.name}`;
  const { volume, blockPool } = sink.target;
  const kafkaSecurity = kafkaSecurityPodParts(spec.kafka, "TRIBUTARY_SINK_");
  const targetEnv = volume
    ? [
        {
          name: "TRIBUTARY_SINK_TARGET_DIR",
          value: volume.subPath ? `${sinkMountPath}/${volume.subPath.replace(/\/+$/, "")}` : sinkMountPath,
        },
      ]
    : [
        {
          name: "TRIBUTARY_SINK_TARGET_WEBHDFS",
          value: blockPoolWebHdfsAddress(
            blockPool!.blockPool,
            resource.metadata.namespace,
            input.webHdfsPorts?.[blockPool!.blockPool],
          ),
        },
        { name: "TRIBUTARY_SINK_TARGET_PATH", value: blockPool!.path },
      ];
  const env = [
    { name: "TRIBUTARY_SINK_BROKERS", value: input.brokers.join(",") },
    { name: "TRIBUTARY_SINK_TOPIC", value: kafkaTopicName(spec, resource) },
    // One consumer group per sink: two sinks of a topic each read every event.
    {
      name: "TRIBUTARY_SINK_GROUP_ID",
      value: `tributary-sink-${resource.metadata.namespace}-${resource.metadata.name}-${sink.name}`,
    },
    { name: "TRIBUTARY_SINK_FORMAT", value: sink.format },
    { name: "TRIBUTARY_SINK_CODEC", value: sinkCodec(sink) },
    ...targetEnv,
    { name: "TRIBUTARY_SINK_ROLL_MAX_BYTES", value: String(parseQuantity(sink.roll.maxBytes)) },
    { name: "TRIBUTARY_SINK_ROLL_MAX_AGE_MS", value: String(sink.roll.maxAgeSeconds * 1000) },
    ...(sink.parquet
      ? [{ name: "TRIBUTARY_SINK_ROW_GROUP_ROWS", value: String(sink.parquet.rowGroupSize) }]
      : []),
    { name: "TRIBUTARY_SINK_DEAD_LETTER_TOPIC", value: deadLetterTopicName(spec, resource) },
    { name: "TRIBUTARY_SINK_METRICS_PORT", value: String(sinkMetricsPort) },
    ...kafkaSecurity.env,
  ];
  const podMeta = podMetadata(input, component);
  const generatedTemplate = {
    metadata: { ...podMeta, labels: { ...podMeta.labels, ...blockPoolClientLabels(blockPool?.blockPool) } },
    spec: {
      // The open file is closed and committed on SIGTERM; a large row group takes a while.
      terminationGracePeriodSeconds: 60,
      containers: [
        {
          name: "sink",
          image: input.image,
          args: ["sink"],
          env,
          ports: [{ name: "metrics", containerPort: sinkMetricsPort, protocol: "TCP" }],
          ...(sink.resources ? { resources: sink.resources } : {}),
          volumeMounts: [
            ...(volume ? [{ name: "target", mountPath: sinkMountPath }] : []),
            { name: "tmp", mountPath: "/tmp" },
            ...kafkaSecurity.volumeMounts,
          ],
          readinessProbe: { httpGet: { path: "/readyz", port: "metrics" }, periodSeconds: 5 },
          livenessProbe: {
            httpGet: { path: "/healthz", port: "metrics" },
            periodSeconds: 10,
            failureThreshold: 6,
          },
        },
      ],
      volumes: [
        ...(volume ? [{ name: "target", persistentVolumeClaim: { claimName: volume.claimName } }] : []),
        { name: "tmp", emptyDir: {} },
        ...kafkaSecurity.volumes,
      ],
    },
  };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: metadata(input, name, component),
    spec: {
      replicas: replicas(input, sink.replicas),
      selector: { matchLabels: selectorLabels(resource, component) },
      // A sink's replicas share partitions through the group; a replacement may start first.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: withPodSecurity(mergePodTemplate(generatedTemplate, sink.podOverrides), {
        callsApiServer: false,
      }),
    },
  };
}
