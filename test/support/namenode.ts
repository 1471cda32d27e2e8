/**
 * A name node's config for tests and benchmarks run in this process: loopback, ports the OS
 * picks, one replica of 1 MiB blocks, and the background work (tailing, re-replication, lease
 * recovery, checkpoints) pushed out of the way unless `overrides` brings it back.
 */
import type { NameNodeConfig } from "../../src/dataplane/storage/namenode/nameNodeConfig.js";

export function inProcessNameNodeConfig(
  nameDir: string,
  overrides: Partial<NameNodeConfig> = {},
): NameNodeConfig {
  return {
    host: "127.0.0.1",
    advertisedHost: "127.0.0.1",
    rpcPort: 0,
    httpPort: 0,
    nameDir,
    replication: 1,
    blockSize: 1 << 20,
    maxBlockSize: 1 << 20,
    heartbeatExpiryMs: 30_000,
    takeoverTimeoutMs: 10_000,
    tailIntervalMs: 60_000,
    replicationIntervalMs: 60_000,
    leaseHardLimitMs: 3_600_000,
    checkpointTxns: 1_000_000,
    checkpointPeriodMs: 3_600_000,
    ...overrides,
  };
}
