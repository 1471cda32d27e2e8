/**
 * `tributary video`: one supervised ffmpeg per camera this pod takes, frames cut from its output
 * and published to Kafka keyed by camera; an HTTP server for pushed streams
 * (POST /v1/sources/<name>), `GET /status` (each source), `/metrics`, `/healthz` and `/readyz`.
 *
 * Ready means the producer is connected and Kafka acknowledged a send (or was not asked to)
 * lately: a camera that is down is that camera's status line, not the pod's readiness, so one
 * bad camera never takes the others out of service.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Kafka } from "kafkajs";
import kafkajs from "kafkajs";
import { collectDefaultMetrics } from "prom-client";
import { createLogger, type Logger } from "../../log.js";
import { IdempotentProducer } from "../idempotentProducer.js";
import { createKafkaClient, explainKafkaError } from "../kafkaClient.js";
import { DirectorySegmentStore, WebHdfsSegmentStore } from "./archive.js";
import { ordinalOf, ownerOrdinal } from "./assignment.js";
import {
  ConfigError,
  parseVideoConfig,
  readSources,
  type SourceEntry,
  type SourcesDocument,
  urlWithCredentials,
  usage,
  type VideoConfig,
} from "./config.js";
import { VideoMetrics } from "./metrics.js";
import { FramePublisher } from "./publisher.js";
import { type SourceSettings, type SourceStatus, VideoSource } from "./source.js";

export interface CollectorStatus {
  pod: string;
  ordinal: number;
  replicas: number;
  topic: string;
  kafkaReady: boolean;
  sources: SourceStatus[];
}

export interface RunningVideoCollector {
  port: number;
  url: string;
  metrics: VideoMetrics;
  status(): CollectorStatus;
  /** Reads the sources again (the file, or `document`) and starts or stops what changed. */
  reload(document?: SourcesDocument): Promise<void>;
  close(): Promise<void>;
}

/** A Kafka send older than this without an acknowledgement since makes the pod not ready. */
const KAFKA_STALL_MS = 15_000;

async function waitForTopic(kafka: Kafka, topic: string, waitMs: number): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const deadline = Date.now() + waitMs;
    for (;;) {
      if ((await admin.listTopics()).includes(topic)) return;
      if (Date.now() > deadline) {
        throw new Error(
          `Kafka topic '${topic}' does not exist; the VideoCollector controller creates it (spec.topic), or create it before starting the collector`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } finally {
    await admin.disconnect();
  }
}

export async function startVideoCollector(
  config: VideoConfig,
  log: Logger = createLogger("video"),
): Promise<RunningVideoCollector> {
  const initial = readSources(config);
  const ordinal = ordinalOf(config.podName) ?? 0;
  const kafka = createKafkaClient({
    clientId: config.clientId,
    brokers: config.brokers,
    security: config.kafkaSecurity,
    logger: log,
    retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2_000 },
  });
  await waitForTopic(kafka, config.topic, config.topicWaitMs).catch((error: unknown) => {
    throw explainKafkaError(error, config.brokers, config.kafkaSecurity);
  });
  // Idempotence keeps a send that kafkajs retries after a lost answer from writing frames twice.
  const producer = IdempotentProducer.of(kafka, {
    allowAutoTopicCreation: false,
    createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  const metrics = new VideoMetrics();
  const publisher = new FramePublisher(
    producer,
    {
      topic: config.topic,
      maxMessageBytes: config.maxMessageBytes,
      queueFrames: config.queueFrames,
      collector: config.podName,
    },
    metrics,
    log,
  );
  const archiveStore = config.archiveWebhdfs
    ? new WebHdfsSegmentStore(config.archiveWebhdfs, config.archivePath)
    : config.archiveTargetDir
      ? new DirectorySegmentStore(`${config.archiveTargetDir}/${config.archivePath}`.replace(/\/+/g, "/"))
      : undefined;
  const settings: SourceSettings = {
    ffmpeg: config.ffmpeg,
    sampling: {
      fps: config.fps,
      keyFramesOnly: config.keyFramesOnly,
      codec: config.codec,
      quality: config.quality,
      width: config.width,
      height: config.height,
    },
    // Never sooner than three sampling periods: at 0.2 fps a frame comes every 5 s.
    frozenAfterMs: Math.max(config.frozenAfterMs, config.keyFramesOnly ? 0 : 3_000 / config.fps),
    initialBackoffMs: config.initialBackoffMs,
    maxBackoffMs: config.maxBackoffMs,
    ...(archiveStore
      ? {
          archive: {
            directory: config.archiveScratchDir,
            segmentSeconds: config.archiveSegmentSeconds,
            format: config.archiveFormat,
            codec: config.archiveCodec,
            store: archiveStore,
          },
        }
      : {}),
  };

  const sources = new Map<string, { entry: string; source: VideoSource }>();
  let replicas = initial.replicas;
  let lastFileText: string | undefined;

  const apply = async (document: SourcesDocument) => {
    replicas = document.replicas;
    const wanted = new Map<string, SourceEntry>();
    for (const entry of document.sources) {
      // Pulled sources by rendezvous hash of the ordinal; pushed ones on every pod.
      if (entry.push || ownerOrdinal(entry.name, replicas) === ordinal) wanted.set(entry.name, entry);
    }
    for (const [name, running] of sources) {
      const entry = wanted.get(name);
      if (!entry || JSON.stringify(entry) !== running.entry) {
        sources.delete(name);
        log.info(
          { source: name },
          entry ? "source changed: restarting it" : "source no longer taken here: stopping it",
        );
        await running.source.stop(Date.now() + config.shutdownTimeoutMs);
      }
    }
    for (const [name, entry] of wanted) {
      if (sources.has(name)) continue;
      const input = entry.url
        ? { kind: "url" as const, url: urlWithCredentials(entry.url, name, config.credentialsDir) }
        : { kind: "push" as const, format: entry.push!.format };
      const source = new VideoSource(name, input, settings, publisher, metrics, log);
      sources.set(name, { entry: JSON.stringify(entry), source });
      source.start();
      log.info({ source: name, kind: input.kind }, "source taken by this collector");
    }
    metrics.assignedSources.set(sources.size);
  };
  await apply(initial);

  let reloading: Promise<void> = Promise.resolve();
  const reload = (document?: SourcesDocument): Promise<void> => {
    reloading = reloading.then(async () => {
      try {
        if (document) return await apply(document);
        if (!config.sourcesFile) return;
        const { readFile } = await import("node:fs/promises");
        const text = await readFile(config.sourcesFile, "utf8");
        if (text === lastFileText) return;
        lastFileText = text;
        await apply(readSources({ sources: text }));
      } catch (error) {
        log.error({ error: (error as Error).message }, "sources not reloaded; keeping the running ones");
      }
    });
    return reloading;
  };
  if (config.sourcesFile) lastFileText = (await import("node:fs")).readFileSync(config.sourcesFile, "utf8");
  const reloadTimer = config.sourcesFile
    ? setInterval(() => void reload(), config.reloadIntervalMs)
    : undefined;

  const kafkaReady = () => {
    const failure = publisher.lastFailure;
    return !(
      failure &&
      failure.at > publisher.lastAckAt &&
      Date.now() - publisher.lastAckAt > KAFKA_STALL_MS
    );
  };
  const status = (): CollectorStatus => ({
    pod: config.podName,
    ordinal,
    replicas,
    topic: config.topic,
    kafkaReady: kafkaReady(),
    sources: [...sources.values()].map(({ source }) => source.status()),
  });

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) json(response, 500, { error: (error as Error).message });
    });
  });
  const json = (response: ServerResponse, code: number, body: unknown) => {
    response.writeHead(code, { "content-type": "application/json" });
    response.end(`${JSON.stringify(body)}\n`);
  };
  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? "/").split("?")[0]!;
    if (request.method === "GET" && path === "/status") return json(response, 200, status());
    if (request.method === "GET" && path === "/healthz") return json(response, 200, { ok: true });
    if (request.method === "GET" && path === "/readyz") {
      const ready = kafkaReady();
      return json(
        response,
        ready ? 200 : 503,
        ready ? { ok: true } : { error: publisher.lastFailure?.message },
      );
    }
    if (request.method === "GET" && path === "/metrics") {
      const text = await metrics.registry.metrics();
      response.writeHead(200, { "content-type": metrics.registry.contentType });
      return response.end(text);
    }
    const push = /^\/v1\/sources\/([^/]+)$/.exec(path);
    if (push) {
      const name = decodeURIComponent(push[1]!);
      const running = sources.get(name);
      if (request.method !== "POST" && request.method !== "PUT") {
        return json(response, 405, { error: "POST the stream to this path" });
      }
      if (running?.source.input.kind !== "push") {
        return json(response, 404, { error: `no pushed source '${name}' (spec.sources[].push)` });
      }
      if (running.source.busy) {
        return json(response, 409, { error: `source '${name}' is already receiving a stream` });
      }
      const outcome = await running.source.acceptPush(request);
      running.source.lastError = outcome.error;
      return json(response, outcome.error ? 400 : 200, {
        source: name,
        frames: outcome.frames,
        ...(outcome.error ? { error: outcome.error } : {}),
      });
    }
    json(response, 404, {
      error: "not found: try /status, /healthz, /readyz, /metrics or POST /v1/sources/<name>",
    });
  };
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  log.info(
    { port: address.port, topic: config.topic, ordinal, replicas, sources: sources.size },
    "video collector listening",
  );

  let closing: Promise<void> | undefined;
  return {
    port: address.port,
    url: `http://${address.address.includes(":") ? `[${address.address}]` : address.address}:${address.port}`,
    metrics,
    status,
    reload,
    close: () => {
      closing ??= (async () => {
        if (reloadTimer) clearInterval(reloadTimer);
        await reloading;
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        // Segments still uploading and frames still queued get shutdownTimeoutMs between them.
        const deadline = Date.now() + config.shutdownTimeoutMs;
        await Promise.all([...sources.values()].map(({ source }) => source.stop(deadline)));
        await publisher.close(Math.max(0, deadline - Date.now()));
        await producer.disconnect();
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
  let config: VideoConfig;
  try {
    config = parseVideoConfig(argv);
    readSources(config);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`tributary video: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw error;
  }
  const log = createLogger("video", { pod: config.podName });
  const collector = await startVideoCollector(config, log);
  collectDefaultMetrics({ register: collector.metrics.registry });
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      log.info({ signal }, "shutting down: stopping ffmpeg, sending queued frames");
      collector.close().then(resolve, (error: unknown) => {
        log.error({ error: (error as Error).message }, "shutdown did not complete cleanly");
        process.exitCode = 1;
        resolve();
      });
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  log.info("video collector stopped");
}
