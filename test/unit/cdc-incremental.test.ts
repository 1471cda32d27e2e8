/**
 * The incremental snapshot's guard against PostgreSQL's commit/visibility race: a transaction
 * whose commit the stream met before the low watermark, but which the chunk's snapshot could not
 * see, makes the chunk stale, so it is read again.
 */
import { describe, expect, it } from "vitest";
import { committedBefore, snapshotInProgress } from "../../src/dataplane/cdc/incremental.js";

describe("incremental snapshot chunks", () => {
  it("reads the in-progress xids of pg_current_snapshot(), cut to pgoutput's 32 bits", () => {
    expect(snapshotInProgress("745:749:745,747")).toEqual([745, 747]);
    expect(snapshotInProgress("750:750:")).toEqual([]);
    // An xid8 past the first epoch: pgoutput carries the low 32 bits.
    expect(snapshotInProgress(`${2 ** 32 + 5}:${2 ** 32 + 9}:${2 ** 32 + 7}`)).toEqual([7]);
  });

  it("throws a chunk away when a transaction it could not see committed before the window opened", () => {
    // The stream met xid 100 commit as its 10th commit, then the low watermark after its 12th.
    const commits = new Map([
      [100, 10],
      [101, 11],
      [102, 12],
      [103, 14],
    ]);
    expect(committedBefore([100], commits, 12)).toBe(true);
    // Invisible but committed inside the window: the window's own check drops its rows.
    expect(committedBefore([103], commits, 12)).toBe(false);
    // Invisible and not committed yet (or aborted): its change comes after the chunk's reads.
    expect(committedBefore([200], commits, 12)).toBe(false);
    expect(committedBefore([], commits, 12)).toBe(false);
  });
});
