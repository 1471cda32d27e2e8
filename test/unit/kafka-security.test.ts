/**
 * spec.kafka's TLS and SASL on the way to the pods: what build.ts puts in the collector and sink
 * pod specs (mounted Secrets, secretKeyRef variables, never a secret value), and how the roles'
 * config parsers read those settings back, with the errors for half-given ones.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { topicSpecSchema } from "../../src/api/topic.js";
import {
  desiredChildren,
  kafkaCaMountPath,
  kafkaClientCertMountPath,
  kafkaSecretsAnnotation,
} from "../../src/controllers/topic/build.js";
import { parseCollectorConfig } from "../../src/dataplane/clickstream/config.js";
import { parseSinkConfig } from "../../src/dataplane/sink/config.js";
import type { KubeObject } from "../../src/operator/kube.js";

const resource: KubeObject = {
  apiVersion: "tributary.dev/v1alpha1",
  kind: "Topic",
  metadata: { name: "clicks", namespace: "web", uid: "topic-uid-1", generation: 1 },
};

type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };
type Container = {
  env: EnvVar[];
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
};
type PodSpec = { containers: Container[]; volumes?: Array<{ name: string; secret?: unknown }> };
type Deployment = KubeObject & {
  spec: { template: { metadata: { annotations?: Record<string, string> }; spec: PodSpec } };
};

const secureKafka = {
  bootstrapServers: ["kafka.secure:9093"],
  tls: {
    enabled: true,
    caSecret: { name: "kafka-ca", key: "ca.pem" },
    clientCertificateSecret: { name: "kafka-client" },
  },
  sasl: { mechanism: "scram-sha-512", credentialsSecret: { name: "kafka-user" } },
};

function deployments(kafka: unknown, kafkaSecretVersions?: string[]): Deployment[] {
  const spec = topicSpecSchema.parse({
    kafka,
    ingest: { clickstream: { replicas: 1 } },
    sinks: [{ name: "lake", format: "avro", target: { volume: { claimName: "lake-pvc" } } }],
  });
  return desiredChildren({
    resource,
    spec,
    image: "registry/tributary:7",
    brokers: ["kafka.secure:9093"],
    kafkaSecretVersions,
  }).filter((child): child is Deployment => child.kind === "Deployment");
}

const roles = [
  { component: "collector", prefix: "TRIBUTARY_COLLECTOR_" },
  { component: "sink-lake", prefix: "TRIBUTARY_SINK_" },
];

describe("Topic build with spec.kafka TLS and SASL", () => {
  const [collector, sink] = deployments(secureKafka);

  it.each(roles.map((role, i) => ({ ...role, deployment: [collector, sink][i]! })))(
    "$component: mounts the CA and client certificate read-only and passes their paths",
    ({ prefix, deployment }) => {
      const pod = deployment.spec.template.spec;
      const container = pod.containers[0]!;
      expect(pod.volumes).toEqual(
        expect.arrayContaining([
          {
            name: "kafka-ca",
            secret: { secretName: "kafka-ca", items: [{ key: "ca.pem", path: "ca.crt" }] },
          },
          {
            name: "kafka-client-cert",
            secret: {
              secretName: "kafka-client",
              items: [
                { key: "tls.crt", path: "tls.crt" },
                { key: "tls.key", path: "tls.key" },
              ],
            },
          },
        ]),
      );
      expect(container.volumeMounts).toEqual(
        expect.arrayContaining([
          { name: "kafka-ca", mountPath: kafkaCaMountPath, readOnly: true },
          { name: "kafka-client-cert", mountPath: kafkaClientCertMountPath, readOnly: true },
        ]),
      );
      const env = Object.fromEntries(container.env.map((entry) => [entry.name, entry]));
      expect(env[`${prefix}TLS`]).toEqual({ name: `${prefix}TLS`, value: "true" });
      expect(env[`${prefix}TLS_CA_FILE`]?.value).toBe(`${kafkaCaMountPath}/ca.crt`);
      expect(env[`${prefix}TLS_CERT_FILE`]?.value).toBe(`${kafkaClientCertMountPath}/tls.crt`);
      expect(env[`${prefix}TLS_KEY_FILE`]?.value).toBe(`${kafkaClientCertMountPath}/tls.key`);
      expect(env[`${prefix}SASL_MECHANISM`]).toEqual({
        name: `${prefix}SASL_MECHANISM`,
        value: "scram-sha-512",
      });
      expect(env[`${prefix}SASL_USERNAME`]).toEqual({
        name: `${prefix}SASL_USERNAME`,
        valueFrom: { secretKeyRef: { name: "kafka-user", key: "username" } },
      });
      expect(env[`${prefix}SASL_PASSWORD`]).toEqual({
        name: `${prefix}SASL_PASSWORD`,
        valueFrom: { secretKeyRef: { name: "kafka-user", key: "password" } },
      });
    },
  );

  it("puts no secret value in the pod spec: credentials only by reference", () => {
    for (const deployment of [collector!, sink!]) {
      const container = deployment.spec.template.spec.containers[0]!;
      for (const entry of container.env.filter((e) => /SASL_(USERNAME|PASSWORD)$/.test(e.name))) {
        expect(entry.value).toBeUndefined();
        expect(entry.valueFrom?.secretKeyRef).toBeDefined();
      }
      // build never sees the Secrets' data, so nothing but their names can appear.
      expect(JSON.stringify(deployment)).not.toMatch(/BEGIN|PRIVATE KEY|password"?\s*:\s*"[^"]/i);
    }
  });

  it("the variables a pod gets, with the kubelet's secret values, parse into the role's SASL settings", () => {
    const resolved = (container: Container) =>
      Object.fromEntries(
        container.env
          .filter((e) => !/TLS/.test(e.name))
          .map((e) => [
            e.name,
            e.value ?? (e.valueFrom?.secretKeyRef ? `from-${e.valueFrom.secretKeyRef.key}` : "pod-1"),
          ]),
      );
    const sasl = { kafka: { bootstrapServers: ["kafka.secure:9093"], sasl: secureKafka.sasl } };
    const [c, s] = deployments(sasl.kafka);
    const expected = { mechanism: "scram-sha-512", username: "from-username", password: "from-password" };
    expect(parseCollectorConfig([], resolved(c!.spec.template.spec.containers[0]!)).kafkaSecurity).toEqual({
      sasl: expected,
    });
    expect(parseSinkConfig([], resolved(s!.spec.template.spec.containers[0]!)).kafkaSecurity).toEqual({
      sasl: expected,
    });
  });

  it("adds nothing for a plaintext cluster, or one with tls.enabled false", () => {
    for (const kafka of [
      undefined,
      { bootstrapServers: ["k:9092"], tls: { enabled: false, caSecret: { name: "ca", key: "ca.crt" } } },
    ]) {
      for (const deployment of deployments(kafka)) {
        const pod = deployment.spec.template.spec;
        expect(pod.containers[0]!.env.filter((e) => /_(TLS|SASL)/.test(e.name))).toEqual([]);
        expect((pod.volumes ?? []).filter((v) => v.name.startsWith("kafka-"))).toEqual([]);
      }
    }
  });

  it("TLS without a CA Secret trusts the system store: only the switch", () => {
    const [c] = deployments({ bootstrapServers: ["k:9093"], tls: { enabled: true } });
    const pod = c!.spec.template.spec;
    expect(pod.containers[0]!.env.filter((e) => /_TLS/.test(e.name))).toEqual([
      { name: "TRIBUTARY_COLLECTOR_TLS", value: "true" },
    ]);
    expect(pod.volumes).toBeUndefined();
  });
});

describe("role config: Kafka TLS and SASL settings", () => {
  const dir = mkdtempSync(join(tmpdir(), "tributary-kafka-security-"));
  const ca = join(dir, "ca.crt");
  const cert = join(dir, "tls.crt");
  const key = join(dir, "tls.key");
  writeFileSync(ca, "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n");
  writeFileSync(cert, "client cert");
  writeFileSync(key, "client key");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const collectorBase = { TRIBUTARY_COLLECTOR_BROKERS: "k:9093", TRIBUTARY_COLLECTOR_TOPIC: "clicks" };
  const sinkBase = {
    TRIBUTARY_SINK_BROKERS: "k:9093",
    TRIBUTARY_SINK_TOPIC: "clicks",
    TRIBUTARY_SINK_TARGET_DIR: "/data",
  };

  it("has no TLS or SASL by default", () => {
    expect(parseCollectorConfig([], collectorBase).kafkaSecurity).toEqual({});
    expect(parseSinkConfig([], sinkBase).kafkaSecurity).toEqual({});
  });

  it("reads the TLS files and takes the SASL settings, from variables or flags", () => {
    const collector = parseCollectorConfig(["--sasl-password", "secret"], {
      ...collectorBase,
      TRIBUTARY_COLLECTOR_TLS_CA_FILE: ca,
      TRIBUTARY_COLLECTOR_TLS_CERT_FILE: cert,
      TRIBUTARY_COLLECTOR_TLS_KEY_FILE: key,
      TRIBUTARY_COLLECTOR_SASL_MECHANISM: "plain",
      TRIBUTARY_COLLECTOR_SASL_USERNAME: "alice",
    });
    expect(collector.kafkaSecurity).toEqual({
      ssl: {
        ca: ["-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"],
        cert: "client cert",
        key: "client key",
      },
      sasl: { mechanism: "plain", username: "alice", password: "secret" },
    });
    // The raw settings, the password among them, do not stay in the parsed config.
    expect(collector).not.toHaveProperty("saslPassword");
    expect(JSON.stringify({ ...collector, kafkaSecurity: undefined })).not.toContain("secret");

    expect(parseSinkConfig([], { ...sinkBase, TRIBUTARY_SINK_TLS: "true" }).kafkaSecurity).toEqual({
      ssl: true,
    });
    expect(parseSinkConfig([], { ...sinkBase, TRIBUTARY_SINK_TLS_CA_FILE: ca }).kafkaSecurity).toEqual({
      ssl: { ca: [expect.stringContaining("BEGIN CERTIFICATE")] },
    });
  });

  it.each([
    [
      "a mechanism without a password",
      { TRIBUTARY_SINK_SASL_MECHANISM: "scram-sha-512", TRIBUTARY_SINK_SASL_USERNAME: "alice" },
      /--sasl-password \(TRIBUTARY_SINK_SASL_PASSWORD\): SASL mechanism scram-sha-512 needs saslPassword/,
    ],
    [
      "a mechanism without a username",
      { TRIBUTARY_SINK_SASL_MECHANISM: "plain", TRIBUTARY_SINK_SASL_PASSWORD: "p" },
      /--sasl-username \(TRIBUTARY_SINK_SASL_USERNAME\): SASL mechanism plain needs saslUsername/,
    ],
    [
      "credentials without a mechanism",
      { TRIBUTARY_SINK_SASL_USERNAME: "alice", TRIBUTARY_SINK_SASL_PASSWORD: "p" },
      /--sasl-mechanism \(TRIBUTARY_SINK_SASL_MECHANISM\): a SASL username is given without saslMechanism/,
    ],
    [
      "an unknown mechanism",
      { TRIBUTARY_SINK_SASL_MECHANISM: "gssapi" },
      /--sasl-mechanism \(TRIBUTARY_SINK_SASL_MECHANISM\): saslMechanism must be one of plain, scram-sha-256, scram-sha-512/,
    ],
    [
      "an unreadable CA file",
      { TRIBUTARY_SINK_TLS_CA_FILE: "/nonexistent/ca.crt" },
      /--tls-ca-file \(TRIBUTARY_SINK_TLS_CA_FILE\): cannot read \/nonexistent\/ca\.crt: ENOENT/,
    ],
    [
      "a certificate without its key",
      { TRIBUTARY_SINK_TLS_CERT_FILE: cert },
      /--tls-key-file \(TRIBUTARY_SINK_TLS_KEY_FILE\): mutual TLS needs both tlsCertFile and tlsKeyFile/,
    ],
    [
      "TLS files with tls false",
      { TRIBUTARY_SINK_TLS: "false", TRIBUTARY_SINK_TLS_CA_FILE: ca },
      /--tls \(TRIBUTARY_SINK_TLS\): tls is false but a TLS file is given/,
    ],
    [
      "a relative CA path",
      { TRIBUTARY_SINK_TLS_CA_FILE: "ca.crt" },
      /--tls-ca-file \(TRIBUTARY_SINK_TLS_CA_FILE\): tlsCaFile must be an absolute path/,
    ],
  ])("refuses %s with a ConfigError naming the flag and variable", (_, env, message) => {
    expect(() => parseSinkConfig([], { ...sinkBase, ...env })).toThrow(message);
  });

  it("the collector names its own variables", () => {
    expect(() =>
      parseCollectorConfig([], { ...collectorBase, TRIBUTARY_COLLECTOR_SASL_MECHANISM: "scram-sha-256" }),
    ).toThrow(
      /--sasl-username \(TRIBUTARY_COLLECTOR_SASL_USERNAME\)[\s\S]*--sasl-password \(TRIBUTARY_COLLECTOR_SASL_PASSWORD\)/,
    );
  });
});

describe("Secret rotation", () => {
  it("stamps the Secrets' versions on every pod template, so a rotated Secret rolls the pods", () => {
    const versions = ["kafka-ca@101", "kafka-client@102", "kafka-user@103"];
    for (const deployment of deployments(secureKafka, versions)) {
      expect(deployment.spec.template.metadata.annotations).toEqual({
        [kafkaSecretsAnnotation]: "kafka-ca@101,kafka-client@102,kafka-user@103",
      });
    }
    for (const deployment of deployments(undefined, [])) {
      expect(deployment.spec.template.metadata.annotations).toBeUndefined();
    }
  });
});
