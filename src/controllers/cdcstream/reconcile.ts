/**
 * CDCStream: validate → status. The connector pods and the replication slot are reconciled
 * here once the data plane provides them; the CRD schema already checks the whole spec.
 */
import { cdcStreamDefinition } from "../../api/cdcstream.js";
import { acceptingController } from "../accepted.js";

export const cdcStreamController = acceptingController({
  definition: cdcStreamDefinition,
  validate: () => [],
});
