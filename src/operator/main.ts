import { parseArgs } from "node:util";
import { createControllers } from "../controllers/index.js";
import { parseBootstrap } from "../kafka/admins.js";
import { createLogger } from "../log.js";
import { KubeClient, loadKubeConfig } from "./kube.js";
import { Operator } from "./operator.js";

const help = `usage: tributary operator [options]

Runs every Tributary controller. Installs nothing: the CRDs and RBAC come from the Helm chart.

options (each also read from the environment variable shown):
  --kubeconfig PATH          kubeconfig file; in a pod the service account (KUBECONFIG)
  --namespaces A,B           namespaces to watch; every namespace when empty (TRIBUTARY_WATCH_NAMESPACES)
  --image IMAGE              data-plane image of every spawned pod, from the chart values (TRIBUTARY_IMAGE)
  --kafka-bootstrap H:P,...  default Kafka cluster of resources without spec.kafka (TRIBUTARY_KAFKA_BOOTSTRAP)
  --dag-redis-url URL        default Redis of Dags without spec.redis (TRIBUTARY_DAG_REDIS_URL)
  --leader-elect BOOL        elect a leader on a Lease; default true (TRIBUTARY_LEADER_ELECT)
  --lease-namespace NS       namespace of the Lease; default the pod's namespace (POD_NAMESPACE)
  --lease-name NAME          name of the Lease; default tributary-operator (TRIBUTARY_LEASE_NAME)
  --lease-duration SECONDS   default 15 (TRIBUTARY_LEASE_DURATION)
  --renew-deadline SECONDS   default 10 (TRIBUTARY_RENEW_DEADLINE)
  --retry-period SECONDS     default 2 (TRIBUTARY_RETRY_PERIOD)
  --health-port PORT         /healthz and /readyz; default 8081 (TRIBUTARY_HEALTH_PORT)
  --metrics-port PORT        /metrics; default 8080 (TRIBUTARY_METRICS_PORT)
  --concurrency N            reconciles at once per kind; default 4 (TRIBUTARY_CONCURRENCY)
  --log-level LEVEL          trace, debug, info, warn, error; default info (TRIBUTARY_LOG_LEVEL)
`;

export interface OperatorConfig {
  kubeconfig: string | undefined;
  namespaces: string[];
  image: string;
  /** Bootstrap brokers of the default Kafka cluster; empty when there is none. */
  kafkaBootstrap: string[];
  /** Redis of Dags without spec.redis; undefined when there is none. */
  dagRedisUrl: string | undefined;
  leaderElect: boolean;
  leaseNamespace: string;
  leaseName: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  healthPort: number;
  metricsPort: number;
  concurrency: number;
  logLevel: string;
}

/** Flags win over environment variables, which win over defaults. */
export function parseOperatorArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: "string" },
      namespaces: { type: "string" },
      image: { type: "string" },
      "kafka-bootstrap": { type: "string" },
      "dag-redis-url": { type: "string" },
      "leader-elect": { type: "string" },
      "lease-namespace": { type: "string" },
      "lease-name": { type: "string" },
      "lease-duration": { type: "string" },
      "renew-deadline": { type: "string" },
      "retry-period": { type: "string" },
      "health-port": { type: "string" },
      "metrics-port": { type: "string" },
      concurrency: { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(help);
    process.exit(0);
  }
  const number = (flag: string, raw: string | undefined, fallback: number, min = 0): number => {
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min) {
      throw new Error(`tributary operator: --${flag} must be a number >= ${min}, got '${raw}'`);
    }
    return value;
  };
  const image = values.image ?? env.TRIBUTARY_IMAGE;
  if (!image) {
    throw new Error(
      "tributary operator: --image (or TRIBUTARY_IMAGE) is required: the data-plane image comes from the chart values",
    );
  }
  const leaderElect = (values["leader-elect"] ?? env.TRIBUTARY_LEADER_ELECT ?? "true").toLowerCase();
  if (!["true", "false"].includes(leaderElect)) {
    throw new Error(`tributary operator: --leader-elect must be true or false, got '${leaderElect}'`);
  }
  return {
    kubeconfig: values.kubeconfig ?? env.KUBECONFIG,
    namespaces: (values.namespaces ?? env.TRIBUTARY_WATCH_NAMESPACES ?? "")
      .split(",")
      .map((namespace) => namespace.trim())
      .filter(Boolean),
    image,
    kafkaBootstrap: parseBootstrap(values["kafka-bootstrap"] ?? env.TRIBUTARY_KAFKA_BOOTSTRAP),
    dagRedisUrl: (values["dag-redis-url"] ?? env.TRIBUTARY_DAG_REDIS_URL) || undefined,
    leaderElect: leaderElect === "true",
    leaseNamespace: values["lease-namespace"] ?? env.POD_NAMESPACE ?? "default",
    leaseName: values["lease-name"] ?? env.TRIBUTARY_LEASE_NAME ?? "tributary-operator",
    leaseDurationMs:
      1000 * number("lease-duration", values["lease-duration"] ?? env.TRIBUTARY_LEASE_DURATION, 15),
    renewDeadlineMs:
      1000 * number("renew-deadline", values["renew-deadline"] ?? env.TRIBUTARY_RENEW_DEADLINE, 10),
    retryPeriodMs: 1000 * number("retry-period", values["retry-period"] ?? env.TRIBUTARY_RETRY_PERIOD, 2),
    healthPort: number("health-port", values["health-port"] ?? env.TRIBUTARY_HEALTH_PORT, 8081),
    metricsPort: number("metrics-port", values["metrics-port"] ?? env.TRIBUTARY_METRICS_PORT, 8080),
    concurrency: number("concurrency", values.concurrency ?? env.TRIBUTARY_CONCURRENCY, 4, 1),
    logLevel: values["log-level"] ?? env.TRIBUTARY_LOG_LEVEL ?? "info",
  };
}

/** `tributary operator`: runs until SIGTERM or SIGINT, then shuts down gracefully. */
export async function main(argv: string[]): Promise<void> {
  const config = parseOperatorArgs(argv);
  const log = createLogger("operator");
  log.level = config.logLevel;
  const client = new KubeClient(loadKubeConfig(config.kubeconfig));
  const operator = new Operator({
    client,
    log,
    image: config.image,
    namespaces: config.namespaces,
    controllers: createControllers({
      kafkaBootstrap: config.kafkaBootstrap,
      dagRedisUrl: config.dagRedisUrl,
      log,
    }),
    leaderElection: config.leaderElect
      ? {
          namespace: config.leaseNamespace,
          name: config.leaseName,
          leaseDurationMs: config.leaseDurationMs,
          renewDeadlineMs: config.renewDeadlineMs,
          retryPeriodMs: config.retryPeriodMs,
        }
      : undefined,
    healthPort: config.healthPort,
    metricsPort: config.metricsPort,
    concurrency: config.concurrency,
    onLostLeadership: () => {
      // Like client-go: a replica that lost its lease exits and comes back as a candidate.
      log.error("leadership lost; exiting so the pod restarts as a candidate");
      void operator.stop().finally(() => process.exit(1));
    },
  });
  log.info(
    {
      identity: operator.identity,
      namespaces: config.namespaces.length > 0 ? config.namespaces : "all",
      image: config.image,
      leaderElection: config.leaderElect ? `${config.leaseNamespace}/${config.leaseName}` : "off",
    },
    "starting the operator",
  );
  await operator.start();
  log.info(
    { healthPort: operator.healthPort, metricsPort: operator.metricsPort },
    "serving probes and metrics",
  );
  await new Promise<void>((resolve) => {
    const shutdown = (signal: NodeJS.Signals) => {
      log.info({ signal }, "shutting down: finishing in-flight reconciles, releasing the lease");
      process.off("SIGTERM", shutdown);
      process.off("SIGINT", shutdown);
      resolve();
    };
    process.on("SIGTERM", shutdown);
    process.on("SIGINT", shutdown);
  });
  // Stops each controller after its last reconcile: the Topic controller's Kafka admin clients go.
  await operator.stop();
  log.info("stopped");
}
