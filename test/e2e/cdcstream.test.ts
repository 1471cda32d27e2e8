/**
 * A CDCStream on a real node: `helm install`, a database of the test environment's PostgreSQL
 * (reached by the pod at the node's address), a credentials Secret and a CDCStream applied with
 * kubectl. The connector pod runs the image, snapshots the table, streams inserts, updates and
 * deletes into Kafka as Debezium change events, reports its slot in status, and with
 * deletionPolicy Delete leaves no replication slot behind.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabase, fold, readChanges, type TestDatabase, waitUntil } from "../support/cdc.js";
import { uniqueName } from "../support/env.js";
import {
  e2eCluster,
  installChart,
  kubectl,
  kubectlJson,
  pods,
  uninstallChart,
  uniqueRelease,
} from "./cluster.js";

const release = uniqueRelease("tributary-cdc");
const operatorNamespace = uniqueName("e2e-cdc-operator");
const namespace = uniqueName("e2e-cdc");
const topicPrefix = namespace.replace(/-/g, "_");
let database: TestDatabase;

const install = { release, namespace: operatorNamespace, watch: namespace };

beforeAll(async () => {
  database = await createDatabase("e2e_cdc");
  await database.query(
    "CREATE TABLE public.orders (id serial PRIMARY KEY, item text NOT NULL, qty int, placed timestamptz NOT NULL DEFAULT now())",
  );
  await database.query("INSERT INTO public.orders (item, qty) VALUES ('kettle', 1), ('mug', 4), ('tea', 2)");
  await installChart(install);
}, 600_000);

afterAll(async () => {
  await uninstallChart(install);
  await database?.drop();
}, 600_000);

describe("a CDCStream on the node", () => {
  it("snapshots, streams changes as Debezium events, reports its slot, and drops it on delete", async () => {
    const nodeIp = e2eCluster().podKafkaBrokers[0]!.split(":")[0]!;
    await kubectl(
      ["apply", "-n", namespace, "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "shop-db-replication" },
        stringData: { username: database.user, password: database.password },
      }),
    );
    await kubectl(
      ["apply", "--server-side", "-n", namespace, "-f", "-"],
      JSON.stringify({
        apiVersion: "tributary.dev/v1alpha1",
        kind: "CDCStream",
        metadata: { name: "shop-orders" },
        spec: {
          source: {
            postgres: {
              host: nodeIp,
              port: database.port,
              database: database.name,
              credentialsSecret: { name: "shop-db-replication" },
              sslMode: "disable",
              tables: { include: ["public.orders"] },
            },
          },
          target: { topicPrefix, partitions: 1, replicationFactor: 3, format: "json" },
          connector: {
            resources: { requests: { cpu: "20m", memory: "96Mi" }, limits: { memory: "512Mi" } },
          },
          deletionPolicy: "Delete",
        },
      }),
    );
    try {
      await kubectl([
        "wait",
        "-n",
        namespace,
        "cdcstream/shop-orders",
        "--for=condition=Ready",
        "--timeout=300s",
      ]);
    } catch (error) {
      const seen = await pods(namespace, "").catch(() => []);
      const status = await kubectlJson(["get", "cdcstream", "shop-orders", "-n", namespace]).catch(
        () => ({}),
      );
      throw new Error(
        `${(error as Error).message}\n${JSON.stringify((status as { status?: unknown }).status)}\n${seen
          .map(
            (pod) =>
              `${pod.metadata.name}: ${JSON.stringify(pod.status?.containerStatuses?.map((c) => c.state))}`,
          )
          .join("\n")}`,
      );
    }

    await database.query("INSERT INTO public.orders (item, qty) VALUES ('teapot', 1)");
    await database.query("UPDATE public.orders SET qty = 6 WHERE item = 'mug'");
    await database.query("DELETE FROM public.orders WHERE item = 'tea'");

    const topic = `${topicPrefix}.public.orders`;
    const events = await waitUntil(
      "the snapshot and the three changes in Kafka",
      async () => {
        const read = await readChanges(topic);
        const ops = read.filter((event) => event.value).map((event) => event.value!.op);
        return ops.filter((op) => op === "r").length === 3 && ops.includes("d") ? read : undefined;
      },
      180_000,
    );
    const ops = events.filter((event) => event.value).map((event) => event.value!.op);
    expect(ops).toEqual(["r", "r", "r", "c", "u", "d"]);
    const update = events.find((event) => event.value?.op === "u")!;
    expect(update.key).toEqual({ id: 2 });
    expect(update.value!.before).toMatchObject({ id: 2, item: "mug", qty: 4 });
    expect(update.value!.after).toMatchObject({ id: 2, item: "mug", qty: 6 });
    expect(update.value!.source).toMatchObject({
      connector: "postgresql",
      db: database.name,
      schema: "public",
      table: "orders",
    });
    // Folding the topic gives the table as it is now.
    const folded = fold(events, (row) => String(row.id));
    const rows = await database.query("SELECT id, item, qty FROM public.orders ORDER BY id");
    expect([...folded.values()].map(({ id, item, qty }) => ({ id, item, qty }))).toEqual(rows.rows);

    const stream = await kubectlJson<{ status: { slotName?: string; confirmedFlushLsn?: string } }>([
      "get",
      "cdcstream",
      "shop-orders",
      "-n",
      namespace,
    ]);
    expect(stream.status.slotName).toMatch(/^tributary_/);
    const slot = stream.status.slotName!;
    const held = await database.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1", [
      slot,
    ]);
    expect(held.rowCount).toBe(1);

    await kubectl(["delete", "cdcstream", "shop-orders", "-n", namespace, "--wait=true", "--timeout=240s"]);
    const left = await database.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1", [
      slot,
    ]);
    expect(left.rowCount).toBe(0);
  });
});
