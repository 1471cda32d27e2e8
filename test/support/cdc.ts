/**
 * What the CDC connector's tests share: a database of their own on the test environment's
 * PostgreSQL (with its slots dropped on cleanup), a connector run in-process with its HTTP on a
 * free port, and the fold of a change topic into the table it describes.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import kafkajs from "kafkajs";
import pg from "pg";
import { afterAll } from "vitest";
import { parseCdcConfig } from "../../src/dataplane/cdc/config.js";
import { Connector } from "../../src/dataplane/cdc/connector.js";
import { CdcMetrics } from "../../src/dataplane/cdc/metrics.js";
import { startServer } from "../../src/dataplane/cdc/server.js";
import { createKafkaClient } from "../../src/dataplane/kafkaClient.js";
import { createLogger } from "../../src/log.js";
import { testEnv, uniqueName } from "./env.js";
import { readTopic, readTopicAs } from "./kafka.js";

export interface TestDatabase {
  name: string;
  url: string;
  host: string;
  port: number;
  user: string;
  password: string;
  client: pg.Client;
  query: (sql: string, values?: unknown[]) => Promise<pg.QueryResult>;
  drop: () => Promise<void>;
}

export async function createDatabase(prefix: string): Promise<TestDatabase> {
  const admin = new URL(testEnv().postgresUrl);
  const name = uniqueName(prefix).replace(/-/g, "_");
  const adminClient = new pg.Client({ connectionString: admin.toString() });
  await adminClient.connect();
  await adminClient.query(`CREATE DATABASE ${name}`);
  await adminClient.end();
  const url = new URL(admin.toString());
  url.pathname = `/${name}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  return {
    name,
    url: url.toString(),
    host: admin.hostname,
    port: Number(admin.port),
    user: decodeURIComponent(admin.username),
    password: decodeURIComponent(admin.password),
    client,
    query: (sql, values) => client.query(sql, values as unknown[]),
    drop: async () => {
      await client.end().catch(() => undefined);
      const cleanup = new pg.Client({ connectionString: admin.toString() });
      await cleanup.connect();
      try {
        for (let attempt = 0; attempt < 50; attempt++) {
          const slots = await cleanup.query<{ slot_name: string; active_pid: number | null }>(
            "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = $1",
            [name],
          );
          if (slots.rowCount === 0) break;
          for (const slot of slots.rows) {
            if (slot.active_pid) await cleanup.query("SELECT pg_terminate_backend($1)", [slot.active_pid]);
            await cleanup
              .query("SELECT pg_drop_replication_slot($1)", [slot.slot_name])
              .catch(() => undefined);
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await cleanup.end();
      }
    },
  };
}

/** The connector's environment variables for a test database (the names the controller sets). */
export function connectorEnv(
  db: TestDatabase,
  overrides: Record<string, string> = {},
): Record<string, string> {
  const slot = db.name.slice(0, 50);
  const values: Record<string, string> = {
    NAME: `test/${db.name}`,
    PG_HOST: db.host,
    PG_PORT: String(db.port),
    PG_DATABASE: db.name,
    PG_USER: db.user,
    PG_PASSWORD: db.password,
    PG_SSL_MODE: "disable",
    PUBLICATION: `${slot}_pub`,
    SLOT: `${slot}_slot`,
    TOPIC_PREFIX: db.name.replace(/_/g, "-"),
    KAFKA_BOOTSTRAP: testEnv().kafkaBrokers.join(","),
    REPLICATION_FACTOR: "3",
    HEARTBEAT_INTERVAL_SECONDS: "1",
    HTTP_HOST: "127.0.0.1",
    HTTP_PORT: "0",
    ...overrides,
  };
  return Object.fromEntries(Object.entries(values).map(([key, value]) => [`TRIBUTARY_CDC_${key}`, value]));
}

export interface RunningConnector {
  connector: Connector;
  port: number;
  status: () => Promise<ConnectorStatusJson>;
  stop: () => Promise<void>;
  stateDir: string;
}

export interface ConnectorStatusJson {
  state: string;
  slotName: string;
  publicationName: string;
  confirmedFlushLsn: string | null;
  lagBytes: number | null;
  lagSeconds: number | null;
  eventsPerSecond: number;
  lastEventTime: string | null;
  tables: string[];
  tablesWithoutFullIdentity: string[];
  snapshot: { tablesDone: number; tablesTotal: number; rowsRead: number; completedAt: string | null };
  snapshotRequests: { id: string; state: string; rows: number; message: string | null }[];
  problems: { reason: string; message: string }[];
}

/** Runs the connector in this process, as `tributary cdc` would with these variables. */
export async function startConnector(
  env: Record<string, string>,
  stateDir?: string,
): Promise<RunningConnector> {
  const dir = stateDir ?? mkdtempSync(join(tmpdir(), "cdc-state-"));
  const config = parseCdcConfig([], { ...env, TRIBUTARY_CDC_STATE_DIR: dir });
  const log = createLogger("cdc-test", { stream: config.name });
  log.level = process.env.TRIBUTARY_LOG_LEVEL ?? "silent";
  const kafka = createKafkaClient({ clientId: `test-${config.slot}`, brokers: config.kafkaBootstrap });
  let registry: import("../../src/dataplane/avro/registry.js").SchemaRegistry | undefined;
  if (config.format === "avro") {
    const { SchemaRegistry } = await import("../../src/dataplane/avro/registry.js");
    registry = await SchemaRegistry.connect({
      kafka,
      ...(config.schemasTopic ? { topic: config.schemasTopic } : {}),
    });
  }
  const metrics = new CdcMetrics();
  const connector = new Connector({ config, kafka, ...(registry ? { registry } : {}), metrics, log });
  const http = await startServer("127.0.0.1", 0, connector, metrics.registry);
  const running = connector.run();
  return {
    connector,
    port: http.port,
    stateDir: dir,
    status: async () =>
      (await fetch(`http://127.0.0.1:${http.port}/status`)).json() as Promise<ConnectorStatusJson>,
    stop: async () => {
      await connector.stop();
      await running;
      await registry?.close();
      await new Promise<void>((resolve) => http.server.close(() => resolve()));
      if (!stateDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ChangeEvent {
  key: Record<string, unknown> | null;
  value: {
    before: Record<string, unknown> | null;
    after: Record<string, unknown> | null;
    source: Record<string, unknown>;
    op: string;
    ts_ms: number;
    transaction: unknown;
  } | null;
  partition: number;
  offset: string;
}

/** Every event of a JSON change topic, in partition and offset order; tombstones have value null. */
export async function readChanges(topic: string): Promise<ChangeEvent[]> {
  const messages = await readTopic(testEnv().kafkaBrokers, topic);
  return messages.map((m) => ({
    key: m.key === null ? null : (JSON.parse(m.key) as Record<string, unknown>),
    value: m.value.length === 0 ? null : (JSON.parse(m.value.toString("utf8")) as ChangeEvent["value"]),
    partition: m.partition,
    offset: m.offset,
  }));
}

/** Folds change events into rows by key: what a consumer replaying the topic would hold. */
export function fold(
  events: ChangeEvent[],
  keyOf: (row: Record<string, unknown>) => string,
): Map<string, Record<string, unknown>> {
  const rows = new Map<string, Record<string, unknown>>();
  for (const event of events) {
    if (!event.value) continue;
    const { op, before, after } = event.value;
    if (op === "t") rows.clear();
    else if (op === "d") rows.delete(keyOf(before!));
    else rows.set(keyOf(after!), after!);
  }
  return rows;
}

export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 90_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as T;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Every message of a topic with its raw key (readTopic gives keys as text), partition by partition. */
export async function readRaw(topic: string): Promise<{ key: Buffer | null; value: Buffer | null }[]> {
  return readTopicAs(testEnv().kafkaBrokers, topic, (_partition, message) => ({
    key: message.key,
    value: message.value,
  }));
}

/**
 * What a CDC test file creates, removed after its tests, last first: databases (with their slots
 * and the change topics of connectorEnv's topic prefix), in-process connectors, and whatever the
 * file adds to `cleanups`. Call once at the top of a test file.
 */
export function cdcTestResources() {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });
  return {
    cleanups,
    async database(prefix: string): Promise<TestDatabase> {
      const db = await createDatabase(prefix);
      cleanups.push(async () => {
        await db.drop();
        const kafka = new kafkajs.Kafka({
          brokers: testEnv().kafkaBrokers,
          logLevel: kafkajs.logLevel.NOTHING,
        });
        const admin = kafka.admin();
        await admin.connect();
        const topicPrefix = db.name.replace(/_/g, "-");
        const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${topicPrefix}.`));
        if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => undefined);
        await admin.disconnect();
      });
      return db;
    },
    async connector(db: TestDatabase, overrides: Record<string, string> = {}): Promise<RunningConnector> {
      const running = await startConnector(connectorEnv(db, overrides));
      cleanups.push(running.stop);
      return running;
    },
  };
}
