/**
 * Topic: one Kafka topic (the operator creates it and keeps partitions and config in line, as
 * Strimzi's KafkaTopic does), optionally the clickstream collectors that feed it over HTTP and
 * the sinks that roll it into Avro or Parquet files.
 */
import { z } from "zod";
import {
  clusterOperationSchema,
  deletionPolicySchema,
  dns1123Label,
  exactlyOneFileTargetRule,
  fileTargetFields,
  kafkaClusterField,
  kafkaTopicName,
  quantitySchema,
  roleFields,
} from "./common.js";
import { commonStatusFields } from "./conditions.js";
import { defineResource, type ResourceOf, readyColumn } from "./resource.js";

export const clickstreamIngestSchema = z
  .object({
    ...roleFields({
      what: "clickstream collector",
      replicas: { default: 2, note: "Collectors are stateless; scale them with the event rate." },
    }),
    port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .default(8080)
      .describe("Port of the collector Service that accepts events (POST /v1/events, JSON or NDJSON)."),
    serviceType: z
      .enum(["ClusterIP", "NodePort", "LoadBalancer"])
      .default("ClusterIP")
      .describe("Type of the collector Service; LoadBalancer to take events from outside the cluster."),
    deadLetterTopic: z
      .string()
      .min(1)
      .max(249)
      .regex(kafkaTopicName)
      .optional()
      .describe(
        "Kafka topic that receives events failing validation, with the reason in a header; '<topic name>.dlq' when omitted. The operator creates it with the topic's replication factor.",
      ),
    maxBatchEvents: z
      .number()
      .int()
      .min(1)
      .max(100000)
      .default(500)
      .describe("Most events accepted in one request; larger batches are answered 413."),
    maxBodyBytes: quantitySchema
      .default("1Mi")
      .describe(
        "Largest request body accepted, as bytes or a quantity (1Mi); larger bodies are answered 413.",
      ),
    maxBufferedBytes: quantitySchema
      .default("64Mi")
      .describe(
        "Bytes a collector holds while Kafka has not acknowledged them. Above it the collector applies backpressure: requests are answered 503 with Retry-After instead of being queued in memory.",
      ),
    lingerMs: z
      .number()
      .int()
      .min(0)
      .max(10000)
      .default(5)
      .describe(
        "How long the producer waits to fill a batch towards Kafka; higher trades latency for throughput.",
      ),
  })
  .describe(
    "Clickstream collectors: HTTP pods that validate events, key them by session id and answer 200 only after Kafka acknowledged them.",
  );

export const sinkSchema = z
  .object({
    name: z.string().min(1).max(63).regex(dns1123Label).describe("Name of the sink, unique in the Topic."),
    format: z
      .enum(["avro", "parquet"])
      .describe(
        "File format: avro (row-oriented container files, cheap to write, good for replay) or parquet (columnar, compact, fast to scan for analytics).",
      ),
    target: z
      .object(fileTargetFields)
      .describe("Where the files are written: exactly one of blockPool or volume."),
    partitionBy: z
      .enum(["none", "date", "hour"])
      .default("hour")
      .describe(
        "Directory layout by event time: date writes dt=YYYY-MM-DD/, hour writes dt=YYYY-MM-DD/hour=HH/, none writes all files into the target directory.",
      ),
    roll: z
      .object({
        maxBytes: quantitySchema
          .default("128Mi")
          .describe("Close a file once it holds this many bytes (bytes or a quantity)."),
        maxAgeSeconds: z
          .number()
          .int()
          .min(1)
          .max(86400)
          .default(300)
          .describe("Close a file this many seconds after its first record, even if it is small."),
      })
      .prefault({})
      .describe(
        "When a file is closed and committed; offsets are committed to Kafka only after the file is durable.",
      ),
    compression: z
      .enum(["none", "snappy", "gzip", "zstd", "deflate"])
      .default("snappy")
      .describe(
        "Compression codec: avro supports none, snappy and deflate; parquet supports none, snappy, gzip and zstd.",
      ),
    parquet: z
      .object({
        rowGroupSize: z
          .number()
          .int()
          .min(1000)
          .max(10000000)
          .default(50000)
          .describe("Rows per row group: larger groups compress better and need more memory while writing."),
      })
      .optional()
      .describe("Options of the parquet format; only with format parquet."),
    ...roleFields({
      what: "sink",
      replicas: { default: 1, note: "Replicas share the topic's partitions through one consumer group." },
    }),
  })
  .describe("A consumer that rolls the topic's events into files.");

export const topicSpecSchema = z
  .object({
    kafka: kafkaClusterField("that holds the topic"),
    topicName: z
      .string()
      .min(1)
      .max(249)
      .regex(kafkaTopicName)
      .optional()
      .describe(
        "Name of the topic in Kafka; metadata.name when omitted. Immutable: Kafka cannot rename a topic.",
      ),
    partitions: z
      .number()
      .int()
      .min(1)
      .max(10000)
      .default(3)
      .describe(
        "Number of partitions; default 3. Can grow but never shrink (Kafka cannot remove partitions); growing changes which partition a key maps to.",
      ),
    replicationFactor: z
      .number()
      .int()
      .min(1)
      .max(32767)
      .default(3)
      .describe(
        "Copies of each partition on distinct brokers; default 3, so one broker can fail while min.insync.replicas=2 still accepts writes. At most the number of brokers. Immutable here: reassigning replicas is a broker operation.",
      ),
    config: z
      .record(z.string().regex(/^[a-z0-9.]+$/), z.string())
      .default({})
      .describe(
        "Topic configuration as Kafka names it, values quoted as strings: retention.ms, retention.bytes, cleanup.policy (delete|compact), min.insync.replicas, compression.type, max.message.bytes, ... Keys not listed keep the broker's default.",
      ),
    deletionPolicy: deletionPolicySchema("Retain", "the Kafka topic and the events in it are deleted"),
    ingest: z
      .object({ clickstream: clickstreamIngestSchema.optional() })
      .optional()
      .describe("Ways events get into the topic beyond plain producers."),
    sinks: z
      .array(sinkSchema)
      .max(16)
      .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] })
      .default([])
      .describe("Sinks that roll the topic into files; each has its own consumer group."),
    clusterOperation: clusterOperationSchema,
  })
  .describe("Desired state of the Kafka topic, its collectors and its sinks.");

export const topicStatusSchema = z
  .object({
    ...commonStatusFields,
    topicName: z.string().optional().describe("Name of the topic in Kafka."),
    topicId: z
      .string()
      .optional()
      .describe("Kafka's topic id (UUID); changes only if the topic was recreated."),
    partitions: z.number().int().optional().describe("Partitions the topic has in Kafka."),
    replicationFactor: z.number().int().optional().describe("Replication factor the topic has in Kafka."),
    collector: z
      .object({
        replicas: z.number().int().optional().describe("Collector pods that exist."),
        readyReplicas: z.number().int().optional().describe("Collector pods that are ready to take events."),
        endpoint: z.string().optional().describe("In-cluster URL that accepts events."),
      })
      .optional()
      .describe("State of the clickstream collectors."),
    sinks: z
      .array(
        z
          .object({
            name: z.string().describe("Name of the sink."),
            readyReplicas: z.number().int().optional().describe("Sink pods that are ready."),
            lastCommittedFile: z.string().optional().describe("Path of the last file made durable."),
            lastCommitTime: z.iso
              .datetime({ offset: true })
              .optional()
              .describe("When the last file was committed."),
          })
          .describe("State of one sink."),
      )
      .optional()
      .describe("State of each sink."),
  })
  .describe("Observed state of the topic.");

export const topicDefinition = defineResource({
  kind: "Topic",
  description:
    "A Kafka topic managed by Tributary: partitions, replication and config, optional clickstream collectors that take events over HTTP, and sinks that roll the topic into Avro or Parquet files.",
  plural: "topics",
  shortNames: ["tp"],
  spec: topicSpecSchema,
  status: topicStatusSchema,
  printerColumns: [
    readyColumn("Whether the topic and its collectors and sinks are ready."),
    {
      name: "Topic",
      type: "string",
      jsonPath: ".status.topicName",
      description: "Name of the topic in Kafka.",
    },
    { name: "Partitions", type: "integer", jsonPath: ".spec.partitions", description: "Desired partitions." },
    { name: "RF", type: "integer", jsonPath: ".spec.replicationFactor", description: "Replication factor." },
    {
      name: "Collectors",
      type: "integer",
      jsonPath: ".status.collector.readyReplicas",
      description: "Ready clickstream collectors.",
    },
    {
      name: "Age",
      type: "date",
      jsonPath: ".metadata.creationTimestamp",
      description: "Time since creation.",
    },
  ],
  validations: [
    {
      path: "spec",
      rule: "has(self.topicName) == has(oldSelf.topicName)",
      message: "spec.topicName cannot be added or removed after creation: Kafka cannot rename a topic",
      fieldPath: ".topicName",
    },
    {
      path: "spec.topicName",
      rule: "self == oldSelf",
      message: "spec.topicName is immutable: Kafka cannot rename a topic",
    },
    {
      path: "spec.replicationFactor",
      rule: "self == oldSelf",
      message: "spec.replicationFactor is immutable: reassign replicas with Kafka's tools",
    },
    {
      path: "spec.partitions",
      rule: "self >= oldSelf",
      message: "spec.partitions cannot decrease: Kafka cannot remove partitions",
    },
    {
      path: "spec.config",
      rule: "self.all(key, key.matches('^[a-z0-9.]+$'))",
      message:
        "spec.config keys are Kafka topic config names: lower case, digits and dots (e.g. retention.ms)",
    },
    {
      path: "spec",
      rule: "!('min.insync.replicas' in self.config) || (self.config['min.insync.replicas'].matches('^[0-9]+$') && int(self.config['min.insync.replicas']) <= self.replicationFactor)",
      message: "spec.config['min.insync.replicas'] must be a number no larger than spec.replicationFactor",
      fieldPath: ".config",
    },
    {
      path: "spec.sinks[].target",
      rule: exactlyOneFileTargetRule,
      message: "spec.sinks[].target needs exactly one of blockPool or volume",
    },
    {
      path: "spec.sinks[]",
      rule: "self.format == 'parquet' ? self.compression in ['none', 'snappy', 'gzip', 'zstd'] : self.compression in ['none', 'snappy', 'deflate']",
      message:
        "spec.sinks[].compression: avro supports none, snappy and deflate; parquet supports none, snappy, gzip and zstd",
      fieldPath: ".compression",
    },
    {
      path: "spec.sinks[]",
      rule: "!has(self.parquet) || self.format == 'parquet'",
      message: "spec.sinks[].parquet is only allowed with format parquet",
      fieldPath: ".parquet",
    },
  ],
});

export type TopicSpec = z.infer<typeof topicSpecSchema>;
export type TopicStatus = z.infer<typeof topicStatusSchema>;
export type ClickstreamIngest = z.infer<typeof clickstreamIngestSchema>;
export type Sink = z.infer<typeof sinkSchema>;
export type Topic = ResourceOf<typeof topicDefinition>;
