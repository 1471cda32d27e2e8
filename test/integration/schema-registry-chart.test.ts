/**
 * The chart's schema registry against the real kube-apiserver and Kafka: its objects apply in a
 * namespace that enforces the "restricted" Pod Security Standard and the ReplicaSet controller
 * gets its pods admitted; then the role runs as a process with exactly the Deployment's
 * arguments and environment (only the brokers, port and topic changed for this machine), becomes
 * ready, serves the API and stops cleanly on SIGTERM.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import {
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadYaml,
  PatchStrategy,
} from "@kubernetes/client-node";
import kafkajs from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { builtin, KubeClient } from "../../src/operator/kube.js";
import { offNodeNamespaceAnnotations, testEnv, uniqueName } from "../support/env.js";

const root = join(import.meta.dirname, "..", "..");
const chart = join(root, "charts", "tributary");

interface Manifest extends KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: rendered YAML is read field by field.
  spec: any;
}

type EnvVar = { name: string; value?: string };

async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | null | false>,
  timeoutMs = 60_000,
) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what}; last seen: ${last instanceof Error ? last.message : String(last)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe("the chart's schema registry on a real API server and Kafka", () => {
  const env = testEnv();
  const release = "tributary";
  const namespace = uniqueName("chart-registry");
  const schemasTopic = uniqueName("schemas-chart");
  let adminClient: KubeClient;
  let objects: Manifest[];
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    const admin = new KubeConfig();
    admin.loadFromFile(env.kubeconfig);
    adminClient = new KubeClient(admin);
    await adminClient.create(builtin.namespace, {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: {
        name: namespace,
        labels: { "pod-security.kubernetes.io/enforce": "restricted" },
        annotations: offNodeNamespaceAnnotations,
      },
    });
    const version = (await adminClient.request<{ gitVersion: string }>("GET", "/version")).gitVersion;
    const result = spawnSync(
      env.helm,
      [
        "template",
        release,
        chart,
        "--namespace",
        namespace,
        "--kube-version",
        version,
        "--set",
        `kafka.bootstrapServers={${env.kafkaBrokers.join(",")}}`,
        "--set",
        "logLevel=info",
      ],
      { encoding: "utf8" },
    );
    if (result.status !== 0) throw new Error(`helm template failed: ${result.stderr}`);
    objects = parseAllDocuments(result.stdout)
      .filter((document) => document.contents !== null)
      .map((document) => loadYaml<Manifest>(document.toString()))
      .filter((object) => object.metadata.labels?.["app.kubernetes.io/component"] === "schema-registry");
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await adminClient?.delete(builtin.namespace, undefined, namespace).catch(() => undefined);
    adminClient?.close();
    const kafka = new kafkajs.Kafka({ brokers: env.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
    const kafkaAdmin = kafka.admin();
    await kafkaAdmin.connect();
    await kafkaAdmin.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
    await kafkaAdmin.disconnect();
  });

  it("applies, and its pods pass the restricted Pod Security admission", async () => {
    expect(objects.map((object) => object.kind).sort()).toEqual([
      "Deployment",
      "PodDisruptionBudget",
      "Service",
    ]);
    const admin = new KubeConfig();
    admin.loadFromFile(env.kubeconfig);
    const api = KubernetesObjectApi.makeApiClient(admin);
    for (const dryRun of ["All", undefined] as const) {
      for (const object of objects) {
        await api.patch(
          object,
          undefined,
          dryRun,
          "tributary-chart-tests",
          true,
          PatchStrategy.ServerSideApply,
        );
      }
    }
    // The ReplicaSet controller creates the pods only if Pod Security admission lets them in.
    const pods = await waitFor("the two schema-registry pods", async () => {
      const list = await adminClient.list(builtin.pod, namespace, {
        labelSelector: "app.kubernetes.io/component=schema-registry",
      });
      return list.items.length === 2 ? list.items : undefined;
    });
    for (const pod of pods) {
      expect((pod.spec as { automountServiceAccountToken?: boolean }).automountServiceAccountToken).toBe(
        false,
      );
    }
  });

  // Longer than the waits below add up to (90 s to listen, 60 s to be ready), so a slow start
  // fails with the message of the wait it did not get past.
  it("runs with the Deployment's arguments and environment, serves the API, stops on SIGTERM", {
    timeout: 240_000,
  }, async () => {
    const deployment = objects.find((object) => object.kind === "Deployment")!;
    const container = deployment.spec.template.spec.containers[0] as { args: string[]; env: EnvVar[] };
    const podEnv = Object.fromEntries(container.env.map((v) => [v.name, v.value ?? ""]));
    expect(podEnv.TRIBUTARY_SCHEMA_REGISTRY_BROKERS).toBe(env.kafkaBrokers.join(","));
    let output = "";
    child = spawn(
      join(root, "node_modules", ".bin", "tsx"),
      [join(root, "src", "cli.ts"), ...container.args],
      {
        cwd: root,
        env: {
          ...process.env,
          ...podEnv,
          // This machine's differences: a free port, and a topic of this test's own.
          TRIBUTARY_SCHEMA_REGISTRY_PORT: "0",
          TRIBUTARY_SCHEMA_REGISTRY_HOST: "127.0.0.1",
          TRIBUTARY_SCHEMA_REGISTRY_SCHEMAS_TOPIC: schemasTopic,
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child!.on("exit", (code) => resolve(code)));
    const running = () => {
      if (child!.exitCode !== null)
        throw new Error(`schema-registry exited (${child!.exitCode}):\n${output}`);
    };
    const port = await waitFor(
      "the registry to listen",
      async () => {
        running();
        return Number(/"port":(\d+).*"msg":"schema registry listening"/.exec(output)?.[1]) || undefined;
      },
      90_000,
    );
    const base = `http://127.0.0.1:${port}`;
    await waitFor("the registry to be ready", async () => {
      running();
      return (await fetch(`${base}/readyz`)).ok;
    });
    const schema = JSON.stringify({ type: "record", name: "R", fields: [{ name: "a", type: "long" }] });
    const registered = await fetch(`${base}/subjects/chart-value/versions`, {
      method: "POST",
      headers: { "content-type": "application/vnd.schemaregistry.v1+json" },
      body: JSON.stringify({ schema }),
    });
    expect(registered.status).toBe(200);
    const { id } = (await registered.json()) as { id: number };
    expect(await (await fetch(`${base}/subjects/chart-value/versions/1`)).json()).toMatchObject({
      id,
      version: 1,
    });
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(output).toContain("schema registry stopped");
  });
});
