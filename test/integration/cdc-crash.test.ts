/**
 * The connector as it runs in a pod (`tributary cdc`, a separate process) killed with SIGKILL:
 * under a stream of writes, and in the middle of its initial snapshot. After a restart every
 * change must be in Kafka; what repeats is bounded by what was not yet acknowledged.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pg from "pg";
import { describe, expect, it } from "vitest";
import {
  type ConnectorStatusJson,
  cdcTestResources,
  connectorEnv,
  fold,
  readChanges,
  type TestDatabase,
  waitUntil,
} from "../support/cdc.js";

const ROOT = resolve(import.meta.dirname, "../..");

interface ConnectorProcess {
  child: ChildProcess;
  exited: Promise<number | null>;
  port: () => Promise<number>;
  status: () => Promise<ConnectorStatusJson>;
  kill9: () => Promise<void>;
  output: () => string;
}

function startProcess(env: Record<string, string>): ConnectorProcess {
  // Its own process group: SIGKILL to the group kills npx, tsx and the connector at once.
  const child = spawn("npx", ["tsx", "src/cli.ts", "cdc"], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env, TRIBUTARY_LOG_LEVEL: "info" },
  });
  let output = "";
  let port: number | undefined;
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    const match = /"port":(\d+),"msg":"status, health and metrics listening"/.exec(output);
    if (match) port = Number(match[1]);
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = new Promise<number | null>((resolveExit) => child.once("exit", (code) => resolveExit(code)));
  const portOf = () => waitUntil("the connector's HTTP port in its log", () => port, 120_000);
  return {
    child,
    exited,
    port: portOf,
    status: async () =>
      (await fetch(`http://127.0.0.1:${await portOf()}/status`)).json() as Promise<ConnectorStatusJson>,
    kill9: async () => {
      process.kill(-child.pid!, "SIGKILL");
      await exited;
    },
    output: () => output,
  };
}

const { cleanups, database } = cdcTestResources();

function spawnTracked(env: Record<string, string>): ConnectorProcess {
  const connector = startProcess(env);
  cleanups.push(async () => {
    if (connector.child.exitCode === null && connector.child.signalCode === null) {
      process.kill(-connector.child.pid!, "SIGTERM");
      await Promise.race([connector.exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (connector.child.exitCode === null && connector.child.signalCode === null) await connector.kill9();
    }
  });
  return connector;
}

async function caughtUp(db: TestDatabase, slot: string): Promise<void> {
  const target = (await db.query("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0].lsn as string;
  await waitUntil(
    `slot confirmed ${target}`,
    async () =>
      (
        await db.query(
          "SELECT confirmed_flush_lsn >= $1::pg_lsn AS done FROM pg_replication_slots WHERE slot_name = $2",
          [target, slot],
        )
      ).rows[0]?.done === true,
    120_000,
  );
}

describe("cdc connector process killed with SIGKILL", () => {
  it("loses no change written under load across the kill", { timeout: 240_000 }, async () => {
    const db = await database("cdc_kill");
    await db.query("CREATE TABLE ledger (id bigint PRIMARY KEY, amount int)");
    const stateDir = mkdtempSync(join(tmpdir(), "cdc-kill-"));
    cleanups.push(async () => rmSync(stateDir, { recursive: true, force: true }));
    const env = connectorEnv(db, { STATE_DIR: stateDir, SNAPSHOT_MODE: "initial", MAX_BATCH_SIZE: "500" });
    const slot = env.TRIBUTARY_CDC_SLOT!;

    let writing = true;
    let written = 0;
    const writer = (async () => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      while (writing) {
        await client.query("INSERT INTO ledger SELECT g, 1 FROM generate_series($1::bigint, $2::bigint) g", [
          written + 1,
          written + 200,
        ]);
        written += 200;
        await client.query("UPDATE ledger SET amount = amount + 1 WHERE id = $1", [written]);
        // A steady load rather than all the machine can give: the test is about the kill, not speed.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await client.end();
    })();

    const first = spawnTracked(env);
    await waitUntil(
      "first connector streaming with events acknowledged",
      async () => {
        const status = await first.status();
        return status.state === "streaming" && status.lastEventTime !== null && written > 3000;
      },
      120_000,
    );
    await first.kill9();
    const writtenAtKill = written;

    const second = spawnTracked(env);
    await waitUntil(
      "restarted connector streaming",
      async () => (await second.status()).state === "streaming",
      120_000,
    );
    await waitUntil("writes continued past the kill", () => written > writtenAtKill + 2000, 120_000);
    writing = false;
    await writer;
    await caughtUp(db, slot).catch((error) => {
      throw new Error(`${(error as Error).message}\nconnector output:\n${second.output().slice(-3000)}`);
    });

    const events = await readChanges(`${db.name.replace(/_/g, "-")}.public.ledger`);
    const creates = events.filter((e) => e.value?.op === "c" || e.value?.op === "r");
    const ids = new Set(creates.map((e) => Number(e.value!.after!.id)));
    const missing: number[] = [];
    for (let id = 1; id <= written; id++) if (!ids.has(id)) missing.push(id);
    expect(missing, `ids missing after the kill: ${missing.slice(0, 10).join(", ")}`).toEqual([]);
    // What repeats is what the killed process had read but Kafka had not acknowledged, bounded by
    // the events the connector lets wait for Kafka (its pause threshold).
    const duplicates = creates.length - ids.size;
    expect(duplicates).toBeLessThanOrEqual(20_000);
    const folded = fold(events, (row) => String(row.id));
    const table = await db.query("SELECT id::int, amount FROM ledger");
    expect(folded.size).toBe(table.rowCount);
    for (const row of table.rows) expect(folded.get(String(row.id))).toEqual(row);
  });

  it("takes the initial snapshot again after a kill in its middle", { timeout: 240_000 }, async () => {
    const db = await database("cdc_snapkill");
    await db.query("CREATE TABLE big (id int PRIMARY KEY, v text)");
    await db.query("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 30000) g");
    const stateDir = mkdtempSync(join(tmpdir(), "cdc-snapkill-"));
    cleanups.push(async () => rmSync(stateDir, { recursive: true, force: true }));
    // Ten rows a batch, each acknowledged before the next: 3,000 round trips to Kafka, so the
    // snapshot is still under way when the kill follows the first poll that shows rows read.
    const env = connectorEnv(db, { STATE_DIR: stateDir, FETCH_SIZE: "10", MAX_BATCH_SIZE: "10" });
    const slot = env.TRIBUTARY_CDC_SLOT!;

    const first = spawnTracked(env);
    await waitUntil(
      "snapshot under way",
      async () => {
        const status = await first.status();
        return status.state === "snapshotting" && status.snapshot.rowsRead > 0;
      },
      120_000,
    );
    await first.kill9();
    const marker = join(stateDir, `${slot}.json`);
    expect(existsSync(marker)).toBe(true);
    expect(JSON.parse(readFileSync(marker, "utf8")).initialSnapshot).toBe("running");
    // Changes after the kill: the new snapshot or the stream must carry them.
    await db.query("UPDATE big SET v = 'changed' WHERE id <= 10");
    await db.query("DELETE FROM big WHERE id > 29990");

    const second = spawnTracked({
      ...env,
      TRIBUTARY_CDC_FETCH_SIZE: "5000",
      TRIBUTARY_CDC_MAX_BATCH_SIZE: "2048",
    });
    await waitUntil(
      "restarted connector streaming",
      async () => (await second.status()).state === "streaming",
      120_000,
    );
    await db.query("INSERT INTO big VALUES (40000, 'after')");
    await caughtUp(db, slot);
    expect(JSON.parse(readFileSync(marker, "utf8")).initialSnapshot).toBe("done");

    const events = await readChanges(`${db.name.replace(/_/g, "-")}.public.big`);
    const folded = fold(events, (row) => String(row.id));
    const table = await db.query("SELECT id, v FROM big");
    expect(folded.size).toBe(table.rowCount);
    for (const row of table.rows) expect(folded.get(String(row.id))).toEqual(row);
  });
});
