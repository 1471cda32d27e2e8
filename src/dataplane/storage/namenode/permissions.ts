/**
 * HDFS's permission model, lite (FSPermissionChecker): every inode has an owner, a group and a
 * POSIX mode with the sticky bit; a user passes a check as owner, as a member of the group, or
 * as "other", and superusers pass every check. Identity is what the caller says (WebHDFS's
 * `user.name`, HDFS's "simple" authentication): permissions keep honest users from each
 * other's files, they are not a security boundary against a hostile client.
 */
import { RemoteException } from "../protocol.js";
import type { INode, INodeDirectory } from "./namespace.js";

export const READ = 4;
export const WRITE = 2;
export const EXECUTE = 1;
export const ALL = READ | WRITE | EXECUTE;
const STICKY = 0o1000;

const ACTION_NAMES: Record<number, string> = {
  [READ]: "READ",
  [WRITE]: "WRITE",
  [EXECUTE]: "EXECUTE",
  [READ | WRITE]: "READ_WRITE",
  [READ | EXECUTE]: "READ_EXECUTE",
  [WRITE | EXECUTE]: "WRITE_EXECUTE",
  [ALL]: "ALL",
};

export const SUPERGROUP = "supergroup";

export interface PermissionOptions {
  /** HDFS's dfs.permissions.enabled: off, every check passes (modes are still stored). */
  enabled: boolean;
  /** Users with every right: the name node's own user and dfs.permissions.superusergroup's members. */
  superusers: string[];
}

/** `drwxr-xr-t`: how HDFS prints a mode in its messages and `hdfs dfs -ls`. */
export function symbolicMode(node: INode): string {
  const mode = node.permission;
  let text = node.kind === "DIRECTORY" ? "d" : "-";
  for (const shift of [6, 3, 0]) {
    const bits = (mode >> shift) & 7;
    text += bits & READ ? "r" : "-";
    text += bits & WRITE ? "w" : "-";
    if (shift === 0 && mode & STICKY) text += bits & EXECUTE ? "t" : "T";
    else text += bits & EXECUTE ? "x" : "-";
  }
  return text;
}

const accessControl = (message: string) =>
  new RemoteException("AccessControlException", message, "org.apache.hadoop.security.AccessControlException");

export class PermissionChecker {
  private readonly superusers: Set<string>;

  constructor(
    private readonly options: PermissionOptions,
    private readonly pathOf: (node: INode) => string,
  ) {
    this.superusers = new Set(options.superusers);
  }

  isSuperuser(user: string): boolean {
    return !this.options.enabled || this.superusers.has(user);
  }

  /** Groups are not resolved from an OS or directory: superusers are in supergroup, nobody else in any. */
  private inGroup(user: string, group: string): boolean {
    return group === SUPERGROUP && this.superusers.has(user);
  }

  /** Whether `user` may do `access` on `node` by its mode bits alone. */
  allows(user: string, node: INode, access: number): boolean {
    if (this.isSuperuser(user)) return true;
    const shift = node.owner === user ? 6 : this.inGroup(user, node.group) ? 3 : 0;
    return ((node.permission >> shift) & 7 & access) === access;
  }

  check(user: string, node: INode, access: number): void {
    if (this.allows(user, node, access)) return;
    throw accessControl(
      `Permission denied: user=${user}, access=${ACTION_NAMES[access]}, inode="${this.pathOf(node)}":${node.owner}:${node.group}:${symbolicMode(node)}`,
    );
  }

  /** EXECUTE on every directory above `node`: what resolving its path needs. */
  checkTraverse(user: string, node: INode): void {
    const ancestors: INodeDirectory[] = [];
    for (let at = node.parent; at; at = at.parent) ancestors.push(at);
    for (const directory of ancestors.reverse()) this.check(user, directory, EXECUTE);
  }

  /**
   * What adding or removing an entry of `directory` needs: reaching into it (EXECUTE along the
   * path, itself included), then WRITE on it; refusals name the first right missing, as HDFS's do.
   */
  checkWriteInto(user: string, directory: INode): void {
    this.checkTraverse(user, directory);
    this.check(user, directory, EXECUTE);
    this.check(user, directory, WRITE);
  }

  /** `access` on every directory of a subtree: a recursive delete needs ALL, a summary READ_EXECUTE. */
  checkSubtree(user: string, node: INode, access: number): void {
    if (this.isSuperuser(user) || node.kind !== "DIRECTORY") return;
    // An empty directory under a recursive delete goes with its parent's WRITE (HDFS's ignoreEmptyDir).
    if (node.children.size === 0 && access === ALL) return;
    this.check(user, node, access);
    for (const child of node.children.values()) this.checkSubtree(user, child, access);
  }

  checkOwner(user: string, node: INode): void {
    if (this.isSuperuser(user) || node.owner === user) return;
    throw accessControl(`Permission denied. user=${user} is not the owner of inode=${this.pathOf(node)}`);
  }

  checkSuperuser(user: string): void {
    if (this.isSuperuser(user)) return;
    throw accessControl(`Access denied for user ${user}. Superuser privilege is required`);
  }

  /** In a sticky directory (like /tmp), only the entry's owner or the directory's may remove or rename it. */
  checkStickyBit(user: string, parent: INodeDirectory, child: INode): void {
    if (this.isSuperuser(user) || !(parent.permission & STICKY)) return;
    if (parent.owner === user || child.owner === user) return;
    throw accessControl(
      `Permission denied by sticky bit: user=${user}, path="${this.pathOf(child)}":${child.owner}:${child.group}:${symbolicMode(child)}, parent="${this.pathOf(parent)}":${parent.owner}:${parent.group}:${symbolicMode(parent)}`,
    );
  }

  /** SETOWNER: changing the owner takes a superuser; the owner may change the group to one of theirs. */
  checkSetOwner(user: string, node: INode, owner: string | undefined, group: string | undefined): void {
    if (this.isSuperuser(user)) return;
    if (owner !== undefined && owner !== node.owner)
      throw accessControl(`User ${user} is not a super user (non-super user cannot change owner).`);
    this.checkOwner(user, node);
    if (group !== undefined && group !== node.group && !this.inGroup(user, group))
      throw accessControl(`User ${user} does not belong to ${group}`);
  }
}
