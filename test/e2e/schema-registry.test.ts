/**
 * The chart's schema registry on a real node: `helm install` with the cluster's Kafka brings up
 * two ready registry pods behind a Service on port 8081 in a namespace that enforces the
 * `restricted` Pod Security Standard; a schema registered through the Service is served by each
 * pod, and the Service keeps answering while one pod is deleted.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../integration/operator-harness.js";
import { uniqueName } from "../support/env.js";
import {
  installChart,
  isReady,
  kubectl,
  pods,
  portForward,
  uninstallChart,
  uniqueRelease,
} from "./cluster.js";

const release = uniqueRelease("registry");
const namespace = uniqueName("e2e-registry");
const selector = `app.kubernetes.io/component=schema-registry,app.kubernetes.io/instance=${release}`;
const service = `service/${release}-tributary-schema-registry`;
const CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";

const install = {
  release,
  namespace,
  watch: namespace,
  // This release is for the registry; one operator replica keeps the node's load down.
  set: ["replicas=1", "schemaRegistry.enabled=true", "schemaRegistry.resources.requests.cpu=20m"],
};

beforeAll(() => installChart(install), 600_000);

afterAll(() => uninstallChart(install), 600_000);

describe("the schema registry installed with helm", () => {
  it("runs two ready replicas that agree, behind a Service on port 8081 that survives losing one", async () => {
    const ready = await waitFor(
      "two ready schema-registry pods",
      async () => {
        const list = (await pods(namespace, selector)).filter(isReady);
        return list.length === 2 ? list : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    );
    const schema = JSON.stringify({
      type: "record",
      name: "E2e",
      fields: [{ name: "at", type: { type: "long", logicalType: "timestamp-millis" } }],
    });
    const forward = await portForward(namespace, service, 8081);
    let id: number;
    try {
      const response = await fetch(`http://127.0.0.1:${forward.port}/subjects/e2e-value/versions`, {
        method: "POST",
        headers: { "content-type": CONTENT_TYPE },
        body: JSON.stringify({ schema }),
      });
      expect(response.status).toBe(200);
      id = ((await response.json()) as { id: number }).id;
    } finally {
      forward.close();
    }
    // Each pod serves it, whichever one took the write.
    for (const pod of ready) {
      const direct = await portForward(namespace, `pod/${pod.metadata.name}`, 8081);
      try {
        const answer = await fetch(`http://127.0.0.1:${direct.port}/schemas/ids/${id}`);
        expect(answer.status).toBe(200);
        expect(JSON.parse(((await answer.json()) as { schema: string }).schema)).toMatchObject({
          fields: [{ name: "at", type: { type: "long", logicalType: "timestamp-millis" } }],
        });
      } finally {
        direct.close();
      }
    }
    await kubectl(["delete", "pod", ready[0]!.metadata.name, "-n", namespace, "--wait=false"]);
    await waitFor(
      "the Service to answer with one pod gone",
      async () => {
        const again = await portForward(namespace, service, 8081);
        try {
          const answer = await fetch(`http://127.0.0.1:${again.port}/subjects/e2e-value/versions/latest`);
          return answer.ok;
        } finally {
          again.close();
        }
      },
      { timeoutMs: 120_000, intervalMs: 2000 },
    );
  });
});
