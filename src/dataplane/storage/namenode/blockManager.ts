/**
 * Where replicas are (HDFS's BlockManager + DatanodeManager): data nodes and their liveness from
 * heartbeats, replica locations from block reports, corrupt replicas, block placement with rack
 * awareness, and the replication monitor that re-replicates under-replicated blocks and
 * replaces corrupt ones, and decommissioning (HDFS's DatanodeAdminManager). None of it is
 * persisted: data nodes report it again after a restart, and they report to the standby too, so a
 * failover starts with a warm map. The decommission set is not reported by anyone: whoever sets
 * it (the operator) sets it again on the new active after a failover, as it is level-based.
 */
import type { Logger } from "../../../log.js";
import type {
  AdminState,
  DatanodeCommand,
  DatanodeID,
  DatanodeInfo,
  ExtendedBlock,
  HeartbeatRequest,
  LocatedBlock,
} from "../protocol.js";
import { groupLayout, internalBlockLength } from "../stripedLayout.js";
import { hostEntryMatches, normalizeHostEntry } from "./hosts.js";
import { type BlockInfo, ecShape, type INodeFile, type Namespace } from "./namespace.js";

interface DatanodeState {
  /** `adminState` here is never DEAD: liveness is judged from `lastUpdate` when reporting. */
  info: DatanodeInfo;
  commands: DatanodeCommand[];
  blocks: Set<number>;
  /**
   * Whether a full block report arrived. Until then `blocks` may be incomplete, and a
   * decommissioning node that looks empty must not be declared DECOMMISSIONED.
   */
  blockReported: boolean;
}

export interface BlockManagerOptions {
  /** A data node silent this long is dead (HDFS: 10.5 minutes; tests use seconds). */
  heartbeatExpiryMs: number;
  /**
   * HDFS's dfs.namenode.stale.datanode.interval: a node silent this long is probably gone (killed,
   * partitioned) though not yet declared dead, so reads and new replicas go to it only when no
   * fresh node will do. Default a third of the expiry.
   */
  staleIntervalMs?: number;
  /** How long a scheduled copy may take before it is scheduled again. */
  pendingReplicationTimeoutMs: number;
  /** The topology table's rack for a node, overriding the one it reports (undefined: no entry). */
  rackOf?: (node: DatanodeID) => string | undefined;
  /** Where admin-state transitions (decommission started, finished, recommissioned) are logged. */
  logger?: Logger;
}

export interface BlockStats {
  underReplicatedBlocks: number;
  missingBlocks: number;
  corruptReplicas: number;
  pendingReplicationBlocks: number;
}

export class BlockManager {
  readonly datanodes = new Map<string, DatanodeState>();
  /** blockId → data nodes holding a replica (reported, or acknowledged by the write pipeline). */
  private readonly locations = new Map<number, Set<string>>();
  private readonly corrupt = new Map<number, Set<string>>();
  /** `blockId:uuid` of corrupt replicas already told to delete themselves. */
  private readonly invalidating = new Set<string>();
  private readonly pendingReplication = new Map<number, { targets: string[]; deadline: number }>();
  /** The decommission set (HDFS's exclude file), as host entries; see hosts.ts. */
  private excludedHosts: string[] = [];
  stats: BlockStats = {
    underReplicatedBlocks: 0,
    missingBlocks: 0,
    corruptReplicas: 0,
    pendingReplicationBlocks: 0,
  };

  constructor(
    private namespace: Namespace,
    private readonly options: BlockManagerOptions,
  ) {}

  setNamespace(namespace: Namespace): void {
    this.namespace = namespace;
  }

  isLive(uuid: string, now = Date.now()): boolean {
    const node = this.datanodes.get(uuid);
    return !!node && now - node.info.lastUpdate <= this.options.heartbeatExpiryMs;
  }

  /** Silent past the stale interval: HDFS's avoid-stale-datanode rule, for reads and for writes. */
  isStale(node: DatanodeInfo, now = Date.now()): boolean {
    return now - node.lastUpdate > this.staleIntervalMs;
  }

  private get staleIntervalMs(): number {
    return this.options.staleIntervalMs ?? this.options.heartbeatExpiryMs / 3;
  }

  /** Heard-from nodes, whatever their admin state: all of them serve reads. */
  liveNodes(): DatanodeInfo[] {
    const now = Date.now();
    return [...this.datanodes.values()]
      .filter((node) => this.isLive(node.info.datanodeUuid, now))
      .map((node) => node.info);
  }

  /** Live nodes that take new replicas and whose replicas count toward replication (HDFS's "in service"). */
  inServiceNodes(): DatanodeInfo[] {
    return this.liveNodes().filter(isInService);
  }

  /**
   * Live, in-service nodes for the first replica of a new block (WebHDFS's CREATE and APPEND
   * redirect): the fresh ones while any is left, as chooseTargets places the rest.
   */
  writeCandidates(): DatanodeInfo[] {
    const now = Date.now();
    const inService = this.inServiceNodes();
    const fresh = inService.filter((node) => !this.isStale(node, now));
    return fresh.length > 0 ? fresh : inService;
  }

  report(): (DatanodeInfo & { stale: boolean })[] {
    const now = Date.now();
    return [...this.datanodes.values()].map((node) => this.reportOne(node, now));
  }

  private reportOne(node: DatanodeState, now: number): DatanodeInfo & { stale: boolean } {
    const live = this.isLive(node.info.datanodeUuid, now);
    return {
      ...node.info,
      numBlocks: node.blocks.size,
      adminState: live ? node.info.adminState : "DEAD",
      // Live but silent past the stale interval (HDFS's NumStaleDataNodes counts these).
      stale: live && this.isStale(node.info, now),
    };
  }

  /**
   * Replaces the decommission set, level-based like HDFS's exclude file: matching nodes start
   * decommissioning (those already decommissioned stay so), every other node goes back in
   * service. Nodes that register later are checked against the set too. Returns the known nodes
   * the set matches.
   */
  setDecommissionSet(hosts: string[]): DatanodeInfo[] {
    this.excludedHosts = [...new Set(hosts.map(normalizeHostEntry))];
    const now = Date.now();
    const matched: DatanodeInfo[] = [];
    for (const node of this.datanodes.values()) {
      if (this.isExcluded(node.info)) {
        if (node.info.adminState === "NORMAL") this.startDecommission(node, "in the decommission set");
        matched.push(this.reportOne(node, now));
      } else if (node.info.adminState !== "NORMAL") {
        this.transition(node, "NORMAL", "data node recommissioned: back in service", {});
      }
    }
    return matched;
  }

  private isExcluded(node: DatanodeID): boolean {
    return this.excludedHosts.some((entry) => hostEntryMatches(entry, node));
  }

  private startDecommission(node: DatanodeState, reason: string): void {
    this.transition(
      node,
      "DECOMMISSION_INPROGRESS",
      "data node decommissioning: no new replicas, copying its blocks to other nodes",
      { reason, blocks: node.blocks.size },
    );
  }

  private transition(
    node: DatanodeState,
    adminState: Exclude<AdminState, "DEAD">,
    message: string,
    details: Record<string, unknown>,
  ): void {
    const from = node.info.adminState;
    node.info.adminState = adminState;
    this.options.logger?.info(
      {
        datanode: `${node.info.hostName}:${node.info.xferPort}`,
        datanodeUuid: node.info.datanodeUuid,
        from,
        to: adminState,
        ...details,
      },
      message,
    );
  }

  /** Returns the commands for the node, or `register` if this name node has not had its block report. */
  heartbeat(request: HeartbeatRequest, active: boolean): DatanodeCommand[] {
    const state = this.datanodes.get(request.datanode.datanodeUuid);
    const info: DatanodeInfo = {
      ...request.datanode,
      // Rack tables change: the table is asked on every heartbeat, not only at registration.
      networkLocation: this.options.rackOf?.(request.datanode) ?? request.networkLocation,
      capacity: request.capacity,
      dfsUsed: request.dfsUsed,
      remaining: request.remaining,
      numBlocks: request.numBlocks,
      lastUpdate: Date.now(),
      adminState: state?.info.adminState ?? "NORMAL",
    };
    if (!state) {
      this.addNode(info);
      return [{ action: "register" }];
    }
    state.info = info;
    if (!active) {
      state.commands = [];
      return [];
    }
    const commands = state.commands;
    state.commands = [];
    return commands;
  }

  /** A full block report replaces what this name node believed the node holds. */
  blockReport(node: DatanodeID, blocks: ExtendedBlock[], active: boolean): void {
    const state = this.ensureNode(node);
    for (const blockId of state.blocks) this.locations.get(blockId)?.delete(node.datanodeUuid);
    state.blocks.clear();
    state.blockReported = true;
    this.blocksReceived(node, blocks, active);
  }

  blocksReceived(node: DatanodeID, blocks: ExtendedBlock[], active: boolean): void {
    const state = this.ensureNode(node);
    const stale: ExtendedBlock[] = [];
    for (const reported of blocks) {
      const found = this.namespace.blockOrGroup(reported.blockId);
      // An internal block of a group has its own length; the group's is its data length.
      const block = found?.index === -1 ? found.block : undefined;
      // Only the active judges a replica it does not know (the standby may not have tailed its edit yet).
      if (!found && active) {
        stale.push(reported);
        continue;
      }
      this.addLocation(reported.blockId, node.datanodeUuid);
      state.blocks.add(reported.blockId);
      if (
        block?.complete &&
        (reported.generationStamp !== block.generationStamp || reported.numBytes !== block.numBytes)
      ) {
        this.markCorrupt(reported.blockId, node.datanodeUuid);
      }
      const pendingKey =
        found?.index !== undefined && found.index >= 0 ? found.block.blockId : reported.blockId;
      const pending = this.pendingReplication.get(pendingKey);
      if (pending) {
        pending.targets = pending.targets.filter((uuid) => uuid !== node.datanodeUuid);
        if (pending.targets.length === 0) this.pendingReplication.delete(pendingKey);
      }
    }
    if (stale.length) state.commands.push({ action: "invalidate", blocks: stale });
  }

  blocksDeleted(node: DatanodeID, blockIds: number[]): void {
    const state = this.datanodes.get(node.datanodeUuid);
    for (const blockId of blockIds) {
      this.locations.get(blockId)?.delete(node.datanodeUuid);
      this.corrupt.get(blockId)?.delete(node.datanodeUuid);
      this.invalidating.delete(`${blockId}:${node.datanodeUuid}`);
      state?.blocks.delete(blockId);
    }
  }

  /** Replicas the write pipeline acknowledged: known before the nodes' own reports arrive. */
  pipelineAcknowledged(blockId: number, uuids: string[]): void {
    for (const uuid of uuids) {
      this.addLocation(blockId, uuid);
      this.datanodes.get(uuid)?.blocks.add(blockId);
    }
  }

  markCorrupt(blockId: number, uuid: string): void {
    const nodes = this.corrupt.get(blockId) ?? new Set<string>();
    this.corrupt.set(blockId, nodes);
    nodes.add(uuid);
  }

  /** Blocks gone from the namespace: tell their holders to delete them. */
  removeBlocks(blocks: BlockInfo[]): void {
    for (const block of blocks) {
      const [k, m] = ecShape(block.file.ecPolicy);
      const ids = block.file.ecPolicy
        ? Array.from({ length: k + m }, (_, i) => block.blockId + i)
        : [block.blockId];
      for (const blockId of ids) {
        for (const uuid of this.locations.get(blockId) ?? []) {
          const state = this.datanodes.get(uuid);
          state?.blocks.delete(blockId);
          state?.commands.push({
            action: "invalidate",
            blocks: [{ blockId, generationStamp: block.generationStamp, numBytes: block.numBytes }],
          });
        }
        this.locations.delete(blockId);
        this.corrupt.delete(blockId);
      }
      this.pendingReplication.delete(block.blockId);
    }
  }

  /**
   * Live, uncorrupted replicas in the order a reader should try them, as HDFS sorts located
   * blocks: a dead node's replicas are left out; stale nodes (silent past the stale interval,
   * probably gone) come last, the longest silent last of all, since a reader sent there waits
   * for a refusal or a timeout; among the rest, in-service nodes come before decommissioning
   * and decommissioned ones, which still serve reads and copies but only when needed.
   */
  goodReplicas(blockId: number): DatanodeInfo[] {
    const now = Date.now();
    const corrupt = this.corrupt.get(blockId);
    const out: DatanodeInfo[] = [];
    for (const uuid of this.locations.get(blockId) ?? []) {
      if (corrupt?.has(uuid) || !this.isLive(uuid, now)) continue;
      out.push(this.datanodes.get(uuid)!.info);
    }
    return out.sort(
      (a, b) =>
        this.readRank(a, now) - this.readRank(b, now) ||
        (this.isStale(a, now) ? b.lastUpdate - a.lastUpdate : 0),
    );
  }

  /** goodReplicas' order: fresh in service, fresh retiring, stale in service, stale retiring. */
  private readRank(node: DatanodeInfo, now: number): number {
    return (this.isStale(node, now) ? 2 : 0) + (isInService(node) ? 0 : 1);
  }

  /**
   * Where a WebHDFS read of the block may be redirected: its fresh in-service replicas (or, when
   * none is, its fresh retiring ones), for the caller to spread readers over; with every holder
   * stale, only the one heard from last. Empty when no live replica is left.
   */
  readCandidates(blockId: number): DatanodeInfo[] {
    const now = Date.now();
    const replicas = this.goodReplicas(blockId);
    const best = replicas[0];
    if (!best) return [];
    if (this.isStale(best, now)) return [best];
    const rank = this.readRank(best, now);
    return replicas.filter((node) => this.readRank(node, now) === rank);
  }

  /**
   * HDFS's default placement: the first replica on the writer's node when it is a data node,
   * the second on a different rack, the third on the second's rack but another node, any more
   * at random; with one rack, distinct nodes. `existing` replicas count as already placed.
   */
  chooseTargets(
    count: number,
    writer: string | undefined,
    existing: DatanodeInfo[],
    excluded: Set<string> = new Set(),
  ): DatanodeInfo[] {
    const chosen: DatanodeInfo[] = [];
    const taken = new Set([...excluded, ...existing.map((node) => node.datanodeUuid)]);
    // HDFS's avoid-stale-datanode rule: a node silent past the stale interval is probably gone
    // (killed, partitioned); write elsewhere while enough fresh nodes remain.
    const now = Date.now();
    const fresh = (node: DatanodeInfo) => !this.isStale(node, now);
    const candidates = () => {
      const live = this.inServiceNodes().filter((node) => !taken.has(node.datanodeUuid));
      const preferred = live.filter(fresh);
      return shuffle(preferred.length > 0 ? preferred : live);
    };
    const pick = (prefer: (node: DatanodeInfo) => boolean) => {
      const pool = candidates();
      const node = pool.find(prefer) ?? pool[0];
      if (node) {
        chosen.push(node);
        taken.add(node.datanodeUuid);
      }
      return node;
    };
    while (chosen.length < count) {
      const placed = [...existing, ...chosen];
      let node: DatanodeInfo | undefined;
      if (placed.length === 0) {
        node = pick((candidate) => candidate.datanodeUuid === writer);
      } else if (placed.length === 1) {
        node = pick((candidate) => candidate.networkLocation !== placed[0]!.networkLocation);
      } else if (placed.length === 2) {
        const [first, second] = placed as [DatanodeInfo, DatanodeInfo];
        node =
          first.networkLocation === second.networkLocation
            ? pick((candidate) => candidate.networkLocation !== first.networkLocation)
            : pick((candidate) => candidate.networkLocation === second.networkLocation);
      } else {
        node = pick(() => true);
      }
      if (!node) break;
    }
    return chosen;
  }

  /**
   * One pass of the replication monitor: schedule copies for under-replicated blocks (replicas on
   * decommissioning nodes do not count), delete corrupt replicas once a good one exists
   * elsewhere, finish decommissions whose blocks are safe, and recount the figures for status.
   */
  computeReplicationWork(): void {
    const now = Date.now();
    const stats: BlockStats = {
      underReplicatedBlocks: 0,
      missingBlocks: 0,
      corruptReplicas: 0,
      pendingReplicationBlocks: 0,
    };
    for (const [blockId, pending] of this.pendingReplication) {
      if (pending.deadline < now) this.pendingReplication.delete(blockId);
    }
    for (const block of this.namespace.blocks.values()) {
      if (!block.complete) continue;
      if (block.file.ecPolicy) {
        this.blockGroupWork(block, stats, now);
        continue;
      }
      const good = this.goodReplicas(block.blockId);
      const inService = good.filter(isInService);
      const corrupt = this.corrupt.get(block.blockId);
      stats.corruptReplicas += corrupt?.size ?? 0;
      if (good.length === 0) {
        stats.missingBlocks++;
        continue;
      }
      const extended = {
        blockId: block.blockId,
        generationStamp: block.generationStamp,
        numBytes: block.numBytes,
      };
      // Nodes still holding a replica, corrupt ones included until they confirm the delete, are not targets.
      const holders = new Set(this.locations.get(block.blockId) ?? []);
      this.dropCorruptReplicas(extended, now);
      const wanted = block.file.replication;
      if (inService.length > wanted && !this.pendingReplication.has(block.blockId))
        this.removeExcessReplicas(extended, inService, wanted);
      if (inService.length >= wanted) continue;
      stats.underReplicatedBlocks++;
      const pending = this.pendingReplication.get(block.blockId);
      if (pending) {
        stats.pendingReplicationBlocks++;
        continue;
      }
      const targets = this.chooseTargets(wanted - inService.length, undefined, inService, holders);
      if (targets.length === 0) continue;
      // A decommissioning node is a source only when no in-service replica is left.
      const sources = inService.length > 0 ? inService : good;
      const source = sources[Math.floor(Math.random() * sources.length)]!;
      this.datanodes
        .get(source.datanodeUuid)!
        .commands.push({ action: "transfer", block: extended, targets: targets.map(toDatanodeID) });
      this.pendingReplication.set(block.blockId, {
        targets: targets.map((node) => node.datanodeUuid),
        deadline: now + this.options.pendingReplicationTimeoutMs,
      });
      stats.pendingReplicationBlocks++;
    }
    this.checkDecommissions(now);
    this.stats = stats;
  }

  /**
   * More in-service replicas than the file's replication (it was lowered, a dead node came back,
   * a decommission was cancelled): delete the excess as HDFS chooses, keeping replicas on as many
   * racks as before and freeing the fullest node first. Replicas already told to go count as gone.
   */
  private removeExcessReplicas(block: ExtendedBlock, replicas: DatanodeInfo[], wanted: number): void {
    const doomed = (node: DatanodeInfo) => this.invalidating.has(`${block.blockId}:${node.datanodeUuid}`);
    const keep = replicas.filter((node) => !doomed(node));
    while (keep.length > wanted) {
      const perRack = new Map<string, number>();
      for (const node of keep)
        perRack.set(node.networkLocation, (perRack.get(node.networkLocation) ?? 0) + 1);
      const shared = keep.filter((node) => perRack.get(node.networkLocation)! > 1);
      const pool = shared.length > 0 ? shared : keep;
      const victim = pool.reduce((fullest, node) => (node.remaining < fullest.remaining ? node : fullest));
      keep.splice(keep.indexOf(victim), 1);
      this.invalidating.add(`${block.blockId}:${victim.datanodeUuid}`);
      this.datanodes.get(victim.datanodeUuid)?.commands.push({ action: "invalidate", blocks: [block] });
    }
  }

  /**
   * HDFS's DatanodeAdminManager check: a decommissioning node is DECOMMISSIONED once every block
   * it holds is safe without it: a replicated block has its replication on in-service nodes (or
   * on all of them, when fewer remain: HDFS lets a decommission shrink a pool below a file's
   * replication rather than never finish), and an erasure-coded internal block exists on an
   * in-service node. Blocks still being written hold it up until they are complete.
   */
  private checkDecommissions(now: number): void {
    const inServiceCount = this.inServiceNodes().length;
    for (const node of this.datanodes.values()) {
      if (node.info.adminState !== "DECOMMISSION_INPROGRESS") continue;
      if (!node.blockReported || !this.isLive(node.info.datanodeUuid, now)) continue;
      const uuid = node.info.datanodeUuid;
      if ([...node.blocks].every((blockId) => this.safeWithout(blockId, uuid, inServiceCount)))
        this.transition(
          node,
          "DECOMMISSIONED",
          "data node decommissioned: every block it holds has enough replicas on other nodes",
          { blocks: node.blocks.size },
        );
    }
  }

  private safeWithout(blockId: number, uuid: string, inServiceCount: number): boolean {
    const found = this.namespace.blockOrGroup(blockId);
    // Not in the namespace (deleted, stale): nothing to save; it is being invalidated.
    if (!found) return true;
    // A corrupt replica is not worth saving: the replication monitor replaces it from good ones.
    if (this.corrupt.get(blockId)?.has(uuid)) return true;
    if (!found.block.complete) return false;
    const elsewhere = this.goodReplicas(blockId).filter(isInService).length;
    if (found.index >= 0) return elsewhere > 0;
    return elsewhere >= Math.max(1, Math.min(found.block.file.replication, inServiceCount));
  }

  /**
   * A block group with internal blocks lost (dead node, deleted fragment): one live holder is told
   * to read any k fragments, decode the lost ones and write them to new nodes outside the group.
   * An internal block only a decommissioning node holds is not lost: it is copied as it is
   * (a plain transfer, no decoding) to a node outside the group.
   */
  /**
   * A corrupt replica goes as soon as a good copy exists (the caller checked), freeing its node to
   * take a new one; a dead node's is forgotten.
   */
  private dropCorruptReplicas(block: ExtendedBlock, now: number): void {
    const corrupt = this.corrupt.get(block.blockId);
    for (const uuid of corrupt ?? []) {
      const state = this.datanodes.get(uuid);
      const key = `${block.blockId}:${uuid}`;
      if (state && this.isLive(uuid, now)) {
        if (!this.invalidating.has(key)) state.commands.push({ action: "invalidate", blocks: [block] });
        this.invalidating.add(key);
      } else {
        this.locations.get(block.blockId)?.delete(uuid);
        corrupt?.delete(uuid);
      }
    }
  }

  private blockGroupWork(block: BlockInfo, stats: BlockStats, now: number): void {
    const ecPolicy = block.file.ecPolicy!;
    const [k, m] = ecShape(ecPolicy);
    // goodReplicas puts in-service holders first: a decommissioning node is the holder only when alone.
    const internal = Array.from({ length: k + m }, (_, i) => this.goodReplicas(block.blockId + i)[0] ?? null);
    const layout = groupLayout(ecPolicy, block.numBytes);
    internal.forEach((node, i) => {
      const blockId = block.blockId + i;
      stats.corruptReplicas += this.corrupt.get(blockId)?.size ?? 0;
      // Once rebuilt elsewhere, a corrupt internal block goes like a corrupt replica.
      if (node)
        this.dropCorruptReplicas(
          { blockId, generationStamp: block.generationStamp, numBytes: internalBlockLength(layout, i) },
          now,
        );
    });
    const missing = internal.flatMap((node, i) => (node ? [] : [i]));
    const retiring = internal.flatMap((node, i) => (node && !isInService(node) ? [i] : []));
    if (missing.length === 0 && retiring.length === 0) return;
    stats.underReplicatedBlocks++;
    if (missing.length > m) {
      stats.missingBlocks++;
      return;
    }
    if (this.pendingReplication.has(block.blockId)) {
      stats.pendingReplicationBlocks++;
      return;
    }
    const holders = new Set<string>();
    for (let i = 0; i < k + m; i++)
      for (const uuid of this.locations.get(block.blockId + i) ?? []) holders.add(uuid);
    // Rebuild what is lost first; the next pass moves what is retiring.
    if (missing.length === 0) {
      this.copyRetiringInternalBlocks(block, retiring, internal, holders, stats, now);
      return;
    }
    const targets = this.chooseTargets(missing.length, undefined, [], holders);
    if (targets.length < missing.length) return;
    const live = internal.filter((node): node is DatanodeInfo => node !== null);
    const workers = live.some(isInService) ? live.filter(isInService) : live;
    const worker = workers[Math.floor(Math.random() * workers.length)]!;
    this.datanodes.get(worker.datanodeUuid)!.commands.push({
      action: "reconstruct",
      group: { blockId: block.blockId, generationStamp: block.generationStamp, numBytes: block.numBytes },
      ecPolicy,
      blockSize: block.file.blockSize,
      sources: internal.map((node) => (node ? toDatanodeID(node) : null)),
      missing,
      targets: targets.map(toDatanodeID),
    });
    this.pendingReplication.set(block.blockId, {
      targets: targets.map((node) => node.datanodeUuid),
      deadline: now + this.options.pendingReplicationTimeoutMs,
    });
    stats.pendingReplicationBlocks++;
  }

  private copyRetiringInternalBlocks(
    block: BlockInfo,
    retiring: number[],
    internal: (DatanodeInfo | null)[],
    holders: Set<string>,
    stats: BlockStats,
    now: number,
  ): void {
    const targets = this.chooseTargets(retiring.length, undefined, [], holders);
    if (targets.length === 0) return;
    const layout = groupLayout(block.file.ecPolicy!, block.numBytes);
    targets.forEach((target, n) => {
      const index = retiring[n]!;
      this.datanodes.get(internal[index]!.datanodeUuid)!.commands.push({
        action: "transfer",
        block: {
          blockId: block.blockId + index,
          generationStamp: block.generationStamp,
          numBytes: internalBlockLength(layout, index),
        },
        targets: [toDatanodeID(target)],
      });
    });
    this.pendingReplication.set(block.blockId, {
      targets: targets.map((node) => node.datanodeUuid),
      deadline: now + this.options.pendingReplicationTimeoutMs,
    });
    stats.pendingReplicationBlocks++;
  }

  private addNode(info: DatanodeInfo): DatanodeState {
    const state: DatanodeState = { info, commands: [], blocks: new Set(), blockReported: false };
    this.datanodes.set(info.datanodeUuid, state);
    if (this.isExcluded(info)) this.startDecommission(state, "registered while in the decommission set");
    return state;
  }

  private addLocation(blockId: number, uuid: string): void {
    const nodes = this.locations.get(blockId) ?? new Set<string>();
    this.locations.set(blockId, nodes);
    nodes.add(uuid);
  }

  private ensureNode(node: DatanodeID): DatanodeState {
    return (
      this.datanodes.get(node.datanodeUuid) ??
      this.addNode({
        ...toDatanodeID(node),
        networkLocation: this.options.rackOf?.(node) ?? "/default-rack",
        capacity: 0,
        dfsUsed: 0,
        remaining: 0,
        numBlocks: 0,
        lastUpdate: 0,
        adminState: "NORMAL",
      })
    );
  }

  // ---- located blocks: where a file's blocks are, for readers and writers --------------------

  locate(file: INodeFile, index: number, startOffset: number, clientUuid?: string): LocatedBlock {
    const block = file.blocks[index]!;
    if (file.ecPolicy) {
      const [k, m] = ecShape(file.ecPolicy);
      const internal = Array.from({ length: k + m }, (_, i) => {
        const node = this.goodReplicas(block.blockId + i)[0];
        return node ? toDatanodeID(node) : null;
      });
      return {
        block: { blockId: block.blockId, generationStamp: block.generationStamp, numBytes: block.numBytes },
        startOffset,
        locations: internal.filter((node): node is DatanodeID => node !== null),
        corrupt: false,
        ecPolicy: file.ecPolicy,
        internal,
      };
    }
    const replicas = this.goodReplicas(block.blockId);
    replicas.sort((a, b) => Number(b.datanodeUuid === clientUuid) - Number(a.datanodeUuid === clientUuid));
    return {
      block: { blockId: block.blockId, generationStamp: block.generationStamp, numBytes: block.numBytes },
      startOffset,
      locations: replicas.map(toDatanodeID),
      corrupt: false,
    };
  }

  targetCount(file: INodeFile): number {
    const [k, m] = ecShape(file.ecPolicy);
    return file.ecPolicy ? k + m : file.replication;
  }

  /** Replicas (or a group's internal blocks, in index order; null where one was lost) the write acknowledged. */
  acknowledged(file: INodeFile, blockId: number, locations: (string | null)[]): void {
    const acked = (uuid: string | null): uuid is string => typeof uuid === "string";
    if (!file.ecPolicy) {
      this.pipelineAcknowledged(blockId, locations.filter(acked));
      return;
    }
    locations.forEach((uuid, i) => {
      if (acked(uuid)) this.pipelineAcknowledged(blockId + i, [uuid]);
    });
  }

  /** WebHDFS's BlockLocation objects for the committed blocks of `file` overlapping [start, end). */
  blockLocations(file: INodeFile, start: number, end: number) {
    const [k, m] = ecShape(file.ecPolicy);
    const locations = [];
    let offset = 0;
    for (const block of file.blocks) {
      const blockStart = offset;
      offset += block.numBytes;
      if (!block.complete || offset <= start || blockStart >= end) continue;
      // A block group's hosts are its internal blocks' holders, in index order.
      const holders = file.ecPolicy
        ? Array.from({ length: k + m }, (_, i) => this.goodReplicas(block.blockId + i)[0]).filter(
            (node) => node !== undefined,
          )
        : this.goodReplicas(block.blockId);
      const names = holders.map((node) => `${node.hostName}:${node.xferPort}`);
      locations.push({
        offset: blockStart,
        length: block.numBytes,
        corrupt: false,
        hosts: holders.map((node) => node.hostName),
        names,
        topologyPaths: holders.map((node, i) => `${node.networkLocation}/${names[i]}`),
        storageTypes: holders.map(() => "DISK"),
        storageIds: holders.map((node) => `DS-${node.datanodeUuid}`),
        cachedHosts: [],
      });
    }
    return locations;
  }
}

export function isInService(node: DatanodeInfo): boolean {
  return node.adminState === "NORMAL";
}

export function toDatanodeID(node: DatanodeID): DatanodeID {
  return {
    datanodeUuid: node.datanodeUuid,
    hostName: node.hostName,
    xferPort: node.xferPort,
    infoPort: node.infoPort,
  };
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
