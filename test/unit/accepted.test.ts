import { describe, expect, it } from "vitest";
import { findCondition } from "../../src/api/conditions.js";
import { dagDefinition } from "../../src/api/dag.js";
import { dagController } from "../../src/controllers/dag/reconcile.js";
import type { Condition } from "../../src/operator/conditions.js";
import type { Context } from "../../src/operator/controller.js";
import type { KubeObject } from "../../src/operator/kube.js";

/** Reconciles one Dag with a context that only records the status written. */
async function reconcileDag(spec: Record<string, unknown>) {
  const resource: KubeObject = {
    apiVersion: dagDefinition.apiVersion,
    kind: "Dag",
    metadata: { name: "etl", namespace: "data", generation: 3 },
    spec,
  };
  const written: Record<string, unknown>[] = [];
  const context = {
    cachedPeers: () => [],
    writeStatus: async (_resource: KubeObject, status: Record<string, unknown>) => {
      written.push(status);
    },
    event: async () => {},
    now: () => new Date("2026-01-01T00:00:00Z"),
  } as unknown as Context<KubeObject>;
  await dagController.reconcile(resource, context);
  expect(written).toHaveLength(1);
  const status = written[0] as { observedGeneration?: number; conditions: Condition[] };
  return {
    status,
    ready: findCondition(status.conditions, "Ready"),
    progressing: findCondition(status.conditions, "Progressing"),
    degraded: findCondition(status.conditions, "Degraded"),
  };
}

describe("a kind without a data plane yet", () => {
  it("accepts a valid spec without calling it Ready, and says why", async () => {
    const { status, ready, progressing, degraded } = await reconcileDag({
      tasks: [{ id: "only", command: ["true"] }],
    });
    expect(status.observedGeneration).toBe(3);
    expect(ready).toMatchObject({ status: "False", reason: "DataPlaneNotAvailable", observedGeneration: 3 });
    expect(ready?.message).toContain("does not yet run a data plane for Dag");
    expect(progressing).toMatchObject({ status: "False", reason: "DataPlaneNotAvailable" });
    expect(degraded).toMatchObject({ status: "False", reason: "Reconciled" });
  });

  it("still reports an invalid spec as Degraded with its problem's reason", async () => {
    const { ready, degraded } = await reconcileDag({
      tasks: [
        { id: "a", command: ["true"], dependsOn: ["b"] },
        { id: "b", command: ["true"], dependsOn: ["a"] },
      ],
    });
    expect(degraded).toMatchObject({ status: "True", reason: "DagCycle" });
    expect(ready).toMatchObject({ status: "False", reason: "DagCycle" });
  });

  it("reports a schedule the cron parser refuses as Degraded InvalidSchedule, naming the field", async () => {
    const { ready, degraded } = await reconcileDag({
      schedule: "a b c d e",
      tasks: [{ id: "only", command: ["true"] }],
    });
    expect(degraded).toMatchObject({ status: "True", reason: "InvalidSchedule" });
    expect(degraded?.message).toMatch(/^spec\.schedule: "a b c d e" is not a valid cron expression: /);
    expect(ready).toMatchObject({ status: "False", reason: "InvalidSchedule" });
  });

  it("keeps the paused health while reconciliation is paused", async () => {
    const { progressing } = await reconcileDag({
      tasks: [{ id: "only", command: ["true"] }],
      clusterOperation: { reconciliationPaused: true },
    });
    expect(progressing).toMatchObject({ status: "False", reason: "ReconciliationPaused" });
  });
});
