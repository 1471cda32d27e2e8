/**
 * The cluster secret's signatures: what they cover (method, path, time), what they refuse, and
 * the operator's name-node client signing its administration calls.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { nameNodeStatus, putDecommission } from "../../src/controllers/blockpool/nameNodeClient.js";
import {
  checkSignature,
  loadClusterSecret,
  MAX_CLOCK_SKEW_MS,
  signRequest,
} from "../../src/dataplane/storage/clusterAuth.js";
import { RemoteException } from "../../src/dataplane/storage/protocol.js";

const secret = randomBytes(32);
const now = 1_800_000_000_000;

function refusal(check: () => void): RemoteException {
  try {
    check();
  } catch (error) {
    return error as RemoteException;
  }
  throw new Error("expected a refusal");
}

describe("cluster secret signatures", () => {
  it("accepts a request signed for its method and path, with any query", () => {
    const headers = signRequest(secret, "POST", "/rpc/sendHeartbeat", now);
    expect(() => checkSignature(secret, "POST", "/rpc/sendHeartbeat", headers, now)).not.toThrow();
    const remove = signRequest(secret, "DELETE", "/blocks/7", now);
    expect(() =>
      checkSignature(secret, "DELETE", "/blocks/7?x=1", remove, now + MAX_CLOCK_SKEW_MS),
    ).not.toThrow();
  });

  it("refuses with HDFS's AccessControlException (403): unsigned, another secret, path, method or time", () => {
    const signed = signRequest(secret, "PUT", "/admin/decommission", now);
    const cases: [string, IncomingHttpHeaders, string, string, number, RegExp][] = [
      ["unsigned", {}, "PUT", "/admin/decommission", now, /has no x-tributary-signature header/],
      [
        "another secret",
        signRequest(randomBytes(32), "PUT", "/admin/decommission", now),
        "PUT",
        "/admin/decommission",
        now,
        /another secret/,
      ],
      ["another path", signed, "PUT", "/admin/other", now, /another secret/],
      ["another method", signed, "POST", "/admin/decommission", now, /another secret/],
      ["too old", signed, "PUT", "/admin/decommission", now + MAX_CLOCK_SKEW_MS + 1, /check the clocks/],
      [
        "from the future",
        signed,
        "PUT",
        "/admin/decommission",
        now - MAX_CLOCK_SKEW_MS - 1,
        /check the clocks/,
      ],
      [
        "a truncated signature",
        { ...signed, "x-tributary-signature": "AAAA" },
        "PUT",
        "/admin/decommission",
        now,
        /another secret/,
      ],
    ];
    for (const [what, headers, method, path, at, message] of cases) {
      const error = refusal(() => checkSignature(secret, method, path, headers, at));
      expect(error, what).toBeInstanceOf(RemoteException);
      expect(error.exception, what).toBe("AccessControlException");
      expect(error.status, what).toBe(403);
      expect(error.message, what).toMatch(/^not authorized: /);
      expect(error.message, what).toMatch(message);
    }
  });

  it("lets everything through without a secret, and signs nothing", () => {
    expect(signRequest(undefined, "PUT", "/admin/decommission")).toEqual({});
    expect(() => checkSignature(undefined, "PUT", "/admin/decommission", {})).not.toThrow();
  });

  it("reads the secret from a file or the environment and refuses a short one", () => {
    expect(loadClusterSecret(undefined, undefined)).toBeUndefined();
    expect(loadClusterSecret(undefined, "0123456789abcdef")).toEqual(Buffer.from("0123456789abcdef"));
    expect(() => loadClusterSecret(undefined, "short")).toThrow(/fewer than 16/);
    expect(() => loadClusterSecret("/nonexistent/secret", undefined)).toThrow(
      /TRIBUTARY_CLUSTER_SECRET_FILE/,
    );
  });
});

describe("the operator's name-node client", () => {
  it("signs /admin/decommission with the pool's secret and leaves /status unsigned", async () => {
    const seen: { method: string; url: string; headers: IncomingHttpHeaders }[] = [];
    const server = createServer((req, res) => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
      req.resume();
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify(req.url === "/status" ? { haState: "active", liveDataNodes: 0 } : { datanodes: [] }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await putDecommission(url, [], 30_000, secret);
      await nameNodeStatus(url, 30_000);
    } finally {
      server.close();
    }
    const [decommission, status] = seen;
    expect(() =>
      checkSignature(secret, decommission!.method, decommission!.url, decommission!.headers),
    ).not.toThrow();
    expect(status!.headers["x-tributary-signature"]).toBeUndefined();
  });
});
