import { describe, expect, it } from "vitest";
import { cdcStreamDefinition, cdcStreamSpecSchema } from "../../src/api/cdcstream.js";
import {
  connectorStatefulSet,
  defaultPgName,
  desiredChildren,
  snapshotJob,
  snapshotJobName,
} from "../../src/controllers/cdcstream/build.js";
import { connectorStatusSchema } from "../../src/controllers/cdcstream/connectorClient.js";
import { decideSnapshot, mergeSnapshots, podReport } from "../../src/controllers/cdcstream/snapshots.js";
import { cdcHealth, connectorFigures } from "../../src/controllers/cdcstream/status.js";
import type { KubeObject } from "../../src/operator/kube.js";

const resource = (name = "orders", namespace = "shop"): KubeObject => ({
  apiVersion: cdcStreamDefinition.apiVersion,
  kind: "CDCStream",
  metadata: { name, namespace, uid: "uid-1", generation: 1 },
});

const spec = (extra: Record<string, unknown> = {}) =>
  cdcStreamSpecSchema.parse({
    source: { postgres: { host: "db", database: "shop", credentialsSecret: { name: "db-user" } } },
    target: { topicPrefix: "shop" },
    ...extra,
  });

const input = (extra: Record<string, unknown> = {}) => ({
  resource: resource(),
  spec: spec(extra),
  image: "tributary:test",
  brokers: ["kafka:9092"],
});

type Container = { env: { name: string; value?: string; valueFrom?: unknown }[]; args: string[] };
const containerOf = (workload: KubeObject) =>
  (workload.spec as { template: { spec: { containers: Container[] } } }).template.spec.containers[0]!;
const envOf = (workload: KubeObject) =>
  Object.fromEntries(containerOf(workload).env.map((entry) => [entry.name, entry.value ?? entry.valueFrom]));

const status = (overrides: Record<string, unknown> = {}) =>
  connectorStatusSchema.parse({ state: "streaming", slotName: "s", tables: ["public.orders"], ...overrides });

describe("the CDCStream's children", () => {
  it("names its slot and publication tributary_<namespace>_<name>, folded and hashed to fit PostgreSQL", () => {
    expect(defaultPgName(resource("orders", "shop-prod"))).toBe("tributary_shop_prod_orders");
    const long = defaultPgName(resource("a".repeat(60), "b".repeat(40)));
    expect(long).toHaveLength(63);
    expect(long).toMatch(/^[a-z0-9_]+$/);
    expect(defaultPgName(resource("a".repeat(60), "c".repeat(40)))).not.toBe(long);
  });

  it("runs exactly one connector, zero when stopped, with the password from the Secret", () => {
    const [service, statefulSet] = desiredChildren(input());
    expect(service!.kind).toBe("Service");
    expect((statefulSet!.spec as { replicas: number }).replicas).toBe(1);
    expect(containerOf(statefulSet!).args).toEqual(["cdc"]);
    const env = envOf(statefulSet!);
    expect(env.TRIBUTARY_CDC_PG_PASSWORD).toEqual({ secretKeyRef: { name: "db-user", key: "password" } });
    expect(env.TRIBUTARY_CDC_SLOT).toBe("tributary_shop_orders");
    expect(env.TRIBUTARY_CDC_STATE_DIR).toBe("/var/lib/tributary/cdc");
    expect(env.TRIBUTARY_CDC_HTTP_PORT).toBe("8080");
    const stopped = connectorStatefulSet(input({ clusterOperation: { stopped: true } }));
    expect((stopped.spec as { replicas: number }).replicas).toBe(0);
  });

  it("mounts the database CA and gives Kafka TLS and SASL as the Topic's pods get them", () => {
    const statefulSet = connectorStatefulSet(
      input({
        source: {
          postgres: {
            host: "db",
            database: "shop",
            credentialsSecret: { name: "db-user" },
            sslMode: "verify-full",
            sslRootCertSecret: { name: "db-ca", key: "root.pem" },
          },
        },
        target: {
          topicPrefix: "shop",
          kafka: { bootstrapServers: ["k:9093"], tls: {}, sasl: { credentialsSecret: { name: "k-user" } } },
        },
      }),
    );
    const env = envOf(statefulSet);
    expect(env.TRIBUTARY_CDC_PG_SSL_ROOT_CERT_FILE).toBe("/etc/tributary/postgres/ca/ca.crt");
    expect(env.TRIBUTARY_CDC_TLS).toBe("true");
    expect(env.TRIBUTARY_CDC_SASL_PASSWORD).toEqual({ secretKeyRef: { name: "k-user", key: "password" } });
  });

  it("builds a snapshot Job named after its scheduled time, writing to the BlockPool's WebHDFS", () => {
    const time = new Date("2026-12-06T01:00:00Z");
    const job = snapshotJob({
      ...input({
        snapshot: { schedule: "@daily", files: { blockPool: { blockPool: "lake", path: "/lake/shop" } } },
      }),
      time,
      webHdfsPort: 9871,
    });
    expect(job.metadata.name).toBe(snapshotJobName("orders", time));
    const env = envOf(job);
    expect(env.TRIBUTARY_CDC_SNAPSHOT_TARGET_WEBHDFS).toBe("lake.shop.svc:9871");
    expect(env.TRIBUTARY_CDC_SNAPSHOT_TARGET_PATH).toBe("/lake/shop");
    expect(env.TRIBUTARY_CDC_SNAPSHOT_SNAPSHOT_TIME).toBe("2026-12-06T01:00:00.000Z");
  });
});

describe("the CDCStream's health", () => {
  const base = { spec: spec(), sourceProblems: [], podReady: true };

  it("is Ready only when the pod is ready and the connector streams", () => {
    expect(cdcHealth({ ...base, connector: { status: status() } }).ready).toMatchObject({
      status: "True",
      reason: "Streaming",
    });
    expect(cdcHealth({ ...base, podReady: false, connector: { status: status() } }).ready.status).toBe(
      "False",
    );
    expect(
      cdcHealth({ ...base, connector: { status: status({ state: "snapshotting" }) } }).ready,
    ).toMatchObject({
      status: "False",
      reason: "SnapshotRunning",
    });
    expect(cdcHealth({ ...base, connector: { error: "ECONNREFUSED" } }).ready.message).toContain(
      "ECONNREFUSED",
    );
  });

  it("is Ready after an initial_only snapshot completed and the connector stopped", () => {
    const health = cdcHealth({
      ...base,
      spec: spec({ snapshot: { mode: "initial_only" } }),
      connector: { status: status({ state: "stopped", snapshot: { completedAt: "2026-12-06T01:00:00Z" } }) },
    });
    expect(health.ready).toMatchObject({ status: "True", reason: "SnapshotCompleted" });
  });

  it("puts the source's problems first, then the connector's", () => {
    const source = cdcHealth({
      ...base,
      sourceProblems: [{ reason: "AuthenticationFailed", message: "password authentication failed" }],
      connector: { status: status() },
    });
    expect(source.degraded).toMatchObject({ status: "True", reason: "AuthenticationFailed" });
    expect(source.ready.status).toBe("False");
    const connector = cdcHealth({
      ...base,
      connector: {
        status: status({
          state: "failed",
          problems: [{ reason: "SlotInvalidated", message: "wal removed" }],
        }),
      },
    });
    expect(connector.degraded).toMatchObject({
      status: "True",
      reason: "SlotInvalidated",
      message: "wal removed",
    });
  });

  it("copies the connector's figures into status", () => {
    expect(
      connectorFigures(
        status({
          confirmedFlushLsn: "0/ABC",
          lagBytes: 10,
          lagSeconds: 1.5,
          eventsPerSecond: 1234.5678,
          lastEventTime: "2026-12-06T01:00:00Z",
        }),
      ),
    ).toMatchObject({
      connectorState: "streaming",
      confirmedFlushLsn: "0/ABC",
      lagBytes: 10,
      lagSeconds: 1.5,
      eventsPerSecond: 1234.57,
      lastEventTime: "2026-12-06T01:00:00.000Z",
    });
  });
});

describe("scheduled snapshots", () => {
  it("reads the schedule in its time zone and takes only the latest missed time", () => {
    const decision = decideSnapshot({
      schedule: "0 2 * * *",
      timeZone: "Europe/Paris",
      since: new Date("2026-12-01T12:00:00Z"),
      now: new Date("2026-12-06T12:00:00Z"),
      running: false,
    });
    expect(decision.due?.toISOString()).toBe("2026-12-06T01:00:00.000Z");
    expect(decision.next?.toISOString()).toBe("2026-12-07T01:00:00.000Z");
  });

  it("starts nothing while a snapshot runs, and nothing before its time", () => {
    const args = { schedule: "@hourly", timeZone: "UTC", since: new Date("2026-12-06T10:00:00Z") };
    expect(
      decideSnapshot({ ...args, now: new Date("2026-12-06T11:30:00Z"), running: true }).due,
    ).toBeUndefined();
    expect(
      decideSnapshot({ ...args, now: new Date("2026-12-06T10:59:59Z"), running: false }).due,
    ).toBeUndefined();
  });

  it("keeps results of Jobs gone, newest first, at most ten", () => {
    const job = (name: string, status: Record<string, unknown>): KubeObject => ({
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: { name },
      status,
    });
    const pod: KubeObject = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "p" },
      status: {
        containerStatuses: [
          {
            state: {
              terminated: {
                exitCode: 0,
                message: JSON.stringify({ manifest: "m", rows: 5, lsn: "0/1", tables: 1 }),
              },
            },
          },
        ],
      },
    };
    expect(podReport([pod]).summary?.rows).toBe(5);
    const previous = Array.from({ length: 10 }, (_, i) => ({
      time: new Date(Date.UTC(2026, 10, i + 1)).toISOString(),
      job: `old-${i}`,
      result: "Succeeded" as const,
    }));
    const merged = mergeSnapshots(previous, [
      { job: job("new", { succeeded: 1 }), time: new Date("2026-12-06T01:00:00Z"), pods: [pod] },
      {
        job: job("failed", {
          conditions: [{ type: "Failed", status: "True", message: "BackoffLimitExceeded" }],
        }),
        time: new Date("2026-12-05T01:00:00Z"),
        pods: [],
      },
    ]);
    expect(merged).toHaveLength(10);
    expect(merged[0]).toMatchObject({ job: "new", result: "Succeeded", rows: 5, manifest: "m", lsn: "0/1" });
    expect(merged[1]).toMatchObject({ job: "failed", result: "Failed", message: "BackoffLimitExceeded" });
  });
});
