/**
 * The volume archive (`spec.archive.volume`): a segment lands under its name through a temporary file,
 * two different segments of one name are both kept, and a retried store does not keep a copy.
 * The BlockPool store does the same through WebHDFS (test/integration/video-archive.test.ts).
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { candidateNames, DirectorySegmentStore } from "../../src/dataplane/video/archive.js";
import { writeSegment } from "../support/video.js";

describe("archive segments on a volume", () => {
  const directories: string[] = [];
  afterAll(() => Promise.all(directories.map((d) => rm(d, { recursive: true, force: true }))));

  it("names the next free -1, -2, … keeping the extension", () => {
    const names = candidateNames("gate-20261206T101500Z.mp4");
    expect([0, 1, 2].map(() => names.next().value)).toEqual([
      "gate-20261206T101500Z.mp4",
      "gate-20261206T101500Z-1.mp4",
      "gate-20261206T101500Z-2.mp4",
    ]);
  });

  it("keeps two different segments of one name and stores a retried one once", async () => {
    const root = await mkdtemp(join(tmpdir(), "tributary-archive-"));
    const scratch = await mkdtemp(join(tmpdir(), "tributary-scratch-"));
    directories.push(root, scratch);
    const store = new DirectorySegmentStore(root);
    const segment = (bytes: number, fill: number) =>
      writeSegment(scratch, "gate-20261206T101500Z.ts", bytes, fill);
    await store.store("gate", await segment(1_000, 1));
    await store.store("gate", await segment(2_000, 2));
    await store.store("gate", await segment(1_000, 1));
    expect((await readdir(join(root, "gate"))).sort()).toEqual([
      "gate-20261206T101500Z-1.ts",
      "gate-20261206T101500Z.ts",
    ]);
    expect(
      (await readFile(join(root, "gate", "gate-20261206T101500Z-1.ts"))).equals(Buffer.alloc(2_000, 2)),
    ).toBe(true);
    // The local copies are gone once stored.
    expect(await readdir(scratch)).toEqual([]);
  });
});
