/**
 * The sink as it runs in a pod (`tributary sink`, a separate process), killed with SIGKILL in
 * the middle of its files and started again: every record must end up in the closed files
 * exactly once, and the leftovers of the killed process must be gone.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Admin, Kafka } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SchemaRegistry } from "../../src/dataplane/avro/registry.js";
import type { SinkFormat } from "../../src/dataplane/sink/layout.js";
import { clickEvents } from "../support/click-events.js";
import { testEnv, uniqueName } from "../support/env.js";
import { createTopics } from "../support/kafka.js";
import {
  committedToEnd,
  kafkaClient,
  produceClickEvents,
  readSinkOutput,
  waitFor,
} from "../support/sink-kafka.js";

const ROOT = resolve(import.meta.dirname, "../..");

interface SinkProcess {
  child: ChildProcess;
  exited: Promise<number | null>;
  /** The port of /healthz, /readyz and /metrics, once the process has logged it. */
  port: () => number | undefined;
  output: () => string;
}

function startSink(args: string[]): SinkProcess {
  // The sink's own node process (tsx loaded into it, no npx or tsx wrapper), so a SIGTERM to its
  // pid reaches the sink itself; and its own process group, so a SIGKILL to the group also takes
  // whatever it started (esbuild's transform service), as a node failure or an OOM kill would.
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", "sink", ...args], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TRIBUTARY_LOG_LEVEL: "info" },
  });
  let output = "";
  let port: number | undefined;
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    const match = /"port":(\d+),"msg":"health and metrics listening"/.exec(output);
    if (match) port = Number(match[1]);
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = new Promise<number | null>((resolveExit) => child.once("exit", (code) => resolveExit(code)));
  return { child, exited, port: () => port, output: () => output };
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function metricsText(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  return response.text();
}

describe.each<SinkFormat>(["parquet", "avro"])(
  "sink process writing %s, killed mid-file and restarted",
  (format) => {
    const brokers = testEnv().kafkaBrokers;
    const topic = uniqueName(`sink-crash-${format}`);
    const schemasTopic = uniqueName("sink-crash-schemas");
    const groupId = uniqueName("sink-crash-group");
    const first = clickEvents(2_000, {
      seed: 1,
      startMs: Date.UTC(2026, 10, 26, 6, 50),
      spanMs: 20 * 60_000,
    });
    const second = clickEvents(1_000, {
      seed: 2,
      startMs: Date.UTC(2026, 10, 26, 7, 10),
      spanMs: 10 * 60_000,
    }).map((event, i) => ({
      ...event,
      eventId: `11111111-0000-4000-8000-${i.toString(16).padStart(12, "0")}`,
    }));
    let dir: string;
    let kafka: Kafka;
    let admin: Admin;
    let registry: SchemaRegistry;
    let deleteTopics: () => Promise<void> = async () => undefined;
    const started: SinkProcess[] = [];

    const sinkArgs = () => [
      "--brokers",
      brokers.join(","),
      "--topic",
      topic,
      "--group-id",
      groupId,
      "--schemas-topic",
      schemasTopic,
      "--format",
      format,
      // Uncompressed Avro blocks, so that files roll by size as often as the Parquet ones do.
      "--codec",
      format === "avro" ? "null" : "snappy",
      "--target-dir",
      dir,
      "--roll-max-bytes",
      String(24 * 1024),
      // Files close only by size or at shutdown: the files open at the kill stay open.
      "--roll-max-age-ms",
      "600000",
      "--row-group-rows",
      "100",
      "--session-timeout-ms",
      "6000",
      "--metrics-host",
      "127.0.0.1",
      "--metrics-port",
      "0",
    ];

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), `sink-crash-${format}-`));
      deleteTopics = await createTopics(brokers, [
        { topic, numPartitions: 2 },
        { topic: `${topic}.dlq`, numPartitions: 1 },
      ]);
      kafka = kafkaClient(brokers, "sink-crash-test");
      admin = kafka.admin();
      await admin.connect();
      registry = await SchemaRegistry.connect({ brokers, topic: schemasTopic });
    });

    afterAll(async () => {
      for (const sink of started) {
        if (sink.child.pid && groupAlive(sink.child.pid)) process.kill(-sink.child.pid, "SIGKILL");
      }
      await registry?.close();
      await admin?.deleteTopics({ topics: [schemasTopic] }).catch(() => undefined);
      await admin?.disconnect();
      await deleteTopics();
      await rm(dir, { recursive: true, force: true });
    });

    it("loses nothing and writes nothing twice; a SIGTERM closes the open files and commits", async () => {
      await produceClickEvents(kafka, registry, topic, first);

      // 1. The first process writes until it has closed files and holds open (temporary) ones.
      const killed = startSink(sinkArgs());
      started.push(killed);
      const listing = async () => (await readdir(dir, { recursive: true })).map(String);
      await waitFor("closed files and an open temporary file", async () => {
        const files = await listing();
        return (
          files.filter((f) => f.endsWith(`.${format}`)).length >= 3 && files.some((f) => f.endsWith(".tmp"))
        );
      });
      process.kill(-killed.child.pid!, "SIGKILL");
      await killed.exited;
      await waitFor("the killed process group to be gone", () => !groupAlive(killed.child.pid!));
      const leftovers = (await listing()).filter((f) => f.endsWith(".tmp"));
      expect(leftovers.length).toBeGreaterThan(0);

      // 2. More traffic arrives while no sink runs.
      await produceClickEvents(kafka, registry, topic, second);

      // 3. A new process takes over from the committed offsets and the closed files.
      const restarted = startSink(sinkArgs());
      started.push(restarted);
      await waitFor("the restarted sink's metrics endpoint", () => restarted.port() !== undefined);
      const port = restarted.port()!;
      await waitFor(
        "the restarted sink to be ready",
        async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok,
      );
      await waitFor("the restarted sink to have read both partitions to their end", async () => {
        const lags = [...(await metricsText(port)).matchAll(/^tributary_sink_lag_records\{[^}]*\} (\d+)/gm)];
        return lags.length === 2 && lags.every((match) => match[1] === "0");
      });
      for (const leftover of leftovers) expect(await listing()).not.toContain(leftover);

      // 4. SIGTERM to the sink process: it closes its open files durably, commits and exits 0.
      restarted.child.kill("SIGTERM");
      expect(await restarted.exited).toBe(0);
      expect(restarted.output()).toContain("stopping: closing open files and committing");
      expect(await committedToEnd(admin, groupId, topic)).toBe(true);

      const output = await readSinkOutput(dir, format);
      expect(output.temporary).toEqual([]);
      const ids = output.files.flatMap((file) => file.rows.map((row) => row.eventId as string));
      expect(ids).toHaveLength(first.length + second.length);
      expect(new Set(ids)).toEqual(new Set([...first, ...second].map((event) => event.eventId)));
      // Per partition the files tile the offsets: contiguous, no overlap, from 0 to the end.
      const ends = await admin.fetchTopicOffsets(topic);
      for (const { partition, high } of ends) {
        let next = 0n;
        for (const file of output.files.filter((f) => f.partition === partition)) {
          expect(file.firstOffset).toBe(next);
          expect(BigInt(file.rows.length)).toBe(file.lastOffset - file.firstOffset + 1n);
          next = file.lastOffset + 1n;
        }
        expect(next).toBe(BigInt(high));
      }
    }, 300_000);
  },
);
