/**
 * The data-plane roles against a SASL (SCRAM-SHA-512) and a mutual-TLS Kafka listener, configured
 * the way a Topic's pods are: TRIBUTARY_<ROLE>_SASL_* and _TLS_*_FILE variables. A private broker
 * (test/support/kafka.ts) gets both listeners, so the shared brokers of `scripts/testenv` stay as
 * they are. `tributary collector` produces through SASL, `tributary sink` consumes through SASL
 * into files, a wrong password stops a role with an error that says so, and the collector
 * produces through TLS with a client certificate made by openssl.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uniqueName } from "../support/env.js";
import { createTopics, PrivateKafka, readTopic } from "../support/kafka.js";
import { readSinkOutput, waitFor } from "../support/sink-kafka.js";

const CLI = resolve(import.meta.dirname, "../../src/cli.ts");

interface Role {
  child: ChildProcess;
  exited: Promise<number | null>;
  output: () => string;
}

function startRole(role: "collector" | "sink", args: string[], env: Record<string, string>): Role {
  const child = spawn(process.execPath, ["--import", "tsx", CLI, role, ...args], {
    env: { ...process.env, TRIBUTARY_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = new Promise<number | null>((resolveExit) => child.once("exit", (code) => resolveExit(code)));
  return { child, exited, output: () => output };
}

async function stopRole(role: Role | undefined): Promise<void> {
  if (!role || role.child.exitCode !== null || role.child.signalCode !== null) return;
  role.child.kill("SIGTERM");
  const stopped = await Promise.race([
    role.exited.then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), 30_000)),
  ]);
  if (!stopped) {
    role.child.kill("SIGKILL");
    await role.exited;
  }
}

async function loggedPort(role: Role, pattern: RegExp): Promise<number> {
  let port: number | undefined;
  await waitFor(
    "the role to log its port",
    () => {
      if (role.child.exitCode !== null) throw new Error(`the role exited:\n${role.output()}`);
      const match = pattern.exec(role.output());
      if (match) port = Number(match[1]);
      return port !== undefined;
    },
    60_000,
  );
  return port!;
}

describe("collector and sink against SASL/SCRAM-SHA-512 and mutual TLS (private broker)", () => {
  const user = { username: "tributary", password: randomBytes(12).toString("hex") };
  const topic = uniqueName("clicks-sasl");
  let kafka: PrivateKafka;
  let targetDir: string;
  const roles: Role[] = [];

  const saslEnv = (prefix: string, password = user.password) => ({
    [`${prefix}BROKERS`]: kafka.saslBrokers.join(","),
    [`${prefix}SASL_MECHANISM`]: "scram-sha-512",
    [`${prefix}SASL_USERNAME`]: user.username,
    [`${prefix}SASL_PASSWORD`]: password,
  });

  beforeAll(async () => {
    kafka = await PrivateKafka.start({ sasl: user, tls: true });
    await createTopics(kafka.brokers, [
      { topic, numPartitions: 2 },
      { topic: `${topic}.dlq`, numPartitions: 1 },
    ]);
    targetDir = await mkdtemp(join(tmpdir(), "tributary-sasl-sink-"));
  });

  afterAll(async () => {
    await Promise.all(roles.map(stopRole));
    await kafka?.stop();
    if (targetDir) await rm(targetDir, { recursive: true, force: true });
  });

  it("`tributary collector` produces and `tributary sink` consumes through SASL", async () => {
    const collector = startRole("collector", ["--port", "0", "--host", "127.0.0.1"], {
      ...saslEnv("TRIBUTARY_COLLECTOR_"),
      TRIBUTARY_COLLECTOR_TOPIC: topic,
      TRIBUTARY_COLLECTOR_COLLECTOR_ID: "collector-sasl",
    });
    roles.push(collector);
    const port = await loggedPort(collector, /"port":(\d+).*"msg":"collector listening"/);
    const url = `http://127.0.0.1:${port}`;
    await waitFor(
      "the collector to be ready",
      async () => (await fetch(`${url}/readyz`)).status === 200,
      30_000,
    );

    const ids = Array.from({ length: 20 }, () => randomUUID());
    const response = await fetch(`${url}/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "sasl-test" },
      body: JSON.stringify({
        events: ids.map((eventId, i) => ({
          eventId,
          eventType: "heartbeat",
          eventTime: Date.now(),
          sessionId: `sasl-session-${i % 4}`,
          request: { url: "/watch/sasl" },
        })),
      }),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ accepted: ids.length, refused: 0 });
    expect(await readTopic(kafka.brokers, topic)).toHaveLength(ids.length);

    const sink = startRole("sink", [], {
      ...saslEnv("TRIBUTARY_SINK_"),
      TRIBUTARY_SINK_TOPIC: topic,
      TRIBUTARY_SINK_FORMAT: "avro",
      TRIBUTARY_SINK_TARGET_DIR: targetDir,
      TRIBUTARY_SINK_ROLL_MAX_AGE_MS: "1000",
      TRIBUTARY_SINK_METRICS_PORT: "0",
      TRIBUTARY_SINK_METRICS_HOST: "127.0.0.1",
    });
    roles.push(sink);
    let rows: Record<string, unknown>[] = [];
    await waitFor(
      "the sink to write every event to files",
      async () => {
        if (sink.child.exitCode !== null) throw new Error(`the sink exited:\n${sink.output()}`);
        rows = (await readSinkOutput(targetDir, "avro")).files.flatMap((file) => file.rows);
        return rows.length >= ids.length;
      },
      90_000,
    );
    expect(new Set(rows.map((row) => row.eventId))).toEqual(new Set(ids));
    await stopRole(sink);
    expect(await sink.exited).toBe(0);
    await stopRole(collector);
    expect(await collector.exited).toBe(0);
  });

  it("stops with an error naming the refused SASL login when the password is wrong", async () => {
    const collector = startRole("collector", ["--port", "0", "--host", "127.0.0.1"], {
      ...saslEnv("TRIBUTARY_COLLECTOR_", "not-the-password"),
      TRIBUTARY_COLLECTOR_TOPIC: topic,
    });
    roles.push(collector);
    expect(await collector.exited).toBe(1);
    expect(collector.output()).toMatch(
      /^tributary: Kafka \(127\.0\.0\.1:\d+\) refused the scram-sha-512 login of user 'tributary'/m,
    );
    // What to fix, without a stack trace in the way.
    expect(collector.output()).not.toMatch(/^\s+at /m);

    const sink = startRole("sink", [], {
      ...saslEnv("TRIBUTARY_SINK_", "not-the-password"),
      TRIBUTARY_SINK_TOPIC: topic,
      TRIBUTARY_SINK_TARGET_DIR: targetDir,
      TRIBUTARY_SINK_METRICS_PORT: "0",
      TRIBUTARY_SINK_METRICS_HOST: "127.0.0.1",
    });
    roles.push(sink);
    expect(await sink.exited).toBe(1);
    expect(sink.output()).toMatch(/refused the scram-sha-512 login of user 'tributary'/);
  });

  it("`tributary collector` produces through TLS with a client certificate", async () => {
    const tlsTopic = `${topic}-tls`;
    await createTopics(kafka.brokers, [
      { topic: tlsTopic, numPartitions: 1 },
      { topic: `${tlsTopic}.dlq`, numPartitions: 1 },
    ]);
    const files = kafka.tlsFiles;
    const collector = startRole("collector", ["--port", "0", "--host", "127.0.0.1"], {
      TRIBUTARY_COLLECTOR_BROKERS: kafka.tlsBrokers.join(","),
      TRIBUTARY_COLLECTOR_TOPIC: tlsTopic,
      TRIBUTARY_COLLECTOR_TLS_CA_FILE: files.ca,
      TRIBUTARY_COLLECTOR_TLS_CERT_FILE: files.clientCert,
      TRIBUTARY_COLLECTOR_TLS_KEY_FILE: files.clientKey,
    });
    roles.push(collector);
    const port = await loggedPort(collector, /"port":(\d+).*"msg":"collector listening"/);
    const response = await fetch(`http://127.0.0.1:${port}/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "tls-test" },
      body: JSON.stringify({
        events: [
          {
            eventId: randomUUID(),
            eventType: "heartbeat",
            eventTime: Date.now(),
            sessionId: "tls-session",
            request: { url: "/watch/tls" },
          },
        ],
      }),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ accepted: 1, refused: 0 });
    expect(await readTopic(kafka.brokers, tlsTopic)).toHaveLength(1);
    await stopRole(collector);
    expect(await collector.exited).toBe(0);
  });

  it("refuses a half-given SASL setting before connecting (exit 2, naming the variable)", async () => {
    const collector = startRole("collector", [], {
      TRIBUTARY_COLLECTOR_BROKERS: kafka.saslBrokers.join(","),
      TRIBUTARY_COLLECTOR_TOPIC: topic,
      TRIBUTARY_COLLECTOR_SASL_MECHANISM: "scram-sha-512",
      TRIBUTARY_COLLECTOR_SASL_USERNAME: user.username,
    });
    roles.push(collector);
    expect(await collector.exited).toBe(2);
    expect(collector.output()).toMatch(
      /--sasl-password \(TRIBUTARY_COLLECTOR_SASL_PASSWORD\): SASL mechanism scram-sha-512 needs saslPassword/,
    );
  });
});
