/**
 * What a BlockPool refuses so that one client cannot take a name or data node's memory or
 * connections: block sizes past the maximum, WebHDFS writers past a data node's maximum, `/rpc`
 * bodies past what a call needs, and requests that never finish arriving. One name node and one
 * data node on loopback (replication 1), the data node with small limits: 2 writers, a 1 s
 * headers timeout and a 1.5 s request timeout.
 */
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { type ClientRequest, request as httpRequest, type IncomingMessage } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebHdfsClient } from "../../src/dataplane/storage/client.js";
import { postJson, RemoteException } from "../../src/dataplane/storage/protocol.js";
import { type DataNodeProcess, StorageCluster } from "./storage-cluster.js";

const MiB = 1024 * 1024;
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

interface Answer {
  status: number;
  headers: IncomingMessage["headers"];
  json: { RemoteException?: { exception: string; javaClassName: string; message: string } };
}

async function answerOf(req: ClientRequest): Promise<Answer> {
  const [res] = (await once(req, "response")) as [IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return { status: res.statusCode ?? 0, headers: res.headers, json: text ? JSON.parse(text) : {} };
}

/** Sends a raw request and resolves when the server closes the connection: how long it took and what it said. */
function untilClosed(port: number, start: string, trickle: string): Promise<{ ms: number; answer: string }> {
  return new Promise((resolve, reject) => {
    const began = Date.now();
    let answer = "";
    const socket = connect(port, "127.0.0.1", () => socket.write(start));
    // One more piece every 200 ms, never the end: a client holding the connection open.
    const timer = setInterval(() => socket.write(trickle), 200);
    socket.on("data", (chunk) => {
      answer += chunk.toString("latin1");
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearInterval(timer);
      resolve({ ms: Date.now() - began, answer });
    });
    setTimeout(() => {
      clearInterval(timer);
      socket.destroy();
      reject(new Error(`port ${port} still held the connection open after 20 s`));
    }, 20_000).unref();
  });
}

describe("BlockPool storage: limits that keep a node's resources bounded", () => {
  let cluster: StorageCluster;
  let client: WebHdfsClient;
  let dataNode: DataNodeProcess;

  beforeAll(async () => {
    cluster = await StorageCluster.start({
      dataNodes: 1,
      nameNodeArgs: ["--replication", "1"],
      dataNodeArgs: [
        "--max-webhdfs-writers",
        "2",
        "--headers-timeout-ms",
        "1000",
        "--request-timeout-ms",
        "1500",
      ],
    });
    client = cluster.client();
    dataNode = cluster.dataNodes[0]!;
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  /** A WebHDFS CREATE sent straight to the data node, as a client does after the name node's 307. */
  const createOnDataNode = (path: string, query = "") =>
    httpRequest({
      host: "127.0.0.1",
      port: dataNode.infoPort,
      method: "PUT",
      path: `/webhdfs/v1${path}?op=CREATE&user.name=tester${query}`,
      headers: { "transfer-encoding": "chunked" },
    });

  const exists = async (path: string) =>
    client.status(path).then(
      () => true,
      (error: unknown) => {
        if (error instanceof RemoteException && error.status === 404) return false;
        throw error;
      },
    );

  it("refuses a blocksize above the maximum with IllegalArgumentException, at the name node and at the data node", async () => {
    const gib = 1024 * MiB;
    const nameNode = await fetch(
      `http://127.0.0.1:${cluster.nameNodes[0]!.webhdfsPort}/webhdfs/v1/limits/huge-blocks?op=CREATE&blocksize=${gib}&user.name=tester`,
      { method: "PUT", redirect: "manual" },
    );
    // Refused at the first step, before the client sends a byte of the file.
    expect(nameNode.status).toBe(400);
    const refusal = (await nameNode.json()) as Answer["json"];
    expect(refusal.RemoteException).toMatchObject({
      exception: "IllegalArgumentException",
      javaClassName: "java.lang.IllegalArgumentException",
    });
    expect(refusal.RemoteException!.message).toContain(`${gib} > ${512 * MiB}`);

    // A client that goes to a data node directly is refused the same way.
    const direct = createOnDataNode("/limits/huge-blocks", `&blocksize=${gib}`);
    direct.end("a few bytes");
    const answer = await answerOf(direct);
    expect(answer.status).toBe(400);
    expect(answer.json.RemoteException?.exception).toBe("IllegalArgumentException");
    expect(await exists("/limits/huge-blocks")).toBe(false);

    // The maximum itself is allowed.
    await client.create("/limits/largest-blocks", "small file, large blocks", { blockSize: 512 * MiB });
    expect((await client.status("/limits/largest-blocks")).blockSize).toBe(512 * MiB);
  });

  it("refuses the writer past --max-webhdfs-writers with 503 RetriableException and Retry-After; Tributary's client waits and retries", async () => {
    const held = ["/limits/held-0", "/limits/held-1"].map((path) => {
      const upload = createOnDataNode(path);
      upload.on("error", () => undefined);
      upload.write(randomBytes(64 * 1024));
      return { path, upload, answer: answerOf(upload) };
    });
    await cluster.waitFor(
      async () => (await exists("/limits/held-0")) && (await exists("/limits/held-1")),
      "both held writers to have created their files",
    );

    const third = createOnDataNode("/limits/third");
    third.on("error", () => undefined);
    third.end("refused before it is read");
    const refused = await answerOf(third);
    expect(refused.status).toBe(503);
    expect(refused.headers["retry-after"]).toBe("1");
    expect(refused.json.RemoteException).toMatchObject({
      exception: "RetriableException",
      javaClassName: "org.apache.hadoop.ipc.RetriableException",
    });
    expect(refused.json.RemoteException!.message).toContain("TRIBUTARY_MAX_WEBHDFS_WRITERS");
    expect(await exists("/limits/third")).toBe(false);

    // The client is refused too, and retries after Retry-After until a writer finishes.
    const data = randomBytes(200_000);
    const patient = client.create("/limits/patient", data);
    await cluster.waitFor(async () => {
      const metrics = await (await fetch(`http://127.0.0.1:${dataNode.infoPort}/metrics`)).text();
      return /tributary_datanode_webhdfs_writes_refused_total ([2-9]|\d\d)/.test(metrics);
    }, "the client's CREATE to be refused");
    held[0]!.upload.end();
    expect((await held[0]!.answer).status).toBe(201);
    await patient;
    expect(sha(await client.open("/limits/patient"))).toBe(sha(data));
    held[1]!.upload.end();
    expect((await held[1]!.answer).status).toBe(201);
  });

  it("answers 413 to an /rpc body larger than its call needs, declared or streamed", async () => {
    const rpcPort = cluster.nameNodes[0]!.rpcPort;
    const padded = Buffer.from(
      JSON.stringify({ path: "/limits/padded", clientName: "padded", padding: "x".repeat(2 * MiB) }),
    );
    for (const streamed of [false, true]) {
      const call = httpRequest({
        host: "127.0.0.1",
        port: rpcPort,
        method: "POST",
        path: "/rpc/create",
        headers: streamed
          ? { "content-type": "application/json", "transfer-encoding": "chunked" }
          : { "content-type": "application/json", "content-length": padded.length },
      });
      call.on("error", () => undefined);
      for (let at = 0; at < padded.length; at += 64 * 1024) call.write(padded.subarray(at, at + 64 * 1024));
      call.end();
      const answer = await answerOf(call);
      expect(answer.status).toBe(413);
      expect(answer.headers.connection).toBe("close");
      expect(answer.json.RemoteException?.exception).toBe("IOException");
      expect(answer.json.RemoteException?.message).toMatch(
        streamed
          ? /^Requested data length of more than 1048576 is longer than maximum configured RPC length 1048576 for RPC create/
          : new RegExp(
              `^Requested data length ${padded.length} is longer than maximum configured RPC length 1048576 for RPC create`,
            ),
      );
    }
    expect(await exists("/limits/padded")).toBe(false);
    // Calls of the ordinary size are answered as before.
    expect(await postJson(`127.0.0.1:${rpcPort}`, "/rpc/getServiceState", {})).toEqual({ haState: "active" });
  });

  it("closes a request whose headers never end on both data-node ports, and a body trickled where none is read", async () => {
    for (const port of [dataNode.infoPort, dataNode.xferPort]) {
      const slowloris = await untilClosed(
        port,
        "GET /healthz HTTP/1.1\r\nHost: datanode\r\n",
        "X-Padding: 1\r\n",
      );
      expect(slowloris.answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(slowloris.ms).toBeGreaterThanOrEqual(1_000);
    }
    const trickled = await untilClosed(
      dataNode.infoPort,
      "POST /healthz HTTP/1.1\r\nHost: datanode\r\nContent-Length: 100000\r\n\r\n",
      "x",
    );
    expect(trickled.ms).toBeGreaterThanOrEqual(1_500);
  });

  it("does not cut an upload that takes longer than the request timeout", async () => {
    const pieces = Array.from({ length: 5 }, () => randomBytes(50_000));
    const upload = createOnDataNode("/limits/slow-upload");
    const answer = answerOf(upload);
    for (const piece of pieces) {
      upload.write(piece);
      await new Promise((resolve) => setTimeout(resolve, 600));
    }
    upload.end();
    expect((await answer).status).toBe(201);
    expect(sha(await client.open("/limits/slow-upload"))).toBe(sha(Buffer.concat(pieces)));
  });
});
