/**
 * Shared by the operator's integration tests: a client on the test environment's API server,
 * the CRDs applied from src/api, a namespace per test file, and polling helpers.
 */
import { customResourceDefinitions } from "../../src/api/crds.js";
import { resources } from "../../src/api/index.js";
import { resourceType } from "../../src/controllers/common.js";
import { createLogger } from "../../src/log.js";
import type { ControllerDefinition } from "../../src/operator/controller.js";
import {
  builtin,
  type KubeClient as Client,
  collectionPath,
  KubeClient,
  type KubeObject,
} from "../../src/operator/kube.js";
import { Operator } from "../../src/operator/operator.js";
import { offNodeNamespaceAnnotations, testEnv } from "../support/env.js";

/**
 * An operator running the given controllers in-process, watching one test namespace, started and
 * synced; fast backoff so a failing reconcile is retried within a test's patience.
 */
export async function startOperator(
  name: string,
  namespace: string,
  controllers: ControllerDefinition<KubeObject>[],
  backoff: { baseMs: number; maxMs: number } = { baseMs: 100, maxMs: 2_000 },
): Promise<Operator> {
  const operator = new Operator({
    client: testClient(),
    log: createLogger(name),
    image: "registry.example/tributary:test",
    namespaces: [namespace],
    controllers,
    baseBackoffMs: backoff.baseMs,
    maxBackoffMs: backoff.maxMs,
    defaultMetrics: false,
  });
  await operator.start();
  await operator.whenSynced();
  return operator;
}

export function testClient(): KubeClient {
  return KubeClient.fromFile(testEnv().kubeconfig);
}

/** Server-side applies the six CRDs (idempotent; other test files may do the same) and waits until established. */
export async function applyCrds(client: Client): Promise<void> {
  for (const crd of customResourceDefinitions()) {
    await client.apply(builtin.customResourceDefinition, crd as unknown as KubeObject, "tributary-tests");
  }
  for (const crd of customResourceDefinitions()) {
    await waitFor(`CRD ${crd.metadata.name} established`, async () => {
      const stored = await client.get(builtin.customResourceDefinition, undefined, crd.metadata.name);
      const conditions = (stored.status as { conditions?: { type: string; status: string }[] } | undefined)
        ?.conditions;
      return conditions?.some((condition) => condition.type === "Established" && condition.status === "True");
    });
  }
}

/** A namespace whose pods stay Pending (see offNodeNamespaceAnnotations). */
export async function createNamespace(client: Client, name: string): Promise<void> {
  await client.create(builtin.namespace, {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name, annotations: offNodeNamespaceAnnotations },
  });
}

export async function deleteNamespace(client: Client, name: string): Promise<void> {
  await client.delete(builtin.namespace, undefined, name);
}

/**
 * Polls until `check` answers something truthy; fails with the last answer or error, so a
 * timeout says what was seen. No fixed sleeps: a test waits exactly as long as the system needs.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | null | false>,
  { timeoutMs = 60_000, intervalMs = 100 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
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
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out waiting for ${what}; last seen: ${seen}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export type Condition = {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
};

export function condition(object: KubeObject | undefined, type: string): Condition | undefined {
  return (object?.status as { conditions?: Condition[] } | undefined)?.conditions?.find(
    (entry) => entry.type === type,
  );
}

/**
 * Whether the controller has settled a resource on its current spec without finding a problem
 * in it: Degraded is False for this generation. (Ready may still wait for pods, which never run
 * in the integration tests' namespaces.)
 */
export function isSettled(object: KubeObject | undefined): boolean {
  const degraded = condition(object, "Degraded");
  return degraded?.status === "False" && degraded.observedGeneration === object?.metadata.generation;
}

/**
 * There is no kubelet in the test environment, so pods stay Pending forever. To let the real
 * StatefulSet controller count ready replicas, the test plays the kubelet's part for the pods
 * that exist: it writes their status (phase Running, Ready condition True) through the
 * `pods/status` subresource, exactly what a kubelet reports for a started, ready container.
 */
export async function playKubelet(client: Client, namespace: string, labelSelector: string): Promise<number> {
  const pods = await client.list(builtin.pod, namespace, { labelSelector });
  let marked = 0;
  for (const pod of pods.items) {
    const status = pod.status as { phase?: string } | undefined;
    if (status?.phase === "Running" || pod.metadata.deletionTimestamp) continue;
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await client.mergePatch(
      builtin.pod,
      namespace,
      pod.metadata.name,
      {
        status: {
          phase: "Running",
          podIP: "10.0.0.1",
          startTime: now,
          conditions: [
            { type: "PodScheduled", status: "True", lastTransitionTime: now },
            { type: "Initialized", status: "True", lastTransitionTime: now },
            { type: "ContainersReady", status: "True", lastTransitionTime: now },
            { type: "Ready", status: "True", lastTransitionTime: now },
          ],
        },
      },
      "status",
    );
    marked++;
  }
  return marked;
}

/**
 * Deletes every Tributary resource in a namespace and waits until they are gone. Call it while
 * the operator still runs: the resources carry its finalizer, and a namespace deleted after the
 * operator stopped would wait for that finalizer forever.
 */
export async function deleteTributaryResources(client: Client, namespace: string): Promise<void> {
  const types = resources.map((definition) => resourceType(definition));
  for (const type of types) {
    await client.request("DELETE", collectionPath(type, namespace), {
      body: { kind: "DeleteOptions", apiVersion: "v1", propagationPolicy: "Background" },
    });
  }
  await waitFor(
    `Tributary resources in ${namespace} released by the operator`,
    async () => {
      for (const type of types) {
        if ((await client.list(type, namespace, { limit: 1 })).items.length > 0) return false;
      }
      return true;
    },
    { timeoutMs: 120_000, intervalMs: 250 },
  );
}
