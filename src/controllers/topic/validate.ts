import { Reason } from "../../api/conditions.js";
import type { TopicSpec, TopicStatus } from "../../api/topic.js";
import type { SpecProblem } from "../common.js";

/**
 * Kafka can add partitions but never remove them. The CRD's transition rule refuses a lower
 * `spec.partitions` on update; this catches what that rule cannot see: a topic recreated with
 * fewer partitions than the Kafka topic it adopts (status.partitions is what Kafka has).
 */
export function validateTopic(spec: TopicSpec, status: TopicStatus | undefined): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const existing = status?.partitions;
  if (existing !== undefined && spec.partitions < existing) {
    problems.push({
      reason: Reason.PartitionsCannotShrink,
      message: `spec.partitions is ${spec.partitions} but the topic already has ${existing} partitions: Kafka cannot remove partitions (keep ${existing} or more)`,
    });
  }
  return problems;
}
