/**
 * What a DBA must fix, reported in the connector's status while it stays up and retries: a wrong
 * password, a missing table, a table without a primary key, a slot another client streams from,
 * and bad configuration. Also the Avro format through the schema registry Topic keeps.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import kafkajs from "kafkajs";
import { describe, expect, it } from "vitest";
import { SchemaRegistry } from "../../src/dataplane/avro/registry.js";
import { parseCdcConfig } from "../../src/dataplane/cdc/config.js";
import { ConfigError } from "../../src/dataplane/config.js";
import {
  cdcTestResources,
  connectorEnv,
  readRaw,
  startConnector,
  type TestDatabase,
  waitUntil,
} from "../support/cdc.js";
import { testEnv, uniqueName } from "../support/env.js";
import { readTopic } from "../support/kafka.js";
import { reservedPort } from "../support/ports.js";

const { cleanups, database, connector } = cdcTestResources();

describe("cdc connector problems", () => {
  it("reports a wrong password and keeps retrying instead of exiting", async () => {
    const db = await database("cdc_auth");
    const running = await connector(db, { PG_PASSWORD: "not-the-password" });
    const status = await waitUntil("authentication problem", async () => {
      const s = await running.status();
      return s.problems.some((p) => p.reason === "AuthenticationFailed") ? s : undefined;
    });
    expect(status.state).toBe("failed");
    expect(status.problems[0]!.message).toMatch(/refused the password of user 'tributary'/);
    // Still serving, and trying again with backoff.
    await waitUntil("a second attempt", async () => {
      const metrics = await (await fetch(`http://127.0.0.1:${running.port}/metrics`)).text();
      const match = /tributary_cdc_errors_total\{reason="AuthenticationFailed"\} (\d+)/.exec(metrics);
      return match !== null && Number(match[1]) >= 2;
    });
    expect((await fetch(`http://127.0.0.1:${running.port}/readyz`)).status).toBe(503);
    expect((await fetch(`http://127.0.0.1:${running.port}/healthz`)).status).toBe(200);
  });

  it("names a missing table and a table without primary key, and streams the rest", async () => {
    const db = await database("cdc_tables");
    await db.query("CREATE TABLE ok (id int PRIMARY KEY, v text)");
    await db.query("CREATE TABLE nopk (v text)");
    const running = await connector(db, {
      SNAPSHOT_MODE: "never",
      TABLES_INCLUDE: "public.ok,public.nopk,public.ghost",
    });
    const status = await waitUntil("streaming", async () => {
      const s = await running.status();
      return s.state === "streaming" ? s : undefined;
    });
    expect(status.tables).toEqual(["public.nopk", "public.ok"]);
    const reasons = Object.fromEntries(status.problems.map((p) => [p.reason, p.message]));
    expect(reasons.TableNotFound).toMatch(/table public\.ghost does not exist/);
    expect(reasons.NoPrimaryKey).toMatch(/public\.nopk has no primary key/);
    await db.query("INSERT INTO nopk VALUES ('keyless')");
    await db.query("INSERT INTO ok VALUES (1, 'a')");
    const topic = `${db.name.replace(/_/g, "-")}.public.nopk`;
    const messages = await waitUntil("keyless event", async () => {
      const read = await readTopic(testEnv().kafkaBrokers, topic);
      return read.length > 0 ? read : undefined;
    });
    expect(messages[0]!.key).toBeNull();
    expect(JSON.parse(messages[0]!.value.toString()).after).toEqual({ v: "keyless" });
  });

  it("reports a slot another client streams from, and leaves that client alone", async () => {
    const db = await database("cdc_slot");
    await db.query("CREATE TABLE t (id int PRIMARY KEY)");
    const env = { SNAPSHOT_MODE: "never" };
    const first = await connector(db, env);
    await waitUntil("first streaming", async () => (await first.status()).state === "streaming");
    const second = await connector(db, env);
    const status = await waitUntil("slot in use", async () => {
      const s = await second.status();
      return s.problems.some((p) => p.reason === "SlotInUse") ? s : undefined;
    });
    expect(status.problems.find((p) => p.reason === "SlotInUse")!.message).toMatch(/is active for PID \d+/);
    expect(status.state).toBe("failed");
    expect((await first.status()).state).toBe("streaming");
  });

  it("reports wal_level that is not logical, on a private PostgreSQL of its own", async () => {
    // The shared server runs with wal_level=logical and must not be reconfigured: a private
    // server on a loopback port of its own, run as the postgres user (PostgreSQL refuses root).
    const bin = "/usr/lib/postgresql/15/bin";
    const dir = mkdtempSync(join(tmpdir(), "cdc-replica-pg-"));
    const owner = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const group = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(dir, owner, group);
    const port = await reservedPort();
    execFileSync(
      `${bin}/initdb`,
      ["-D", join(dir, "data"), "-U", "tributary", "--auth=trust", "-E", "UTF8"],
      {
        uid: owner,
        gid: group,
        stdio: "ignore",
      },
    );
    const server: ChildProcess = spawn(
      `${bin}/postgres`,
      [
        "-D",
        join(dir, "data"),
        "-p",
        String(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        `unix_socket_directories=${dir}`,
        "-c",
        "wal_level=replica",
      ],
      { uid: owner, gid: group, stdio: "ignore" },
    );
    const exited = new Promise((resolveExit) => server.once("exit", resolveExit));
    cleanups.push(async () => {
      server.kill("SIGINT");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    });
    const running = await startConnector({
      ...connectorEnv({
        name: "postgres",
        host: "127.0.0.1",
        port,
        user: "tributary",
        password: "",
      } as TestDatabase),
      TRIBUTARY_CDC_PG_PASSWORD: "unused",
    });
    cleanups.push(running.stop);
    const status = await waitUntil("wal_level problem", async () => {
      const s = await running.status();
      return s.problems.some((p) => p.reason === "WalLevelNotLogical") ? s : undefined;
    });
    expect(status.problems.find((p) => p.reason === "WalLevelNotLogical")!.message).toMatch(
      /runs with wal_level=replica; logical replication needs wal_level=logical/,
    );
    expect(status.state).toBe("failed");
  });

  it("reports Kafka that does not answer, and keeps retrying", async () => {
    const db = await database("cdc_nokafka");
    await db.query("CREATE TABLE t (id int PRIMARY KEY)");
    // Port 1 is never listened on here: connections to it are refused.
    const port = 1;
    const running = await connector(db, { KAFKA_BOOTSTRAP: `127.0.0.1:${port}` });
    const status = await waitUntil("Kafka problem", async () => {
      const s = await running.status();
      return s.problems.some((p) => p.reason === "KafkaUnavailable") ? s : undefined;
    });
    expect(status.problems.find((p) => p.reason === "KafkaUnavailable")!.message).toMatch(
      new RegExp(`Kafka \\(127\\.0\\.0\\.1:${port}\\)`),
    );
    expect(status.state).toBe("failed");
  });

  it("refuses bad configuration with the flag and the variable to fix", () => {
    const env = {
      TRIBUTARY_CDC_NAME: "ns/x",
      TRIBUTARY_CDC_PG_HOST: "db",
      TRIBUTARY_CDC_PG_DATABASE: "app",
      TRIBUTARY_CDC_PG_USER: "cdc",
      TRIBUTARY_CDC_PUBLICATION: "Bad-Name",
      TRIBUTARY_CDC_SLOT: "s",
      TRIBUTARY_CDC_TOPIC_PREFIX: "app",
      TRIBUTARY_CDC_KAFKA_BOOTSTRAP: "k:9092",
      TRIBUTARY_CDC_SNAPSHOT_MODE: "sometimes",
      TRIBUTARY_CDC_TABLES_INCLUDE: "public.a,nodot",
    };
    expect(() => parseCdcConfig([], env)).toThrow(ConfigError);
    try {
      parseCdcConfig([], env);
    } catch (error) {
      const message = (error as Error).message;
      expect(message).toMatch(/--publication \(TRIBUTARY_CDC_PUBLICATION\): publication must be 1-63/);
      expect(message).toMatch(/--snapshot-mode \(TRIBUTARY_CDC_SNAPSHOT_MODE\): snapshotMode must be one of/);
      expect(message).toMatch(/--tables-include \(TRIBUTARY_CDC_TABLES_INCLUDE\): each tablesInclude entry/);
    }
  });

  it("writes Avro in Confluent's wire format with key and value subjects in the registry", async () => {
    const db = await database("cdc_avro");
    await db.query(
      "CREATE TABLE orders (id int PRIMARY KEY, total numeric(12,2), at timestamptz, data bytea, tags int[])",
    );
    await db.query("INSERT INTO orders VALUES (1, 10.50, '2024-01-01 00:00:00+00', '\\x00ff', '{1,2}')");
    const schemasTopic = uniqueName("cdc-avro-schemas");
    cleanups.push(async () => {
      const kafka = new kafkajs.Kafka({
        brokers: testEnv().kafkaBrokers,
        logLevel: kafkajs.logLevel.NOTHING,
      });
      const admin = kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
      await admin.disconnect();
    });
    const running = await connector(db, { FORMAT: "avro", SCHEMAS_TOPIC: schemasTopic });
    await waitUntil("streaming", async () => (await running.status()).state === "streaming");
    await db.query("ALTER TABLE orders ADD COLUMN note text");
    await db.query("UPDATE orders SET note = 'gift' WHERE id = 1");
    const topic = `${db.name.replace(/_/g, "-")}.public.orders`;
    const messages = await waitUntil("snapshot read and update", async () => {
      const read = await readRaw(topic);
      return read.length >= 2 ? read : undefined;
    });
    const registry = await SchemaRegistry.connect({ brokers: testEnv().kafkaBrokers, topic: schemasTopic });
    cleanups.push(() => registry.close());
    const [read, update] = await Promise.all(messages.slice(0, 2).map((m) => registry.decode(m.value!)));
    expect(read).toMatchObject({
      op: "r",
      before: null,
      after: { id: 1, total: "10.50", at: "2024-01-01T00:00:00Z", tags: [1, 2] },
    });
    expect((read as { after: { data: Buffer } }).after.data).toEqual(Buffer.from([0, 255]));
    expect(update).toMatchObject({ op: "u", after: { id: 1, note: "gift" }, before: { id: 1, note: null } });
    const key = await registry.decode(messages[0]!.key!);
    expect(key).toEqual({ id: 1 });
    expect(registry.subjectNames()).toEqual(expect.arrayContaining([`${topic}-key`, `${topic}-value`]));
    expect(registry.versions(`${topic}-value`)).toHaveLength(2);
  });
});
