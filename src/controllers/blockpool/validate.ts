import type { BlockPoolSpec } from "../../api/blockpool.js";
import { Reason } from "../../api/conditions.js";
import type { SpecProblem } from "../common.js";

/** Data and parity units of each erasure-coding policy: a stripe needs k+m distinct data nodes. */
export const erasureCodingUnits: Record<string, { data: number; parity: number }> = {
  "RS-6-3": { data: 6, parity: 3 },
  "RS-3-2": { data: 3, parity: 2 },
  "RS-10-4": { data: 10, parity: 4 },
  "XOR-2-1": { data: 2, parity: 1 },
};

/**
 * What the CRD's CEL rules also check, checked again here: a resource stored before the rules
 * existed, or written with validation off, must still be refused before pods start on it.
 */
export function validateBlockPool(spec: BlockPoolSpec): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const dataNodes = spec.dataNodes.replicas;
  if (spec.replication > dataNodes) {
    problems.push({
      reason: Reason.InsufficientDataNodes,
      message: `spec.replication is ${spec.replication} but spec.dataNodes.replicas is ${dataNodes}: each copy of a block needs its own data node`,
    });
  }
  for (const [index, directory] of spec.erasureCoding.entries()) {
    const units = erasureCodingUnits[directory.policy];
    if (!units) continue;
    const needed = units.data + units.parity;
    if (needed > dataNodes) {
      problems.push({
        reason: Reason.InsufficientDataNodes,
        message: `spec.erasureCoding[${index}] (${directory.path}) uses ${directory.policy}, which needs at least ${needed} data nodes, but spec.dataNodes.replicas is ${dataNodes}`,
      });
    }
  }
  return problems;
}
