import { describe, expect, it } from "vitest";
import { yarnQueueDefinition } from "../../src/api/yarnqueue.js";
import { desiredChildren } from "../../src/controllers/yarnqueue/build.js";
import { queueTree } from "../../src/controllers/yarnqueue/reconcile.js";
import type { KubeObject } from "../../src/operator/kube.js";

const parse = (spec: Record<string, unknown>) => yarnQueueDefinition.spec.parse(spec);

const resource = (name: string, spec: Record<string, unknown>): KubeObject => ({
  apiVersion: yarnQueueDefinition.apiVersion,
  kind: "YarnQueue",
  metadata: { name, namespace: "data", uid: `uid-${name}` },
  spec,
});

describe("YarnQueue build", () => {
  const rootSpec = {
    cluster: "analytics",
    root: {
      nodeManagers: { replicas: 4, vcores: 8, memory: "32Gi", storage: { size: "50Gi" } },
      maximumAllocation: { vcores: 8, memory: "16Gi" },
    },
  };
  const children = desiredChildren({
    resource: resource("analytics-root", rootSpec),
    spec: parse(rootSpec) as never,
    image: "registry.example/tributary:1",
  });
  const byName = new Map(children.map((child) => [`${child.kind}/${child.metadata.name}`, child]));

  it("sizes the node managers from the root queue and points them at the resource manager", () => {
    const nm = byName.get("StatefulSet/analytics-root-nodemanager")!;
    const spec = nm.spec as {
      replicas: number;
      template: { spec: { containers: Array<{ env: Array<{ name: string; value?: string }> }> } };
      volumeClaimTemplates: Array<{ spec: { resources: { requests: { storage: string } } } }>;
    };
    expect(spec.replicas).toBe(4);
    const env = Object.fromEntries(spec.template.spec.containers[0]!.env.map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      TRIBUTARY_NODEMANAGER_VCORES: "8",
      TRIBUTARY_NODEMANAGER_MEMORY: String(32 * 1024),
      TRIBUTARY_NODEMANAGER_RESOURCE_MANAGER: "analytics-root-resourcemanager.data.svc:8088",
      TRIBUTARY_NODEMANAGER_SERVICE: "analytics-root-nodemanager",
    });
    expect(spec.volumeClaimTemplates[0]!.spec.resources.requests.storage).toBe("50Gi");
  });

  it("runs one resource manager with its allocation limits, restricted and without an API token", () => {
    const rm = byName.get("StatefulSet/analytics-root-resourcemanager")!;
    const spec = rm.spec as {
      replicas: number;
      template: {
        spec: {
          automountServiceAccountToken: boolean;
          securityContext: { runAsNonRoot: boolean };
          containers: Array<{ command: string[]; env: Array<{ name: string; value?: string }> }>;
        };
      };
    };
    expect(spec.replicas).toBe(1);
    expect(spec.template.spec.automountServiceAccountToken).toBe(false);
    expect(spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    expect(spec.template.spec.containers[0]!.command).toEqual(["tributary", "resourcemanager"]);
    const env = Object.fromEntries(spec.template.spec.containers[0]!.env.map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      TRIBUTARY_RESOURCEMANAGER_MAXIMUM_ALLOCATION_MB: String(16 * 1024),
      TRIBUTARY_RESOURCEMANAGER_MAXIMUM_ALLOCATION_VCORES: "8",
      TRIBUTARY_RESOURCEMANAGER_MINIMUM_ALLOCATION_MB: "1024",
    });
    expect(byName.get("Service/analytics-root-resourcemanager")).toBeDefined();
    expect((byName.get("Service/analytics-root-nodemanager")!.spec as { clusterIP: string }).clusterIP).toBe(
      "None",
    );
  });

  it("turns the YarnQueues into the capacity scheduler's tree, or names what keeps it from being one", () => {
    const queue = (name: string, spec: Record<string, unknown>) => ({
      name,
      spec: parse({ cluster: "analytics", ...spec }),
      object: resource(name, spec),
    });
    const tree = queueTree([
      queue("analytics-root", rootSpec),
      queue("eng", { capacity: 70, maximumCapacity: 90 }),
      queue("etl", { parent: "eng", capacity: 100, state: "STOPPED" }),
      queue("adhoc", { capacity: 30, acl: { submitApplications: { users: ["alice"] } } }),
    ]);
    expect("definitions" in tree && tree.definitions.map((d) => [d.path, d.capacity, d.state])).toEqual([
      ["root", 100, "RUNNING"],
      ["root.adhoc", 30, "RUNNING"],
      ["root.eng", 70, "RUNNING"],
      ["root.eng.etl", 100, "STOPPED"],
    ]);
    const broken = queueTree([queue("analytics-root", rootSpec), queue("eng", { capacity: 70 })]);
    expect(broken).toEqual({ problem: expect.stringMatching(/children of 'root' .* add up to 70%/) });
  });
});
