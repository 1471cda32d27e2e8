/**
 * Where replicas are (HDFS's BlockManager + DatanodeManager): data nodes and their liveness from
 * heartbeats, replica locations from block reports, corrupt replicas, block placement with rack
 * awareness, and the replication monitor that re-replicates under-replicated blocks and
 * replaces corrupt ones. None of it is persisted: data nodes report it again after a restart, and
 * they report to the standby too, so a failover starts with a warm map.
 */
import type {
  DatanodeCommand,
  DatanodeID,
  DatanodeInfo,
  ExtendedBlock,
  HeartbeatRequest,
} from "../protocol.js";
import { type BlockInfo, ecShape, type Namespace } from "./namespace.js";

interface DatanodeState {
  info: DatanodeInfo;
  commands: DatanodeCommand[];
  blocks: Set<number>;
}

export interface BlockManagerOptions {
  /** A data node silent this long is dead (HDFS: 10.5 minutes; tests use seconds). */
  heartbeatExpiryMs: number;
  /** How long a scheduled copy may take before it is scheduled again. */
  pendingReplicationTimeoutMs: number;
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

  liveNodes(): DatanodeInfo[] {
    const now = Date.now();
    return [...this.datanodes.values()]
      .filter((node) => this.isLive(node.info.datanodeUuid, now))
      .map((node) => node.info);
  }

  report(): DatanodeInfo[] {
    const now = Date.now();
    return [...this.datanodes.values()].map((node) => ({
      ...node.info,
      numBlocks: node.blocks.size,
      adminState: this.isLive(node.info.datanodeUuid, now) ? "NORMAL" : "DEAD",
    }));
  }

  /** Returns the commands for the node, or `register` if this name node has not had its block report. */
  heartbeat(request: HeartbeatRequest, active: boolean): DatanodeCommand[] {
    const state = this.datanodes.get(request.datanode.datanodeUuid);
    const info: DatanodeInfo = {
      ...request.datanode,
      networkLocation: request.networkLocation,
      capacity: request.capacity,
      dfsUsed: request.dfsUsed,
      remaining: request.remaining,
      numBlocks: request.numBlocks,
      lastUpdate: Date.now(),
      adminState: "NORMAL",
    };
    if (!state) {
      this.datanodes.set(info.datanodeUuid, { info, commands: [], blocks: new Set() });
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

  /** Live, uncorrupted replicas. */
  goodReplicas(blockId: number): DatanodeInfo[] {
    const now = Date.now();
    const corrupt = this.corrupt.get(blockId);
    const out: DatanodeInfo[] = [];
    for (const uuid of this.locations.get(blockId) ?? []) {
      if (corrupt?.has(uuid) || !this.isLive(uuid, now)) continue;
      out.push(this.datanodes.get(uuid)!.info);
    }
    return out;
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
    // HDFS's avoid-stale-datanode rule: a node silent for a third of the expiry is probably gone
    // (killed, partitioned); write elsewhere while enough fresh nodes remain.
    const now = Date.now();
    const fresh = (node: DatanodeInfo) => now - node.lastUpdate <= this.options.heartbeatExpiryMs / 3;
    const candidates = () => {
      const live = this.liveNodes().filter((node) => !taken.has(node.datanodeUuid));
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
   * One pass of the replication monitor: schedule copies for under-replicated blocks, delete
   * corrupt replicas once a good one exists elsewhere, and recount the figures for status.
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
      // A corrupt replica goes as soon as a good copy exists, freeing its node to take a new one.
      for (const uuid of corrupt ?? []) {
        const state = this.datanodes.get(uuid);
        const key = `${block.blockId}:${uuid}`;
        if (state && this.isLive(uuid, now)) {
          if (!this.invalidating.has(key)) state.commands.push({ action: "invalidate", blocks: [extended] });
          this.invalidating.add(key);
        } else {
          this.locations.get(block.blockId)?.delete(uuid);
          corrupt?.delete(uuid);
        }
      }
      const wanted = block.file.replication;
      if (good.length >= wanted) continue;
      stats.underReplicatedBlocks++;
      const pending = this.pendingReplication.get(block.blockId);
      if (pending) {
        stats.pendingReplicationBlocks++;
        continue;
      }
      const targets = this.chooseTargets(wanted - good.length, undefined, good, holders);
      if (targets.length === 0) continue;
      const source = good[Math.floor(Math.random() * good.length)]!;
      this.datanodes
        .get(source.datanodeUuid)!
        .commands.push({ action: "transfer", block: extended, targets: targets.map(toDatanodeID) });
      this.pendingReplication.set(block.blockId, {
        targets: targets.map((node) => node.datanodeUuid),
        deadline: now + this.options.pendingReplicationTimeoutMs,
      });
      stats.pendingReplicationBlocks++;
    }
    this.stats = stats;
  }

  /**
   * A block group with internal blocks lost (dead node, deleted fragment): one live holder is told
   * to read any k fragments, decode the lost ones and write them to new nodes outside the group.
   */
  private blockGroupWork(block: BlockInfo, stats: BlockStats, now: number): void {
    const ecPolicy = block.file.ecPolicy!;
    const [k, m] = ecShape(ecPolicy);
    const internal = Array.from({ length: k + m }, (_, i) => this.goodReplicas(block.blockId + i)[0] ?? null);
    const missing = internal.flatMap((node, i) => (node ? [] : [i]));
    if (missing.length === 0) return;
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
    const targets = this.chooseTargets(missing.length, undefined, [], holders);
    if (targets.length < missing.length) return;
    const live = internal.filter((node): node is DatanodeInfo => node !== null);
    const worker = live[Math.floor(Math.random() * live.length)]!;
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

  private addLocation(blockId: number, uuid: string): void {
    const nodes = this.locations.get(blockId) ?? new Set<string>();
    this.locations.set(blockId, nodes);
    nodes.add(uuid);
  }

  private ensureNode(node: DatanodeID): DatanodeState {
    let state = this.datanodes.get(node.datanodeUuid);
    if (!state) {
      state = {
        info: {
          ...node,
          networkLocation: "/default-rack",
          capacity: 0,
          dfsUsed: 0,
          remaining: 0,
          numBlocks: 0,
          lastUpdate: 0,
          adminState: "NORMAL",
        },
        commands: [],
        blocks: new Set(),
      };
      this.datanodes.set(node.datanodeUuid, state);
    }
    return state;
  }
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
