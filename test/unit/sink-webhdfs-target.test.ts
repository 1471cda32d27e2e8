import { describe, expect, it } from "vitest";
import { WebHdfsTarget } from "../../src/dataplane/sink/webhdfsTarget.js";
import type { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { RemoteException } from "../../src/dataplane/storage/protocol.js";

/** An in-memory name node with HDFS's answers: RENAME refuses an existing destination. */
function fakeClient() {
  const files = new Map<string, Buffer>();
  const directories = new Set<string>(["/"]);
  const calls: string[] = [];
  const notFound = (path: string) =>
    new RemoteException("FileNotFoundException", `File ${path} does not exist.`);
  const client = {
    async create(path: string, data: Uint8Array, options: { overwrite?: boolean }) {
      calls.push(`create ${path}`);
      if (files.has(path) && !options.overwrite)
        throw new RemoteException("FileAlreadyExistsException", path);
      files.set(path, Buffer.from(data));
    },
    async mkdirs(path: string) {
      calls.push(`mkdirs ${path}`);
      for (let dir = path; dir !== "/"; dir = dir.slice(0, dir.lastIndexOf("/")) || "/") directories.add(dir);
      return true;
    },
    async rename(from: string, to: string) {
      calls.push(`rename ${from} ${to}`);
      if (!files.has(from) || files.has(to)) return false;
      files.set(to, files.get(from)!);
      files.delete(from);
      return true;
    },
    async delete(path: string) {
      calls.push(`delete ${path}`);
      return files.delete(path);
    },
    async status(path: string) {
      if (!files.has(path)) throw notFound(path);
      return { type: "FILE" };
    },
    async list(path: string) {
      if (!directories.has(path)) throw notFound(path);
      const children = new Map<string, "FILE" | "DIRECTORY">();
      for (const [entries, type] of [
        [[...files.keys()], "FILE"],
        [[...directories], "DIRECTORY"],
      ] as const) {
        for (const entry of entries)
          if (entry.startsWith(`${path}/`) && !entry.slice(path.length + 1).includes("/"))
            children.set(entry.slice(path.length + 1), type);
      }
      return [...children].map(([pathSuffix, type]) => ({ pathSuffix, type }));
    },
  };
  return { client: client as unknown as WebHdfsClient, files, calls };
}

describe("WebHDFS sink target", () => {
  it("sends a file only on durable close, under its temporary name, then renames it into place", async () => {
    const { client, files, calls } = fakeClient();
    const target = new WebHdfsTarget(client, "/lake/clicks/");
    expect(await target.list()).toEqual([]);
    const file = await target.create("dt=2026-11-26/hr=06/.clicks-0-0.w1.tmp");
    await file.write(new Uint8Array([1, 2]));
    await file.write(new Uint8Array([3]));
    expect(file.bytesWritten).toBe(3);
    expect(files.size).toBe(0);
    await file.closeDurably();
    expect([...files]).toEqual([
      ["/lake/clicks/dt=2026-11-26/hr=06/.clicks-0-0.w1.tmp", Buffer.from([1, 2, 3])],
    ]);
    expect(calls).toEqual([
      "mkdirs /lake/clicks/dt=2026-11-26/hr=06",
      "create /lake/clicks/dt=2026-11-26/hr=06/.clicks-0-0.w1.tmp",
    ]);

    await target.rename("dt=2026-11-26/hr=06/.clicks-0-0.w1.tmp", "dt=2026-11-26/hr=06/clicks-0-0-9.parquet");
    expect(await target.list()).toEqual(["dt=2026-11-26/hr=06/clicks-0-0-9.parquet"]);
  });

  it("replaces a closed file of the same name, as a rename after a crash before the commit must", async () => {
    const { client, files } = fakeClient();
    const target = new WebHdfsTarget(client, "/lake");
    for (const content of [[1], [2]]) {
      const file = await target.create("dt=x/.t-0-0.w.tmp");
      await file.write(new Uint8Array(content));
      await file.closeDurably();
      await target.rename("dt=x/.t-0-0.w.tmp", "dt=x/t-0-0-0.avro");
    }
    expect([...files]).toEqual([["/lake/dt=x/t-0-0-0.avro", Buffer.from([2])]]);
  });

  it("leaves nothing behind on abort, and removes a missing file quietly", async () => {
    const { client, files, calls } = fakeClient();
    const target = new WebHdfsTarget(client, "/lake");
    const unsent = await target.create("a/.t-0-0.w.tmp");
    await unsent.write(new Uint8Array([1]));
    await unsent.abort();
    expect(calls).toEqual([]);

    const sent = await target.create("a/.t-0-5.w.tmp");
    await sent.write(new Uint8Array([1]));
    await sent.closeDurably();
    await sent.abort();
    expect(files.size).toBe(0);
    await target.remove("a/never-written");
    await expect(target.create("../outside")).rejects.toThrow(/escapes the target directory/);
  });
});
