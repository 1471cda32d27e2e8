import { constants } from "node:fs";
import { type FileHandle, mkdir, open, readdir, rename, rm } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";

/**
 * Where closed sink files go. A file is created under a temporary name, written, made durable,
 * then renamed into place; only the rename makes it visible, so a reader never sees half a
 * file and a crash leaves at most a temporary file behind. Two implementations: a local
 * directory (a mounted volume), here, and a BlockPool through WebHDFS (`webhdfsTarget.ts`).
 */
export interface SinkTarget {
  /** A human-readable location for logs and errors, e.g. `file:///data/clicks`. */
  readonly location: string;
  /** Creates a new, empty file at `path` (relative, `/`-separated); fails if it exists. */
  create(path: string): Promise<SinkFile>;
  /** Atomically moves `from` to `to` (replacing `to`) and makes the move durable before resolving. */
  rename(from: string, to: string): Promise<void>;
  /** Every file below the target, as relative `/`-separated paths. */
  list(): Promise<string[]>;
  /** Removes a file; a missing file is not an error. */
  remove(path: string): Promise<void>;
}

export interface SinkFile {
  readonly path: string;
  /** Bytes handed to `write` so far. */
  readonly bytesWritten: number;
  write(bytes: Uint8Array): Promise<void>;
  /** Flushes the file's data and metadata to stable storage and closes it. */
  closeDurably(): Promise<void>;
  /** Closes and deletes the file without making it durable. */
  abort(): Promise<void>;
}

/** A directory on a local or mounted filesystem. */
export class LocalDirectoryTarget implements SinkTarget {
  readonly location: string;

  constructor(private readonly root: string) {
    this.location = `file://${root}`;
  }

  async create(path: string): Promise<SinkFile> {
    const absolute = this.resolve(path);
    await this.ensureDirectory(dirname(absolute));
    // O_EXCL: two writers that somehow picked the same temporary name must not share a file.
    const handle = await open(absolute, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o644);
    return new LocalFile(path, absolute, handle);
  }

  async rename(from: string, to: string): Promise<void> {
    const source = this.resolve(from);
    const destination = this.resolve(to);
    await this.ensureDirectory(dirname(destination));
    await rename(source, destination);
    // rename(2) changes directory entries; only an fsync of the directory makes the new name
    // survive a power loss (and of the source directory, the removal of the old one).
    await fsyncDirectory(dirname(destination));
    if (dirname(source) !== dirname(destination)) await fsyncDirectory(dirname(source));
  }

  async list(): Promise<string[]> {
    try {
      const entries = await readdir(this.root, { recursive: true, withFileTypes: true });
      return entries
        .filter((entry) => entry.isFile())
        .map((entry) => relative(this.root, join(entry.parentPath, entry.name)).split(sep).join("/"));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw error;
    }
  }

  async remove(path: string): Promise<void> {
    await rm(this.resolve(path), { force: true });
  }

  private resolve(path: string): string {
    const absolute = join(this.root, ...path.split("/"));
    const inside = relative(this.root, absolute);
    if (inside.startsWith("..") || inside === "") {
      throw new Error(`sink path '${path}' escapes the target directory ${this.root}`);
    }
    return absolute;
  }

  /** mkdir -p, then fsync each parent whose entry was created, so a new dt=/hr= directory is durable. */
  private async ensureDirectory(directory: string): Promise<void> {
    const first = await mkdir(directory, { recursive: true });
    if (first === undefined) return;
    let created = directory;
    const createdDirs: string[] = [];
    while (created.length >= first.length) {
      createdDirs.push(created);
      created = dirname(created);
    }
    for (const dir of createdDirs) await fsyncDirectory(dirname(dir));
  }
}

class LocalFile implements SinkFile {
  bytesWritten = 0;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly absolute: string,
    private readonly handle: FileHandle,
  ) {}

  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.byteLength) {
      const { bytesWritten } = await this.handle.write(bytes, offset, bytes.byteLength - offset);
      offset += bytesWritten;
    }
    this.bytesWritten += bytes.byteLength;
  }

  async closeDurably(): Promise<void> {
    await this.handle.sync();
    await this.handle.close();
    this.closed = true;
  }

  async abort(): Promise<void> {
    if (!this.closed) await this.handle.close().catch(() => undefined);
    this.closed = true;
    await rm(this.absolute, { force: true });
  }
}

async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
