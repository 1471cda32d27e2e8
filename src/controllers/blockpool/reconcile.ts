/**
 * BlockPool: validate → build → apply → status.
 */
import { blockPoolDefinition } from "../../api/blockpool.js";
import type { Context, ControllerDefinition } from "../../operator/controller.js";
import { builtin, type KubeObject } from "../../operator/kube.js";
import { pausedHealth, reportProblems, resourceType, specOf, writeHealth } from "../common.js";
import {
  type BlockPoolBuildInput,
  dataNodeName,
  desiredChildren,
  nameNodeName,
  webHdfsEndpoint,
} from "./build.js";
import { blockPoolHealth, roleState } from "./status.js";
import { validateBlockPool } from "./validate.js";

export async function reconcileBlockPool(resource: KubeObject, context: Context<KubeObject>) {
  const spec = specOf(blockPoolDefinition, resource);
  const input: BlockPoolBuildInput = { resource, spec, image: context.image };
  const problems = validateBlockPool(spec);
  if (problems.length > 0) {
    await reportProblems(context, resource, problems);
    return undefined;
  }
  const paused = spec.clusterOperation.reconciliationPaused;
  let nameNodes: KubeObject | undefined;
  let dataNodes: KubeObject | undefined;
  if (paused) {
    // Spec ignored: report what runs, touch nothing.
    const { namespace = "", name } = resource.metadata;
    nameNodes = context.cachedChild(builtin.statefulSet, namespace, nameNodeName(name));
    dataNodes = context.cachedChild(builtin.statefulSet, namespace, dataNodeName(name));
  } else {
    const applied = await context.apply(desiredChildren(input));
    nameNodes = applied.find(
      (child) => child.kind === "StatefulSet" && child.metadata.name === nameNodeName(resource.metadata.name),
    );
    dataNodes = applied.find(
      (child) => child.kind === "StatefulSet" && child.metadata.name === dataNodeName(resource.metadata.name),
    );
  }
  const stopped = spec.clusterOperation.stopped;
  const desired = (replicas: number, statefulSet: KubeObject | undefined) =>
    paused
      ? ((statefulSet?.spec as { replicas?: number } | undefined)?.replicas ?? 0)
      : stopped
        ? 0
        : replicas;
  const roles = [
    roleState("name nodes", desired(spec.nameNodes.replicas, nameNodes), nameNodes),
    roleState("data nodes", desired(spec.dataNodes.replicas, dataNodes), dataNodes),
  ];
  const health = blockPoolHealth(roles, stopped);
  // A paused pool still reports how its workloads are; only its spec changes wait.
  if (paused) health.progressing = pausedHealth.progressing;
  await writeHealth(context, resource, health, {
    liveDataNodes: roles[1]!.ready,
    erasureCodingPolicies: [...new Set(spec.erasureCoding.map((directory) => directory.policy))],
    webHdfsEndpoint: webHdfsEndpoint(input),
  });
  return undefined;
}

export const blockPoolController: ControllerDefinition<KubeObject> = {
  type: resourceType(blockPoolDefinition),
  owns: [builtin.statefulSet, builtin.service, builtin.podDisruptionBudget, builtin.persistentVolumeClaim],
  reconcile: reconcileBlockPool,
  // The pool's files live on the PersistentVolumeClaims; the StatefulSets' retention policy
  // (from deletionPolicy) decides their fate, so nothing outside Kubernetes is left to release.
  cleanup: async () => {},
};
