/**
 * The records the YARN roles exchange, after YARN's protocols: ResourceTracker (node manager →
 * resource manager: register, heartbeat), ApplicationMasterProtocol (master → resource manager:
 * register, allocate, finish) and ContainerManagement (master → node manager: start, stop).
 * YARN carries them over protobuf RPC; here they are JSON over HTTP under /ws/v1/internal.
 */
import type { ContainerStatusReport, Resource, ResourceRequest } from "./scheduler.js";

export type { ContainerStatusReport, Resource, ResourceRequest };

export interface LaunchContext {
  commands: string[];
  environment: Record<string, string>;
}

export interface NodeContainerReport {
  containerId: string;
  appId: string;
  state: "RUNNING" | "COMPLETE";
  exitStatus?: number;
  diagnostics?: string;
  /** Carried so a restarted resource manager can recover the container. */
  resource: Resource;
  isAM: boolean;
  priority: number;
  user: string;
}

export interface RegisterNodeRequest {
  nodeId: string;
  host: string;
  rack: string;
  httpAddress: string;
  resource: Resource;
  /** Containers still running: YARN's work-preserving restart (NMContainerStatus). */
  containers: NodeContainerReport[];
}

export interface RegisterNodeResponse {
  nodeId: string;
  heartbeatIntervalMs: number;
  /** The container-token master key, hex (RegisterNodeManagerResponse.containerTokenMasterKey). */
  containerTokenKey: string;
}

export interface NodeHeartbeatRequest {
  nodeId: string;
  containers: NodeContainerReport[];
}

export interface ContainerLaunch {
  container: AllocatedContainer;
  launchContext: LaunchContext;
}

export interface NodeHeartbeatResponse {
  /** RESYNC: the resource manager does not know this node (it restarted): register again. */
  nodeAction: "NORMAL" | "RESYNC" | "SHUTDOWN";
  containersToLaunch: ContainerLaunch[];
  containersToCleanup: string[];
  /** Completed containers the resource manager has recorded, which the node may forget. */
  containersToBeRemovedFromNM: string[];
}

export interface AllocatedContainer {
  id: string;
  appId: string;
  nodeId: string;
  nodeHttpAddress: string;
  host: string;
  resource: Resource;
  priority: number;
  isAM: boolean;
  locality: string;
  containerToken: string;
}

export interface RegisterMasterRequest {
  applicationAttemptId: string;
  host: string;
  trackingUrl?: string;
}

export interface RegisterMasterResponse {
  maximumResourceCapability: Resource;
  queue: string;
  /** Containers of this attempt the resource manager knows of (after its own restart). */
  containersFromPreviousAttempts: AllocatedContainer[];
}

export interface AllocateRequest {
  applicationAttemptId: string;
  responseId: number;
  ask: ResourceRequest[];
  release: string[];
  progress: number;
}

export interface AllocateResponse {
  responseId: number;
  allocatedContainers: AllocatedContainer[];
  completedContainersStatuses: ContainerStatusReport[];
  numClusterNodes: number;
  availableResources: Resource;
  /** Containers the scheduler will take back unless the master releases them first. */
  preempt: { strictContract: { container: string[] } };
  /** Set when the master must stop (application killed): AM_SHUTDOWN. */
  amCommand?: "AM_SHUTDOWN";
}

export interface FinishMasterRequest {
  applicationAttemptId: string;
  finalApplicationStatus: "SUCCEEDED" | "FAILED" | "KILLED";
  diagnostics?: string;
  trackingUrl?: string;
}

export interface StartContainerRequest {
  containerToken: string;
  launchContext: LaunchContext;
}

/** Environment variables a container gets from its node manager, named as YARN names them. */
export const ContainerEnv = {
  CONTAINER_ID: "CONTAINER_ID",
  NM_HOST: "NM_HOST",
  NM_HTTP_ADDRESS: "NM_HTTP_ADDRESS",
  LOCAL_DIRS: "LOCAL_DIRS",
  LOG_DIRS: "LOG_DIRS",
  USER: "USER",
  APPLICATION_ID: "APPLICATION_ID",
  APP_ATTEMPT_ID: "APP_ATTEMPT_ID",
  MAX_APP_ATTEMPTS: "MAX_APP_ATTEMPTS",
  RESOURCE_MANAGER: "TRIBUTARY_YARN_RESOURCE_MANAGER",
  AM_TOKEN: "TRIBUTARY_YARN_AM_TOKEN",
} as const;

/** `application_<clusterTimestamp>_<sequence>`. */
export function applicationId(clusterTimestamp: number, sequence: number): string {
  return `application_${clusterTimestamp}_${String(sequence).padStart(4, "0")}`;
}

/** `appattempt_<clusterTimestamp>_<sequence>_<attempt>`. */
export function attemptId(appId: string, attempt: number): string {
  return `${appId.replace(/^application_/, "appattempt_")}_${String(attempt).padStart(6, "0")}`;
}

export function appOfAttempt(attempt: string): { appId: string; attempt: number } {
  const match = /^appattempt_(\d+)_(\d+)_(\d+)$/.exec(attempt);
  if (!match) throw new Error(`'${attempt}' is not an application attempt id`);
  return { appId: `application_${match[1]}_${match[2]}`, attempt: Number(match[3]) };
}

/** `container_e<epoch>_<clusterTimestamp>_<sequence>_<attempt>_<container>`, epoch after a restart. */
export function containerId(appId: string, epoch: number, attempt: number, sequence: number): string {
  const [, timestamp, app] = appId.split("_");
  const prefix = epoch > 0 ? `container_e${String(epoch).padStart(2, "0")}_` : "container_";
  return `${prefix}${timestamp}_${app}_${String(attempt).padStart(2, "0")}_${String(sequence).padStart(6, "0")}`;
}

/** The application a container id belongs to. */
export function appOfContainer(id: string): string {
  const match = /^container_(?:e\d+_)?(\d+)_(\d+)_\d+_\d+$/.exec(id);
  if (!match) throw new Error(`'${id}' is not a container id`);
  return `application_${match[1]}_${match[2]}`;
}
