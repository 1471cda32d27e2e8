/**
 * Runs in every test worker before the tests. Byte arrays compare byte for byte in `toEqual`:
 * Vitest's generic equality walks a buffer element by element through its type checks, which
 * took 10 s for two equal 3 MiB buffers on a two-core machine (against 0.5 ms for
 * `Buffer.compare`), so tests that check what they read back were CPU-bound, and slow enough
 * under load to approach their timeouts. Arrays of different kinds are left to the default
 * equality, which reports the difference in kind.
 */
import { expect } from "vitest";

function sameBytes(a: unknown, b: unknown): boolean | undefined {
  if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array) || a.constructor !== b.constructor) {
    return undefined;
  }
  return Buffer.compare(a, b) === 0;
}

expect.addEqualityTesters([sameBytes]);
