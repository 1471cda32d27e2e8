/**
 * The cluster test/e2e runs against, and the commands a user would type at it: kubectl and helm.
 *
 * By default that is the test environment's own node (`scripts/testenv up`): its kubeconfig, the
 * project's image built from the Dockerfile and loaded into the node, and Kafka's listener on
 * the node's address. Any other cluster (kind, a real one) is named by KUBECONFIG with
 * TRIBUTARY_E2E_IMAGE (an image its nodes can pull or already hold) and
 * TRIBUTARY_E2E_KAFKA_BOOTSTRAP (brokers its pods can reach, at least three for replication 3).
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseExports, uniqueName } from "../support/env.js";

const run = promisify(execFile);
export const root = join(import.meta.dirname, "..", "..");

export interface E2eCluster {
  kubeconfig: string;
  kubectl: string;
  helm: string;
  /** `repository:tag` of the Tributary image. */
  image: string;
  /** Kafka as the pods reach it (the tests ask Kafka from inside the cluster too). */
  podKafkaBrokers: string[];
  /** Whether this process reaches pod and Service addresses directly (the test environment's node). */
  podNetworkReachable: boolean;
}

function testEnvExports(): Record<string, string> {
  const file = `${process.env.TRIBUTARY_RUN ?? "/tmp/tributary-testenv"}/env.sh`;
  return existsSync(file) ? parseExports(readFileSync(file, "utf8")) : {};
}

let cached: E2eCluster | undefined;

export function e2eCluster(): E2eCluster {
  if (cached) return cached;
  const testenv = testEnvExports();
  const external = process.env.TRIBUTARY_E2E_IMAGE !== undefined;
  const pick = (name: string, fallback: string | undefined): string => {
    const value = process.env[name] ?? fallback;
    if (!value) {
      throw new Error(
        `test/e2e needs ${name}: run 'scripts/testenv up' (the local node), or set it for another cluster`,
      );
    }
    return value;
  };
  const podBrokers = pick("TRIBUTARY_E2E_KAFKA_BOOTSTRAP", testenv.TRIBUTARY_TESTENV_KAFKA_POD_BROKERS);
  cached = {
    kubeconfig: pick("KUBECONFIG", external ? undefined : testenv.KUBECONFIG),
    kubectl: process.env.TRIBUTARY_E2E_KUBECTL ?? testenv.TRIBUTARY_TESTENV_KUBECTL ?? "kubectl",
    helm: process.env.TRIBUTARY_E2E_HELM ?? testenv.TRIBUTARY_TESTENV_HELM ?? "helm",
    image: pick("TRIBUTARY_E2E_IMAGE", testenv.TRIBUTARY_TESTENV_IMAGE),
    podKafkaBrokers: podBrokers.split(","),
    podNetworkReachable: !external,
  };
  return cached;
}

export function imageParts(image: string): { repository: string; tag: string } {
  const at = image.lastIndexOf(":");
  if (at <= image.lastIndexOf("/")) return { repository: image, tag: "latest" };
  return { repository: image.slice(0, at), tag: image.slice(at + 1) };
}

/** Runs kubectl against the e2e cluster; a failure carries its stderr. */
export async function kubectl(args: string[], input?: string): Promise<string> {
  const cluster = e2eCluster();
  const child = spawn(cluster.kubectl, args, {
    env: { ...process.env, KUBECONFIG: cluster.kubeconfig },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdin.end(input ?? "");
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  if (code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${code}): ${stderr.trim()}`);
  return stdout;
}

export async function kubectlJson<T = Record<string, unknown>>(args: string[]): Promise<T> {
  return JSON.parse(await kubectl([...args, "-o", "json"])) as T;
}

export async function helm(args: string[]): Promise<string> {
  const cluster = e2eCluster();
  const { stdout } = await run(cluster.helm, args, {
    env: { ...process.env, KUBECONFIG: cluster.kubeconfig },
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { stderr?: string; message: string }) => {
    throw new Error(`helm ${args.join(" ")} failed: ${error.stderr?.trim() || error.message}`);
  });
  return stdout;
}

export interface PodSummary {
  metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: {
      name: string;
      ready: boolean;
      restartCount: number;
      state?: Record<string, unknown>;
    }[];
  };
}

export async function pods(namespace: string, selector: string): Promise<PodSummary[]> {
  const list = await kubectlJson<{ items: PodSummary[] }>(["get", "pods", "-n", namespace, "-l", selector]);
  return list.items;
}

export const isReady = (pod: PodSummary): boolean =>
  pod.status?.phase === "Running" &&
  !pod.metadata.deletionTimestamp &&
  (pod.status.conditions ?? []).some(
    (condition) => condition.type === "Ready" && condition.status === "True",
  );

/** A namespace whose pods must meet the `restricted` Pod Security Standard, as a hardened cluster's. */
export async function createRestrictedNamespace(name: string): Promise<void> {
  await kubectl(
    ["apply", "-f", "-"],
    JSON.stringify({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: {
        name,
        labels: {
          "pod-security.kubernetes.io/enforce": "restricted",
          "pod-security.kubernetes.io/enforce-version": "latest",
        },
      },
    }),
  );
}

/**
 * `kubectl port-forward` to a Service, as a user reaches a ClusterIP Service from outside the
 * cluster; resolves with the local port once kubectl says it is forwarding.
 */
export async function portForward(
  namespace: string,
  target: string,
  port: number,
): Promise<{ port: number; close: () => void }> {
  const cluster = e2eCluster();
  const child = spawn(
    cluster.kubectl,
    ["port-forward", "-n", namespace, target, `:${port}`, "--address", "127.0.0.1"],
    {
      env: { ...process.env, KUBECONFIG: cluster.kubeconfig },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const local = await new Promise<number>((resolve, reject) => {
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    child.on("exit", (code) =>
      reject(new Error(`kubectl port-forward ${target} exited (${code}): ${stderr}`)),
    );
  });
  return { port: local, close: () => child.kill("SIGTERM") };
}

/**
 * WebHDFS with curl, as a user on the cluster's network would: the name node's Service answers
 * CREATE and OPEN with a 307 to a data node's pod name, which curl is told to resolve to that
 * pod's address (--resolve), since this host does not use the cluster's DNS. Needs the pod
 * network (podNetworkReachable).
 */
export async function webHdfs(
  namespace: string,
  pool: string,
  method: "PUT" | "GET",
  path: string,
  query: string,
  upload?: string,
): Promise<{ status: number; body: Buffer }> {
  const service = await kubectlJson<{
    spec: { clusterIP: string; ports: { name?: string; port: number }[] };
  }>(["get", "service", pool, "-n", namespace]);
  const port = service.spec.ports.find((entry) => entry.name === "http")?.port ?? service.spec.ports[0]!.port;
  const url = `http://${service.spec.clusterIP}:${port}/webhdfs/v1${path}?${query}&user.name=hdfs`;
  const first = await curl(["-X", method, url]);
  if (first.status !== 307) return first;
  const location = new URL(/^location: (.+)$/im.exec(first.headers)![1]!.trim());
  const podName = location.hostname.split(".")[0]!;
  const pod = await kubectlJson<{ status: { podIP: string } }>(["get", "pod", podName, "-n", namespace]);
  const resolve = `${location.hostname}:${location.port || 80}:${pod.status.podIP}`;
  return curl(["-X", method, "--resolve", resolve, ...(upload ? ["-T", upload] : []), location.toString()]);
}

async function curl(args: string[]): Promise<{ status: number; headers: string; body: Buffer }> {
  const { stdout } = await run("curl", ["-sS", "-i", "--max-time", "120", ...args], {
    encoding: "buffer",
    maxBuffer: 64 * 1024 * 1024,
  });
  let rest = stdout;
  let headers = "";
  // Skip interim answers (100 Continue on uploads) to the final one.
  do {
    const split = rest.indexOf("\r\n\r\n");
    headers = rest.subarray(0, split).toString();
    rest = rest.subarray(split + 4);
  } while (/^HTTP\/[\d.]+ 1\d\d/.test(headers));
  return { status: Number(/^HTTP\/[\d.]+ (\d+)/.exec(headers)?.[1]), headers, body: rest };
}

/**
 * A Helm release name of this run: the chart names its cluster-scoped objects (ClusterRoles and
 * their bindings) after the release, so a fixed name would meet what an interrupted earlier run
 * left and Helm would refuse the install. At most 30 characters, so that every name the chart
 * derives from it (`<release>-tributary-schema-registry`, `<release>-operator`) stays within
 * Kubernetes' limits.
 */
export const uniqueRelease = (prefix: string): string => uniqueName(prefix).slice(0, 30);

export interface ChartInstall {
  release: string;
  /** Where the operator runs (created, restricted). */
  namespace: string;
  /** The one namespace it watches (created, restricted; may be `namespace`); every namespace when omitted. */
  watch?: string;
  /** More `--set` values, as `key=value`. */
  set?: string[];
}

/**
 * `helm install` of the chart as the e2e tests use it: the image under test, the values fitted to
 * a small node (test/e2e/values.yaml), the environment's Kafka as the default cluster, no schema
 * registry unless `set` asks for one, waiting until the operator is ready. Namespaces are created first, enforcing `restricted`.
 */
export async function installChart(install: ChartInstall): Promise<void> {
  const cluster = e2eCluster();
  const { repository, tag } = imageParts(cluster.image);
  for (const namespace of namespacesOf(install)) await createRestrictedNamespace(namespace);
  const values = [
    `image.repository=${repository}`,
    `image.tag=${tag}`,
    `kafka.bootstrapServers={${cluster.podKafkaBrokers.join(",")}}`,
    // The schema registry has its own e2e test; elsewhere it would only take the node's room.
    "schemaRegistry.enabled=false",
    ...(install.watch ? [`watchNamespaces={${install.watch}}`] : []),
    ...(install.set ?? []),
  ];
  await helm([
    "install",
    install.release,
    join(root, "charts", "tributary"),
    "--namespace",
    install.namespace,
    "--values",
    join(root, "test", "e2e", "values.yaml"),
    ...values.flatMap((value) => ["--set", value]),
    "--wait",
    "--timeout",
    "5m",
  ]);
}

/**
 * The reverse: the resources of the watched namespace first, while the operator runs to release
 * them (finalizers), then the chart, then both namespaces. Best effort: it runs after failures.
 */
export async function uninstallChart(install: ChartInstall): Promise<void> {
  const resources = install.watch ?? install.namespace;
  await kubectl(["delete", "tributary", "--all", "-n", resources, "--wait=true", "--timeout=180s"]).catch(
    () => {},
  );
  await helm(["uninstall", install.release, "--namespace", install.namespace, "--wait"]).catch(() => {});
  await kubectl(["delete", "namespace", ...namespacesOf(install), "--wait=false"]).catch(() => {});
}

const namespacesOf = (install: ChartInstall): string[] => [
  ...new Set([install.namespace, ...(install.watch ? [install.watch] : [])]),
];
