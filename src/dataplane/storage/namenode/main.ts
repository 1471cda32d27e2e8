/**
 * `tributary namenode`: the namespace, edit log and block management of a BlockPool, with the
 * client RPC on --rpc-port and WebHDFS, health and metrics on --webhdfs-port. Two run per pool
 * over one edit-log volume: the first to claim the fencing epoch is active, the other tails the
 * log as standby and takes over when the active stops renewing its epoch.
 */
import { hostname } from "node:os";
import { z } from "zod";
import { parseQuantity, quantitySchema } from "../../../api/common.js";
import { createLogger } from "../../../log.js";
import { ConfigError, clusterSecret, parseConfig, port, positive, runUntilSignal } from "../config.js";
import { NameNode, type NameNodeConfig } from "./namenode.js";

export const nameNodeConfigSchema = z.object({
  host: z.string().default("0.0.0.0"),
  advertisedHost: z.string().optional(),
  rpcPort: port.default(8020),
  webhdfsPort: port.default(9870),
  nameDir: z.string().default("/var/lib/tributary/name"),
  replication: z.coerce.number().int().min(1).max(512).default(3),
  blockSize: positive.default(128 * 1024 * 1024),
  /**
   * The largest block size a writer may ask for on CREATE: 512 MiB, four times HDFS's default
   * dfs.blocksize, room for the 256 MiB and 512 MiB blocks columnar files use. A writer keeps
   * the block in flight in memory, so a GiB-sized block costs a data node a GiB per writer. The
   * pool's own blockSize is always allowed.
   */
  maxBlockSize: positive.default(512 * 1024 * 1024),
  heartbeatExpiryMs: positive.default(30_000),
  /** HDFS's dfs.namenode.stale.datanode.interval; unset, a third of the heartbeat expiry. */
  staleDatanodeIntervalMs: positive.optional(),
  takeoverTimeoutMs: positive.default(10_000),
  tailIntervalMs: positive.default(1_000),
  replicationIntervalMs: positive.default(3_000),
  leaseHardLimitMs: positive.default(60 * 60 * 1000),
  checkpointTxns: positive.default(100_000),
  checkpointPeriodMs: positive.default(60 * 60 * 1000),
  /** HDFS's dfs.namenode.retrycache.expirytime.millis: how long a call's answer serves its retries. */
  retryCacheExpiryMs: positive.default(10 * 60 * 1000),
  /** The most answers the retry cache keeps; the oldest go first. */
  retryCacheEntries: positive.default(100_000),
  /** Set by the pod spec; used to name this pod in its advertised address. */
  /** The BlockPool's `spec.erasureCoding` as JSON (the controller sets TRIBUTARY_ERASURE_CODING). */
  erasureCoding: z.string().default("[]"),
  /** The BlockPool's `spec.quotas` as JSON (TRIBUTARY_QUOTAS). */
  quotas: z.string().default("[]"),
  /** HDFS's dfs.permissions.enabled: check owners and modes (default), or only store them. */
  permissionsEnabled: z.stringbool().default(true),
  /** Users with every right, comma-separated (HDFS: the name node's user and the superuser group). */
  superusers: z.string().default("hdfs"),
  /**
   * HDFS's net.topology.table.file.name (TRIBUTARY_TOPOLOGY_TABLE): `<host> <rack>` lines giving
   * data nodes their racks; re-read when it changes. In a pod, the operator's ConfigMap is
   * mounted at /etc/tributary/topology/topology.table. Unset: data nodes' own --rack.
   */
  topologyTable: z.string().min(1).optional(),
  /**
   * The pool's shared secret for internal calls (TRIBUTARY_CLUSTER_SECRET_FILE; the operator
   * mounts the Secret <pool>-cluster-secret there). TRIBUTARY_CLUSTER_SECRET gives it inline.
   */
  clusterSecretFile: z.string().min(1).optional(),
  podName: z.string().optional(),
  podNamespace: z.string().optional(),
  blockpool: z.string().optional(),
});

export function nameNodeConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): NameNodeConfig {
  const parsed = parseConfig("namenode", nameNodeConfigSchema, argv, env);
  const podName = parsed.podName ?? env.POD_NAME;
  const podNamespace = parsed.podNamespace ?? env.POD_NAMESPACE;
  const podAddress =
    podName && parsed.blockpool && podNamespace
      ? `${podName}.${parsed.blockpool}-namenode.${podNamespace}.svc`
      : undefined;
  return {
    clusterSecret: clusterSecret(parsed.clusterSecretFile, env),
    host: parsed.host,
    advertisedHost: parsed.advertisedHost ?? podAddress ?? hostname(),
    rpcPort: parsed.rpcPort,
    httpPort: parsed.webhdfsPort,
    nameDir: parsed.nameDir,
    replication: parsed.replication,
    blockSize: parsed.blockSize,
    maxBlockSize: parsed.maxBlockSize,
    heartbeatExpiryMs: parsed.heartbeatExpiryMs,
    staleIntervalMs: parsed.staleDatanodeIntervalMs,
    takeoverTimeoutMs: parsed.takeoverTimeoutMs,
    tailIntervalMs: parsed.tailIntervalMs,
    replicationIntervalMs: parsed.replicationIntervalMs,
    leaseHardLimitMs: parsed.leaseHardLimitMs,
    checkpointTxns: parsed.checkpointTxns,
    checkpointPeriodMs: parsed.checkpointPeriodMs,
    retryCacheExpiryMs: parsed.retryCacheExpiryMs,
    retryCacheEntries: parsed.retryCacheEntries,
    erasureCoding: parseJson("erasureCoding", parsed.erasureCoding, ecEntry).map((entry) => ({
      path: entry.path,
      policy: `${entry.policy}-${Math.round(parseQuantity(entry.cellSize ?? "1Mi") / 1024)}k`,
    })),
    permissionsEnabled: parsed.permissionsEnabled,
    superusers: parsed.superusers
      .split(",")
      .map((user) => user.trim())
      .filter((user) => user !== ""),
    topologyTable: parsed.topologyTable,
    quotas: parseJson("quotas", parsed.quotas, quotaEntry).map((entry) => ({
      path: entry.path,
      bytes: entry.bytes === undefined ? -1 : parseQuantity(entry.bytes),
      files: entry.files ?? -1,
    })),
  };
}

const ecEntry = z.object({ path: z.string(), policy: z.string(), cellSize: quantitySchema.optional() });
const quotaEntry = z.object({
  path: z.string(),
  bytes: quantitySchema.optional(),
  files: z.number().int().optional(),
});

function parseJson<T extends z.ZodType>(key: string, text: string, entry: T): z.output<T>[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      `invalid namenode configuration:\n  --${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: not JSON (${(error as Error).message})`,
    );
  }
  const parsed = z.array(entry).safeParse(value);
  if (!parsed.success)
    throw new ConfigError(
      `invalid namenode configuration:\n  ${key}: ${parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ")}`,
    );
  return parsed.data;
}

export async function startNameNode(
  config: NameNodeConfig,
  logger = createLogger("namenode"),
): Promise<NameNode> {
  const nameNode = new NameNode(config, logger);
  await nameNode.start();
  return nameNode;
}

export async function main(argv: string[]): Promise<void> {
  await runUntilSignal("namenode", nameNodeConfigSchema, argv, async (args) => {
    const config = nameNodeConfig(args);
    const logger = createLogger("namenode", { nameDir: config.nameDir });
    const nameNode = await startNameNode(config, logger);
    // Tests and the controller read the bound ports from this line.
    process.stdout.write(
      `${JSON.stringify({ ready: "namenode", rpcPort: nameNode.rpcPort, webhdfsPort: nameNode.httpPort })}\n`,
    );
    return nameNode;
  });
}
