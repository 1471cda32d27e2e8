/**
 * Erasure coding per directory with real processes: one name node and nine data nodes (RS-6-3
 * needs nine distinct nodes for a block group). 1 MiB cells and 2 MiB blocks, so a block group
 * holds two stripes (12 MiB of data) and a 13 MiB file spans two groups.
 */
import { createHash, randomBytes } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { StorageCluster } from "./storage-cluster.js";

const MiB = 1024 * 1024;
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("BlockPool storage: RS-6-3 erasure coding", () => {
  let cluster: StorageCluster;
  let client: WebHdfsClient;

  beforeAll(async () => {
    cluster = await StorageCluster.start({
      dataNodes: 9,
      racks: ["/rack-a", "/rack-b", "/rack-c"],
      // What the BlockPool controller passes from spec.erasureCoding and spec.quotas.
      nameNodeArgs: [
        "--erasure-coding",
        JSON.stringify([{ path: "/archive", policy: "XOR-2-1", cellSize: "1Mi" }]),
        "--quotas",
        JSON.stringify([{ path: "/limited", bytes: "64Mi", files: 5 }]),
      ],
    });
    client = cluster.client();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it("stripes files over 9 nodes, reads with 3 fragments gone, and rebuilds them", async () => {
    const base = `http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}/webhdfs/v1`;
    await client.mkdirs("/ec");
    const set = await fetch(`${base}/ec?op=SETECPOLICY&ecpolicy=RS-6-3-1024k&user.name=tester`, {
      method: "PUT",
    });
    expect(set.status).toBe(200);
    expect(await (await fetch(`${base}/ec?op=GETECPOLICY`)).json()).toMatchObject({
      name: "RS-6-3-1024k",
      numDataUnits: 6,
      numParityUnits: 3,
    });

    const files = new Map<string, Buffer>();
    for (const [name, size] of [
      ["small", 1000],
      ["two-groups", 13 * MiB + 4321],
    ] as const) {
      const data = randomBytes(size);
      await client.create(`/ec/${name}`, data, { blockSize: 2 * MiB });
      files.set(`/ec/${name}`, data);
      expect(sha(await client.open(`/ec/${name}`))).toBe(sha(data));
    }
    // Ranges that start and end inside cells, cross cells, a stripe (6 MiB) and a group (12 MiB).
    const ranges = [
      { offset: 12_345, length: 3 * MiB },
      { offset: 6 * MiB - 100, length: 200 },
      { offset: 11 * MiB + 77, length: 2 * MiB },
      { offset: 13 * MiB, length: 10 * MiB },
    ];
    const twoGroups = files.get("/ec/two-groups")!;
    const readRanges = async () => {
      for (const range of ranges) {
        const expected = twoGroups.subarray(range.offset, range.offset + range.length);
        expect(sha(await client.open("/ec/two-groups", range)), JSON.stringify(range)).toBe(sha(expected));
      }
    };
    await readRanges();
    const summary = await client.contentSummary("/ec");
    // Data plus parity, (6 + 3) / 6 of the data, not three copies.
    expect(summary.spaceConsumed).toBeLessThan(summary.length * 1.6);

    const located = await cluster.blockLocations("/ec/two-groups");
    expect(located.blocks).toHaveLength(2);
    const group = located.blocks[0]! as unknown as {
      block: { blockId: number };
      internal: { datanodeUuid: string }[];
    };
    expect(new Set(group.internal.map((node) => node.datanodeUuid)).size).toBe(9);

    // Remove 3 of the 9 fragments of the first group from disk: two data blocks and one parity.
    const removed = [0, 4, 7];
    for (const index of removed) {
      const holder = cluster.dataNodes.find((dn) => dn.datanodeUuid === group.internal[index]!.datanodeUuid)!;
      const id = group.block.blockId + index;
      const finalized = join(holder.dir, "current", "finalized");
      await rm(join(finalized, `blk_${id}`));
    }
    // Reads reconstruct the missing data cells on the fly.
    for (const [path, data] of files) expect(sha(await client.open(path)), path).toBe(sha(data));
    await readRanges();

    // The data nodes that found their fragments gone reported them; the name node has them rebuilt
    // from six survivors onto nodes holding no other fragment of the group (here, the same three).
    await cluster.waitFor(
      async () => {
        const now = (await cluster.blockLocations("/ec/two-groups")).blocks[0] as unknown as {
          internal: ({ datanodeUuid: string } | null)[];
        };
        if (!now.internal.every((node) => node !== null)) return false;
        for (const index of removed) {
          const holder = cluster.dataNodes.find(
            (dn) => dn.datanodeUuid === now.internal[index]!.datanodeUuid,
          )!;
          const files = await readdir(join(holder.dir, "current", "finalized"));
          if (!files.includes(`blk_${group.block.blockId + index}`)) return false;
        }
        return (await cluster.status()).underReplicatedBlocks === 0;
      },
      "the lost fragments rebuilt on other nodes",
      90_000,
    );
    for (const [path, data] of files) expect(sha(await client.open(path)), path).toBe(sha(data));

    // The rebuilt fragments are right: lose three other data blocks, so reads must decode from
    // the rebuilt ones (0, 4 and parity 7) and the untouched survivors.
    for (const index of [1, 2, 3]) {
      const holder = cluster.dataNodes.find((dn) => dn.datanodeUuid === group.internal[index]!.datanodeUuid)!;
      await rm(join(holder.dir, "current", "finalized", `blk_${group.block.blockId + index}`));
    }
    for (const [path, data] of files) expect(sha(await client.open(path)), path).toBe(sha(data));
  });

  it("applies the pool spec's directory policies and quotas when it becomes active", async () => {
    const base = `http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}/webhdfs/v1`;
    expect(await (await fetch(`${base}/archive?op=GETECPOLICY`)).json()).toMatchObject({
      name: "XOR-2-1-1024k",
      numDataUnits: 2,
      numParityUnits: 1,
    });
    const data = randomBytes(3 * MiB + 1);
    await client.create("/archive/segment", data, { blockSize: MiB });
    expect(sha(await client.open("/archive/segment"))).toBe(sha(data));
    expect(await client.contentSummary("/limited")).toMatchObject({ quota: 5, spaceQuota: 64 * MiB });
    const status = (await (
      await fetch(`http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}/status`)
    ).json()) as { erasureCodingPolicies: unknown };
    expect(status.erasureCodingPolicies).toEqual([
      { path: "/archive", policy: "XOR-2-1-1024k" },
      { path: "/ec", policy: "RS-6-3-1024k" },
    ]);
  });
});
