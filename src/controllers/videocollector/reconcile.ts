/**
 * VideoCollector: ensure the Kafka topic (with the Topic controller's admin code) → build → apply
 * → read each collector pod's /status → status. The figures move while nothing in Kubernetes
 * does, so the resource is looked at again every `refreshMs`.
 *
 * The topic is created when missing (spec.topic.partitions, replicationFactor) and never
 * deleted: frames already published are the users' data, and a Topic resource can adopt it.
 * deletionPolicy Delete removes the archive's BlockPool directory (cleanupVideoCollector).
 */
import { blockPoolDefinition } from "../../api/blockpool.js";
import { ConditionStatus, Reason } from "../../api/conditions.js";
import { type VideoCollectorSpec, videoCollectorDefinition } from "../../api/videocollector.js";
import { WebHdfsClient } from "../../dataplane/storage/client.js";
import { KafkaAdmins, type KafkaConnection, parseBootstrap } from "../../kafka/admins.js";
import type { Logger } from "../../log.js";
import {
  type Action,
  type Context,
  type ControllerDefinition,
  ReconcileError,
} from "../../operator/controller.js";
import { ApiError, builtin, type KubeObject, objectKey } from "../../operator/kube.js";
import { roleState } from "../blockpool/status.js";
import {
  announcePodProblem,
  instanceLabels,
  pausedHealth,
  resourceType,
  type SpecProblem,
  specOf,
  storedStatus,
  writeHealth,
} from "../common.js";
import { podProblem, podWatch } from "../podHealth.js";
import { blockPoolWebHdfsAddress } from "../topic/build.js";
import {
  brokerCount,
  createTopic,
  describeTopic,
  kafkaError,
  kafkaMessage,
  resolveConnection,
} from "../topic/kafka.js";
import { collectorName, desiredChildren, podsServiceName, type VideoCollectorBuildInput } from "./build.js";
import { type PodReport, type PodsView, sourceLines, statusFields, videoCollectorHealth } from "./status.js";

export interface VideoCollectorControllerOptions {
  /** Default Kafka cluster for resources without spec.topic.kafka; default TRIBUTARY_KAFKA_BOOTSTRAP. */
  defaultBootstrap?: readonly string[];
  log?: Logger;
  /** Base URL of collector pod `ordinal`; by default its DNS name through the headless Service. */
  collectorUrl?: (name: string, namespace: string, ordinal: number, port: number) => string;
  /** Deadline of each /status request; default 2 s. */
  requestTimeoutMs?: number;
  /** How often the pods' figures are read again; default 30 s. */
  refreshMs?: number;
  /** WebHDFS host:port of a BlockPool, for the archive's cleanup; by default its Service's DNS name. */
  webHdfsAddress?: (pool: string, namespace: string, port: number) => string;
}

export const inClusterCollectorUrl = (name: string, namespace: string, ordinal: number, port: number) =>
  `http://${collectorName(name)}-${ordinal}.${podsServiceName(name)}.${namespace}.svc:${port}`;

interface Settings {
  defaultBootstrap: readonly string[];
  admins: KafkaAdmins;
  collectorUrl: NonNullable<VideoCollectorControllerOptions["collectorUrl"]>;
  requestTimeoutMs: number;
  refreshMs: number;
  webHdfsAddress: NonNullable<VideoCollectorControllerOptions["webHdfsAddress"]>;
}

const videoCollectorType = resourceType(videoCollectorDefinition);
const describe = (resource: KubeObject) =>
  `VideoCollector ${resource.metadata.namespace ?? ""}/${resource.metadata.name}`;

/** Creates the frames topic when it does not exist; a problem when Kafka refuses. */
async function ensureFramesTopic(
  resource: KubeObject,
  spec: VideoCollectorSpec,
  context: Context<KubeObject>,
  settings: Settings,
  connection: KafkaConnection,
): Promise<SpecProblem[]> {
  const name = spec.topic.name;
  try {
    const admin = await settings.admins.get(connection);
    if (await describeTopic(admin, connection, name)) return [];
    const brokers = await brokerCount(admin);
    if (spec.topic.replicationFactor > brokers) {
      return [
        {
          reason: Reason.ReplicationFactorTooLarge,
          message: `spec.topic.replicationFactor is ${spec.topic.replicationFactor} but the Kafka cluster has ${brokers} broker(s)`,
        },
      ];
    }
    const created = await createTopic(admin, {
      name,
      partitions: spec.topic.partitions,
      replicationFactor: spec.topic.replicationFactor,
      config: {},
    });
    if (created) {
      await context.event(
        resource,
        "Normal",
        Reason.TopicCreated,
        `created Kafka topic ${name} with ${spec.topic.partitions} partitions and replication factor ${spec.topic.replicationFactor}`,
      );
    }
    return [];
  } catch (error) {
    if (error instanceof ApiError) throw error;
    const failure = kafkaError(error, `${describe(resource)}: Kafka topic ${name}`, connection);
    if (failure.reason === Reason.KafkaUnavailable) throw failure;
    return [{ reason: failure.reason, message: `Kafka refused topic ${name}: ${kafkaMessage(error)}` }];
  }
}

async function readPodStatus(url: string, timeoutMs: number): Promise<PodReport> {
  const response = await fetch(`${url}/status`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return (await response.json()) as PodReport;
}

export async function reconcileVideoCollector(
  resource: KubeObject,
  context: Context<KubeObject>,
  settings: Settings,
): Promise<Action | undefined> {
  const spec = specOf(videoCollectorDefinition, resource);
  const { namespace = "", name } = resource.metadata;
  const previous = storedStatus(resource);
  const { conditions: _c, observedGeneration: _g, ...kept } = previous;
  if (spec.clusterOperation.reconciliationPaused) {
    await writeHealth(context, resource, pausedHealth, kept);
    return undefined;
  }
  const connection = await resolveConnection(
    context.client,
    namespace,
    spec.topic.kafka,
    settings.defaultBootstrap,
    describe(resource),
  );
  const problems = await ensureFramesTopic(resource, spec, context, settings, connection);

  let webHdfsPort: number | undefined;
  const pool = spec.archive.enabled ? spec.archive.blockPool?.blockPool : undefined;
  if (pool) {
    const found = context
      .cachedObjects(resourceType(blockPoolDefinition), { namespace })
      .find((candidate) => candidate.metadata.name === pool);
    if (found) webHdfsPort = specOf(blockPoolDefinition, found).webHdfs.port;
    else
      problems.push({
        reason: Reason.DependencyNotFound,
        message: `spec.archive.blockPool: BlockPool ${namespace}/${pool} does not exist; segments stay on the pods' scratch volume and are retried until it does`,
      });
  }

  const input: VideoCollectorBuildInput = {
    resource,
    spec,
    image: context.image,
    brokers: connection.brokers,
    webHdfsPort,
    kafkaSecretVersions: connection.secretVersions,
  };
  const applied = await context.applyAndPrune(resource, desiredChildren(input));
  const statefulSet =
    applied.find((child) => child.kind === "StatefulSet") ??
    context.cachedChild(builtin.statefulSet, namespace, collectorName(name));
  const desired = spec.clusterOperation.stopped ? 0 : spec.collector.replicas;
  const role = roleState("collector pods", desired, statefulSet);

  const reports: PodReport[] = [];
  const unreachable: string[] = [];
  await Promise.all(
    Array.from({ length: desired }, async (_, ordinal) => {
      const url = settings.collectorUrl(name, namespace, ordinal, spec.collector.port);
      try {
        reports.push(await readPodStatus(url, settings.requestTimeoutMs));
      } catch (error) {
        unreachable.push(`${collectorName(name)}-${ordinal}: ${(error as Error).message}`);
      }
    }),
  );
  const pods: PodsView = { desired, ready: role.ready, settled: role.settled, reports, unreachable };
  const lines = sourceLines(spec, reports);
  const fields = { ...statusFields(spec, lines) };
  const pod = podProblem(context.cachedObjects(builtin.pod, { namespace, labels: instanceLabels(resource) }));
  const health = videoCollectorHealth({ problems, spec, pods, lines, podProblem: pod });
  await announcePodProblem(context, resource, health, pod);
  await writeHealth(context, resource, health, fields);
  if (problems.length > 0) {
    await context.event(resource, "Warning", problems[0]!.reason, problems.map((p) => p.message).join("; "));
  }
  const ready = health.ready.status === ConditionStatus.True;
  return { requeueAfterMs: ready ? settings.refreshMs : Math.min(settings.refreshMs, 10_000) };
}

/**
 * The finalizer's cleanup. The frames topic always stays (see the file comment). With
 * `deletionPolicy: Delete` the archive directory in the BlockPool goes (`<path>` recursively); a
 * pool that no longer exists has nothing left to delete. An archive on a volume stays with its
 * claim, which the user owns; an event says so.
 */
export async function cleanupVideoCollector(
  resource: KubeObject,
  context: Context<KubeObject>,
  settings: Pick<Settings, "webHdfsAddress">,
): Promise<void> {
  const parsed = videoCollectorDefinition.spec.safeParse(resource.spec ?? {});
  if (!parsed.success || parsed.data.deletionPolicy !== "Delete" || !parsed.data.archive.enabled) {
    context.log.info(
      { collector: resource.metadata.name },
      "the frames topic and archived segments are kept",
    );
    return;
  }
  const { archive } = parsed.data;
  const namespace = resource.metadata.namespace ?? "";
  if (archive.volume) {
    await context.event(
      resource,
      "Normal",
      Reason.Deleting,
      `the archive on claim ${archive.volume.claimName} is kept: the claim is yours to delete`,
    );
    return;
  }
  const poolName = archive.blockPool!.blockPool;
  const pool = context
    .cachedObjects(resourceType(blockPoolDefinition), { namespace })
    .find((candidate) => candidate.metadata.name === poolName);
  if (!pool) return;
  const address = settings.webHdfsAddress(
    poolName,
    namespace,
    specOf(blockPoolDefinition, pool).webHdfs.port,
  );
  try {
    await new WebHdfsClient({ nameNodes: [address], user: "tributary", failoverTimeoutMs: 10_000 }).delete(
      archive.blockPool!.path,
      { recursive: true },
    );
  } catch (error) {
    throw new ReconcileError(
      Reason.CleanupFailed,
      `${describe(resource)}: deleting the archive ${archive.blockPool!.path} in BlockPool ${poolName} (deletionPolicy Delete): ${(error as Error).message}`,
      { cause: error },
    );
  }
  await context.event(
    resource,
    "Normal",
    Reason.Deleting,
    `deleted the archive ${archive.blockPool!.path} in BlockPool ${poolName}`,
  );
}

export function createVideoCollectorController(
  options: VideoCollectorControllerOptions = {},
): ControllerDefinition<KubeObject> {
  const settings: Settings = {
    defaultBootstrap: options.defaultBootstrap ?? parseBootstrap(process.env.TRIBUTARY_KAFKA_BOOTSTRAP),
    admins: new KafkaAdmins(options.log),
    collectorUrl: options.collectorUrl ?? inClusterCollectorUrl,
    requestTimeoutMs: options.requestTimeoutMs ?? 2_000,
    refreshMs: options.refreshMs ?? 30_000,
    webHdfsAddress: options.webHdfsAddress ?? blockPoolWebHdfsAddress,
  };
  return {
    type: videoCollectorType,
    owns: [builtin.statefulSet, builtin.service, builtin.configMap],
    watches: [
      // The archive's pool appearing, or moving its WebHDFS port, changes where segments go.
      {
        type: resourceType(blockPoolDefinition),
        fingerprint: (pool) => (pool.spec as { webHdfs?: { port?: number } } | undefined)?.webHdfs?.port,
        map: (pool, collectors) =>
          collectors()
            .filter(
              (collector) =>
                collector.metadata.namespace === pool.metadata.namespace &&
                (collector.spec as { archive?: { blockPool?: { blockPool?: string } } } | undefined)?.archive
                  ?.blockPool?.blockPool === pool.metadata.name,
            )
            .map(objectKey),
      },
      podWatch(videoCollectorDefinition.kind),
    ],
    reconcile: (resource, context) => reconcileVideoCollector(resource, context, settings),
    // The topic and the archived segments are the users' data: they stay (see the file comment).
    cleanup: async (resource, context) => {
      context.log.info(
        { collector: resource.metadata.name },
        "the frames topic and archived segments are kept",
      );
    },
    stop: () => settings.admins.close(),
  };
}
