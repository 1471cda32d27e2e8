/**
 * The Apache Hadoop Java client, unchanged, against the BlockPool: `hadoop fs` (FsShell) over
 * its webhdfs:// file system (WebHdfsFileSystem), from the shaded client jars that
 * `scripts/testenv up hadoop` resolves from Maven Central. Each command is a JVM of its own, as
 * `hadoop fs` is; the client's own output and exit codes are what is checked, and the bytes it
 * reads back are compared with the bytes it wrote.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chunkChecksums } from "../../src/dataplane/storage/crc32c.js";
import { testEnv } from "../support/env.js";
import { StorageCluster } from "./storage-cluster.js";

const run = promisify(execFile);
const ROOT = new URL("../..", import.meta.url).pathname;

const BLOCK_SIZE = 1024 * 1024;
/** Four blocks, the last one short. */
const BIG_LENGTH = 3 * BLOCK_SIZE + 17;

const JVM_OPTIONS = [
  // A short-lived CLI: the C1 compiler alone starts it in about half the time.
  "-XX:TieredStopAtLevel=1",
  // -touch -t parses and -stat %y prints in the JVM's zone: make both UTC, whatever the machine's.
  "-Duser.timezone=UTC",
  // Warnings would still reach stderr (and fail the stderr checks): they are what a user would see.
  "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
  // The pure-Java code paths are the point here; the native-library notice is noise.
  "-Dorg.slf4j.simpleLogger.log.org.apache.hadoop.util.NativeCodeLoader=error",
];

interface ShellResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const md5 = (data: Buffer) => createHash("md5").update(data).digest();

/**
 * HDFS's MD5-of-MD5-of-CRC32C of `data` written in `blockSize` blocks, worked out here from the
 * bytes alone: each block's MD5 over its 512-byte chunks' CRC32Cs, then the MD5 of those MD5s
 * as DFSClient collects them (a 32-byte buffer doubled as it fills, the tail zero).
 */
function expectedChecksum(data: Buffer, blockSize: number): string {
  const blockMd5s: Buffer[] = [];
  for (let start = 0; start < data.length; start += blockSize) {
    blockMd5s.push(md5(chunkChecksums(data.subarray(start, start + blockSize))));
  }
  let capacity = 32;
  while (capacity < blockMd5s.length * 16) capacity *= 2;
  const collected = Buffer.alloc(capacity);
  Buffer.concat(blockMd5s).copy(collected);
  const header = Buffer.alloc(12);
  header.writeInt32BE(512, 0);
  header.writeBigInt64BE(BigInt(blockSize / 512), 4);
  return Buffer.concat([header, md5(collected)]).toString("hex");
}

// A test starts up to thirteen JVMs one after another; on a busy machine each takes seconds,
// so the bound on a test is the project's default times two.
describe("BlockPool storage: the Apache Hadoop Java client (hadoop fs over webhdfs://)", {
  timeout: 240_000,
}, () => {
  let cluster: StorageCluster;
  let local: string;
  let big: Buffer;
  const line = Buffer.from("appended by hadoop fs -appendToFile\n");

  /** `hadoop fs <args>` as `user`; a non-zero exit is returned, not thrown. */
  async function hadoopFs(user: string, ...args: string[]): Promise<ShellResult> {
    const classpath = `${join(ROOT, "testenv", "hadoop", "conf")}:${testEnv().hadoopLibs}/*`;
    const argv = [
      ...JVM_OPTIONS,
      "-cp",
      classpath,
      "org.apache.hadoop.fs.FsShell",
      "-D",
      `fs.defaultFS=webhdfs://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}`,
      ...args,
    ];
    // The caller is whoever HADOOP_USER_NAME says (simple authentication: WebHDFS's user.name).
    const env: NodeJS.ProcessEnv = { ...process.env, HADOOP_USER_NAME: user };
    // A proxy user would turn into WebHDFS's doas; the JVM announces these options on stderr.
    for (const name of ["HADOOP_PROXY_USER", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"])
      delete env[name];
    try {
      const { stdout, stderr } = await run("java", argv, {
        env,
        encoding: "buffer",
        maxBuffer: 64 * 1024 * 1024,
        timeout: 120_000,
      });
      return { code: 0, stdout, stderr: stderr.toString("utf8") };
    } catch (error) {
      const failed = error as { code?: unknown; stdout?: Buffer; stderr?: Buffer };
      if (typeof failed.code !== "number") throw error;
      return {
        code: failed.code,
        stdout: failed.stdout ?? Buffer.alloc(0),
        stderr: failed.stderr?.toString("utf8") ?? "",
      };
    }
  }

  /** A command that must succeed with nothing on stderr; its stdout as text. */
  async function ok(user: string, ...args: string[]): Promise<string> {
    const result = await hadoopFs(user, ...args);
    expect({ args, code: result.code, stderr: result.stderr }).toEqual({ args, code: 0, stderr: "" });
    return result.stdout.toString("utf8");
  }

  beforeAll(async () => {
    const libs = testEnv().hadoopLibs;
    if (!existsSync(join(libs, ".complete")))
      throw new Error(`the Hadoop client jars are not in ${libs}: run 'scripts/testenv up hadoop'`);
    cluster = await StorageCluster.start({ dataNodes: 4 });
    local = await mkdtemp(join(tmpdir(), "tributary-hadoop-client-"));
    big = randomBytes(BIG_LENGTH);
    await writeFile(join(local, "big.bin"), big);
    await writeFile(join(local, "line.txt"), line);
  });

  afterAll(async () => {
    await cluster?.stop();
    if (local) await rm(local, { recursive: true, force: true });
  });

  it("puts a multi-block file and reads it back with -ls, -stat, -cat, -get and -checksum", async () => {
    await ok("alice", "-mkdir", "-p", "/user/alice/data/in");
    await ok(
      "alice",
      "-D",
      `dfs.blocksize=${BLOCK_SIZE}`,
      "-put",
      join(local, "big.bin"),
      "/user/alice/data/in/big.bin",
    );
    const located = await cluster.blockLocations("/user/alice/data/in/big.bin");
    expect(located.blocks.map((block) => block.block.numBytes)).toEqual([
      BLOCK_SIZE,
      BLOCK_SIZE,
      BLOCK_SIZE,
      17,
    ]);

    const listing = (await ok("alice", "-ls", "/user/alice/data/in")).trimEnd().split("\n");
    expect(listing[0]).toBe("Found 1 items");
    expect(listing[1]).toMatch(
      new RegExp(
        `^-rw-r--r--\\s+3 alice supergroup\\s+${BIG_LENGTH} \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d /user/alice/data/in/big\\.bin$`,
      ),
    );
    expect((await ok("alice", "-ls", "-R", "/user/alice")).match(/^\S+/gm)).toEqual([
      "drwxr-xr-x",
      "drwxr-xr-x",
      "-rw-r--r--",
    ]);
    expect(await ok("alice", "-stat", "%n %b %r %o %u %g %a %F", "/user/alice/data/in/big.bin")).toBe(
      `big.bin ${BIG_LENGTH} 3 ${BLOCK_SIZE} alice supergroup 644 regular file\n`,
    );

    const cat = await hadoopFs("alice", "-cat", "/user/alice/data/in/big.bin");
    expect({ code: cat.code, stderr: cat.stderr }).toEqual({ code: 0, stderr: "" });
    expect(sha256(cat.stdout)).toBe(sha256(big));
    await ok("alice", "-get", "/user/alice/data/in/big.bin", join(local, "got.bin"));
    expect(sha256(await readFile(join(local, "got.bin")))).toBe(sha256(big));

    // GETFILECHECKSUM, through the data node the name node redirects to.
    expect(await ok("alice", "-checksum", "/user/alice/data/in/big.bin")).toBe(
      `/user/alice/data/in/big.bin\tMD5-of-2048MD5-of-512CRC32C\t${expectedChecksum(big, BLOCK_SIZE)}\n`,
    );
    // An empty file's is fixed in HDFS: the MD5 of 32 zero bytes.
    await ok("alice", "-touchz", "/user/alice/data/empty");
    expect(await ok("alice", "-checksum", "/user/alice/data/empty")).toBe(
      "/user/alice/data/empty\tMD5-of-0MD5-of-0CRC32\t00000000000000000000000070bc8f4b72a86921468bf8e8441dce51\n",
    );

    expect((await hadoopFs("alice", "-test", "-e", "/user/alice/data/in/big.bin")).code).toBe(0);
    expect((await hadoopFs("alice", "-test", "-e", "/user/alice/data/in/missing")).code).toBe(1);
  });

  it("moves, appends, sets times, mode and replication, and sums up with -du and -count", async () => {
    await ok("alice", "-mv", "/user/alice/data/in/big.bin", "/user/alice/data/big.bin");
    expect((await hadoopFs("alice", "-test", "-e", "/user/alice/data/in/big.bin")).code).toBe(1);

    await ok("alice", "-appendToFile", join(local, "line.txt"), "/user/alice/data/big.bin");
    const appended = Buffer.concat([big, line]);
    const cat = await hadoopFs("alice", "-cat", "/user/alice/data/big.bin");
    expect(cat.code).toBe(0);
    expect(sha256(cat.stdout)).toBe(sha256(appended));

    await ok("alice", "-chmod", "640", "/user/alice/data/big.bin");
    // SETTIMES.
    await ok("alice", "-touch", "-m", "-t", "20200102:030405", "/user/alice/data/big.bin");
    expect(await ok("alice", "-stat", "%a %A %y", "/user/alice/data/big.bin")).toBe(
      "640 rw-r----- 2020-01-02 03:04:05\n",
    );

    // One replica to start with; -setrep 3 asks for more and -w waits (polling
    // GETFILEBLOCKLOCATIONS) until every block has three hosts.
    await ok(
      "alice",
      "-D",
      "dfs.replication=1",
      "-put",
      join(local, "line.txt"),
      "/user/alice/data/in/line.txt",
    );
    expect(await ok("alice", "-setrep", "3", "/user/alice/data/in/line.txt")).toBe(
      "Replication 3 set: /user/alice/data/in/line.txt\n",
    );
    expect(await ok("alice", "-setrep", "2", "/user/alice/data/big.bin")).toBe(
      "Replication 2 set: /user/alice/data/big.bin\n",
    );
    expect(await ok("alice", "-stat", "%r", "/user/alice/data/big.bin")).toBe("2\n");
    // Lowered: the name node deletes the third replica of each block, and -w sees it go. If a
    // block still has three hosts at its first look, SetReplication warns once that lowering may
    // take long, then polls every 10 s, a dot each time.
    expect(await ok("alice", "-setrep", "-w", "2", "/user/alice/data/big.bin")).toMatch(
      /^Replication 2 set: \/user\/alice\/data\/big\.bin\nWaiting for \/user\/alice\/data\/big\.bin \.\.\.(\nWARNING: the waiting time may be long for DECREASING the number of replications\.\n)?\.* done\n$/,
    );
    expect(
      (await cluster.blockLocations("/user/alice/data/big.bin")).blocks.every(
        (block) => block.locations.length === 2,
      ),
    ).toBe(true);
    await cluster.waitFor(
      async () =>
        (await cluster.blockLocations("/user/alice/data/in/line.txt")).blocks.every(
          (block) => block.locations.length === 3,
        ),
      "line.txt re-replicated to 3",
    );
    expect(await ok("alice", "-setrep", "-w", "3", "/user/alice/data/in/line.txt")).toMatch(
      /^Replication 3 set: \/user\/alice\/data\/in\/line\.txt\nWaiting for \/user\/alice\/data\/in\/line\.txt \.+ done\n$/,
    );

    const length = appended.length + line.length;
    const spaceConsumed = appended.length * 2 + line.length * 3;
    expect(await ok("alice", "-du", "-s", "/user/alice/data")).toBe(
      `${length}  ${spaceConsumed}  /user/alice/data\n`,
    );
    // DIR_COUNT FILE_COUNT CONTENT_SIZE PATHNAME: data and in; big.bin, empty and line.txt.
    expect((await ok("alice", "-count", "/user/alice/data")).trim().split(/\s+/)).toEqual([
      "2",
      "3",
      String(length),
      "/user/alice/data",
    ]);
  });

  it("refuses another user as the Java client reports it: Permission denied", async () => {
    const refused = await hadoopFs("bob", "-put", join(local, "line.txt"), "/user/alice/data/bob.txt");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^put: Permission denied: user=bob, access=WRITE, inode="\/user\/alice\/data":alice:supergroup:drwxr-xr-x$/m,
    );
    expect((await hadoopFs("alice", "-test", "-e", "/user/alice/data/bob.txt")).code).toBe(1);
    // -test -r/-w ask the name node (CHECKACCESS): bob may read alice's 644 file, not write it.
    expect((await hadoopFs("bob", "-test", "-r", "/user/alice/data/in/line.txt")).code).toBe(0);
    expect((await hadoopFs("bob", "-test", "-w", "/user/alice/data/in/line.txt")).code).toBe(1);
    const chmod = await hadoopFs("bob", "-chmod", "777", "/user/alice/data");
    expect(chmod.code).toBe(1);
    expect(chmod.stderr).toContain("chmod: changing permissions of '/user/alice/data': Permission denied");
  });

  it("removes to the trash and for good with -rm -r", async () => {
    // With the client's fs.trash.interval set, -rm asks GETSERVERDEFAULTS and GETTRASHROOT (a
    // failure would be a warning on stderr), makes .Trash/Current/user/alice/data (under
    // /user/alice, which has a data of its own: MKDIRS once skipped it) and moves the file there
    // with RENAME&renameoptions=TO_TRASH, which must fail loudly rather than answer false.
    expect(await ok("alice", "-D", "fs.trash.interval=60", "-rm", "/user/alice/data/empty")).toBe("");
    expect((await hadoopFs("alice", "-test", "-e", "/user/alice/data/empty")).code).toBe(1);
    expect(
      (await hadoopFs("alice", "-test", "-e", "/user/alice/.Trash/Current/user/alice/data/empty")).code,
    ).toBe(0);

    expect(await ok("alice", "-rm", "-r", "/user/alice/data")).toBe("Deleted /user/alice/data\n");
    expect((await hadoopFs("alice", "-test", "-e", "/user/alice/data")).code).toBe(1);
  });
});
