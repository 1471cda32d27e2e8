/**
 * The example YarnQueue tree on a real node: `helm install`, the example applied with kubectl
 * (fitted to a small node), the resource manager and node-manager pods Ready, and the shipped
 * DistributedShell-style job submitted with `tributary yarn` from inside the resource manager's
 * pod, run in containers on the node managers, its logs served by them.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { uniqueName } from "../support/env.js";
import { installChart, kubectl, kubectlJson, root, uninstallChart, uniqueRelease } from "./cluster.js";

const release = uniqueRelease("tributary-yarn");
const operatorNamespace = uniqueName("e2e-yarn-operator");
const namespace = uniqueName("e2e-yarn");

// biome-ignore lint/suspicious/noExplicitAny: a manifest is edited field by field, as YAML is.
type Manifest = Record<string, any>;

const install = { release, namespace: operatorNamespace, watch: namespace };

beforeAll(() => installChart(install), 600_000);

afterAll(() => uninstallChart(install), 600_000);

describe("the example YarnQueue tree", () => {
  it("becomes Ready with a resource manager and node managers, and runs the shipped job", async () => {
    const documents = readFileSync(join(root, "manifests", "examples", "yarnqueue.yaml"), "utf8")
      .split(/^---$/m)
      .map((text) => parse(text) as Manifest)
      .filter(Boolean);
    for (const document of documents) {
      if (document.spec.root) {
        // Fitted to one small node: two node managers offering 2 GiB each, small containers.
        document.spec.root.resourceManager.resources = {
          requests: { cpu: "50m", memory: "128Mi" },
          limits: { memory: "512Mi" },
        };
        document.spec.root.nodeManagers = {
          replicas: 2,
          vcores: 4,
          memory: "2Gi",
          storage: { size: "1Gi" },
          resources: { requests: { cpu: "50m", memory: "256Mi" }, limits: { memory: "2Gi" } },
        };
        document.spec.root.minimumAllocation = { vcores: 1, memory: "256Mi" };
        document.spec.root.maximumAllocation = { vcores: 4, memory: "1Gi" };
        document.spec.root.deletionPolicy = "Delete";
      }
      await kubectl(["apply", "--server-side", "-n", namespace, "-f", "-"], JSON.stringify(document));
    }
    for (const document of documents)
      await kubectl([
        "wait",
        "-n",
        namespace,
        `yarnqueue/${document.metadata.name}`,
        "--for=condition=Ready",
        "--timeout=300s",
      ]);
    const rootName = documents.find((d) => d.spec.root)!.metadata.name as string;
    const rmPod = `${rootName}-resourcemanager-0`;
    const output = await kubectl([
      "exec",
      "-n",
      namespace,
      rmPod,
      "--",
      "tributary",
      "yarn",
      "submit",
      "--rm",
      "localhost:8088",
      "--user",
      "etl-runner",
      "--queue",
      "etl",
      "--am-memory",
      "512",
      "--wait",
      "shell",
      "--command",
      "echo hello from $CONTAINER_ID on $NM_HOST",
      "--num-containers",
      "2",
      "--container-memory",
      "256",
    ]);
    expect(output).toMatch(/FINISHED SUCCEEDED/);
    const etl = await kubectlJson<{ status: { queuePath: string; guaranteedCapacity: number } }>([
      "get",
      "yarnqueue",
      "etl",
      "-n",
      namespace,
    ]);
    expect(etl.status).toMatchObject({ queuePath: "root.etl", guaranteedCapacity: 60 });
    // A user outside the ACL is refused with the reason.
    const refused = await kubectl([
      "exec",
      "-n",
      namespace,
      rmPod,
      "--",
      "tributary",
      "yarn",
      "submit",
      "--rm",
      "localhost:8088",
      "--user",
      "mallory",
      "--queue",
      "etl",
      "--wait",
      "shell",
      "--command",
      "true",
    ]).catch((error: Error) => error.message);
    expect(refused).toMatch(/may not submit applications to queue 'root.etl'/);
  });
});
