/**
 * The Helm chart without a cluster: it lints, its values schema refuses bad values, the
 * committed install.yaml and chart CRDs are what `npm run generate` gives, and the rendered
 * objects say what the chart promises (flags the operator accepts, least privilege, a
 * hardened pod). test/integration/chart.test.ts applies the same output to a real API server.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { controllers } from "../../src/controllers/index.js";
import { parseOperatorArgs } from "../../src/operator/main.js";
import { prunableTypes } from "../../src/operator/prune.js";

const root = join(import.meta.dirname, "..", "..");
const chart = join(root, "charts", "tributary");
const fix = "run `npm run generate` and commit the result";
/**
 * The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion), as render-manifests.sh
 * renders for: helm built from its Go module would otherwise assume v1.20 and refuse the chart.
 */
const kubeVersion = "1.30.0";

/** The helm of the test environment: TRIBUTARY_TESTENV_HELM, or where `scripts/testenv env` says. */
function findHelm(): string {
  const helm =
    process.env.TRIBUTARY_TESTENV_HELM ??
    /^export TRIBUTARY_TESTENV_HELM=(.*)$/m.exec(
      execFileSync("bash", [join(root, "scripts", "testenv"), "env"], { encoding: "utf8" }),
    )?.[1];
  if (!helm || !existsSync(helm)) {
    throw new Error(`helm is not built (${helm ?? "no path"}): run 'bash scripts/testenv up helm'`);
  }
  return helm;
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

interface Container {
  image: string;
  args: string[];
  securityContext: Record<string, unknown> & { capabilities?: { drop?: string[] } };
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  ports: { name: string; containerPort: number }[];
}

interface DeploymentSpec {
  replicas: number;
  template: {
    spec: {
      serviceAccountName: string;
      securityContext: Record<string, unknown>;
      containers: Container[];
      affinity?: { podAntiAffinity?: unknown };
      topologySpreadConstraints?: unknown[];
    };
  };
}

let helm: string;

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(helm, [...args, "--kube-version", kubeVersion], { encoding: "utf8" });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** `helm template` with `--set` values, parsed into objects. */
function render(set: string[] = [], namespace = "tributary-system"): K8sObject[] {
  const args = ["template", "tributary", chart, "--namespace", namespace];
  for (const value of set) args.push("--set", value);
  const result = run(args);
  if (result.status !== 0) throw new Error(`helm template failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout)
    .map((document) => document.toJS() as K8sObject | null)
    .filter((object): object is K8sObject => object !== null);
}

const find = (objects: K8sObject[], kind: string) => objects.filter((object) => object.kind === kind);

function operatorContainer(objects: K8sObject[]): Container {
  const [deployment] = find(objects, "Deployment");
  return (deployment!.spec as DeploymentSpec).template.spec.containers[0]!;
}

beforeAll(() => {
  helm = findHelm();
});

describe("the Helm chart", () => {
  it("passes helm lint, with default values and with watched namespaces and a ServiceMonitor", () => {
    for (const set of [
      [],
      ["watchNamespaces={team-a,team-b}", "metrics.serviceMonitor.enabled=true", "replicas=3"],
    ]) {
      const result = run(["lint", chart, "--strict", ...set.flatMap((value) => ["--set", value])]);
      expect(result.status, `helm lint ${set.join(" ")}:\n${result.stdout}${result.stderr}`).toBe(0);
    }
  });

  it.each([
    ["replicas=0", "replicas"],
    ["logLevel=verbose", "logLevel"],
    ["image.pullPolicy=Sometimes", "pullPolicy"],
    ["watchNamespaces={Not_A_Namespace}", "watchNamespaces"],
    ["metrics.port=70000", "port"],
    ["kafka.bootstrapServers={kafka}", "bootstrapServers"],
    ["replica=2", "replica"],
  ])("refuses %s through values.schema.json, naming the field", (value, field) => {
    const result = run(["template", "tributary", chart, "--set", value]);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/values don't meet the specifications of the schema/);
    expect(result.stderr).toContain(field);
  });

  it("refuses several replicas without leader election", () => {
    const result = run(["template", "tributary", chart, "--set", "leaderElection.enabled=false"]);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("replicas > 1 needs leaderElection.enabled");
  });
});

describe("generated files", () => {
  it("charts/tributary/crds/ holds exactly the generated crds/", () => {
    const generated = readdirSync(join(root, "crds")).filter((file) => file.endsWith(".yaml"));
    const inChart = readdirSync(join(chart, "crds")).filter((file) => file.endsWith(".yaml"));
    expect(inChart.sort(), `the chart's CRDs are not those of crds/: ${fix}`).toEqual(generated.sort());
    for (const file of generated) {
      expect(
        readFileSync(join(chart, "crds", file), "utf8"),
        `charts/tributary/crds/${file} differs from crds/${file}: ${fix}`,
      ).toBe(readFileSync(join(root, "crds", file), "utf8"));
    }
  });

  it("manifests/install.yaml is what the chart renders", () => {
    const expected = execFileSync("bash", [join(root, "scripts", "render-manifests.sh"), "--print"], {
      encoding: "utf8",
      env: { ...process.env, TRIBUTARY_TESTENV_HELM: helm },
    });
    const committed = readFileSync(join(root, "manifests", "install.yaml"), "utf8");
    expect(committed, `manifests/install.yaml is out of date with charts/tributary: ${fix}`).toBe(expected);
  });

  it("install.yaml starts with its Namespace, then the CRDs, then the chart's objects in it", () => {
    const objects = parseAllDocuments(readFileSync(join(root, "manifests", "install.yaml"), "utf8"))
      .map((document) => document.toJS() as K8sObject | null)
      .filter((object): object is K8sObject => object !== null);
    expect(objects[0]).toMatchObject({ kind: "Namespace", metadata: { name: "tributary-system" } });
    const crds = find(objects, "CustomResourceDefinition");
    expect(crds.map((crd) => crd.metadata.name).sort()).toEqual(
      readdirSync(join(root, "crds"))
        .filter((file) => file.endsWith(".yaml"))
        .map((file) => file.replace(/\.yaml$/, ""))
        .sort(),
    );
    for (const object of objects.slice(1 + crds.length)) {
      if (!["ClusterRole", "ClusterRoleBinding"].includes(object.kind)) {
        expect(object.metadata.namespace, `${object.kind} ${object.metadata.name}`).toBe("tributary-system");
      }
    }
  });
});

describe("the operator Deployment", () => {
  it("passes flags the operator's own parser accepts, with the image from the values", () => {
    const container = operatorContainer(render(["image.repository=registry.example/tributary"]));
    expect(container.args[0]).toBe("operator");
    const config = parseOperatorArgs(container.args.slice(1), {});
    const appVersion = /^appVersion: "?([^"\n]+)"?$/m.exec(
      readFileSync(join(chart, "Chart.yaml"), "utf8"),
    )![1];
    expect(container.image).toBe(`registry.example/tributary:${appVersion}`);
    // The data-plane pods run the operator's own image.
    expect(config.image).toBe(container.image);
    expect(config).toMatchObject({
      leaderElect: true,
      leaseNamespace: "tributary-system",
      leaseName: "tributary-operator",
      namespaces: [],
      healthPort: 8081,
      metricsPort: 8080,
      logLevel: "info",
    });
    expect(container.ports).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: "health", containerPort: 8081 }),
        expect.objectContaining({ name: "metrics", containerPort: 8080 }),
      ]),
    );
  });

  it("hands the watched namespaces, Kafka brokers, tag and log level to the operator", () => {
    const container = operatorContainer(
      render([
        "watchNamespaces={team-a,team-b}",
        "kafka.bootstrapServers={kafka-0.kafka:9092,kafka-1.kafka:9092}",
        "image.tag=1.2.3",
        "logLevel=debug",
      ]),
    );
    const config = parseOperatorArgs(container.args.slice(1), {});
    expect(config.namespaces).toEqual(["team-a", "team-b"]);
    expect(config.kafkaBootstrap).toEqual(["kafka-0.kafka:9092", "kafka-1.kafka:9092"]);
    expect(config.image).toBe("tributary:1.2.3");
    expect(config.logLevel).toBe("debug");
  });

  it("runs two replicas, hardened, probed, spread apart and covered by a disruption budget", () => {
    const objects = render();
    const spec = find(objects, "Deployment")[0]!.spec as DeploymentSpec;
    expect(spec.replicas).toBe(2);
    const pod = spec.template.spec;
    expect(pod.serviceAccountName).toBe("tributary");
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 1000,
      seccompProfile: { type: "RuntimeDefault" },
    });
    const container = pod.containers[0]!;
    expect(container.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(container.livenessProbe.httpGet.path).toBe("/healthz");
    expect(container.readinessProbe.httpGet.path).toBe("/readyz");
    expect(pod.affinity?.podAntiAffinity).toBeDefined();
    expect(pod.topologySpreadConstraints).toHaveLength(1);
    const [budget] = find(objects, "PodDisruptionBudget");
    expect(budget?.spec).toMatchObject({ minAvailable: 1 });
    // With one replica a minAvailable 1 budget would block every node drain.
    expect(find(render(["replicas=1"]), "PodDisruptionBudget")).toHaveLength(0);
  });

  it("exposes /metrics through a Service, and a ServiceMonitor only when asked", () => {
    const objects = render();
    expect(find(objects, "Service").map((service) => service.metadata.name)).toEqual(["tributary-metrics"]);
    expect(find(objects, "ServiceMonitor")).toHaveLength(0);
    expect(find(render(["metrics.serviceMonitor.enabled=true"]), "ServiceMonitor")).toHaveLength(1);
  });
});

describe("RBAC", () => {
  const rulesOf = (role: K8sObject) => role.rules as Rule[];

  it("grants named verbs on named resources only: no wildcard anywhere", () => {
    for (const objects of [render(), render(["watchNamespaces={team-a}"])]) {
      for (const role of [...find(objects, "ClusterRole"), ...find(objects, "Role")]) {
        for (const rule of rulesOf(role)) {
          expect(rule.verbs, role.metadata.name).not.toContain("*");
          expect(rule.resources, role.metadata.name).not.toContain("*");
          expect(rule.apiGroups, role.metadata.name).not.toContain("*");
        }
      }
    }
  });

  it("watching every namespace: one ClusterRole, deleting only what is pruned, no writes to pods or leases, Secrets only created", () => {
    const objects = render();
    const [clusterRole] = find(objects, "ClusterRole");
    const rules = rulesOf(clusterRole!);
    const verbsOn = (group: string, resource: string) =>
      rules
        .filter((rule) => rule.apiGroups.includes(group) && rule.resources.includes(resource))
        .flatMap((rule) => rule.verbs);
    expect(verbsOn("", "pods").sort()).toEqual(["get", "list", "watch"]);
    // Secrets are read by name (a Topic's Kafka credentials) and a BlockPool's cluster secret is
    // created once; nothing lists, watches, changes or deletes them.
    expect(verbsOn("", "secrets").sort()).toEqual(["create", "get"]);
    // BlockPool rack awareness reads each node's zone label.
    expect(verbsOn("", "nodes").sort()).toEqual(["get", "list", "watch"]);
    expect(verbsOn("tributary.dev", "blockpools/status").sort()).toEqual(["get", "patch"]);
    expect(verbsOn("events.k8s.io", "events").sort()).toEqual(["create", "patch"]);
    expect(verbsOn("coordination.k8s.io", "leases")).toEqual([]);
    // Claims hold data: never pruned, never deletable.
    expect(verbsOn("", "persistentvolumeclaims")).not.toContain("delete");
    // delete is granted on exactly the kinds the controllers prune: what they own, less claims.
    const deletable = rules
      .filter((rule) => rule.verbs.includes("delete"))
      .flatMap((rule) =>
        rule.apiGroups.flatMap((group) => rule.resources.map((resource) => `${group}/${resource}`)),
      );
    const pruned = controllers.flatMap((controller) =>
      prunableTypes(controller.owns ?? []).map((type) => `${type.group}/${type.plural}`),
    );
    // ...and on Jobs, which the operator never deletes itself: it may only grant a Dag's workers
    // (tasks run as Jobs) a Role with what it holds.
    const grantedOnly = ["batch/jobs"];
    expect(deletable.sort()).toEqual([...new Set([...pruned, ...grantedOnly])].sort());
    expect(deletable.sort()).toEqual([
      "/configmaps",
      "/serviceaccounts",
      "/services",
      "apps/deployments",
      "apps/statefulsets",
      "batch/jobs",
      "networking.k8s.io/networkpolicies",
      "policy/poddisruptionbudgets",
      "rbac.authorization.k8s.io/rolebindings",
      "rbac.authorization.k8s.io/roles",
    ]);
    expect(find(objects, "ClusterRoleBinding")).toHaveLength(1);
    // Only the leader-election Role, in the release namespace.
    const roles = find(objects, "Role");
    expect(roles.map((role) => `${role.metadata.namespace}/${role.metadata.name}`)).toEqual([
      "tributary-system/tributary-leader-election",
    ]);
    expect(rulesOf(roles[0]!)).toEqual([
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create"] },
      {
        apiGroups: ["coordination.k8s.io"],
        resources: ["leases"],
        resourceNames: ["tributary-operator"],
        verbs: ["get", "update"],
      },
    ]);
  });

  it("watching chosen namespaces: a Role and RoleBinding in each; cluster-wide, reading nodes only", () => {
    const objects = render(["watchNamespaces={team-a,team-b}"]);
    const nodeReaders = find(objects, "ClusterRole");
    expect(nodeReaders.map((role) => role.metadata.name)).toEqual(["tributary-nodes"]);
    expect(rulesOf(nodeReaders[0]!)).toEqual([
      { apiGroups: [""], resources: ["nodes"], verbs: ["get", "list", "watch"] },
    ]);
    expect(find(objects, "ClusterRoleBinding").map((binding) => binding.metadata.name)).toEqual([
      "tributary-nodes",
    ]);
    const where = (kind: string) =>
      find(objects, kind)
        .map((object) => `${object.metadata.namespace}/${object.metadata.name}`)
        .sort();
    expect(where("Role")).toEqual([
      "team-a/tributary",
      "team-b/tributary",
      "tributary-system/tributary-leader-election",
    ]);
    expect(where("RoleBinding")).toEqual(where("Role"));
    const clusterRules = rulesOf(find(render(), "ClusterRole")[0]!).filter(
      (rule) => !rule.resources.includes("nodes"),
    );
    for (const role of find(objects, "Role").filter((role) => role.metadata.name === "tributary")) {
      expect(rulesOf(role)).toEqual(clusterRules);
    }
  });

  it("binds the rules to the chart's ServiceAccount, or to an existing one when asked", () => {
    const objects = render(["serviceAccount.create=false", "serviceAccount.name=platform-operator"]);
    expect(find(objects, "ServiceAccount")).toHaveLength(0);
    for (const binding of [...find(objects, "ClusterRoleBinding"), ...find(objects, "RoleBinding")]) {
      expect(binding.subjects).toEqual([
        { kind: "ServiceAccount", name: "platform-operator", namespace: "tributary-system" },
      ]);
    }
    const result = run(["template", "tributary", chart, "--set", "serviceAccount.create=false"]);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("serviceAccount.name must name an existing ServiceAccount");
  });
});
