/**
 * The schema registry against a private Kafka broker (test/support/kafka.ts) that a shared
 * cluster must not be put through: mutual TLS and SASL/SCRAM logins, a refused password, and the
 * broker killed with `kill -9` while the registry serves: reads go on from memory, a write fails
 * with Confluent's 5xx error instead of hanging, and writes work again once the broker is back.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { schemaRegistryConfigSchema } from "../../src/dataplane/registry/config.js";
import { type RunningSchemaRegistry, startSchemaRegistryServer } from "../../src/dataplane/registry/main.js";
import { uniqueName } from "../support/env.js";
import { PrivateKafka } from "../support/kafka.js";

const logger = pino({ level: process.env.TRIBUTARY_LOG_LEVEL ?? "silent" });
const CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";
const sasl = { username: "registry", password: "registry-secret" };

const schema = (field: string) =>
  JSON.stringify({
    type: "record",
    name: "Fault",
    fields: [
      { name: "id", type: "long" },
      { name: field, type: ["null", "string"], default: null },
    ],
  });

async function register(base: string, subject: string, text: string) {
  const response = await fetch(`${base}/subjects/${subject}/versions`, {
    method: "POST",
    headers: { "content-type": CONTENT_TYPE },
    body: JSON.stringify({ schema: text }),
  });
  return { status: response.status, body: (await response.json()) as { id?: number; error_code?: number } };
}

describe("schema-registry with TLS, SASL and a broker that dies (private Kafka)", () => {
  let kafka: PrivateKafka;
  const running: RunningSchemaRegistry[] = [];

  const start = async (input: Record<string, unknown>) => {
    const server = await startSchemaRegistryServer(
      schemaRegistryConfigSchema.parse({
        schemasTopic: "_tributary_schemas",
        host: "127.0.0.1",
        port: 0,
        connectRetryMs: 500,
        syncTimeoutMs: 10_000,
        ...input,
      }),
      logger,
    );
    running.push(server);
    return server;
  };

  beforeAll(async () => {
    kafka = await PrivateKafka.start({ tls: true, sasl });
  }, 180_000);

  afterAll(async () => {
    await Promise.allSettled(running.map((server) => server.close()));
    await kafka?.stop();
  });

  it("registers and reads over mutual TLS and over SASL/SCRAM, one log for both", async () => {
    const files = kafka.tlsFiles;
    const overTls = await start({
      brokers: kafka.tlsBrokers,
      tlsCaFile: files.ca,
      tlsCertFile: files.clientCert,
      tlsKeyFile: files.clientKey,
    });
    await overTls.ready;
    const overSasl = await start({
      brokers: kafka.saslBrokers,
      saslMechanism: "scram-sha-512",
      saslUsername: sasl.username,
      saslPassword: sasl.password,
    });
    await overSasl.ready;
    const subject = uniqueName("secure-value");
    const { body } = await register(overTls.url, subject, schema("a"));
    expect(body.id).toBeGreaterThan(0);
    const read = await fetch(`${overSasl.url}/schemas/ids/${body.id}`);
    expect(read.status).toBe(200);
  });

  it("a refused SASL password is a start-up error that says which login to fix", async () => {
    const refused = await start({
      brokers: kafka.saslBrokers,
      saslMechanism: "scram-sha-512",
      saslUsername: sasl.username,
      saslPassword: "wrong",
    });
    await expect(refused.ready).rejects.toThrow(/refused the scram-sha-512 login of user 'registry'/);
    const readyz = await fetch(`${refused.url}/readyz`);
    expect(readyz.status).toBe(503);
  });

  it("serves reads from memory while the broker is gone, fails writes with 5xx, and writes again once it is back", {
    timeout: 180_000,
  }, async () => {
    const server = await start({ brokers: kafka.brokers });
    await server.ready;
    const subject = uniqueName("outage-value");
    const { body } = await register(server.url, subject, schema("before"));
    const id = body.id!;

    await kafka.kill();
    const read = await fetch(`${server.url}/schemas/ids/${id}`);
    expect(read.status).toBe(200);
    expect((await fetch(`${server.url}/subjects/${subject}/versions/latest`)).status).toBe(200);

    const during = await register(server.url, subject, schema("during"));
    expect(during.status).toBeGreaterThanOrEqual(500);
    expect([50001, 50002]).toContain(during.body.error_code);

    await kafka.restart();
    const after = await (async () => {
      const deadline = Date.now() + 120_000;
      for (;;) {
        const answer = await register(server.url, subject, schema("after"));
        if (answer.status === 200 || Date.now() > deadline) return answer;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    })();
    expect(after.status).toBe(200);
    const versions = (await (await fetch(`${server.url}/subjects/${subject}/versions`)).json()) as number[];
    // The write that failed left nothing half-done: at most one version for it, never a gap.
    expect(versions[0]).toBe(1);
    expect(versions).toEqual(versions.map((_, i) => i + 1));
  });
});
