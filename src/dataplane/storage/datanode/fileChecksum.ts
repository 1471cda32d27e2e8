/**
 * HDFS's file checksum (`FileSystem.getFileChecksum`, WebHDFS's GETFILECHECKSUM, what
 * `hadoop fs -checksum` prints and DistCp compares): MD5-of-MD5-of-CRC32C.
 *
 * A block's checksum is the MD5 of its replica's chunk CRCs, read from the meta file without
 * touching the data (HDFS's OP_BLOCK_CHECKSUM); the file's is the MD5 of the blocks' MD5s. The
 * answer is laid out like MD5MD5CRC32FileChecksum's Writable form (bytes per CRC, CRCs per
 * block, the MD5) so the Java client can decode it and compare it with a real HDFS's.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  type DatanodeID,
  type LocatedBlock,
  type LocatedBlocks,
  parseRemoteException,
  RemoteException,
  xferAddress,
} from "../protocol.js";
import type { BlockStore } from "./blockStore.js";

/** The meta file's header: version (2 bytes), checksum type (1), bytes per checksum (4). */
const META_HEADER_BYTES = 7;
const CRC_BYTES = 4;
const MD5_BYTES = 16;

export interface BlockChecksum {
  bytesPerCrc: number;
  crcPerBlock: number;
  /** Hex MD5 of the replica's chunk CRCs. */
  md5: string;
}

/** WebHDFS's FileChecksum JSON object. */
export interface FileChecksumJson {
  algorithm: string;
  /** Hex of the Writable form: int bytesPerCRC, long crcPerBlock, 16-byte MD5. */
  bytes: string;
  length: number;
}

export async function blockChecksum(
  store: BlockStore,
  blockId: number,
  generationStamp: number,
): Promise<BlockChecksum> {
  const replica = store.get(blockId);
  if (!replica || (generationStamp && replica.generationStamp !== generationStamp)) {
    throw new RemoteException(
      "ReplicaNotFoundException",
      `Replica not found for blk_${blockId}_${generationStamp} while computing its checksum`,
    );
  }
  const meta = await readFile(store.metaPath(blockId, replica.generationStamp));
  const sums = meta.subarray(META_HEADER_BYTES);
  return {
    bytesPerCrc: meta.readUInt32BE(3),
    crcPerBlock: sums.length / CRC_BYTES,
    md5: createHash("md5").update(sums).digest("hex"),
  };
}

/**
 * The file's checksum from its located blocks: each block's MD5 from this node's replica when it
 * has one, otherwise from the first holder that answers.
 */
export async function fileChecksum(
  path: string,
  located: LocatedBlocks,
  self: DatanodeID,
  store: BlockStore,
): Promise<FileChecksumJson> {
  if (located.blocks.some((block) => block.ecPolicy)) {
    throw new RemoteException(
      "UnsupportedOperationException",
      `GETFILECHECKSUM of an erasure-coded file is not supported: ${path}`,
    );
  }
  if (located.blocks.length === 0) {
    // HDFS's fixed answer for an empty file: the MD5 of 32 zero bytes, as CRC32 with no chunks.
    return encode(0, 0, "CRC32", createHash("md5").update(Buffer.alloc(32)).digest());
  }
  const md5s: Buffer[] = [];
  let bytesPerCrc = 0;
  let crcPerBlock = 0;
  for (const [index, block] of located.blocks.entries()) {
    const sum = await checksumFromAnyReplica(block, self, store);
    if (index === 0) {
      bytesPerCrc = sum.bytesPerCrc;
      // Like DFSClient, CRCs per block is the first block's, and only said for a multi-block file.
      if (located.blocks.length > 1) crcPerBlock = sum.crcPerBlock;
    } else if (sum.bytesPerCrc !== bytesPerCrc) {
      throw new RemoteException(
        "IOException",
        `Byte-per-checksum not matched: bpc=${sum.bytesPerCrc} but bytesPerCRC=${bytesPerCrc} (blk_${block.block.blockId} of ${path})`,
      );
    }
    md5s.push(Buffer.from(sum.md5, "hex"));
  }
  // DFSClient digests the whole backing array of the DataOutputBuffer it collected the block MD5s
  // in: 32 bytes, doubled as it fills, the unused tail zero. Matching that keeps the result equal
  // to what a real HDFS reports for the same bytes and block size.
  let capacity = 32;
  while (capacity < md5s.length * MD5_BYTES) capacity *= 2;
  const collected = Buffer.alloc(capacity);
  Buffer.concat(md5s).copy(collected);
  return encode(bytesPerCrc, crcPerBlock, "CRC32C", createHash("md5").update(collected).digest());
}

async function checksumFromAnyReplica(
  block: LocatedBlock,
  self: DatanodeID,
  store: BlockStore,
): Promise<BlockChecksum> {
  const { blockId, generationStamp } = block.block;
  const errors: string[] = [];
  for (const node of block.locations) {
    try {
      if (node.datanodeUuid === self.datanodeUuid)
        return await blockChecksum(store, blockId, generationStamp);
      const response = await fetch(
        `http://${xferAddress(node)}/blocks/${blockId}/checksum?generationStamp=${generationStamp}`,
        { signal: AbortSignal.timeout(30_000) },
      );
      const body = Buffer.from(await response.arrayBuffer());
      if (!response.ok) throw parseRemoteException(response.status, body);
      return JSON.parse(body.toString("utf8")) as BlockChecksum;
    } catch (error) {
      errors.push(`${xferAddress(node)}: ${(error as Error).message}`);
    }
  }
  throw new RemoteException(
    "IOException",
    `Fail to get block MD5 for blk_${blockId}_${generationStamp} from any of ${block.locations.length} replicas${errors.length ? ` (${errors.join("; ")})` : ""}`,
  );
}

function encode(bytesPerCrc: number, crcPerBlock: number, crcType: string, md5: Buffer): FileChecksumJson {
  const bytes = Buffer.alloc(4 + 8 + MD5_BYTES);
  bytes.writeInt32BE(bytesPerCrc, 0);
  bytes.writeBigInt64BE(BigInt(crcPerBlock), 4);
  md5.copy(bytes, 12);
  return {
    algorithm: `MD5-of-${crcPerBlock}MD5-of-${bytesPerCrc}${crcType}`,
    bytes: bytes.toString("hex"),
    length: bytes.length,
  };
}
