/** Every controller the operator runs, one per custom resource. */
import type { ControllerDefinition } from "../operator/controller.js";
import type { KubeObject } from "../operator/kube.js";
import { blockPoolController } from "./blockpool/reconcile.js";
import { cdcStreamController } from "./cdcstream/reconcile.js";
import { dagController } from "./dag/reconcile.js";
import { topicController } from "./topic/reconcile.js";
import { videoCollectorController } from "./videocollector/reconcile.js";
import { yarnQueueController } from "./yarnqueue/reconcile.js";

export const controllers: ControllerDefinition<KubeObject>[] = [
  topicController,
  cdcStreamController,
  videoCollectorController,
  blockPoolController,
  yarnQueueController,
  dagController,
];
