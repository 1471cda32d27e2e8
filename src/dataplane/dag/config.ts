/**
 * Configuration of `tributary dag-scheduler` and `tributary worker`: flags over
 * `TRIBUTARY_DAG_SCHEDULER_*` / `TRIBUTARY_WORKER_*` variables (as the controller sets them),
 * validated with zod.
 */
import { hostname } from "node:os";
import { z } from "zod";
import type { Logger } from "../../log.js";
import { configUsage, inputKeys, parseRoleConfig, positiveInteger, splitList } from "../config.js";
import type { QueueOptions } from "./queue.js";

const list = splitList();

const connectionFields = {
  redisUrl: z
    .string({ error: "redisUrl is required" })
    .regex(/^rediss?:\/\/\S+$/, { error: "must be a redis:// or rediss:// URL" }),
  redisPassword: z.string().optional(),
  /** Prefix of the Dag's Redis keys and queue names. */
  keyPrefix: z.string({ error: "keyPrefix is required (tributary:<namespace>:<dag>:)" }).min(1),
  queueBackend: z
    .enum(["redis", "rabbitmq"], { error: "queueBackend must be redis or rabbitmq" })
    .default("redis"),
  rabbitmqUrl: z
    .string()
    .regex(/^amqps?:\/\/\S+$/, { error: "must be an amqp:// or amqps:// URL" })
    .optional(),
  rabbitmqPassword: z.string().optional(),
  /** Who this process is in the state (the pod's name). */
  identity: z.string().min(1).default(`${hostname()}-${process.pid}`),
  /** /healthz, /readyz, /metrics (and the scheduler's REST API). */
  port: z.coerce.number().int().min(0).max(65535).default(8080),
  heartbeatSeconds: positiveInteger("heartbeatSeconds").default(5),
};

const needsRabbit = (config: { queueBackend: string; rabbitmqUrl?: string | undefined }) =>
  config.queueBackend !== "rabbitmq" || config.rabbitmqUrl !== undefined;
const rabbitMessage = {
  message: "rabbitmqUrl is required when queueBackend is rabbitmq",
  path: ["rabbitmqUrl"],
};

export const schedulerConfigSchema = z
  .object({
    ...connectionFields,
    /** The Dag's spec (JSON, as the controller mounts it from a ConfigMap). */
    specFile: z.string({ error: "specFile is required" }).min(1),
    /** The Dag's name, for the REST API's paths. */
    dag: z.string().min(1).default("dag"),
    /** Logical start of a Dag without spec.startDate: its creation (RFC 3339). */
    createdAt: z.iso.datetime({ offset: true }).optional(),
    tickMs: positiveInteger("tickMs").default(1000),
    requeueAfterSeconds: positiveInteger("requeueAfterSeconds").default(300),
    /** A Lease (namespace/name) that makes one scheduler of several replicas active; none when empty. */
    leaseNamespace: z.string().optional(),
    leaseName: z.string().optional(),
  })
  .refine(needsRabbit, rabbitMessage);

/** A JSON object of resource names to host:port, as the Dag controller writes it. */
const addressMap = (kind: string) =>
  z
    .string()
    .default("{}")
    .transform((text, ctx) => {
      try {
        return z.record(z.string(), z.string()).parse(JSON.parse(text));
      } catch {
        ctx.addIssue({
          code: "custom",
          message: `a JSON object of ${kind} names to host:port, e.g. {"name":"host:8088"}`,
        });
        return z.NEVER;
      }
    });

export const workerConfigSchema = z
  .object({
    ...connectionFields,
    queues: list.default(["default"]),
    concurrency: positiveInteger("concurrency").default(4),
    maxResultBytes: z.coerce.number().int().min(0).default(65536),
    logLinesPerTry: positiveInteger("logLinesPerTry").default(100000),
    /** Namespace and Dag of `runAs: job` tasks; jobs run only when the worker reaches the API server. */
    namespace: z.string().optional(),
    dag: z.string().min(1).default("dag"),
    jobs: z
      .enum(["true", "false"])
      .default("false")
      .transform((value) => value === "true"),
    /** Image of a `runAs: job` task without one: the worker's own. */
    jobImage: z.string().default("tributary"),
    kubeconfig: z.string().optional(),
    /** host:port of a BlockPool's WebHDFS; {pool} and {namespace} are replaced. */
    blockPoolAddress: z.string().default("{pool}.{namespace}.svc:9870"),
    /** host:port of a CDCStream's connector; {stream} and {namespace} are replaced. */
    cdcStreamAddress: z.string().default("{stream}-connector.{namespace}.svc:8080"),
    /** JSON object: the resource manager (host:port) of each YarnQueue the Dag's tasks name. */
    resourceManagers: addressMap("YarnQueue"),
    /** JSON object: the WebHDFS (host:port) of BlockPools, over blockPoolAddress. */
    blockPools: addressMap("BlockPool"),
  })
  .refine(needsRabbit, rabbitMessage);

export type SchedulerConfig = z.output<typeof schedulerConfigSchema>;
/** The queue's part of a scheduler's or a worker's configuration. */
type QueueSettings = Pick<
  SchedulerConfig,
  "queueBackend" | "keyPrefix" | "redisUrl" | "redisPassword" | "rabbitmqUrl" | "rabbitmqPassword"
>;

/** How a scheduler or a worker opens the Dag's task queue. */
export function queueOptionsOf(config: QueueSettings, log: Logger): QueueOptions {
  return {
    backend: config.queueBackend,
    prefix: config.keyPrefix,
    redisUrl: config.redisUrl,
    ...(config.redisPassword ? { redisPassword: config.redisPassword } : {}),
    ...(config.rabbitmqUrl ? { rabbitmqUrl: config.rabbitmqUrl } : {}),
    ...(config.rabbitmqPassword ? { rabbitmqPassword: config.rabbitmqPassword } : {}),
    log,
  };
}
export type WorkerConfig = z.output<typeof workerConfigSchema>;

const schedulerRole = {
  role: "dag-scheduler",
  envPrefix: "TRIBUTARY_DAG_SCHEDULER_",
  schema: schedulerConfigSchema,
  keys: inputKeys(schedulerConfigSchema),
};
const workerRole = {
  role: "worker",
  envPrefix: "TRIBUTARY_WORKER_",
  schema: workerConfigSchema,
  keys: inputKeys(workerConfigSchema),
};

export const parseSchedulerConfig = (argv: string[], env: NodeJS.ProcessEnv = process.env) =>
  parseRoleConfig(schedulerRole, argv, env);
export const parseWorkerConfig = (argv: string[], env: NodeJS.ProcessEnv = process.env) =>
  parseRoleConfig(workerRole, argv, env);
export const schedulerUsage = () => configUsage(schedulerRole);
export const workerUsage = () => configUsage(workerRole);
