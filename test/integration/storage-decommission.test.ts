/**
 * Decommissioning data nodes with real processes, the way the operator will before scaling the
 * data-node StatefulSet down: `PUT /admin/decommission` on the active name node, wait for
 * DECOMMISSIONED in /status, then kill -9 the node and count what survived. All data nodes run on
 * 127.0.0.1, so the set names them as `127.0.0.1:<xferPort>`.
 */
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { signRequest } from "../../src/dataplane/storage/clusterAuth.js";
import {
  type StorageCluster as Cluster,
  type DataNodeProcess,
  DECLARED_DEAD_WITHIN_MS,
  type NameNodeStatus,
  StorageCluster,
  stopRole,
} from "./storage-cluster.js";

const MiB = 1024 * 1024;
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

interface DecommissionAnswer {
  status: number;
  body: {
    datanodes?: { hostName: string; xferPort: number; datanodeUuid: string; adminState: string }[];
    RemoteException?: { exception: string; javaClassName: string; message: string };
  };
}

/** The cluster secret of the pool under test: the operator signs its admin calls with it. */
let clusterSecret: Buffer | undefined;

async function putDecommission(webhdfsPort: number, body: string): Promise<DecommissionAnswer> {
  const response = await fetch(`http://127.0.0.1:${webhdfsPort}/admin/decommission`, {
    method: "PUT",
    headers: {
      "content-type": "application/json",
      ...signRequest(clusterSecret, "PUT", "/admin/decommission"),
    },
    body,
  });
  return { status: response.status, body: (await response.json()) as DecommissionAnswer["body"] };
}

async function haState(webhdfsPort: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${webhdfsPort}/status`, {
    signal: AbortSignal.timeout(2_000),
  });
  return ((await response.json()) as NameNodeStatus).haState;
}

async function activeNameNode(cluster: Cluster) {
  for (const nn of cluster.nameNodes) if ((await haState(nn.webhdfsPort)) === "active") return nn;
  throw new Error("no active name node");
}

const adminStateOf = (status: NameNodeStatus, node: DataNodeProcess) =>
  status.datanodes.find((dn) => dn.datanodeUuid === node.datanodeUuid)?.adminState;

/** The data node holding the most replicas (or internal blocks) of `paths`: the one worth decommissioning. */
async function busiestDataNode(cluster: Cluster, paths: string[]): Promise<DataNodeProcess> {
  const held = new Map<string, number>();
  for (const path of paths) {
    const located = (await cluster.blockLocations(path)) as unknown as {
      blocks: { locations: { datanodeUuid: string }[]; internal?: ({ datanodeUuid: string } | null)[] }[];
    };
    for (const block of located.blocks)
      for (const node of block.internal ?? block.locations)
        if (node) held.set(node.datanodeUuid, (held.get(node.datanodeUuid) ?? 0) + 1);
  }
  const [uuid] = [...held.entries()].sort((a, b) => b[1] - a[1])[0]!;
  return cluster.dataNodes.find((dn) => dn.datanodeUuid === uuid)!;
}

describe("BlockPool storage: decommissioning a data node of 4, replication 3", () => {
  let cluster: StorageCluster;
  let client: WebHdfsClient;
  const written = new Map<string, string>();

  beforeAll(async () => {
    cluster = await StorageCluster.start({
      dataNodes: 4,
      // Kills a data node and waits for it to be declared dead: 10 s of silence, a third of the
      // loopback cluster's default, still far above a busy machine's stalls.
      nameNodeArgs: ["--heartbeat-expiry-ms", "10000"],
    });
    client = cluster.client();
    clusterSecret = cluster.secret;
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  async function readAll(): Promise<void> {
    for (const [path, digest] of written) expect(sha(await client.open(path)), path).toBe(digest);
  }

  it("refuses a malformed body with 400 IllegalArgumentException", async () => {
    const port = cluster.nameNodes[0]!.webhdfsPort;
    for (const body of ["not json", '{"hosts": "127.0.0.1"}', '{"hosts": [1]}', "{}"]) {
      const answer = await putDecommission(port, body);
      expect(answer.status, body).toBe(400);
      expect(answer.body.RemoteException, body).toMatchObject({
        exception: "IllegalArgumentException",
        javaClassName: "java.lang.IllegalArgumentException",
      });
    }
    expect((await cluster.status()).decommissioningDataNodes).toBe(0);
  });

  it("copies a decommissioning node's blocks away; once DECOMMISSIONED it can be killed with nothing lost", async () => {
    for (const [name, size] of [
      ["three-blocks", 3 * MiB + 17],
      ["one-block", MiB],
      ["under-a-block", MiB - 1],
      ["small", 12_345],
      ["empty", 0],
    ] as const) {
      const data = randomBytes(size);
      await client.create(`/decommission/${name}`, data, { blockSize: MiB });
      written.set(`/decommission/${name}`, sha(data));
    }
    const victim = await busiestDataNode(cluster, [...written.keys()]);
    const others = cluster.dataNodes.filter((dn) => dn !== victim);

    const answer = await putDecommission(
      cluster.nameNodes[0]!.webhdfsPort,
      JSON.stringify({ hosts: [`127.0.0.1:${victim.xferPort}`] }),
    );
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      datanodes: [
        {
          hostName: "127.0.0.1",
          xferPort: victim.xferPort,
          datanodeUuid: victim.datanodeUuid,
          adminState: "DECOMMISSION_INPROGRESS",
        },
      ],
    });

    // While it drains, new writes go elsewhere.
    const during = randomBytes(2 * MiB + 3);
    await client.create("/decommission/during", during, { blockSize: MiB });
    written.set("/decommission/during", sha(during));
    for (const block of (await cluster.blockLocations("/decommission/during")).blocks)
      expect(block.locations.map((node) => node.datanodeUuid)).not.toContain(victim.datanodeUuid);

    await cluster.waitFor(
      async () => adminStateOf(await cluster.status(), victim) === "DECOMMISSIONED",
      "the node to be DECOMMISSIONED",
      90_000,
    );
    const status = await cluster.status();
    expect(status).toMatchObject({
      liveDataNodes: 3,
      decommissioningDataNodes: 0,
      decommissionedDataNodes: 1,
      deadDataNodes: 0,
      underReplicatedBlocks: 0,
      missingBlocks: 0,
    });
    // Capacity is what new data can use: the in-service nodes'.
    const inService = status.datanodes.filter((dn) => dn.datanodeUuid !== victim.datanodeUuid);
    expect(status.capacity).toBe(inService.reduce((sum, dn) => sum + dn.capacity, 0));
    // Every block has its three replicas without the decommissioned node.
    const remaining = new Set(others.map((dn) => dn.datanodeUuid));
    for (const path of written.keys())
      for (const block of (await cluster.blockLocations(path)).blocks)
        expect(
          block.locations.filter((node) => remaining.has(node.datanodeUuid)),
          path,
        ).toHaveLength(3);

    await stopRole(victim, "SIGKILL");
    // Straight after the kill, before the name node notices: reads go to the other replicas.
    await readAll();
    await cluster.waitFor(
      async () => adminStateOf(await cluster.status(), victim) === "DEAD",
      "the killed node to be DEAD",
      DECLARED_DEAD_WITHIN_MS,
    );
    expect(await cluster.status()).toMatchObject({
      liveDataNodes: 3,
      deadDataNodes: 1,
      decommissionedDataNodes: 0,
      underReplicatedBlocks: 0,
      missingBlocks: 0,
    });
    await readAll();
  }, 300_000);

  it("recommissions the nodes left out of the set: an empty set puts every node back in service", async () => {
    const port = cluster.nameNodes[0]!.webhdfsPort;
    const live = cluster.dataNodes.filter((dn) => dn.child.exitCode === null && dn.child.signalCode === null);
    expect(live).toHaveLength(3);
    const [leaving] = live as [DataNodeProcess];
    // Two in-service nodes left for replication 3: HDFS lets the decommission finish rather than hang.
    const answer = await putDecommission(port, JSON.stringify({ hosts: [`127.0.0.1:${leaving.xferPort}`] }));
    expect(answer.body.datanodes?.map((dn) => dn.datanodeUuid)).toEqual([leaving.datanodeUuid]);
    await cluster.waitFor(
      async () => adminStateOf(await cluster.status(), leaving) === "DECOMMISSIONED",
      "the second node to be DECOMMISSIONED",
    );

    expect(await putDecommission(port, JSON.stringify({ hosts: [] }))).toEqual({
      status: 200,
      body: { datanodes: [] },
    });
    const status = await cluster.status();
    expect(adminStateOf(status, leaving)).toBe("NORMAL");
    expect(status).toMatchObject({ liveDataNodes: 3, decommissionedDataNodes: 0, deadDataNodes: 1 });
    // Back in service: with three live nodes, a new file's three replicas need it.
    const data = randomBytes(MiB + 1);
    await client.create("/decommission/after", data, { blockSize: MiB });
    written.set("/decommission/after", sha(data));
    for (const block of (await cluster.blockLocations("/decommission/after")).blocks)
      expect(block.locations.map((node) => node.datanodeUuid)).toContain(leaving.datanodeUuid);
    await readAll();
  });
});

describe("BlockPool storage: decommissioning with RS-3-2 erasure coding and two name nodes", () => {
  let cluster: StorageCluster;
  let client: WebHdfsClient;

  beforeAll(async () => {
    cluster = await StorageCluster.start({
      nameNodes: 2,
      dataNodes: 6,
      // Kills a data node and waits for it to be declared dead: 10 s of silence, a third of the
      // loopback cluster's default, still far above a busy machine's stalls.
      nameNodeArgs: [
        "--heartbeat-expiry-ms",
        "10000",
        "--erasure-coding",
        JSON.stringify([{ path: "/ec", policy: "RS-3-2", cellSize: "1Mi" }]),
      ],
    });
    client = cluster.client();
    clusterSecret = cluster.secret;
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it("answers StandbyException on the standby", async () => {
    const active = await activeNameNode(cluster);
    const standby = cluster.nameNodes.find((nn) => nn !== active)!;
    const answer = await putDecommission(standby.webhdfsPort, JSON.stringify({ hosts: [] }));
    // 503 as from /readyz, with the StandbyException body of every other standby refusal.
    expect(answer.status).toBe(503);
    expect(answer.body.RemoteException).toMatchObject({
      exception: "StandbyException",
      javaClassName: "org.apache.hadoop.ipc.StandbyException",
    });
  });

  it("copies the internal blocks a decommissioning node holds to nodes outside their groups", async () => {
    const active = await activeNameNode(cluster);
    await cluster.waitFor(
      async () =>
        (
          (await (
            await fetch(`http://127.0.0.1:${active.webhdfsPort}/webhdfs/v1/ec?op=GETECPOLICY`)
          ).json()) as { name?: string } | null
        )?.name === "RS-3-2-1024k",
      "the pool's erasure-coding policy on /ec",
    );
    const files = new Map<string, Buffer>();
    // 1 MiB cells and blocks: a group holds 3 MiB, so 7 MiB + 5 is three groups, the last short.
    for (const [name, size] of [
      ["three-groups", 7 * MiB + 5],
      ["small", 1000],
    ] as const) {
      const data = randomBytes(size);
      await client.create(`/ec/${name}`, data, { blockSize: MiB });
      files.set(`/ec/${name}`, data);
    }
    const victim = await busiestDataNode(cluster, [...files.keys()]);

    const answer = await putDecommission(
      active.webhdfsPort,
      JSON.stringify({ hosts: [`127.0.0.1:${victim.xferPort}`] }),
    );
    expect(answer).toMatchObject({
      status: 200,
      body: { datanodes: [{ datanodeUuid: victim.datanodeUuid, adminState: "DECOMMISSION_INPROGRESS" }] },
    });
    await cluster.waitFor(
      async () => adminStateOf(await cluster.status(), victim) === "DECOMMISSIONED",
      "the node to be DECOMMISSIONED",
      90_000,
    );
    // Every internal block now has an in-service holder, which reads name first.
    for (const path of files.keys()) {
      const located = (await cluster.blockLocations(path)) as unknown as {
        blocks: { internal: ({ datanodeUuid: string } | null)[] }[];
      };
      for (const group of located.blocks)
        for (const node of group.internal) expect(node?.datanodeUuid, path).not.toBe(victim.datanodeUuid);
    }

    await stopRole(victim, "SIGKILL");
    for (const [path, data] of files) expect(sha(await client.open(path)), path).toBe(sha(data));
    await cluster.waitFor(
      async () => adminStateOf(await cluster.status(), victim) === "DEAD",
      "the killed node to be DEAD",
      DECLARED_DEAD_WITHIN_MS,
    );
    expect(await cluster.status()).toMatchObject({ underReplicatedBlocks: 0, missingBlocks: 0 });
    for (const [path, data] of files) expect(sha(await client.open(path)), path).toBe(sha(data));
  }, 300_000);
});
