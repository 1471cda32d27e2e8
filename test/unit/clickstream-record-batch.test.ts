/**
 * The collector's own Produce request encoder (recordBatch.ts) against kafkajs's for the same
 * request: the same bytes for keyed, unkeyed and non-ASCII-keyed messages over several topics and
 * partitions, idempotent producer ids, epochs and sequences; the CRC is Kafka's (CRC32C of the
 * batch from its attributes on); and kafkajs keeps its own encoding for anything else.
 */
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import {
  encodeProduceRequest,
  isPrepared,
  PreparedMessage,
  type ProduceRequestArgs,
} from "../../src/dataplane/clickstream/recordBatch.js";
import { crc32c } from "../../src/dataplane/storage/crc32c.js";

const require = createRequire(import.meta.url);
const { requests } = require("kafkajs/src/protocol/requests/index.js");
const kafkajsV3Request = require("kafkajs/src/protocol/requests/produce/v3/request.js");
const Long = require("kafkajs/src/utils/long.js");

const NOW = 1_765_000_000_123;

async function kafkajsBytes(args: ProduceRequestArgs): Promise<Buffer> {
  const realNow = Date.now;
  Date.now = () => NOW;
  try {
    const encoder = await kafkajsV3Request(args).encode();
    return Buffer.from(encoder.buffer);
  } finally {
    Date.now = realNow;
  }
}

function value(seed: number, length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) bytes[i] = (seed * 31 + i * 7) & 0xff;
  return bytes;
}

function request(partitionSizes: number[][], keyOf: (i: number) => string | null): ProduceRequestArgs {
  let n = 0;
  return {
    acks: -1,
    timeout: 30_000,
    producerId: Long.fromValue(4_000_000_123),
    producerEpoch: 7,
    compression: 0,
    topicData: partitionSizes.map((sizes, t) => ({
      topic: `clicks-${t}`,
      partitions: sizes.map((count, p) => ({
        partition: p * 2 + 1,
        firstSequence: 1000 * p + t,
        messages: Array.from({ length: count }, () => {
          const i = n++;
          // Values across the varint boundaries of their length (63/64, 8191/8192 bytes).
          const length = [0, 1, 63, 64, 300, 8191, 8192, 20_000][i % 8]!;
          return new PreparedMessage(keyOf(i), value(i, length), p * 2 + 1);
        }),
      })),
    })),
  };
}

describe("the collector's Produce request encoder", () => {
  it("writes kafkajs's bytes for one topic of six partitions", async () => {
    const args = request([[1, 2, 64, 65, 200, 1000]], (i) => `session-${i % 37}`);
    expect(encodeProduceRequest(args, NOW).equals(await kafkajsBytes(args))).toBe(true);
  });

  it("writes kafkajs's bytes for several topics, null and non-ASCII keys", async () => {
    const args = request([[3, 9], [130], [1, 1, 1]], (i) =>
      i % 3 === 0 ? null : i % 3 === 1 ? `séssion-€-${i}` : `s-${i}`,
    );
    expect(encodeProduceRequest(args, NOW).equals(await kafkajsBytes(args))).toBe(true);
  });

  it("sets Kafka's CRC: CRC32C of each batch from its attributes to its end", () => {
    const args = request([[5]], (i) => `session-${i}`);
    const bytes = encodeProduceRequest(args, NOW);
    // 12 bytes of request header, the topic's name and count, partition and batch size.
    const batch = 12 + 2 + "clicks-0".length + 4 + 8;
    const end = batch + 12 + bytes.readInt32BE(batch + 8);
    expect(end).toBe(bytes.length);
    expect(bytes.readUInt32BE(batch + 17)).toBe(crc32c(bytes, 0, batch + 21, end));
    expect(bytes[batch + 16]).toBe(2);
  });

  it("takes only untransacted, uncompressed requests of prepared messages", () => {
    const prepared = request([[2]], (i) => `session-${i}`);
    expect(isPrepared(prepared)).toBe(true);
    expect(isPrepared({ ...prepared, compression: 1 })).toBe(false);
    expect(isPrepared({ ...prepared, transactionalId: "tx" })).toBe(false);
    const plain: ProduceRequestArgs = {
      ...prepared,
      topicData: [
        { topic: "t", partitions: [{ partition: 0, messages: [{ key: "k", value: Buffer.from("v") }] }] },
      ],
    };
    expect(isPrepared(plain)).toBe(false);
  });

  it("is what kafkajs encodes the collector's messages with, and only those", async () => {
    const produce = requests.Produce.protocol({ version: 7 });
    const prepared = request([[3]], (i) => `session-${i}`);
    const realNow = Date.now;
    Date.now = () => NOW;
    try {
      const ours = await produce(prepared).request.encode();
      expect(Buffer.from(ours.buffer).equals(encodeProduceRequest(prepared, NOW))).toBe(true);
      const plain = {
        ...prepared,
        topicData: [
          {
            topic: "clicks-0",
            partitions: [
              { partition: 1, firstSequence: 0, messages: [{ key: "k", value: Buffer.from("v") }] },
            ],
          },
        ],
      };
      const theirs = await produce(plain).request.encode();
      expect(Buffer.from(theirs.buffer).equals(await kafkajsBytes(plain))).toBe(true);
    } finally {
      Date.now = realNow;
    }
  });
});
