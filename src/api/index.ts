/**
 * The API of Tributary: every resource definition, its schemas and types, and the shared
 * vocabulary. The operator, the controllers, the CRD generator and the tests import from here.
 */
import { blockPoolDefinition } from "./blockpool.js";
import { cdcStreamDefinition } from "./cdcstream.js";
import { dagDefinition } from "./dag.js";
import { topicDefinition } from "./topic.js";
import { videoCollectorDefinition } from "./videocollector.js";
import { yarnQueueDefinition } from "./yarnqueue.js";

export * from "./blockpool.js";
export * from "./cdcstream.js";
export * from "./common.js";
export * from "./conditions.js";
export * from "./dag.js";
export * from "./resource.js";
export * from "./topic.js";
export * from "./videocollector.js";
export * from "./yarnqueue.js";

/** All six resources, in the order they are documented. */
export const resources = [
  topicDefinition,
  cdcStreamDefinition,
  videoCollectorDefinition,
  blockPoolDefinition,
  yarnQueueDefinition,
  dagDefinition,
] as const;

export type AnyResourceDefinition = (typeof resources)[number];
export type Kind = AnyResourceDefinition["kind"];

/** The definition of a kind, by its kind name (`Topic`, `CDCStream`, ...). */
export function definitionOf(kind: string): AnyResourceDefinition {
  const definition = resources.find((candidate) => candidate.kind === kind);
  if (!definition) {
    throw new Error(`unknown kind '${kind}': expected one of ${resources.map((r) => r.kind).join(", ")}`);
  }
  return definition;
}
