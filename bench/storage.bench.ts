/**
 * BlockPool storage on loopback, real processes (one name node, three data nodes on two racks):
 *
 * - replicated write MB/s of one file (replication 3, 128 MiB blocks) through WebHDFS, beside a
 *   single local file write (write + fsync) of the same bytes in the same run: the ratio is what
 *   three checksummed, fsynced, pipelined replicas cost over one plain copy;
 * - read MB/s of the same file back through WebHDFS (checksums verified);
 * - name-node file creates/s (create + complete RPCs, each an fsynced edit, group-committed),
 *   beside a no-op RPC round trip to the same server at the same concurrency.
 *
 *   npx tsx -e 'import("./bench/storage.bench.ts").then(m => m.run())'
 *   STORAGE_BENCH_MIB=64 npx tsx -e 'import("./bench/storage.bench.ts").then(m => m.run())'
 */
import { randomBytes } from "node:crypto";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { postJson } from "../src/dataplane/storage/protocol.js";
import { StorageCluster } from "../test/integration/storage-cluster.js";

const MIB = 1024 * 1024;
const FILE_MIB = Number(process.env.STORAGE_BENCH_MIB ?? 256);
const CREATES = Number(process.env.STORAGE_BENCH_CREATES ?? 2000);
const CONCURRENCY = 16;

function* pieces(chunk: Buffer, count: number): Generator<Buffer> {
  for (let i = 0; i < count; i++) yield chunk;
}

async function localWrite(path: string, chunk: Buffer, count: number): Promise<number> {
  const started = performance.now();
  const handle = await open(path, "w");
  try {
    for (const piece of pieces(chunk, count)) await handle.write(piece);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return (performance.now() - started) / 1000;
}

async function concurrently(total: number, task: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < total) await task(next++);
    }),
  );
  return (performance.now() - started) / 1000;
}

export async function run(): Promise<void> {
  const cluster = await StorageCluster.start({
    dataNodes: 3,
    nameNodeArgs: ["--checkpoint-txns", "1000000"],
  });
  try {
    const client = cluster.client("bench");
    const chunk = randomBytes(MIB);
    const mb = (FILE_MIB * MIB) / 1e6;

    const localSeconds = await localWrite(join(cluster.root, "local-copy"), chunk, FILE_MIB);
    await rm(join(cluster.root, "local-copy"));

    const writeStarted = performance.now();
    await client.create(
      "/bench/replicated.bin",
      (async function* () {
        yield* pieces(chunk, FILE_MIB);
      })(),
    );
    const replicatedSeconds = (performance.now() - writeStarted) / 1000;

    const readStarted = performance.now();
    const back = await client.open("/bench/replicated.bin");
    const readSeconds = (performance.now() - readStarted) / 1000;
    if (back.length !== FILE_MIB * MIB)
      throw new Error(`read back ${back.length} bytes, wrote ${FILE_MIB * MIB}`);

    const rpc = `127.0.0.1:${cluster.nameNodes[0]!.rpcPort}`;
    // Warm both paths so neither side of the ratio pays for the JIT.
    await concurrently(200, () => postJson(rpc, "/rpc/getServiceState", {}));
    await concurrently(200, (i) =>
      postJson(rpc, "/rpc/mkdirs", { path: `/bench/warm/${i}` }).catch(() => undefined),
    );
    const noopSeconds = await concurrently(CREATES, () => postJson(rpc, "/rpc/getServiceState", {}));
    const createSeconds = await concurrently(CREATES, async (i) => {
      const clientName = `bench-${i}`;
      await postJson(rpc, "/rpc/create", { path: `/bench/creates/f${i}`, clientName, owner: "bench" });
      await postJson(rpc, "/rpc/complete", { path: `/bench/creates/f${i}`, clientName });
    });

    const rows = [
      ["local file write + fsync (1 copy)", `${(mb / localSeconds).toFixed(0)} MB/s`, "1.00"],
      [
        `replicated write, replication 3 (${FILE_MIB} MiB)`,
        `${(mb / replicatedSeconds).toFixed(0)} MB/s`,
        (localSeconds / replicatedSeconds).toFixed(2),
      ],
      [
        "WebHDFS read back (checksums verified)",
        `${(mb / readSeconds).toFixed(0)} MB/s`,
        (localSeconds / readSeconds).toFixed(2),
      ],
      [
        `no-op RPC round trip (x${CONCURRENCY} concurrent)`,
        `${(CREATES / noopSeconds).toFixed(0)} /s`,
        "1.00",
      ],
      [
        "name-node file create + complete",
        `${(CREATES / createSeconds).toFixed(0)} files/s`,
        (noopSeconds / createSeconds / 2).toFixed(2),
      ],
    ];
    console.log("| case | rate | vs reference |\n| --- | --- | --- |");
    for (const row of rows) console.log(`| ${row.join(" | ")} |`);
    console.log(`\n(create + complete is two RPCs; its ratio is per RPC against the no-op round trip.)`);
  } finally {
    await cluster.stop();
  }
}
