/** Every controller the operator runs, one per custom resource. */
import type { Logger } from "../log.js";
import type { ControllerDefinition } from "../operator/controller.js";
import type { KubeObject } from "../operator/kube.js";
import { blockPoolController } from "./blockpool/reconcile.js";
import { createCdcStreamController } from "./cdcstream/reconcile.js";
import { createDagController } from "./dag/reconcile.js";
import { createTopicController } from "./topic/reconcile.js";
import { createVideoCollectorController } from "./videocollector/reconcile.js";
import { yarnQueueController } from "./yarnqueue/reconcile.js";

export interface ControllerOptions {
  /** Bootstrap brokers of the default Kafka cluster (`--kafka-bootstrap`) for Topics without spec.kafka. */
  kafkaBootstrap?: readonly string[];
  /** Redis of Dags without spec.redis (`--dag-redis-url`); default TRIBUTARY_DAG_REDIS_URL. */
  dagRedisUrl?: string;
  log?: Logger;
}

/** The controllers, built from the operator's options; the operator stops each after its last reconcile. */
export function createControllers(options: ControllerOptions = {}): ControllerDefinition<KubeObject>[] {
  return [
    createTopicController({ defaultBootstrap: options.kafkaBootstrap, log: options.log }),
    createCdcStreamController({ defaultBootstrap: options.kafkaBootstrap }),
    createVideoCollectorController({ defaultBootstrap: options.kafkaBootstrap, log: options.log }),
    blockPoolController,
    yarnQueueController,
    createDagController({ defaultRedisUrl: options.dagRedisUrl }),
  ];
}

/** With the defaults (Kafka from `TRIBUTARY_KAFKA_BOOTSTRAP`): what the chart's RBAC and tests look at. */
export const controllers: ControllerDefinition<KubeObject>[] = createControllers();
