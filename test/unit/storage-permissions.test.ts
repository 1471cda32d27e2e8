import { describe, expect, it } from "vitest";
import { Namespace } from "../../src/dataplane/storage/namenode/namespace.js";
import {
  ALL,
  EXECUTE,
  PermissionChecker,
  READ,
  symbolicMode,
  WRITE,
} from "../../src/dataplane/storage/namenode/permissions.js";
import { RemoteException } from "../../src/dataplane/storage/protocol.js";

function tree() {
  const namespace = new Namespace();
  const mkdir = (path: string, owner: string, permission: number) =>
    namespace.apply({ op: "MKDIR", path, owner, group: "supergroup", permission, mtime: 1 });
  mkdir("/home", "hdfs", 0o755);
  mkdir("/home/alice", "alice", 0o750);
  mkdir("/home/alice/empty", "alice", 0o700);
  mkdir("/tmp", "hdfs", 0o1777);
  namespace.apply({
    op: "ADD",
    path: "/tmp/bobs",
    owner: "bob",
    group: "supergroup",
    permission: 0o644,
    mtime: 1,
    replication: 3,
    blockSize: 1048576,
    clientName: "c",
    ecPolicy: undefined,
  });
  const node = (path: string) => namespace.lookup(path)!;
  const checker = (enabled = true) =>
    new PermissionChecker({ enabled, superusers: ["hdfs"] }, (inode) => namespace.pathOf(inode));
  return { node, checker };
}

const denied = (attempt: () => void) => {
  try {
    attempt();
  } catch (error) {
    expect(error).toBeInstanceOf(RemoteException);
    expect((error as RemoteException).javaClassName).toBe(
      "org.apache.hadoop.security.AccessControlException",
    );
    return (error as RemoteException).message;
  }
  throw new Error("expected an AccessControlException");
};

describe("permission checks", () => {
  it("prints modes as HDFS does, sticky bit included", () => {
    const { node } = tree();
    expect(symbolicMode(node("/home/alice"))).toBe("drwxr-x---");
    expect(symbolicMode(node("/tmp"))).toBe("drwxrwxrwt");
    expect(symbolicMode(node("/tmp/bobs"))).toBe("-rw-r--r--");
  });

  it("grants by the owner's, group's or others' bits", () => {
    const { node, checker } = tree();
    const permissions = checker();
    expect(permissions.allows("alice", node("/home/alice"), ALL)).toBe(true);
    expect(permissions.allows("bob", node("/home/alice"), READ)).toBe(false);
    expect(permissions.allows("bob", node("/home"), READ | EXECUTE)).toBe(true);
    expect(permissions.allows("bob", node("/home"), WRITE)).toBe(false);
    // Superusers are in supergroup; others are not in any group.
    expect(permissions.allows("hdfs", node("/home/alice"), ALL)).toBe(true);
    expect(denied(() => permissions.checkTraverse("bob", node("/home/alice/empty")))).toBe(
      'Permission denied: user=bob, access=EXECUTE, inode="/home/alice":alice:supergroup:drwxr-x---',
    );
  });

  it("lets only the owner of an entry or of its sticky directory remove it", () => {
    const { node, checker } = tree();
    const permissions = checker();
    const tmp = node("/tmp");
    if (tmp.kind !== "DIRECTORY") throw new Error("not a directory");
    permissions.checkStickyBit("bob", tmp, node("/tmp/bobs"));
    permissions.checkStickyBit("hdfs", tmp, node("/tmp/bobs"));
    expect(denied(() => permissions.checkStickyBit("carol", tmp, node("/tmp/bobs")))).toContain(
      'Permission denied by sticky bit: user=carol, path="/tmp/bobs":bob:supergroup:-rw-r--r--',
    );
  });

  it("needs ALL on a subtree's non-empty directories for a recursive delete", () => {
    const { node, checker } = tree();
    const permissions = checker();
    permissions.checkSubtree("alice", node("/home/alice"), ALL);
    expect(denied(() => permissions.checkSubtree("bob", node("/home/alice"), ALL))).toContain("access=ALL");
  });

  it("keeps owner changes for superusers and group changes for members", () => {
    const { node, checker } = tree();
    const permissions = checker();
    expect(denied(() => permissions.checkSetOwner("bob", node("/tmp/bobs"), "alice", undefined))).toBe(
      "User bob is not a super user (non-super user cannot change owner).",
    );
    expect(denied(() => permissions.checkSetOwner("bob", node("/tmp/bobs"), undefined, "analysts"))).toBe(
      "User bob does not belong to analysts",
    );
    expect(denied(() => permissions.checkOwner("alice", node("/tmp/bobs")))).toBe(
      "Permission denied. user=alice is not the owner of inode=/tmp/bobs",
    );
    permissions.checkSetOwner("hdfs", node("/tmp/bobs"), "alice", "analysts");
  });

  it("passes everything with permissions disabled", () => {
    const { node, checker } = tree();
    const permissions = checker(false);
    permissions.check("mallory", node("/home/alice/empty"), ALL);
    permissions.checkSuperuser("mallory");
  });
});
