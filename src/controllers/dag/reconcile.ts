/**
 * Dag: validate → status. The scheduler and worker pods are reconciled here once the data
 * plane provides them.
 */
import { dagDefinition } from "../../api/dag.js";
import { acceptingController } from "../accepted.js";
import { validateDag } from "./validate.js";

export const dagController = acceptingController({
  definition: dagDefinition,
  validate: (spec) => validateDag(spec),
  statusFields: (spec) => ({ tasks: spec.tasks.length }),
});
