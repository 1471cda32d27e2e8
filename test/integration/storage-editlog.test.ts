/**
 * The name node's edit log with real processes: an edit is in the log before it is in memory,
 * and a write to the log that fails (here a full disk: the next segment is /dev/full) stops the
 * process, whose restart serves only what the disk holds. Non-idempotent calls retried after a
 * failover get their first answer from the retry cache the standby rebuilt from the log.
 */
import { once } from "node:events";
import { readdir, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  CALL_ID_HEADER,
  CLIENT_ID_HEADER,
  postJson,
  RemoteException,
} from "../../src/dataplane/storage/protocol.js";
import { type NameNodeProcess, StorageCluster, stopRole } from "./storage-cluster.js";

const pad = (value: number) => String(value).padStart(19, "0");

async function nameNodeStatus(nn: NameNodeProcess): Promise<{ haState: string; txid: number }> {
  try {
    const response = await fetch(`http://127.0.0.1:${nn.webhdfsPort}/status`, {
      signal: AbortSignal.timeout(5_000),
    });
    return (await response.json()) as { haState: string; txid: number };
  } catch {
    return { haState: "down", txid: -1 };
  }
}

const webhdfs = (
  nn: NameNodeProcess,
  path: string,
  query: string,
  method: string,
  headers: Record<string, string> = {},
) =>
  fetch(`http://127.0.0.1:${nn.webhdfsPort}/webhdfs/v1${path}?user.name=tester&${query}`, {
    method,
    headers,
    signal: AbortSignal.timeout(30_000),
  });

describe("BlockPool storage: the name node logs first", () => {
  let cluster: StorageCluster | undefined;

  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  it("stops when the edit log cannot be written, and after a restart shows only what was logged", async () => {
    cluster = await StorageCluster.start({
      nameNodes: 1,
      dataNodes: 0,
      // A checkpoint on every tick that finds a new edit: whichever txids the ticks between the
      // mkdirs chose, the tick after the last one checkpoints at the last txid.
      nameNodeArgs: ["--checkpoint-txns", "1"],
    });
    const nn = cluster.nameNodes[0]!;
    const client = cluster.client();
    for (let i = 0; i < 6; i++) await client.mkdirs(`/kept-${i}`);
    const { txid } = await nameNodeStatus(nn);
    // The checkpoint at txid rolls the log: the next edit goes to a new segment named by its txid.
    await cluster.waitFor(
      async () => (await readdir(nn.dir)).includes(`fsimage_${pad(txid)}`),
      "a checkpoint",
    );
    const epoch = Math.max(
      ...(await readdir(nn.dir))
        .filter((name) => name.startsWith("epoch_"))
        .map((name) => Number(name.slice(6))),
    );
    const nextSegment = join(nn.dir, `edits_${pad(epoch)}_${pad(txid + 1)}`);
    await symlink("/dev/full", nextSegment);

    const exited = once(nn.child, "exit");
    const refused = await webhdfs(nn, "/lost", "op=MKDIRS", "PUT");
    const body = (await refused.json()) as { RemoteException: { exception: string; message: string } };
    // WebHDFS answers an IOException with 403, as HDFS's ExceptionHandler does.
    expect(refused.status).toBe(403);
    expect(body.RemoteException.exception).toBe("IOException");
    expect(body.RemoteException.message).toMatch(/edit log .* could not be written: .*ENOSPC/);
    const [code] = await exited;
    expect(code).toBe(1);
    expect(nn.log.join("\n")).toMatch(/edit log write failed: stopping/);

    await rm(nextSegment);
    const restarted = await cluster.restartNameNode(0);
    await cluster.waitFor(
      async () => (await nameNodeStatus(restarted)).haState === "active",
      "the restarted name node active",
    );
    const names = (await cluster.client().list("/")).map((status) => status.pathSuffix).sort();
    expect(names).toEqual(["kept-0", "kept-1", "kept-2", "kept-3", "kept-4", "kept-5"]);
    expect((await nameNodeStatus(restarted)).txid).toBe(txid);
    // And the log takes edits again.
    expect(await cluster.client().mkdirs("/after")).toBe(true);
  });

  it("answers a create, a rename and a delete retried after a failover with their first answers", async () => {
    cluster = await StorageCluster.start({ nameNodes: 2, dataNodes: 0 });
    const running = cluster;
    const activeIndex = async () => {
      const states = await Promise.all(running.nameNodes.map(nameNodeStatus));
      return states.findIndex((state) => state.haState === "active");
    };
    await cluster.waitFor(async () => (await activeIndex()) >= 0, "an active name node");
    const active = cluster.nameNodes[await activeIndex()]!;
    const standby = cluster.nameNodes.find((nn) => nn !== active)!;
    const ids = (callId: number) => ({
      [CLIENT_ID_HEADER]: "retrying-client",
      [CALL_ID_HEADER]: String(callId),
    });

    const createBody = { path: "/retried/file", clientName: "writer-1", owner: "tester", overwrite: false };
    const created = await postJson(`127.0.0.1:${active.rpcPort}`, "/rpc/create", createBody, 10_000, ids(1));
    expect(await (await webhdfs(active, "/retried/a", "op=MKDIRS", "PUT")).json()).toEqual({ boolean: true });
    const renamed = await webhdfs(active, "/retried/a", "op=RENAME&destination=/retried/b", "PUT", ids(2));
    expect(await renamed.json()).toEqual({ boolean: true });
    expect(await (await webhdfs(active, "/retried/c", "op=MKDIRS", "PUT")).json()).toEqual({ boolean: true });
    const deleted = await webhdfs(active, "/retried/c", "op=DELETE", "DELETE", ids(3));
    expect(await deleted.json()).toEqual({ boolean: true });

    // The standby has read every edit (with the calls' ids and answers) before the active dies.
    const { txid } = await nameNodeStatus(active);
    await cluster.waitFor(async () => (await nameNodeStatus(standby)).txid === txid, "the standby caught up");
    await stopRole(active, "SIGKILL");
    await cluster.waitFor(
      async () => (await nameNodeStatus(standby)).haState === "active",
      "the standby took over",
    );

    const retried = await postJson(`127.0.0.1:${standby.rpcPort}`, "/rpc/create", createBody, 10_000, ids(1));
    expect(retried).toEqual(created);
    expect(
      await (await webhdfs(standby, "/retried/a", "op=RENAME&destination=/retried/b", "PUT", ids(2))).json(),
    ).toEqual({
      boolean: true,
    });
    expect(await (await webhdfs(standby, "/retried/c", "op=DELETE", "DELETE", ids(3))).json()).toEqual({
      boolean: true,
    });

    // The same calls as new calls (another call id) run again, and meet what the first ones did.
    const again = postJson(`127.0.0.1:${standby.rpcPort}`, "/rpc/create", createBody, 10_000, ids(4));
    await expect(again).rejects.toBeInstanceOf(RemoteException);
    await expect(again).rejects.toMatchObject({ exception: "AlreadyBeingCreatedException" });
    expect(
      await (await webhdfs(standby, "/retried/a", "op=RENAME&destination=/retried/b", "PUT", ids(5))).json(),
    ).toEqual({
      boolean: false,
    });
    expect(await (await webhdfs(standby, "/retried/c", "op=DELETE", "DELETE", ids(6))).json()).toEqual({
      boolean: false,
    });
  });
});
