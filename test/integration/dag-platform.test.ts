/**
 * A Dag's built-in platform tasks against the real parts they drive: a resource manager and node
 * managers (yarnApplication), a CDC connector on the test PostgreSQL and Kafka (cdcSnapshot), a
 * BlockPool's name node and data node (waitForFile). The scheduler and the worker run in this
 * process on the test Redis.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cdcTestResources, waitUntil } from "../support/cdc.js";
import { uniqueName } from "../support/env.js";
import { type DagHarness, dagSpec, DagHarness as Harness, instance, states } from "./dag-cluster.js";
import { StorageCluster } from "./storage-cluster.js";
import { TRIBUTARY_COMMAND, YarnCluster } from "./yarn-harness.js";

const harnesses: DagHarness[] = [];
afterAll(async () => {
  for (const harness of harnesses) await harness.stop();
});

async function start(spec: Record<string, unknown>, platform: DagHarness["options"]["platform"]) {
  const harness = new Harness({ spec: dagSpec(spec), backend: "redis", platform });
  harnesses.push(harness);
  return harness.start();
}

describe("Dag platform task: yarnApplication", () => {
  const yarn = new YarnCluster({
    queues: [
      { path: "root", capacity: 100 },
      { path: "root.etl", capacity: 100, maximumCapacity: 100, userLimitFactor: 10 },
    ],
    nodeManagers: 1,
  });
  beforeAll(() => yarn.start(), 120_000);
  afterAll(() => yarn.stop());

  it("runs an application to SUCCEEDED, fails one that fails, and kills one whose task times out", async () => {
    const app = (command: string, extra: Record<string, unknown> = {}) => ({
      platform: { yarnApplication: { queue: "etl", command: ["sh", "-c", command], containerMemoryMb: 128 } },
      ...extra,
    });
    const harness = await start(
      {
        tasks: [
          { id: "succeeds", ...app("echo counted > /dev/null") },
          { id: "fails", ...app("exit 3") },
          { id: "hangs", ...app("sleep 600", { executionTimeoutSeconds: 5 }) },
          { id: "nowhere", platform: { yarnApplication: { queue: "missing", command: ["true"] } } },
        ],
      },
      { resourceManagers: { etl: yarn.rmAddress }, tributaryCommand: TRIBUTARY_COMMAND, dag: "nightly" },
    );
    const record = await harness.waitForRun(await harness.trigger(), 240_000);
    expect(states(record)).toEqual({
      succeeds: "success",
      fails: "failed",
      hangs: "failed",
      nowhere: "failed",
    });

    const results = await harness.store.results(record.run.id, ["succeeds"]);
    const succeeded = JSON.parse(results.succeeds!) as { applicationId: string; finalStatus: string };
    expect(succeeded.finalStatus).toBe("SUCCEEDED");
    const apps = await yarn.clientFor("nightly").apps({ queue: "etl" });
    const byTask = (task: string) => apps.find((candidate) => candidate.name.startsWith(`nightly.${task}.`))!;
    expect(byTask("succeeds")).toMatchObject({
      id: succeeded.applicationId,
      user: "nightly",
      finalStatus: "SUCCEEDED",
    });

    expect(instance(record, "fails").error).toMatch(/ended FINISHED\/FAILED|ended FAILED/);
    expect(byTask("fails").finalStatus).toBe("FAILED");
    // The try's timeout ended the application with it.
    expect(instance(record, "hangs").error).toMatch(/timed out|timeout/i);
    await waitUntil("the timed-out application killed", async () =>
      (await yarn.clientFor("nightly").app(byTask("hangs").id)).state === "KILLED" ? true : undefined,
    );
    expect(instance(record, "nowhere").error).toMatch(/YarnQueue missing was not found/);
  }, 300_000);
});

describe("Dag platform task: cdcSnapshot", () => {
  const { database, connector } = cdcTestResources();

  it("asks the connector for a snapshot of the stream's tables and succeeds once it completes", async () => {
    const db = await database("dag_cdc");
    await db.query("CREATE TABLE orders (id int PRIMARY KEY, amount int)");
    await db.query("INSERT INTO orders SELECT g, g FROM generate_series(1, 500) g");
    const running = await connector(db, { SNAPSHOT_MODE: "never" });
    await waitUntil("connector streaming", async () => (await running.status()).state === "streaming");
    const address = `127.0.0.1:${running.port}`;
    const harness = await start(
      {
        tasks: [
          { id: "resync", platform: { cdcSnapshot: { cdcStream: "orders-stream" } } },
          {
            id: "ghost",
            platform: { cdcSnapshot: { cdcStream: "orders-stream", tables: ["public.ghost"] } },
          },
        ],
      },
      { cdcStreamAddress: (stream) => (stream === "orders-stream" ? address : "127.0.0.1:1"), dag: "sync" },
    );
    const record = await harness.waitForRun(await harness.trigger(), 180_000);
    expect(states(record)).toEqual({ resync: "success", ghost: "failed" });
    const result = JSON.parse((await harness.store.results(record.run.id, ["resync"])).resync!) as {
      id: string;
      rows: number;
    };
    expect(result.rows).toBe(500);
    const request = (await running.status()).snapshotRequests.find((candidate) => candidate.id === result.id);
    expect(request).toMatchObject({ state: "Completed" });
    expect(instance(record, "ghost").error).toMatch(/not captured/);
  }, 240_000);
});

describe("Dag platform task: waitForFile", () => {
  let pool: StorageCluster;
  beforeAll(async () => {
    pool = await StorageCluster.start({ dataNodes: 1 });
  }, 120_000);
  afterAll(() => pool?.stop());

  it("waits until the file exists in the BlockPool", async () => {
    const path = `/landing/${uniqueName("day")}/_SUCCESS`;
    const harness = await start(
      {
        tasks: [
          { id: "sensor", platform: { waitForFile: { blockPool: "lake", path, pollSeconds: 1 } } },
          { id: "after", command: ["true"], dependsOn: ["sensor"] },
        ],
      },
      { blockPoolAddress: () => pool.webhdfsAddresses()[0]! },
    );
    const runId = await harness.trigger();
    // The sensor has looked and not found it before the file is written.
    await waitUntil("the sensor polling", async () => {
      const record = await harness.run(runId);
      return record?.instances.get("sensor")?.state === "running" ? true : undefined;
    });
    expect((await harness.run(runId))!.run.state).toBe("running");
    await pool.client("tester").create(path, Buffer.from(""), { replication: 1 });
    const record = await harness.waitForRun(runId, 120_000);
    expect(states(record)).toEqual({ sensor: "success", after: "success" });
  }, 180_000);
});
