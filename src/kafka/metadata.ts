/**
 * Kafka's Metadata v12 request and response, encoded by hand: the one place the operator speaks
 * the wire protocol itself, to read topic ids (see `fetchTopicMetadataV12` for why).
 */
import net from "node:net";
import tls from "node:tls";
import type { KafkaConnection } from "./admins.js";

/** A topic's id, partitions and replication factor, as a Metadata response gives them. */
export interface TopicShape {
  /** Kafka's topic id (base64url, as `kafka-topics.sh` prints it); undefined when unavailable. */
  topicId?: string;
  partitions: number;
  replicationFactor: number;
}

/**
 * Topics as a Metadata v12 request describes them, by name (absent topics are left out).
 * kafkajs speaks Metadata up to v6, before topic ids existed (v10), so this sends the request
 * itself over a plain or TLS socket. With SASL it would have to authenticate first, which is
 * left out: it answers undefined, and the caller falls back to kafkajs (without the id). An old
 * broker or a failing socket on every bootstrap broker answers undefined too.
 */
export async function fetchTopicMetadataV12(
  connection: KafkaConnection,
  names: string[],
  timeoutMs = 5_000,
): Promise<Map<string, TopicShape> | undefined> {
  if (connection.sasl) return undefined;
  for (const broker of connection.brokers) {
    try {
      const response = await exchange(broker, connection.ssl, metadataRequest(names), timeoutMs);
      return parseMetadataResponse(response);
    } catch {
      // try the next bootstrap broker
    }
  }
  return undefined;
}

const METADATA_API_KEY = 3;
const METADATA_VERSION = 12;
const CORRELATION_ID = 1;

function uvarint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** A Metadata v12 request (request header v2: its client id is a classic int16 string). */
export function metadataRequest(names: string[]): Buffer {
  const clientId = Buffer.from("tributary-operator");
  const header = Buffer.alloc(10);
  header.writeInt16BE(METADATA_API_KEY, 0);
  header.writeInt16BE(METADATA_VERSION, 2);
  header.writeInt32BE(CORRELATION_ID, 4);
  header.writeInt16BE(clientId.length, 8);
  const parts: Buffer[] = [header, clientId, uvarint(0), uvarint(names.length + 1)];
  for (const name of names) {
    const encoded = Buffer.from(name);
    // topic_id (zero: look up by name), name as a compact string, no tagged fields
    parts.push(Buffer.alloc(16), uvarint(encoded.length + 1), encoded, uvarint(0));
  }
  // allow_auto_topic_creation=false, include_topic_authorized_operations=false, no tagged fields
  parts.push(Buffer.from([0, 0]), uvarint(0));
  const body = Buffer.concat(parts);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length, 0);
  return Buffer.concat([size, body]);
}

class Reader {
  offset = 0;
  constructor(private readonly buffer: Buffer) {}
  int8() {
    return this.buffer.readInt8(this.advance(1));
  }
  int16() {
    return this.buffer.readInt16BE(this.advance(2));
  }
  int32() {
    return this.buffer.readInt32BE(this.advance(4));
  }
  uvarint(): number {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = this.buffer.readUInt8(this.advance(1));
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
      shift += 7;
    }
  }
  bytes(length: number): Buffer {
    const start = this.advance(length);
    return this.buffer.subarray(start, start + length);
  }
  compactString(): string | null {
    const length = this.uvarint();
    return length === 0 ? null : this.bytes(length - 1).toString("utf8");
  }
  compactArray<T>(item: () => T): T[] {
    const length = this.uvarint();
    return Array.from({ length: Math.max(0, length - 1) }, item);
  }
  taggedFields(): void {
    const count = this.uvarint();
    for (let index = 0; index < count; index++) {
      this.uvarint();
      this.bytes(this.uvarint());
    }
  }
  private advance(length: number): number {
    const start = this.offset;
    if (start + length > this.buffer.length) throw new RangeError("truncated Metadata response");
    this.offset += length;
    return start;
  }
}

/** The topics of a Metadata v12 response (after its size prefix), by name; erroneous ones left out. */
export function parseMetadataResponse(response: Buffer): Map<string, TopicShape> {
  const reader = new Reader(response);
  if (reader.int32() !== CORRELATION_ID) throw new Error("Metadata response for another request");
  reader.taggedFields();
  reader.int32(); // throttle_time_ms
  reader.compactArray(() => {
    reader.int32();
    reader.compactString();
    reader.int32();
    reader.compactString();
    reader.taggedFields();
  });
  reader.compactString(); // cluster_id
  reader.int32(); // controller_id
  const topics = new Map<string, TopicShape>();
  reader.compactArray(() => {
    const errorCode = reader.int16();
    const name = reader.compactString();
    const id = Buffer.from(reader.bytes(16));
    reader.int8(); // is_internal
    const replicaCounts = reader.compactArray(() => {
      reader.int16(); // error_code
      reader.int32(); // partition_index
      reader.int32(); // leader_id
      reader.int32(); // leader_epoch
      const replicas = reader.compactArray(() => reader.int32()).length;
      reader.compactArray(() => reader.int32()); // isr_nodes
      reader.compactArray(() => reader.int32()); // offline_replicas
      reader.taggedFields();
      return replicas;
    });
    reader.int32(); // topic_authorized_operations
    reader.taggedFields();
    if (errorCode !== 0 || !name) return;
    topics.set(name, {
      // Kafka prints a Uuid as unpadded base64url; the all-zero id means "none".
      topicId: id.some((byte) => byte !== 0) ? id.toString("base64url") : undefined,
      partitions: replicaCounts.length,
      replicationFactor: Math.max(0, ...replicaCounts),
    });
  });
  return topics;
}

function exchange(
  broker: string,
  ssl: tls.ConnectionOptions | undefined,
  request: Buffer,
  timeoutMs: number,
): Promise<Buffer> {
  const separator = broker.lastIndexOf(":");
  const host = broker.slice(0, separator);
  const port = Number(broker.slice(separator + 1));
  return new Promise((resolve, reject) => {
    const socket = ssl
      ? tls.connect({ ...ssl, host, port, servername: net.isIP(host) ? undefined : host })
      : net.connect({ host, port });
    const chunks: Buffer[] = [];
    let received = 0;
    const timer = setTimeout(() => socket.destroy(new Error(`no Metadata answer from ${broker}`)), timeoutMs);
    const finish = (error: Error | undefined, value?: Buffer) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value!);
    };
    socket.once(ssl ? "secureConnect" : "connect", () => socket.write(request));
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < 4) return;
      const all = Buffer.concat(chunks);
      const size = all.readInt32BE(0);
      if (all.length >= size + 4) finish(undefined, all.subarray(4, 4 + size));
    });
    socket.on("error", (error) => finish(error));
    socket.on("close", () => finish(new Error(`${broker} closed the connection`)));
  });
}
