/**
 * Where finished archive segments go: a BlockPool directory through WebHDFS, or a mounted volume.
 * A segment is written under a temporary name and renamed, so a reader never sees half of one;
 * the local copy is removed only once the store has it.
 *
 * Segments are named by the second they start in, so two can share a name: ffmpeg started again
 * within that second, or a camera taken over by another pod. A name already taken by a file of
 * another length gets the next free `-1`, `-2`, … suffix; one of the same length is this segment,
 * stored by an earlier attempt that failed after its rename, and is not stored twice.
 */
import { copyFile, mkdir, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, extname, join, posix } from "node:path";
import { WebHdfsClient } from "../storage/client.js";
import type { SegmentStore } from "./source.js";

export class WebHdfsSegmentStore implements SegmentStore {
  private readonly client: WebHdfsClient;
  private readonly known = new Set<string>();

  constructor(
    nameNodes: string[],
    private readonly root: string,
  ) {
    this.client = new WebHdfsClient({ nameNodes, user: "tributary" });
  }

  async store(source: string, localPath: string): Promise<void> {
    const directory = posix.join(this.root, source);
    if (!this.known.has(directory)) {
      await this.client.mkdirs(directory);
      this.known.add(directory);
    }
    const name = basename(localPath);
    const bytes = await readFile(localPath);
    if (bytes.length > 0) {
      const temporary = posix.join(directory, `.${name}.tmp`);
      await this.client.create(temporary, bytes, { overwrite: true });
      for (const candidate of candidateNames(name)) {
        const target = posix.join(directory, candidate);
        if (await this.client.rename(temporary, target)) break;
        // Refused: the name is taken (a target that is not there fails this status, and so the
        // store, rather than trying the next name for ever).
        const existing = await this.client.status(target);
        if (existing.length === bytes.length) {
          await this.client.delete(temporary);
          break;
        }
      }
    }
    await unlink(localPath);
  }
}

/** `name`, then `stem-1.ext`, `stem-2.ext`, …: where a segment goes when its name is taken. */
export function* candidateNames(name: string): Generator<string> {
  yield name;
  const extension = extname(name);
  const stem = name.slice(0, name.length - extension.length);
  for (let n = 1; ; n++) yield `${stem}-${n}${extension}`;
}

export class DirectorySegmentStore implements SegmentStore {
  constructor(private readonly root: string) {}

  async store(source: string, localPath: string): Promise<void> {
    const directory = join(this.root, source);
    await mkdir(directory, { recursive: true });
    const name = basename(localPath);
    const size = (await stat(localPath)).size;
    const temporary = join(directory, `.${name}.tmp`);
    await copyFile(localPath, temporary);
    for (const candidate of candidateNames(name)) {
      const target = join(directory, candidate);
      const existing = await stat(target).catch(() => undefined);
      if (existing?.size === size) {
        await unlink(temporary);
        break;
      }
      if (!existing) {
        await rename(temporary, target);
        break;
      }
    }
    await unlink(localPath);
  }
}
