/**
 * `tributary schema-registry`'s configuration: flags (`--port 8081`) over environment variables
 * (`TRIBUTARY_SCHEMA_REGISTRY_PORT=8081`, how the chart sets them) over defaults, validated with zod.
 */
import { z } from "zod";
import { COMPATIBILITY_LEVELS, SCHEMAS_TOPIC } from "../avro/registry.js";
import {
  brokerList,
  ConfigError,
  configUsage,
  inputKeys,
  parseRoleConfig,
  positiveInteger,
} from "../config.js";
import { kafkaSecurity, kafkaSecurityFields, withoutSecuritySettings } from "../kafkaClient.js";

export const schemaRegistryConfigSchema = z
  .object({
    brokers: brokerList,
    /** The compacted topic the collectors, connectors and sinks keep their schemas in. */
    schemasTopic: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,249}$/, { error: "schemasTopic must be a valid Kafka topic name" })
      .default(SCHEMAS_TOPIC),
    host: z.string().default("0.0.0.0"),
    /** Confluent Schema Registry's default port, so clients' defaults work. */
    port: z.coerce.number().int().min(0).max(65535).default(8081),
    clientId: z.string().min(1).default("tributary-schema-registry"),
    /** Compatibility of subjects when neither the subject nor `PUT /config` set one. */
    defaultCompatibility: z
      .string()
      .transform((value) => value.toUpperCase())
      .pipe(
        z.enum(COMPATIBILITY_LEVELS, {
          error: `defaultCompatibility must be one of ${COMPATIBILITY_LEVELS.join(", ")}`,
        }),
      )
      .default("BACKWARD"),
    /** The largest request body; a schema is a few KiB, Confluent's own limit is about this. */
    maxBodyBytes: positiveInteger("maxBodyBytes").default(1024 * 1024),
    /** How long a read of the topic to its end may take before a request fails with 50002. */
    syncTimeoutMs: positiveInteger("syncTimeoutMs").default(30_000),
    /** How often the lag behind the topic's end is measured for /metrics. */
    lagCheckIntervalMs: positiveInteger("lagCheckIntervalMs").default(10_000),
    /** How long to wait between attempts to reach Kafka at start (the server answers /healthz meanwhile). */
    connectRetryMs: positiveInteger("connectRetryMs").default(5_000),
    shutdownTimeoutMs: positiveInteger("shutdownTimeoutMs").default(10_000),
    ...kafkaSecurityFields,
  })
  .transform((config, ctx) => ({
    ...withoutSecuritySettings(config),
    kafkaSecurity: kafkaSecurity(config, ctx),
  }));

export type SchemaRegistryConfig = z.output<typeof schemaRegistryConfigSchema>;
export type SchemaRegistryConfigInput = z.input<typeof schemaRegistryConfigSchema>;

const role = {
  role: "schema-registry",
  envPrefix: "TRIBUTARY_SCHEMA_REGISTRY_",
  schema: schemaRegistryConfigSchema,
  keys: inputKeys(schemaRegistryConfigSchema),
};

export { ConfigError };

export const usage = (): string => configUsage(role);

export function parseSchemaRegistryConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): SchemaRegistryConfig {
  return parseRoleConfig(role, argv, env);
}
