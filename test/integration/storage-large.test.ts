/**
 * A 1 GiB file through a BlockPool with the default 128 MiB blocks and three replicas on three
 * data nodes (real processes on loopback): written through the typed WebHDFS client from a
 * generated stream, read back as a stream through WebHDFS and compared by sha256, plus a ranged
 * read across a block boundary. Nothing holds the file in memory: each MiB is a fixed random
 * MiB with its index written into its first 8 bytes, so any range can be recomputed and no two
 * blocks are alike. It writes 3 GiB to disk: minutes, not seconds, on a small shared machine.
 */
import { createCipheriv, createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { StorageCluster } from "./storage-cluster.js";

const MiB = 1024 * 1024;
const FILE_MIB = 1024;
const BLOCK = 128 * MiB;

/** A deterministic random MiB: the AES-128-CTR keystream of a fixed key. */
const base = createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16)).update(Buffer.alloc(MiB));

/** MiB number `index` of the file. */
function mebibyte(index: number): Buffer {
  const bytes = Buffer.from(base);
  bytes.writeBigUInt64BE(BigInt(index), 0);
  return bytes;
}

/** Bytes `[offset, offset + length)` of the file, recomputed. */
function range(offset: number, length: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = offset; at < offset + length; ) {
    const index = Math.floor(at / MiB);
    const within = at - index * MiB;
    const take = Math.min(MiB - within, offset + length - at);
    parts.push(mebibyte(index).subarray(within, within + take));
    at += take;
  }
  return Buffer.concat(parts);
}

describe("BlockPool storage: a 1 GiB file", () => {
  let cluster: StorageCluster;
  let client: WebHdfsClient;

  beforeAll(async () => {
    cluster = await StorageCluster.start({ dataNodes: 3 });
    client = cluster.client();
  });

  afterAll(async () => {
    // Removes the cluster's directories, and so the file's 3 GiB of replicas.
    await cluster?.stop();
  });

  it("writes and reads back 1 GiB in 128 MiB blocks, checksummed, and a range across a block boundary", async () => {
    const path = "/large/one-gibibyte";
    const written = createHash("sha256");
    await client.create(
      path,
      (async function* () {
        for (let index = 0; index < FILE_MIB; index++) {
          const bytes = mebibyte(index);
          written.update(bytes);
          yield bytes;
        }
      })(),
    );
    const expected = written.digest("hex");

    const status = await client.status(path);
    expect(status).toMatchObject({ length: FILE_MIB * MiB, blockSize: BLOCK, replication: 3 });
    const located = await cluster.blockLocations(path);
    expect(located.underConstruction).toBe(false);
    expect(located.blocks).toHaveLength((FILE_MIB * MiB) / BLOCK);
    for (const block of located.blocks) {
      expect(block.block.numBytes).toBe(BLOCK);
      expect(block.locations).toHaveLength(3);
    }

    // Streamed: WebHDFS OPEN, redirected to a data node, hashed as it arrives.
    const response = await fetch(
      `http://${cluster.webhdfsAddresses()[0]}/webhdfs/v1${path}?op=OPEN&user.name=tester`,
    );
    expect(response.status).toBe(200);
    const read = createHash("sha256");
    let length = 0;
    for await (const chunk of response.body!) {
      read.update(chunk);
      length += chunk.length;
    }
    expect(length).toBe(FILE_MIB * MiB);
    expect(read.digest("hex")).toBe(expected);

    // 1 MiB + 3 bytes around the end of the first block: the read crosses into the second.
    const offset = BLOCK - MiB / 2 - 1;
    const across = await client.open(path, { offset, length: MiB + 3 });
    expect(across.equals(range(offset, MiB + 3))).toBe(true);
  }, 1_200_000);
});
