/**
 * The collector's configuration: command-line flags (`--max-body-bytes 1048576`) over environment
 * variables (`TRIBUTARY_COLLECTOR_MAX_BODY_BYTES=1048576`) over defaults, validated with zod.
 */
import { hostname } from "node:os";
import { z } from "zod";
import { SCHEMAS_TOPIC } from "../avro/registry.js";
import {
  booleanFlag,
  brokerList,
  ConfigError,
  configUsage,
  inputKeys,
  parseRoleConfig,
  positiveInteger,
} from "../config.js";
import { kafkaSecurity, kafkaSecurityFields, withoutSecuritySettings } from "../kafkaClient.js";
import { DEAD_LETTER_ENVELOPE_BYTES } from "./deadLetter.js";
import { MAX_URL_LENGTH } from "./schema.js";

export const collectorConfigSchema = z
  .object({
    brokers: brokerList,
    topic: z.string({ error: "topic is required" }).regex(/^[A-Za-z0-9._-]{1,249}$/, {
      error: "topic must be 1-249 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
    }),
    dlqTopic: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,249}$/)
      .optional(),
    schemasTopic: z.string().default(SCHEMAS_TOPIC),
    host: z.string().default("0.0.0.0"),
    port: z.coerce.number().int().min(0).max(65535).default(8080),
    clientId: z.string().min(1).default("tributary-collector"),
    /** Identifies this instance in every event; the pod name in Kubernetes (at most 253 characters). */
    collectorId: z
      .string()
      .min(1)
      .max(253, { error: "collectorId must be at most 253 characters, as a pod name is" })
      .default(hostname()),
    maxBodyBytes: positiveInteger("maxBodyBytes").default(1024 * 1024),
    maxEventsPerRequest: positiveInteger("maxEventsPerRequest").default(1000),
    maxBufferedEvents: positiveInteger("maxBufferedEvents").default(20_000),
    maxBufferedBytes: positiveInteger("maxBufferedBytes").default(32 * 1024 * 1024),
    maxBatchEvents: positiveInteger("maxBatchEvents").default(1000),
    /** Below the broker's default message.max.bytes (1 MiB) for one partition's record batch. */
    maxBatchBytes: positiveInteger("maxBatchBytes").default(512 * 1024),
    /**
     * The most of a refused body, NDJSON line or event a dead letter keeps, in bytes of its JSON;
     * the letter records the size the whole had. Kafka refuses a message over its message size,
     * and a letter it refuses would fail its request on every retry.
     */
    deadLetterRawBytes: positiveInteger("deadLetterRawBytes")
      .min(1024, { error: "deadLetterRawBytes must be at least 1024" })
      .default(64 * 1024),
    /**
     * The longest string or property name a body may hold, in characters. No field of an event is
     * longer than 8192; a body with a far longer string is no tracker's, and is refused whole (400).
     */
    maxStringLength: positiveInteger("maxStringLength").default(64 * 1024),
    lingerMs: z.coerce.number().int().min(0).default(2),
    /**
     * Kafka sends in flight at once, each of partitions no other send has in flight, so a
     * session's events stay in order; above 1, each send takes the partitions of one leader
     * broker (pipeline.ts). One send already carries a batch per partition.
     */
    maxInFlightBatches: positiveInteger("maxInFlightBatches").default(1),
    /** How long a request waits for Kafka's acknowledgement before answering 503. */
    ackTimeoutMs: positiveInteger("ackTimeoutMs").default(10_000),
    /** How long a batch may wait for Kafka before the collector reports it unavailable. */
    stallTimeoutMs: positiveInteger("stallTimeoutMs").default(5_000),
    retryAfterSeconds: positiveInteger("retryAfterSeconds").default(1),
    unavailableRetryAfterSeconds: positiveInteger("unavailableRetryAfterSeconds").default(5),
    cookieName: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/)
      .default("tributary_sid"),
    /** 30 minutes of inactivity ends a session, as in the usual web analytics. */
    sessionMaxAgeSeconds: positiveInteger("sessionMaxAgeSeconds").default(1800),
    /** Take the client IP from X-Forwarded-For's first hop (behind an ingress or load balancer). */
    trustForwardedFor: booleanFlag.default(true),
    shutdownTimeoutMs: positiveInteger("shutdownTimeoutMs").default(20_000),
    /** How long to wait at start for the topics to appear in the brokers' metadata. */
    topicWaitMs: z.coerce.number().int().min(0).default(15_000),
    /**
     * How often readiness asks a broker for the topic's metadata, so an idle collector notices
     * Kafka going away; a check gets `brokerCheckTimeoutMs` before it counts as failed.
     */
    brokerCheckIntervalMs: positiveInteger("brokerCheckIntervalMs").default(5_000),
    brokerCheckTimeoutMs: positiveInteger("brokerCheckTimeoutMs").default(3_000),
    ...kafkaSecurityFields,
  })
  .refine((config) => config.maxEventsPerRequest <= config.maxBufferedEvents, {
    error: "maxEventsPerRequest must not exceed maxBufferedEvents, or a full request could never be buffered",
    path: ["maxEventsPerRequest"],
  })
  .refine((config) => config.deadLetterRawBytes + DEAD_LETTER_ENVELOPE_BYTES <= config.maxBatchBytes, {
    error: `deadLetterRawBytes must leave ${DEAD_LETTER_ENVELOPE_BYTES} bytes for the rest of a dead letter within maxBatchBytes, which is kept below Kafka's message size`,
    path: ["deadLetterRawBytes"],
  })
  .refine((config) => config.maxStringLength >= MAX_URL_LENGTH, {
    error: `maxStringLength must be at least ${MAX_URL_LENGTH}, the longest field of an event (request.url, referrer)`,
    path: ["maxStringLength"],
  })
  .transform((config, ctx) => ({
    ...withoutSecuritySettings(config),
    dlqTopic: config.dlqTopic ?? `${config.topic}.dlq`,
    kafkaSecurity: kafkaSecurity(config, ctx),
  }));

export type CollectorConfig = z.output<typeof collectorConfigSchema>;
export type CollectorConfigInput = z.input<typeof collectorConfigSchema>;

const collectorRole = {
  role: "collector",
  envPrefix: "TRIBUTARY_COLLECTOR_",
  schema: collectorConfigSchema,
  keys: inputKeys(collectorConfigSchema),
};

export { ConfigError };

export const usage = (): string => configUsage(collectorRole);

/** Parses flags over `env`; a bad value is a ConfigError naming the flag and what was expected. */
export function parseCollectorConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): CollectorConfig {
  return parseRoleConfig(collectorRole, argv, env);
}
