/**
 * Topic: validate → ensure the Kafka topic → build → apply → status, and the finalizer's
 * cleanup, which deletes the Kafka topic or keeps it as `deletionPolicy` says.
 *
 * Ownership. A Topic owns the Kafka topic it created; it records the topic's Kafka id in the
 * annotation `tributary.dev/kafka-topic-id`. A topic that already exists and is not recorded
 * is adopted only when its partitions and replication factor are what the spec asks; any other
 * shape is reported (`TopicExistsWithDifferentShape`) and left untouched, and such a topic is
 * never deleted by this resource. To take over a topic kept by a deleted Topic (deletionPolicy
 * Retain), copy the annotation to the new resource: the shape rules then apply as to its own.
 */
import type { Admin } from "kafkajs";
import { blockPoolDefinition } from "../../api/blockpool.js";
import { ConditionStatus, Reason } from "../../api/conditions.js";
import { type TopicSpec, type TopicStatus, topicDefinition } from "../../api/topic.js";
import { KafkaAdmins, type KafkaConnection, parseBootstrap } from "../../kafka/admins.js";
import type { Logger } from "../../log.js";
import {
  type Action,
  type Context,
  type ControllerDefinition,
  ReconcileError,
} from "../../operator/controller.js";
import { ApiError, builtin, type KubeObject, objectKey } from "../../operator/kube.js";
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
import {
  collectorEndpoint,
  collectorName,
  deadLetterTopicName,
  desiredChildren,
  kafkaTopicName,
  runnableSinks,
  sinkDeploymentName,
  type TopicBuildInput,
  unsupportedSinks,
} from "./build.js";
import {
  addPartitions,
  brokerCount,
  configDiffers,
  createTopic,
  deleteTopic,
  describeTopic,
  kafkaError,
  kafkaMessage,
  type ObservedTopic,
  protocolErrorType,
  refusedConfigEntries,
  replaceTopicConfig,
  resolveConnection,
} from "./kafka.js";
import { deploymentState, type RoleState, topicHealth } from "./status.js";
import { validateTopic } from "./validate.js";

/** Records which Kafka topic (by id) this resource created or adopted. */
export const topicIdAnnotation = "tributary.dev/kafka-topic-id";
/** The annotation's value when the cluster does not reveal topic ids (SASL, see src/kafka/metadata.ts). */
const unknownTopicId = "unknown";

/** Kafka changes made outside Kubernetes wake no watch: look again this often. */
const driftCheckMs = 5 * 60_000;
/** While something is wrong or still moving, look again sooner. */
const retryMs = 30_000;

const topicType = resourceType(topicDefinition);

export interface TopicControllerOptions {
  /**
   * Bootstrap brokers of the operator's default Kafka cluster (its `--kafka-bootstrap` flag),
   * used by every Topic without `spec.kafka`. Default: `TRIBUTARY_KAFKA_BOOTSTRAP`, read once here.
   */
  defaultBootstrap?: readonly string[];
  /** Where the admin clients' kafkajs log lines go; default kafkajs's own console logger. */
  log?: Logger;
}

/** What a reconcile needs besides the resource: the default cluster and the controller's clients. */
interface Settings {
  defaultBootstrap: readonly string[];
  admins: KafkaAdmins;
}

interface TopicOutcome {
  /** The topic as Kafka has it after this reconcile; undefined when it could not be created. */
  observed?: ObservedTopic;
  /** Whether this resource manages it: children are spawned and cleanup may delete it. */
  owned: boolean;
  problems: SpecProblem[];
}

const describe = (resource: KubeObject) =>
  `Topic ${resource.metadata.namespace ?? ""}/${resource.metadata.name}`;

function recordedTopicId(resource: KubeObject): string | undefined {
  return resource.metadata.annotations?.[topicIdAnnotation];
}

function isOwned(resource: KubeObject, observed: ObservedTopic): boolean {
  const recorded = recordedTopicId(resource);
  if (recorded === undefined) return false;
  // Without ids a recreated topic cannot be told apart from the one recorded.
  return recorded === unknownTopicId || observed.topicId === undefined || recorded === observed.topicId;
}

async function recordOwnership(
  resource: KubeObject,
  context: Context<KubeObject>,
  observed: ObservedTopic,
): Promise<void> {
  const value = observed.topicId ?? unknownTopicId;
  if (recordedTopicId(resource) === value) return;
  const { namespace, name } = resource.metadata;
  await context.client.mergePatch(topicType, namespace, name, {
    metadata: { annotations: { [topicIdAnnotation]: value } },
  });
}

/** Polls until a just-created topic shows in metadata (KRaft brokers learn of it in milliseconds). */
async function waitForTopic(
  admin: Admin,
  connection: KafkaConnection,
  name: string,
): Promise<ObservedTopic | undefined> {
  for (let attempt = 0; attempt < 40; attempt++) {
    try {
      const observed = await describeTopic(admin, connection, name);
      if (observed) return observed;
    } catch (error) {
      // One broker listed it, the one asked for its configs not yet: ask again.
      if (protocolErrorType(error) !== "UNKNOWN_TOPIC_OR_PARTITION") throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return undefined;
}

/** Creates the topic, adopts a matching one, or reports a foreign one; then aligns partitions and config. */
async function ensureTopic(
  resource: KubeObject,
  spec: TopicSpec,
  context: Context<KubeObject>,
  admin: Admin,
  connection: KafkaConnection,
): Promise<TopicOutcome> {
  const name = kafkaTopicName(spec, resource);
  const who = describe(resource);
  let observed = await describeTopic(admin, connection, name);

  if (!observed) {
    const brokers = await brokerCount(admin);
    if (spec.replicationFactor > brokers) {
      return {
        owned: false,
        problems: [
          {
            reason: Reason.ReplicationFactorTooLarge,
            message: `spec.replicationFactor is ${spec.replicationFactor} but the Kafka cluster has ${brokers} broker(s): each replica needs a broker of its own`,
          },
        ],
      };
    }
    const desired = {
      name,
      partitions: spec.partitions,
      replicationFactor: spec.replicationFactor,
      config: spec.config,
    };
    let created: boolean;
    try {
      created = await createTopic(admin, desired);
    } catch (error) {
      const type = protocolErrorType(error);
      if (type === "INVALID_CONFIG" || type === "INVALID_REQUEST" || type === "POLICY_VIOLATION") {
        const refused = await refusedConfigEntries(admin, desired).catch(() => []);
        return {
          owned: false,
          problems: [
            {
              reason: Reason.InvalidTopicConfig,
              message: `Kafka refused to create topic ${name} with spec.config: ${kafkaMessage(error)}${refused.length > 0 ? ` (refused entries: ${refused.join(", ")}; check the names and values against Kafka's topic configs)` : ""}`,
            },
          ],
        };
      }
      if (type === "INVALID_REPLICATION_FACTOR") {
        return {
          owned: false,
          problems: [
            {
              reason: Reason.ReplicationFactorTooLarge,
              message: `Kafka refused spec.replicationFactor ${spec.replicationFactor} for topic ${name}: ${kafkaMessage(error)}`,
            },
          ],
        };
      }
      throw kafkaError(error, `${who}: creating Kafka topic ${name}`, connection);
    }
    observed = await waitForTopic(admin, connection, name);
    if (!observed) {
      throw new ReconcileError(
        Reason.KafkaUnavailable,
        `${who}: Kafka topic ${name} was created but does not show in the cluster's metadata yet`,
      );
    }
    if (created) {
      // Recorded before anything else can fail, so a retry knows the topic is this resource's.
      await recordOwnership(resource, context, observed);
      await context.event(
        resource,
        "Normal",
        Reason.TopicCreated,
        `created Kafka topic ${name} with ${spec.partitions} partitions and replication factor ${spec.replicationFactor}`,
      );
      return { observed, owned: true, problems: [] };
    }
  }

  if (!isOwned(resource, observed)) {
    const sameShape =
      observed.partitions === spec.partitions && observed.replicationFactor === spec.replicationFactor;
    if (!sameShape) {
      return {
        observed,
        owned: false,
        problems: [
          {
            reason: Reason.TopicExistsWithDifferentShape,
            message: `Kafka topic ${name} already exists with ${observed.partitions} partitions and replication factor ${observed.replicationFactor}, but spec asks for ${spec.partitions} and ${spec.replicationFactor}, and ${who} did not create it: it is left untouched. Choose another spec.topicName, match its shape, or annotate the Topic with ${topicIdAnnotation}: ${observed.topicId ?? unknownTopicId} to take it over`,
          },
        ],
      };
    }
    await recordOwnership(resource, context, observed);
    await context.event(
      resource,
      "Normal",
      Reason.Reconciled,
      `adopted the existing Kafka topic ${name}: its partitions and replication factor match the spec`,
    );
  }

  const problems: SpecProblem[] = [];
  if (observed.replicationFactor !== spec.replicationFactor) {
    problems.push({
      reason: Reason.ReplicationFactorCannotChange,
      message: `spec.replicationFactor is ${spec.replicationFactor} but Kafka topic ${name} has ${observed.replicationFactor}: the operator does not change a topic's replication factor (that is a replica reassignment, done with Kafka's tools)`,
    });
  }

  // Partitions only grow: the shrink check compares with what Kafka has, not with the last spec.
  const shrink = validateTopic(spec, { partitions: observed.partitions } as TopicStatus);
  if (shrink.length > 0) {
    problems.push(...shrink);
  } else if (spec.partitions > observed.partitions) {
    try {
      await addPartitions(admin, name, spec.partitions);
    } catch (error) {
      throw kafkaError(
        error,
        `${who}: raising Kafka topic ${name} to ${spec.partitions} partitions`,
        connection,
      );
    }
    await context.event(
      resource,
      "Normal",
      Reason.ScalingUp,
      `raised Kafka topic ${name} from ${observed.partitions} to ${spec.partitions} partitions`,
    );
    observed = { ...observed, partitions: spec.partitions };
  }

  const known = observed.knownConfigNames;
  const unknown = Object.keys(spec.config).filter((key) => !known.has(key));
  if (unknown.length > 0) {
    problems.push({
      reason: Reason.InvalidTopicConfig,
      message: `spec.config has keys the broker does not know as topic configs: ${unknown.join(", ")} (e.g. retention.ms, cleanup.policy, min.insync.replicas); no config change was applied`,
    });
  } else if (configDiffers(observed.config, spec.config)) {
    try {
      await replaceTopicConfig(admin, name, spec.config);
    } catch (error) {
      const type = protocolErrorType(error);
      if (type === "INVALID_CONFIG" || type === "INVALID_REQUEST" || type === "POLICY_VIOLATION") {
        problems.push({
          reason: Reason.InvalidTopicConfig,
          message: `Kafka refused spec.config for topic ${name}: ${kafkaMessage(error)}`,
        });
      } else {
        throw kafkaError(error, `${who}: altering the config of Kafka topic ${name}`, connection);
      }
    }
    if (!problems.some((problem) => problem.reason === Reason.InvalidTopicConfig)) {
      await context.event(
        resource,
        "Normal",
        Reason.TopicConfigUpdated,
        `set the config of Kafka topic ${name} to ${JSON.stringify(spec.config)}`,
      );
      observed = { ...observed, config: { ...spec.config } };
    }
  }
  return { observed, owned: true, problems };
}

/** The collectors' dead-letter topic, created beside the topic with its replication factor. */
async function ensureDeadLetterTopic(
  resource: KubeObject,
  spec: TopicSpec,
  admin: Admin,
  connection: KafkaConnection,
): Promise<void> {
  if (!spec.ingest?.clickstream && spec.sinks.length === 0) return;
  const name = deadLetterTopicName(spec, resource);
  try {
    if (await describeTopic(admin, connection, name)) return;
    await createTopic(admin, {
      name,
      partitions: spec.partitions,
      replicationFactor: spec.replicationFactor,
      config: {},
    });
  } catch (error) {
    throw kafkaError(error, `${describe(resource)}: creating dead-letter topic ${name}`, connection);
  }
}

/**
 * Strimzi's rule for two resources naming one topic: the oldest manages it, the others are
 * refused. Only the peers in the namespace are visible from the cache.
 */
function nameConflict(resource: KubeObject, spec: TopicSpec, peers: KubeObject[]): SpecProblem | undefined {
  const name = kafkaTopicName(spec, resource);
  const cluster = JSON.stringify(spec.kafka?.bootstrapServers ?? null);
  const age = (object: KubeObject) => `${object.metadata.creationTimestamp ?? ""}/${object.metadata.name}`;
  for (const peer of peers) {
    if (peer.metadata.name === resource.metadata.name || peer.metadata.deletionTimestamp) continue;
    const peerSpec = topicDefinition.spec.safeParse(peer.spec ?? {});
    if (!peerSpec.success) continue;
    if (kafkaTopicName(peerSpec.data, peer) !== name) continue;
    if (JSON.stringify(peerSpec.data.kafka?.bootstrapServers ?? null) !== cluster) continue;
    if (age(peer) < age(resource)) {
      return {
        reason: Reason.TopicNameConflict,
        message: `Topic ${peer.metadata.namespace}/${peer.metadata.name} already manages Kafka topic ${name}; this Topic is ignored until one of them changes spec.topicName`,
      };
    }
  }
  return undefined;
}

export async function reconcileTopic(
  resource: KubeObject,
  context: Context<KubeObject>,
  settings: Settings,
): Promise<Action | undefined> {
  const spec = specOf(topicDefinition, resource);
  const { namespace = "", name } = resource.metadata;
  const previous = storedStatus(resource) as TopicStatus & Record<string, unknown>;
  const topicName = kafkaTopicName(spec, resource);
  const { conditions: _conditions, observedGeneration: _generation, ...kept } = previous;

  if (spec.clusterOperation.reconciliationPaused) {
    // Spec ignored: Kafka and the children are left as they are; the status says so.
    await writeHealth(context, resource, pausedHealth, kept);
    return undefined;
  }

  const conflict = nameConflict(resource, spec, context.cachedPeers(namespace));
  if (conflict) {
    await writeHealth(context, resource, topicHealth([conflict], [], false), kept);
    await context.event(resource, "Warning", conflict.reason, conflict.message);
    return undefined;
  }

  const connection = await resolveConnection(
    context.client,
    namespace,
    spec.kafka,
    settings.defaultBootstrap,
    describe(resource),
  );
  let admin: Admin;
  try {
    admin = await settings.admins.get(connection);
  } catch (error) {
    throw kafkaError(error, `${describe(resource)}: connecting to Kafka`, connection);
  }
  let outcome: TopicOutcome;
  try {
    outcome = await ensureTopic(resource, spec, context, admin, connection);
  } catch (error) {
    // The API server's answers (a conflict on the annotation write) keep their own handling.
    if (error instanceof ApiError) throw error;
    throw kafkaError(error, `${describe(resource)}: Kafka topic ${topicName}`, connection);
  }

  const problems = [...outcome.problems];
  const pools = targetBlockPools(context, namespace, spec);
  problems.push(...pools.problems);
  const input: TopicBuildInput = {
    resource,
    spec,
    image: context.image,
    brokers: connection.brokers,
    webHdfsPorts: pools.webHdfsPorts,
    kafkaSecretVersions: connection.secretVersions,
  };
  let applied: KubeObject[] = [];
  if (outcome.owned) {
    // Collectors and sinks only ever work on a topic this resource manages.
    await ensureDeadLetterTopic(resource, spec, admin, connection);
    // A removed or renamed sink's Deployment, a removed collector's Deployment and Service go.
    // A sink the data plane cannot run yet keeps the Deployment its last runnable spec made.
    const waiting = new Set(
      spec.sinks
        .filter((sink) => !runnableSinks(spec).includes(sink))
        .map((sink) => sinkDeploymentName(name, sink.name)),
    );
    applied = await context.applyAndPrune(resource, desiredChildren(input), {
      keep: (child) => child.kind === "Deployment" && waiting.has(child.metadata.name),
    });
    problems.push(...unsupportedSinks(spec));
  }

  const stopped = spec.clusterOperation.stopped;
  const want = (replicas: number) => (stopped ? 0 : replicas);
  const deployment = (deploymentName: string) =>
    applied.find((child) => child.kind === "Deployment" && child.metadata.name === deploymentName) ??
    context.cachedChild(builtin.deployment, namespace, deploymentName);
  const clickstream = spec.ingest?.clickstream;
  const roles: RoleState[] = [];
  const collector = clickstream
    ? deploymentState("collectors", want(clickstream.replicas), deployment(collectorName(name)))
    : undefined;
  if (collector) roles.push(collector);
  const sinks = runnableSinks(spec).map((sink) => ({
    sink,
    state: deploymentState(
      `sink ${sink.name} pods`,
      want(sink.replicas),
      deployment(sinkDeploymentName(name, sink.name)),
    ),
  }));
  roles.push(...sinks.map(({ state }) => state));

  const observed = outcome.observed;
  const previousSinks = new Map((previous.sinks ?? []).map((sink) => [sink.name, sink]));
  const fields: Partial<TopicStatus> = {
    topicName,
    ...(observed?.topicId ? { topicId: observed.topicId } : {}),
    ...(observed ? { partitions: observed.partitions, replicationFactor: observed.replicationFactor } : {}),
    ...(collector
      ? {
          collector: {
            replicas: collector.replicas,
            readyReplicas: collector.ready,
            endpoint: collectorEndpoint(input),
          },
        }
      : {}),
    ...(spec.sinks.length > 0
      ? {
          sinks: spec.sinks.map((sink) => ({
            // What the sink pods report of their files is kept; readiness is the Deployment's.
            ...previousSinks.get(sink.name),
            name: sink.name,
            readyReplicas: sinks.find((entry) => entry.sink.name === sink.name)?.state.ready ?? 0,
          })),
        }
      : {}),
  };
  // Every collector and sink pod of this Topic, from the pod watch's cache.
  const pods = podProblem(
    context.cachedObjects(builtin.pod, { namespace, labels: instanceLabels(resource) }),
  );
  const health = topicHealth(problems, roles, stopped, pods);
  await announcePodProblem(context, resource, health, pods);
  await writeHealth(context, resource, health, fields);
  if (problems.length > 0) {
    await context.event(resource, "Warning", problems[0]!.reason, problems.map((p) => p.message).join("; "));
    return { requeueAfterMs: retryMs };
  }
  return { requeueAfterMs: health.ready.status === ConditionStatus.True ? driftCheckMs : retryMs };
}

/**
 * The finalizer's cleanup: with `deletionPolicy: Delete` the Kafka topic goes (and the default
 * dead-letter topic `<topic>.dlq` with it), but only a topic this resource owns; with Retain
 * everything stays. The children go with the resource through their owner references.
 */
export async function cleanupTopic(
  resource: KubeObject,
  context: Context<KubeObject>,
  settings: Settings,
): Promise<void> {
  const parsed = topicDefinition.spec.safeParse(resource.spec ?? {});
  const who = describe(resource);
  if (!parsed.success || parsed.data.deletionPolicy !== "Delete") {
    context.log.info({ topic: resource.metadata.name }, "deletionPolicy Retain: the Kafka topic is kept");
    return;
  }
  const spec = parsed.data;
  const name = kafkaTopicName(spec, resource);
  const connection = await resolveConnection(
    context.client,
    resource.metadata.namespace ?? "",
    spec.kafka,
    settings.defaultBootstrap,
    who,
  );
  try {
    const admin = await settings.admins.get(connection);
    const observed = await describeTopic(admin, connection, name);
    if (!observed) return;
    if (!isOwned(resource, observed)) {
      await context.event(
        resource,
        "Warning",
        Reason.Deleting,
        `Kafka topic ${name} is not deleted: ${who} did not create or adopt it`,
      );
      return;
    }
    await deleteTopic(admin, name);
    const deadLetter = deadLetterTopicName(spec, resource);
    if (deadLetter === `${name}.dlq`) await deleteTopic(admin, deadLetter);
    context.log.info({ topic: name }, "deletionPolicy Delete: deleted the Kafka topic");
  } catch (error) {
    if (error instanceof ApiError) throw error;
    throw kafkaError(error, `${who}: deleting Kafka topic ${name}`, connection);
  }
}

/**
 * The WebHDFS port of each BlockPool a sink writes to, from the pool's spec: a pool serving on
 * another port than 9870 is followed. A pool that does not exist (yet) is reported; its sink
 * starts anyway and retries until the pool serves.
 */
function targetBlockPools(
  context: Context<KubeObject>,
  namespace: string,
  spec: TopicSpec,
): { webHdfsPorts: Record<string, number>; problems: SpecProblem[] } {
  const webHdfsPorts: Record<string, number> = {};
  const problems: SpecProblem[] = [];
  for (const [index, sink] of spec.sinks.entries()) {
    const pool = sink.target.blockPool?.blockPool;
    if (!pool || pool in webHdfsPorts) continue;
    // From the watch's cache: the watch below wakes this Topic when the pool appears or changes.
    const found = context
      .cachedObjects(resourceType(blockPoolDefinition), { namespace })
      .find((candidate) => candidate.metadata.name === pool);
    if (!found) {
      problems.push({
        reason: Reason.DependencyNotFound,
        message: `spec.sinks[${index}] (${sink.name}): BlockPool ${namespace}/${pool} does not exist; the sink retries until it does`,
      });
      continue;
    }
    webHdfsPorts[pool] = specOf(blockPoolDefinition, found).webHdfs.port;
  }
  return { webHdfsPorts, problems };
}

/** The BlockPools a Topic's sinks write to, by name (same namespace). */
function sinkBlockPools(topic: KubeObject): string[] {
  const sinks = (topic.spec as { sinks?: { target?: { blockPool?: { blockPool?: string } } }[] } | undefined)
    ?.sinks;
  return (sinks ?? []).flatMap((sink) => sink.target?.blockPool?.blockPool ?? []);
}

/**
 * The Topic controller. It keeps one connected Kafka admin client per cluster between
 * reconciles, and disconnects them in `stop`, which the operator calls after the last reconcile.
 */
export function createTopicController(
  options: TopicControllerOptions = {},
): ControllerDefinition<KubeObject> {
  const settings: Settings = {
    defaultBootstrap: options.defaultBootstrap ?? parseBootstrap(process.env.TRIBUTARY_KAFKA_BOOTSTRAP),
    admins: new KafkaAdmins(options.log),
  };
  return {
    type: topicType,
    owns: [builtin.deployment, builtin.service],
    watches: [
      // A pool appearing, or moving its WebHDFS port, changes where the sinks that write to it point.
      {
        type: resourceType(blockPoolDefinition),
        fingerprint: (pool) => (pool.spec as { webHdfs?: { port?: number } } | undefined)?.webHdfs?.port,
        map: (pool, topics) =>
          topics()
            .filter(
              (topic) =>
                topic.metadata.namespace === pool.metadata.namespace &&
                sinkBlockPools(topic).includes(pool.metadata.name),
            )
            .map(objectKey),
      },
      // A collector or sink pod that cannot start, or starts running again, changes the health.
      podWatch(topicDefinition.kind),
    ],
    reconcile: (resource, context) => reconcileTopic(resource, context, settings),
    cleanup: (resource, context) => cleanupTopic(resource, context, settings),
    stop: () => settings.admins.close(),
  };
}
