/**
 * The chart's schema registry without a cluster: rendered once per Kafka cluster when enabled,
 * a hardened Deployment whose environment the role's own config parser accepts, a Service on
 * Confluent's port, TLS and SASL from Secrets the Kubernetes way, and values the schema refuses.
 * test/integration/schema-registry-chart.test.ts applies it to a real API server and runs it.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { parseSchemaRegistryConfig } from "../../src/dataplane/registry/config.js";

const root = join(import.meta.dirname, "..", "..");
const chart = join(root, "charts", "tributary");
const kubeVersion = "1.30.0";

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: rendered YAML is read field by field.
  spec: any;
}

type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef: { name: string; key: string } } };

let helm: string;

function findHelm(): string {
  const path =
    process.env.TRIBUTARY_TESTENV_HELM ??
    /^export TRIBUTARY_TESTENV_HELM=(.*)$/m.exec(
      execFileSync("bash", [join(root, "scripts", "testenv"), "env"], { encoding: "utf8" }),
    )?.[1];
  if (!path || !existsSync(path)) {
    throw new Error(`helm is not built (${path ?? "no path"}): run 'bash scripts/testenv up helm'`);
  }
  return path;
}

function template(set: string[]): { status: number | null; stdout: string; stderr: string } {
  const args = [
    "template",
    "tributary",
    chart,
    "--namespace",
    "tributary-system",
    "--kube-version",
    kubeVersion,
  ];
  for (const value of set) args.push("--set", value);
  const result = spawnSync(helm, args, { encoding: "utf8" });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function render(set: string[] = []): K8sObject[] {
  const result = template(set);
  if (result.status !== 0) throw new Error(`helm template failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout)
    .map((document) => document.toJS() as K8sObject | null)
    .filter((object): object is K8sObject => object !== null);
}

const registryObjects = (objects: K8sObject[]) =>
  objects.filter((object) => object.metadata.labels?.["app.kubernetes.io/component"] === "schema-registry");

const withKafka = "kafka.bootstrapServers={kafka-0.kafka:9092,kafka-1.kafka:9092}";

function registryPod(objects: K8sObject[]) {
  const deployment = registryObjects(objects).find((object) => object.kind === "Deployment")!;
  return deployment.spec.template.spec;
}

/** The container's plain env values, as the kubelet would set them (secretKeyRefs left out). */
function envOf(pod: { containers: { env: EnvVar[] }[] }): Record<string, string> {
  return Object.fromEntries(
    pod.containers[0]!.env.filter((v) => v.value !== undefined).map((v) => [v.name, v.value!]),
  );
}

beforeAll(() => {
  helm = findHelm();
});

describe("the chart's schema registry", () => {
  it("is rendered once a Kafka cluster is known, and not when disabled or without one", () => {
    expect(registryObjects(render())).toEqual([]);
    expect(registryObjects(render([withKafka, "schemaRegistry.enabled=false"]))).toEqual([]);
    const objects = registryObjects(render([withKafka]));
    expect(objects.map((object) => `${object.kind}/${object.metadata.name}`).sort()).toEqual([
      "Deployment/tributary-schema-registry",
      "PodDisruptionBudget/tributary-schema-registry",
      "Service/tributary-schema-registry",
    ]);
    // Its own cluster, when it is not the operator's default one.
    const own = render(["schemaRegistry.kafka.bootstrapServers={other:9092}"]);
    expect(envOf(registryPod(own)).TRIBUTARY_SCHEMA_REGISTRY_BROKERS).toBe("other:9092");
    // One replica: no disruption budget, which would block every node drain.
    expect(
      registryObjects(render([withKafka, "schemaRegistry.replicas=1"]))
        .map((object) => object.kind)
        .sort(),
    ).toEqual(["Deployment", "Service"]);
  });

  it("runs the image's schema-registry role with an environment its config parser accepts", () => {
    const objects = render([withKafka, "image.tag=1.2.3", "schemaRegistry.defaultCompatibility=FULL"]);
    const pod = registryPod(objects);
    const container = pod.containers[0]!;
    expect(container.image).toBe("tributary:1.2.3");
    expect(container.args).toEqual(["schema-registry"]);
    const config = parseSchemaRegistryConfig([], envOf(pod));
    expect(config).toMatchObject({
      brokers: ["kafka-0.kafka:9092", "kafka-1.kafka:9092"],
      schemasTopic: "_tributary_schemas",
      port: 8081,
      defaultCompatibility: "FULL",
      maxBodyBytes: 1024 * 1024,
      kafkaSecurity: {},
    });
    expect(container.ports).toEqual([{ name: "http", containerPort: 8081, protocol: "TCP" }]);
    expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "http" });
  });

  it("meets the restricted Pod Security Standard and needs no Kubernetes API token", () => {
    const pod = registryPod(render([withKafka]));
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(pod.containers[0]!.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(pod.affinity.podAntiAffinity).toBeDefined();
  });

  it("puts a Service on Confluent's port 8081 in front of every ready replica, and no other pod", () => {
    const objects = render([withKafka]);
    const service = registryObjects(objects).find((object) => object.kind === "Service")!;
    expect(service.spec.ports).toEqual([{ name: "http", port: 8081, targetPort: "http", protocol: "TCP" }]);
    const deployment = registryObjects(objects).find((object) => object.kind === "Deployment")!;
    expect(deployment.spec.template.metadata.labels).toMatchObject(service.spec.selector);
    expect(deployment.spec.selector.matchLabels).toEqual(service.spec.selector);
    // The operator's pods carry another component, so neither selector takes the other's pods.
    const operator = objects.find(
      (object) =>
        object.kind === "Deployment" &&
        object.metadata.labels?.["app.kubernetes.io/component"] === "operator",
    )!;
    expect(operator.spec.selector.matchLabels["app.kubernetes.io/component"]).toBe("operator");
    expect(service.spec.selector["app.kubernetes.io/component"]).toBe("schema-registry");
    // Nor does a selection of the operator's pods by name and instance (as kubectl users and
    // test/e2e write it) take the registry's.
    const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
    const operatorLabels = operator.spec.template.metadata.labels as Record<string, string>;
    expect(podLabels["app.kubernetes.io/name"]).not.toBe(operatorLabels["app.kubernetes.io/name"]);
  });

  it("reaches a Kafka cluster behind TLS and SASL through mounted Secrets and secretKeyRefs", () => {
    const pod = registryPod(
      render([
        withKafka,
        "schemaRegistry.kafka.tls.enabled=true",
        "schemaRegistry.kafka.tls.caSecret.name=kafka-ca",
        "schemaRegistry.kafka.tls.caSecret.key=ca.pem",
        "schemaRegistry.kafka.tls.clientCertificateSecret=registry-cert",
        "schemaRegistry.kafka.sasl.mechanism=scram-sha-256",
        "schemaRegistry.kafka.sasl.credentialsSecret=registry-login",
      ]),
    );
    const container = pod.containers[0]!;
    expect(envOf(pod)).toMatchObject({
      TRIBUTARY_SCHEMA_REGISTRY_TLS: "true",
      TRIBUTARY_SCHEMA_REGISTRY_TLS_CA_FILE: "/etc/tributary/kafka/ca/ca.crt",
      TRIBUTARY_SCHEMA_REGISTRY_TLS_CERT_FILE: "/etc/tributary/kafka/client/tls.crt",
      TRIBUTARY_SCHEMA_REGISTRY_TLS_KEY_FILE: "/etc/tributary/kafka/client/tls.key",
      TRIBUTARY_SCHEMA_REGISTRY_SASL_MECHANISM: "scram-sha-256",
    });
    const env = container.env as EnvVar[];
    expect(env.find((v) => v.name === "TRIBUTARY_SCHEMA_REGISTRY_SASL_PASSWORD")).toEqual({
      name: "TRIBUTARY_SCHEMA_REGISTRY_SASL_PASSWORD",
      valueFrom: { secretKeyRef: { name: "registry-login", key: "password" } },
    });
    expect(pod.volumes).toEqual(
      expect.arrayContaining([
        { name: "kafka-ca", secret: { secretName: "kafka-ca", items: [{ key: "ca.pem", path: "ca.crt" }] } },
        {
          name: "kafka-client-cert",
          secret: {
            secretName: "registry-cert",
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
        { name: "kafka-ca", mountPath: "/etc/tributary/kafka/ca", readOnly: true },
        { name: "kafka-client-cert", mountPath: "/etc/tributary/kafka/client", readOnly: true },
      ]),
    );
    // No secret value is written into the pod spec.
    expect(JSON.stringify(pod)).not.toMatch(/password"?\s*:\s*"[^"]/i);
  });

  it.each([
    ["schemaRegistry.defaultCompatibility=SOMETIMES", "defaultCompatibility"],
    ["schemaRegistry.port=70000", "port"],
    ["schemaRegistry.replicas=0", "replicas"],
    ["schemaRegistry.kafka.sasl.mechanism=gssapi", "mechanism"],
    ["schemaRegistry.kafka.bootstrapServers={kafka}", "bootstrapServers"],
    ["schemaRegistry.kafka.tls.caSecret.name=Not_A_Secret", "name"],
    ["schemaRegistry.replica=2", "replica"],
  ])("refuses %s through values.schema.json, naming the field", (value, field) => {
    const result = template([withKafka, value]);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/values don't meet the specifications of the schema/);
    expect(result.stderr).toContain(field);
  });

  it("passes helm lint with the registry rendered", () => {
    const result = spawnSync(
      helm,
      [
        "lint",
        chart,
        "--strict",
        "--kube-version",
        kubeVersion,
        "--set",
        withKafka,
        "--set",
        "schemaRegistry.kafka.sasl.credentialsSecret=x",
      ],
      { encoding: "utf8" },
    );
    expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
  });
});
