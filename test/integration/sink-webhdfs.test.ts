/**
 * `tributary sink` writing into a BlockPool through WebHDFS: a real storage cluster (one name
 * node, three data nodes on two racks) and real Kafka. Every record must be in the Parquet files
 * read back through WebHDFS, every file on three data nodes, and after a SIGTERM no temporary
 * file may be left.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { resolve } from "node:path";
import { parquetReadObjects } from "hyparquet";
import type { Admin, Kafka } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SchemaRegistry } from "../../src/dataplane/avro/registry.js";
import type { ClickEvent } from "../../src/dataplane/clickstream/schema.js";
import { parseClosedFile, parseTemporaryFile, timeBucket } from "../../src/dataplane/sink/layout.js";
import { WebHdfsTarget } from "../../src/dataplane/sink/webhdfsTarget.js";
import { clickEvents } from "../support/click-events.js";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics } from "../support/kafka.js";
import { committedToEnd, kafkaClient, produceClickEvents, waitFor } from "../support/sink-kafka.js";
import { StorageCluster } from "./storage-cluster.js";

const ROOT = resolve(import.meta.dirname, "../..");

/** The Parquet reader gives timestamps as Date; the events carry epoch milliseconds. */
function normalise(row: Record<string, unknown>): ClickEvent {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) {
    out[key] =
      value instanceof Date ? value.getTime() : value && typeof value === "object" ? { ...value } : value;
  }
  return out as unknown as ClickEvent;
}

describe("sink to a BlockPool through WebHDFS", () => {
  const brokers = testEnv().kafkaBrokers;
  const topic = uniqueName("sink-webhdfs");
  const schemasTopic = uniqueName("sink-webhdfs-schemas");
  const groupId = uniqueName("sink-webhdfs-group");
  const targetPath = "/lake/clicks";
  const events = clickEvents(1_500, { startMs: Date.UTC(2026, 10, 26, 6, 40), spanMs: 60 * 60_000 });
  let cluster: StorageCluster | undefined;
  let kafka: Kafka;
  let admin: Admin;
  let registry: SchemaRegistry;
  let deleteTopics: () => Promise<void> = async () => undefined;
  let sink: ChildProcess | undefined;
  let sinkOutput = "";

  beforeAll(async () => {
    cluster = await StorageCluster.start({ dataNodes: 3, racks: ["/a", "/b"] });
    deleteTopics = await createTopics(brokers, [
      { topic, numPartitions: 2 },
      { topic: `${topic}.dlq`, numPartitions: 1 },
    ]);
    kafka = kafkaClient(brokers, "sink-webhdfs-test");
    admin = kafka.admin();
    await admin.connect();
    registry = await SchemaRegistry.connect({ brokers, topic: schemasTopic });
  }, 180_000);

  afterAll(async () => {
    if (sink && sink.exitCode === null && sink.signalCode === null) {
      const exited = once(sink, "exit");
      sink.kill("SIGKILL");
      await exited;
    }
    await registry?.close();
    await admin?.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
    await admin?.disconnect();
    await deleteTopics();
    await cluster?.stop();
  }, 60_000);

  it("writes every record into 3-way replicated Parquet files and leaves no temporary file", async () => {
    const storage = cluster!;
    await produceClickEvents(kafka, registry, topic, events);

    // The sink's own node process (no npx wrapper), so the SIGTERM reaches the sink itself.
    sink = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "src/cli.ts",
        "sink",
        "--roll-max-bytes",
        String(32 * 1024),
        "--roll-max-age-ms",
        "60000",
        "--row-group-rows",
        "200",
        "--metrics-port",
        "0",
        "--metrics-host",
        "127.0.0.1",
      ],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          TRIBUTARY_LOG_LEVEL: "info",
          TRIBUTARY_SINK_BROKERS: brokers.join(","),
          TRIBUTARY_SINK_TOPIC: topic,
          TRIBUTARY_SINK_GROUP_ID: groupId,
          TRIBUTARY_SINK_SCHEMAS_TOPIC: schemasTopic,
          TRIBUTARY_SINK_TARGET_WEBHDFS: storage.webhdfsAddresses().join(","),
          TRIBUTARY_SINK_TARGET_PATH: targetPath,
        },
      },
    );
    const child = sink;
    const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    const collect = (chunk: Buffer) => {
      sinkOutput += chunk.toString("utf8");
    };
    child.stdout!.on("data", collect);
    child.stderr!.on("data", collect);

    // Every record handed to a file (closed, or open until the 60 s age roll): only the
    // SIGTERM can close the open files, which is what the shutdown path must get right. That
    // each record is in the files exactly once is read back from them below.
    await waitFor(
      "the sink to read both partitions to their end",
      async () => {
        if (child.exitCode !== null) throw new Error(`the sink exited early:\n${sinkOutput}`);
        const port = /"port":(\d+),"msg":"health and metrics listening"/.exec(sinkOutput)?.[1];
        if (!port) return false;
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        const lags = [...text.matchAll(/^tributary_sink_lag_records\{[^}]*\} (\d+)/gm)];
        return lags.length === 2 && lags.every((match) => match[1] === "0");
      },
      120_000,
    );
    child.kill("SIGTERM");
    const [code] = await exited;
    expect(code, sinkOutput).toBe(0);
    expect(await committedToEnd(admin, groupId, topic)).toBe(true);

    const client = storage.client();
    const paths = await new WebHdfsTarget(client, targetPath).list();
    expect(paths.filter((path) => parseTemporaryFile(path) !== undefined)).toEqual([]);
    const written: ClickEvent[] = [];
    for (const path of paths) {
      const closed = parseClosedFile(path);
      expect(closed, `unexpected file ${path}`).toBeDefined();
      const absolute = `${targetPath}/${path}`;
      expect((await client.status(absolute)).replication).toBe(3);
      const locations = await storage.blockLocations(absolute);
      expect(locations.underConstruction).toBe(false);
      for (const block of locations.blocks) expect(block.locations).toHaveLength(3);

      const bytes = await client.open(absolute);
      const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      const rows = (await parquetReadObjects({ file })).map(normalise);
      expect(rows).toHaveLength(Number(closed!.lastOffset - closed!.firstOffset) + 1);
      for (const row of rows) expect(path.startsWith(timeBucket(row.eventTime).directory)).toBe(true);
      written.push(...rows);
    }
    // Every event exactly once.
    expect(written).toHaveLength(events.length);
    const byId = new Map(events.map((event) => [event.eventId, event]));
    for (const row of written) expect(row).toEqual(byId.get(row.eventId));
    // Rolled by size, so the rename-into-place ran many times.
    expect(paths.length).toBeGreaterThan(4);
    const status = await storage.status();
    expect(status.underReplicatedBlocks).toBe(0);
  }, 300_000);
});
