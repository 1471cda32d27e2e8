/**
 * Conditions, the one health vocabulary of every Tributary resource. The shape follows
 * `metav1.Condition` so kstatus-aware tools (Argo CD, Flux, `kubectl wait`) read it unchanged.
 */
import { z } from "zod";

/** The three condition types every resource reports. */
export const ConditionType = {
  /** The resource does what its spec asks: children exist and are ready, external state matches. */
  Ready: "Ready",
  /** The operator is moving the world towards the spec (creating, scaling, rolling out). */
  Progressing: "Progressing",
  /** Something is wrong that the operator cannot fix by itself; the reason says what. */
  Degraded: "Degraded",
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];
export const conditionTypes = Object.values(ConditionType);

export const ConditionStatus = { True: "True", False: "False", Unknown: "Unknown" } as const;
export type ConditionStatus = (typeof ConditionStatus)[keyof typeof ConditionStatus];

/**
 * Every condition reason, CamelCase, in one place so dashboards and alerts can rely on them.
 * Generic reasons come first; kind-specific ones are grouped by the kind that sets them.
 */
export const Reason = {
  // generic
  Reconciled: "Reconciled",
  Reconciling: "Reconciling",
  Created: "Created",
  Updating: "Updating",
  ScalingUp: "ScalingUp",
  ScalingDown: "ScalingDown",
  WaitingForChildren: "WaitingForChildren",
  ChildrenReady: "ChildrenReady",
  InvalidSpec: "InvalidSpec",
  ReconcileFailed: "ReconcileFailed",
  ReconciliationPaused: "ReconciliationPaused",
  Stopped: "Stopped",
  Deleting: "Deleting",
  CleanupFailed: "CleanupFailed",
  DependencyNotFound: "DependencyNotFound",
  DependencyNotReady: "DependencyNotReady",
  SecretNotFound: "SecretNotFound",
  /** A container of the resource's pods cannot start or keeps dying (image, config, crash, memory). */
  PodsFailing: "PodsFailing",
  /** A pod of the resource fits on no node; the scheduler's message says why. */
  PodsUnschedulable: "PodsUnschedulable",
  // Topic
  KafkaUnavailable: "KafkaUnavailable",
  TopicCreated: "TopicCreated",
  TopicConfigUpdated: "TopicConfigUpdated",
  PartitionsCannotShrink: "PartitionsCannotShrink",
  ReplicationFactorTooLarge: "ReplicationFactorTooLarge",
  TopicNameConflict: "TopicNameConflict",
  TopicExistsWithDifferentShape: "TopicExistsWithDifferentShape",
  ReplicationFactorCannotChange: "ReplicationFactorCannotChange",
  InvalidTopicConfig: "InvalidTopicConfig",
  SinkFailing: "SinkFailing",
  // CDCStream
  DatabaseUnavailable: "DatabaseUnavailable",
  SlotMissing: "SlotMissing",
  SlotInUse: "SlotInUse",
  PublicationMissing: "PublicationMissing",
  SnapshotRunning: "SnapshotRunning",
  SnapshotFailed: "SnapshotFailed",
  Streaming: "Streaming",
  // VideoCollector
  SourceUnreachable: "SourceUnreachable",
  SourcesLive: "SourcesLive",
  // BlockPool
  Serving: "Serving",
  NoActiveNameNode: "NoActiveNameNode",
  Failover: "Failover",
  UnderReplicated: "UnderReplicated",
  MissingBlocks: "MissingBlocks",
  InsufficientDataNodes: "InsufficientDataNodes",
  Decommissioning: "Decommissioning",
  Decommissioned: "Decommissioned",
  DecommissionCanceled: "DecommissionCanceled",
  NameNodeUnreachable: "NameNodeUnreachable",
  // YarnQueue
  ParentNotFound: "ParentNotFound",
  CapacityExceeded: "CapacityExceeded",
  QueueStopped: "QueueStopped",
  ClusterNotFound: "ClusterNotFound",
  // Dag
  DagCycle: "DagCycle",
  UnknownDependency: "UnknownDependency",
  InvalidSchedule: "InvalidSchedule",
  RedisUnavailable: "RedisUnavailable",
  Paused: "Paused",
  RunFailed: "RunFailed",
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

export const conditionSchema = z
  .object({
    type: z.string().min(1).max(316).describe("Type of the condition: Ready, Progressing or Degraded."),
    status: z
      .enum([ConditionStatus.True, ConditionStatus.False, ConditionStatus.Unknown])
      .describe("Status of the condition: True, False or Unknown."),
    observedGeneration: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe(
        "The metadata.generation the condition was computed from; older than the object's generation means the condition is stale.",
      ),
    lastTransitionTime: z.iso
      .datetime({ offset: true })
      .describe("When the status last changed (RFC 3339); unchanged when only reason or message change."),
    reason: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
      .describe("A CamelCase, machine-readable reason for the condition's last transition."),
    message: z.string().max(32768).describe("A human-readable explanation of the condition; may be empty."),
  })
  .describe("The state of one aspect of the resource, as metav1.Condition.");
export type Condition = z.infer<typeof conditionSchema>;

export const conditionsSchema = z
  .array(conditionSchema)
  .max(8)
  .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] })
  .describe("Latest observations of the resource's state: Ready, Progressing and Degraded.");

/** Status fields every resource has; spread into each kind's status object. */
export const commonStatusFields = {
  observedGeneration: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe("The metadata.generation the operator last reconciled; kstatus reads health from it."),
  conditions: conditionsSchema.optional(),
};

/** The condition of `type` in a list, if present. */
export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((condition) => condition.type === type);
}
