/**
 * The namespace's counters and its checkpoints: /status reads figures every edit keeps rather than
 * walking the tree, and an image is written a slice at a time, as of the moment it began, while
 * edits and RPCs go on.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EditLog } from "../../src/dataplane/storage/namenode/editLog.js";
import { NameNode } from "../../src/dataplane/storage/namenode/namenode.js";
import { type EditOp, type INode, Namespace } from "../../src/dataplane/storage/namenode/namespace.js";
import { createLogger } from "../../src/log.js";
import { inProcessNameNodeConfig } from "../support/namenode.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-checkpoint-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const mkdir = (path: string, mtime = 1): EditOp => ({
  op: "MKDIR",
  path,
  owner: "hdfs",
  group: "supergroup",
  permission: 0o755,
  mtime,
});

/** A file of `blocks` closed blocks of `size` bytes, written as the name node logs one. */
function writeFile(ns: Namespace, path: string, blocks: number, size: number, close = true): void {
  ns.apply({
    op: "ADD",
    path,
    owner: "hdfs",
    group: "supergroup",
    permission: 0o644,
    mtime: 2,
    replication: 3,
    blockSize: 1 << 20,
    clientName: "writer",
  });
  let previous: { blockId: number; numBytes: number } | undefined;
  for (let i = 0; i < blocks; i++) {
    const blockId = ns.lastBlockId + 1;
    ns.apply({ op: "ADD_BLOCK", path, blockId, generationStamp: ns.generationStamp + 1, previous });
    previous = { blockId, numBytes: size };
  }
  if (close) ns.apply({ op: "CLOSE", path, mtime: 3, last: previous });
}

/** What the counters must equal: a walk of the whole tree, as /status did on every call. */
function walk(ns: Namespace) {
  const counts = { directories: 0, files: 0, bytes: 0 };
  const visit = (node: INode) => {
    if (node.kind === "FILE") {
      counts.files++;
      counts.bytes += ns.visibleLength(node);
      return;
    }
    counts.directories++;
    for (const child of node.children.values()) visit(child);
  };
  visit(ns.root);
  return counts;
}

describe("the namespace's counters", () => {
  it("follow every edit and an image's load as a walk of the tree would count", () => {
    const ns = new Namespace();
    ns.apply(mkdir("/a"));
    ns.apply(mkdir("/a/b"));
    ns.apply(mkdir("/c"));
    writeFile(ns, "/a/f", 3, 1000);
    writeFile(ns, "/a/b/g", 2, 7);
    writeFile(ns, "/c/open", 2, 5, false);
    expect(ns.counts).toEqual(walk(ns));
    // Overwrite, rename, delete of a subtree, an abandoned block, a lease closed dropping its open block.
    writeFile(ns, "/a/f", 1, 10);
    ns.apply({ op: "RENAME", src: "/a/b", dst: "/c/b", mtime: 4 });
    ns.apply({ op: "DELETE", path: "/a", mtime: 5 });
    ns.apply({ op: "ABANDON_BLOCK", path: "/c/open", blockId: ns.lastBlockId });
    ns.apply({ op: "CLOSE", path: "/c/open", mtime: 6, dropIncomplete: true });
    ns.apply({ op: "SET_EC_POLICY", path: "/c", ecPolicy: "RS-6-3-1024k" });
    expect(ns.counts).toEqual(walk(ns));
    expect([...ns.ecDirectories].map((d) => ns.pathOf(d))).toEqual(["/c"]);
    const loaded = Namespace.fromImage(ns.toImage());
    expect(loaded.counts).toEqual(walk(ns));
    expect([...loaded.ecDirectories].map((d) => loaded.pathOf(d))).toEqual(["/c"]);
    ns.apply({ op: "DELETE", path: "/c", mtime: 7 });
    expect(ns.counts).toEqual({ directories: 1, files: 0, bytes: 0 });
    expect(ns.ecDirectories.size).toBe(0);
  });
});

describe("an image written in slices", () => {
  it("is the namespace as it was when it began, whatever edits run between its slices", () => {
    const ns = new Namespace();
    for (let i = 0; i < 50; i++) ns.apply(mkdir(`/d${i}`));
    for (let i = 0; i < 50; i++) writeFile(ns, `/d${i}/f`, 1, i);
    writeFile(ns, "/d0/open", 1, 5, false);
    ns.apply({ op: "SET_EC_POLICY", path: "/d1", ecPolicy: "RS-3-2-1024k" });
    const before = JSON.stringify(ns.toImage());

    const slices = ns.beginImage(7);
    const text: string[] = [];
    const edits: EditOp[] = [
      mkdir("/new"),
      { op: "RENAME", src: "/d3", dst: "/new/d3", mtime: 9 },
      { op: "DELETE", path: "/d40", mtime: 9 },
      { op: "CLOSE", path: "/d0/open", mtime: 9, last: { blockId: ns.lastBlockId, numBytes: 5 } },
      { op: "SET_PERMISSION", path: "/d45/f", permission: 0o600 },
      { op: "SET_EC_POLICY", path: "/d1", ecPolicy: null },
      { op: "SET_QUOTA", path: "/d2", nsQuota: 5, dsQuota: -1 },
      { op: "APPEND", path: "/d49/f", clientName: "appender", mtime: 9 },
      { op: "RENAME", src: "/d48/f", dst: "/d2/moved", mtime: 9 },
    ];
    for (const slice of slices) {
      text.push(slice);
      const edit = edits.shift();
      if (edit) ns.apply(edit);
    }
    expect(edits).toEqual([]);
    expect(JSON.stringify(JSON.parse(text.join("")))).toBe(before);
    // Done: later edits are no longer preserved, and the next image shows everything.
    const after = ns.toImage();
    expect(JSON.stringify(after)).not.toBe(before);
    expect(Namespace.fromImage(after).lookup("/new/d3")).toBeDefined();
  });

  it("lets RPCs run while a name node checkpoints a large namespace", async () => {
    let reached!: () => void;
    const midway = new Promise<void>((resolve) => {
      reached = resolve;
    });
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => {
      resume = resolve;
    });
    const nameNode = new NameNode(
      inProcessNameNodeConfig(join(dir, "name"), {
        checkpointSliceInodes: 1000,
        // The checkpoint stops after its second slice until the test has had its RPC answered.
        onCheckpointSlice: async (slices) => {
          if (slices !== 2) return;
          reached();
          await resumed;
        },
      }),
      createLogger("namenode-test"),
    );
    await nameNode.start();
    try {
      expect(nameNode.haState).toBe("active");
      // A large namespace: 200 directories of 100 files, put straight into memory.
      for (let i = 0; i < 200; i++) {
        nameNode.namespace.apply(mkdir(`/big${i}`));
        for (let j = 0; j < 100; j++) writeFile(nameNode.namespace, `/big${i}/f${j}`, 1, 1);
      }
      const txid = nameNode.lastAppliedTxid;
      let checkpointed = false;
      const checkpoint = nameNode.checkpoint().then(() => {
        checkpointed = true;
      });
      await midway;
      const answer = await fetch(
        `http://127.0.0.1:${nameNode.httpPort}/webhdfs/v1/during?op=MKDIRS&user.name=hdfs`,
        { method: "PUT" },
      );
      expect(await answer.json()).toEqual({ boolean: true });
      const status = (await (await fetch(`http://127.0.0.1:${nameNode.httpPort}/status`)).json()) as {
        files: number;
        directories: number;
        bytes: number;
      };
      expect(status).toMatchObject({ files: 1 + 200 + 20_000 + 1, directories: 202, bytes: 20_000 });
      expect(checkpointed).toBe(false);
      resume();
      await checkpoint;

      const image = (await new EditLog(join(dir, "name")).latestImage())!;
      expect(image.txid).toBe(txid);
      const loaded = Namespace.fromImage(image.image);
      expect(loaded.lookup("/big199/f99")).toBeDefined();
      expect(loaded.lookup("/during")).toBeUndefined();
      expect(loaded.counts).toEqual({ directories: 201, files: 20_000, bytes: 20_000 });
    } finally {
      resume();
      await nameNode.close();
    }
  });
});
