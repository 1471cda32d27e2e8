/**
 * The VideoCollector controller against the test environment's API server and Kafka. Pods stay
 * Pending (the namespace's node selector matches no node): the test plays the kubelet's part, and
 * runs the pods' process, `tributary video`, in-process with the pod's name and the ConfigMap's
 * sources document, as the kubelet would mount it; the controller reads its /status there.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import kafkajs from "kafkajs";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customResourceDefinitions } from "../../src/api/crds.js";
import { videoCollectorDefinition } from "../../src/api/videocollector.js";
import { resourceType } from "../../src/controllers/common.js";
import { createVideoCollectorController } from "../../src/controllers/videocollector/reconcile.js";
import { videoConfigSchema } from "../../src/dataplane/video/config.js";
import { type RunningVideoCollector, startVideoCollector } from "../../src/dataplane/video/main.js";
import { builtin, type KubeObject } from "../../src/operator/kube.js";
import type { Operator } from "../../src/operator/operator.js";
import { testEnv, uniqueName } from "../support/env.js";
import { ffmpegPath, MjpegCamera, until } from "../support/video.js";
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

const logger = pino({ level: process.env.TRIBUTARY_LOG_LEVEL ?? "silent" });
const client = testClient();
const namespace = uniqueName("video-op");
const collectors = resourceType(videoCollectorDefinition);
const brokers = testEnv().kafkaBrokers;
const topic = uniqueName("video-op-frames");

describe("VideoCollector through the operator", () => {
  let operator: Operator;
  let camera: MjpegCamera;
  let directory: string;
  const pods = new Map<number, RunningVideoCollector>();

  beforeAll(async () => {
    await applyCrds(client);
    await createNamespace(client, namespace);
    camera = await MjpegCamera.start({ size: "160x120", rate: 5 });
    directory = await mkdtemp(join(tmpdir(), "tributary-video-op-"));
    operator = await startOperator("video-controller-test", namespace, [
      createVideoCollectorController({
        defaultBootstrap: brokers,
        // The pods' processes run here, on loopback.
        collectorUrl: (_name, _namespace, ordinal) => pods.get(ordinal)?.url ?? "http://127.0.0.1:1",
        refreshMs: 1_000,
      }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([...pods.values()].map((pod) => pod.close()));
    await deleteTributaryResources(client, namespace);
    await operator?.stop();
    await deleteNamespace(client, namespace);
    await camera?.kill();
    await rm(directory, { recursive: true, force: true });
    const admin = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
    client.close();
  });

  /**
   * The CRDs are cluster-wide and other test files (other branches' too) apply theirs: this file's
   * VideoCollector CRD is applied again before each look, so the status fields it writes exist.
   */
  let crdAppliedAt = 0;
  const get = async () => {
    if (Date.now() - crdAppliedAt > 2_000) {
      crdAppliedAt = Date.now();
      const crd = customResourceDefinitions().find((entry) => entry.spec.names.kind === "VideoCollector")!;
      await client.apply(builtin.customResourceDefinition, crd as unknown as KubeObject, "tributary-tests");
    }
    return client.get(collectors, namespace, "lobby");
  };

  /** Runs pod `ordinal`'s process with the ConfigMap's document, as the kubelet would. */
  async function runPod(ordinal: number): Promise<void> {
    const configMap = (await client.get(
      builtin.configMap,
      namespace,
      "lobby-collector-sources",
    )) as KubeObject & {
      data: Record<string, string>;
    };
    await writeFile(join(directory, "sources.json"), configMap.data["sources.json"]!);
    pods.set(
      ordinal,
      await startVideoCollector(
        videoConfigSchema.parse({
          brokers,
          topic,
          podName: `lobby-collector-${ordinal}`,
          host: "127.0.0.1",
          port: 0,
          ffmpeg: ffmpegPath(),
          fps: 1,
          sourcesFile: join(directory, "sources.json"),
          reloadIntervalMs: 300,
        }),
        logger,
      ),
    );
  }

  it("creates the topic, the StatefulSet, Services and sources ConfigMap, restricted, and waits for the pods", async () => {
    await client.create(collectors, {
      apiVersion: videoCollectorDefinition.apiVersion,
      kind: "VideoCollector",
      metadata: { name: "lobby", namespace },
      spec: {
        sources: [
          { name: "door", url: camera.url },
          { name: "van", push: { format: "mpegts" } },
        ],
        frames: { fps: 1, width: 160 },
        topic: { name: topic, partitions: 2 },
        collector: { replicas: 1 },
      },
    });
    const statefulSet = await waitFor("the collector StatefulSet", () =>
      client.find(builtin.statefulSet, namespace, "lobby-collector"),
    );
    const spec = statefulSet.spec as {
      serviceName: string;
      template: {
        spec: { securityContext: Record<string, unknown>; containers: Array<Record<string, unknown>> };
      };
    };
    expect(spec.serviceName).toBe("lobby-collector-pods");
    expect(spec.template.spec.securityContext).toMatchObject({ runAsNonRoot: true });
    const container = spec.template.spec.containers[0] as {
      args: string[];
      env: Array<{ name: string; value?: string }>;
      securityContext: Record<string, unknown>;
    };
    expect(container.args).toEqual(["video"]);
    expect(container.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
    });
    expect(container.env).toContainEqual({ name: "TRIBUTARY_VIDEO_TOPIC", value: topic });
    expect(container.env).toContainEqual({ name: "TRIBUTARY_VIDEO_WIDTH", value: "160" });
    await waitFor(
      "the push and pod Services",
      async () =>
        (await client.find(builtin.service, namespace, "lobby-collector")) &&
        (await client.find(builtin.service, namespace, "lobby-collector-pods")),
    );
    // The frames topic, made by the controller.
    const admin = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      // The controller creates the topic as it reconciles; its metadata follows shortly after.
      const metadata = await waitFor("the frames topic", () =>
        admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined),
      );
      expect(metadata.topics[0]!.partitions).toHaveLength(2);
    } finally {
      await admin.disconnect();
    }
    const waiting = await waitFor("Progressing while pods are not ready", async () => {
      const current = await get();
      return condition(current, "Progressing")?.reason === "WaitingForChildren" ? current : undefined;
    });
    expect(condition(waiting, "Ready")?.status).toBe("False");
  });

  it("is Ready once the pods run and every pulled camera delivers frames; a dead camera is Degraded", async () => {
    await runPod(0);
    await waitFor(
      "pods ready",
      async () => (await playKubelet(client, namespace, "app.kubernetes.io/component=collector")) >= 1,
    );
    const ready = await waitFor(
      "Ready",
      async () => {
        const current = await get();
        return condition(current, "Ready")?.status === "True" ? current : undefined;
      },
      { timeoutMs: 90_000 },
    );
    expect(condition(ready, "Ready")?.reason).toBe("SourcesLive");
    const status = ready.status as {
      sourcesLive: number;
      sourcesTotal: number;
      sources: Array<Record<string, unknown>>;
    };
    expect(status.sourcesTotal).toBe(2);
    expect(status.sources.find((s) => s.name === "door")).toMatchObject({
      live: true,
      pod: "lobby-collector-0",
    });
    // The pushed camera is not sending: that is not a fault.
    expect(status.sources.find((s) => s.name === "van")).toMatchObject({ live: false });

    await camera.kill();
    const degraded = await waitFor(
      "Degraded SourceUnreachable",
      async () => {
        const current = await get();
        return condition(current, "Degraded")?.reason === "SourceUnreachable" ? current : undefined;
      },
      { timeoutMs: 90_000 },
    );
    expect(condition(degraded, "Ready")?.status).toBe("False");
    expect(condition(degraded, "Degraded")?.message).toMatch(/^door: /);
    await camera.restart();
    await waitFor("Ready again", async () => condition(await get(), "Ready")?.status === "True", {
      timeoutMs: 90_000,
    });
  });

  it("writes a replica change into the sources document the pods read", async () => {
    await client.mergePatch(collectors, namespace, "lobby", { spec: { collector: { replicas: 2 } } });
    // The children are applied one after the other: wait for both, whichever lands last.
    await waitFor("the document and the StatefulSet to say 2 replicas", async () => {
      const configMap = (await client.get(
        builtin.configMap,
        namespace,
        "lobby-collector-sources",
      )) as unknown as {
        data: Record<string, string>;
      };
      const statefulSet = await client.get(builtin.statefulSet, namespace, "lobby-collector");
      return (
        JSON.parse(configMap.data["sources.json"]!).replicas === 2 &&
        (statefulSet.spec as { replicas: number }).replicas === 2
      );
    });
    await until(
      "the status to wait for the second pod",
      async () => condition(await get(), "Ready")?.reason === "WaitingForChildren",
    );
  });
});
