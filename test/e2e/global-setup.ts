import { join } from "node:path";
import { kubectl, root } from "./cluster.js";

/**
 * Helm installs a chart's CRDs only when they are absent and never upgrades them, so a cluster
 * that ran an earlier build keeps its older schemas. The e2e tests apply the chart's CRDs first,
 * as a user upgrading Tributary does (docs in the README's "Install with Helm").
 */
export default async function setup(): Promise<void> {
  await kubectl([
    "apply",
    "--server-side",
    "--force-conflicts",
    "--field-manager",
    "tributary-e2e",
    "-f",
    join(root, "charts", "tributary", "crds"),
  ]);
}
