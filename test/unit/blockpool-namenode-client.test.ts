/**
 * The operator's name-node client against a local HTTP server that answers as the name node's
 * endpoints do (200 with JSON, 503 with a RemoteException from a standby, no answer at all).
 * The real name node is exercised in test/integration/blockpool-storage.test.ts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decommissionThroughActive,
  NameNodeError,
  nameNodeStatus,
  probeNameNodes,
  putDecommission,
} from "../../src/controllers/blockpool/nameNodeClient.js";
import { unusedPort } from "../support/ports.js";

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

/** The deadline of a call that should be answered: it only bounds a hang. */
const ANSWER_MS = 30_000;
const servers: Server[] = [];
const requests: { url: string; method: string; body: string }[] = [];

async function serve(handler: Handler): Promise<string> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on("end", () => {
      requests.push({ url: req.url ?? "", method: req.method ?? "", body });
      handler(req, body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

const standbyRefusal = {
  RemoteException: {
    exception: "StandbyException",
    javaClassName: "org.apache.hadoop.ipc.StandbyException",
    message: "Operation category WRITE is not supported in state standby",
  },
};

const status = (haState: string) => ({
  haState,
  txid: 12,
  liveDataNodes: 2,
  deadDataNodes: 1,
  capacity: 1000,
  used: 10,
  files: 3,
  blocks: 1,
  underReplicatedBlocks: 0,
  missingBlocks: 0,
  corruptReplicas: 0,
  erasureCodingPolicies: [],
  datanodes: [
    { hostName: "lake-datanode-0", xferPort: 1, datanodeUuid: "a", adminState: "NORMAL", numBlocks: 1 },
  ],
});

let active: string;
let standby: string;
let silent: string;
let refused: string;

beforeAll(async () => {
  const nameNode =
    (haState: string): Handler =>
    (req, body, res) => {
      if (req.url === "/status" && req.method === "GET") return json(res, 200, status(haState));
      if (req.url === "/admin/decommission" && req.method === "PUT") {
        if (haState !== "active") return json(res, 503, standbyRefusal);
        const { hosts } = JSON.parse(body) as { hosts: string[] };
        return json(res, 200, {
          datanodes: hosts.map((host) => ({
            hostName: `${host}.lake-datanode.data.svc`,
            xferPort: 9866,
            datanodeUuid: host,
            adminState: "DECOMMISSION_INPROGRESS",
          })),
        });
      }
      json(res, 404, { RemoteException: { exception: "UnsupportedOperationException", message: "no" } });
    };
  active = await serve(nameNode("active"));
  standby = await serve(nameNode("standby"));
  // Accepts the connection and never answers: a name node stuck, or a black-holed route.
  silent = await serve(() => {});
  refused = `http://127.0.0.1:${await unusedPort()}`;
});

afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

describe("the name-node client", () => {
  it("reads /status, keeping the fields the operator uses", async () => {
    const answer = await nameNodeStatus(active, ANSWER_MS);
    expect(answer).toMatchObject({ haState: "active", liveDataNodes: 2, files: 3, capacity: 1000 });
    expect(answer.datanodes).toEqual([
      { hostName: "lake-datanode-0", xferPort: 1, datanodeUuid: "a", adminState: "NORMAL" },
    ]);
  });

  it("PUTs the whole decommission set as JSON and returns the admin states", async () => {
    const datanodes = await putDecommission(active, ["lake-datanode-3", "lake-datanode-4"], ANSWER_MS);
    expect(requests.at(-1)).toEqual({
      url: "/admin/decommission",
      method: "PUT",
      body: '{"hosts":["lake-datanode-3","lake-datanode-4"]}',
    });
    expect(datanodes.map((node) => node.adminState)).toEqual([
      "DECOMMISSION_INPROGRESS",
      "DECOMMISSION_INPROGRESS",
    ]);
    expect(await putDecommission(active, [], ANSWER_MS)).toEqual([]);
    expect(requests.at(-1)?.body).toBe('{"hosts":[]}');
  });

  it("a standby's 503 is an error carrying the RemoteException", async () => {
    const refusal = await putDecommission(standby, ["lake-datanode-3"], ANSWER_MS).catch(
      (error: unknown) => error,
    );
    expect(refusal).toBeInstanceOf(NameNodeError);
    expect(refusal).toMatchObject({ statusCode: 503, exception: "StandbyException" });
    expect((refusal as Error).message).toBe(
      `PUT ${standby}/admin/decommission: 503 StandbyException: Operation category WRITE is not supported in state standby`,
    );
  });

  it("no answer within the deadline, a refused connection, a body of another shape: errors that say so", async () => {
    await expect(nameNodeStatus(silent, 200)).rejects.toThrow(
      `GET ${silent}/status: no answer within 200 ms`,
    );
    await expect(nameNodeStatus(refused, ANSWER_MS)).rejects.toThrow(`GET ${refused}/status: ECONNREFUSED`);
    const odd = await serve((_req, _body, res) => json(res, 200, { haState: "active" }));
    await expect(nameNodeStatus(odd, ANSWER_MS)).rejects.toThrow(/unexpected answer \(liveDataNodes: /);
    const html = await serve((_req, _body, res) => {
      res.writeHead(502);
      res.end("<html>bad gateway</html>");
    });
    await expect(nameNodeStatus(html, ANSWER_MS)).rejects.toThrow(
      `GET ${html}/status: 502 <html>bad gateway</html>`,
    );
  });

  it("probes every name node at once; failures are answers, not throws", async () => {
    const answers = await probeNameNodes(
      [
        { pod: "lake-namenode-0", url: refused },
        { pod: "lake-namenode-1", url: active },
      ],
      ANSWER_MS,
    );
    expect(answers[0]).toEqual({
      pod: "lake-namenode-0",
      url: refused,
      error: `GET ${refused}/status: ECONNREFUSED`,
    });
    expect(answers[1]).toMatchObject({ pod: "lake-namenode-1", status: { haState: "active" } });
  });

  it("sends the decommission set to the active name node first, and past a standby that refuses", async () => {
    const answers = await probeNameNodes(
      [
        { pod: "lake-namenode-0", url: standby },
        { pod: "lake-namenode-1", url: active },
      ],
      ANSWER_MS,
    );
    const before = requests.length;
    const result = await decommissionThroughActive(answers, ["lake-datanode-3"], ANSWER_MS);
    expect(result).toMatchObject({
      pod: "lake-namenode-1",
      datanodes: [{ adminState: "DECOMMISSION_INPROGRESS" }],
    });
    // The active was asked first: the standby was not bothered.
    expect(requests.slice(before).map((request) => request.method)).toEqual(["PUT"]);

    // Taken over since the probe (the one that said active is a standby now): every name node is
    // asked, the one reported active first, and every refusal is reported.
    const failedOver = answers.map((answer) => ({ ...answer, url: standby }));
    const refusedEverywhere = await decommissionThroughActive(failedOver, ["lake-datanode-3"], ANSWER_MS);
    expect(refusedEverywhere).toEqual({
      error: expect.stringMatching(
        /^lake-namenode-1: PUT .* 503 StandbyException: .*; lake-namenode-0: PUT .* 503 StandbyException: /,
      ),
    });
  });
});
