/**
 * The runtime's contract with a reconciler, shown with small reconcilers of its own on the Dag
 * CRD (the runtime is generic; the real Dag controller is not involved): a TerminalError is
 * reported and not retried until the resource changes; requeueAfter brings a resource back
 * without any change; reconcilers never see the finalizer bookkeeping.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dagDefinition } from "../../src/api/dag.js";
import { resourceType } from "../../src/controllers/common.js";
import { type ControllerDefinition, TerminalError } from "../../src/operator/controller.js";
import { finalizerName } from "../../src/operator/finalizer.js";
import { builtin, type KubeObject } from "../../src/operator/kube.js";
import type { Operator } from "../../src/operator/operator.js";
import { uniqueName } from "../support/env.js";
import {
  applyCrds,
  condition,
  createNamespace,
  deleteNamespace,
  deleteTributaryResources,
  startOperator,
  testClient,
  waitFor,
} from "./operator-harness.js";

const client = testClient();
const namespace = uniqueName("op-runtime");
const dags = resourceType(dagDefinition);
const calls = new Map<string, number>();
const seenFinalizers: string[][] = [];
let operator: Operator;

const count = (name: string) => calls.get(name) ?? 0;
/** The counts the `count-up` Dag's reconciles wrote, in order. */
const countedUp: number[] = [];

/** Fails terminally while the Dag carries the label `fail=terminal`; asks to come back for `requeue-*`. */
const probe: ControllerDefinition<KubeObject> = {
  type: dags,
  async reconcile(resource, context) {
    const name = resource.metadata.name;
    calls.set(name, count(name) + 1);
    seenFinalizers.push(resource.metadata.finalizers ?? []);
    if (resource.metadata.labels?.fail === "terminal") {
      throw new TerminalError("InvalidSpec", "spec.tasks: the probe refuses this Dag on purpose");
    }
    if (name === "count-up") {
      // Counts up to 5 in status, one write per reconcile, each asking to run again at once.
      const seen = Number((resource.status as { activeRuns?: number } | undefined)?.activeRuns ?? 0);
      if (seen >= 5) return undefined;
      countedUp.push(seen + 1);
      await context.writeStatus(resource, {
        observedGeneration: resource.metadata.generation,
        activeRuns: seen + 1,
      });
      return { requeueAfterMs: 0 };
    }
    await context.writeStatus(resource, {
      observedGeneration: resource.metadata.generation,
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "Reconciled",
          message: "",
          lastTransitionTime: "2026-01-01T00:00:00Z",
          observedGeneration: resource.metadata.generation,
        },
      ],
    });
    return name.startsWith("requeue-") ? { requeueAfterMs: 200 } : undefined;
  },
};

const dag = (name: string, labels: Record<string, string> = {}): KubeObject => ({
  apiVersion: dagDefinition.apiVersion,
  kind: "Dag",
  metadata: { name, namespace, labels },
  spec: { tasks: [{ id: "only", command: ["true"] }] },
});

beforeAll(async () => {
  await applyCrds(client);
  await createNamespace(client, namespace);
  operator = await startOperator("runtime-test", namespace, [probe], { baseMs: 50, maxMs: 1_000 });
});

afterAll(async () => {
  await deleteTributaryResources(client, namespace);
  await operator?.stop();
  await deleteNamespace(client, namespace);
  client.close();
});

describe("controller runtime", () => {
  it("reports a TerminalError as Degraded with its reason and does not retry it until the resource changes", async () => {
    await client.create(dags, dag("broken", { fail: "terminal" }));
    const degraded = await waitFor("Degraded", async () => {
      const current = await client.get(dags, namespace, "broken");
      return condition(current, "Degraded")?.status === "True" ? current : undefined;
    });
    expect(condition(degraded, "Degraded")).toMatchObject({ reason: "InvalidSpec" });
    expect(condition(degraded, "Degraded")?.message).toContain(`Dag ${namespace}/broken: spec.tasks`);
    await waitFor("Warning event", async () => {
      const events = await client.list(builtin.event, namespace);
      return events.items.some(
        (event) =>
          event.type === "Warning" &&
          event.reason === "InvalidSpec" &&
          (event.regarding as { name: string }).name === "broken",
      );
    });
    // A retried error would have been reconciled again within a few backoff periods (50, 100,
    // 200 ms); a terminal one is not. Another resource going through the queue shows the
    // queue kept working meanwhile.
    const afterFailure = count("broken");
    await client.create(dags, dag("witness"));
    await waitFor("witness reconciled", async () => count("witness") > 0);
    await waitFor("the queue is idle", async () => operator.controller("Dag")!.queue.waitingRetries === 0);
    expect(count("broken")).toBe(afterFailure);
    expect(operator.controller("Dag")!.queue.failures(`${namespace}/broken`)).toBe(0);

    await client.mergePatch(dags, namespace, "broken", { metadata: { labels: { fail: null } } });
    await waitFor("recovered after the change", async () => {
      const current = await client.get(dags, namespace, "broken");
      return condition(current, "Ready")?.status === "True";
    });
  });

  it("brings a resource back after requeueAfter without any change to it", async () => {
    await client.create(dags, dag("requeue-me"));
    await waitFor("reconciled three times", async () => count("requeue-me") >= 3);
    const stored = await client.get(dags, namespace, "requeue-me");
    expect(stored.metadata.generation).toBe(1);
  });

  it("lets a reconcile that follows its own status write at once see that write, before the watch brings it", async () => {
    await client.create(dags, dag("count-up"));
    await waitFor(
      "the count at 5",
      async () =>
        ((await client.get(dags, namespace, "count-up")).status as { activeRuns?: number } | undefined)
          ?.activeRuns === 5,
    );
    // Each reconcile read the count the one before it wrote: none wrote a count twice.
    expect(countedUp).toEqual([1, 2, 3, 4, 5]);
  });

  it("keeps the finalizer bookkeeping away from reconcilers", async () => {
    // Every reconcile saw the finalizer already in place: the runtime adds it first.
    expect(seenFinalizers.length).toBeGreaterThan(0);
    for (const finalizers of seenFinalizers) expect(finalizers).toContain(finalizerName);
    await client.delete(dags, namespace, "witness");
    await waitFor(
      "deleted once the finalizer is released",
      async () => !(await client.find(dags, namespace, "witness")),
    );
  });
});
