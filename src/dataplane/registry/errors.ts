/**
 * Confluent Schema Registry's error bodies, `{"error_code": 40401, "message": "..."}`, with its
 * codes: clients (confluent-kafka, kcat, Spark's ABRiS) branch on `error_code`, not on the text.
 */
import {
  DeletionRefusedError,
  IncompatibleSchemaError,
  InvalidSchemaError,
  SchemaRegistryError,
  SubjectNotFoundError,
  UnknownSchemaIdError,
} from "../avro/registry.js";

export const ErrorCode = {
  subjectNotFound: 40401,
  versionNotFound: 40402,
  schemaNotFound: 40403,
  subjectSoftDeleted: 40404,
  subjectNotSoftDeleted: 40405,
  versionSoftDeleted: 40406,
  versionNotSoftDeleted: 40407,
  subjectLevelCompatibilityNotConfigured: 40408,
  incompatibleSchema: 409,
  invalidSchema: 42201,
  invalidVersion: 42202,
  invalidCompatibilityLevel: 42203,
  invalidMode: 42204,
  storeError: 50001,
  operationTimeout: 50002,
} as const;

/** An answer that is an error: HTTP status, Confluent error code, message. */
export class RestError extends Error {
  override name = "RestError";
  constructor(
    readonly status: number,
    readonly errorCode: number,
    message: string,
  ) {
    super(message);
  }

  get body(): { error_code: number; message: string } {
    return { error_code: this.errorCode, message: this.message };
  }
}

export const subjectNotFound = (subject: string) =>
  new RestError(404, ErrorCode.subjectNotFound, `Subject '${subject}' not found.`);
export const versionNotFound = (version: number | string) =>
  new RestError(404, ErrorCode.versionNotFound, `Version ${version} not found.`);
export const schemaNotFound = (id: number | string) =>
  new RestError(404, ErrorCode.schemaNotFound, `Schema ${id} not found`);
export const invalidSchema = (detail: string) =>
  new RestError(422, ErrorCode.invalidSchema, `Invalid schema: ${detail}`);

/** Turns what the registry threw into Confluent's answer. */
export function toRestError(error: unknown): RestError {
  if (error instanceof RestError) return error;
  if (error instanceof SubjectNotFoundError) {
    return error.version === undefined ? subjectNotFound(error.subject) : versionNotFound(error.version);
  }
  if (error instanceof UnknownSchemaIdError) return schemaNotFound(error.id);
  if (error instanceof InvalidSchemaError) return invalidSchema(error.message);
  if (error instanceof IncompatibleSchemaError) {
    return new RestError(
      409,
      ErrorCode.incompatibleSchema,
      `Schema being registered is incompatible with an earlier schema for subject "${error.subject}", details: [${error.message}]`,
    );
  }
  if (error instanceof DeletionRefusedError) return new RestError(404, error.code, error.message);
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof SchemaRegistryError && /took more than/.test(message)) {
    return new RestError(500, ErrorCode.operationTimeout, `Operation timed out: ${message}`);
  }
  return new RestError(500, ErrorCode.storeError, `Error in the backend data store: ${message}`);
}
