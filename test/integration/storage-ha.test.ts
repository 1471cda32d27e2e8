/**
 * Name-node high availability with real processes: two name nodes over one edit-log directory
 * (the fencing epoch beside it) and three data nodes. The active is killed with -9 in the middle
 * of a write; the standby takes over and every acknowledged file is intact.
 */
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { type NameNodeProcess, StorageCluster, stopRole } from "./storage-cluster.js";

const MiB = 1024 * 1024;
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

async function haStates(cluster: StorageCluster): Promise<string[]> {
  return Promise.all(
    cluster.nameNodes.map(async (nn) => {
      try {
        return (
          (await (
            await fetch(`http://127.0.0.1:${nn.webhdfsPort}/status`, { signal: AbortSignal.timeout(2_000) })
          ).json()) as { haState: string }
        ).haState;
      } catch {
        return "down";
      }
    }),
  );
}

describe("BlockPool storage: active and standby name nodes", () => {
  let cluster: StorageCluster;
  let client: WebHdfsClient;

  beforeAll(async () => {
    cluster = await StorageCluster.start({ nameNodes: 2, dataNodes: 3 });
    client = cluster.client();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it("has exactly one active; the standby refuses clients with StandbyException", async () => {
    const states = await haStates(cluster);
    expect(states.sort()).toEqual(["active", "standby"]);
    const standby = cluster.nameNodes[(await haStates(cluster)).indexOf("standby")]!;
    const response = await fetch(`http://127.0.0.1:${standby.webhdfsPort}/webhdfs/v1/?op=LISTSTATUS`);
    expect(response.status).toBe(403);
    expect(
      ((await response.json()) as { RemoteException: { exception: string } }).RemoteException.exception,
    ).toBe("StandbyException");
    expect((await fetch(`http://127.0.0.1:${standby.webhdfsPort}/readyz`)).status).toBe(503);
  });

  it("fails over when the active is killed mid-write: acknowledged files intact, writes continue", async () => {
    const acknowledged = new Map<string, Buffer>();
    for (const [path, size] of [
      ["/ha/a.bin", 3 * MiB + 5],
      ["/ha/b.bin", 1],
      ["/ha/c.bin", 0],
    ] as const) {
      const data = randomBytes(size);
      await client.create(path, data, { blockSize: MiB });
      acknowledged.set(path, data);
    }
    const states = await haStates(cluster);
    const activeIndex = states.indexOf("active");
    const standbyIndex = 1 - activeIndex;

    // A slow writer: 256 KiB pieces, so the kill lands between blocks of a 4 MiB file.
    const inFlight = randomBytes(4 * MiB);
    let sent = 0;
    const slowly = async function* () {
      for (let at = 0; at < inFlight.length; at += 256 * 1024) {
        sent = at;
        yield inFlight.subarray(at, at + 256 * 1024);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const writing = client.create("/ha/in-flight.bin", slowly(), { blockSize: MiB }).then(
      () => "acknowledged" as const,
      (error: unknown) => error as Error,
    );
    await cluster.waitFor(() => sent >= 1.5 * MiB, "the slow write to pass its first block");
    await stopRole(cluster.nameNodes[activeIndex]!, "SIGKILL");
    await cluster.waitFor(
      async () => (await haStates(cluster))[standbyIndex] === "active",
      "the standby to become active",
    );

    // The client and the data nodes follow whichever name node says it is active, and the data
    // node keeps the block in flight until it is acknowledged: the write survives the failover.
    const outcome = await writing;
    expect(outcome).toBe("acknowledged");
    expect(sha(await client.open("/ha/in-flight.bin"))).toBe(sha(inFlight));
    for (const [path, data] of acknowledged) expect(sha(await client.open(path)), path).toBe(sha(data));

    const after = randomBytes(2 * MiB + 3);
    await client.create("/ha/after-failover.bin", after, { blockSize: MiB });
    expect(sha(await client.open("/ha/after-failover.bin"))).toBe(sha(after));

    // The old active comes back as the standby: the new active holds the newer epoch.
    await cluster.startNameNode(cluster.nameNodes[activeIndex]!.dir, cluster.nameNodes[activeIndex]!);
    await cluster.waitFor(
      async () =>
        (await haStates(cluster)).join() === (activeIndex === 0 ? "standby,active" : "active,standby"),
      "the old active to rejoin as standby",
    );
  });

  it("refuses the writes of a deposed active that still believes it leads: fenced by the epoch, it steps down", async () => {
    const states = await haStates(cluster);
    const oldIndex = states.indexOf("active");
    const successorIndex = states.indexOf("standby");
    const oldPorts = { ...cluster.nameNodes[oldIndex]! };
    const successorPorts = { ...cluster.nameNodes[successorIndex]! };
    const nameDir = oldPorts.dir;
    // Both stop cleanly (the active releases its epoch). The old active comes back first, alone,
    // and renews its epoch only at start: its next renewal is ten minutes away, as if its renewals
    // were stalled by a long GC pause, while it keeps serving clients. So nothing but the epoch
    // checked at the write can tell it that it was deposed (a SIGSTOPped process would look at
    // its epoch first thing on waking, and step down before it read the write).
    await stopRole(cluster.nameNodes[successorIndex]!);
    await stopRole(cluster.nameNodes[oldIndex]!);
    const { nameNodeArgs } = cluster.options;
    cluster.options.nameNodeArgs = [...(nameNodeArgs ?? []), "--tail-interval-ms", "600000"];
    let old: NameNodeProcess;
    try {
      old = await cluster.startNameNode(nameDir, oldPorts);
    } finally {
      cluster.options.nameNodeArgs = nameNodeArgs;
    }
    expect((await haStates(cluster))[oldIndex]).toBe("active");
    // The successor sees the epoch go unrenewed past the takeover timeout and claims the next one.
    const successor = await cluster.startNameNode(nameDir, successorPorts);
    await cluster.waitFor(
      async () => (await haStates(cluster))[successorIndex] === "active",
      "the standby to take over",
    );
    // Two name nodes say they are active: the old one has not stepped down when it is written to.
    expect(await haStates(cluster)).toEqual(["active", "active"]);

    // Its write (as the user who owns /ha) passes its own active and permission checks and is
    // refused when the edit is synced, because a newer epoch exists: the refusal names the
    // superseded epoch, not the standby state a name node that had stepped down would give.
    const stale = await fetch(
      `http://127.0.0.1:${old.webhdfsPort}/webhdfs/v1/ha/written-by-deposed?op=MKDIRS&user.name=tester`,
      { method: "PUT" },
    );
    const refusal = ((await stale.json()) as { RemoteException: { exception: string; message: string } })
      .RemoteException;
    expect(stale.status, refusal.message).toBe(403);
    expect(refusal.exception, refusal.message).toBe("StandbyException");
    expect(refusal.message).toMatch(
      /^Operation not acknowledged: this name node's epoch \d+ was superseded by a newer active/,
    );
    // The refusal made it step down, long before its next renewal would have.
    await cluster.waitFor(
      async () => (await haStates(cluster))[oldIndex] === "standby",
      "the deposed active to step down",
    );
    const listing = await client.list("/ha");
    expect(listing.map((status) => status.pathSuffix)).not.toContain("written-by-deposed");

    // Back with the pool's usual timings, it tails the new active's edits as a standby.
    await stopRole(old);
    const rejoined = await cluster.startNameNode(nameDir, oldPorts);
    expect((await haStates(cluster))[oldIndex]).toBe("standby");
    await client.mkdirs("/ha/after-fencing");
    await cluster.waitFor(async () => {
      const status = (await (await fetch(`http://127.0.0.1:${rejoined.webhdfsPort}/status`)).json()) as {
        txid: number;
      };
      const active = (await (await fetch(`http://127.0.0.1:${successor.webhdfsPort}/status`)).json()) as {
        txid: number;
      };
      return status.txid === active.txid;
    }, "the deposed name node to catch up as standby");
  });
});
