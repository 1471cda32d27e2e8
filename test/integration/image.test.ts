import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");

/**
 * There is no Docker engine here, so this checks what can be checked of the Dockerfile: what it
 * copies exists and is not excluded by .dockerignore, and its build stage (`npm run build`)
 * produces an entrypoint that starts and lists the image's roles.
 */
describe("container image", () => {
  const dockerfile = readFileSync(join(root, "Dockerfile"), "utf8");
  const ignored = readFileSync(join(root, ".dockerignore"), "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"));

  it("copies only files that exist and that the build context includes", () => {
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((match) =>
      match[1]!.split(/\s+/),
    );
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      expect(existsSync(join(root, source)), `${source} is copied by the Dockerfile`).toBe(true);
      expect(ignored, `${source} is excluded by .dockerignore`).not.toContain(source);
    }
  });

  it("runs as a non-root user with tributary as its entrypoint", () => {
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \[.*"tributary"\]$/m);
  });

  it("builds an entrypoint that lists every role", async () => {
    // The image puts dist/ beside node_modules/; building under node_modules/.cache keeps that
    // shape, so the compiled code resolves its packages as it does in the image.
    const cache = join(root, "node_modules", ".cache");
    await mkdir(cache, { recursive: true });
    const out = await mkdtemp(join(cache, "tributary-build-"));
    try {
      await run("npx", ["tsc", "-p", "tsconfig.build.json", "--outDir", out], { cwd: root });
      const { stdout } = await run(process.execPath, [join(out, "cli.js"), "--help"], { cwd: root });
      expect(stdout).toMatch(/^usage: tributary <role>/);
      expect(stdout).toMatch(/^ {2}operator /m);
      const unknown = await run(process.execPath, [join(out, "cli.js"), "no-such-role"], { cwd: root }).catch(
        (error: { code: number; stderr: string }) => error,
      );
      expect(unknown).toMatchObject({
        code: 2,
        stderr: expect.stringContaining("unknown role 'no-such-role'"),
      });
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 300_000);
});
