import { describe, expect, it } from "vitest";
import { mergePodTemplate } from "../../src/controllers/podOverrides.js";

const generated = {
  metadata: { labels: { app: "namenode" } },
  spec: {
    containers: [
      {
        name: "namenode",
        image: "tributary:1",
        command: ["tributary", "namenode"],
        env: [
          { name: "A", value: "1" },
          { name: "B", value: "2" },
        ],
        volumeMounts: [{ name: "data", mountPath: "/var/lib/tributary" }],
        ports: [{ name: "rpc", containerPort: 8020 }],
      },
    ],
    tolerations: [{ key: "a", operator: "Exists" }],
    securityContext: { runAsUser: 1000, fsGroup: 1000 },
  },
};

describe("mergePodTemplate", () => {
  it("returns a copy when there is nothing to merge", () => {
    const result = mergePodTemplate(generated, undefined);
    expect(result).toEqual(generated);
    expect(result).not.toBe(generated);
  });

  it("merges containers by name: fields of the main container change, a sidecar is appended", () => {
    const result = mergePodTemplate(generated, {
      spec: {
        containers: [
          {
            name: "namenode",
            resources: { limits: { memory: "2Gi" } },
            env: [
              { name: "B", value: "two" },
              { name: "C", value: "3" },
            ],
          },
          { name: "sidecar", image: "busybox" },
        ],
      },
    });
    expect(result.spec.containers).toHaveLength(2);
    const main = result.spec.containers[0]!;
    expect(main.image).toBe("tributary:1");
    expect(main.command).toEqual(["tributary", "namenode"]);
    expect((main as Record<string, unknown>).resources).toEqual({ limits: { memory: "2Gi" } });
    expect(main.env).toEqual([
      { name: "A", value: "1" },
      { name: "B", value: "two" },
      { name: "C", value: "3" },
    ]);
    expect(result.spec.containers[1]).toEqual({ name: "sidecar", image: "busybox" });
  });

  it("merges volumeMounts by mountPath and ports by containerPort", () => {
    const result = mergePodTemplate(generated, {
      spec: {
        containers: [
          {
            name: "namenode",
            volumeMounts: [
              { name: "fast", mountPath: "/var/lib/tributary" },
              { name: "tmp", mountPath: "/tmp" },
            ],
            ports: [{ name: "rpc-renamed", containerPort: 8020 }],
          },
        ],
      },
    });
    const main = result.spec.containers[0]!;
    expect(main.volumeMounts).toEqual([
      { name: "fast", mountPath: "/var/lib/tributary" },
      { name: "tmp", mountPath: "/tmp" },
    ]);
    expect(main.ports).toEqual([{ name: "rpc-renamed", containerPort: 8020 }]);
  });

  it("replaces lists without a merge key and scalars, deep-merges objects, and null deletes", () => {
    const result = mergePodTemplate(generated, {
      metadata: { labels: { team: "data" }, annotations: { note: "x" } },
      spec: {
        containers: [{ name: "namenode", command: ["sh", "-c", "sleep 1"] }],
        tolerations: [{ key: "b", operator: "Exists" }],
        securityContext: { runAsUser: 2000, fsGroup: null },
        nodeSelector: { disk: "ssd" },
      },
    }) as typeof generated & { metadata: { annotations?: unknown }; spec: { nodeSelector?: unknown } };
    expect(result.metadata.labels).toEqual({ app: "namenode", team: "data" });
    expect(result.metadata.annotations).toEqual({ note: "x" });
    expect(result.spec.containers[0]!.command).toEqual(["sh", "-c", "sleep 1"]);
    expect(result.spec.tolerations).toEqual([{ key: "b", operator: "Exists" }]);
    expect(result.spec.securityContext).toEqual({ runAsUser: 2000 });
    expect(result.spec.nodeSelector).toEqual({ disk: "ssd" });
  });

  it("never modifies its inputs", () => {
    const base = structuredClone(generated);
    const overrides = { spec: { containers: [{ name: "namenode", image: "other" }] } };
    const overridesCopy = structuredClone(overrides);
    mergePodTemplate(base, overrides);
    expect(base).toEqual(generated);
    expect(overrides).toEqual(overridesCopy);
  });
});
