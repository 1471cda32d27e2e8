import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  chunkChecksums,
  chunkedSumsEngine,
  crc32c,
  verifyChunkChecksums,
} from "../../src/dataplane/storage/crc32c.js";
import { BlockStore } from "../../src/dataplane/storage/datanode/blockStore.js";
import { BlockManager } from "../../src/dataplane/storage/namenode/blockManager.js";
import { EditLog, type EditRecord, FencedException } from "../../src/dataplane/storage/namenode/editLog.js";
import { type EditOp, Namespace } from "../../src/dataplane/storage/namenode/namespace.js";
import { validatePath } from "../../src/dataplane/storage/path.js";
import { RemoteException } from "../../src/dataplane/storage/protocol.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-storage-unit-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Bit-at-a-time CRC32C: the definition the table-driven version must match. */
function crc32cBitwise(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

describe("crc32c", () => {
  it("matches the standard check value and a bitwise reference at every length and split", () => {
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283);
    const data = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff));
    for (let length = 0; length <= 64; length++)
      expect(crc32c(data.subarray(0, length))).toBe(crc32cBitwise(data.subarray(0, length)));
    expect(crc32c(data)).toBe(crc32cBitwise(data));
    for (const split of [1, 7, 8, 9, 200])
      expect(crc32c(data.subarray(split), crc32c(data.subarray(0, split)))).toBe(crc32c(data));
  });
});

describe("chunked CRC32C sums (one call per packet)", () => {
  const random = (length: number, seed: number) =>
    Buffer.from(Array.from({ length }, (_, i) => (Math.imul(i + seed, 2654435761) >>> 13) & 0xff));
  // One slice-by-8 call per chunk (checked against the bitwise definition above).
  const perChunk = (data: Buffer, bytesPerChecksum: number) => {
    const out = Buffer.alloc(Math.ceil(data.length / bytesPerChecksum) * 4);
    for (let c = 0; c * bytesPerChecksum < data.length; c++)
      out.writeUInt32BE(
        crc32cBitwise(data.subarray(c * bytesPerChecksum, (c + 1) * bytesPerChecksum)),
        c * 4,
      );
    return out;
  };

  for (const engine of ["wasm", "js"] as const) {
    it(`computes and verifies every chunk's sum with the ${engine} engine`, () => {
      const saved = process.env.TRIBUTARY_CRC32C;
      if (engine === "js") process.env.TRIBUTARY_CRC32C = "js";
      else delete process.env.TRIBUTARY_CRC32C;
      try {
        expect(chunkedSumsEngine()).toBe(engine);
        // Lengths around a chunk, around the kernel's 4-chunk groups and its 64 KiB stage.
        const lengths = [
          0,
          1,
          511,
          512,
          513,
          2047,
          2048,
          2049,
          65536 - 512,
          65536,
          65536 + 700,
          300 * 1024 + 5,
        ];
        for (const bytesPerChecksum of [512, 64, 1024, 520]) {
          for (const length of lengths) {
            const data = random(length, length + bytesPerChecksum);
            const expected = perChunk(data, bytesPerChecksum);
            expect(chunkChecksums(data, bytesPerChecksum), `${length}/${bytesPerChecksum}`).toEqual(expected);
            const into = Buffer.alloc(expected.length + 8, 0xaa);
            chunkChecksums(data, bytesPerChecksum, into, 8);
            expect(into.subarray(8)).toEqual(expected);
            expect(into.subarray(0, 8)).toEqual(Buffer.alloc(8, 0xaa));
            expect(verifyChunkChecksums(data, into, 8, bytesPerChecksum)).toBe(-1);
          }
        }
        const data = random(200 * 1024 + 77, 3);
        const sums = chunkChecksums(data);
        for (const at of [0, 511, 512, 64 * 1024 + 3, data.length - 1]) {
          const corrupt = Buffer.from(data);
          corrupt[at] = corrupt[at]! ^ 0x10;
          expect(verifyChunkChecksums(corrupt, sums), `byte ${at}`).toBe(Math.floor(at / 512));
        }
      } finally {
        if (saved === undefined) delete process.env.TRIBUTARY_CRC32C;
        else process.env.TRIBUTARY_CRC32C = saved;
      }
    });
  }
});

describe("BlockStore", () => {
  it("checksums a replica received in pieces of any size, and reads back what it wrote", async () => {
    const store = new BlockStore(dir);
    await store.open();
    const data = Buffer.from(Array.from({ length: 3 * 1024 * 1024 + 100 }, (_, i) => (i * 7919) & 0xff));
    const writer = await store.createRbw(9, 1002);
    let at = 0;
    for (let piece = 0; at < data.length; piece++) {
      const size = [1, 511, 513, 65536, 100_000, 7][piece % 6]!;
      // A fresh buffer per piece: the writer keeps it until it is in the file.
      await writer.write(Buffer.from(data.subarray(at, at + size)));
      at += size;
    }
    const finished = await writer.finish();
    expect(finished.numBytes).toBe(data.length);
    const meta = await readFile(join(dir, "current", "finalized", "blk_9_1002.meta"));
    expect(meta.subarray(7)).toEqual(chunkChecksums(data));
    expect(finished.checksum).toBe(crc32c(meta.subarray(7)));
    const parts: Buffer[] = [];
    for await (const part of store.read(9)) parts.push(part);
    expect(Buffer.concat(parts)).toEqual(data);
    const range: Buffer[] = [];
    for await (const part of store.read(9, 1_500_000, 1_000_000)) range.push(part);
    expect(Buffer.concat(range)).toEqual(data.subarray(1_500_000, 2_500_000));
  });

  it("finalizes a replica with per-chunk checksums and serves ranges", async () => {
    const store = new BlockStore(dir);
    await store.open();
    const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => i & 0xff));
    const writer = await store.createRbw(7, 1001);
    for (let at = 0; at < data.length; at += 333) await writer.write(data.subarray(at, at + 333));
    const finished = await writer.finish();
    expect(finished.numBytes).toBe(5000);
    const meta = await readFile(join(dir, "current", "finalized", "blk_7_1001.meta"));
    expect(meta.length).toBe(7 + 4 * Math.ceil(5000 / 512));
    expect(meta.readUInt32BE(7)).toBe(crc32c(data.subarray(0, 512)));
    const parts: Buffer[] = [];
    for await (const part of store.read(7, 1000, 2000)) parts.push(part);
    expect(Buffer.concat(parts)).toEqual(data.subarray(1000, 3000));
  });

  it("never shows a half-written replica as finalized, after abort or a crash", async () => {
    const store = new BlockStore(dir);
    await store.open();
    const aborted = await store.createRbw(8, 1001);
    await aborted.write(Buffer.alloc(1000, 1));
    await aborted.abort();
    const crashed = await store.createRbw(9, 1001);
    await crashed.write(Buffer.alloc(1000, 2));
    // No finish: as if the process died here. A restart discards rbw/.
    const reopened = new BlockStore(dir);
    await reopened.open();
    expect(reopened.list()).toEqual([]);
    expect(await readdir(join(dir, "current", "finalized"))).toEqual([]);
    expect(await readdir(join(dir, "current", "rbw"))).toEqual([]);
    await crashed.abort();
  });

  it("reports a flipped byte as ChecksumException", async () => {
    const store = new BlockStore(dir);
    await store.open();
    const writer = await store.createRbw(10, 1002);
    await writer.write(Buffer.alloc(2048, 3));
    await writer.finish();
    const file = join(dir, "current", "finalized", "blk_10");
    const bytes = await readFile(file);
    bytes[1500] = 4;
    await writeFile(file, bytes);
    const error = await store.verify(10).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RemoteException);
    expect((error as RemoteException).exception).toBe("ChecksumException");
    expect((error as RemoteException).message).toContain("at 1024");
  });
});

describe("EditLog", () => {
  const mkdir = (path: string, txid: number, epoch: number): EditRecord => ({
    op: "MKDIR",
    path,
    owner: "hdfs",
    group: "supergroup",
    permission: 0o755,
    mtime: 1,
    txid,
    epoch,
  });

  it("group-commits concurrent edits into fewer syncs and reads them back in order", async () => {
    const log = new EditLog(dir);
    const epoch = (await log.claimEpoch(0))!;
    await log.startWriting(epoch, 1);
    await Promise.all(Array.from({ length: 100 }, (_, i) => log.append(mkdir(`/d${i}`, i + 1, epoch))));
    expect(log.syncs).toBeLessThan(100);
    await log.close();
    const records = await new EditLog(dir).readAfter(0);
    expect(records.map((record) => record.txid)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect((await new EditLog(dir).readAfter(60)).length).toBe(40);
  });

  it("fences a deposed writer and cuts off what it wrote after the new epoch began", async () => {
    const old = new EditLog(dir);
    const first = (await old.claimEpoch(0))!;
    await old.startWriting(first, 1);
    await old.append(mkdir("/a", 1, first));
    // A second name node claims the next epoch and reads what is durable.
    const successor = new EditLog(dir);
    expect(await successor.claimEpoch(0)).toBeUndefined();
    const second = (await successor.claimEpoch(first))!;
    expect(second).toBe(2);
    const seen = await successor.readAfter(0);
    await successor.startWriting(second, seen.length + 1);
    // The old writer's next edit reaches its segment but is refused, never acknowledged...
    await expect(old.append(mkdir("/stale", 2, first))).rejects.toBeInstanceOf(FencedException);
    expect(old.isFenced).toBe(true);
    await successor.append(mkdir("/b", 2, second));
    // ...and every reader follows the new epoch's txid 2, not the stale one.
    const replay = await new EditLog(dir).readAfter(0);
    expect(replay.map((record) => (record as { path: string }).path)).toEqual(["/a", "/b"]);
    await old.close();
    await successor.close();
  });

  it("ignores a torn record at the tail of a segment", async () => {
    const log = new EditLog(dir);
    await log.startWriting((await log.claimEpoch(0))!, 1);
    await log.append(mkdir("/whole", 1, 1));
    await log.close();
    const [segment] = await readdir(dir).then((names) => names.filter((name) => name.startsWith("edits_")));
    const path = join(dir, segment!);
    await writeFile(path, Buffer.concat([await readFile(path), Buffer.from([0, 0, 0, 50, 1, 2, 3])]));
    expect((await new EditLog(dir).readAfter(0)).length).toBe(1);
  });

  it("preallocates segments with zeros and stops replay at them, and at a hole a crash left between batches", async () => {
    const log = new EditLog(dir);
    const epoch = (await log.claimEpoch(0))!;
    await log.startWriting(epoch, 1);
    for (let i = 1; i <= 3; i++) await log.append(mkdir(`/d${i}`, i, epoch));
    await log.close();
    const [segment] = (await readdir(dir)).filter((name) => name.startsWith("edits_"));
    const path = join(dir, segment!);
    const bytes = await readFile(path);
    expect(bytes.length).toBe(1024 * 1024);
    expect((await new EditLog(dir).readAfter(0)).map((record) => record.txid)).toEqual([1, 2, 3]);
    // Batches are written at their own offsets, several at once: a crash may leave the second
    // unwritten (still zeros) while the third reached the disk. Neither was acknowledged.
    const second = 8 + bytes.readUInt32BE(0);
    const third = second + 8 + bytes.readUInt32BE(second);
    bytes.fill(0, second, third);
    await writeFile(path, bytes);
    expect((await new EditLog(dir).readAfter(0)).map((record) => record.txid)).toEqual([1]);
  });

  it("answers concurrent batches only in the order they were written", async () => {
    const log = new EditLog(dir);
    const epoch = (await log.claimEpoch(0))!;
    await log.startWriting(epoch, 1);
    const answered: number[] = [];
    const appends: Promise<void>[] = [];
    for (let i = 1; i <= 300; i++) {
      appends.push(log.append(mkdir(`/d${i}`, i, epoch)).then(() => void answered.push(i)));
      // Spread the edits over turns of the event loop, so they go out in many batches.
      if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(appends);
    expect(answered).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    await log.close();
    expect((await new EditLog(dir).readAfter(0)).map((record) => record.txid)).toEqual(
      Array.from({ length: 300 }, (_, i) => i + 1),
    );
  });

  it("replays a checkpoint plus later edits to the same namespace", async () => {
    const ns = new Namespace();
    const ops: EditOp[] = [
      { op: "MKDIR", path: "/data", owner: "alice", group: "supergroup", permission: 0o750, mtime: 5 },
      {
        op: "ADD",
        path: "/data/f",
        owner: "alice",
        group: "supergroup",
        permission: 0o644,
        mtime: 6,
        replication: 3,
        blockSize: 1048576,
        clientName: "c1",
      },
      { op: "ADD_BLOCK", path: "/data/f", blockId: 1073741825, generationStamp: 1001 },
      {
        op: "ADD_BLOCK",
        path: "/data/f",
        blockId: 1073741826,
        generationStamp: 1002,
        previous: { blockId: 1073741825, numBytes: 1048576 },
      },
      { op: "CLOSE", path: "/data/f", mtime: 7, last: { blockId: 1073741826, numBytes: 10 } },
      { op: "SET_QUOTA", path: "/data", nsQuota: 10, dsQuota: 1 << 30 },
      { op: "RENAME", src: "/data/f", dst: "/data/g", mtime: 8 },
    ];
    const log = new EditLog(dir);
    await log.startWriting((await log.claimEpoch(0))!, 1);
    for (const [i, op] of ops.entries()) {
      ns.apply(op);
      await log.append({ ...op, txid: i + 1, epoch: 1 });
      if (i === 3) await log.checkpoint(4, ns.beginImage());
    }
    await log.close();
    const reader = new EditLog(dir);
    const latest = (await reader.latestImage())!;
    expect(latest.txid).toBe(4);
    const replayed = Namespace.fromImage(latest.image);
    for (const record of await reader.readAfter(latest.txid)) replayed.apply(record);
    expect(replayed.toImage()).toEqual(ns.toImage());
    const file = replayed.getFile("/data/g");
    expect(replayed.visibleLength(file)).toBe(1048586);
    expect(file.clientName).toBeUndefined();

    // A second checkpoint: the segment older than both images is removed, replay is unchanged.
    const writer = new EditLog(dir);
    await writer.startWriting((await writer.claimEpoch(1))!, 8);
    await writer.append({
      op: "MKDIR",
      path: "/later",
      owner: "a",
      group: "g",
      permission: 0o755,
      mtime: 9,
      txid: 8,
      epoch: 2,
    });
    ns.apply({ op: "MKDIR", path: "/later", owner: "a", group: "g", permission: 0o755, mtime: 9 });
    await writer.checkpoint(8, ns.beginImage());
    await writer.close();
    const segments = (await readdir(dir)).filter((name) => name.startsWith("edits_"));
    expect(segments.some((name) => name.endsWith("_0000000000000000001"))).toBe(false);
    const again = new EditLog(dir);
    const newest = (await again.latestImage())!;
    expect(newest.txid).toBe(8);
    expect(Namespace.fromImage(newest.image).toImage()).toEqual(ns.toImage());
    expect(await again.readAfter(4)).toHaveLength(4);
  });
});

describe("Namespace quotas and paths", () => {
  it("charges an open block at its full size against the space quota", () => {
    const ns = new Namespace();
    ns.apply({ op: "MKDIR", path: "/q", owner: "a", group: "g", permission: 0o755, mtime: 1 });
    ns.apply({ op: "SET_QUOTA", path: "/q", nsQuota: -1, dsQuota: 3 * 1048576 });
    ns.apply({
      op: "ADD",
      path: "/q/f",
      owner: "a",
      group: "g",
      permission: 0o644,
      mtime: 1,
      replication: 3,
      blockSize: 1048576,
      clientName: "c",
    });
    ns.checkQuota(ns.directory("/q"), 0, 3 * 1048576);
    ns.apply({ op: "ADD_BLOCK", path: "/q/f", blockId: 1, generationStamp: 1 });
    expect(() => ns.checkQuota(ns.directory("/q"), 0, 3)).toThrow(/DiskSpace quota of \/q is exceeded/);
  });

  it("refuses relative paths, '.' and '..' components", () => {
    expect(validatePath("/a/b/")).toBe("/a/b");
    for (const bad of ["a/b", "/a/../b", "/a/./b", "/..", "/a//b", "/a:b"])
      expect(() => validatePath(bad)).toThrow(/Invalid path name/);
  });
});

describe("BlockManager placement", () => {
  it("puts the first replica on the writer, the second off its rack, the third beside the second", () => {
    const manager = new BlockManager(new Namespace(), {
      heartbeatExpiryMs: 60_000,
      pendingReplicationTimeoutMs: 60_000,
    });
    const racks = ["/r1", "/r1", "/r1", "/r2", "/r2", "/r2"];
    for (const [i, rack] of racks.entries()) {
      manager.heartbeat(
        {
          datanode: { datanodeUuid: `dn${i}`, hostName: "127.0.0.1", xferPort: 1000 + i, infoPort: 2000 + i },
          networkLocation: rack,
          capacity: 1,
          dfsUsed: 0,
          remaining: 1,
          numBlocks: 0,
        },
        true,
      );
    }
    for (let trial = 0; trial < 50; trial++) {
      const writer = `dn${trial % 6}`;
      const [first, second, third] = manager.chooseTargets(3, writer, []);
      expect(first!.datanodeUuid).toBe(writer);
      expect(second!.networkLocation).not.toBe(first!.networkLocation);
      expect(third!.networkLocation).toBe(second!.networkLocation);
      expect(third!.datanodeUuid).not.toBe(second!.datanodeUuid);
    }
  });
});

describe("BlockManager around silent data nodes", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const node = (i: number) => ({
    datanodeUuid: `dn${i}`,
    hostName: "127.0.0.1",
    xferPort: 1000 + i,
    infoPort: 2000 + i,
  });
  const heartbeat = (manager: BlockManager, ...indices: number[]) => {
    for (const i of indices)
      manager.heartbeat(
        { datanode: node(i), networkLocation: "/r1", capacity: 1, dfsUsed: 0, remaining: 1, numBlocks: 0 },
        true,
      );
  };
  const uuids = (nodes: { datanodeUuid: string }[]) => nodes.map((info) => info.datanodeUuid);

  it("offers a stale holder last, a dead one never, and places new blocks on fresh nodes", () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(1_000_000);
    const manager = new BlockManager(new Namespace(), {
      heartbeatExpiryMs: 30_000,
      staleIntervalMs: 10_000,
      pendingReplicationTimeoutMs: 60_000,
    });
    heartbeat(manager, 0, 1, 2, 3);
    manager.pipelineAcknowledged(7, ["dn0", "dn1", "dn2"]);
    expect(uuids(manager.readCandidates(7)).sort()).toEqual(["dn0", "dn1", "dn2"]);

    // dn0 is killed: silent past the stale interval, not yet past the expiry.
    vi.setSystemTime(1_012_000);
    heartbeat(manager, 1, 2, 3);
    expect(uuids(manager.goodReplicas(7))).toEqual(["dn1", "dn2", "dn0"]);
    expect(uuids(manager.readCandidates(7)).sort()).toEqual(["dn1", "dn2"]);
    expect(uuids(manager.writeCandidates()).sort()).toEqual(["dn1", "dn2", "dn3"]);
    for (let trial = 0; trial < 20; trial++)
      expect(uuids(manager.chooseTargets(3, undefined, []))).not.toContain("dn0");
    expect(manager.report().find((info) => info.datanodeUuid === "dn0")).toMatchObject({
      adminState: "NORMAL",
      stale: true,
    });

    // Past the expiry it is dead: its replica is not offered at all.
    vi.setSystemTime(1_031_000);
    heartbeat(manager, 1, 2, 3);
    expect(uuids(manager.goodReplicas(7))).toEqual(["dn1", "dn2"]);
    expect(manager.report().find((info) => info.datanodeUuid === "dn0")).toMatchObject({
      adminState: "DEAD",
      stale: false,
    });
  });

  it("sends a read to the holder heard from last when every holder is stale", () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(1_000_000);
    const manager = new BlockManager(new Namespace(), {
      heartbeatExpiryMs: 30_000,
      staleIntervalMs: 10_000,
      pendingReplicationTimeoutMs: 60_000,
    });
    heartbeat(manager, 0);
    vi.setSystemTime(1_001_000);
    heartbeat(manager, 1);
    vi.setSystemTime(1_002_000);
    heartbeat(manager, 2);
    manager.pipelineAcknowledged(7, ["dn0", "dn1", "dn2"]);
    vi.setSystemTime(1_015_000);
    expect(uuids(manager.goodReplicas(7))).toEqual(["dn2", "dn1", "dn0"]);
    expect(uuids(manager.readCandidates(7))).toEqual(["dn2"]);
  });
});
