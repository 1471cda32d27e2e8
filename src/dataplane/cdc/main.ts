/**
 * `tributary cdc`: the change data capture connector of one CDCStream. Streams PostgreSQL row
 * changes (pgoutput) into Kafka as Debezium change events until SIGTERM; reports on HTTP.
 */
import { createLogger } from "../../log.js";
import { SchemaRegistry } from "../avro/registry.js";
import { createKafkaClient, explainKafkaError } from "../kafkaClient.js";
import { parseCdcConfig, usage } from "./config.js";
import { Connector } from "./connector.js";
import { CdcMetrics } from "./metrics.js";
import { startServer } from "./server.js";

export async function main(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(usage());
    return;
  }
  const config = parseCdcConfig(argv);
  const log = createLogger("cdc", { stream: config.name, slot: config.slot });
  const kafka = createKafkaClient({
    clientId: `tributary-cdc-${config.slot}`,
    brokers: config.kafkaBootstrap,
    security: config.kafkaSecurity,
    logger: log,
  });
  let registry: SchemaRegistry | undefined;
  if (config.format === "avro") {
    registry = await SchemaRegistry.connect({
      kafka,
      logger: log,
      ...(config.schemasTopic ? { topic: config.schemasTopic } : {}),
    }).catch((error: unknown) => {
      throw explainKafkaError(error, config.kafkaBootstrap, config.kafkaSecurity);
    });
  }
  const metrics = new CdcMetrics();
  const connector = new Connector({ config, kafka, ...(registry ? { registry } : {}), metrics, log });
  const http = await startServer(config.httpHost, config.httpPort, connector, metrics.registry);
  log.info({ port: http.port }, "status, health and metrics listening");

  const stopped = new Promise<string>((resolve) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => resolve(signal));
  });
  const running = connector.run();
  const signal = await Promise.race([stopped, running.then(() => "finished")]);
  log.info({ signal }, "stopping");
  await connector.stop();
  await running.catch(() => undefined);
  await registry?.close();
  await new Promise<void>((resolve) => http.server.close(() => resolve()));
}
