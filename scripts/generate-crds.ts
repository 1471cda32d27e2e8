/**
 * `npm run generate`: writes crds/<plural>.tributary.dev.yaml from the zod schemas in src/api.
 * The files are generated, never edited by hand; test/unit/crd-drift.test.ts fails when they
 * differ from what this script writes.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { crdFileName, customResourceDefinitions, renderCrd } from "../src/api/crds.js";

const crdsDir = resolve(dirname(fileURLToPath(import.meta.url)), "..", "crds");

mkdirSync(crdsDir, { recursive: true });
const written = new Set<string>();
for (const crd of customResourceDefinitions()) {
  const file = crdFileName(crd);
  writeFileSync(join(crdsDir, file), renderCrd(crd));
  written.add(file);
}
// A kind that was removed or renamed must not leave its old CRD behind.
for (const file of readdirSync(crdsDir)) {
  if (file.endsWith(".yaml") && !written.has(file)) rmSync(join(crdsDir, file));
}
process.stdout.write(`wrote ${written.size} CustomResourceDefinitions to ${crdsDir}\n`);
