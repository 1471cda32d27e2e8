/**
 * The pool's shared secret for its internal calls: data nodes reporting to name nodes
 * (HDFS's DatanodeProtocol), administration of the name node (`/admin/*`) and data-node
 * commands such as deleting a replica. Without it, anyone who reaches a pod could register a
 * host as a data node (and so receive writers' data), decommission nodes or delete replicas.
 *
 * Each such request carries an HMAC-SHA256, keyed by the secret, over its method, its path and
 * the time it was signed. A signature older or newer than five minutes is refused, so a
 * captured request cannot be replayed later. The body is not signed: the secret guards who may
 * call, as HDFS's service-level authorization does, not the integrity of the bytes on the wire.
 *
 * WebHDFS's client operations are not signed: they keep HDFS's simple authentication
 * (`user.name`) and the permission checks.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import { RemoteException } from "./protocol.js";

export const TIMESTAMP_HEADER = "x-tributary-timestamp";
export const SIGNATURE_HEADER = "x-tributary-signature";
/** The clock skew tolerated between the signer and the checker (Kerberos's default). */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

/**
 * The secret, from `TRIBUTARY_CLUSTER_SECRET_FILE` (the Secret the operator mounts) or
 * `TRIBUTARY_CLUSTER_SECRET`; undefined when neither is set, as in local development.
 */
export function loadClusterSecret(file: string | undefined, value: string | undefined): Buffer | undefined {
  if (file) {
    let secret: Buffer;
    try {
      secret = readFileSync(file);
    } catch (error) {
      throw new Error(
        `cannot read the cluster secret from ${file} (TRIBUTARY_CLUSTER_SECRET_FILE): ${(error as Error).message}`,
      );
    }
    if (secret.length < 16)
      throw new Error(
        `the cluster secret in ${file} has ${secret.length} bytes; it needs at least 16 (the operator writes 32 random bytes)`,
      );
    return secret;
  }
  if (value) {
    if (value.length < 16)
      throw new Error("TRIBUTARY_CLUSTER_SECRET has fewer than 16 characters; use 32 random bytes");
    return Buffer.from(value, "utf8");
  }
  return undefined;
}

function signature(secret: Buffer, method: string, path: string, timestamp: string): Buffer {
  return createHmac("sha256", secret).update(`${method.toUpperCase()}\n${path}\n${timestamp}`).digest();
}

/** The headers that authenticate `method path` (the path without its query); none without a secret. */
export function signRequest(
  secret: Buffer | undefined,
  method: string,
  path: string,
  now = Date.now(),
): Record<string, string> {
  if (!secret) return {};
  const pathname = path.split("?")[0]!;
  const timestamp = String(now);
  return {
    [TIMESTAMP_HEADER]: timestamp,
    [SIGNATURE_HEADER]: signature(secret, method, pathname, timestamp).toString("base64"),
  };
}

/** Refused before the body is read: the connection closes rather than drain a body for nothing. */
const notAuthorized = (message: string) =>
  new RemoteException("AccessControlException", `not authorized: ${message}`, undefined, undefined, {
    closeConnection: true,
  });

/**
 * Refuses (403, AccessControlException) a request to an internal endpoint that is not signed
 * with the pool's secret. Without a secret every request passes, as before the pool had one.
 */
export function checkSignature(
  secret: Buffer | undefined,
  method: string | undefined,
  path: string,
  headers: IncomingHttpHeaders,
  now = Date.now(),
): void {
  if (!secret) return;
  const pathname = path.split("?")[0]!;
  const what = `${method} ${pathname}`;
  const timestamp = headers[TIMESTAMP_HEADER];
  const given = headers[SIGNATURE_HEADER];
  if (typeof timestamp !== "string" || typeof given !== "string")
    throw notAuthorized(
      `${what} is an internal call of the pool and must be signed with its cluster secret (the Secret <pool>-cluster-secret); the request has no ${SIGNATURE_HEADER} header`,
    );
  const signedAt = Number(timestamp);
  if (!Number.isFinite(signedAt) || Math.abs(now - signedAt) > MAX_CLOCK_SKEW_MS)
    throw notAuthorized(
      `${what} was signed at ${timestamp}, more than ${MAX_CLOCK_SKEW_MS / 60_000} minutes from this server's clock (${now}); check the clocks`,
    );
  const expected = signature(secret, method ?? "", pathname, timestamp);
  const actual = Buffer.from(given, "base64");
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected))
    throw notAuthorized(`${what} is signed with another secret than this pool's cluster secret`);
}
