/**
 * The shipped map-and-combine job over Parquet files in a BlockPool (real name node and data
 * nodes on loopback): the master lists the directory and each file's block hosts over WebHDFS
 * (GETFILEBLOCKLOCATIONS), its map tasks read the files through WebHDFS, and the combined answer,
 * written back into the pool, equals the one computed directly over the same files.
 */
import { parquetReadObjects } from "hyparquet";
import { parquetWriteBuffer } from "hyparquet-writer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { StorageCluster } from "./storage-cluster.js";
import { YarnCluster } from "./yarn-harness.js";

let pool: StorageCluster;
let hdfs: WebHdfsClient;
const yarn = new YarnCluster({
  queues: [
    { path: "root", capacity: 100 },
    { path: "root.default", capacity: 100, userLimitFactor: 10 },
  ],
  nodeManagers: 2,
});

beforeAll(async () => {
  pool = await StorageCluster.start({ dataNodes: 3, clusterSecret: false });
  hdfs = pool.client("etl");
  await yarn.start();
}, 240_000);

afterAll(async () => {
  await yarn.stop();
  await pool?.stop();
}, 60_000);

describe("map-and-combine over a BlockPool", () => {
  it("reads Parquet files from the pool and writes the same answer as a direct computation back into it", async () => {
    const pages = ["/home", "/cart", "/search", "/checkout"];
    const files: Buffer[] = [];
    for (let f = 0; f < 3; f++) {
      const n = 800 + f * 101;
      const page = Array.from({ length: n }, (_, i) => pages[(i * 3 + f) % pages.length]!);
      const latency = Array.from({ length: n }, (_, i) => (i * 17 + f) % 500);
      const bytes = Buffer.from(
        parquetWriteBuffer({
          columnData: [
            { name: "page", data: page, type: "STRING" },
            { name: "latency_ms", data: latency, type: "INT32" },
          ],
        }),
      );
      files.push(bytes);
      await hdfs.create(`/topics/clicks/dt=2026-12-06/part-${f}.parquet`, bytes);
    }
    const webhdfs = `webhdfs://${pool.webhdfsAddresses()[0]}`;
    const id = await yarn.client.submit({
      job: {
        type: "mapcombine",
        input: `${webhdfs}/topics/clicks`,
        groupBy: "page",
        sum: "latency_ms",
        output: `${webhdfs}/out/by-page.json`,
        containerMemory: 512,
        user: "etl",
      },
      amMemory: 512,
    });
    const app = await yarn.client.waitForFinal(id);
    expect(app.finalStatus, app.diagnostics).toBe("SUCCEEDED");
    const written = await fetch(
      `http://${pool.webhdfsAddresses()[0]}/webhdfs/v1/out/by-page.json?op=OPEN&user.name=etl`,
    );
    expect(written.status).toBe(200);
    const answer = (await written.json()) as {
      files: number;
      groups: Array<{ key: string; count: number; sum: number }>;
    };
    const direct = new Map<string, { count: number; sum: number }>();
    for (const bytes of files) {
      const rows = (await parquetReadObjects({
        file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer,
      })) as Array<{ page: string; latency_ms: number }>;
      for (const row of rows) {
        const entry = direct.get(row.page) ?? { count: 0, sum: 0 };
        entry.count++;
        entry.sum += row.latency_ms;
        direct.set(row.page, entry);
      }
    }
    expect(answer.files).toBe(3);
    expect(answer.groups).toEqual(
      [...direct].sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, value]) => ({ key, ...value })),
    );
  });
});
