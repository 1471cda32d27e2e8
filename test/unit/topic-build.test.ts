import kafkajs from "kafkajs";
import { describe, expect, it } from "vitest";
import { topicSpecSchema } from "../../src/api/topic.js";
import {
  collectorEndpoint,
  deadLetterTopicName,
  desiredChildren,
  unsupportedSinks,
} from "../../src/controllers/topic/build.js";
import { kafkaError, protocolErrorType } from "../../src/controllers/topic/kafka.js";
import { collectorConfigSchema } from "../../src/dataplane/clickstream/config.js";
import { sinkConfigSchema } from "../../src/dataplane/sink/config.js";
import { metadataRequest, parseMetadataResponse } from "../../src/kafka/metadata.js";
import type { KubeObject } from "../../src/operator/kube.js";
import { expectRestricted, podTemplates } from "../support/pod-templates.js";

const resource: KubeObject = {
  apiVersion: "tributary.dev/v1alpha1",
  kind: "Topic",
  metadata: { name: "clicks", namespace: "web", uid: "topic-uid-1", generation: 1 },
};

const brokers = ["kafka-0.kafka:9092", "kafka-1.kafka:9092"];

const build = (spec: unknown = {}) => ({
  resource,
  spec: topicSpecSchema.parse(spec),
  image: "registry/tributary:7",
  brokers,
});

type Container = {
  name: string;
  image: string;
  args: string[];
  env: Array<{ name: string; value?: string; valueFrom?: unknown }>;
  resources?: unknown;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
};
type Deployment = KubeObject & {
  spec: {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        containers: Container[];
        volumes?: Array<Record<string, unknown>>;
        tolerations?: unknown;
        nodeSelector?: unknown;
      };
    };
  };
};

const envOf = (container: Container) =>
  Object.fromEntries(
    container.env.filter((entry) => entry.value !== undefined).map((entry) => [entry.name, entry.value!]),
  );

/** What a process would parse from the container's environment: the real config parser decides. */
const environment = (container: Container, prefix: string) =>
  Object.fromEntries(
    Object.entries(envOf(container))
      .filter(([name]) => name.startsWith(prefix))
      .map(([name, value]) => [
        name
          .slice(prefix.length)
          .toLowerCase()
          .replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
        value,
      ]),
  );

const clickstream = { clickstream: { replicas: 3, port: 8088, maxBodyBytes: "2Mi", maxBatchEvents: 200 } };

describe("Topic build", () => {
  it("builds nothing besides the Kafka topic when neither ingest nor sinks are asked for", () => {
    expect(desiredChildren(build())).toEqual([]);
  });

  it("builds a collector Deployment and Service owned by the Topic when ingest.clickstream is set", () => {
    const children = desiredChildren(build({ ingest: clickstream }));
    expect(children.map((child) => `${child.kind}/${child.metadata.name}`)).toEqual([
      "Service/clicks-collector",
      "Deployment/clicks-collector",
    ]);
    for (const child of children) {
      expect(child.metadata.namespace).toBe("web");
      expect(child.metadata.ownerReferences).toEqual([
        {
          apiVersion: "tributary.dev/v1alpha1",
          kind: "Topic",
          name: "clicks",
          uid: "topic-uid-1",
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
      expect(child.metadata.labels?.["app.kubernetes.io/managed-by"]).toBe("tributary");
    }
    const [service, deployment] = children as [KubeObject, Deployment];
    const serviceSpec = service.spec as { selector: Record<string, string>; ports: Array<{ port: number }> };
    expect(serviceSpec.selector).toEqual(deployment.spec.selector.matchLabels);
    expect(serviceSpec.ports[0]!.port).toBe(8088);
    expect(deployment.spec.template.metadata.labels).toMatchObject(deployment.spec.selector.matchLabels);
    expect(deployment.spec.replicas).toBe(3);
    const container = deployment.spec.template.spec.containers[0]!;
    expect(container.image).toBe("registry/tributary:7");
    expect(container.args).toEqual(["collector"]);
  });

  it("gives the collector a configuration its own parser accepts, with the spec's limits", () => {
    const [, deployment] = desiredChildren(build({ ingest: clickstream })) as [KubeObject, Deployment];
    const container = deployment.spec.template.spec.containers[0]!;
    const config = collectorConfigSchema.parse(environment(container, "TRIBUTARY_COLLECTOR_"));
    expect(config.brokers).toEqual(brokers);
    expect(config.topic).toBe("clicks");
    expect(config.dlqTopic).toBe("clicks.dlq");
    expect(config.port).toBe(8088);
    expect(config.maxBodyBytes).toBe(2 * 1024 * 1024);
    expect(config.maxEventsPerRequest).toBe(200);
    expect(config.maxBufferedBytes).toBe(64 * 1024 * 1024);
    expect(
      container.env.find((entry) => entry.name === "TRIBUTARY_COLLECTOR_COLLECTOR_ID")?.valueFrom,
    ).toEqual({
      fieldRef: { fieldPath: "metadata.name" },
    });
  });

  it("uses spec.topicName and a named dead-letter topic, and reports the in-cluster endpoint", () => {
    const input = build({
      topicName: "site.clicks",
      ingest: { clickstream: { deadLetterTopic: "site.rejects" } },
    });
    expect(deadLetterTopicName(input.spec, resource)).toBe("site.rejects");
    const [, deployment] = desiredChildren(input) as [KubeObject, Deployment];
    const env = envOf(deployment.spec.template.spec.containers[0]!);
    expect(env.TRIBUTARY_COLLECTOR_TOPIC).toBe("site.clicks");
    expect(env.TRIBUTARY_COLLECTOR_DLQ_TOPIC).toBe("site.rejects");
    expect(collectorEndpoint(input)).toBe("http://clicks-collector.web.svc:8080/v1/events");
  });

  it("builds one sink Deployment per volume sink, each in its own consumer group", () => {
    const children = desiredChildren(
      build({
        sinks: [
          {
            name: "lake",
            format: "parquet",
            compression: "gzip",
            target: { volume: { claimName: "lake-pvc", subPath: "clicks/" } },
            parquet: { rowGroupSize: 20000 },
            roll: { maxBytes: "64Mi", maxAgeSeconds: 120 },
            replicas: 2,
          },
          {
            name: "replay",
            format: "avro",
            compression: "none",
            target: { volume: { claimName: "replay" } },
          },
        ],
      }),
    ) as Deployment[];
    expect(children.map((child) => child.metadata.name)).toEqual(["clicks-sink-lake", "clicks-sink-replay"]);
    const [lake, replay] = children as [Deployment, Deployment];
    expect(lake.spec.replicas).toBe(2);
    expect(lake.spec.selector.matchLabels).not.toEqual(replay.spec.selector.matchLabels);
    const lakeContainer = lake.spec.template.spec.containers[0]!;
    expect(lakeContainer.args).toEqual(["sink"]);
    const lakeConfig = sinkConfigSchema.parse(environment(lakeContainer, "TRIBUTARY_SINK_"));
    expect(lakeConfig).toMatchObject({
      brokers,
      topic: "clicks",
      format: "parquet",
      codec: "gzip",
      targetDir: "/var/lib/tributary/sink/clicks",
      rollMaxBytes: 64 * 1024 * 1024,
      rollMaxAgeMs: 120_000,
      rowGroupRows: 20000,
      deadLetterTopic: "clicks.dlq",
    });
    expect(lake.spec.template.spec.volumes).toContainEqual({
      name: "target",
      persistentVolumeClaim: { claimName: "lake-pvc" },
    });
    const replayConfig = sinkConfigSchema.parse(
      environment(replay.spec.template.spec.containers[0]!, "TRIBUTARY_SINK_"),
    );
    expect(replayConfig.codec).toBe("null");
    expect(replayConfig.targetDir).toBe("/var/lib/tributary/sink");
    expect(replayConfig.groupId).not.toBe(lakeConfig.groupId);
  });

  it("points a BlockPool sink at the pool's WebHDFS Service and mounts no volume", () => {
    const input = build({
      sinks: [
        { name: "pool", format: "avro", target: { blockPool: { blockPool: "lake", path: "/clicks/raw" } } },
      ],
    });
    const [pool] = desiredChildren(input) as [Deployment];
    expect(pool.metadata.name).toBe("clicks-sink-pool");
    const container = pool.spec.template.spec.containers[0]!;
    const config = sinkConfigSchema.parse(environment(container, "TRIBUTARY_SINK_"));
    expect(config.targetDir).toBeUndefined();
    expect(config.targetWebhdfs).toEqual([`lake.${input.resource.metadata.namespace}.svc:9870`]);
    expect(config.targetPath).toBe("/clicks/raw");
    expect(pool.spec.template.spec.volumes?.map((volume) => volume.name)).toEqual(["tmp"]);
    expect(container.volumeMounts?.map((mount) => mount.name)).toEqual(["tmp"]);
    expect(unsupportedSinks(input.spec)).toEqual([]);
    // The pool's NetworkPolicy admits the sink's pods by this label.
    expect(pool.spec.template.metadata?.labels?.["tributary.dev/blockpool-client"]).toBe("lake");
    // A pool serving WebHDFS on another port is followed.
    const [moved] = desiredChildren({ ...input, webHdfsPorts: { lake: 50070 } }) as [Deployment];
    expect(
      sinkConfigSchema.parse(environment(moved.spec.template.spec.containers[0]!, "TRIBUTARY_SINK_"))
        .targetWebhdfs,
    ).toEqual([`lake.${input.resource.metadata.namespace}.svc:50070`]);
  });

  it("leaves out and reports sinks the sink process cannot run yet", () => {
    const input = build({
      sinks: [
        { name: "zstd", format: "parquet", compression: "zstd", target: { volume: { claimName: "v" } } },
      ],
    });
    expect(desiredChildren(input)).toEqual([]);
    expect(unsupportedSinks(input.spec).map((problem) => problem.message)).toEqual([
      expect.stringContaining("spec.sinks[0] (zstd): compression zstd"),
    ]);
  });

  it("scales every role to 0 when clusterOperation.stopped is set", () => {
    const children = desiredChildren(
      build({
        ingest: clickstream,
        sinks: [{ name: "lake", format: "avro", target: { volume: { claimName: "v" } } }],
        clusterOperation: { stopped: true },
      }),
    );
    const deployments = children.filter((child) => child.kind === "Deployment") as Deployment[];
    expect(deployments).toHaveLength(2);
    for (const deployment of deployments) expect(deployment.spec.replicas).toBe(0);
  });

  it("merges podOverrides over the generated pod template", () => {
    const [, deployment] = desiredChildren(
      build({
        ingest: {
          clickstream: {
            resources: { requests: { cpu: "250m" } },
            podOverrides: {
              spec: {
                nodeSelector: { pool: "edge" },
                containers: [
                  { name: "collector", env: [{ name: "TRIBUTARY_COLLECTOR_LINGER_MS", value: "20" }] },
                  { name: "proxy", image: "envoy:1" },
                ],
              },
            },
          },
        },
      }),
    ) as [KubeObject, Deployment];
    const pod = deployment.spec.template.spec;
    expect(pod.nodeSelector).toEqual({ pool: "edge" });
    expect(pod.containers.map((container) => container.name)).toEqual(["collector", "proxy"]);
    const collector = pod.containers[0]!;
    expect(collector.resources).toEqual({ requests: { cpu: "250m" } });
    expect(envOf(collector).TRIBUTARY_COLLECTOR_LINGER_MS).toBe("20");
    expect(envOf(collector).TRIBUTARY_COLLECTOR_TOPIC).toBe("clicks");
  });
});

describe("Topic pod security", () => {
  const spec = {
    ingest: clickstream,
    sinks: [
      { name: "files", format: "parquet", target: { volume: { claimName: "lake-files" } } },
      { name: "pool", format: "avro", target: { blockPool: { blockPool: "lake", path: "/clicks" } } },
    ],
    kafka: {
      bootstrapServers: ["kafka.example:9093"],
      tls: {
        enabled: true,
        caSecret: { name: "kafka-ca", key: "ca.crt" },
        clientCertificateSecret: { name: "kafka-client" },
      },
      sasl: { mechanism: "scram-sha-512", credentialsSecret: { name: "kafka-user" } },
    },
  };

  it("runs every collector and sink pod under the restricted Pod Security Standard, without a service-account token", () => {
    const templates = podTemplates(desiredChildren(build(spec)));
    expect(templates.map((entry) => entry.workload)).toEqual([
      "Deployment/clicks-collector",
      "Deployment/clicks-sink-files",
      "Deployment/clicks-sink-pool",
    ]);
    for (const entry of templates) expectRestricted(entry);
  });

  it("restricts a sidecar from podOverrides too, and lets the user's own security fields win", () => {
    const [, deployment] = desiredChildren(
      build({
        ingest: {
          clickstream: {
            podOverrides: {
              spec: {
                securityContext: { runAsUser: 2000 },
                containers: [{ name: "proxy", image: "envoy:1" }],
              },
            },
          },
        },
      }),
    ) as [KubeObject, Deployment];
    const pod = podTemplates([deployment])[0]!.template.spec;
    expect(pod.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 2000,
      fsGroup: 1000,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.containers.map((container) => [container.name, container.securityContext])).toEqual(
      ["collector", "proxy"].map((name) => [
        name,
        { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
      ]),
    );
  });
});

describe("Metadata v12 codec (topic ids)", () => {
  it("encodes a request for named topics without auto-creation", () => {
    const request = metadataRequest(["clicks"]);
    expect(request.readInt32BE(0)).toBe(request.length - 4);
    expect(request.readInt16BE(4)).toBe(3); // Metadata
    expect(request.readInt16BE(6)).toBe(12);
    // the body ends with allow_auto_topic_creation=false, include_topic_authorized_operations=false, no tags
    expect([...request.subarray(-3)]).toEqual([0, 0, 0]);
  });

  it("reads partitions, replication factor and the base64url id of each topic", () => {
    const id = Buffer.from("00112233445566778899aabbccddeeff", "hex");
    const compact = (text: string) => Buffer.concat([Buffer.from([text.length + 1]), Buffer.from(text)]);
    const int32 = (value: number) => {
      const buffer = Buffer.alloc(4);
      buffer.writeInt32BE(value);
      return buffer;
    };
    const int16 = (value: number) => {
      const buffer = Buffer.alloc(2);
      buffer.writeInt16BE(value);
      return buffer;
    };
    const partition = (index: number) =>
      Buffer.concat([
        int16(0),
        int32(index),
        int32(1),
        int32(0),
        Buffer.from([4]),
        int32(1),
        int32(2),
        int32(3), // replicas
        Buffer.from([4]),
        int32(1),
        int32(2),
        int32(3), // isr
        Buffer.from([1]), // no offline replicas
        Buffer.from([0]),
      ]);
    const response = Buffer.concat([
      int32(1), // correlation id
      Buffer.from([0]), // header tags
      int32(0), // throttle
      Buffer.from([2]),
      int32(1),
      compact("127.0.0.1"),
      int32(29092),
      Buffer.from([0]), // rack null
      Buffer.from([0]),
      compact("cluster"),
      int32(1),
      Buffer.from([3]), // two topics
      int16(0),
      compact("clicks"),
      id,
      Buffer.from([0]),
      Buffer.from([3]),
      partition(0),
      partition(1),
      int32(0),
      Buffer.from([0]),
      int16(3), // UNKNOWN_TOPIC_OR_PARTITION: left out
      compact("absent"),
      Buffer.alloc(16),
      Buffer.from([0]),
      Buffer.from([1]),
      int32(0),
      Buffer.from([0]),
      Buffer.from([0]),
    ]);
    expect(parseMetadataResponse(response)).toEqual(
      new Map([["clicks", { topicId: id.toString("base64url"), partitions: 2, replicationFactor: 3 }]]),
    );
  });
});

describe("Kafka errors as conditions", () => {
  const connection = { brokers: ["127.0.0.1:29092"], key: "k", secretVersions: [] };

  it("reads the broker's error type inside kafkajs's per-topic aggregate", () => {
    // What kafkajs throws for a refused CreateTopics; its types leave these constructors out.
    const { KafkaJSCreateTopicError, KafkaJSProtocolError } = kafkajs as unknown as Record<
      string,
      new (
        ...args: unknown[]
      ) => Error
    >;
    const brokerAnswer = { type: "INVALID_CONFIG", code: 40, message: "Configuration is invalid" };
    const refused = new kafkajs.KafkaJSAggregateError("Topic creation errors", [
      new KafkaJSCreateTopicError!(new KafkaJSProtocolError!(brokerAnswer), "clicks"),
    ]);
    expect(protocolErrorType(refused)).toBe("INVALID_CONFIG");
    const error = kafkaError(refused, "Topic web/clicks", connection);
    expect(error.reason).toBe("ReconcileFailed");
    expect(error.message).toBe("Topic web/clicks: Kafka refused: Configuration is invalid");
  });

  it("calls anything that is not a broker's answer KafkaUnavailable, naming the brokers", () => {
    const error = kafkaError(
      new kafkajs.KafkaJSConnectionError("Connection error: connect ECONNREFUSED 127.0.0.1:29092"),
      "Topic web/clicks",
      connection,
    );
    expect(error.reason).toBe("KafkaUnavailable");
    expect(error.message).toContain("Kafka at 127.0.0.1:29092 is unavailable: Connection error");
  });
});
