/**
 * `tributary datanode`: stores a BlockPool's replicas on its volume, serves block transfer on
 * --xfer-port and health, metrics and WebHDFS's data step on --info-port, and reports to every
 * name node in --namenodes.
 */
import { hostname } from "node:os";
import { z } from "zod";
import { createLogger } from "../../../log.js";
import { addressList, clusterSecret, parseConfig, port, positive, runUntilSignal } from "../config.js";
import { DEFAULT_STALL_TIMEOUT_MS } from "../dfsClient.js";
import { DataNode, type DataNodeConfig } from "./datanode.js";

export const dataNodeConfigSchema = z.object({
  host: z.string().default("0.0.0.0"),
  advertisedHost: z.string().optional(),
  xferPort: port.default(9866),
  infoPort: port.default(9864),
  dataDir: z.string().default("/var/lib/tributary/data"),
  namenodes: addressList,
  /** The rack (or zone) for placement, HDFS's network location, e.g. /zone-a. */
  rack: z
    .string()
    .regex(/^\/[^\s]*$/, { error: "rack must be a path such as /default-rack or /zone-a" })
    .default("/default-rack"),
  heartbeatIntervalMs: positive.default(3_000),
  blockReportIntervalMs: positive.default(6 * 60 * 60 * 1000),
  scanIntervalMs: positive.default(24 * 60 * 60 * 1000),
  /**
   * HDFS's dfs.client.socket-timeout: a pipeline hop (to the next data node, or of a WebHDFS
   * write through this node) that moves no pending byte, or owes an acknowledgement, this long
   * fails its node. An idle writer is not a stall.
   */
  stallTimeoutMs: positive.default(DEFAULT_STALL_TIMEOUT_MS),
  /**
   * WebHDFS writes served at once (HDFS bounds all transfers with dfs.datanode.max.transfer.threads);
   * each keeps up to a block in memory, so a data node needs about this many block sizes of memory
   * for them. More are refused with 503 and Retry-After.
   */
  maxWebhdfsWriters: positive.default(8),
  /** A request whose headers take longer is closed with 408 (Node's default, 60 s). */
  headersTimeoutMs: positive.default(60_000),
  /** A request other than an upload that takes longer to arrive is closed (Node's default, 5 minutes). */
  requestTimeoutMs: positive.default(300_000),
  /**
   * The pool's shared secret for internal calls (TRIBUTARY_CLUSTER_SECRET_FILE; the operator
   * mounts the Secret <pool>-cluster-secret there). TRIBUTARY_CLUSTER_SECRET gives it inline.
   */
  clusterSecretFile: z.string().min(1).optional(),
  podName: z.string().optional(),
  podNamespace: z.string().optional(),
  blockpool: z.string().optional(),
});

export function dataNodeConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): DataNodeConfig {
  const parsed = parseConfig("datanode", dataNodeConfigSchema, argv, env);
  // In a StatefulSet the pod's stable DNS name is <pod>.<pool>-datanode.<namespace>.svc.
  const podName = parsed.podName ?? env.POD_NAME;
  const podNamespace = parsed.podNamespace ?? env.POD_NAMESPACE;
  const podAddress =
    podName && parsed.blockpool && podNamespace
      ? `${podName}.${parsed.blockpool}-datanode.${podNamespace}.svc`
      : undefined;
  return {
    clusterSecret: clusterSecret(parsed.clusterSecretFile, env),
    host: parsed.host,
    advertisedHost: parsed.advertisedHost ?? podAddress ?? hostname(),
    xferPort: parsed.xferPort,
    infoPort: parsed.infoPort,
    dataDir: parsed.dataDir,
    nameNodes: parsed.namenodes,
    rack: parsed.rack,
    heartbeatIntervalMs: parsed.heartbeatIntervalMs,
    blockReportIntervalMs: parsed.blockReportIntervalMs,
    scanIntervalMs: parsed.scanIntervalMs,
    stallTimeoutMs: parsed.stallTimeoutMs,
    maxWebHdfsWriters: parsed.maxWebhdfsWriters,
    headersTimeoutMs: parsed.headersTimeoutMs,
    requestTimeoutMs: parsed.requestTimeoutMs,
  };
}

export async function startDataNode(
  config: DataNodeConfig,
  logger = createLogger("datanode"),
): Promise<DataNode> {
  const dataNode = new DataNode(config, logger);
  await dataNode.start();
  return dataNode;
}

export async function main(argv: string[]): Promise<void> {
  await runUntilSignal("datanode", dataNodeConfigSchema, argv, async (args) => {
    const config = dataNodeConfig(args);
    const logger = createLogger("datanode", { dataDir: config.dataDir });
    const dataNode = await startDataNode(config, logger);
    process.stdout.write(
      `${JSON.stringify({ ready: "datanode", datanodeUuid: dataNode.id.datanodeUuid, xferPort: dataNode.id.xferPort, infoPort: dataNode.id.infoPort })}\n`,
    );
    return dataNode;
  });
}
