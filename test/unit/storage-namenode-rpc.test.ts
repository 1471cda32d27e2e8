/**
 * The name node's framed RPC (rpcConnection.ts) against a name node in this process: the same
 * validation, signing and RemoteExceptions as `POST /rpc/<method>`, many calls in flight on one
 * connection, retries answered by the retry cache, a lost connection reported as one the
 * failover policy retries, and a server without the framing still reached over plain HTTP.
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SIGNATURE_HEADER, signRequest, TIMESTAMP_HEADER } from "../../src/dataplane/storage/clusterAuth.js";
import { NameNodeRpc } from "../../src/dataplane/storage/dfsClient.js";
import { NameNode } from "../../src/dataplane/storage/namenode/namenode.js";
import { isConnectionError, postJson, RemoteException } from "../../src/dataplane/storage/protocol.js";
import { callNameNode, closeNameNodeChannels } from "../../src/dataplane/storage/rpcConnection.js";
import { createLogger } from "../../src/log.js";
import { inProcessNameNodeConfig } from "../support/namenode.js";
import { reservedPort } from "../support/ports.js";

const secret = randomBytes(32);

function startNameNode(nameDir: string, rpcPort = 0): Promise<NameNode> {
  const nameNode = new NameNode(
    inProcessNameNodeConfig(nameDir, { clusterSecret: secret, rpcPort }),
    createLogger("namenode-rpc-test"),
  );
  return nameNode.start().then(() => nameNode);
}

const errorOf = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (error: unknown) => error,
  );

describe("the name node's framed RPC", () => {
  let dir: string;
  let nameNode: NameNode;
  let address: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-nn-rpc-"));
    nameNode = await startNameNode(join(dir, "name"));
    address = `127.0.0.1:${nameNode.rpcPort}`;
  });

  afterAll(async () => {
    closeNameNodeChannels();
    await nameNode?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("runs many calls at once on one connection, each answered with its own result", async () => {
    const clients = Array.from({ length: 8 }, () => new NameNodeRpc([address]));
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const rpc = clients[i % clients.length]!;
        const path = `/many/f${i}`;
        expect(await rpc.call("create", { path, clientName: rpc.clientId, owner: "alice" })).toMatchObject({
          replication: 1,
        });
        expect(await rpc.call("complete", { path, clientName: rpc.clientId })).toBe(true);
      }),
    );
    const listing = nameNode.fs.listing("/many");
    expect(listing).toHaveLength(200);
    expect(listing.every((status) => status.owner === "alice")).toBe(true);
    expect(await callNameNode(address, { method: "getServiceState" }, {})).toEqual({ haState: "active" });
  });

  it("refuses what POST /rpc refuses, with the same RemoteExceptions", async () => {
    const invalid = await errorOf(callNameNode(address, { method: "create" }, { path: 7, clientName: "c" }));
    expect(invalid).toBeInstanceOf(RemoteException);
    expect((invalid as RemoteException).exception).toBe("IllegalArgumentException");
    expect((invalid as RemoteException).message).toContain("path");
    const overHttp = await errorOf(postJson(address, "/rpc/create", { path: 7, clientName: "c" }));
    expect((overHttp as RemoteException).message).toBe((invalid as RemoteException).message);

    const unknown = await errorOf(callNameNode(address, { method: "format" }, {}));
    expect((unknown as RemoteException).exception).toBe("UnsupportedOperationException");

    await callNameNode(address, { method: "create" }, { path: "/taken", clientName: "a" });
    const taken = await errorOf(
      callNameNode(address, { method: "create" }, { path: "/taken", clientName: "b" }),
    );
    expect((taken as RemoteException).exception).toBe("AlreadyBeingCreatedException");
    expect((taken as RemoteException).javaClassName).toBe(
      "org.apache.hadoop.hdfs.protocol.AlreadyBeingCreatedException",
    );
    // The connection still serves calls after refusals like these.
    expect(await callNameNode(address, { method: "getServiceState" }, {})).toEqual({ haState: "active" });
  });

  it("answers a retried call from the retry cache", async () => {
    const header = { method: "create", clientId: "client-retry", callId: "7" };
    const first = await callNameNode(address, header, { path: "/retried", clientName: "writer" });
    const retried = await callNameNode(address, header, { path: "/retried", clientName: "writer" });
    expect(retried).toEqual(first);
    const another = await errorOf(
      callNameNode(address, { ...header, callId: "8" }, { path: "/retried", clientName: "writer" }),
    );
    expect((another as RemoteException).exception).toBe("AlreadyBeingCreatedException");
  });

  it("takes data-node calls only signed with the cluster secret, and refuses an oversized body before reading it", async () => {
    const heartbeat = {
      datanode: { datanodeUuid: "dn-1", hostName: "127.0.0.1", xferPort: 9866, infoPort: 9864 },
      networkLocation: "/rack-a",
      capacity: 1e9,
      dfsUsed: 0,
      remaining: 1e9,
      numBlocks: 0,
    };
    const unsigned = await errorOf(callNameNode(address, { method: "sendHeartbeat" }, heartbeat));
    expect((unsigned as RemoteException).exception).toBe("AccessControlException");
    const forged = signRequest(randomBytes(32), "POST", "/rpc/sendHeartbeat");
    const wrongSecret = await errorOf(
      callNameNode(
        address,
        {
          method: "sendHeartbeat",
          timestamp: forged[TIMESTAMP_HEADER],
          signature: forged[SIGNATURE_HEADER],
        },
        heartbeat,
      ),
    );
    expect((wrongSecret as RemoteException).message).toContain("another secret");
    const signed = signRequest(secret, "POST", "/rpc/sendHeartbeat");
    const reply = await callNameNode<{ haState: string }>(
      address,
      { method: "sendHeartbeat", timestamp: signed[TIMESTAMP_HEADER], signature: signed[SIGNATURE_HEADER] },
      heartbeat,
    );
    expect(reply.haState).toBe("active");

    const huge = await errorOf(
      callNameNode(address, { method: "create" }, { path: "/huge", clientName: "x".repeat(2 * 1024 * 1024) }),
    );
    expect((huge as RemoteException).status).toBe(413);
    expect((huge as RemoteException).message).toContain("longer than maximum configured RPC length");
    // Skipped, not read: the connection goes on serving.
    expect(await callNameNode(address, { method: "getServiceState" }, {})).toEqual({ haState: "active" });
  });
});

describe("the name node's framed RPC when the connection or the server changes", () => {
  let dir: string;
  let plain: Server | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-nn-rpc-"));
  });

  afterEach(() => {
    closeNameNodeChannels();
    plain?.close();
    plain = undefined;
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("fails calls on a lost connection with an error the failover policy retries, then reconnects", async () => {
    const nameDir = join(dir, "restarted");
    // A port of its own, which no other process can be given while the name node is down.
    const first = await startNameNode(nameDir, await reservedPort());
    const address = `127.0.0.1:${first.rpcPort}`;
    expect(await callNameNode(address, { method: "getServiceState" }, {})).toEqual({ haState: "active" });
    await first.close();
    const lost = await errorOf(callNameNode(address, { method: "getServiceState" }, {}));
    expect(isConnectionError(lost)).toBe(true);
    // The same port again, as a restarted pod would have.
    const second = new NameNode(
      { ...first.config, rpcPort: first.rpcPort },
      createLogger("namenode-rpc-test"),
    );
    await second.start();
    try {
      expect(await callNameNode(address, { method: "getServiceState" }, {})).toEqual({ haState: "active" });
    } finally {
      closeNameNodeChannels();
      await second.close();
    }
  });

  it("falls back to POST /rpc/<method> against a server that does not upgrade", async () => {
    const seen: string[] = [];
    plain = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ haState: "active" }));
    });
    plain.on("upgrade", (_req, socket) => socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"));
    plain.listen(0, "127.0.0.1");
    await once(plain, "listening");
    const address = `127.0.0.1:${(plain.address() as AddressInfo).port}`;
    expect(await callNameNode(address, { method: "getServiceState" }, {})).toEqual({ haState: "active" });
    expect(await callNameNode(address, { method: "getServiceState" }, {})).toEqual({ haState: "active" });
    expect(seen).toEqual(["POST /rpc/getServiceState", "POST /rpc/getServiceState"]);
  });
});
