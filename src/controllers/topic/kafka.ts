/**
 * The Kafka side of a Topic: which cluster to talk to, and the few admin operations the
 * reconciler needs (describe, create, alter config, add partitions, delete), each turning
 * Kafka's refusals into errors a condition can carry. The clients themselves and the Metadata
 * v12 codec live in `src/kafka/`.
 *
 * Config changes use AlterConfigs (API 33) with the whole desired set: kafkajs 2.2 has no
 * IncrementalAlterConfigs. AlterConfigs replaces every dynamic config of the topic, so a key
 * removed from `spec.config` goes back to the broker's default, and a key someone set by hand
 * outside the spec is reverted too: the spec is the whole truth, as in Strimzi's
 * unidirectional topic operator. Keys never named in the spec are left to the broker defaults.
 */
import { createHash } from "node:crypto";
import type tls from "node:tls";
import type { Admin, SASLOptions } from "kafkajs";
import kafkajs from "kafkajs";
import type { KafkaClusterRef } from "../../api/common.js";
import { Reason } from "../../api/conditions.js";
import type { KafkaConnection } from "../../kafka/admins.js";
import { fetchTopicMetadataV12, type TopicShape } from "../../kafka/metadata.js";
import { ReconcileError } from "../../operator/controller.js";
import { builtin, type KubeClient } from "../../operator/kube.js";

const { ConfigResourceTypes, ConfigSource } = kafkajs;

/**
 * The bootstrap brokers a Topic's pods and admin use: the spec's, else `defaultBrokers`, the
 * operator's default cluster (its `--kafka-bootstrap` flag, from the chart values).
 */
export function bootstrapServers(
  kafka: KafkaClusterRef | undefined,
  defaultBrokers: readonly string[],
  what: string,
): string[] {
  if (kafka) return kafka.bootstrapServers;
  if (defaultBrokers.length === 0) {
    throw new ReconcileError(
      Reason.KafkaUnavailable,
      `${what}: spec.kafka is not set and the operator has no default cluster (start it with --kafka-bootstrap or TRIBUTARY_KAFKA_BOOTSTRAP, the chart's kafka.bootstrapServers)`,
    );
  }
  return [...defaultBrokers];
}

async function secretData(
  client: KubeClient,
  namespace: string,
  name: string,
  what: string,
  versions: string[],
): Promise<Record<string, string>> {
  const secret = await client.find(builtin.secret, namespace, name);
  if (!secret) {
    throw new ReconcileError(Reason.SecretNotFound, `${what}: Secret ${namespace}/${name} does not exist`);
  }
  versions.push(`${name}@${secret.metadata.resourceVersion ?? ""}`);
  const data = (secret as { data?: Record<string, string> }).data ?? {};
  return Object.fromEntries(
    Object.entries(data).map(([key, value]) => [key, Buffer.from(value, "base64").toString("utf8")]),
  );
}

function secretKey(data: Record<string, string>, key: string, where: string): string {
  const value = data[key];
  if (value === undefined) throw new ReconcileError(Reason.SecretNotFound, `${where} has no key '${key}'`);
  return value;
}

/**
 * Resolves a Topic's cluster reference (`defaultBrokers` when it has none), reading its TLS and
 * SASL Secrets in `namespace`.
 */
export async function resolveConnection(
  client: KubeClient,
  namespace: string,
  kafka: KafkaClusterRef | undefined,
  defaultBrokers: readonly string[],
  what: string,
): Promise<KafkaConnection> {
  const brokers = bootstrapServers(kafka, defaultBrokers, what);
  let ssl: tls.ConnectionOptions | undefined;
  let sasl: SASLOptions | undefined;
  const secretVersions: string[] = [];
  if (kafka?.tls?.enabled) {
    ssl = {};
    const { caSecret, clientCertificateSecret } = kafka.tls;
    if (caSecret) {
      const data = await secretData(
        client,
        namespace,
        caSecret.name,
        `${what}: spec.kafka.tls.caSecret`,
        secretVersions,
      );
      ssl.ca = [secretKey(data, caSecret.key, `Secret ${namespace}/${caSecret.name}`)];
    }
    if (clientCertificateSecret) {
      const where = `Secret ${namespace}/${clientCertificateSecret.name}`;
      const data = await secretData(
        client,
        namespace,
        clientCertificateSecret.name,
        `${what}: spec.kafka.tls.clientCertificateSecret`,
        secretVersions,
      );
      ssl.cert = secretKey(data, "tls.crt", where);
      ssl.key = secretKey(data, "tls.key", where);
    }
  }
  if (kafka?.sasl) {
    const { mechanism, credentialsSecret } = kafka.sasl;
    const where = `Secret ${namespace}/${credentialsSecret.name}`;
    const data = await secretData(
      client,
      namespace,
      credentialsSecret.name,
      `${what}: spec.kafka.sasl.credentialsSecret`,
      secretVersions,
    );
    const username = secretKey(data, "username", where);
    const password = secretKey(data, "password", where);
    sasl = { mechanism, username, password } as SASLOptions;
  }
  const key = createHash("sha256")
    .update(JSON.stringify([brokers, ssl ?? null, sasl ?? null]))
    .digest("hex");
  return { brokers, ssl, sasl, key, secretVersions };
}

/** A topic as Kafka has it. */
export interface ObservedTopic {
  name: string;
  /** Kafka's topic id (base64url, as `kafka-topics.sh` prints it); undefined when unavailable. */
  topicId?: string;
  partitions: number;
  replicationFactor: number;
  /** Configs set on the topic itself (source DYNAMIC_TOPIC_CONFIG), not inherited defaults. */
  config: Record<string, string>;
  /** Every topic config name the broker knows: what `spec.config` keys are checked against. */
  knownConfigNames: Set<string>;
}

interface KafkaError {
  name?: string;
  cause?: unknown;
}

/** The errors inside a kafkajs error: an aggregate's (one per topic), else the error itself. */
function innerErrors(error: unknown): unknown[] {
  if (error instanceof kafkajs.KafkaJSAggregateError) return error.errors.flatMap(innerErrors);
  const retries = error as KafkaError | undefined;
  if (retries?.name === "KafkaJSNumberOfRetriesExceeded" && retries.cause) return innerErrors(retries.cause);
  return [error];
}

/** The protocol error type (`TOPIC_ALREADY_EXISTS`, `INVALID_CONFIG`…) of an error, if any. */
export function protocolErrorType(error: unknown): string | undefined {
  for (const inner of innerErrors(error)) {
    // kafkajs's subclasses (KafkaJSCreateTopicError…) carry the broker's error type too.
    if (inner instanceof kafkajs.KafkaJSProtocolError) return inner.type;
  }
  return undefined;
}

/** The broker's own words: an aggregate's message is only "Topic creation errors". */
export function kafkaMessage(error: unknown): string {
  return innerErrors(error)
    .map((inner) => (inner instanceof Error ? inner.message : String(inner)))
    .join("; ");
}

/**
 * A Kafka failure as a reconcile error: a protocol refusal keeps its message; anything else
 * (connection refused, timeout, no broker) means the cluster cannot be reached.
 */
export function kafkaError(error: unknown, what: string, connection: KafkaConnection): ReconcileError {
  if (error instanceof ReconcileError) return error;
  const message = kafkaMessage(error);
  if (protocolErrorType(error)) {
    return new ReconcileError(Reason.ReconcileFailed, `${what}: Kafka refused: ${message}`, { cause: error });
  }
  return new ReconcileError(
    Reason.KafkaUnavailable,
    `${what}: Kafka at ${connection.brokers.join(",")} is unavailable: ${message}`,
    { cause: error },
  );
}

/** Describes a topic: metadata, its own configs and the known config names; undefined when absent. */
export async function describeTopic(
  admin: Admin,
  connection: KafkaConnection,
  name: string,
): Promise<ObservedTopic | undefined> {
  const shape = await topicShape(admin, connection, name);
  if (!shape) return undefined;
  const described = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name }],
    includeSynonyms: false,
  });
  const entries = described.resources[0]?.configEntries ?? [];
  const config: Record<string, string> = {};
  for (const entry of entries) {
    if (entry.configSource === ConfigSource.TOPIC_CONFIG) config[entry.configName] = entry.configValue;
  }
  return { name, ...shape, config, knownConfigNames: new Set(entries.map((entry) => entry.configName)) };
}

/**
 * Partitions, replication factor and id of a topic. The Metadata v12 request answers all three
 * and never creates the topic; with SASL (which that request does not speak) kafkajs's metadata
 * gives the shape without the id.
 */
async function topicShape(
  admin: Admin,
  connection: KafkaConnection,
  name: string,
): Promise<TopicShape | undefined> {
  const described = await fetchTopicMetadataV12(connection, [name]);
  if (described) return described.get(name);
  const topics = await admin.listTopics();
  if (!topics.includes(name)) return undefined;
  const metadata = await admin.fetchTopicMetadata({ topics: [name] });
  const topic = metadata.topics.find((entry) => entry.name === name);
  if (!topic) return undefined;
  return {
    partitions: topic.partitions.length,
    replicationFactor: Math.max(0, ...topic.partitions.map((partition) => partition.replicas.length)),
  };
}

export interface DesiredTopic {
  name: string;
  partitions: number;
  replicationFactor: number;
  config: Record<string, string>;
}

/**
 * Creates a topic; answers false when it appeared meanwhile (another reconcile, another tool).
 * kafkajs itself resolves false for TOPIC_ALREADY_EXISTS: ignoring its answer would adopt a
 * topic that a metadata lookup on a lagging broker missed, and delete it with the resource.
 */
export async function createTopic(admin: Admin, topic: DesiredTopic): Promise<boolean> {
  try {
    return await admin.createTopics({
      // kafkajs waits on the broker it calls the controller, which under KRaft may not have the new
      // topic yet and answers UNKNOWN_TOPIC_OR_PARTITION; the caller polls metadata instead.
      waitForLeaders: false,
      topics: [
        {
          topic: topic.name,
          numPartitions: topic.partitions,
          replicationFactor: topic.replicationFactor,
          configEntries: Object.entries(topic.config).map(([name, value]) => ({ name, value })),
        },
      ],
    });
  } catch (error) {
    if (protocolErrorType(error) === "TOPIC_ALREADY_EXISTS") return false;
    throw error;
  }
}

/**
 * The entries of `config` the broker refuses, each tried alone in a validate-only creation:
 * kafkajs reports a refused creation with the generic "Configuration is invalid", and a user
 * needs to know which key (unknown name or bad value) to fix.
 */
export async function refusedConfigEntries(admin: Admin, topic: DesiredTopic): Promise<string[]> {
  const refused: string[] = [];
  for (const [name, value] of Object.entries(topic.config)) {
    try {
      await admin.createTopics({
        validateOnly: true,
        topics: [
          {
            topic: topic.name,
            numPartitions: topic.partitions,
            replicationFactor: topic.replicationFactor,
            configEntries: [{ name, value }],
          },
        ],
      });
    } catch (error) {
      const type = protocolErrorType(error);
      if (type === "INVALID_CONFIG" || type === "INVALID_REQUEST" || type === "POLICY_VIOLATION") {
        refused.push(`${name}=${value}`);
      } else {
        throw error;
      }
    }
  }
  return refused;
}

/** Sets the topic's dynamic configs to exactly `config` (see the file comment for why). */
export async function replaceTopicConfig(
  admin: Admin,
  name: string,
  config: Record<string, string>,
): Promise<void> {
  await admin.alterConfigs({
    validateOnly: false,
    resources: [
      {
        type: ConfigResourceTypes.TOPIC,
        name,
        configEntries: Object.entries(config).map(([configName, value]) => ({ name: configName, value })),
      },
    ],
  });
}

/** Whether the topic's own configs differ from the desired set, in either direction. */
export function configDiffers(observed: Record<string, string>, desired: Record<string, string>): boolean {
  const keys = new Set([...Object.keys(observed), ...Object.keys(desired)]);
  for (const key of keys) if (observed[key] !== desired[key]) return true;
  return false;
}

export async function addPartitions(admin: Admin, name: string, count: number): Promise<void> {
  await admin.createPartitions({ topicPartitions: [{ topic: name, count }] });
}

/** Deletes a topic; one that is already gone counts as deleted. */
export async function deleteTopic(admin: Admin, name: string): Promise<void> {
  try {
    await admin.deleteTopics({ topics: [name] });
  } catch (error) {
    if (protocolErrorType(error) === "UNKNOWN_TOPIC_OR_PARTITION") return;
    throw error;
  }
}

export async function brokerCount(admin: Admin): Promise<number> {
  return (await admin.describeCluster()).brokers.length;
}
