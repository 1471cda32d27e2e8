import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { crdFileName, customResourceDefinitions, renderCrd } from "../../src/api/crds.js";

const crdsDir = join(import.meta.dirname, "..", "..", "crds");
const fix = "crds/ is out of date with src/api: run `npm run generate` and commit the result";

describe("committed CRDs", () => {
  const crds = customResourceDefinitions();

  it.each(crds.map((crd) => [crdFileName(crd), crd] as const))(
    "crds/%s equals what generation gives",
    (file, crd) => {
      const path = join(crdsDir, file);
      expect(existsSync(path), `${file} is missing. ${fix}`).toBe(true);
      expect(readFileSync(path, "utf8"), `${file} differs. ${fix}`).toBe(renderCrd(crd));
    },
  );

  it("holds no CRD that generation does not produce", () => {
    const expected = crds.map(crdFileName).sort();
    const committed = readdirSync(crdsDir)
      .filter((file) => file.endsWith(".yaml"))
      .sort();
    expect(committed, `crds/ has stale files. ${fix}`).toEqual(expected);
  });
});
