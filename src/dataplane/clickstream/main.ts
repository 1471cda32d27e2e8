/**
 * `tributary collector`: takes clickstream events over HTTP, validates them, encodes them in Avro
 * under the schema registered for the topic, and produces them to Kafka keyed by session id.
 */

import type { Kafka } from "kafkajs";
import { collectDefaultMetrics } from "prom-client";
import { createLogger, type Logger } from "../../log.js";
import { SchemaRegistry, subjectForTopic } from "../avro/registry.js";
import { IdempotentProducer } from "../idempotentProducer.js";
import { createKafkaClient, explainKafkaError } from "../kafkaClient.js";
import { BrokerCheck } from "./brokerCheck.js";
import { type CollectorConfig, ConfigError, parseCollectorConfig, usage } from "./config.js";
import { CollectorMetrics } from "./metrics.js";
import { KnownPartitions } from "./partitioner.js";
import { ProducePipeline } from "./pipeline.js";
import { clickEventAvroSchema } from "./schema.js";
import { CollectorServer } from "./server.js";

export interface RunningCollector {
  /** Where the HTTP server listens. */
  port: number;
  url: string;
  config: CollectorConfig;
  metrics: CollectorMetrics;
  schemaId: number;
  /** Stops accepting, waits for requests in progress, flushes the buffer, closes Kafka clients. */
  close(): Promise<void>;
}

export function createKafka(
  config: Pick<CollectorConfig, "brokers" | "clientId" | "kafkaSecurity">,
  logger: Logger,
): Kafka {
  return createKafkaClient({
    clientId: config.clientId,
    brokers: config.brokers,
    security: config.kafkaSecurity,
    logger,
    // Reconnect quickly after a broker restart: requests are waiting on the outcome.
    retry: { initialRetryTime: 100, maxRetryTime: 2_000 },
  });
}

/** Starts a collector: registers the schema, connects the producer, listens. Used by `main`, tests and the bench. */
export async function startCollector(
  config: CollectorConfig,
  logger = createLogger("collector"),
): Promise<RunningCollector> {
  const kafka = createKafka(config, logger);
  await assertTopicsExist(kafka, [config.topic, config.dlqTopic], config.topicWaitMs).catch(
    (error: unknown) => {
      throw explainKafkaError(error, config.brokers, config.kafkaSecurity);
    },
  );
  const metrics = new CollectorMetrics();
  const registry = await SchemaRegistry.connect({ kafka, topic: config.schemasTopic, logger });
  let pipeline: ProducePipeline | undefined;
  let brokerCheck: BrokerCheck | undefined;
  try {
    const schema = await registry.register(subjectForTopic(config.topic), clickEventAvroSchema);
    const partitions = new KnownPartitions();
    const producer = IdempotentProducer.of(kafka, {
      createPartitioner: partitions.createPartitioner,
      allowAutoTopicCreation: false,
    });
    pipeline = new ProducePipeline(producer, config, metrics, logger, partitions);
    await pipeline.connect();
    brokerCheck = new BrokerCheck(
      kafka.admin(),
      {
        topic: config.topic,
        intervalMs: config.brokerCheckIntervalMs,
        timeoutMs: config.brokerCheckTimeoutMs,
      },
      logger,
    );
    await brokerCheck.start();
    const server = new CollectorServer(config, pipeline, schema, metrics, logger, brokerCheck);
    const address = await server.listen();
    logger.info(
      {
        port: address.port,
        topic: config.topic,
        dlqTopic: config.dlqTopic,
        schemaId: schema.id,
        version: schema.version,
      },
      "collector listening",
    );
    let closing: Promise<void> | undefined;
    const openPipeline = pipeline;
    const openBrokerCheck = brokerCheck;
    return {
      port: address.port,
      url: `http://${address.address.includes(":") ? `[${address.address}]` : address.address}:${address.port}`,
      config,
      metrics,
      schemaId: schema.id,
      close: () => {
        closing ??= (async () => {
          const deadline = Date.now() + config.shutdownTimeoutMs;
          await server.close(config.shutdownTimeoutMs);
          await openBrokerCheck.stop();
          await openPipeline.close(Math.max(0, deadline - Date.now()));
          await registry.close();
        })();
        return closing;
      },
    };
  } catch (error) {
    await brokerCheck?.stop();
    await pipeline?.close(0).catch(() => undefined);
    await registry.close();
    throw error;
  }
}

/**
 * The Topic controller creates the events topic and its dead-letter topic; brokers here do not
 * auto-create topics, and a producer would retry a missing one forever, so a missing topic is a
 * start-up error that names it. A topic created a moment ago may not have reached every broker's
 * metadata yet (the pod often starts right after its Topic), hence the short wait.
 */
async function assertTopicsExist(kafka: Kafka, topics: string[], waitMs = 15_000): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const existing = new Set(await admin.listTopics());
      const missing = topics.filter((topic) => !existing.has(topic));
      if (missing.length === 0) return;
      if (Date.now() > deadline) {
        const names = missing.map((t) => `'${t}'`).join(", ");
        throw new Error(
          missing.length > 1
            ? `Kafka topics ${names} do not exist; create them (the Topic resource does) before starting the collector`
            : `Kafka topic ${names} does not exist; create it (the Topic resource does) before starting the collector`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } finally {
    await admin.disconnect();
  }
}

export async function main(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(usage());
    return;
  }
  let config: CollectorConfig;
  try {
    config = parseCollectorConfig(argv);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`tributary collector: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw error;
  }
  const logger = createLogger("collector", { collectorId: config.collectorId });
  const collector = await startCollector(config, logger);
  collectDefaultMetrics({ register: collector.metrics.registry });
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, "shutting down: no new requests, flushing what Kafka has not acknowledged");
      collector.close().then(resolve, (error: unknown) => {
        logger.error({ error: (error as Error).message }, "shutdown did not complete cleanly");
        process.exitCode = 1;
        resolve();
      });
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  logger.info("collector stopped");
}
