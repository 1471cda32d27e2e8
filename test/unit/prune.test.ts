/**
 * Which children a reconcile deletes after applying its desired set (src/operator/prune.ts):
 * only the resource's own children, by labels and controller owner reference, of a kind the
 * controller owns, never a claim, and none the desired set or `keep` names.
 */
import { describe, expect, it } from "vitest";
import { blockPoolDefinition } from "../../src/api/blockpool.js";
import { topicSpecSchema } from "../../src/api/topic.js";
import { desiredChildren as blockPoolChildren } from "../../src/controllers/blockpool/build.js";
import { desiredChildren as topicChildren } from "../../src/controllers/topic/build.js";
import { ownerReference } from "../../src/operator/apply.js";
import { builtin, type KubeObject, type ResourceType } from "../../src/operator/kube.js";
import { childrenToPrune, type PruneInput, prunableTypes } from "../../src/operator/prune.js";

const topic: KubeObject = {
  apiVersion: "tributary.dev/v1alpha1",
  kind: "Topic",
  metadata: { name: "clicks", namespace: "shop", uid: "uid-clicks" },
};

const labelsOf = (owner: KubeObject, component: string) => ({
  "app.kubernetes.io/name": owner.kind.toLowerCase(),
  "app.kubernetes.io/instance": owner.metadata.name,
  "app.kubernetes.io/component": component,
  "app.kubernetes.io/part-of": "tributary",
  "app.kubernetes.io/managed-by": "tributary",
});

/** A child as the Topic controller makes it: labels, controller owner reference, namespace. */
function child(type: ResourceType, name: string, owner = topic, extra: Partial<KubeObject["metadata"]> = {}) {
  return {
    apiVersion: type.group ? `${type.group}/${type.version}` : type.version,
    kind: type.kind,
    metadata: {
      name,
      namespace: owner.metadata.namespace,
      uid: `uid-${name}`,
      resourceVersion: "7",
      labels: labelsOf(owner, "sink"),
      ownerReferences: [ownerReference(owner)],
      ...extra,
    },
  } satisfies KubeObject;
}

const owns = [builtin.deployment, builtin.service];

function prune(objects: KubeObject[], desired: KubeObject[], extra: Partial<PruneInput> = {}) {
  return childrenToPrune({
    owner: topic,
    owned: owns.map((type) => ({ type, objects: objects.filter((object) => object.kind === type.kind) })),
    desired,
    ...extra,
  }).map(({ type, child: object }) => `${type.kind} ${object.metadata.name}`);
}

describe("childrenToPrune", () => {
  it("selects the owner's children that the desired set no longer names, of each owned kind", () => {
    const collector = child(builtin.deployment, "clicks-collector");
    const collectorService = child(builtin.service, "clicks-collector");
    const raw = child(builtin.deployment, "clicks-sink-raw");
    const renamed = child(builtin.deployment, "clicks-sink-archive");
    // The collector was removed and sink "raw" renamed "archive": only the new sink is desired.
    expect(prune([collector, collectorService, raw, renamed], [renamed])).toEqual([
      "Deployment clicks-collector",
      "Deployment clicks-sink-raw",
      "Service clicks-collector",
    ]);
  });

  it("selects nothing when every child is desired, whatever its apiVersion says", () => {
    const collector = child(builtin.deployment, "clicks-collector");
    const service = child(builtin.service, "clicks-collector");
    // A desired child without a namespace is in its owner's.
    const desired = [
      { ...collector, apiVersion: "apps/v1beta2" },
      { ...service, metadata: { ...service.metadata, namespace: undefined } },
    ];
    expect(prune([collector, service], desired)).toEqual([]);
  });

  it("never selects a child without the controller owner reference to this owner's uid", () => {
    const noOwner = child(builtin.deployment, "hand-made", topic, { ownerReferences: undefined });
    const notController = child(builtin.deployment, "adopted", topic, {
      ownerReferences: [{ ...ownerReference(topic), controller: false }],
    });
    // A resource deleted and made again under the same name: the old child is the garbage collector's.
    const earlierTopic = child(builtin.deployment, "earlier", topic, {
      ownerReferences: [{ ...ownerReference(topic), uid: "uid-of-an-earlier-clicks" }],
    });
    expect(prune([noOwner, notController, earlierTopic], [])).toEqual([]);
  });

  it("never selects a child without the owner's labels", () => {
    const { "app.kubernetes.io/managed-by": _managedBy, ...unmanaged } = labelsOf(topic, "sink");
    const { "app.kubernetes.io/instance": _instance, ...noInstance } = labelsOf(topic, "sink");
    const children = [
      child(builtin.deployment, "no-labels", topic, { labels: undefined }),
      child(builtin.deployment, "unmanaged", topic, { labels: unmanaged }),
      child(builtin.deployment, "no-instance", topic, { labels: noInstance }),
      child(builtin.deployment, "other-instance", topic, {
        labels: { ...labelsOf(topic, "sink"), "app.kubernetes.io/instance": "views" },
      }),
      child(builtin.deployment, "other-kind", topic, {
        labels: { ...labelsOf(topic, "sink"), "app.kubernetes.io/name": "blockpool" },
      }),
    ];
    expect(prune(children, [])).toEqual([]);
  });

  it("never selects another namespace's object, one already being deleted, or one kept", () => {
    const elsewhere = child(builtin.deployment, "elsewhere", topic, { namespace: "other" });
    const going = child(builtin.deployment, "going", topic, { deletionTimestamp: "2025-01-01T00:00:00Z" });
    const waiting = child(builtin.deployment, "clicks-sink-zstd");
    const stale = child(builtin.deployment, "clicks-sink-old");
    expect(
      prune([elsewhere, going, waiting, stale], [], {
        keep: (object) => object.metadata.name === "clicks-sink-zstd",
      }),
    ).toEqual(["Deployment clicks-sink-old"]);
  });

  it("never selects a claim, even one the controller owns, labelled and controlled by the owner", () => {
    const stale = child(builtin.deployment, "clicks-sink-old");
    const claim = child(builtin.persistentVolumeClaim, "clicks-data");
    const selected = childrenToPrune({
      owner: topic,
      owned: [
        { type: builtin.deployment, objects: [stale] },
        { type: builtin.persistentVolumeClaim, objects: [claim] },
      ],
      desired: [],
    });
    expect(selected.map(({ type, child: object }) => `${type.kind} ${object.metadata.name}`)).toEqual([
      "Deployment clicks-sink-old",
    ]);
    // The runtime hands over only the owned kinds, less claims.
    expect(prunableTypes([builtin.statefulSet, builtin.persistentVolumeClaim, builtin.configMap])).toEqual([
      builtin.statefulSet,
      builtin.configMap,
    ]);
  });

  it("selects nothing for an owner not read from the API server (no uid)", () => {
    const stale = child(builtin.deployment, "clicks-sink-old");
    expect(
      childrenToPrune({
        owner: { ...topic, metadata: { ...topic.metadata, uid: undefined } },
        owned: [{ type: builtin.deployment, objects: [stale] }],
        desired: [],
      }),
    ).toEqual([]);
  });
});

describe("pruning a BlockPool's children", () => {
  const pool: KubeObject = {
    apiVersion: blockPoolDefinition.apiVersion,
    kind: "BlockPool",
    metadata: { name: "lake", namespace: "data", uid: "uid-lake" },
  };
  const built = (spec: Record<string, unknown>) =>
    blockPoolChildren({
      resource: pool,
      spec: blockPoolDefinition.spec.parse(spec),
      image: "tributary:test",
    });
  const owned = [
    builtin.statefulSet,
    builtin.service,
    builtin.podDisruptionBudget,
    builtin.persistentVolumeClaim,
    builtin.configMap,
  ];
  const asCached = (children: KubeObject[]) =>
    owned.map((type) => ({ type, objects: children.filter((object) => object.kind === type.kind) }));

  it("deletes the rack table once rackAwareness is removed, and nothing else", () => {
    const before = built({ rackAwareness: {}, deletionPolicy: "Delete" });
    expect(before.map((object) => `${object.kind} ${object.metadata.name}`)).toContain(
      "ConfigMap lake-topology",
    );
    const after = built({ deletionPolicy: "Delete" });
    const selected = childrenToPrune({ owner: pool, owned: asCached(before), desired: after });
    expect(selected.map(({ type, child: object }) => `${type.kind} ${object.metadata.name}`)).toEqual([
      "ConfigMap lake-topology",
    ]);
  });

  it("keeps the shared edit-log claim when one name node is left, whatever the deletionPolicy", () => {
    for (const deletionPolicy of ["Delete", "Retain"]) {
      const before = built({ deletionPolicy });
      expect(before.some((object) => object.kind === "PersistentVolumeClaim")).toBe(true);
      const after = built({ deletionPolicy, nameNodes: { replicas: 1 } });
      expect(after.some((object) => object.kind === "PersistentVolumeClaim")).toBe(false);
      expect(childrenToPrune({ owner: pool, owned: asCached(before), desired: after })).toEqual([]);
    }
  });

  it("keeps every child when stopped: the desired set is the same objects at zero replicas", () => {
    const before = built({ rackAwareness: {} });
    const stopped = built({ rackAwareness: {}, clusterOperation: { stopped: true } });
    expect(childrenToPrune({ owner: pool, owned: asCached(before), desired: stopped })).toEqual([]);
  });
});

describe("pruning a Topic's children, as its build makes them", () => {
  const built = (spec: Record<string, unknown>) =>
    topicChildren({
      resource: topic,
      spec: topicSpecSchema.parse(spec),
      image: "tributary:test",
      brokers: ["kafka:9092"],
    });
  const cached = (children: KubeObject[]) =>
    owns.map((type) => ({ type, objects: children.filter((object) => object.kind === type.kind) }));
  const names = (selected: ReturnType<typeof childrenToPrune>) =>
    selected.map(({ type, child: object }) => `${type.kind} ${object.metadata.name}`);
  const sink = (name: string) => ({ name, format: "avro", target: { volume: { claimName: "files" } } });
  const full = {
    ingest: { clickstream: { replicas: 2 } },
    sinks: [sink("raw"), sink("daily")],
  };

  it("removes a sink's Deployment with the sink, and the collector's Deployment and Service with ingest", () => {
    const before = built(full);
    expect(
      names(
        childrenToPrune({
          owner: topic,
          owned: cached(before),
          desired: built({ ...full, sinks: [sink("daily")] }),
        }),
      ),
    ).toEqual(["Deployment clicks-sink-raw"]);
    expect(
      names(childrenToPrune({ owner: topic, owned: cached(before), desired: built({ sinks: full.sinks }) })),
    ).toEqual(["Deployment clicks-collector", "Service clicks-collector"]);
  });

  it("replaces a renamed sink's Deployment", () => {
    const before = built(full);
    const renamed = built({ ...full, sinks: [sink("raw-v2"), sink("daily")] });
    expect(renamed.map((object) => object.metadata.name)).toContain("clicks-sink-raw-v2");
    expect(names(childrenToPrune({ owner: topic, owned: cached(before), desired: renamed }))).toEqual([
      "Deployment clicks-sink-raw",
    ]);
  });

  it("keeps every child when stopped", () => {
    const stopped = built({ ...full, clusterOperation: { stopped: true } });
    expect(childrenToPrune({ owner: topic, owned: cached(built(full)), desired: stopped })).toEqual([]);
  });
});
