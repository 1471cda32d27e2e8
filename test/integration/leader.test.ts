/**
 * Leader election between real operator processes (`tributary operator`, started as children
 * of this test): one leads and reconciles; when it is stopped (SIGTERM: it releases the lease)
 * or killed (SIGKILL: the lease must expire), another takes over and reconciles. The lease
 * timings are client-go's 15s/10s/2s: a leader that is slow for a few seconds on a busy machine
 * keeps leading, as it would in a cluster.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dagDefinition } from "../../src/api/dag.js";
import { resourceType } from "../../src/controllers/common.js";
import { builtin } from "../../src/operator/kube.js";
import { testEnv, uniqueName } from "../support/env.js";
import {
  applyCrds,
  createNamespace,
  deleteNamespace,
  deleteTributaryResources,
  isSettled,
  testClient,
  waitFor,
} from "./operator-harness.js";

const client = testClient();
const namespace = uniqueName("op-lease");
const leaseName = "tributary-operator";
const dags = resourceType(dagDefinition);
const leaseSeconds = { duration: 15, renewDeadline: 10, retryPeriod: 2 };

interface OperatorProcess {
  child: ChildProcess;
  identity: Promise<string>;
  metricsPort: Promise<number>;
  exited: Promise<number | null>;
  logs: string[];
}

const started: OperatorProcess[] = [];

function startOperator(): OperatorProcess {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "src/cli.ts",
      "operator",
      "--namespaces",
      namespace,
      "--image",
      "registry.example/tributary:test",
      "--lease-namespace",
      namespace,
      "--lease-name",
      leaseName,
      "--lease-duration",
      String(leaseSeconds.duration),
      "--renew-deadline",
      String(leaseSeconds.renewDeadline),
      "--retry-period",
      String(leaseSeconds.retryPeriod),
      "--health-port",
      "0",
      "--metrics-port",
      "0",
    ],
    {
      env: {
        ...process.env,
        KUBECONFIG: testEnv().kubeconfig,
        TRIBUTARY_LOG_LEVEL: "info",
        TRIBUTARY_DAG_REDIS_URL: testEnv().redisUrl,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const logs: string[] = [];
  let resolveMetricsPort: (port: number) => void = () => undefined;
  const metricsPort = new Promise<number>((resolve) => {
    resolveMetricsPort = resolve;
  });
  const identity = new Promise<string>((resolve) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; identity?: string; metricsPort?: number };
        if (entry.msg === "starting the operator" && entry.identity) resolve(entry.identity);
        if (entry.msg === "serving probes and metrics" && entry.metricsPort)
          resolveMetricsPort(entry.metricsPort);
      } catch {
        // not a log line
      }
    });
  });
  createInterface({ input: child.stderr! }).on("line", (line) => logs.push(line));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const operator = { child, identity, metricsPort, exited, logs };
  started.push(operator);
  return operator;
}

async function leaseHolder(): Promise<string | undefined> {
  const lease = await client.find(builtin.lease, namespace, leaseName);
  return ((lease?.spec ?? {}) as { holderIdentity?: string }).holderIdentity ?? undefined;
}

/**
 * What a process's own /metrics say: whether it leads (`tributary_leader`) and how many Dag
 * reconciles it has run (`tributary_reconcile_total{kind="Dag"}`, every result).
 */
async function scrape(operator: OperatorProcess): Promise<{ leader: number; dagReconciles: number }> {
  const port = await operator.metricsPort;
  const text = await (
    await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) })
  ).text();
  let leader = Number.NaN;
  let dagReconciles = 0;
  for (const line of text.split("\n")) {
    const gauge = /^tributary_leader (\S+)$/.exec(line);
    if (gauge) leader = Number(gauge[1]);
    const counter = /^tributary_reconcile_total\{([^}]*)\} (\S+)$/.exec(line);
    if (counter?.[1]?.split(",").includes('kind="Dag"')) dagReconciles += Number(counter[2]);
  }
  return { leader, dagReconciles };
}

/** Creates a Dag and waits until the leader has reconciled it: accepted, as a valid Dag is. */
async function createDagAndWaitAccepted(name: string): Promise<void> {
  await client.create(dags, {
    apiVersion: dagDefinition.apiVersion,
    kind: "Dag",
    metadata: { name, namespace },
    spec: { tasks: [{ id: "only", command: ["true"] }] },
  });
  await waitFor(`${name} reconciled`, async () => isSettled(await client.get(dags, namespace, name)));
}

beforeAll(async () => {
  await applyCrds(client);
  await createNamespace(client, namespace);
});

afterAll(async () => {
  // The running leader releases the finalizers before it is stopped.
  await deleteTributaryResources(client, namespace);
  for (const operator of started) {
    if (operator.child.exitCode === null && operator.child.signalCode === null)
      operator.child.kill("SIGKILL");
    await operator.exited;
  }
  await deleteNamespace(client, namespace);
  client.close();
});

// Three operator processes start one after another, and a killed leader's lease must run out.
describe("leader election", { timeout: 300_000 }, () => {
  it("one of two processes leads; a stopped leader hands over, a killed one is replaced after its lease expires", async () => {
    const first = startOperator();
    const second = startOperator();
    const identities = await Promise.all([first.identity, second.identity]);
    const leaderIdentity = await waitFor("a leader", async () => {
      const holder = await leaseHolder();
      return holder && identities.includes(holder) ? holder : undefined;
    });
    const [leader, standby] = leaderIdentity === identities[0] ? [first, second] : [second, first];
    await createDagAndWaitAccepted("under-first-leader");
    // Only the leader reconciles: its own metrics say it leads and count the Dag's reconciles;
    // the standby's (up and serving: it was scraped) say it does not lead and reconciled nothing.
    const leaderMetrics = await scrape(leader);
    expect(leaderMetrics.leader).toBe(1);
    expect(leaderMetrics.dagReconciles).toBeGreaterThan(0);
    expect(await scrape(standby)).toEqual({ leader: 0, dagReconciles: 0 });

    // Graceful: SIGTERM finishes in-flight work and releases the lease.
    leader.child.kill("SIGTERM");
    expect(await leader.exited).toBe(0);
    expect(leader.logs.some((line) => line.includes("released the lease"))).toBe(true);
    const standbyIdentity = await standby.identity;
    await waitFor("standby took over", async () => (await leaseHolder()) === standbyIdentity, {
      timeoutMs: 30_000,
    });
    await createDagAndWaitAccepted("under-second-leader");
    // The new leader's metrics now say it leads, and it reconciled the Dags itself.
    const secondMetrics = await scrape(standby);
    expect(secondMetrics.leader).toBe(1);
    expect(secondMetrics.dagReconciles).toBeGreaterThan(0);

    // Abrupt: a third process waits while the leader is killed without releasing anything;
    // it takes over once the lease expires.
    const third = startOperator();
    const thirdIdentity = await third.identity;
    await waitFor("third is up and synced", async () =>
      third.logs.some((line) => line.includes("serving probes")),
    );
    // Synced but not leading: it has reconciled none of the Dags already there.
    expect(await scrape(third)).toEqual({ leader: 0, dagReconciles: 0 });
    const killedAt = Date.now();
    standby.child.kill("SIGKILL");
    await standby.exited;
    await waitFor(
      "third took over after the lease expired",
      async () => (await leaseHolder()) === thirdIdentity,
      {
        timeoutMs: 90_000,
      },
    );
    // Reported, not asserted: wall-clock times vary on a shared machine.
    process.stdout.write(
      `takeover after SIGKILL: ${Date.now() - killedAt} ms (lease duration ${leaseSeconds.duration * 1000} ms)\n`,
    );
    await createDagAndWaitAccepted("under-third-leader");
    const thirdMetrics = await scrape(third);
    expect(thirdMetrics.leader).toBe(1);
    expect(thirdMetrics.dagReconciles).toBeGreaterThan(0);
  });
});
