import type { ICustomPartitioner, PartitionerArgs, PartitionMetadata } from "kafkajs";
import kafkajs from "kafkajs";

const { Partitioners } = kafkajs;

/** Bounds the memory of the cache; a full cache is simply started again. */
const MAX_CACHED_KEYS = 100_000;

/**
 * kafkajs's DefaultPartitioner (murmur2 of the key modulo the partition count, the same choice as
 * Java's producers, so every client agrees on a session's partition), remembered per topic, key
 * and partition count. A session sends many events; computing murmur2 over the key in JavaScript,
 * plus the partitioner's scan of the partition list, for every message took about a tenth of the
 * collector's CPU in the profile. A change of partition count (the topic grew) starts the cache of
 * that topic again, so the mapping always follows the current metadata.
 *
 * It also remembers each topic's partition metadata as the producer last passed it, so that the
 * collector's pipeline can tell a message's partition before sending it (`partitionOf`) and keep
 * one batch in flight per partition.
 */
export class KnownPartitions {
  private readonly compute = Partitioners.DefaultPartitioner();
  private readonly byTopic = new Map<string, { metadata: PartitionMetadata[]; byKey: Map<string, number> }>();

  /** For kafka.producer({ createPartitioner }). */
  readonly createPartitioner: ICustomPartitioner = () => (args: PartitionerArgs) => {
    const { topic, partitionMetadata, message } = args;
    if (message.partition != null) {
      // The pipeline names the partition of every message once it knows the topic's: keep up with
      // the metadata all the same (new leaders, more partitions) for its next messages.
      const cache = this.byTopic.get(topic);
      if (cache !== undefined && cache.metadata !== partitionMetadata) {
        if (cache.metadata.length !== partitionMetadata.length) cache.byKey.clear();
        cache.metadata = partitionMetadata;
      }
      return message.partition;
    }
    if (typeof message.key !== "string") return this.compute(args);
    return this.lookup(topic, partitionMetadata, message.key);
  };

  /** The partition the producer will choose for `key`, once it has sent to `topic`; else undefined. */
  partitionOf(topic: string, key: string): number | undefined {
    const cache = this.byTopic.get(topic);
    return cache ? this.lookup(topic, cache.metadata, key) : undefined;
  }

  /** The partition's leader broker as of the producer's last send to `topic`, if known. */
  leaderOf(topic: string, partition: number): number | undefined {
    return this.byTopic.get(topic)?.metadata.find((p) => p.partitionId === partition)?.leader;
  }

  private lookup(topic: string, metadata: PartitionMetadata[], key: string): number {
    let cache = this.byTopic.get(topic);
    if (!cache || cache.metadata.length !== metadata.length || cache.byKey.size >= MAX_CACHED_KEYS) {
      cache = { metadata, byKey: new Map() };
      this.byTopic.set(topic, cache);
    }
    // The same partitions may have new leaders: the latest metadata says where a batch goes.
    cache.metadata = metadata;
    let partition = cache.byKey.get(key);
    if (partition === undefined) {
      partition = this.compute({ topic, partitionMetadata: metadata, message: { key, value: null } });
      cache.byKey.set(key, partition);
    }
    return partition;
  }
}

export const CachingDefaultPartitioner: ICustomPartitioner = () => new KnownPartitions().createPartitioner();
