/**
 * An existing WebHDFS client against the BlockPool: the `hdfs` Python package (HdfsCLI),
 * installed with pip into a venv this test creates. pip reaches PyPI where these tests run: a venv
 * or package that cannot be installed fails the test, saying why, rather than skipping it.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StorageCluster } from "./storage-cluster.js";

const run = promisify(execFile);

const SCRIPT = `
import hashlib, json, os, sys
from hdfs import InsecureClient
from hdfs.util import HdfsError
client = InsecureClient(sys.argv[1], user="py")
data = os.urandom(3 * 1024 * 1024 + 17)
client.makedirs("/py/dir")
client.write("/py/dir/file.bin", data=data, overwrite=True, blocksize=1048576, replication=3)
with client.read("/py/dir/file.bin") as reader:
    back = reader.read()
with client.read("/py/dir/file.bin", offset=1048570, length=20) as reader:
    ranged = reader.read()
listed = client.list("/py/dir", status=True)
client.rename("/py/dir/file.bin", "/py/dir/renamed.bin")
summary = client.content("/py")
try:
    client.status("/py/missing")
    missing = None
except HdfsError as error:
    missing = str(error)
deleted = client.delete("/py", recursive=True)
print(json.dumps({
    "same": hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest(),
    "ranged": ranged == data[1048570:1048590],
    "listed": [[name, status["length"], status["owner"]] for name, status in listed],
    "summary": [summary["fileCount"], summary["length"]],
    "missing": missing,
    "deleted": deleted,
    "gone": client.status("/py", strict=False) is None,
}))
`;

describe("BlockPool storage: the hdfs Python package as a WebHDFS client", () => {
  let cluster: StorageCluster;
  let python: string;

  beforeAll(async () => {
    cluster = await StorageCluster.start({ dataNodes: 3 });
    const venv = join(cluster.root, "venv");
    const step = async (what: string, file: string, args: string[], timeout: number) => {
      try {
        await run(file, args, { timeout });
      } catch (error) {
        const { message, stderr } = error as Error & { stderr?: string };
        throw new Error(
          `cannot ${what} (pip reaches PyPI where these tests run, so this is a failure, not a skip): ` +
            `${message.split("\n")[0]}\n${stderr ?? ""}`,
        );
      }
    };
    await step("create a Python venv", "python3", ["-m", "venv", venv], 120_000);
    await step(
      "install the hdfs package with pip",
      join(venv, "bin", "pip"),
      ["install", "--quiet", "hdfs"],
      180_000,
    );
    python = join(venv, "bin", "python");
  }, 360_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it("creates, lists, reads, renames and deletes files", async () => {
    const { stdout } = await run(
      python,
      ["-c", SCRIPT, `http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}`],
      { timeout: 120_000 },
    );
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!);
    expect(result).toEqual({
      same: true,
      ranged: true,
      listed: [["file.bin", 3 * 1024 * 1024 + 17, "py"]],
      summary: [1, 3 * 1024 * 1024 + 17],
      missing: "File does not exist: /py/missing",
      deleted: true,
      gone: true,
    });
  });
});
