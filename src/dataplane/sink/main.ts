import { readFile } from "node:fs/promises";
import avro from "avsc";
import { createLogger } from "../../log.js";
import { SchemaRegistry } from "../avro/registry.js";
import { createKafkaClient, explainKafkaError } from "../kafkaClient.js";
import { WebHdfsClient } from "../storage/client.js";
import { type AvroCodec, avroFileWriterFactory } from "./avroFile.js";
import { parseSinkConfig, usage } from "./config.js";
import { ConfluentAvroDecoder, JsonRecordDecoder, type RecordDecoder } from "./decode.js";
import { SinkMetrics, startHealthServer } from "./metrics.js";
import { type ParquetCodec, parquetFileWriterFactory } from "./parquetFile.js";
import { Sink } from "./sink.js";
import { LocalDirectoryTarget, type SinkTarget } from "./target.js";
import { WebHdfsTarget } from "./webhdfsTarget.js";

/** `tributary sink`: rolls a topic into Avro or Parquet files until SIGTERM. */
export async function main(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(usage());
    return;
  }
  const config = parseSinkConfig(argv);
  const log = createLogger("sink", { topic: config.topic, writerId: config.writerId });

  let registry: SchemaRegistry | undefined;
  let decoder: RecordDecoder;
  if (config.valueFormat === "json") {
    const schema = JSON.parse(await readFile(config.schemaFile!, "utf8")) as avro.schema.AvroSchema;
    decoder = new JsonRecordDecoder(avro.Type.forSchema(schema));
  } else {
    registry = await SchemaRegistry.connect({
      kafka: createKafkaClient({
        clientId: `tributary-sink-${config.writerId}`,
        brokers: config.brokers,
        security: config.kafkaSecurity,
        logger: log,
      }),
      logger: log,
      ...(config.schemasTopic ? { topic: config.schemasTopic } : {}),
    }).catch((error: unknown) => {
      throw explainKafkaError(error, config.brokers, config.kafkaSecurity);
    });
    decoder = new ConfluentAvroDecoder(registry);
  }

  // The config schema guarantees exactly one of targetDir or targetWebhdfs with targetPath.
  const target: SinkTarget = config.targetDir
    ? new LocalDirectoryTarget(config.targetDir)
    : new WebHdfsTarget(
        new WebHdfsClient({ nameNodes: config.targetWebhdfs!, user: "tributary" }),
        config.targetPath!,
        config.targetWebhdfs,
      );
  log.info({ target: target.location }, "writing files to");

  const metrics = new SinkMetrics();
  const sink = new Sink({
    brokers: config.brokers,
    security: config.kafkaSecurity,
    topic: config.topic,
    groupId: config.groupId,
    format: config.format,
    target,
    writerFactory:
      config.format === "avro"
        ? avroFileWriterFactory(config.codec as AvroCodec)
        : parquetFileWriterFactory({
            rowGroupRows: config.rowGroupRows,
            codec: config.codec as ParquetCodec,
            timestampFields: config.timestampFields,
          }),
    roll: { maxBytes: config.rollMaxBytes, maxAgeMs: config.rollMaxAgeMs },
    decoder,
    deadLetterTopic: config.deadLetterTopic,
    eventTimeField: config.eventTimeField,
    writerId: config.writerId,
    sessionTimeoutMs: config.sessionTimeoutMs,
    metrics,
    log,
  });
  const health = await startHealthServer(config.metricsPort, config.metricsHost, sink, metrics.registry);
  log.info({ port: health.port }, "health and metrics listening");

  const stopped = new Promise<string>((resolve) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => resolve(signal));
  });
  try {
    await sink.start().catch((error: unknown) => {
      throw explainKafkaError(error, config.brokers, config.kafkaSecurity);
    });
    const outcome = await Promise.race([stopped, sink.failed]);
    if (outcome instanceof Error) {
      process.exitCode = 1;
      log.error({ err: outcome }, "sink failed; stopping");
    } else {
      log.info({ signal: outcome }, "stopping: closing open files and committing");
    }
  } finally {
    await sink.stop();
    await registry?.close();
    await new Promise<void>((resolve) => health.server.close(() => resolve()));
  }
}
