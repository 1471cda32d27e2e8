/**
 * `tributary schema-registry`: Confluent Schema Registry's REST API over the schemas topic that
 * Tributary's collectors, sinks and CDC connectors already keep (`_tributary_schemas`), so
 * confluent-kafka's Avro deserializer, `kcat -s avro` and Spark's `from_avro` read Tributary's
 * messages unchanged. Any number of replicas serve one Kafka cluster: each reads the whole topic
 * into memory and writes through it, so they agree without talking to each other.
 *
 * The server listens first (liveness answers at once) and reaches Kafka in the background,
 * retrying until it can; it is ready once it has read the topic to its end.
 */
import { collectDefaultMetrics } from "prom-client";
import { createLogger, type Logger } from "../../log.js";
import { SchemaRegistry } from "../avro/registry.js";
import { createKafkaClient, explainKafkaError, KafkaAuthenticationError } from "../kafkaClient.js";
import { ConfigError, parseSchemaRegistryConfig, type SchemaRegistryConfig, usage } from "./config.js";
import { SchemaRegistryMetrics } from "./metrics.js";
import { SchemaRegistryServer } from "./server.js";

export interface RunningSchemaRegistry {
  port: number;
  url: string;
  config: SchemaRegistryConfig;
  metrics: SchemaRegistryMetrics;
  /** Resolves once the topic was read to its end; rejects on a start-up error retrying cannot fix. */
  ready: Promise<void>;
  /** The registry behind the API, once ready. */
  registry(): SchemaRegistry | undefined;
  close(): Promise<void>;
}

export async function startSchemaRegistryServer(
  config: SchemaRegistryConfig,
  logger: Logger = createLogger("schema-registry"),
): Promise<RunningSchemaRegistry> {
  const metrics = new SchemaRegistryMetrics();
  let registry: SchemaRegistry | undefined;
  let closed = false;
  let lagTimer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;

  const notReadyReason = (): string | undefined => {
    if (!registry) return `reading the schemas topic '${config.schemasTopic}' to its end`;
    const failure = registry.failure();
    return failure ? `the reader of '${config.schemasTopic}' stopped: ${failure}` : undefined;
  };
  const server = new SchemaRegistryServer(
    { current: () => registry, notReadyReason },
    { maxBodyBytes: config.maxBodyBytes, host: config.host, port: config.port },
    metrics,
    logger,
  );
  const address = await server.listen();
  metrics.ready.set(0);

  const updateGauges = async (connected: SchemaRegistry) => {
    metrics.subjects.set(connected.subjectNames().length);
    metrics.appliedOffset.set(Number(connected.appliedOffset));
    metrics.ready.set(connected.failure() ? 0 : 1);
    const end = await connected.logEnd();
    metrics.lagRecords.set(Math.max(0, Number(end - connected.appliedOffset)));
  };

  const ready = (async () => {
    for (let attempt = 1; !closed; attempt++) {
      const kafka = createKafkaClient({
        clientId: config.clientId,
        brokers: config.brokers,
        security: config.kafkaSecurity,
        logger,
        // Give up on a connection attempt within seconds: the loop below retries, and a broker
        // that comes back is found on the next attempt rather than after kafkajs's long backoff.
        retry: { initialRetryTime: 200, maxRetryTime: 2_000, retries: 5 },
      });
      try {
        const connected = await SchemaRegistry.connect({
          kafka,
          topic: config.schemasTopic,
          defaultCompatibility: config.defaultCompatibility,
          syncTimeoutMs: config.syncTimeoutMs,
          logger,
        });
        if (closed) {
          await connected.close();
          return;
        }
        registry = connected;
        logger.info(
          {
            topic: config.schemasTopic,
            offset: String(connected.appliedOffset),
            subjects: connected.subjectNames().length,
          },
          "schema registry ready",
        );
        await updateGauges(connected).catch(() => undefined);
        lagTimer = setInterval(() => {
          updateGauges(connected).catch((error: unknown) =>
            logger.warn(
              { error: (error as Error).message },
              "could not measure the lag behind the schemas topic",
            ),
          );
        }, config.lagCheckIntervalMs);
        lagTimer.unref();
        return;
      } catch (error) {
        const explained = explainKafkaError(error, config.brokers, config.kafkaSecurity);
        if (explained instanceof KafkaAuthenticationError) throw explained;
        logger.warn(
          { attempt, brokers: config.brokers, error: (error as Error).message },
          `cannot read the schemas topic yet; retrying in ${config.connectRetryMs} ms`,
        );
        await new Promise<void>((resolveWait) => {
          wake = resolveWait;
          setTimeout(resolveWait, config.connectRetryMs).unref();
        });
      }
    }
  })();
  // A caller that never awaits `ready` must not see an unhandled rejection; main awaits it.
  ready.catch(() => undefined);

  let closing: Promise<void> | undefined;
  return {
    port: address.port,
    url: `http://${address.address.includes(":") ? `[${address.address}]` : address.address}:${address.port}`,
    config,
    metrics,
    ready,
    registry: () => registry,
    close: () => {
      closing ??= (async () => {
        closed = true;
        wake?.();
        if (lagTimer) clearInterval(lagTimer);
        await server.close(config.shutdownTimeoutMs);
        // An attempt still connecting closes its own clients when it ends (it sees `closed`).
        if (registry) await registry.close();
      })();
      return closing;
    },
  };
}

export async function main(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(usage());
    return;
  }
  let config: SchemaRegistryConfig;
  try {
    config = parseSchemaRegistryConfig(argv);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`tributary schema-registry: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw error;
  }
  const logger = createLogger("schema-registry");
  const running = await startSchemaRegistryServer(config, logger);
  collectDefaultMetrics({ register: running.metrics.registry });
  logger.info(
    { port: running.port, brokers: config.brokers, topic: config.schemasTopic },
    "schema registry listening",
  );
  await new Promise<void>((resolveRun, rejectRun) => {
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, "shutting down");
      running.close().then(resolveRun, rejectRun);
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    running.ready.catch((error: unknown) => {
      running.close().finally(() => rejectRun(error));
    });
  });
  logger.info("schema registry stopped");
}
