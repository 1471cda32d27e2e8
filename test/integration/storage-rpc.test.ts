/**
 * The name node's two servers: the RPC port serves only `POST /rpc/<method>` and its framed
 * form (an Upgrade of `GET /rpc`, what the name node's clients use), each request checked
 * against its method's schema; the HTTP port serves WebHDFS, health, status and metrics, and no RPC.
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NameNodeRpc } from "../../src/dataplane/storage/dfsClient.js";
import { closeNameNodeChannels } from "../../src/dataplane/storage/rpcConnection.js";
import { type NameNodeProcess, StorageCluster } from "./storage-cluster.js";

describe("BlockPool storage: the name node's RPC and HTTP servers", () => {
  let cluster: StorageCluster;
  let nn: NameNodeProcess;

  beforeAll(async () => {
    cluster = await StorageCluster.start({ nameNodes: 1, dataNodes: 0 });
    nn = cluster.nameNodes[0]!;
  });

  afterAll(async () => {
    closeNameNodeChannels();
    await cluster?.stop();
  });

  const exceptionOf = async (response: Response) =>
    ((await response.json()) as { RemoteException: { exception: string; message: string } }).RemoteException;

  it("serves neither port's routes on the other", async () => {
    const rpc = `http://127.0.0.1:${nn.rpcPort}`;
    const http = `http://127.0.0.1:${nn.webhdfsPort}`;
    expect((await fetch(`${rpc}/rpc/getServiceState`, { method: "POST", body: "{}" })).status).toBe(200);
    expect((await fetch(`${http}/webhdfs/v1/?op=LISTSTATUS`)).status).toBe(200);
    expect((await fetch(`${http}/status`)).status).toBe(200);
    for (const route of ["/status", "/metrics", "/webhdfs/v1/?op=LISTSTATUS", "/readyz"]) {
      const response = await fetch(`${rpc}${route}`);
      expect(response.status, route).toBe(404);
      expect((await exceptionOf(response)).message).toContain("not served on the name node's RPC port");
    }
    const rpcOnHttp = await fetch(`${http}/rpc/getServiceState`, { method: "POST", body: "{}" });
    expect(rpcOnHttp.status).toBe(404);
    expect((await exceptionOf(rpcOnHttp)).message).toContain("RPC is on its RPC port");
  });

  it("refuses a request that does not match its method's schema, naming the field", async () => {
    const call = (method: string, body: unknown) =>
      fetch(`http://127.0.0.1:${nn.rpcPort}/rpc/${method}`, { method: "POST", body: JSON.stringify(body) });
    const badPath = await call("create", { path: 5, clientName: "c" });
    expect(badPath.status).toBe(400);
    expect(await exceptionOf(badPath)).toMatchObject({
      exception: "IllegalArgumentException",
      message: expect.stringMatching(/invalid create request: path: /),
    });
    const badExclude = await call("addBlock", { path: "/f", clientName: "c", excludeNodes: "all" });
    expect((await exceptionOf(badExclude)).message).toMatch(/invalid addBlock request: excludeNodes: /);
    const noClient = await call("complete", { path: "/f" });
    expect((await exceptionOf(noClient)).message).toMatch(/invalid complete request: clientName: /);
    const unknown = await call("format", {});
    expect((await exceptionOf(unknown)).message).toBe("unknown RPC format");
    // Nothing was created by the refused calls.
    expect(await cluster.client().list("/")).toEqual([]);
  });

  it("upgrades only GET /rpc to the framed protocol, which its clients then use", async () => {
    const upgrade = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(nn.rpcPort, "127.0.0.1", () => socket.end(request));
        let answer = "";
        socket.on("data", (chunk) => {
          answer += chunk.toString("latin1");
        });
        socket.on("close", () => resolve(answer));
        socket.on("error", reject);
      });
    const websocket = await upgrade(
      "GET /rpc HTTP/1.1\r\nHost: nn\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    expect(websocket).toMatch(/^HTTP\/1\.1 400 /);
    expect(websocket).toContain("UnsupportedOperationException");
    const framed = await upgrade(
      "GET /rpc HTTP/1.1\r\nHost: nn\r\nConnection: Upgrade\r\nUpgrade: tributary-rpc/1\r\n\r\n",
    );
    expect(framed).toMatch(/^HTTP\/1\.1 101 /);
    const rpc = new NameNodeRpc([`127.0.0.1:${nn.rpcPort}`]);
    expect(await rpc.call("getServiceState", {})).toEqual({ haState: "active" });
  });
});
