/**
 * Role processes started by the loopback harnesses (`node --import tsx src/cli.ts <role>`): a role
 * prints one `{"ready":...}` JSON line on stdout once it serves.
 */
import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

/**
 * Collects the child's output (its last `keepLines` stdout lines, and stderr) and resolves with
 * its ready line; rejects, with the output so far, if it exits first or is not ready in time.
 */
export async function awaitReady(
  child: ChildProcess,
  role: string,
  timeoutMs: number,
  keepLines: number,
): Promise<{ ready: Record<string, unknown>; log: string[] }> {
  const log: string[] = [];
  child.stderr!.on("data", (chunk: Buffer) => log.push(chunk.toString()));
  const lines = createInterface({ input: child.stdout! });
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${role} did not start in ${timeoutMs / 1000} s:\n${log.join("\n")}`)),
      timeoutMs,
    );
    lines.on("line", (line) => {
      log.push(line);
      if (log.length > keepLines) log.shift();
      if (line.startsWith('{"ready"')) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as Record<string, unknown>);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${role} exited with ${code} before it was ready:\n${log.join("\n")}`));
    });
  });
  return { ready, log };
}
