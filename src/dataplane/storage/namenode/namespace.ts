/**
 * The name node's namespace (HDFS's FSDirectory): the inode tree with owners, modes, quotas,
 * files with their blocks and generation stamps, and which files are under construction by which
 * client. Every change is an EditOp applied by `apply`, the single code path shared by live
 * operations, edit-log replay on restart and the standby's tailing, so all three reach the same
 * state. Validation lives in the name node, before an op is logged; `apply` trusts its input.
 *
 * `apply` also keeps the figures /status and /metrics show (inodes, bytes, coded directories), so
 * neither walks the tree, and preserves what an edit changes while a checkpoint is being written
 * (`beginImage`): the checkpoint serialises the namespace as it was when it began, a slice at a
 * time between RPCs, while edits go on.
 */
import { components, nameOf, parentOf } from "../path.js";
import { fileNotFound, RemoteException } from "../protocol.js";

export interface BlockInfo {
  blockId: number;
  generationStamp: number;
  numBytes: number;
  /** Committed: its length acknowledged by the whole pipeline. */
  complete: boolean;
  file: INodeFile;
}

interface INodeBase {
  id: number;
  name: string;
  parent: INodeDirectory | undefined;
  owner: string;
  group: string;
  permission: number;
  mtime: number;
  atime: number;
}

export interface INodeDirectory extends INodeBase {
  kind: "DIRECTORY";
  children: Map<string, INode>;
  /** -1: no quota. nsQuota counts inodes; dsQuota counts bytes times replication, like HDFS. */
  nsQuota: number;
  dsQuota: number;
  /** Erasure-coding policy for files created below (HDFS's per-directory policy), e.g. RS-6-3-1024k. */
  ecPolicy?: string | undefined;
}

export interface INodeFile extends INodeBase {
  kind: "FILE";
  replication: number;
  blockSize: number;
  blocks: BlockInfo[];
  /** Set while the file is under construction: the lease holder. */
  clientName: string | undefined;
  /** Set on an erasure-coded file: its blocks are block groups. */
  ecPolicy?: string | undefined;
}

export type INode = INodeDirectory | INodeFile;

export type EditOp =
  | { op: "MKDIR"; path: string; owner: string; group: string; permission: number; mtime: number }
  | {
      op: "ADD";
      path: string;
      owner: string;
      group: string;
      permission: number;
      mtime: number;
      replication: number;
      blockSize: number;
      clientName: string;
      ecPolicy?: string | undefined;
    }
  | { op: "APPEND"; path: string; clientName: string; mtime: number }
  | {
      op: "ADD_BLOCK";
      path: string;
      blockId: number;
      generationStamp: number;
      previous?: { blockId: number; numBytes: number } | undefined;
    }
  | { op: "ABANDON_BLOCK"; path: string; blockId: number }
  | {
      op: "CLOSE";
      path: string;
      mtime: number;
      last?: { blockId: number; numBytes: number } | undefined;
      dropIncomplete?: boolean;
    }
  | { op: "DELETE"; path: string; mtime: number }
  | { op: "RENAME"; src: string; dst: string; mtime: number }
  | { op: "SET_QUOTA"; path: string; nsQuota: number; dsQuota: number }
  | { op: "SET_REPLICATION"; path: string; replication: number }
  | { op: "SET_EC_POLICY"; path: string; ecPolicy: string | null }
  | { op: "SET_PERMISSION"; path: string; permission: number }
  | { op: "SET_OWNER"; path: string; owner?: string | undefined; group?: string | undefined }
  /** HDFS's setTimes: an absent time is left as it is (WebHDFS sends -1 for "unchanged"). */
  | { op: "SET_TIMES"; path: string; mtime?: number | undefined; atime?: number | undefined };

export interface ContentSummary {
  directoryCount: number;
  fileCount: number;
  length: number;
  spaceConsumed: number;
}

export class Namespace {
  root: INodeDirectory;
  lastInodeId = 16385;
  lastBlockId = 1073741824;
  generationStamp = 1000;
  /** blockId → block, for block reports and the replication monitor (HDFS's BlocksMap). */
  readonly blocks = new Map<number, BlockInfo>();
  /** Files under construction, by lease holder. */
  readonly leases = new Map<string, Set<INodeFile>>();
  /** Called with the ids of blocks that left the namespace (delete, abandon, overwrite). */
  onBlocksRemoved: (blocks: BlockInfo[]) => void = () => undefined;
  /** Kept by every edit: directories (the root included), files, and bytes of committed blocks. */
  readonly counts = { directories: 1, files: 0, bytes: 0 };
  /** Directories that carry an erasure-coding policy. */
  readonly ecDirectories = new Set<INodeDirectory>();
  /** While an image is being written: each inode's state before the first edit that changed it since. */
  private preserved: Map<INode, Preserved> | undefined;

  constructor() {
    // Like /tmp (HDFS formats it 755, for an admin to open up): a pool declared in Kubernetes has no
    // admin shell, so anyone may create top-level directories and only their owners remove them.
    this.root = this.newDirectory("", undefined, "hdfs", "supergroup", 0o1777, 0);
  }

  private newDirectory(
    name: string,
    parent: INodeDirectory | undefined,
    owner: string,
    group: string,
    permission: number,
    mtime: number,
  ): INodeDirectory {
    return {
      kind: "DIRECTORY",
      id: this.lastInodeId++,
      name,
      parent,
      owner,
      group,
      permission,
      mtime,
      atime: mtime,
      children: new Map(),
      nsQuota: -1,
      dsQuota: -1,
    };
  }

  lookup(path: string): INode | undefined {
    let node: INode = this.root;
    for (const name of components(path)) {
      if (node.kind !== "DIRECTORY") return undefined;
      const child: INode | undefined = node.children.get(name);
      if (!child) return undefined;
      node = child;
    }
    return node;
  }

  getFile(path: string): INodeFile {
    const node = this.lookup(path);
    if (!node) throw fileNotFound(path);
    if (node.kind !== "FILE")
      throw new RemoteException("FileNotFoundException", `Path is not a file: ${path}`);
    return node;
  }

  pathOf(node: INode): string {
    const names: string[] = [];
    for (let at: INode | undefined = node; at?.parent; at = at.parent) names.push(at.name);
    return `/${names.reverse().join("/")}`;
  }

  /** Length a reader sees: the committed blocks (an under-construction block is not readable). */
  visibleLength(file: INodeFile): number {
    let length = 0;
    for (const block of file.blocks) if (block.complete) length += block.numBytes;
    return length;
  }

  /** Space a file is charged against dsQuota: an open block counts at its full size, as HDFS reserves it. */
  spaceOf(file: INodeFile): number {
    const [k, m] = ecShape(file.ecPolicy);
    let bytes = 0;
    for (const block of file.blocks) bytes += block.complete ? block.numBytes : file.blockSize * k;
    // Replicas cost `replication` copies; a block group costs its data plus parity, (k + m) / k.
    return file.ecPolicy ? Math.ceil((bytes * (k + m)) / k) : bytes * file.replication;
  }

  /** The block, or for an internal block of a block group (groupId + index), its group. */
  blockOrGroup(blockId: number): { block: BlockInfo; index: number } | undefined {
    const block = this.blocks.get(blockId);
    if (block) return { block, index: block.file.ecPolicy ? 0 : -1 };
    const group = this.blocks.get(blockId - (blockId % 16));
    if (!group?.file.ecPolicy) return undefined;
    const [k, m] = ecShape(group.file.ecPolicy);
    const index = blockId % 16;
    return index < k + m ? { block: group, index } : undefined;
  }

  summarize(node: INode): ContentSummary {
    if (node.kind === "FILE") {
      return {
        directoryCount: 0,
        fileCount: 1,
        length: this.visibleLength(node),
        spaceConsumed: this.spaceOf(node),
      };
    }
    const sum: ContentSummary = { directoryCount: 1, fileCount: 0, length: 0, spaceConsumed: 0 };
    for (const child of node.children.values()) {
      const part = this.summarize(child);
      sum.directoryCount += part.directoryCount;
      sum.fileCount += part.fileCount;
      sum.length += part.length;
      sum.spaceConsumed += part.spaceConsumed;
    }
    return sum;
  }

  /** Throws NSQuotaExceededException / DSQuotaExceededException if adding under `dir` breaks an ancestor's quota. */
  checkQuota(dir: INodeDirectory, addInodes: number, addSpace: number): void {
    for (let at: INodeDirectory | undefined = dir; at; at = at.parent) {
      if (at.nsQuota < 0 && at.dsQuota < 0) continue;
      const used = this.summarize(at);
      const inodes = used.directoryCount + used.fileCount;
      if (at.nsQuota >= 0 && addInodes > 0 && inodes + addInodes > at.nsQuota) {
        throw new RemoteException(
          "NSQuotaExceededException",
          `The NameSpace quota (directories and files) of directory ${this.pathOf(at)} is exceeded: quota=${at.nsQuota} file count=${inodes + addInodes}`,
        );
      }
      if (at.dsQuota >= 0 && addSpace > 0 && used.spaceConsumed + addSpace > at.dsQuota) {
        throw new RemoteException(
          "DSQuotaExceededException",
          `The DiskSpace quota of ${this.pathOf(at)} is exceeded: quota = ${at.dsQuota} B = ${formatBytes(at.dsQuota)} but diskspace consumed = ${used.spaceConsumed + addSpace} B = ${formatBytes(used.spaceConsumed + addSpace)}`,
        );
      }
    }
  }

  apply(edit: EditOp): void {
    switch (edit.op) {
      case "MKDIR": {
        const parent = this.directory(parentOf(edit.path));
        const name = nameOf(edit.path);
        if (parent.children.has(name)) return;
        this.preserve(parent);
        this.counts.directories++;
        parent.children.set(
          name,
          this.newDirectory(name, parent, edit.owner, edit.group, edit.permission, edit.mtime),
        );
        parent.mtime = edit.mtime;
        return;
      }
      case "ADD": {
        const parent = this.directory(parentOf(edit.path));
        const name = nameOf(edit.path);
        const existing = parent.children.get(name);
        this.preserve(parent);
        if (existing) this.remove(existing);
        this.counts.files++;
        const file: INodeFile = {
          kind: "FILE",
          id: this.lastInodeId++,
          name,
          parent,
          owner: edit.owner,
          group: edit.group,
          permission: edit.permission,
          mtime: edit.mtime,
          atime: edit.mtime,
          replication: edit.replication,
          blockSize: edit.blockSize,
          blocks: [],
          clientName: undefined,
          ecPolicy: edit.ecPolicy,
        };
        parent.children.set(name, file);
        parent.mtime = edit.mtime;
        this.openLease(file, edit.clientName);
        return;
      }
      case "APPEND": {
        const file = this.getFile(edit.path);
        this.preserve(file);
        this.openLease(file, edit.clientName);
        file.mtime = edit.mtime;
        return;
      }
      case "ADD_BLOCK": {
        const file = this.getFile(edit.path);
        this.preserve(file);
        this.commit(file, edit.previous);
        const block: BlockInfo = {
          blockId: edit.blockId,
          generationStamp: edit.generationStamp,
          numBytes: 0,
          complete: false,
          file,
        };
        file.blocks.push(block);
        this.blocks.set(block.blockId, block);
        // A block group reserves 16 ids: its internal blocks are groupId + index.
        this.lastBlockId = Math.max(this.lastBlockId, edit.blockId + (file.ecPolicy ? 15 : 0));
        this.generationStamp = Math.max(this.generationStamp, edit.generationStamp);
        return;
      }
      case "ABANDON_BLOCK": {
        const file = this.getFile(edit.path);
        const index = file.blocks.findIndex((block) => block.blockId === edit.blockId && !block.complete);
        if (index < 0) return;
        this.preserve(file);
        const [removed] = file.blocks.splice(index, 1);
        this.blocks.delete(edit.blockId);
        this.onBlocksRemoved([removed!]);
        return;
      }
      case "CLOSE": {
        const file = this.getFile(edit.path);
        this.preserve(file);
        this.commit(file, edit.last);
        if (edit.dropIncomplete) {
          const dropped = file.blocks.filter((block) => !block.complete);
          file.blocks = file.blocks.filter((block) => block.complete);
          for (const block of dropped) this.blocks.delete(block.blockId);
          if (dropped.length) this.onBlocksRemoved(dropped);
        }
        this.closeLease(file);
        file.mtime = edit.mtime;
        return;
      }
      case "DELETE": {
        const node = this.lookup(edit.path);
        if (!node?.parent) return;
        this.preserve(node.parent);
        node.parent.mtime = edit.mtime;
        this.remove(node);
        return;
      }
      case "RENAME": {
        const node = this.lookup(edit.src);
        if (!node?.parent) return;
        const target = this.directory(parentOf(edit.dst));
        this.preserve(node.parent);
        this.preserve(node);
        this.preserve(target);
        node.parent.children.delete(node.name);
        node.parent.mtime = edit.mtime;
        node.name = nameOf(edit.dst);
        node.parent = target;
        target.children.set(node.name, node);
        target.mtime = edit.mtime;
        return;
      }
      case "SET_QUOTA": {
        const dir = this.directory(edit.path);
        this.preserve(dir);
        dir.nsQuota = edit.nsQuota;
        dir.dsQuota = edit.dsQuota;
        return;
      }
      case "SET_EC_POLICY": {
        const dir = this.directory(edit.path);
        this.preserve(dir);
        dir.ecPolicy = edit.ecPolicy ?? undefined;
        if (dir.ecPolicy) this.ecDirectories.add(dir);
        else this.ecDirectories.delete(dir);
        return;
      }
      case "SET_REPLICATION": {
        const file = this.getFile(edit.path);
        this.preserve(file);
        file.replication = edit.replication;
        return;
      }
      case "SET_PERMISSION": {
        const node = this.lookup(edit.path);
        if (!node) return;
        this.preserve(node);
        node.permission = edit.permission;
        return;
      }
      case "SET_OWNER": {
        const node = this.lookup(edit.path);
        if (!node) return;
        this.preserve(node);
        if (edit.owner) node.owner = edit.owner;
        if (edit.group) node.group = edit.group;
        return;
      }
      case "SET_TIMES": {
        const node = this.lookup(edit.path);
        if (!node) return;
        this.preserve(node);
        if (edit.mtime !== undefined) node.mtime = edit.mtime;
        if (edit.atime !== undefined) node.atime = edit.atime;
        return;
      }
    }
  }

  directory(path: string): INodeDirectory {
    const node = this.lookup(path);
    if (!node) throw fileNotFound(path);
    if (node.kind !== "DIRECTORY")
      throw new RemoteException("ParentNotDirectoryException", `Parent path is not a directory: ${path}`);
    return node;
  }

  private commit(file: INodeFile, acknowledged: { blockId: number; numBytes: number } | undefined): void {
    if (!acknowledged) return;
    const block = file.blocks.find((candidate) => candidate.blockId === acknowledged.blockId);
    if (!block) return;
    this.counts.bytes += acknowledged.numBytes - (block.complete ? block.numBytes : 0);
    block.numBytes = acknowledged.numBytes;
    block.complete = true;
  }

  private openLease(file: INodeFile, clientName: string): void {
    file.clientName = clientName;
    const files = this.leases.get(clientName) ?? new Set<INodeFile>();
    this.leases.set(clientName, files);
    files.add(file);
  }

  private closeLease(file: INodeFile): void {
    if (!file.clientName) return;
    const files = this.leases.get(file.clientName);
    files?.delete(file);
    if (files?.size === 0) this.leases.delete(file.clientName);
    file.clientName = undefined;
  }

  private remove(node: INode): void {
    node.parent?.children.delete(node.name);
    const removed: BlockInfo[] = [];
    const visit = (at: INode) => {
      if (at.kind === "FILE") {
        this.counts.files--;
        if (at.clientName) this.preserve(at);
        this.closeLease(at);
        for (const block of at.blocks) {
          if (block.complete) this.counts.bytes -= block.numBytes;
          this.blocks.delete(block.blockId);
          removed.push(block);
        }
      } else {
        this.counts.directories--;
        this.ecDirectories.delete(at);
        for (const child of at.children.values()) visit(child);
      }
    };
    visit(node);
    if (removed.length) this.onBlocksRemoved(removed);
  }

  /** The fsimage: the whole tree and the id counters, as JSON. */
  toImage(): NamespaceImage {
    return JSON.parse([...this.beginImage(Number.POSITIVE_INFINITY)].join("")) as NamespaceImage;
  }

  /**
   * Starts an image of the namespace as it is now and returns its JSON text in slices of about
   * `sliceInodes` inodes. Edits applied between slices do not show in it: until the last slice
   * (or the generator's return), `apply` keeps each inode's state from before its first change.
   * One image at a time.
   */
  beginImage(sliceInodes = 4096): Generator<string, void> {
    if (this.preserved) throw new Error("an image of this namespace is already being written");
    const preserved = new Map<INode, Preserved>();
    this.preserved = preserved;
    const head = `{"lastInodeId":${this.lastInodeId},"lastBlockId":${this.lastBlockId},"generationStamp":${this.generationStamp},"root":`;
    const root = this.root;
    const release = () => {
      if (this.preserved === preserved) this.preserved = undefined;
    };
    return (function* slices() {
      try {
        let out = head;
        const stack: { children: INode[]; next: number }[] = [];
        const open = (node: INode) => {
          const kept = preserved.get(node);
          if (node.kind === "FILE") {
            out += JSON.stringify(kept?.image ?? encodeFile(node));
            return;
          }
          out += `${JSON.stringify(kept?.image ?? encodeDirectory(node)).slice(0, -1)},"children":[`;
          stack.push({ children: kept?.children ?? [...node.children.values()], next: 0 });
        };
        open(root);
        let inodes = 0;
        while (stack.length > 0) {
          const frame = stack.at(-1)!;
          if (frame.next === frame.children.length) {
            out += "]}";
            stack.pop();
            continue;
          }
          if (frame.next > 0) out += ",";
          open(frame.children[frame.next++]!);
          if (++inodes % sliceInodes === 0) {
            yield out;
            out = "";
          }
        }
        yield `${out}}`;
      } finally {
        release();
      }
    })();
  }

  /** Keeps `node`'s state from before the edit about to change it, for the image being written. */
  private preserve(node: INode): void {
    if (!this.preserved || this.preserved.has(node)) return;
    this.preserved.set(
      node,
      node.kind === "FILE"
        ? { image: encodeFile(node) }
        : { image: encodeDirectory(node), children: [...node.children.values()] },
    );
  }

  static fromImage(image: NamespaceImage): Namespace {
    const ns = new Namespace();
    const decode = (node: ImageNode, parent: INodeDirectory | undefined): INode => {
      const { id, name, owner, group, permission, mtime, atime } = node;
      const common = { id, name, parent, owner, group, permission, mtime, atime };
      if (node.kind === "FILE") {
        const file: INodeFile = {
          kind: "FILE",
          ...common,
          replication: node.replication,
          blockSize: node.blockSize,
          blocks: [],
          clientName: undefined,
          ecPolicy: node.ecPolicy,
        };
        ns.counts.files++;
        file.blocks = node.blocks.map((block) => {
          const info = { ...block, file };
          ns.blocks.set(block.blockId, info);
          if (block.complete) ns.counts.bytes += block.numBytes;
          return info;
        });
        if (node.clientName) ns.openLease(file, node.clientName);
        return file;
      }
      const dir: INodeDirectory = {
        kind: "DIRECTORY",
        ...common,
        nsQuota: node.nsQuota,
        dsQuota: node.dsQuota,
        ecPolicy: node.ecPolicy,
        children: new Map(),
      };
      ns.counts.directories++;
      if (dir.ecPolicy) ns.ecDirectories.add(dir);
      for (const child of node.children) dir.children.set(child.name, decode(child, dir));
      return dir;
    };
    // decode counts the root again.
    ns.counts.directories = 0;
    ns.root = decode(image.root, undefined) as INodeDirectory;
    ns.lastInodeId = image.lastInodeId;
    ns.lastBlockId = image.lastBlockId;
    ns.generationStamp = image.generationStamp;
    return ns;
  }
}

/** An inode's image fields (a directory's without its children, which follow separately). */
type Preserved = { image: object; children?: INode[] };

function encodeFile(node: INodeFile): object {
  return {
    kind: "FILE",
    id: node.id,
    name: node.name,
    owner: node.owner,
    group: node.group,
    permission: node.permission,
    mtime: node.mtime,
    atime: node.atime,
    replication: node.replication,
    blockSize: node.blockSize,
    clientName: node.clientName,
    ecPolicy: node.ecPolicy,
    blocks: node.blocks.map(({ blockId, generationStamp, numBytes, complete }) => ({
      blockId,
      generationStamp,
      numBytes,
      complete,
    })),
  };
}

function encodeDirectory(node: INodeDirectory): object {
  return {
    kind: "DIRECTORY",
    id: node.id,
    name: node.name,
    owner: node.owner,
    group: node.group,
    permission: node.permission,
    mtime: node.mtime,
    atime: node.atime,
    nsQuota: node.nsQuota,
    dsQuota: node.dsQuota,
    ecPolicy: node.ecPolicy,
  };
}

type ImageNode =
  | {
      kind: "DIRECTORY";
      id: number;
      name: string;
      owner: string;
      group: string;
      permission: number;
      mtime: number;
      atime: number;
      nsQuota: number;
      dsQuota: number;
      ecPolicy?: string | undefined;
      children: ImageNode[];
    }
  | {
      kind: "FILE";
      id: number;
      name: string;
      owner: string;
      group: string;
      permission: number;
      mtime: number;
      atime: number;
      replication: number;
      blockSize: number;
      clientName: string | undefined;
      ecPolicy?: string | undefined;
      blocks: { blockId: number; generationStamp: number; numBytes: number; complete: boolean }[];
    };

export interface NamespaceImage {
  lastInodeId: number;
  lastBlockId: number;
  generationStamp: number;
  root: ImageNode;
}

/** [k, m] of a policy name such as RS-6-3-1024k; [1, 0] for replicated files. */
export function ecShape(ecPolicy: string | undefined): [number, number] {
  const match = ecPolicy ? /^(?:RS|XOR)-(\d+)-(\d+)/.exec(ecPolicy) : null;
  return match ? [Number(match[1]), Number(match[2])] : [1, 0];
}

function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(2)} ${units[unit]}`;
}
