/**
 * How the name node's host lists (the decommission set, the topology table) name a data node,
 * after HDFS's include/exclude files: by the host name it registered with, by `host:xferPort`
 * (several data nodes on one host, as on loopback in tests), or by a leading part of the host name
 * up to a dot, so a StatefulSet pod's short name (`pool-datanode-3`) names its full DNS name
 * (`pool-datanode-3.pool-datanode.ns.svc`).
 */
import { isIP } from "node:net";
import { type DatanodeID, illegalArgument } from "../protocol.js";

/** Every entry that names `node`, the most specific first (a table lookup takes the first found). */
export function hostEntryKeys(node: Pick<DatanodeID, "hostName" | "xferPort">): string[] {
  const hostName = node.hostName.toLowerCase();
  const keys = [`${hostName}:${node.xferPort}`, hostName];
  // An IP address has no short names: entry "127" must not name every loopback node.
  if (isIP(hostName) === 0) {
    const labels = hostName.split(".");
    for (let count = labels.length - 1; count >= 1; count--) keys.push(labels.slice(0, count).join("."));
  }
  return keys;
}

/** Host names are DNS names: entries compare case-insensitively. */
export function normalizeHostEntry(entry: string): string {
  return entry.trim().toLowerCase();
}

export function hostEntryMatches(entry: string, node: Pick<DatanodeID, "hostName" | "xferPort">): boolean {
  return hostEntryKeys(node).includes(normalizeHostEntry(entry));
}

/**
 * The body of `PUT /admin/decommission`: `{"hosts": ["<entry>", ...]}`, the whole decommission
 * set (an empty list recommissions every node). Throws IllegalArgumentException (400) saying
 * what was wrong.
 */
export function parseDecommissionRequest(body: Buffer): string[] {
  const expected = 'expected {"hosts": ["<host>" | "<host>:<xferPort>" | "<short name>", ...]}';
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw illegalArgument(
      `PUT /admin/decommission: the body is not JSON (${(error as Error).message}); ${expected}`,
    );
  }
  const hosts = (parsed as { hosts?: unknown } | null)?.hosts;
  if (typeof parsed !== "object" || parsed === null || !Array.isArray(hosts))
    throw illegalArgument(`PUT /admin/decommission: "hosts" must be a list; ${expected}`);
  hosts.forEach((entry, index) => {
    if (typeof entry !== "string" || !/^[^\s#]+$/.test(entry))
      throw illegalArgument(
        `PUT /admin/decommission: hosts[${index}] is ${JSON.stringify(entry)}, not a host name without blanks; ${expected}`,
      );
  });
  return hosts as string[];
}
