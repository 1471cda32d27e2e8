/**
 * The CDCStream controller against the real API server and the real PostgreSQL of the test
 * environment: the connector StatefulSet it builds, the status it writes from the connector's
 * `/status`, ad hoc snapshot requests, the Degraded conditions of its own preflight (wrong
 * password, missing table, table without a primary key, a slot held by another client), and
 * deletion, which drops or keeps the slot and the publication.
 *
 * The connector pod never runs here (no kubelet, see playKubelet), so its HTTP API is played by a
 * small real HTTP server on loopback that speaks the `/status` and `POST /snapshots` contract of
 * `tributary cdc`; the real connector is exercised against this controller only in test/e2e, once
 * both are in one image. Everything else is real: API server, StatefulSet controller, PostgreSQL,
 * and a real replication client (pg_recvlogical) holding a slot.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cdcStreamDefinition } from "../../src/api/cdcstream.js";
import { customResourceDefinitions } from "../../src/api/crds.js";
import { jobType } from "../../src/controllers/cdcstream/build.js";
import { createCdcStreamController } from "../../src/controllers/cdcstream/reconcile.js";
import { resourceType } from "../../src/controllers/common.js";
import { builtin, type KubeObject } from "../../src/operator/kube.js";
import type { Operator } from "../../src/operator/operator.js";
import { testEnv, uniqueName } from "../support/env.js";
import {
  applyCrds,
  condition,
  createNamespace,
  deleteNamespace,
  deleteTributaryResources,
  playKubelet,
  startOperator,
  testClient,
  waitFor,
} from "./operator-harness.js";

const client = testClient();
const cdcType = resourceType(cdcStreamDefinition);
const namespace = uniqueName("cdc-ctl");
const database = uniqueName("cdcctl").replaceAll("-", "_");
const role = `${database}_user`;
const password = "s3cret-Pass";
const pgUrl = new URL(testEnv().postgresUrl);
const admin = new pg.Client({ connectionString: testEnv().postgresUrl });
let db: pg.Client;
let operator: Operator;
let keepCrd: NodeJS.Timeout | undefined;

/** The connector's HTTP API as `tributary cdc` serves it, per stream name, set by each test. */
const connectorAnswers = new Map<string, Record<string, unknown>>();
const snapshotPosts: { stream: string; body: { id: string; tables: string[] } }[] = [];
let connectorServer: Server;
let connectorBase = "";

function streamingStatus(overrides: Record<string, unknown> = {}) {
  return {
    state: "streaming",
    slotName: "ignored_by_test",
    publicationName: "ignored_by_test",
    confirmedFlushLsn: "0/1A2B3C4",
    lagBytes: 4096,
    lagSeconds: 0.4,
    eventsPerSecond: 1234.5,
    lastEventTime: "2026-12-06T03:00:00.000Z",
    tables: ["public.orders"],
    tablesWithoutFullIdentity: [],
    snapshot: { tablesDone: 1, tablesTotal: 1, rowsRead: 42, completedAt: "2026-12-06T02:59:00.000Z" },
    snapshotRequests: [],
    problems: [],
    ...overrides,
  };
}

beforeAll(async () => {
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  await admin.query(`CREATE ROLE ${role} LOGIN REPLICATION PASSWORD '${password}'`);
  const url = new URL(testEnv().postgresUrl);
  url.pathname = `/${database}`;
  db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  await db.query("CREATE TABLE public.orders (id bigint PRIMARY KEY, total numeric)");
  await db.query("CREATE TABLE public.audit_log (at timestamptz, line text)");
  await db.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`);

  connectorServer = createServer((request, response) => {
    const stream = decodeURIComponent((request.url ?? "").split("/")[1] ?? "");
    let body = "";
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      if (request.method === "POST" && request.url?.endsWith("/snapshots")) {
        snapshotPosts.push({ stream, body: JSON.parse(body) });
        response.writeHead(202, { "content-type": "application/json" }).end("{}");
        return;
      }
      const answer = connectorAnswers.get(stream);
      if (!answer) {
        response.writeHead(503).end("starting");
        return;
      }
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((resolve) => connectorServer.listen(0, "127.0.0.1", resolve));
  connectorBase = `http://127.0.0.1:${(connectorServer.address() as AddressInfo).port}`;

  await applyCrds(client);
  // The API server is shared with other checkouts whose tests apply their own (older) CRDs: keep
  // this schema (a superset of theirs) in place while these tests run.
  const crd = customResourceDefinitions().find((candidate) => candidate.spec.names.kind === "CDCStream")!;
  keepCrd = setInterval(() => {
    client
      .apply(builtin.customResourceDefinition, crd as unknown as KubeObject, "tributary-tests")
      .catch(() => {});
  }, 1_000);
  await createNamespace(client, namespace);
  await client.create(builtin.secret, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "pg-user", namespace },
    stringData: { username: role, password },
  });
  await client.create(builtin.secret, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "pg-wrong", namespace },
    stringData: { username: role, password: "not-the-password" },
  });
  operator = await startOperator("cdc-controller-test", namespace, [
    createCdcStreamController({
      defaultBootstrap: ["127.0.0.1:29092"],
      connectorUrl: (stream) => `${connectorBase}/${encodeURIComponent(stream)}`,
      refreshMs: 500,
      preflightIntervalMs: 500,
      cleanupDeadlineMs: 4_000,
      podGoneWaitMs: 1_000,
      requestTimeoutMs: 1_000,
    }),
  ]);
}, 120_000);

afterAll(async () => {
  clearInterval(keepCrd);
  await deleteTributaryResources(client, namespace).catch(() => {});
  await operator?.stop();
  await deleteNamespace(client, namespace).catch(() => {});
  client.close();
  await new Promise((resolve) => connectorServer?.close(resolve));
  await db?.end();
  await admin.query(
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '${database}' AND NOT active`,
  );
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.query(`DROP ROLE IF EXISTS ${role}`);
  await admin.end();
});

function stream(name: string, postgres: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: cdcStreamDefinition.apiVersion,
    kind: "CDCStream",
    metadata: { name, namespace },
    spec: {
      source: {
        postgres: {
          host: pgUrl.hostname,
          port: Number(pgUrl.port),
          database,
          sslMode: "disable",
          credentialsSecret: { name: "pg-user" },
          tables: { include: ["public.orders"] },
          ...postgres,
        },
      },
      target: { topicPrefix: `cdc.${name}`, replicationFactor: 1 },
      ...extra,
    },
  } as unknown as KubeObject;
}

type Stream = KubeObject & { status?: Record<string, unknown> };
const get = (name: string) => client.find<Stream>(cdcType, namespace, name);

async function eventsFor(name: string): Promise<{ reason: string; note: string }[]> {
  const list = await client.list(builtin.event, namespace);
  return (list.items as unknown as { regarding?: { name?: string }; reason: string; note: string }[])
    .filter((event) => event.regarding?.name === name)
    .map(({ reason, note }) => ({ reason, note }));
}

describe("the CDCStream controller", () => {
  it("runs one connector pod and reports Ready with the connector's figures only once it streams", async () => {
    await client.create(cdcType, stream("orders"));
    const statefulSet = await waitFor("the connector StatefulSet", () =>
      client.find(builtin.statefulSet, namespace, "orders-connector"),
    );
    const spec = statefulSet.spec as {
      replicas: number;
      serviceName: string;
      template: {
        spec: {
          containers: { args: string[]; env: { name: string; value?: string; valueFrom?: unknown }[] }[];
        };
      };
      volumeClaimTemplates: unknown[];
    };
    expect(spec.replicas).toBe(1);
    expect(spec.serviceName).toBe("orders-connector");
    expect(spec.volumeClaimTemplates).toHaveLength(1);
    const container = spec.template.spec.containers[0]!;
    expect(container.args).toEqual(["cdc"]);
    const env = Object.fromEntries(
      container.env.map((entry) => [entry.name, entry.value ?? entry.valueFrom]),
    );
    expect(env.TRIBUTARY_CDC_NAME).toBe(`${namespace}/orders`);
    expect(env.TRIBUTARY_CDC_PG_PASSWORD).toEqual({ secretKeyRef: { name: "pg-user", key: "password" } });
    expect(env.TRIBUTARY_CDC_TABLES_INCLUDE).toBe("public.orders");
    expect(env.TRIBUTARY_CDC_KAFKA_BOOTSTRAP).toBe("127.0.0.1:29092");
    expect(env.TRIBUTARY_CDC_SLOT).toMatch(/^tributary_cdc_ctl_[a-z0-9_]+_orders$/);
    const service = await client.get(builtin.service, namespace, "orders-connector");
    expect((service.spec as { clusterIP: string }).clusterIP).toBe("None");

    // No pod ready, no connector answer: not Ready, whatever the database says.
    const waiting = await waitFor("a status while the pod is pending", async () => {
      const found = await get("orders");
      return condition(found, "Ready")?.status === "False" &&
        (found?.status as { slotName?: string } | undefined)?.slotName
        ? found
        : undefined;
    });
    expect(condition(waiting, "Degraded")?.status).toBe("False");
    expect(waiting.status?.tables).toEqual(["public.orders"]);

    connectorAnswers.set("orders", streamingStatus());
    await waitFor("the connector pod", () =>
      playKubelet(client, namespace, "app.kubernetes.io/instance=orders"),
    );
    const ready: Stream = await waitFor("Ready while streaming", async () => {
      const found = await get("orders");
      return condition(found, "Ready")?.status === "True" ? found : undefined;
    });
    expect(condition(ready, "Ready")?.reason).toBe("Streaming");
    expect(ready.status).toMatchObject({
      connectorState: "streaming",
      confirmedFlushLsn: "0/1A2B3C4",
      lagBytes: 4096,
      lagSeconds: 0.4,
      eventsPerSecond: 1234.5,
      lastEventTime: "2026-12-06T03:00:00.000Z",
      snapshotProgress: { tablesDone: 1, tablesTotal: 1, rowsRead: 42 },
    });

    // The connector's own problems, and the tables without a full 'before' image.
    connectorAnswers.set(
      "orders",
      streamingStatus({
        state: "failed",
        tablesWithoutFullIdentity: ["public.orders"],
        problems: [
          { reason: "KafkaUnavailable", message: "brokers 127.0.0.1:29092 refused: NOT_ENOUGH_REPLICAS" },
        ],
      }),
    );
    const degraded = await waitFor("Degraded from the connector's problems", async () => {
      const found = await get("orders");
      return condition(found, "Degraded")?.reason === "KafkaUnavailable" ? found : undefined;
    });
    expect(condition(degraded, "Degraded")?.message).toContain("NOT_ENOUGH_REPLICAS");
    expect(condition(degraded, "Ready")?.status).toBe("False");
    expect(degraded.status?.tablesWithoutFullIdentity).toEqual(["public.orders"]);
    await waitFor("a warning naming the table without REPLICA IDENTITY FULL", async () =>
      (await eventsFor("orders")).some(
        (event) => event.reason === "TablesWithoutFullIdentity" && event.note.includes("public.orders"),
      ),
    );
  });

  it("sends each ad hoc snapshot request once the connector answers and mirrors its state", async () => {
    connectorAnswers.set("orders", streamingStatus());
    // A patch without a resourceVersion precondition, as `kubectl patch` sends it: the
    // controller's status writes move the version at any moment.
    await client.mergePatch(cdcType, namespace, "orders", {
      spec: { snapshot: { requests: [{ id: "backfill-1", tables: ["public.orders"] }] } },
    });
    await waitFor("the POST /snapshots", async () =>
      snapshotPosts.some((post) => post.stream === "orders" && post.body.id === "backfill-1"),
    );
    expect(snapshotPosts.find((post) => post.body.id === "backfill-1")?.body.tables).toEqual([
      "public.orders",
    ]);
    connectorAnswers.set(
      "orders",
      streamingStatus({ snapshotRequests: [{ id: "backfill-1", state: "Completed", rows: 42 }] }),
    );
    const done = await waitFor("the request Completed in status", async () => {
      const found = await get("orders");
      const requests = found?.status?.snapshotRequests as { id: string; state: string }[] | undefined;
      return requests?.[0]?.state === "Completed" ? requests : undefined;
    });
    expect(done).toEqual([{ id: "backfill-1", state: "Completed", rows: 42 }]);
    const posted = snapshotPosts.filter((post) => post.body.id === "backfill-1").length;
    // A known id is not sent again.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(snapshotPosts.filter((post) => post.body.id === "backfill-1").length).toBe(posted);
  });

  it("refuses duplicate ad hoc snapshot ids at the API server", async () => {
    const refused = await client
      .create(
        cdcType,
        stream(
          "dupes",
          {},
          {
            snapshot: {
              requests: [
                { id: "a", tables: ["public.orders"] },
                { id: "a", tables: ["public.orders"] },
              ],
            },
          },
        ),
      )
      .then(
        () => undefined,
        (error: Error) => error.message,
      );
    expect(refused).toContain("each id must be unique");
  });

  it("reports a wrong password, a missing database, a missing table and a table without a primary key as a DBA reads them", async () => {
    await client.create(cdcType, stream("wrongpw", { credentialsSecret: { name: "pg-wrong" } }));
    const wrong = await waitFor("Degraded for the password", async () => {
      const found = await get("wrongpw");
      return condition(found, "Degraded")?.reason === "AuthenticationFailed" ? found : undefined;
    });
    expect(condition(wrong, "Degraded")?.message).toContain(
      `password authentication failed for user "${role}"`,
    );
    expect(condition(wrong, "Degraded")?.message).toContain("Secret pg-wrong");
    expect(condition(wrong, "Ready")?.status).toBe("False");

    await client.create(cdcType, stream("nodatabase", { database: `${database}_missing` }));
    const missing = await waitFor("Degraded for the database", async () => {
      const found = await get("nodatabase");
      return condition(found, "Degraded")?.reason === "DatabaseNotFound" ? found : undefined;
    });
    expect(condition(missing, "Degraded")?.message).toContain(
      `database "${database}_missing" does not exist`,
    );

    await client.create(
      cdcType,
      stream("tables", { tables: { include: ["public.orders", "public.missing", "public.audit_log"] } }),
    );
    const tables = await waitFor("Degraded for the tables", async () => {
      const found = await get("tables");
      return condition(found, "Degraded")?.reason === "TableNotFound" ? found : undefined;
    });
    const message = condition(tables, "Degraded")!.message;
    expect(message).toContain(`table public.missing does not exist in database ${database}`);
    expect(message).toContain(
      "table public.audit_log has no primary key and its REPLICA IDENTITY is not FULL",
    );
    expect(message).toContain("ALTER TABLE public.audit_log REPLICA IDENTITY FULL");

    // The DBA fixes both: the condition clears at the next preflight.
    await db.query("CREATE TABLE public.missing (id int PRIMARY KEY)");
    await db.query("ALTER TABLE public.audit_log REPLICA IDENTITY FULL");
    await waitFor("Degraded cleared", async () => {
      const found = await get("tables");
      return condition(found, "Degraded")?.status === "False" ? found : undefined;
    });
    await db.query("ALTER TABLE public.audit_log REPLICA IDENTITY DEFAULT");
  });

  it("reports a slot held by another client, and leaves that client alone", async () => {
    const slot = `${database}_taken`;
    await db.query("CREATE PUBLICATION taken_pub FOR TABLE public.orders");
    await db.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
    const url = new URL(testEnv().postgresUrl);
    url.pathname = `/${database}`;
    const holder: ChildProcess = spawn(
      "pg_recvlogical",
      [
        "-d",
        url.toString(),
        "-S",
        slot,
        "--start",
        "-f",
        "/dev/null",
        "-o",
        "proto_version=1",
        "-o",
        "publication_names=taken_pub",
      ],
      { stdio: "ignore" },
    );
    try {
      await waitFor("the slot active", async () => {
        const { rows } = await admin.query("SELECT active FROM pg_replication_slots WHERE slot_name = $1", [
          slot,
        ]);
        return rows[0]?.active === true;
      });
      await client.create(cdcType, stream("taken", { slotName: slot }));
      const taken = await waitFor("Degraded for the slot", async () => {
        const found = await get("taken");
        return condition(found, "Degraded")?.reason === "SlotInUse" ? found : undefined;
      });
      expect(condition(taken, "Degraded")?.message).toContain(
        `replication slot ${slot} is in use by another connection`,
      );
      expect(condition(taken, "Degraded")?.message).toContain("pg_recvlogical");
      // Nothing else disturbed: the other client still holds its slot.
      const { rows } = await admin.query("SELECT active FROM pg_replication_slots WHERE slot_name = $1", [
        slot,
      ]);
      expect(rows[0]?.active).toBe(true);
    } finally {
      holder.kill("SIGTERM");
      await waitFor("the holder gone", async () => {
        const { rows } = await admin.query("SELECT active FROM pg_replication_slots WHERE slot_name = $1", [
          slot,
        ]);
        return rows[0]?.active === false;
      });
    }
    // With deletionPolicy Retain, deleting it keeps the (now idle) slot and says so.
    await client.mergePatch(cdcType, namespace, "taken", {
      spec: { deletionPolicy: "Retain" },
    });
    await waitFor("Retain observed", async () => (await get("taken"))?.status?.observedGeneration === 2);
    await client.delete(cdcType, namespace, "taken");
    await waitFor("the stream gone", async () => (await get("taken")) === undefined);
    const kept = await admin.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [slot]);
    expect(kept.rowCount).toBe(1);
    expect(
      (await eventsFor("taken")).some(
        (event) => event.reason === "SourceStateKept" && event.note.includes(slot),
      ),
    ).toBe(true);
    await admin.query("SELECT pg_drop_replication_slot($1)", [slot]);
    await db.query("DROP PUBLICATION taken_pub");
  });

  it("drops the slot and the publication on delete with deletionPolicy Delete, terminating a walsender left behind", async () => {
    await client.create(cdcType, stream("dropme"));
    const found = await waitFor(
      "the stream's status",
      async () => (await get("dropme"))?.status?.slotName as string | undefined,
    );
    const slot = found;
    const publication = (await get("dropme"))!.status!.publicationName as string;
    // What the connector would have made.
    await db.query(`CREATE PUBLICATION ${publication} FOR TABLE public.orders`);
    await db.query(`GRANT CREATE ON DATABASE ${database} TO ${role}`);
    await db.query(`ALTER PUBLICATION ${publication} OWNER TO ${role}`);
    await db.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
    const url = new URL(testEnv().postgresUrl);
    url.pathname = `/${database}`;
    url.username = role;
    url.password = password;
    // A walsender still reading the slot after the pod went (a connection not yet timed out).
    const straggler = spawn(
      "pg_recvlogical",
      [
        "-d",
        url.toString(),
        "-S",
        slot,
        "--start",
        "-f",
        "/dev/null",
        "--no-loop",
        "-o",
        "proto_version=1",
        "-o",
        `publication_names=${publication}`,
      ],
      { stdio: "ignore" },
    );
    try {
      await waitFor("the slot active", async () => {
        const { rows } = await admin.query("SELECT active FROM pg_replication_slots WHERE slot_name = $1", [
          slot,
        ]);
        return rows[0]?.active === true;
      });
      await client.delete(cdcType, namespace, "dropme");
      await waitFor("the stream gone", async () => (await get("dropme")) === undefined, {
        timeoutMs: 60_000,
      });
      const slots = await admin.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [slot]);
      const publications = await db.query("SELECT 1 FROM pg_publication WHERE pubname = $1", [publication]);
      expect(slots.rowCount).toBe(0);
      expect(publications.rowCount).toBe(0);
      const dropped = (await eventsFor("dropme")).filter((event) => event.reason === "SourceStateDropped");
      expect(dropped.map((event) => event.note).join("\n")).toContain(
        `dropped replication slot ${slot} (after terminating walsender pid`,
      );
    } finally {
      straggler.kill("SIGKILL");
    }
  });

  it("starts one snapshot Job per scheduled time, never two at once, and keeps its result in status", async () => {
    const parisClock = (instant: string) =>
      new Intl.DateTimeFormat("en-GB", {
        timeZone: "Europe/Paris",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
        hourCycle: "h23",
      }).format(new Date(instant));
    await client.create(
      cdcType,
      stream(
        "nightly",
        {},
        {
          snapshot: {
            schedule: "0 2 * * *",
            timeZone: "Europe/Paris",
            files: { volume: { claimName: "lake", subPath: "snapshots" } },
          },
        },
      ),
    );
    const first = await waitFor("the next snapshot time", async () => {
      const found = await get("nightly");
      return found?.status?.nextSnapshotTime ? found : undefined;
    });
    // 02:00 on Paris's clock: 01:00 UTC in winter, 00:00 in summer.
    expect(parisClock(String(first.status!.nextSnapshotTime))).toBe("02:00:00");
    const jobsOf = async () =>
      (await client.list(jobType, namespace, { labelSelector: "app.kubernetes.io/instance=nightly" })).items;
    expect(await jobsOf()).toEqual([]);

    // A night the operator missed (status says the last Job was two days ago): only the latest
    // missed time runs, once.
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000).toISOString();
    await client.mergePatch(
      cdcType,
      namespace,
      "nightly",
      { status: { lastScheduleTime: twoDaysAgo } },
      "status",
    );
    const [job] = await waitFor("the snapshot Job", async () => {
      const jobs = await jobsOf();
      return jobs.length > 0 ? jobs : undefined;
    });
    const template = (
      job!.spec as {
        template: {
          spec: {
            containers: { args: string[]; env: { name: string; value?: string }[] }[];
            restartPolicy: string;
          };
        };
      }
    ).template.spec;
    expect(template.restartPolicy).toBe("Never");
    expect(template.containers[0]!.args).toEqual(["cdc-snapshot"]);
    const env = Object.fromEntries(template.containers[0]!.env.map((entry) => [entry.name, entry.value]));
    expect(env.TRIBUTARY_CDC_SNAPSHOT_TARGET_DIR).toBe("/var/lib/tributary/snapshot/snapshots");
    const scheduledAt = env.TRIBUTARY_CDC_SNAPSHOT_SNAPSHOT_TIME!;
    expect(parisClock(scheduledAt)).toBe("02:00:00");
    expect(Date.now() - Date.parse(scheduledAt)).toBeLessThan(86_400_000);

    // While it runs, another missed time waits for it: never two Jobs at once. (The status's
    // list is cleared with it: its return shows a reconcile saw the missed time.)
    await client.mergePatch(
      cdcType,
      namespace,
      "nightly",
      { status: { lastScheduleTime: twoDaysAgo, snapshots: null } },
      "status",
    );
    await waitFor("a reconcile after the missed time", async () => {
      const found = await get("nightly");
      return (found?.status?.snapshots as unknown[] | undefined)?.length === 1;
    });
    expect(await jobsOf()).toHaveLength(1);

    // The Job's pod ends with the role's summary as its termination message (the kubelet's part).
    const pod = await waitFor("the Job's pod", async () => {
      const pods = await client.list(builtin.pod, namespace, {
        labelSelector: `job-name=${job!.metadata.name}`,
      });
      return pods.items[0];
    });
    const summary = {
      manifest: "file:///var/lib/tributary/snapshot/snapshots/_snapshots/snapshot=x/_manifest.json",
      rows: 1234,
      lsn: "0/16B3748",
      tables: 1,
    };
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await client.mergePatch(
      builtin.pod,
      namespace,
      pod.metadata.name,
      {
        status: {
          phase: "Succeeded",
          conditions: [{ type: "Ready", status: "False", lastTransitionTime: now, reason: "PodCompleted" }],
          containerStatuses: [
            {
              name: "snapshot",
              image: "registry.example/tributary:test",
              imageID: "",
              ready: false,
              restartCount: 0,
              state: {
                terminated: {
                  exitCode: 0,
                  reason: "Completed",
                  message: JSON.stringify(summary),
                  startedAt: now,
                  finishedAt: now,
                },
              },
            },
          ],
        },
      },
      "status",
    );
    const done = await waitFor(
      "the snapshot's result in status",
      async () => {
        const found = await get("nightly");
        const snapshots = found?.status?.snapshots as { result: string }[] | undefined;
        return snapshots?.[0]?.result === "Succeeded" ? found : undefined;
      },
      { timeoutMs: 90_000 },
    );
    expect(done.status!.snapshots).toEqual([
      {
        time: scheduledAt,
        job: job!.metadata.name,
        result: "Succeeded",
        rows: 1234,
        manifest: summary.manifest,
        lsn: "0/16B3748",
      },
    ]);
    expect(done.status!.lastSnapshotRows).toBe(1234);
    expect(done.status!.lastSnapshotTime).toBe(scheduledAt);
    // Then the missed time is looked at again: it is the time the Job already took (one Job per
    // time, by name), so nothing runs twice.
    await waitFor(
      "the schedule caught up",
      async () => (await get("nightly"))?.status?.lastScheduleTime === scheduledAt,
    );
    expect((await jobsOf()).map((entry) => entry.metadata.name)).toEqual([job!.metadata.name]);
  });

  it("asks the connector for a scheduled snapshot into the topics when there are no files", async () => {
    await client.create(cdcType, stream("hourly", {}, { snapshot: { schedule: "@hourly" } }));
    connectorAnswers.set("hourly", streamingStatus());
    await waitFor("the connector pod", () =>
      playKubelet(client, namespace, "app.kubernetes.io/instance=hourly"),
    );
    await waitFor("Ready", async () => condition(await get("hourly"), "Ready")?.status === "True");
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000).toISOString();
    await client.mergePatch(
      cdcType,
      namespace,
      "hourly",
      { status: { lastScheduleTime: twoHoursAgo } },
      "status",
    );
    const post = await waitFor("the scheduled request", async () =>
      snapshotPosts.find((entry) => entry.stream === "hourly" && entry.body.id.startsWith("scheduled-")),
    );
    expect(post.body.tables).toEqual(["public.orders"]);
    const due = Number(post.body.id.slice("scheduled-".length)) * 60_000;
    expect(new Date(due).getUTCMinutes()).toBe(0);
    expect(
      (await client.list(jobType, namespace, { labelSelector: "app.kubernetes.io/instance=hourly" })).items,
    ).toEqual([]);
    await waitFor(
      "the schedule advanced",
      async () => (await get("hourly"))?.status?.lastScheduleTime === new Date(due).toISOString(),
    );
  });

  it("lets a stream whose database is unreachable go after the bounded retry, naming what is left behind", async () => {
    await client.create(cdcType, stream("nodb", { port: 1 }));
    await waitFor("Degraded for the unreachable database", async () => {
      const found = await get("nodb");
      return condition(found, "Degraded")?.reason === "DatabaseUnavailable" ? found : undefined;
    });
    await client.delete(cdcType, namespace, "nodb");
    await waitFor("the stream gone", async () => (await get("nodb")) === undefined, { timeoutMs: 60_000 });
    const left = (await eventsFor("nodb")).find((event) => event.reason === "SourceStateLeftBehind");
    expect(left?.note).toContain("LEFT BEHIND");
    expect(left?.note).toContain("pg_drop_replication_slot");
  });
});
