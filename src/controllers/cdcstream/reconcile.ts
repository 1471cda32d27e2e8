/**
 * CDCStream: validate → build → apply → check the source (cached) → ask the connector → ad hoc
 * snapshot requests → scheduled snapshot Jobs → status; and the finalizer's cleanup, which drops
 * the replication slot and the publication or keeps them, as `deletionPolicy` says.
 *
 * The connector is asked at its pod's stable DNS name through the headless Service, as the
 * BlockPool operator asks its name nodes; figures are refreshed every `refreshMs`.
 */
import { blockPoolDefinition } from "../../api/blockpool.js";
import { type CDCStreamSpec, type CDCStreamStatus, cdcStreamDefinition } from "../../api/cdcstream.js";
import { ConditionStatus, ConditionType, Reason } from "../../api/conditions.js";
import { parseSpec } from "../../api/resource.js";
import { parseBootstrap } from "../../kafka/admins.js";
import { setCondition } from "../../operator/conditions.js";
import { type Context, type ControllerDefinition, ReconcileError } from "../../operator/controller.js";
import { builtin, isNotFound, type KubeObject, objectKey } from "../../operator/kube.js";
import {
  announcePodProblem,
  instanceLabel,
  pausedHealth,
  reportProblems,
  resourceType,
  type SpecProblem,
  selectorLabels,
  specOf,
  storedStatus,
  writeHealth,
} from "../common.js";
import { podProblem, podWatch } from "../podHealth.js";
import {
  type CdcBuildInput,
  connectorHttpPort,
  connectorName,
  desiredChildren,
  jobType,
  publicationNameOf,
  slotNameOf,
  snapshotJob,
  snapshotJobName,
} from "./build.js";
import { type ConnectorStatus, connectorStatus, requestSnapshot } from "./connectorClient.js";
import { decideSnapshot, mergeSnapshots } from "./snapshots.js";
import {
  type Credentials,
  type PreflightResult,
  preflight,
  releaseSourceState,
  SlotStillActive,
  type SourceConnection,
  SourceReason,
} from "./source.js";
import { CdcReason, cdcHealth, connectorFigures } from "./status.js";
import { validateCdcStream } from "./validate.js";

export interface CdcStreamControllerOptions {
  /** Bootstrap brokers of the operator's default Kafka cluster; default `TRIBUTARY_KAFKA_BOOTSTRAP`. */
  defaultBootstrap?: readonly string[];
  /** Base URL (no path) of the connector's HTTP port; by default its pod's in-cluster DNS name. */
  connectorUrl?: (stream: string, namespace: string) => string;
  /** Deadline of each request to the connector; default 2 s. */
  requestTimeoutMs?: number;
  /** How often the connector's figures are refreshed; default 15 s. */
  refreshMs?: number;
  /** How often the source database is checked again with an unchanged spec; default 60 s. */
  preflightIntervalMs?: number;
  /** How long after deletion an unreachable database is retried before its slot is left behind; default 10 min. */
  cleanupDeadlineMs?: number;
  /** How long deletion waits for the connector pod to go before its walsender is terminated; default 60 s. */
  podGoneWaitMs?: number;
}

export const inClusterConnectorUrl = (stream: string, namespace: string) =>
  `http://${connectorName(stream)}-0.${connectorName(stream)}.${namespace}.svc:${connectorHttpPort}`;

type Settings = Required<Omit<CdcStreamControllerOptions, "defaultBootstrap">> & {
  defaultBootstrap: readonly string[];
  /** The last preflight per resource uid: the source is not asked on every reconcile. */
  preflights: Map<string, { key: string; at: number; result: PreflightResult }>;
};

const cdcType = resourceType(cdcStreamDefinition);

/** Reads the credentials Secret; a missing Secret or key is a problem a user fixes. */
async function credentialsOf(
  context: Context<KubeObject>,
  namespace: string,
  spec: CDCStreamSpec,
): Promise<{ credentials: Credentials; version: string; ca?: string } | { problem: SpecProblem }> {
  const pg = spec.source.postgres;
  const name = pg.credentialsSecret.name;
  const secret = await context.client.find(builtin.secret, namespace, name);
  const data = (secret?.data ?? {}) as Record<string, string>;
  const decode = (key: string) =>
    data[key] === undefined ? undefined : Buffer.from(data[key], "base64").toString();
  const user = decode("username");
  const password = decode("password");
  if (!secret || user === undefined || password === undefined) {
    return {
      problem: {
        reason: SourceReason.SecretNotFound,
        message: secret
          ? `Secret ${namespace}/${name} (spec.source.postgres.credentialsSecret) lacks the key ${user === undefined ? "username" : "password"}`
          : `Secret ${namespace}/${name} (spec.source.postgres.credentialsSecret) does not exist`,
      },
    };
  }
  let ca: string | undefined;
  let caVersion = "";
  if (pg.sslRootCertSecret) {
    const caSecret = await context.client.find(builtin.secret, namespace, pg.sslRootCertSecret.name);
    const value = (caSecret?.data as Record<string, string> | undefined)?.[pg.sslRootCertSecret.key];
    if (value === undefined) {
      return {
        problem: {
          reason: SourceReason.SecretNotFound,
          message: `Secret ${namespace}/${pg.sslRootCertSecret.name} (spec.source.postgres.sslRootCertSecret) ${caSecret ? `lacks the key ${pg.sslRootCertSecret.key}` : "does not exist"}`,
        },
      };
    }
    ca = Buffer.from(value, "base64").toString();
    caVersion = caSecret?.metadata.resourceVersion ?? "";
  }
  return {
    credentials: { user, password },
    version: `${secret.metadata.resourceVersion ?? ""}/${caVersion}`,
    ...(ca ? { ca } : {}),
  };
}

const isReady = (pod: KubeObject) =>
  !pod.metadata.deletionTimestamp &&
  ((pod.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some(
    (condition) => condition.type === "Ready" && condition.status === "True",
  );

export async function reconcileCdcStream(
  resource: KubeObject,
  context: Context<KubeObject>,
  settings: Settings,
) {
  const spec = specOf(cdcStreamDefinition, resource);
  const { namespace = "", name } = resource.metadata;
  const previous = storedStatus(resource) as CDCStreamStatus & Record<string, unknown>;
  const { conditions: _c, observedGeneration: _g, ...kept } = previous;
  const problems = validateCdcStream(spec);
  const brokers = spec.target.kafka?.bootstrapServers ?? [...settings.defaultBootstrap];
  if (brokers.length === 0) {
    problems.push({
      reason: Reason.KafkaUnavailable,
      message:
        "spec.target.kafka is not set and the operator has no default Kafka cluster (--kafka-bootstrap, chart value kafka.bootstrapServers)",
    });
  }
  if (problems.length > 0) {
    await reportProblems(context, resource, problems, kept);
    return undefined;
  }
  if (spec.clusterOperation.reconciliationPaused) {
    await writeHealth(context, resource, pausedHealth, kept);
    return undefined;
  }
  const input: CdcBuildInput = { resource, spec, image: context.image, brokers };
  await context.applyAndPrune(resource, desiredChildren(input));

  const pods = context.cachedObjects(builtin.pod, {
    namespace,
    labels: selectorLabels(resource, "connector"),
  });
  const pod = pods.find((candidate) => !candidate.metadata.deletionTimestamp);
  const podReady = pod !== undefined && isReady(pod);
  const podIp = (pod?.status as { podIP?: string } | undefined)?.podIP;

  const source = await checkSource(resource, spec, context, settings, podIp);

  let connector: { status: ConnectorStatus } | { error: string } | undefined;
  if (!spec.clusterOperation.stopped && pod) {
    try {
      connector = {
        status: await connectorStatus(settings.connectorUrl(name, namespace), settings.requestTimeoutMs),
      };
    } catch (error) {
      connector = { error: error instanceof Error ? error.message : String(error) };
    }
  }
  const status = connector && "status" in connector ? connector.status : undefined;
  const requests = await sendSnapshotRequests(spec, status, context, settings, name, namespace);

  const scheduled = await scheduleSnapshots(resource, spec, context, input, previous, async (id) => {
    if (!status) throw new Error("the connector does not answer");
    await requestSnapshot(
      settings.connectorUrl(name, namespace),
      { id, tables: status.tables },
      settings.requestTimeoutMs,
    );
  });

  const podTrouble = podProblem(pods);
  // A connector that streams from the slot is the one holding it, whatever address the database
  // saw (behind NAT, the node's rather than the pod's).
  const holding = status?.state === "streaming" || status?.state === "snapshotting";
  const sourceProblems = holding
    ? source.problems.filter((problem) => problem.reason !== SourceReason.SlotInUse)
    : source.problems;
  const health = cdcHealth({ spec, sourceProblems, podReady, pods: podTrouble, connector });
  await announcePodProblem(context, resource, health, podTrouble);
  await announceSourceProblems(context, resource, sourceProblems);

  const figures = connectorFigures(status);
  const withoutFull = figures.tablesWithoutFullIdentity ?? source.tablesWithoutFullIdentity;
  await announceIdentity(context, resource, previous.tablesWithoutFullIdentity, withoutFull, spec);
  const fields: Record<string, unknown> = {
    ...kept,
    slotName: slotNameOf(input),
    publicationName: publicationNameOf(input),
    ...(source.tables ? { tables: source.tables } : {}),
    ...figures,
    ...(withoutFull ? { tablesWithoutFullIdentity: withoutFull } : {}),
    ...(requests.length > 0 ? { snapshotRequests: requests } : {}),
    ...scheduled.fields,
  };
  if (!spec.snapshot.requests?.length) delete fields.snapshotRequests;
  if (!spec.snapshot.schedule) delete fields.nextSnapshotTime;
  await writeHealth(context, resource, health, fields);
  if (spec.clusterOperation.stopped && !scheduled.nextAt) return undefined;
  const untilNext = scheduled.nextAt ? Math.max(1_000, scheduled.nextAt - context.now().getTime()) : Infinity;
  return { requeueAfterMs: Math.min(settings.refreshMs, untilNext) };
}

/**
 * The preflight, at most once per `preflightIntervalMs` for the same spec, Secret and pod: a
 * reconcile every few seconds must not open a database connection each time.
 */
async function checkSource(
  resource: KubeObject,
  spec: CDCStreamSpec,
  context: Context<KubeObject>,
  settings: Settings,
  podIp: string | undefined,
): Promise<PreflightResult> {
  const { namespace = "", uid = objectKey(resource) } = resource.metadata;
  const found = await credentialsOf(context, namespace, spec);
  if ("problem" in found) return { problems: [found.problem] };
  const key = JSON.stringify([resource.metadata.generation, found.version, podIp ?? ""]);
  const cached = settings.preflights.get(uid);
  const now = Date.now();
  if (cached && cached.key === key && now - cached.at < settings.preflightIntervalMs) return cached.result;
  const result = await preflight({
    source: spec.source.postgres,
    credentials: found.credentials,
    ...(found.ca ? { caCertificate: found.ca } : {}),
    slotName: slotNameOf({ resource, spec }),
    publicationName: publicationNameOf({ resource, spec }),
    ...(podIp ? { connectorPodIp: podIp } : {}),
    connectorApplicationNames: [
      `${namespace}/${resource.metadata.name}`,
      `${connectorName(resource.metadata.name)}-0`,
      `tributary-cdc-${namespace}-${resource.metadata.name}`,
    ],
  });
  settings.preflights.set(uid, { key, at: now, result });
  return result;
}

/** POSTs each request the connector does not know yet; the answer's states become the status. */
async function sendSnapshotRequests(
  spec: CDCStreamSpec,
  status: ConnectorStatus | undefined,
  context: Context<KubeObject>,
  settings: Settings,
  name: string,
  namespace: string,
): Promise<NonNullable<CDCStreamStatus["snapshotRequests"]>> {
  const wanted = spec.snapshot.requests ?? [];
  const known = new Map((status?.snapshotRequests ?? []).map((request) => [request.id, request]));
  const result: NonNullable<CDCStreamStatus["snapshotRequests"]> = [];
  for (const request of wanted) {
    const seen = known.get(request.id);
    if (seen) {
      result.push(seen);
      continue;
    }
    if (!status) {
      result.push({ id: request.id, state: "Pending", message: "waiting for the connector to answer" });
      continue;
    }
    try {
      await requestSnapshot(settings.connectorUrl(name, namespace), request, settings.requestTimeoutMs);
      result.push({ id: request.id, state: "Pending" });
    } catch (error) {
      context.log.warn({ id: request.id, err: error }, "could not request an ad hoc snapshot");
      result.push({
        id: request.id,
        state: "Pending",
        message: `not yet accepted by the connector: ${error instanceof Error ? error.message : String(error)}`,
      });
    }
  }
  return result;
}

/** Creates the Job of a scheduled time that came, and folds the Jobs' results into status. */
async function scheduleSnapshots(
  resource: KubeObject,
  spec: CDCStreamSpec,
  context: Context<KubeObject>,
  input: CdcBuildInput,
  previous: CDCStreamStatus,
  /** Asks the connector for a snapshot of every captured table into the topics (toTopics). */
  snapshotToTopics: (id: string) => Promise<void>,
): Promise<{ fields: Partial<CDCStreamStatus>; nextAt?: number }> {
  const { namespace = "", name } = resource.metadata;
  const jobs = context
    .cachedObjects(jobType, { namespace, labels: selectorLabels(resource, "snapshot") })
    .filter((job) => job.metadata.labels?.[instanceLabel] === name);
  const timeOf = (job: KubeObject) => {
    const stamp = Number(/-snapshot-(\d+)$/.exec(job.metadata.name)?.[1] ?? Number.NaN);
    return new Date(stamp * 60_000);
  };
  const pods = context.cachedObjects(builtin.pod, {
    namespace,
    labels: selectorLabels(resource, "snapshot"),
  });
  const merged = mergeSnapshots(
    previous.snapshots ?? [],
    jobs.map((job) => ({
      job,
      time: timeOf(job),
      pods: pods.filter((pod) => pod.metadata.labels?.["job-name"] === job.metadata.name),
    })),
  );
  for (const entry of merged) {
    const before = previous.snapshots?.find((old) => old.job === entry.job);
    if (entry.result !== "Running" && before?.result !== entry.result) {
      await context.event(
        resource,
        entry.result === "Succeeded" ? "Normal" : "Warning",
        entry.result === "Succeeded" ? CdcReason.SnapshotSucceeded : CdcReason.SnapshotFailed,
        entry.result === "Succeeded"
          ? `snapshot of ${entry.time} written: ${entry.rows ?? "?"} rows, manifest ${entry.manifest ?? "?"}`
          : `snapshot of ${entry.time} failed (Job ${entry.job}): ${entry.message ?? ""}`,
      );
    }
  }
  const fields: Partial<CDCStreamStatus> = merged.length > 0 ? { snapshots: merged } : {};
  const lastDone = merged.find((entry) => entry.result === "Succeeded");
  if (lastDone) {
    fields.lastSnapshotTime = lastDone.time;
    if (lastDone.rows !== undefined) fields.lastSnapshotRows = lastDone.rows;
  }
  const { schedule, timeZone, files, toTopics } = spec.snapshot;
  if (!schedule || (!files && !toTopics) || spec.clusterOperation.stopped) return { fields };
  const running = jobs.some(
    (job) => mergeSnapshots([], [{ job, time: timeOf(job), pods: [] }])[0]!.result === "Running",
  );
  const since = new Date(
    previous.lastScheduleTime ?? resource.metadata.creationTimestamp ?? context.now().toISOString(),
  );
  const decision = decideSnapshot({ schedule, timeZone, since, now: context.now(), running });
  if (decision.due && toTopics) {
    // Re-read into the topics as op 'r' events by the connector, while it streams (an ad hoc
    // incremental snapshot of every captured table, idempotent by id).
    const id = `scheduled-${Math.floor(decision.due.getTime() / 60_000)}`;
    try {
      await snapshotToTopics(id);
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      if (!files) {
        // Nothing else to run for this time: ask again at the next reconcile.
        context.log.warn({ id, err: error }, "could not request the scheduled snapshot into the topics");
        return {
          fields: { ...fields, nextSnapshotTime: decision.due.toISOString() },
          nextAt: Date.now() + 15_000,
        };
      }
      await context.event(
        resource,
        "Warning",
        CdcReason.SnapshotFailed,
        `the snapshot scheduled at ${decision.due.toISOString()} goes to files only: the connector did not take the request into the topics (${why})`,
      );
    }
    if (!files) fields.lastScheduleTime = decision.due.toISOString();
  }
  if (decision.due && files) {
    let webHdfsPort: number | undefined;
    if (files.blockPool) {
      const pool = await context.client.find(
        resourceType(blockPoolDefinition),
        namespace,
        files.blockPool.blockPool,
      );
      if (pool) webHdfsPort = specOf(blockPoolDefinition, pool).webHdfs.port;
    }
    const job = snapshotJob({ ...input, time: decision.due, ...(webHdfsPort ? { webHdfsPort } : {}) });
    try {
      await context.client.create(jobType, job);
      await context.event(
        resource,
        "Normal",
        CdcReason.SnapshotScheduled,
        `started Job ${job.metadata.name} for the snapshot scheduled at ${decision.due.toISOString()}`,
      );
    } catch (error) {
      // 409: the Job of this time exists already (an earlier reconcile made it).
      if ((error as { statusCode?: number }).statusCode !== 409) throw error;
    }
    fields.lastScheduleTime = decision.due.toISOString();
    const entry = {
      time: decision.due.toISOString(),
      job: snapshotJobName(name, decision.due),
      result: "Running" as const,
    };
    fields.snapshots = mergeSnapshots([entry, ...(fields.snapshots ?? [])], []);
  }
  if (decision.next) fields.nextSnapshotTime = decision.next.toISOString();
  return { fields, ...(decision.next ? { nextAt: decision.next.getTime() } : {}) };
}

/** A Warning event when the source's problems change, beside the Degraded condition. */
async function announceSourceProblems(
  context: Context<KubeObject>,
  resource: KubeObject,
  problems: SpecProblem[],
): Promise<void> {
  if (problems.length === 0) return;
  const message = problems.map((problem) => problem.message).join("; ");
  const degraded = storedStatus(resource).conditions?.find((condition) => condition.type === "Degraded");
  if (degraded?.status === ConditionStatus.True && degraded.message === message) return;
  await context.event(resource, "Warning", problems[0]!.reason, message);
}

/** A Warning event naming the tables whose updates and deletes carry no whole 'before' image. */
async function announceIdentity(
  context: Context<KubeObject>,
  resource: KubeObject,
  before: readonly string[] | undefined,
  now: readonly string[] | undefined,
  spec: CDCStreamSpec,
): Promise<void> {
  if (!now || now.length === 0) return;
  if (before && before.join(",") === now.join(",")) return;
  const fix = spec.source.postgres.beforeImages
    ? "the connector sets REPLICA IDENTITY FULL on them when it starts (spec.source.postgres.beforeImages)"
    : "set spec.source.postgres.beforeImages, or ALTER TABLE ... REPLICA IDENTITY FULL";
  await context.event(
    resource,
    "Warning",
    CdcReason.TablesWithoutFullIdentity,
    `tables without REPLICA IDENTITY FULL, whose updates and deletes carry only the old primary key as 'before': ${now.join(", ")}; ${fix}`,
  );
}

/**
 * Deletion. Retain keeps the slot and publication and says so. Delete drops them: the connector's
 * StatefulSet goes first, its walsender is terminated if it still holds the slot once the pod is
 * gone (or after `podGoneWaitMs`); an unreachable database is retried with backoff for
 * `cleanupDeadlineMs`, then the resource goes and an event and the Degraded condition name what
 * was left behind: blocking deletion for ever would keep a namespace from ever being removed.
 */
async function cleanupCdcStream(resource: KubeObject, context: Context<KubeObject>, settings: Settings) {
  const parsed = parseSpec(cdcStreamDefinition, resource as Parameters<typeof parseSpec>[1]);
  if (!parsed.ok) return;
  const spec = parsed.spec;
  const { namespace = "", name } = resource.metadata;
  const slot = slotNameOf({ resource, spec });
  const publication = publicationNameOf({ resource, spec });
  const pg = spec.source.postgres;
  const where = `database ${pg.database} on ${pg.host}:${pg.port}`;
  settings.preflights.delete(resource.metadata.uid ?? objectKey(resource));
  if (spec.deletionPolicy === "Retain") {
    await context.event(
      resource,
      "Normal",
      CdcReason.SourceStateKept,
      `deletionPolicy Retain: kept replication slot ${slot} and publication ${publication} in ${where}; the slot holds WAL until it is read again or dropped (SELECT pg_drop_replication_slot('${slot}'); DROP PUBLICATION ${publication})`,
    );
    return;
  }
  try {
    await context.client.delete(builtin.statefulSet, namespace, connectorName(name));
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  const pods = await context.client.list(builtin.pod, namespace, {
    labelSelector: Object.entries(selectorLabels(resource, "connector"))
      .map(([key, value]) => `${key}=${value}`)
      .join(","),
  });
  const elapsed =
    context.now().getTime() - Date.parse(resource.metadata.deletionTimestamp ?? context.now().toISOString());
  const podGone = pods.items.length === 0 || elapsed > settings.podGoneWaitMs;
  const found = await credentialsOf(context, namespace, spec);
  try {
    if ("problem" in found) throw new Error(found.problem.message);
    const connection: SourceConnection = {
      source: pg,
      credentials: found.credentials,
      ...(found.ca ? { caCertificate: found.ca } : {}),
    };
    const outcome = await releaseSourceState(connection, slot, publication, podGone);
    // Nothing dropped: an earlier attempt did (its finalizer removal was retried), and said so.
    if (outcome.slotDropped || outcome.publicationDropped) {
      await context.event(
        resource,
        "Normal",
        CdcReason.SourceStateDropped,
        `deletionPolicy Delete: ${outcome.slotDropped ? `dropped replication slot ${slot}` : `replication slot ${slot} was already gone`}${outcome.terminatedPid ? ` (after terminating walsender pid ${outcome.terminatedPid})` : ""} and ${outcome.publicationDropped ? `publication ${publication}` : `publication ${publication} was already gone`} in ${where}`,
      );
    }
  } catch (error) {
    if (error instanceof SlotStillActive) {
      throw new ReconcileError(
        Reason.Deleting,
        `waiting for the connector pod to go before dropping replication slot ${slot} (${error.message})`,
      );
    }
    const why = error instanceof Error ? error.message : String(error);
    if (elapsed < settings.cleanupDeadlineMs) {
      throw new ReconcileError(
        Reason.CleanupFailed,
        `cannot drop replication slot ${slot} and publication ${publication} in ${where} yet: ${why}; retrying until ${Math.round(settings.cleanupDeadlineMs / 1000)} s after deletion`,
      );
    }
    const message = `gave up dropping replication slot ${slot} and publication ${publication} in ${where} after ${Math.round(elapsed / 1000)} s: ${why}. They are LEFT BEHIND: the slot keeps WAL on the server until a DBA runs SELECT pg_drop_replication_slot('${slot}'); DROP PUBLICATION ${publication}`;
    await context.event(resource, "Warning", CdcReason.SourceStateLeftBehind, message);
    // The condition too, for whoever looks before the object goes. The finalizer's removal is
    // conditioned on the resourceVersion read: it carries the one this write produced.
    const status = storedStatus(resource);
    try {
      const written = await context.client.mergePatch(
        cdcType,
        namespace,
        name,
        {
          status: {
            conditions: setCondition(
              status.conditions,
              {
                type: ConditionType.Degraded,
                status: ConditionStatus.True,
                reason: CdcReason.SourceStateLeftBehind,
                message,
              },
              resource.metadata.generation,
              context.now(),
            ),
          },
        },
        "status",
      );
      resource.metadata.resourceVersion = written.metadata.resourceVersion;
    } catch (statusError) {
      context.log.warn({ err: statusError }, "could not write the SourceStateLeftBehind condition");
    }
  }
}

export function createCdcStreamController(
  options: CdcStreamControllerOptions = {},
): ControllerDefinition<KubeObject> {
  const settings: Settings = {
    defaultBootstrap: options.defaultBootstrap ?? parseBootstrap(process.env.TRIBUTARY_KAFKA_BOOTSTRAP),
    connectorUrl: options.connectorUrl ?? inClusterConnectorUrl,
    requestTimeoutMs: options.requestTimeoutMs ?? 2_000,
    refreshMs: options.refreshMs ?? 15_000,
    preflightIntervalMs: options.preflightIntervalMs ?? 60_000,
    cleanupDeadlineMs: options.cleanupDeadlineMs ?? 10 * 60_000,
    podGoneWaitMs: options.podGoneWaitMs ?? 60_000,
    preflights: new Map(),
  };
  return {
    type: cdcType,
    owns: [builtin.statefulSet, builtin.service, builtin.persistentVolumeClaim],
    watches: [
      // The connector's and the snapshot Jobs' pods: readiness, crash loops, termination messages.
      podWatch(cdcStreamDefinition.kind, (pod) => [
        (pod.status as { podIP?: string } | undefined)?.podIP,
        (
          (
            pod.status as
              | { containerStatuses?: { state?: { terminated?: { message?: string } } }[] }
              | undefined
          )?.containerStatuses ?? []
        ).map((status) => status.state?.terminated?.message ?? ""),
      ]),
      // Snapshot Jobs are created, not applied: watched (never pruned), their results read into status.
      {
        type: jobType,
        labelSelector: `app.kubernetes.io/managed-by=tributary,app.kubernetes.io/name=cdcstream`,
        fingerprint: (job) => job.status ?? {},
        map: (job, streams) => {
          const key = `${job.metadata.namespace}/${job.metadata.labels?.[instanceLabel] ?? ""}`;
          return streams().some((stream) => objectKey(stream) === key) ? [key] : [];
        },
      },
    ],
    reconcile: (resource, context) => reconcileCdcStream(resource, context, settings),
    cleanup: (resource, context) => cleanupCdcStream(resource, context, settings),
  };
}
