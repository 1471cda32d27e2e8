/**
 * The pool's internal calls need its cluster secret: a host that reaches a name node or a data
 * node cannot register itself as a data node, decommission nodes, delete replicas, or have a
 * data node forward a block to an address of its choosing. The calls the pool makes itself,
 * signed, keep working; WebHDFS and the read-only health endpoints stay open.
 */
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { signRequest } from "../../src/dataplane/storage/clusterAuth.js";
import { StorageCluster } from "./storage-cluster.js";

const notAuthorized = {
  RemoteException: {
    exception: "AccessControlException",
    javaClassName: "org.apache.hadoop.security.AccessControlException",
    message: expect.stringMatching(/^not authorized: /),
  },
};

describe("BlockPool storage: internal calls signed with the cluster secret", () => {
  let cluster: StorageCluster;
  let client: WebHdfsClient;
  let rpc: string;
  let web: string;
  const heartbeat = {
    datanode: { datanodeUuid: "intruder", hostName: "127.0.0.1", xferPort: 1, infoPort: 2 },
    networkLocation: "/rack-a",
    capacity: 1 << 40,
    dfsUsed: 0,
    remaining: 1 << 40,
    numBlocks: 0,
  };

  const sendHeartbeat = (headers: Record<string, string>) =>
    fetch(`${rpc}/rpc/sendHeartbeat`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(heartbeat),
    });

  beforeAll(async () => {
    cluster = await StorageCluster.start({ dataNodes: 3 });
    client = cluster.client();
    rpc = `http://127.0.0.1:${cluster.nameNodes[0]!.rpcPort}`;
    web = `http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}`;
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it("refuses a heartbeat without a signature, with another secret or an old timestamp", async () => {
    for (const headers of [
      {},
      signRequest(randomBytes(32), "POST", "/rpc/sendHeartbeat"),
      signRequest(cluster.secret, "POST", "/rpc/sendHeartbeat", Date.now() - 6 * 60_000),
      signRequest(cluster.secret, "POST", "/rpc/blockReport"),
    ]) {
      const response = await sendHeartbeat(headers);
      expect(response.status).toBe(403);
      expect(await response.json()).toEqual(notAuthorized);
    }
    const status = await cluster.status();
    expect(status.liveDataNodes).toBe(3);
    expect(JSON.stringify(status)).not.toContain("intruder");
  });

  it("refuses the other data-node RPCs without a signature", async () => {
    for (const method of ["blockReport", "blockReceivedAndDeleted", "reportBadBlocks"]) {
      const response = await fetch(`${rpc}/rpc/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ datanode: heartbeat.datanode, blocks: [], received: [], deleted: [] }),
      });
      expect(response.status, method).toBe(403);
    }
  });

  it("refuses /admin/decommission without a signature and serves it signed", async () => {
    const body = JSON.stringify({ hosts: [] });
    const refused = await fetch(`${web}/admin/decommission`, { method: "PUT", body });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toEqual(notAuthorized);
    const served = await fetch(`${web}/admin/decommission`, {
      method: "PUT",
      body,
      headers: signRequest(cluster.secret, "PUT", "/admin/decommission"),
    });
    expect(served.status).toBe(200);
  });

  it("keeps /status, /metrics, /healthz and WebHDFS open", async () => {
    for (const path of ["/status", "/metrics", "/healthz", "/readyz"])
      expect((await fetch(`${web}${path}`)).status, path).toBe(200);
    await client.create("/open/file", Buffer.from("written without the secret"));
    expect((await client.open("/open/file")).toString()).toBe("written without the secret");
  });

  it("refuses DELETE /blocks/<id> on a data node without a signature, and deletes when signed", async () => {
    await client.create("/victim", Buffer.from("a replica someone wants gone"));
    const [located] = (await cluster.blockLocations("/victim")).blocks;
    const blockId = located!.block.blockId;
    const holder = cluster.dataNodes.find(
      (node) => node.datanodeUuid === located!.locations[0]!.datanodeUuid,
    )!;
    const url = `http://127.0.0.1:${holder.xferPort}/blocks/${blockId}`;

    const refused = await fetch(url, { method: "DELETE" });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toEqual(notAuthorized);
    const stillThere = await fetch(`${url}?generationStamp=${located!.block.generationStamp}`);
    expect(stillThere.status).toBe(200);
    await stillThere.arrayBuffer();

    const deleted = await fetch(url, {
      method: "DELETE",
      headers: signRequest(cluster.secret, "DELETE", `/blocks/${blockId}`),
    });
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toEqual({ boolean: true });
  });

  it("forwards a block only to registered data nodes", async () => {
    // A listener standing for any host:port inside the cluster: it must never see the block.
    let reached = 0;
    const target: Server = createServer((req, res) => {
      reached++;
      req.resume();
      res.end();
    });
    target.listen(0, "127.0.0.1");
    await new Promise((resolve) => target.once("listening", resolve));
    const { port } = target.address() as AddressInfo;
    const [first, second] = cluster.dataNodes;
    const put = (targets: unknown[], blockId: number) =>
      fetch(`http://127.0.0.1:${first!.xferPort}/blocks/${blockId}?generationStamp=1`, {
        method: "PUT",
        headers: { "x-tributary-targets": JSON.stringify(targets) },
        body: Buffer.from("block bytes"),
      });
    try {
      const refused = await put(
        [{ datanodeUuid: "x", hostName: "127.0.0.1", xferPort: port, infoPort: port }],
        990_001,
      );
      expect(refused.status).toBe(403);
      const body = (await refused.json()) as { RemoteException: { message: string } };
      expect(body).toEqual(notAuthorized);
      expect(body.RemoteException.message).toContain(`127.0.0.1:${port}`);
      expect(reached).toBe(0);

      // A registered data node as the next hop is a pipeline as the name node hands them out.
      const accepted = await put(
        [
          {
            datanodeUuid: second!.datanodeUuid,
            hostName: "127.0.0.1",
            xferPort: second!.xferPort,
            infoPort: second!.infoPort,
          },
        ],
        990_002,
      );
      expect(accepted.status).toBe(200);
      await accepted.arrayBuffer();
    } finally {
      target.close();
    }
  });
});
