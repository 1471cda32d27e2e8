/**
 * The reconcile of a kind that, for now, validates and reports status without spawning
 * children of its own: parse, check what the CRD schema cannot, write conditions. A valid
 * spec is accepted but not Ready (`DataPlaneNotAvailable`): nothing runs for it yet.
 */
import type { ResourceDefinition, SpecOf } from "../api/resource.js";
import type { Context, ControllerDefinition } from "../operator/controller.js";
import type { KubeObject } from "../operator/kube.js";
import {
  acceptedHealth,
  reportProblems,
  resourceType,
  type SpecProblem,
  specOf,
  writeHealth,
} from "./common.js";

export interface AcceptingController<D extends ResourceDefinition> {
  definition: D;
  /** Problems the schema cannot express; `peers` are the other resources of the kind in the namespace. */
  validate(spec: SpecOf<D>, resource: KubeObject, peers: KubeObject[]): SpecProblem[];
  /** Status fields besides conditions, from the accepted spec. */
  statusFields?(spec: SpecOf<D>, resource: KubeObject, peers: KubeObject[]): Record<string, unknown>;
  related?(resource: KubeObject, peers: KubeObject[]): string[];
}

export function acceptingController<D extends ResourceDefinition>(
  kind: AcceptingController<D>,
): ControllerDefinition<KubeObject> {
  return {
    type: resourceType(kind.definition),
    related: kind.related,
    async reconcile(resource: KubeObject, context: Context<KubeObject>) {
      const spec = specOf(kind.definition, resource) as SpecOf<D> & {
        clusterOperation?: { reconciliationPaused?: boolean };
      };
      const peers = context
        .cachedPeers(resource.metadata.namespace ?? "")
        .filter((peer) => peer.metadata.name !== resource.metadata.name);
      const problems = kind.validate(spec, resource, peers);
      // Fields describing what was accepted are kept from the last valid spec while invalid.
      const previous = (resource.status ?? {}) as Record<string, unknown>;
      const { conditions: _c, observedGeneration: _g, ...kept } = previous;
      if (problems.length > 0) {
        await reportProblems(context, resource, problems, kept);
        return undefined;
      }
      const paused = spec.clusterOperation?.reconciliationPaused ?? false;
      const fields = paused ? kept : (kind.statusFields?.(spec, resource, peers) ?? kept);
      await writeHealth(context, resource, acceptedHealth(kind.definition.kind, paused), fields);
      return undefined;
    },
    cleanup: async () => {},
  };
}
