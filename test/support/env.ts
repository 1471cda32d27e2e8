import { readFileSync } from "node:fs";

/** Where the services of `scripts/testenv` listen; read from the env file that `up` writes. */
export interface TestEnv {
  run: string;
  kubeconfig: string;
  kubectl: string;
  kafkaBrokers: string[];
  postgresUrl: string;
  redisUrl: string;
  /** amqp://user:password@host:port of the test environment's RabbitMQ. */
  rabbitmqUrl: string;
  ffmpeg: string;
  helm: string;
  /** The Hadoop Java client's jars (hadoop-client-api/-runtime), for FsShell over webhdfs://. */
  hadoopLibs: string;
}

const defaultRun = "/tmp/tributary-testenv";

/** The `export NAME=value` lines of an env file that `scripts/testenv up` writes. */
export function parseExports(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match) vars[match[1]!] = match[2]!;
  }
  return vars;
}

let cached: TestEnv | undefined;

export function testEnv(): TestEnv {
  if (cached) return cached;
  const run = process.env.TRIBUTARY_RUN ?? defaultRun;
  let text: string;
  try {
    text = readFileSync(`${run}/env.sh`, "utf8");
  } catch {
    throw new Error(
      `the test environment is not up (no ${run}/env.sh): run 'scripts/testenv up' or 'npm test'`,
    );
  }
  const vars = parseExports(text);
  const need = (name: string): string => {
    const value = vars[name];
    if (!value) throw new Error(`${run}/env.sh does not set ${name}: run 'scripts/testenv up' again`);
    return value;
  };
  cached = {
    run,
    kubeconfig: need("KUBECONFIG"),
    kubectl: need("TRIBUTARY_TESTENV_KUBECTL"),
    kafkaBrokers: need("TRIBUTARY_TESTENV_KAFKA_BROKERS").split(","),
    postgresUrl: need("TRIBUTARY_TESTENV_POSTGRES_URL"),
    redisUrl: need("TRIBUTARY_TESTENV_REDIS_URL"),
    rabbitmqUrl: need("TRIBUTARY_TESTENV_RABBITMQ_URL"),
    ffmpeg: need("TRIBUTARY_TESTENV_FFMPEG"),
    helm: need("TRIBUTARY_TESTENV_HELM"),
    hadoopLibs: need("TRIBUTARY_TESTENV_HADOOP_LIBS"),
  };
  return cached;
}

/**
 * Annotations of a namespace whose pods must never run: the API server's PodNodeSelector
 * admission gives every pod there a node selector that no node matches. The integration tests
 * exercise the operator alone and play the kubelet's part themselves (playKubelet); the test
 * environment's real node runs only the pods of test/e2e.
 */
export const offNodeNamespaceAnnotations = {
  "scheduler.alpha.kubernetes.io/node-selector": "tributary.dev/testenv-no-node=true",
};

/** A name unique to this test run, safe for namespaces, topics and databases. */
export function uniqueName(prefix: string): string {
  const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  return `${prefix}-${suffix}`.toLowerCase().slice(0, 63);
}
