import kafkajs, { type PartitionMetadata } from "kafkajs";
import { describe, expect, it } from "vitest";
import { CachingDefaultPartitioner } from "../../src/dataplane/clickstream/partitioner.js";

const partitions = (count: number): PartitionMetadata[] =>
  Array.from({ length: count }, (_, partitionId) => ({
    partitionErrorCode: 0,
    partitionId,
    leader: 1,
    replicas: [1],
    isr: [1],
  }));

describe("caching partitioner", () => {
  it("agrees with kafkajs's (Java-compatible) default partitioner, before and after the topic grows", () => {
    const cached = CachingDefaultPartitioner();
    const reference = kafkajs.Partitioners.DefaultPartitioner();
    for (const count of [6, 6, 12]) {
      for (let i = 0; i < 500; i++) {
        const args = {
          topic: "clicks",
          partitionMetadata: partitions(count),
          message: { key: `session-${i}`, value: "" },
        };
        expect(cached(args)).toBe(reference(args));
      }
    }
  });

  it("keeps an explicit partition", () => {
    const cached = CachingDefaultPartitioner();
    expect(
      cached({
        topic: "t",
        partitionMetadata: partitions(6),
        message: { key: "s", value: "", partition: 4 },
      }),
    ).toBe(4);
  });
});
