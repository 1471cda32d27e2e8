/** The VideoCollector's pure parts: the children built from a spec, and the health from the pods' reports. */
import { describe, expect, it } from "vitest";
import { videoCollectorDefinition } from "../../src/api/videocollector.js";
import { desiredChildren, sourcesDocument } from "../../src/controllers/videocollector/build.js";
import {
  type PodReport,
  sourceLines,
  videoCollectorHealth,
} from "../../src/controllers/videocollector/status.js";
import type { KubeObject } from "../../src/operator/kube.js";

const resource: KubeObject = {
  apiVersion: videoCollectorDefinition.apiVersion,
  kind: "VideoCollector",
  metadata: { name: "dock", namespace: "cams", uid: "u-1", generation: 2 },
};
const spec = videoCollectorDefinition.spec.parse({
  sources: [
    { name: "north", url: "rtsp://cam-north/stream", credentialsSecret: { name: "cam-login" } },
    { name: "south", push: { format: "mpegts" } },
  ],
  frames: { fps: 5, width: 640, codec: "webp", quality: 70 },
  topic: { name: "dock.frames" },
  archive: {
    enabled: true,
    segmentSeconds: 10,
    format: "mp4",
    blockPool: { blockPool: "lake", path: "/video/dock" },
  },
  collector: { replicas: 3 },
});

describe("VideoCollector build", () => {
  const children = desiredChildren({ resource, spec, image: "tributary:1", brokers: ["k:9092"] });
  const byKind = (kind: string) => children.filter((child) => child.kind === kind);

  it("makes a StatefulSet, a push Service, a headless Service and the sources ConfigMap", () => {
    expect(children.map((child) => `${child.kind}/${child.metadata.name}`)).toEqual([
      "ConfigMap/dock-collector-sources",
      "Service/dock-collector",
      "Service/dock-collector-pods",
      "StatefulSet/dock-collector",
    ]);
    expect((byKind("Service")[1]!.spec as { clusterIP: string }).clusterIP).toBe("None");
  });

  it("passes the spec as TRIBUTARY_VIDEO_* variables and mounts the logins, the root read-only", () => {
    const set = byKind("StatefulSet")[0]!.spec as {
      replicas: number;
      template: {
        spec: {
          containers: Array<{ env: Array<{ name: string; value?: string }>; securityContext: object }>;
          volumes: Array<Record<string, unknown>>;
        };
      };
    };
    expect(set.replicas).toBe(3);
    const env = Object.fromEntries(set.template.spec.containers[0]!.env.map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      TRIBUTARY_VIDEO_FPS: "5",
      TRIBUTARY_VIDEO_CODEC: "webp",
      TRIBUTARY_VIDEO_QUALITY: "70",
      TRIBUTARY_VIDEO_WIDTH: "640",
      TRIBUTARY_VIDEO_ARCHIVE_WEBHDFS: "lake.cams.svc:9870",
      TRIBUTARY_VIDEO_ARCHIVE_PATH: "/video/dock",
      TRIBUTARY_VIDEO_ARCHIVE_FORMAT: "mp4",
      TRIBUTARY_VIDEO_CREDENTIALS_DIR: "/etc/tributary/video-credentials",
    });
    expect(set.template.spec.containers[0]!.securityContext).toMatchObject({ readOnlyRootFilesystem: true });
    const credentials = set.template.spec.volumes.find((v) => v.name === "credentials") as {
      projected: { sources: Array<{ secret: { name: string; items: Array<{ path: string }> } }> };
    };
    expect(credentials.projected.sources[0]!.secret.name).toBe("cam-login");
    expect(credentials.projected.sources[0]!.secret.items.map((i) => i.path)).toEqual([
      "north/username",
      "north/password",
    ]);
  });

  it("writes replicas and sources, never a login, into the document the pods read", () => {
    expect(JSON.parse(sourcesDocument(spec))).toEqual({
      replicas: 3,
      sources: [
        { name: "north", url: "rtsp://cam-north/stream" },
        { name: "south", push: { format: "mpegts" } },
      ],
    });
  });
});

describe("VideoCollector health", () => {
  const report = (pod: string, sources: Partial<PodReport["sources"][number]>[]): PodReport => ({
    pod,
    kafkaReady: true,
    sources: sources.map((s) => ({
      name: "",
      kind: "pull",
      connected: false,
      framesPublished: 0,
      framesDropped: 0,
      framesPerSecond: 0,
      ...s,
    })),
  });
  const pods = (reports: PodReport[]) => ({ desired: 2, ready: 2, settled: true, reports, unreachable: [] });

  it("is Ready when every pulled source delivers, whatever the pushed ones do", () => {
    const reports = [
      report("dock-collector-0", [
        { name: "north", connected: true, framesPublished: 10, framesPerSecond: 5 },
        { name: "south", kind: "push" },
      ]),
      report("dock-collector-1", [{ name: "south", kind: "push", framesPublished: 3 }]),
    ];
    const lines = sourceLines(spec, reports);
    expect(lines[0]).toMatchObject({
      name: "north",
      live: true,
      pod: "dock-collector-0",
      framesPublished: 10,
    });
    expect(lines[1]).toMatchObject({ name: "south", live: false, framesPublished: 3 });
    const health = videoCollectorHealth({ problems: [], spec, pods: pods(reports), lines });
    expect(health.ready).toMatchObject({ status: "True", reason: "SourcesLive" });
  });

  it("names the camera and its error when a pulled source is down", () => {
    const reports = [
      report("dock-collector-0", [
        { name: "north", lastError: "ffmpeg exited with code 1: Connection refused" },
      ]),
    ];
    const health = videoCollectorHealth({
      problems: [],
      spec,
      pods: pods(reports),
      lines: sourceLines(spec, reports),
    });
    expect(health.ready.status).toBe("False");
    expect(health.degraded).toMatchObject({ status: "True", reason: "SourceUnreachable" });
    expect(health.degraded.message).toBe("north: ffmpeg exited with code 1: Connection refused");
  });

  it("waits for the pods before it judges the sources", () => {
    const health = videoCollectorHealth({
      problems: [],
      spec,
      pods: { desired: 3, ready: 1, settled: false, reports: [], unreachable: [] },
      lines: sourceLines(spec, []),
    });
    expect(health.progressing).toMatchObject({ status: "True", reason: "WaitingForChildren" });
    expect(health.ready.message).toBe("waiting for collector pods: 1/3 ready");
  });
});
