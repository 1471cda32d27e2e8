/** What a name node is started with (main.ts builds it from flags and environment variables). */
export interface NameNodeConfig {
  /** The pool's cluster secret: data nodes and administrators sign their calls with it (clusterAuth.ts). */
  clusterSecret?: Buffer | undefined;
  host: string;
  /** The address clients and data nodes are told about (redirects name data nodes, not this). */
  advertisedHost: string;
  rpcPort: number;
  httpPort: number;
  /** The edit-log volume; shared by the active and the standby. */
  nameDir: string;
  replication: number;
  blockSize: number;
  /**
   * The largest block size a writer may choose on CREATE (the pool's own blockSize is always
   * allowed). A writer keeps the block in flight in memory until its pipeline acknowledges it,
   * so this bounds what one WebHDFS write costs a data node. HDFS streams packets and has no
   * such limit; its dfs.namenode.fs-limits.min-block-size (1 MiB) is the lower bound here.
   */
  maxBlockSize: number;
  heartbeatExpiryMs: number;
  /** HDFS's dfs.namenode.stale.datanode.interval (default: a third of the heartbeat expiry). */
  staleIntervalMs?: number | undefined;
  /** The standby takes over when the active's epoch has not been renewed for this long. */
  takeoverTimeoutMs: number;
  /** How often the standby tails the edit log and the active renews its epoch. */
  tailIntervalMs: number;
  replicationIntervalMs: number;
  /** An under-construction file whose writer stopped renewing is closed after this (HDFS's lease hard limit). */
  leaseHardLimitMs: number;
  checkpointTxns: number;
  checkpointPeriodMs: number;
  /** Directories with an erasure-coding policy, from the BlockPool spec; applied on becoming active. */
  erasureCoding?: { path: string; policy: string }[];
  /** Directory quotas from the BlockPool spec (-1: none); applied on becoming active. */
  quotas?: { path: string; bytes: number; files: number }[];
  /** HDFS's dfs.permissions.enabled (default true). */
  permissionsEnabled?: boolean;
  /** Users who pass every permission check (default: hdfs, the name node's own user). */
  superusers?: string[];
  /** HDFS's net.topology.table.file.name: a `<host> <rack>` file overriding the racks data nodes report. */
  topologyTable?: string | undefined;
  /** Inodes serialised per slice of a checkpoint, between which RPCs run (default 4096). */
  checkpointSliceInodes?: number;
  /** Called after each slice of a checkpoint is written (its count so far); the next waits for it. */
  onCheckpointSlice?: (slices: number) => Promise<void> | void;
  /** HDFS's dfs.namenode.retrycache.expirytime.millis (default 10 minutes). */
  retryCacheExpiryMs?: number;
  /** The most answers the retry cache keeps (default 100,000); the oldest go first. */
  retryCacheEntries?: number;
  /**
   * Stops the process after an edit-log write failed (HDFS's ExitUtil.terminate); default
   * process.exit. The name node has stopped serving by the time this is called.
   */
  terminate?: (status: number) => void;
}
