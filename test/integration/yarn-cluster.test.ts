/**
 * A resource manager and three node managers as real processes on loopback: YARN's REST shapes,
 * the shipped jobs end to end, every refusal with its reason, a node manager killed with -9 and a
 * resource manager restarted under a running application.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parquetReadObjects } from "hyparquet";
import { parquetWriteBuffer } from "hyparquet-writer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Job } from "../../src/dataplane/yarn/jobs.js";
import { type CapacitySchedulerInfo, queuesByPath } from "../../src/dataplane/yarn/scheduler.js";
import { killGroup, YarnCluster } from "./yarn-harness.js";

const cluster = new YarnCluster({
  queues: [
    { path: "root", capacity: 100 },
    { path: "root.default", capacity: 60, maximumCapacity: 100, userLimitFactor: 10 },
    { path: "root.closed", capacity: 20, state: "STOPPED" },
    {
      path: "root.limited",
      capacity: 20,
      maxApplications: 2,
      minimumUserLimitPercent: 50,
      acl: { submitApplications: { users: ["alice", "bob"], groups: [] } },
    },
  ],
});

const shell = (command: string, numContainers: number, containerMemory = 256): Job => ({
  type: "shell",
  command,
  numContainers,
  containerMemory,
});

beforeAll(async () => {
  await cluster.start();
}, 180_000);

afterAll(async () => {
  await cluster.stop();
}, 60_000);

describe("resource manager and node managers on loopback", () => {
  it("answers YARN's REST shapes: info, nodes, scheduler, metrics", async () => {
    const info = await cluster.get<{ clusterInfo: { state: string; haState: string } }>(
      "/ws/v1/cluster/info",
    );
    expect(info.clusterInfo).toMatchObject({ state: "STARTED", haState: "ACTIVE" });
    const nodes = await cluster.nodes();
    expect(nodes).toHaveLength(3);
    expect(nodes[0]).toMatchObject({
      state: "RUNNING",
      availMemoryMB: expect.any(Number),
      nodeHTTPAddress: expect.any(String),
    });
    const scheduler = await cluster.get<{ scheduler: { schedulerInfo: CapacitySchedulerInfo } }>(
      "/ws/v1/cluster/scheduler",
    );
    const queues = queuesByPath(scheduler.scheduler.schedulerInfo);
    expect(queues.get("root.default")).toMatchObject({
      capacity: 60,
      absoluteCapacity: 60,
      state: "RUNNING",
    });
    expect(queues.get("root.closed")).toMatchObject({ state: "STOPPED" });
    const metrics = await cluster.get<{ clusterMetrics: { totalMB: number; activeNodes: number } }>(
      "/ws/v1/cluster/metrics",
    );
    expect(metrics.clusterMetrics).toMatchObject({ totalMB: 3 * 2048, activeNodes: 3 });
  });

  it("runs a shell application through NEW → ACCEPTED → RUNNING → FINISHED and serves its containers' logs", async () => {
    const id = await cluster.client.submit({ job: shell("echo hello from $CONTAINER_ID", 3), amMemory: 512 });
    const app = await cluster.client.waitForFinal(id);
    expect(app).toMatchObject({
      state: "FINISHED",
      finalStatus: "SUCCEEDED",
      user: "alice",
      queue: "root.default",
    });
    // The master's own log, through the node manager's log URL.
    const amLog = await cluster.client.logs(id, "AppMaster.stdout");
    expect(amLog).toContain("application master registered");
    const nodes = await cluster.nodes();
    let found = 0;
    // Each task container's stdout holds its own id.
    for (const node of nodes)
      for (let c = 2; c <= 4; c++) {
        const containerId = `${id.replace("application_", "container_")}_01_${String(c).padStart(6, "0")}`;
        const response = await fetch(`http://${node.id}/ws/v1/node/containers/${containerId}/logs/stdout`);
        if (response.ok) {
          expect(await response.text()).toContain(`hello from ${containerId}`);
          found++;
        }
      }
    expect(found).toBe(3);
  });

  it("the shipped map-and-combine job gives the answer computed directly over the same Parquet files", async () => {
    const input = join(cluster.dir, "clicks");
    mkdirSync(join(input, "dt=2026-12-06"), { recursive: true });
    const countries = ["de", "fr", "us", "jp", "br"];
    for (let f = 0; f < 4; f++) {
      const n = 500 + f * 37;
      const country = Array.from({ length: n }, (_, i) => countries[(i * 7 + f) % countries.length]!);
      const duration = Array.from({ length: n }, (_, i) => (i * 13 + f * 5) % 1000);
      const buffer = parquetWriteBuffer({
        columnData: [
          { name: "country", data: country, type: "STRING" },
          { name: "duration", data: duration, type: "INT32" },
        ],
      });
      writeFileSync(join(input, "dt=2026-12-06", `part-${f}.parquet`), Buffer.from(buffer));
    }
    const output = join(cluster.dir, "out", "by-country.json");
    const id = await cluster.client.submit({
      job: { type: "mapcombine", input, groupBy: "country", sum: "duration", output, containerMemory: 512 },
      amMemory: 512,
    });
    const app = await cluster.client.waitForFinal(id);
    expect(app.finalStatus, app.diagnostics).toBe("SUCCEEDED");
    const answer = JSON.parse(readFileSync(output, "utf8")) as {
      groups: Array<{ key: string; count: number; sum: number }>;
      rows: number;
    };
    // Directly, in this process, over the same files.
    const direct = new Map<string, { count: number; sum: number }>();
    for (let f = 0; f < 4; f++) {
      const bytes = readFileSync(join(input, "dt=2026-12-06", `part-${f}.parquet`));
      const rows = (await parquetReadObjects({
        file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length),
      })) as Array<{ country: string; duration: number }>;
      for (const row of rows) {
        const entry = direct.get(row.country) ?? { count: 0, sum: 0 };
        entry.count++;
        entry.sum += row.duration;
        direct.set(row.country, entry);
      }
    }
    expect(answer.groups).toEqual(
      [...direct].sort(([a], [b]) => a.localeCompare(b)).map(([key, v]) => ({ key, ...v })),
    );
    expect(answer.rows).toBe([...direct.values()].reduce((s, v) => s + v.count, 0));
  });

  it("refuses a request larger than any node, naming the sizes", async () => {
    const { "application-id": id } = await fetch(
      `http://${cluster.rmAddress}/ws/v1/cluster/apps/new-application`,
      { method: "POST" },
    ).then((r) => r.json() as Promise<{ "application-id": string }>);
    const response = await fetch(`http://${cluster.rmAddress}/ws/v1/cluster/apps?user.name=alice`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        "application-id": id,
        queue: "default",
        resource: { memory: 3072, vCores: 1 },
        "am-container-spec": { commands: { command: "true" } },
      }),
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { RemoteException: { exception: string; message: string } };
    expect(body.RemoteException.exception).toBe("InvalidResourceRequestException");
    expect(body.RemoteException.message).toMatch(
      /<memory:3072, vCores:1> is larger than any node \(the largest offers <memory:2048/,
    );
  });

  it("rejects unknown queues, STOPPED queues, users without the ACL and users over their limit, with the reason", async () => {
    const rejected = async (queue: string, user = "alice") => {
      const client = cluster.clientFor(user);
      const id = await client.submit({ job: shell("sleep 600", 1), queue, amMemory: 256 });
      return client.app(id);
    };
    expect(await rejected("nope")).toMatchObject({
      state: "FAILED",
      diagnostics: expect.stringMatching(/queue 'nope' does not exist/),
    });
    expect(await rejected("closed")).toMatchObject({
      state: "FAILED",
      diagnostics: expect.stringMatching(/'root.closed' is STOPPED/),
    });
    expect(await rejected("limited", "mallory")).toMatchObject({
      state: "FAILED",
      diagnostics: expect.stringMatching(/user 'mallory' may not submit/),
    });
    // maxApplications 2 × minimumUserLimitPercent 50 % × userLimitFactor 1 → one application per user.
    const first = await cluster.client.submit({
      job: shell("sleep 600", 1),
      queue: "limited",
      amMemory: 256,
    });
    expect((await cluster.client.app(first)).state).not.toBe("FAILED");
    expect(await rejected("limited")).toMatchObject({
      state: "FAILED",
      diagnostics: expect.stringMatching(/user 'alice' already has 1 applications in queue 'root.limited'/),
    });
    // Killing it frees the user's slot; the kill itself is YARN's PUT .../state.
    expect(await cluster.client.kill(first)).toBe("KILLED");
    expect(await cluster.client.app(first)).toMatchObject({ state: "KILLED", finalStatus: "KILLED" });
  });

  it("a master that keeps failing is retried up to max-app-attempts, then the application FAILS saying why", async () => {
    const { "application-id": id } = await fetch(
      `http://${cluster.rmAddress}/ws/v1/cluster/apps/new-application`,
      {
        method: "POST",
      },
    ).then((r) => r.json() as Promise<{ "application-id": string }>);
    const response = await fetch(`http://${cluster.rmAddress}/ws/v1/cluster/apps?user.name=alice`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        "application-id": id,
        queue: "default",
        "max-app-attempts": 2,
        resource: { memory: 256, vCores: 1 },
        "am-container-spec": { commands: { command: "echo master giving up >&2; exit 3" } },
      }),
    });
    expect(response.status).toBe(202);
    const app = await cluster.client.waitForFinal(id);
    expect(app.state).toBe("FAILED");
    expect(app.diagnostics).toMatch(
      /failed 2 times due to AM Container for appattempt_\d+_\d+_000002 exited with exitCode: 3/,
    );
    expect(app.diagnostics).toContain("master giving up");
    const attempts = await cluster.get<{ appAttempts: { appAttempt: unknown[] } }>(
      `/ws/v1/cluster/apps/${id}/appattempts`,
    );
    expect(attempts.appAttempts.appAttempt).toHaveLength(2);
  });

  it("a container over its memory is killed with YARN's diagnostic and the application fails saying so", async () => {
    const id = await cluster.client.submit({
      job: shell(
        `${process.execPath} -e "const a=[];setInterval(()=>a.push(Buffer.alloc(2e7,1)),20)"`,
        1,
        128,
      ),
      amMemory: 512,
    });
    const app = await cluster.client.waitForFinal(id);
    expect(app.finalStatus).toBe("FAILED");
    expect(app.diagnostics).toMatch(
      /is running beyond physical memory limits\. Current usage: [\d.]+ MB of 128\.0 MB physical memory used/,
    );
    expect(app.diagnostics).toContain("exit status -104");
  });

  // The node's expiry (15 s) is part of this test's time.
  it("kill -9 of a node manager: its containers are reported lost and the master asks for them again", {
    timeout: 240_000,
  }, async () => {
    // Tasks long enough to be running when their node dies.
    const id = await cluster.client.submit({ job: shell("sleep 10", 9), amMemory: 512 });
    // The master's node stays; another node with running task containers is killed.
    let victim = -1;
    await cluster.waitFor(async () => {
      const attempts = await cluster.get<{ appAttempts: { appAttempt: Array<{ nodeId: string }> } }>(
        `/ws/v1/cluster/apps/${id}/appattempts`,
      );
      const amNode = attempts.appAttempts.appAttempt.at(-1)?.nodeId;
      if (!amNode) return false;
      // Task containers started on a node (their processes run), not only allocated there.
      for (const [index, nm] of cluster.nms.entries()) {
        const nodeId = `127.0.0.1:${nm.ready.port}`;
        if (nodeId === amNode || nm.child.exitCode !== null) continue;
        const listing = (await fetch(`http://${nodeId}/ws/v1/node/containers`).then((r) => r.json())) as {
          containers: { container: Array<{ appId: string; state: string }> };
        };
        if (listing.containers.container.some((c) => c.appId === id && c.state === "RUNNING")) {
          victim = index;
          return true;
        }
      }
      return false;
    }, "task containers on a node without the master");
    const victimId = `127.0.0.1:${cluster.nms[victim]!.ready.port}`;
    await killGroup(cluster.nms[victim]!);
    await cluster.waitFor(
      async () => (await cluster.nodes()).some((n) => n.id === victimId && n.state === "LOST"),
      "the node reported LOST",
    );
    const app = await cluster.client.waitForFinal(id);
    expect(app.finalStatus, app.diagnostics).toBe("SUCCEEDED");
    const amLog = await cluster.client.logs(id, "AppMaster.stdout");
    expect(amLog).toMatch(/container lost: asking for another/);
    expect(amLog).toContain("Container released on a *lost* node");
    // The cluster carries on with two node managers.
    cluster.nms[victim] = await cluster.startNodeManager(10 + victim);
    await cluster.waitFor(
      async () => (await cluster.nodes()).filter((n) => n.state === "RUNNING").length === 3,
      "a replacement node manager",
    );
  });

  it("a restart of the resource manager: running applications keep going and finish", async () => {
    const id = await cluster.client.submit({ job: shell("sleep 6", 4), amMemory: 512 });
    await cluster.waitFor(async () => {
      const app = await cluster.client.app(id);
      return app.state === "RUNNING" && app.runningContainers >= 3;
    }, "the application running its containers");
    const before = await cluster.get<{ appAttempts: { appAttempt: Array<{ containerId: string }> } }>(
      `/ws/v1/cluster/apps/${id}/appattempts`,
    );
    await cluster.restartResourceManager();
    const app = await cluster.client.waitForFinal(id);
    expect(app.finalStatus, app.diagnostics).toBe("SUCCEEDED");
    // The same master, in the same container, finished it: no new attempt was started.
    const after = await cluster.get<{ appAttempts: { appAttempt: Array<{ containerId: string }> } }>(
      `/ws/v1/cluster/apps/${id}/appattempts`,
    );
    expect(after.appAttempts.appAttempt).toHaveLength(1);
    expect(after.appAttempts.appAttempt[0]!.containerId).toBe(before.appAttempts.appAttempt[0]!.containerId);
    const info = await cluster.get<{ clusterInfo: { epoch: number } }>("/ws/v1/cluster/info");
    expect(info.clusterInfo.epoch).toBe(1);
  });
});
