/**
 * The collector's own encoding of Kafka Produce requests (v3 to v7, record batches of magic 2),
 * used by kafkajs for the collector's messages only.
 *
 * Why: profiled under the bench's load, kafkajs's encoding of a produce request was about a third
 * of the collector's CPU: a zero-filled 512-byte buffer and a Long per record, each record copied
 * into its batch and the batch into its partition, topic and request (each grown by doubling),
 * and CRC32C a byte at a time. This writes the request body once, into one buffer of its exact
 * size, and takes the CRC with Tributary's slice-by-8 (storage/crc32c.ts). The bytes are exactly
 * kafkajs's (test/unit/clickstream-record-batch.test.ts compares them).
 *
 * Everything else stays kafkajs's: which broker gets which partitions, the idempotent producer's
 * id, epoch and sequence numbers (handed to the request as they are to kafkajs's own encoder),
 * retries, connections and the response. The hook replaces only the `encode` of a Produce request
 * whose every message is a PreparedMessage (made by the collector's pipeline) and that is neither
 * compressed nor transactional; any other request, from any other producer in the process,
 * keeps kafkajs's encoding.
 */
import { createRequire } from "node:module";
import { crc32c } from "../storage/crc32c.js";

/**
 * Marks a PreparedMessage, and holds the hook's state on kafkajs's Produce definition: symbols of
 * the global registry, so that the hook and the mark agree across copies of this module (a test
 * runner loads it once per file, kafkajs once per process).
 */
const PREPARED = Symbol.for("tributary.collector.preparedMessage");
const HOOK_STATE = Symbol.for("tributary.collector.produceEncoder");

/** A message as the collector hands it to kafkajs: an Avro value, keyed by session, no headers or timestamp. */
export class PreparedMessage {
  declare readonly [PREPARED]: true;
  constructor(
    readonly key: string | null,
    readonly value: Buffer,
    /** The partition its pipeline lane stands for; undefined while the topic's partitions are unknown. */
    readonly partition?: number,
  ) {}
}
Object.defineProperty(PreparedMessage.prototype, PREPARED, { value: true });

/** What kafkajs passes to a Produce request (protocol/requests/produce). */
export interface ProduceRequestArgs {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: {
    topic: string;
    partitions: { partition: number; firstSequence?: number; messages: unknown[] }[];
  }[];
}

interface KafkaEncoder {
  buf: Buffer;
  offset: number;
}

interface ProduceDefinition {
  versions: string[];
  protocol: (options: { version: number }) => (args: ProduceRequestArgs) => {
    request: { encode: () => Promise<KafkaEncoder> };
    response: unknown;
  };
}

const require = createRequire(import.meta.url);
const { requests } = require("kafkajs/src/protocol/requests/index.js") as {
  requests: { Produce: ProduceDefinition & { [HOOK_STATE]?: { encodedRequests: number } } };
};
const KafkaJsEncoder = require("kafkajs/src/protocol/encoder.js") as new (
  initialSize?: number,
) => KafkaEncoder;
const Long = require("kafkajs/src/utils/long.js") as { fromValue(value: unknown): { value: bigint } };

/** Record batch fields from baseOffset to the record count (Kafka's DefaultRecordBatch). */
const BATCH_HEADER_BYTES = 61;
/** From attributes on: what the batch's CRC covers. */
const CRC_FROM = 21;

/** Produce requests this process encoded itself (for tests: the hook is in place). */
export function preparedRequestsEncoded(): number {
  return requests.Produce[HOOK_STATE]?.encodedRequests ?? 0;
}

/** Whether `args` is a request of the collector's own messages that this encoder writes. */
export function isPrepared(args: ProduceRequestArgs): boolean {
  if (args.transactionalId != null || (args.compression ?? 0) !== 0) return false;
  for (const { partitions } of args.topicData) {
    for (const { messages } of partitions) {
      for (let i = 0; i < messages.length; i++) {
        if ((messages[i] as Partial<PreparedMessage> | null)?.[PREPARED] !== true) return false;
      }
    }
  }
  return true;
}

/** Installs the hook once per kafkajs instance (idempotent). */
function hook(): void {
  const produce = requests.Produce;
  if (produce[HOOK_STATE]) return;
  const state = { encodedRequests: 0 };
  const original = produce.protocol;
  produce.protocol = (options) => {
    const build = original(options);
    // Versions 3 to 7 share one request layout; older ones (brokers before 0.11) keep kafkajs's.
    if (options.version < 3) return build;
    return (args) => {
      const built = build(args);
      if (isPrepared(args)) {
        built.request.encode = async () => {
          state.encodedRequests++;
          const encoder = new KafkaJsEncoder(0);
          encoder.buf = encodeProduceRequest(args);
          encoder.offset = encoder.buf.length;
          return encoder;
        };
      }
      return built;
    };
  };
  produce[HOOK_STATE] = state;
}

hook();

/**
 * The Produce request body (after the request header) for `args`, whose messages are all
 * PreparedMessages: transactional_id (null), acks, timeout, then per topic its name and per
 * partition one record batch.
 */
export function encodeProduceRequest(args: ProduceRequestArgs, now = Date.now()): Buffer {
  // One pass measures every record (kept in recordSizes, in request order) and every batch;
  // the second writes with those sizes instead of measuring each record again.
  let records = 0;
  for (const { partitions } of args.topicData)
    for (const { messages } of partitions) records += messages.length;
  if (recordSizes.length < records) recordSizes = new Int32Array(Math.max(records, 2 * recordSizes.length));
  const batchBytes: number[] = [];
  let size = 2 + 2 + 4 + 4;
  let at = 0;
  for (const { topic, partitions } of args.topicData) {
    size += 2 + Buffer.byteLength(topic) + 4;
    for (const { messages } of partitions) {
      let bytes = BATCH_HEADER_BYTES;
      for (let i = 0; i < messages.length; i++) {
        const body = recordBodyBytes(messages[i] as PreparedMessage, i);
        recordSizes[at++] = body;
        bytes += varintBytes(body) + body;
      }
      batchBytes.push(bytes);
      size += 4 + 4 + bytes;
    }
  }
  const buf = Buffer.allocUnsafe(size);
  buf.writeInt16BE(-1, 0);
  buf.writeInt16BE(args.acks, 2);
  buf.writeInt32BE(args.timeout, 4);
  buf.writeInt32BE(args.topicData.length, 8);
  let pos = 12;
  const producerId = Long.fromValue(args.producerId ?? -1).value;
  let batchIndex = 0;
  at = 0;
  for (const { topic, partitions } of args.topicData) {
    const topicBytes = Buffer.byteLength(topic);
    buf.writeInt16BE(topicBytes, pos);
    pos += 2 + buf.write(topic, pos + 2, topicBytes, "utf8");
    buf.writeInt32BE(partitions.length, pos);
    pos += 4;
    for (const { partition, firstSequence, messages } of partitions) {
      const count = messages.length;
      const bytes = batchBytes[batchIndex++]!;
      buf.writeInt32BE(partition, pos);
      buf.writeInt32BE(bytes, pos + 4);
      const batch = pos + 8;
      buf.writeBigInt64BE(0n, batch); // baseOffset: the broker assigns offsets
      buf.writeInt32BE(bytes - 12, batch + 8); // batchLength: what follows it
      buf.writeInt32BE(0, batch + 12); // partitionLeaderEpoch
      buf[batch + 16] = 2; // magic
      buf.writeInt16BE(0, batch + 21); // attributes: no compression, no transaction, create time
      buf.writeInt32BE(count - 1, batch + 23); // lastOffsetDelta
      // Records carry no timestamp of their own: the batch's is now, every delta 0, as kafkajs's.
      buf.writeBigInt64BE(BigInt(now), batch + 27);
      buf.writeBigInt64BE(BigInt(now), batch + 35);
      buf.writeBigInt64BE(producerId, batch + 43);
      buf.writeInt16BE(args.producerEpoch ?? 0, batch + 51);
      buf.writeInt32BE(firstSequence ?? 0, batch + 53);
      buf.writeInt32BE(count, batch + 57);
      pos = batch + BATCH_HEADER_BYTES;
      for (let i = 0; i < count; i++)
        pos = writeRecord(buf, pos, messages[i] as PreparedMessage, i, recordSizes[at++]!);
      buf.writeUInt32BE(crc32c(buf, 0, batch + CRC_FROM, pos), batch + 17);
    }
  }
  return buf;
}

/** Each record's body size, measured by the first pass of encodeProduceRequest; grown as needed, never shrunk. */
let recordSizes = new Int32Array(1024);

/**
 * A record after its length: attributes, timestampDelta (0), offsetDelta, key, value, and an
 * empty header array, each length a zigzag varint.
 */
function recordBodyBytes(message: PreparedMessage, offsetDelta: number): number {
  const { key, value } = message;
  const keyBytes = key === null ? -1 : utf8Length(key);
  return (
    1 +
    1 +
    varintBytes(offsetDelta) +
    (keyBytes < 0 ? 1 : varintBytes(keyBytes) + keyBytes) +
    varintBytes(value.length) +
    value.length +
    1
  );
}

/** Writes one record whose body is `bodyBytes` long (recordBodyBytes); returns the position after it. */
function writeRecord(
  buf: Buffer,
  pos: number,
  message: PreparedMessage,
  offsetDelta: number,
  bodyBytes: number,
): number {
  const { key, value } = message;
  pos = writeVarint(buf, pos, bodyBytes);
  buf[pos++] = 0; // attributes
  buf[pos++] = 0; // timestampDelta
  pos = writeVarint(buf, pos, offsetDelta);
  if (key === null)
    buf[pos++] = 1; // -1: no key
  else {
    const keyBytes = utf8Length(key);
    pos = writeVarint(buf, pos, keyBytes);
    if (keyBytes === key.length) for (let i = 0; i < keyBytes; i++) buf[pos++] = key.charCodeAt(i);
    else pos += buf.write(key, pos, keyBytes, "utf8");
  }
  pos = writeVarint(buf, pos, value.length);
  buf.set(value, pos);
  pos += value.length;
  buf[pos++] = 0; // no headers
  return pos;
}

/** UTF-8 bytes of `text`: its length when ASCII (session ids always are), without a native call. */
function utf8Length(text: string): number {
  for (let i = 0; i < text.length; i++)
    if (text.charCodeAt(i) >= 0x80) return Buffer.byteLength(text, "utf8");
  return text.length;
}

/** Bytes of the zigzag varint of a non-negative `n` (below 2^30: lengths and offsets here). */
function varintBytes(n: number): number {
  let zigzag = n * 2;
  let bytes = 1;
  while (zigzag >= 0x80) {
    zigzag >>>= 7;
    bytes++;
  }
  return bytes;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  let zigzag = n * 2;
  while (zigzag >= 0x80) {
    buf[pos++] = (zigzag & 0x7f) | 0x80;
    zigzag >>>= 7;
  }
  buf[pos++] = zigzag;
  return pos;
}
