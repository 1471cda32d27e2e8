/**
 * CDCStream: validate → status. The connector pods and the replication slot are reconciled
 * here once the data plane provides them. Validate adds what the CRD schema cannot check: the
 * snapshot schedule's fields and time zone.
 */
import { cdcStreamDefinition } from "../../api/cdcstream.js";
import { acceptingController } from "../accepted.js";
import { validateCdcStream } from "./validate.js";

export const cdcStreamController = acceptingController({
  definition: cdcStreamDefinition,
  validate: (spec) => validateCdcStream(spec),
});
