import { posix } from "node:path";
import type { WebHdfsClient } from "../storage/client.js";
import { RemoteException } from "../storage/protocol.js";
import type { SinkFile, SinkTarget } from "./target.js";

/**
 * A directory in a BlockPool, written through WebHDFS. A sink file is kept in memory while it is
 * written and sent in one CREATE (under its temporary name) when it is closed: the data node
 * answers a CREATE only after every replica in the write pipeline acknowledged the last packet,
 * so a completed CREATE is as durable as the local target's fsync, and the file is never
 * visible half-written under any name. The cost is memory: one open file per partition, at most
 * `rollMaxBytes` each (one block by default).
 */
export class WebHdfsTarget implements SinkTarget {
  readonly location: string;
  /** Directories known to exist, so each dt=/hr= directory costs one MKDIRS per process. */
  private readonly knownDirectories = new Set<string>();

  constructor(
    private readonly client: WebHdfsClient,
    private readonly root: string,
    nameNodes: readonly string[] = [],
  ) {
    if (!root.startsWith("/")) throw new Error(`WebHDFS target path '${root}' must be absolute`);
    this.root = posix.normalize(root).replace(/\/+$/, "") || "/";
    this.location = `webhdfs://${nameNodes.join(",")}${this.root}`;
  }

  async create(path: string): Promise<SinkFile> {
    return new WebHdfsFile(path, this.resolve(path), this);
  }

  async rename(from: string, to: string): Promise<void> {
    const source = this.resolve(from);
    const destination = this.resolve(to);
    await this.ensureDirectory(posix.dirname(destination));
    if (await this.client.rename(source, destination)) return;
    // HDFS's RENAME does not replace an existing destination (it answers false). A file of the
    // same name holds the same offsets, written by a run that crashed before committing, so it
    // is safe to drop it and move the new one into place.
    if (!(await this.exists(source))) {
      throw new Error(`renaming ${this.location}/${from}: the temporary file is gone`);
    }
    await this.client.delete(destination);
    if (!(await this.client.rename(source, destination))) {
      throw new Error(`renaming ${this.location}/${from} to ${to} was refused by the name node`);
    }
  }

  async list(): Promise<string[]> {
    const files: string[] = [];
    const walk = async (directory: string, prefix: string): Promise<void> => {
      let entries: Awaited<ReturnType<WebHdfsClient["list"]>>;
      try {
        entries = await this.client.list(directory);
      } catch (error) {
        if (isNotFound(error)) return;
        throw error;
      }
      for (const entry of entries) {
        const relative = prefix ? `${prefix}/${entry.pathSuffix}` : entry.pathSuffix;
        if (entry.type === "DIRECTORY") await walk(`${directory}/${entry.pathSuffix}`, relative);
        else files.push(relative);
      }
    };
    await walk(this.root, "");
    return files;
  }

  async remove(path: string): Promise<void> {
    try {
      await this.client.delete(this.resolve(path));
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  /** Called by a file on close: the temporary file appears complete or not at all. */
  async store(absolute: string, bytes: Buffer): Promise<void> {
    await this.ensureDirectory(posix.dirname(absolute));
    await this.client.create(absolute, bytes, { overwrite: false });
  }

  private async exists(absolute: string): Promise<boolean> {
    try {
      await this.client.status(absolute);
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  private async ensureDirectory(directory: string): Promise<void> {
    if (this.knownDirectories.has(directory)) return;
    await this.client.mkdirs(directory);
    this.knownDirectories.add(directory);
  }

  private resolve(path: string): string {
    const absolute = posix.join(this.root, path);
    const inside = posix.relative(this.root, absolute);
    if (inside.startsWith("..") || inside === "") {
      throw new Error(`sink path '${path}' escapes the target directory ${this.location}`);
    }
    return absolute;
  }
}

class WebHdfsFile implements SinkFile {
  bytesWritten = 0;
  private chunks: Buffer[] = [];
  private sent = false;

  constructor(
    readonly path: string,
    private readonly absolute: string,
    private readonly target: WebHdfsTarget,
  ) {}

  async write(bytes: Uint8Array): Promise<void> {
    if (this.sent) throw new Error(`sink file ${this.path} is already closed`);
    // Copied: writers may reuse their buffers after write resolves.
    this.chunks.push(Buffer.from(bytes));
    this.bytesWritten += bytes.byteLength;
  }

  async closeDurably(): Promise<void> {
    if (this.sent) throw new Error(`sink file ${this.path} is already closed`);
    this.sent = true;
    const bytes = Buffer.concat(this.chunks);
    this.chunks = [];
    await this.target.store(this.absolute, bytes);
  }

  async abort(): Promise<void> {
    const attempted = this.sent;
    this.sent = true;
    this.chunks = [];
    // Only a CREATE that was sent can have left a (possibly complete) temporary file.
    if (attempted) await this.target.remove(this.path);
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof RemoteException && error.exception === "FileNotFoundException";
}
