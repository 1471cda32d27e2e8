/**
 * A VideoCollector as a user runs it: `helm install` of the chart (a release of its own, watching
 * one namespace), the example VideoCollector fitted to the node, its pods running the image's
 * ffmpeg against a test camera served from the node's address, frames followed into Kafka, and a
 * stream pushed to the collector's Service. The namespace enforces the `restricted` standard.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { waitFor } from "../integration/operator-harness.js";
import { testEnv, uniqueName } from "../support/env.js";
import { FrameCollector, MjpegCamera, pushTestStream } from "../support/video.js";
import { installChart, kubectl, kubectlJson, root, uninstallChart, uniqueRelease } from "./cluster.js";

const release = uniqueRelease("tributary-video");
const namespace = uniqueName("e2e-video");
const topic = `e2e.${namespace}.frames`;
let camera: MjpegCamera;
let frames: FrameCollector;

const install = { release, namespace, watch: namespace, set: ["replicas=1"] };

beforeAll(async () => {
  await installChart(install);
  // The camera listens on the node's bridge address, which the pods reach.
  const nodeIp = process.env.TRIBUTARY_TESTENV_NODE_IP ?? "10.244.0.1";
  camera = await MjpegCamera.start({ size: "320x240", rate: 10, host: nodeIp });
}, 600_000);

afterAll(async () => {
  await frames?.stop();
  await uninstallChart(install);
  await camera?.kill();
}, 300_000);

describe("the example VideoCollector on the node", () => {
  it("runs its pod, publishes the camera's frames to Kafka, takes a pushed stream, and is Ready", async () => {
    // biome-ignore lint/suspicious/noExplicitAny: a manifest is edited field by field, as YAML is.
    const video: any = parse(
      readFileSync(join(root, "manifests", "examples", "videocollector.yaml"), "utf8"),
    );
    video.spec.sources = [
      { name: "dock-north", url: camera.url },
      { name: "dock-south", push: { format: "mpegts" } },
    ];
    delete video.spec.topic.kafka;
    video.spec.topic.name = topic;
    video.spec.archive = { enabled: false };
    video.spec.collector = {
      replicas: 1,
      resources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { memory: "512Mi" } },
    };
    await kubectl(["apply", "--server-side", "-n", namespace, "-f", "-"], JSON.stringify(video));
    await kubectl([
      "wait",
      "-n",
      namespace,
      "videocollector/loading-dock",
      "--for=condition=Ready",
      "--timeout=300s",
    ]);
    // The operator made the topic; read it from the host.
    frames = await FrameCollector.start(testEnv().kafkaBrokers, topic);
    await waitFor(
      "frames of dock-north in Kafka",
      async () => frames.of("dock-north").length >= 5 || undefined,
      {
        timeoutMs: 120_000,
        intervalMs: 1000,
      },
    );
    expect(frames.of("dock-north")[0]).toMatchObject({ codec: "jpeg", width: 640, height: 480 });
    // A pushed stream through the Service's cluster address.
    const service = await kubectlJson<{ spec: { clusterIP: string } }>([
      "get",
      "service",
      "loading-dock-collector",
      "-n",
      namespace,
    ]);
    await pushTestStream(`http://${service.spec.clusterIP}:8080/v1/sources/dock-south`, 6);
    await waitFor("pushed frames in Kafka", async () => frames.of("dock-south").length >= 3 || undefined, {
      timeoutMs: 120_000,
      intervalMs: 1000,
    });
    const status = await kubectlJson<{ status: { sources: Array<{ name: string; live: boolean }> } }>([
      "get",
      "videocollector",
      "loading-dock",
      "-n",
      namespace,
    ]);
    expect(status.status.sources.find((s) => s.name === "dock-north")?.live).toBe(true);
  });
});
