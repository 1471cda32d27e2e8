/**
 * The replicated data path of a BlockPool, with real processes on loopback: one name node and
 * four data nodes on two racks, 1 MiB blocks so multi-block files stay small.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { RemoteException } from "../../src/dataplane/storage/protocol.js";
import { DECLARED_DEAD_WITHIN_MS, StorageCluster, stopRole } from "./storage-cluster.js";

const run = promisify(execFile);
const MiB = 1024 * 1024;
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("BlockPool storage: replicated blocks on 4 data nodes", () => {
  let cluster: StorageCluster;
  let client: WebHdfsClient;
  const written = new Map<string, string>();

  beforeAll(async () => {
    cluster = await StorageCluster.start({
      dataNodes: 4,
      // A checkpoint every 20 edits: the restart test replays an fsimage plus the edits after it.
      // A lease lapses after 20 s, twice the 10 s at which a writer renews it: a live writer keeps
      // its file even when a renewal comes 10 s late, and one that went away loses it soon.
      // Kills a data node and waits for it to be declared dead: 10 s of silence, a third of the
      // loopback cluster's default, still far above a busy machine's stalls.
      nameNodeArgs: [
        "--lease-hard-limit-ms",
        "20000",
        "--checkpoint-txns",
        "20",
        "--heartbeat-expiry-ms",
        "10000",
      ],
      dataNodeArgs: ["--scan-interval-ms", "1500"],
    });
    client = cluster.client();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  async function readAll(): Promise<void> {
    for (const [path, digest] of written) expect(sha(await client.open(path)), path).toBe(digest);
  }

  async function fullyReplicated(): Promise<boolean> {
    const live = new Set(
      cluster.dataNodes
        .filter((dn) => dn.child.exitCode === null && dn.child.signalCode === null)
        .map((dn) => dn.datanodeUuid),
    );
    for (const path of written.keys()) {
      const located = await cluster.blockLocations(path);
      for (const block of located.blocks) {
        if (block.locations.filter((node) => live.has(node.datanodeUuid)).length !== 3) return false;
      }
    }
    const status = await cluster.status();
    return status.underReplicatedBlocks === 0 && status.missingBlocks === 0;
  }

  it("writes and reads back 0 B, 1 B, block size ±1 and a multi-block file, three replicas across two racks", async () => {
    const sizes = {
      empty: 0,
      one: 1,
      "block-minus-1": MiB - 1,
      block: MiB,
      "block-plus-1": MiB + 1,
      large: 5 * MiB + 12_345,
    };
    for (const [name, size] of Object.entries(sizes)) {
      const data = randomBytes(size);
      const path = `/round-trip/${name}`;
      await client.create(path, data, { blockSize: MiB });
      written.set(path, sha(data));
      const back = await client.open(path);
      expect(back.length, path).toBe(size);
      expect(sha(back), path).toBe(sha(data));
      const status = await client.status(path);
      expect(status).toMatchObject({
        type: "FILE",
        length: size,
        blockSize: MiB,
        replication: 3,
        owner: "tester",
      });
      const located = await cluster.blockLocations(path);
      expect(located.blocks.length, path).toBe(Math.ceil(size / MiB));
      for (const block of located.blocks) {
        const racks = block.locations.map(
          (node) => cluster.dataNodes.find((dn) => dn.datanodeUuid === node.datanodeUuid)!.rack,
        );
        expect(block.locations.length).toBe(3);
        // HDFS's rule: not all on one rack (the second replica is off the first's rack).
        expect(new Set(racks).size).toBe(2);
      }
    }
    // A ranged read across a block boundary.
    const large = await client.open("/round-trip/large", { offset: MiB - 10, length: 20 });
    expect(large.length).toBe(20);
    const listing = await client.list("/round-trip");
    expect(listing.map((status) => status.pathSuffix).sort()).toEqual(Object.keys(sizes).sort());
    // Appends add new blocks after the existing data.
    const extra = randomBytes(300_000);
    const before = await client.open("/round-trip/one");
    await client.append("/round-trip/one", extra);
    const appended = Buffer.concat([before, extra]);
    expect(sha(await client.open("/round-trip/one"))).toBe(sha(appended));
    written.set("/round-trip/one", sha(appended));
  });

  it("serves curl driving WebHDFS with -L: create, list, read, rename, delete", async () => {
    const base = `http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}/webhdfs/v1`;
    const local = join(cluster.root, "curl-upload");
    const data = randomBytes(2 * MiB + 7);
    await writeFile(local, data);
    const created = await run("curl", [
      "-sS",
      "-L",
      "-X",
      "PUT",
      "-T",
      local,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${base}/curl/upload.bin?op=CREATE&blocksize=${MiB}&user.name=curl`,
    ]);
    expect(created.stdout).toBe("201");
    const listed = JSON.parse((await run("curl", ["-sS", `${base}/curl?op=LISTSTATUS`])).stdout);
    expect(listed.FileStatuses.FileStatus).toEqual([
      expect.objectContaining({ pathSuffix: "upload.bin", length: data.length, owner: "curl", type: "FILE" }),
    ]);
    const back = join(cluster.root, "curl-download");
    await run("curl", ["-sS", "-L", "-o", back, `${base}/curl/upload.bin?op=OPEN`]);
    expect(sha(await readFile(back))).toBe(sha(data));
    const renamed = JSON.parse(
      (
        await run("curl", [
          "-sS",
          "-X",
          "PUT",
          `${base}/curl/upload.bin?op=RENAME&destination=/curl/renamed.bin&user.name=curl`,
        ])
      ).stdout,
    );
    expect(renamed).toEqual({ boolean: true });
    const summary = JSON.parse((await run("curl", ["-sS", `${base}/curl?op=GETCONTENTSUMMARY`])).stdout);
    expect(summary.ContentSummary).toMatchObject({
      fileCount: 1,
      directoryCount: 1,
      length: data.length,
      spaceConsumed: data.length * 3,
    });
    const deleted = JSON.parse(
      (await run("curl", ["-sS", "-X", "DELETE", `${base}/curl?op=DELETE&recursive=true&user.name=curl`]))
        .stdout,
    );
    expect(deleted).toEqual({ boolean: true });
    const gone = await run("curl", [
      "-sS",
      "-w",
      "\n%{http_code}",
      `${base}/curl/renamed.bin?op=GETFILESTATUS`,
    ]);
    const [body, code] = gone.stdout.split("\n");
    expect(code).toBe("404");
    expect(JSON.parse(body!)).toEqual({
      RemoteException: {
        exception: "FileNotFoundException",
        javaClassName: "java.io.FileNotFoundException",
        message: "File does not exist: /curl/renamed.bin",
      },
    });
  });

  it("refuses '..' in paths, writes beyond quota and unknown ops with HDFS's errors", async () => {
    const base = `http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}/webhdfs/v1`;
    const dots = await run("curl", [
      "-sS",
      "--path-as-is",
      "-w",
      "\n%{http_code}",
      "-X",
      "PUT",
      `${base}/round-trip/../escape?op=MKDIRS`,
    ]);
    const [dotsBody, dotsCode] = dots.stdout.split("\n");
    expect(dotsCode).toBe("400");
    expect(JSON.parse(dotsBody!).RemoteException.exception).toBe("InvalidPathException");
    const encoded = await run("curl", [
      "-sS",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${base}/a/%2E%2E/b?op=GETFILESTATUS`,
    ]);
    expect(encoded.stdout).toBe("400");
    const badOp = await run("curl", ["-sS", "-w", "\n%{http_code}", `${base}/?op=NOSUCHOP`]);
    expect(badOp.stdout.split("\n")[1]).toBe("400");

    await client.mkdirs("/quota");
    // Room for one 1 MiB block at replication 3, not two: HDFS charges a new block at full size.
    // Quotas are the superuser's to set.
    await cluster.client("hdfs").setQuota("/quota", { storageSpace: 4 * MiB });
    await client.create("/quota/fits", randomBytes(1000), { blockSize: MiB });
    const refused = await client
      .create("/quota/too-big", randomBytes(MiB + 1), { blockSize: MiB })
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(RemoteException);
    expect((refused as RemoteException).exception).toBe("DSQuotaExceededException");
    expect((refused as RemoteException).status).toBe(403);
    expect((await client.contentSummary("/quota")).spaceQuota).toBe(4 * MiB);

    const exists = await client.create("/quota/fits", randomBytes(10)).catch((error: unknown) => error);
    expect((exists as RemoteException).exception).toBe("FileAlreadyExistsException");
    const missing = await client.open("/no/such/file").catch((error: unknown) => error);
    expect((missing as RemoteException).status).toBe(404);
  });

  it("checks owners and modes as HDFS does: traversal, read, write, sticky root, owner and superuser operations", async () => {
    const alice = cluster.client("alice");
    const bob = cluster.client("bob");
    const hdfs = cluster.client("hdfs");
    const refusal = async (attempt: Promise<unknown>) => {
      const error = await attempt.then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(RemoteException);
      expect((error as RemoteException).exception).toBe("AccessControlException");
      expect((error as RemoteException).status).toBe(403);
      return (error as RemoteException).message;
    };

    await alice.mkdirs("/alice");
    await alice.mkdirs("/alice/private", "700");
    await alice.create("/alice/private/diary", "dear diary", { permission: "600" });
    await alice.create("/alice/shared", "for everyone");
    expect(await alice.status("/alice/private")).toMatchObject({ owner: "alice", permission: "700" });

    // The root is sticky and world-writable: bob may add his own entries but not remove alice's.
    expect((await bob.status("/")).permission).toBe("1777");
    await bob.mkdirs("/bob");
    expect(await refusal(bob.delete("/alice", { recursive: true }))).toContain("sticky bit");
    expect(await refusal(bob.rename("/alice", "/bob/taken"))).toContain("sticky bit");

    // 700 on the directory: no traversal, listing or writing for others; 644 files under 755 read fine.
    expect(await refusal(bob.open("/alice/private/diary"))).toBe(
      'Permission denied: user=bob, access=EXECUTE, inode="/alice/private":alice:supergroup:drwx------',
    );
    await refusal(bob.list("/alice/private"));
    await refusal(bob.create("/alice/private/note", "hi"));
    await refusal(bob.create("/alice/intruder", "hi"));
    await refusal(bob.mkdirs("/alice/private/sub"));
    expect((await bob.open("/alice/shared")).toString()).toBe("for everyone");
    await refusal(bob.append("/alice/shared", " and bob"));
    await refusal(bob.create("/alice/shared", "overwritten", { overwrite: true }));
    await refusal(bob.delete("/alice/shared"));

    // Only the owner changes modes; only a superuser changes owners or quotas.
    await refusal(bob.setPermission("/alice/private", "777"));
    await refusal(alice.setOwner("/alice/private", { owner: "bob" }));
    await refusal(alice.setQuota("/alice", { namespace: 10 }));
    await alice.setPermission("/alice/private", "755");
    await alice.setPermission("/alice/private/diary", "644");
    expect((await bob.open("/alice/private/diary")).toString()).toBe("dear diary");

    // The superuser passes every check.
    await hdfs.setOwner("/alice/private/diary", { owner: "bob" });
    expect((await bob.status("/alice/private/diary")).owner).toBe("bob");
    await bob.append("/alice/private/diary", " (bob's now)");
    expect(await hdfs.delete("/alice", { recursive: true })).toBe(true);
    expect(await bob.delete("/bob", { recursive: true })).toBe(true);
  });

  it("shows only complete blocks of a file being written, and never a half block after the writer disconnects", async () => {
    const path = "/uc/partial.bin";
    const nn = cluster.nameNodes[0]!;
    const location = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(
        {
          host: "127.0.0.1",
          port: nn.webhdfsPort,
          method: "PUT",
          path: `/webhdfs/v1${path}?op=CREATE&blocksize=${MiB}&user.name=slow`,
        },
        (res) => {
          res.resume();
          resolve(res.headers.location!);
        },
      );
      req.on("error", reject);
      req.end();
    });
    const first = randomBytes(MiB);
    const partial = randomBytes(MiB / 2);
    const url = new URL(location);
    const upload = httpRequest({
      host: url.hostname,
      port: url.port,
      method: "PUT",
      path: `${url.pathname}${url.search}`,
      headers: { "transfer-encoding": "chunked" },
    });
    upload.on("error", () => undefined);
    upload.write(first);
    upload.write(partial);
    // The first block is complete once the writer has asked for the second.
    await cluster.waitFor(async () => (await client.status(path)).length === MiB, "first block committed");
    expect(sha(await client.open(path))).toBe(sha(first));
    const located = await cluster.blockLocations(path);
    expect(located.underConstruction).toBe(true);
    expect(located.blocks.map((block) => block.block.numBytes)).toEqual([MiB]);

    // The writer goes away mid-block: the partial block is abandoned, its replicas discarded.
    upload.destroy();
    await cluster.waitFor(
      async () => !(await cluster.blockLocations(path)).underConstruction,
      "lease recovery closed the file",
      60_000,
    );
    expect((await client.status(path)).length).toBe(MiB);
    expect(sha(await client.open(path))).toBe(sha(first));
    await cluster.waitFor(async () => {
      for (const dn of cluster.dataNodes) {
        const finalized = await readdir(join(dn.dir, "current", "finalized"));
        const rbw = await readdir(join(dn.dir, "current", "rbw"));
        if (rbw.length > 0) return false;
        for (const name of finalized) {
          const match = /^blk_(\d+)$/.exec(name);
          if (!match) continue;
          const size = (await readFile(join(dn.dir, "current", "finalized", name))).length;
          // Every finalized replica of this test's blocks is a whole block; the half one never finalized.
          if (size === MiB / 2) return false;
        }
      }
      return true;
    }, "no half-written replica left on any data node");
  });

  /** The corrupt replica was deleted, or replaced by a good copy. */
  async function corruptBytesGone(file: string, good: Buffer): Promise<boolean> {
    try {
      return Buffer.compare(await readFile(file), good) === 0;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === "ENOENT";
    }
  }

  it("detects a corrupt replica on read and by the block scanner, and replaces it", async () => {
    const path = "/round-trip/large";
    const located = await cluster.blockLocations(path);
    const target = located.blocks[1]!;
    const holder = cluster.dataNodes.find((dn) => dn.datanodeUuid === target.locations[0]!.datanodeUuid)!;
    const file = join(holder.dir, "current", "finalized", `blk_${target.block.blockId}`);
    const good = await readFile(file);
    const bad = Buffer.from(good);
    bad[4321] = bad[4321]! ^ 0xff;
    await writeFile(file, bad);
    // Read straight from the corrupt replica: the client sees ChecksumException, not bad bytes.
    const response = await fetch(`http://127.0.0.1:${holder.xferPort}/blocks/${target.block.blockId}`);
    expect(response.status).toBe(403);
    expect(
      ((await response.json()) as { RemoteException: { exception: string } }).RemoteException.exception,
    ).toBe("ChecksumException");
    // Reported, deleted and re-replicated from a good copy: the file reads and every block has 3 good replicas.
    await cluster.waitFor(
      async () => (await corruptBytesGone(file, good)) && (await fullyReplicated()),
      "corrupt replica replaced",
    );
    await cluster.waitFor(fullyReplicated, "replication back to 3");
    await readAll();

    // Corrupt another replica and let the background scanner find it.
    const other = located.blocks[3]!;
    const scannedHolder = cluster.dataNodes.find(
      (dn) => dn.datanodeUuid === other.locations[0]!.datanodeUuid,
    )!;
    const scannedFile = join(scannedHolder.dir, "current", "finalized", `blk_${other.block.blockId}`);
    const scannedGood = await readFile(scannedFile);
    const scannedBad = Buffer.from(scannedGood);
    scannedBad[0] = scannedBad[0]! ^ 0x01;
    await writeFile(scannedFile, scannedBad);
    await cluster.waitFor(async () => {
      const text = await (await fetch(`http://127.0.0.1:${scannedHolder.infoPort}/metrics`)).text();
      return /tributary_datanode_checksum_failures_total [1-9]/.test(text);
    }, "scanner found the corrupt replica");
    await cluster.waitFor(
      async () => (await corruptBytesGone(scannedFile, scannedGood)) && (await fullyReplicated()),
      "scanned corrupt replica replaced",
    );
    await readAll();
  });

  it("keeps every file readable after kill -9 of a data node and re-replicates to 3", async () => {
    const victim = cluster.dataNodes[1]!;
    await stopRole(victim, "SIGKILL");
    await readAll();
    await cluster.waitFor(
      async () => (await cluster.status()).deadDataNodes === 1,
      "the killed node declared dead",
      DECLARED_DEAD_WITHIN_MS,
    );
    await cluster.waitFor(fullyReplicated, "replication back to 3 on the 3 live nodes");
    await readAll();
  }, 240_000);

  it("replays the edit log after kill -9 of the name node: same namespace, same files", async () => {
    const snapshot = async () => {
      const out: Record<string, unknown> = {};
      const walk = async (dir: string) => {
        for (const status of await client.list(dir)) {
          const path = dir === "/" ? `/${status.pathSuffix}` : `${dir}/${status.pathSuffix}`;
          const { accessTime: _a, ...rest } = status;
          out[path] = rest;
          if (status.type === "DIRECTORY") await walk(path);
        }
      };
      await walk("/");
      return out;
    };
    const before = await snapshot();
    expect(Object.keys(before).length).toBeGreaterThan(8);
    await cluster.restartNameNode(0, "SIGKILL");
    await cluster.waitFor(
      async () => (await cluster.status()).haState === "active",
      "restarted name node active",
    );
    expect(await snapshot()).toEqual(before);
    // Locations come back from the data nodes' block reports.
    await cluster.waitFor(
      async () =>
        (await cluster.status()).missingBlocks === 0 && (await cluster.status()).liveDataNodes === 3,
      "block reports received",
    );
    await readAll();
    expect((await client.contentSummary("/quota")).spaceQuota).toBe(4 * MiB);
  });
});
