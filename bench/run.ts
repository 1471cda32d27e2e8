/**
 * Runs every benchmark under bench/ (files named *.bench.ts), one after another in this process,
 * or only those whose name contains one of the arguments: `npm run bench -- erasure collector`.
 * Each benchmark prints its own table with a ratio against a reference measured in the same run;
 * benchmarks print numbers and assert nothing.
 */
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);
const files = readdirSync(here)
  .filter((file) => file.endsWith(".bench.ts"))
  .filter((file) => filters.length === 0 || filters.some((filter) => file.includes(filter)))
  .sort();

if (files.length === 0) {
  console.error(`no benchmark matches ${filters.join(", ")}`);
  process.exit(2);
}

for (const file of files) {
  console.log(`\n## ${file.replace(".bench.ts", "")}\n`);
  const module = (await import(pathToFileURL(join(here, file)).href)) as { run?: () => Promise<void> };
  if (typeof module.run !== "function") throw new Error(`${file} does not export run()`);
  await module.run();
}

// A benchmark that left a connection or timer open would keep `npm run bench` from ending after
// its last table: say what was left, then end. Connections still closing get a second to finish.
const open = () =>
  process.getActiveResourcesInfo().filter((kind) => kind !== "TTYWrap" && kind !== "PipeWrap");
for (let waited = 0; open().length > 0 && waited < 1_000; waited += 50) {
  await new Promise((resolve) => setTimeout(resolve, 50).unref());
}
const left = open();
if (left.length > 0) console.error(`\n(left open after the benchmarks: ${left.join(", ")})`);
process.exit(0);
