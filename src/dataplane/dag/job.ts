/**
 * `runAs: job`: the worker creates a Kubernetes Job for the try (restricted pod security, no
 * retries of its own: the Dag retries), follows it until it completes or fails, copies the pod's
 * log into the try's log, and deletes the Job when the try is killed (timeout, clear, mark).
 * The worker's ServiceAccount needs create/get/delete on jobs and get/list on pods and pods/log
 * in its namespace, which the controller grants only to Dags that have such tasks.
 */
import { createHash } from "node:crypto";
import { CoreV1Api } from "@kubernetes/client-node";
import {
  restrictedContainerSecurityContext,
  restrictedPodSecurityContext,
} from "../../controllers/podSecurity.js";
import {
  builtin,
  isConflict,
  isNotFound,
  type KubeClient,
  type KubeObject,
  type ResourceType,
} from "../../operator/kube.js";
import type { TaskMessage } from "./model.js";
import type { TryContext, TryOutcome } from "./worker.js";

export const jobType: ResourceType = { group: "batch", version: "v1", kind: "Job", plural: "jobs" };

export interface JobRunner {
  client: KubeClient;
  namespace: string;
  /** The Dag's name: label of every Job, and the start of its name. */
  dag: string;
  /** Image of a task that names none: the worker's own. */
  defaultImage: string;
  /** How often the Job is looked at; default 2 s. */
  pollMs?: number;
  /** Owner of the Jobs (the worker's Deployment or the Dag), so they go with it. */
  ownerReferences?: KubeObject["metadata"]["ownerReferences"];
}

export function jobName(dag: string, message: Pick<TaskMessage, "runId" | "taskId" | "try">): string {
  const hash = createHash("sha1")
    .update(`${message.runId} ${message.taskId} ${message.try}`)
    .digest("hex")
    .slice(0, 10);
  const base = `${dag}-${message.taskId}`
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .slice(0, 40)
    .replace(/-+$/, "");
  return `${base}-${hash}`;
}

/** The Job of one try. Pure. */
export function desiredJob(
  runner: Pick<JobRunner, "namespace" | "dag" | "defaultImage" | "ownerReferences">,
  context: Pick<TryContext, "message" | "env">,
): KubeObject {
  const { message } = context;
  const action = message.action;
  if (action.kind !== "command") throw new Error("only a command runs as a Job");
  const env = [
    ...Object.entries(context.env)
      .filter(([name]) => name !== "TRIBUTARY_UPSTREAM_RESULTS_FILE" && name !== "TRIBUTARY_RESULT_FILE")
      .map(([name, value]) => ({ name, value })),
    ...action.env.map((variable) =>
      variable.secretKeyRef
        ? {
            name: variable.name,
            valueFrom: { secretKeyRef: { name: variable.secretKeyRef.name, key: variable.secretKeyRef.key } },
          }
        : { name: variable.name, value: variable.value ?? "" },
    ),
  ];
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: jobName(runner.dag, message),
      namespace: runner.namespace,
      labels: {
        "app.kubernetes.io/managed-by": "tributary",
        "app.kubernetes.io/name": "dag-task",
        "tributary.dev/dag": runner.dag,
        "tributary.dev/task": message.taskId
          .toLowerCase()
          .replace(/[^a-z0-9-_.]/g, "-")
          .slice(0, 63),
      },
      annotations: { "tributary.dev/run-id": message.runId, "tributary.dev/try": String(message.try) },
      ...(runner.ownerReferences ? { ownerReferences: runner.ownerReferences } : {}),
    },
    spec: {
      backoffLimit: 0,
      ttlSecondsAfterFinished: 3600,
      ...(message.timeoutMs !== undefined
        ? { activeDeadlineSeconds: Math.ceil(message.timeoutMs / 1000) }
        : {}),
      template: {
        metadata: { labels: { "tributary.dev/dag": runner.dag, "app.kubernetes.io/name": "dag-task" } },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          securityContext: structuredClone(restrictedPodSecurityContext),
          containers: [
            {
              name: "task",
              image: action.image ?? runner.defaultImage,
              ...(action.command ? { command: action.command } : {}),
              ...(action.args ? { args: action.args } : {}),
              env,
              ...(action.resources ? { resources: action.resources } : {}),
              securityContext: structuredClone(restrictedContainerSecurityContext),
              volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            },
          ],
          volumes: [{ name: "tmp", emptyDir: {} }],
        },
      },
    },
  };
}

interface JobStatus {
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
}

export async function runAsJob(
  runner: JobRunner,
  context: TryContext,
  signal: AbortSignal,
): Promise<TryOutcome> {
  const job = desiredJob(runner, context);
  const name = job.metadata.name;
  try {
    await runner.client.create(jobType, job);
    context.log.note(`created Job ${runner.namespace}/${name}`);
  } catch (error) {
    // The same try again (a redelivered message after a worker restart): follow the Job there is.
    if (!isConflict(error)) {
      return { outcome: "failed", error: `could not create Job ${name}: ${(error as Error).message}` };
    }
  }
  const pollMs = runner.pollMs ?? 2000;
  for (;;) {
    if (signal.aborted) {
      await runner.client.delete(jobType, runner.namespace, name, "Background").catch(() => {});
      context.log.note(`deleted Job ${name}: ${(signal.reason as Error)?.message}`);
      throw signal.reason;
    }
    let current: KubeObject | undefined;
    try {
      current = await runner.client.get(jobType, runner.namespace, name);
    } catch (error) {
      if (isNotFound(error))
        return { outcome: "failed", error: `Job ${name} was deleted before it finished` };
      context.log.note(`could not read Job ${name}: ${(error as Error).message}`);
    }
    const conditions = (current?.status as JobStatus | undefined)?.conditions ?? [];
    const done = conditions.find(
      (condition) =>
        (condition.type === "Complete" || condition.type === "Failed") && condition.status === "True",
    );
    if (done) {
      await copyPodLog(runner, name, context);
      if (done.type === "Complete") return { outcome: "success" };
      return {
        outcome: "failed",
        error: `Job ${name} failed: ${done.reason ?? ""} ${done.message ?? ""}`.trim(),
      };
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, pollMs);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

async function copyPodLog(runner: JobRunner, job: string, context: TryContext) {
  try {
    const pods = await runner.client.list(builtin.pod, runner.namespace, {
      labelSelector: `job-name=${job}`,
    });
    const core = runner.client.config.makeApiClient(CoreV1Api);
    for (const pod of pods.items) {
      // The log endpoint answers text, which the JSON client does not read; client-node's does.
      const text = await core
        .readNamespacedPodLog({
          name: pod.metadata.name,
          namespace: runner.namespace,
          limitBytes: 10 * 1024 * 1024,
        })
        .catch((error: Error) => `(no log: ${error.message})`);
      for (const line of String(text).split("\n"))
        if (line) context.log.note(`[${pod.metadata.name}] ${line}`);
    }
  } catch (error) {
    context.log.note(`could not read the Job's log: ${(error as Error).message}`);
  }
}
