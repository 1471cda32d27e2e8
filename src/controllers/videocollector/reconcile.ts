/**
 * VideoCollector: validate → status. The collector pods are reconciled here once the data
 * plane provides them; the CRD schema already checks the whole spec.
 */
import { videoCollectorDefinition } from "../../api/videocollector.js";
import { acceptingController } from "../accepted.js";

export const videoCollectorController = acceptingController({
  definition: videoCollectorDefinition,
  validate: () => [],
  statusFields: (spec) => ({ sourcesTotal: spec.sources.length }),
});
