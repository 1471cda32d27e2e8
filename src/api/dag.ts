/**
 * Dag: Airflow-like orchestration. A scheduler turns the schedule into runs and the tasks
 * whose upstreams are settled into messages on a Redis queue; worker pods take them, run the
 * task's command (or a pod of the task's image), retry it and report back.
 */
import { z } from "zod";
import {
  clusterOperationSchema,
  cronOrPresetSchema,
  deletionPolicySchema,
  dns1123Label,
  resourceRequirementsSchema,
  roleFields,
  secretKeyRefSchema,
} from "./common.js";
import { commonStatusFields } from "./conditions.js";
import { defineResource, type ResourceOf, readyColumn } from "./resource.js";

export const triggerRules = [
  "all_success",
  "all_failed",
  "all_done",
  "one_success",
  "one_failed",
  "none_failed",
  "none_failed_min_one_success",
  "none_skipped",
  "always",
] as const;
export type TriggerRule = (typeof triggerRules)[number];

export const runStates = ["queued", "running", "success", "failed"] as const;
export type RunState = (typeof runStates)[number];

/** Airflow's task-instance states; the last four are final. */
export const taskStates = [
  "none",
  "scheduled",
  "queued",
  "running",
  "up_for_retry",
  "success",
  "failed",
  "skipped",
  "upstream_failed",
] as const;
export type TaskState = (typeof taskStates)[number];

export const queueBackends = ["redis", "rabbitmq"] as const;

const taskId = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const queueName = /^[A-Za-z0-9_.-]+$/;

const retries = (where: string) =>
  z.number().int().min(0).max(100).describe(`How often a failed try is retried${where}.`);
const retryDelaySeconds = (where: string) =>
  z.number().int().min(0).max(86400).describe(`Seconds between a failed try and the next one${where}.`);
const executionTimeoutSeconds = (where: string) =>
  z
    .number()
    .int()
    .min(1)
    .max(604800)
    .describe(`Seconds a try may run before it is killed and counts as failed${where}.`);

const maxRetryDelaySeconds = (where: string) =>
  z
    .number()
    .int()
    .min(1)
    .max(604800)
    .describe(`Upper bound of the retry delay when it grows exponentially${where}.`);

export const httpActionSchema = z
  .object({
    method: z
      .enum(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
      .default("GET")
      .describe("HTTP method; default GET."),
    url: z
      .string()
      .max(2048)
      .regex(/^https?:\/\/\S+$/)
      .describe("http:// or https:// URL; {{ logicalDate }} and {{ runId }} are replaced."),
    headers: z.record(z.string(), z.string().max(8192)).optional().describe("Request headers."),
    body: z
      .string()
      .max(65536)
      .optional()
      .describe("Request body; {{ logicalDate }} and {{ runId }} are replaced."),
    expectedStatus: z
      .array(z.number().int().min(100).max(599))
      .max(32)
      .optional()
      .describe("Status codes that count as success; any 2xx when omitted."),
  })
  .describe("An HTTP call; its response body (up to the result limit) is the task's result.");

export const platformActionSchema = z
  .object({
    waitForFile: z
      .object({
        blockPool: z
          .string()
          .min(1)
          .max(63)
          .regex(dns1123Label)
          .describe("Name of a BlockPool in the Dag's namespace."),
        path: z
          .string()
          .min(1)
          .max(4096)
          .regex(/^\/[^\n]*$/)
          .describe(
            "Absolute path of the file or directory to wait for; {{ ds }} (YYYY-MM-DD of the logical date) is replaced.",
          ),
        pollSeconds: z
          .number()
          .int()
          .min(1)
          .max(3600)
          .default(30)
          .describe("Seconds between looks; default 30."),
      })
      .optional()
      .describe("Succeed once a path exists in a BlockPool (a sensor, through WebHDFS GETFILESTATUS)."),
    cdcSnapshot: z
      .object({
        cdcStream: z
          .string()
          .min(1)
          .max(63)
          .regex(dns1123Label)
          .describe("Name of a CDCStream in the Dag's namespace."),
        tables: z
          .array(
            z
              .string()
              .max(256)
              .regex(/^[^.\s]+\.[^.\s]+$/, { error: "each table must be schema.table" }),
          )
          .max(1000)
          .optional()
          .describe("schema.table names to snapshot; default every table the stream captures."),
      })
      .optional()
      .describe(
        "Ask a CDCStream's connector for an ad hoc snapshot (as spec.snapshot.requests does) and wait until it reports it Completed; the task fails if the snapshot fails. The result is the snapshot's id and rows.",
      ),
    yarnApplication: z
      .object({
        queue: z
          .string()
          .min(1)
          .max(63)
          .regex(dns1123Label)
          .describe("Name of a leaf YarnQueue in the Dag's namespace."),
        command: z
          .array(z.string().max(4096))
          .min(1)
          .max(64)
          .describe("Command each container runs (the shipped shell application master starts them)."),
        containers: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(1)
          .describe("Containers that run the command; default 1."),
        containerMemoryMb: z
          .number()
          .int()
          .min(1)
          .max(1048576)
          .default(512)
          .describe("Memory of each container in MB; default 512."),
        user: z
          .string()
          .min(1)
          .max(256)
          .optional()
          .describe(
            "User the application is submitted as (queue ACLs and user limits); default the Dag's name.",
          ),
      })
      .optional()
      .describe(
        "Submit an application to a YarnQueue's resource manager and wait for it to finish; the task succeeds when it ends SUCCEEDED and kills it when the task ends first (timeout, clear, mark).",
      ),
  })
  .describe("A built-in operation of the platform: exactly one of its fields.");

export const envVarSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(256)
      .regex(/^[-._a-zA-Z][-._a-zA-Z0-9]*$/)
      .describe("Name of the variable."),
    value: z.string().max(32768).optional().describe("Literal value."),
    secretKeyRef: secretKeyRefSchema.optional().describe("Take the value from a Secret key instead."),
  })
  .describe("An environment variable of the task: a value or a Secret key.");

export const taskSchema = z
  .object({
    id: z
      .string()
      .min(1)
      .max(63)
      .regex(taskId)
      .describe("Id of the task, unique in the Dag: letters, digits, '_', '-', '.'."),
    command: z
      .array(z.string().max(4096))
      .min(1)
      .max(64)
      .optional()
      .describe(
        "Program and arguments to run (no shell unless you name one, e.g. [sh, -c, '...']). Without image it runs in the worker pod; with image it overrides the image's entrypoint.",
      ),
    args: z
      .array(z.string().max(4096))
      .max(256)
      .optional()
      .describe("Arguments appended to command (or to the image's entrypoint)."),
    image: z
      .string()
      .max(512)
      .optional()
      .describe(
        "Run the task in a Kubernetes Job of this image instead of in the worker; the worker creates the Job, follows it and collects its log.",
      ),
    runAs: z
      .enum(["worker", "job"])
      .optional()
      .describe(
        "Where the command runs: worker (a process in the worker pod) or job (a Kubernetes Job the worker creates and watches; the worker's image when image is omitted). Default: job when image is set, worker otherwise.",
      ),
    resources: resourceRequirementsSchema
      .optional()
      .describe("Compute resources of the Job's container (runAs: job)."),
    http: httpActionSchema.optional().describe("Call an HTTP endpoint instead of running a command."),
    platform: platformActionSchema
      .optional()
      .describe("Run a built-in operation of the platform instead of a command."),
    env: z
      .array(envVarSchema)
      .max(64)
      .optional()
      .describe(
        "Environment of the task; TRIBUTARY_RUN_ID, TRIBUTARY_LOGICAL_DATE and TRIBUTARY_TRY are always set.",
      ),
    dependsOn: z
      .array(z.string().min(1).max(63).regex(taskId))
      // 24 keeps the API server's cost estimate of the "dependsOn names a task" rule in budget.
      .max(24)
      .default([])
      .describe(
        "Ids of the upstream tasks (at most 24; join a wider fan-in through an intermediate task); the task becomes ready when they are settled and its trigger rule holds.",
      ),
    triggerRule: z
      .enum(triggerRules)
      .default("all_success")
      .describe(
        "When the task runs, given its upstreams' final states: all_success (default), all_failed, all_done, one_success, one_failed, none_failed (success or skipped), none_skipped, always. Otherwise it is skipped (or upstream_failed).",
      ),
    retries: retries("; defaultArgs.retries when omitted").optional(),
    retryDelaySeconds: retryDelaySeconds("; defaultArgs.retryDelaySeconds when omitted").optional(),
    retryExponentialBackoff: z
      .boolean()
      .optional()
      .describe(
        "Double the retry delay after each failed try; defaultArgs.retryExponentialBackoff when omitted.",
      ),
    maxRetryDelaySeconds: maxRetryDelaySeconds("; defaultArgs.maxRetryDelaySeconds when omitted").optional(),
    executionTimeoutSeconds: executionTimeoutSeconds(
      "; defaultArgs.executionTimeoutSeconds when omitted",
    ).optional(),
    queue: z
      .string()
      .max(63)
      .regex(queueName)
      .default("default")
      .describe("Redis queue the task is sent to; only workers consuming that queue take it."),
    pool: z
      .string()
      .max(63)
      .regex(dns1123Label)
      .optional()
      .describe("Pool (spec.pools) whose slots limit how many such tasks run at once, across runs."),
  })
  .describe("One task of the Dag.");

export const dagSpecSchema = z
  .object({
    schedule: cronOrPresetSchema
      .nullable()
      .optional()
      .describe(
        "When runs start: a cron expression of 5 fields (minute hour day-of-month month day-of-week, e.g. '*/15 * * * *') or a preset (@hourly, @daily, @weekly, @monthly, @yearly), read in spec.timeZone. A field out of range or a date that never comes (0 0 31 2 *) turns the Dag Degraded with reason InvalidSchedule. Omitted or null: runs start only when triggered by hand (annotation tributary.dev/trigger set to a new value).",
      ),
    timeZone: z
      .string()
      .min(1)
      .max(64)
      .default("UTC")
      .describe(
        "IANA time zone the schedule is read in, e.g. Europe/Paris; default UTC. An unknown zone turns the Dag Degraded with reason InvalidSchedule.",
      ),
    startDate: z.iso
      .datetime({ offset: true })
      .optional()
      .describe("First logical date scheduled (RFC 3339); the time the Dag is created when omitted."),
    endDate: z.iso
      .datetime({ offset: true })
      .optional()
      .describe("No run is scheduled for logical dates after it (RFC 3339)."),
    catchup: z
      .boolean()
      .default(false)
      .describe(
        "When true, every schedule interval since startDate (or the last run) that has no run gets one, oldest first; when false only the latest interval runs. Default false.",
      ),
    maxActiveRuns: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(16)
      .describe("Runs of this Dag that may be active at once; further runs wait queued. Default 16."),
    maxActiveTasks: z
      .number()
      .int()
      .min(1)
      .max(10000)
      .default(16)
      .describe("Tasks of this Dag that may run at once across all its runs. Default 16."),
    runTimeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(2592000)
      .optional()
      .describe(
        "Seconds after which a run still active is failed and its running tasks killed; none when omitted.",
      ),
    paused: z
      .boolean()
      .default(false)
      .describe(
        "When true no new run is scheduled; active runs finish. Unpausing with catchup true fills the gap.",
      ),
    defaultArgs: z
      .object({
        retries: retries(" (tasks may override)").default(0),
        retryDelaySeconds: retryDelaySeconds(" (tasks may override)").default(300),
        retryExponentialBackoff: z
          .boolean()
          .default(false)
          .describe("Double the retry delay after each failed try."),
        maxRetryDelaySeconds: maxRetryDelaySeconds(" (tasks may override); 24 hours when omitted").optional(),
        executionTimeoutSeconds: executionTimeoutSeconds(
          " (tasks may override); no limit when omitted",
        ).optional(),
      })
      .prefault({})
      .describe("Defaults every task takes unless it sets its own."),
    tasks: z
      .array(taskSchema)
      .min(1)
      .max(100)
      .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"] })
      .describe(
        "The tasks; dependsOn edges must form a directed acyclic graph (a cycle is reported as Degraded).",
      ),
    pools: z
      .array(
        z
          .object({
            name: z.string().min(1).max(63).regex(dns1123Label).describe("Name of the pool."),
            slots: z.number().int().min(1).max(10000).describe("Tasks of the pool that may run at once."),
          })
          .describe("A named limit on concurrently running tasks."),
      )
      .max(32)
      .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] })
      .default([])
      .describe("Pools that limit tasks touching a shared resource (a database, an API)."),
    redis: z
      .object({
        url: z
          .string()
          .max(2048)
          .regex(/^rediss?:\/\/\S+$/)
          .describe("redis:// or rediss:// URL of the Redis that carries the queues, without the password."),
        passwordSecret: secretKeyRefSchema.optional().describe("Secret key holding the Redis password."),
        keyPrefix: z
          .string()
          .max(256)
          .optional()
          .describe("Prefix of every Redis key of this Dag; 'tributary:<namespace>:<name>:' when omitted."),
      })
      .optional()
      .describe(
        "Redis holding the run and task state, logs and results (and the queues when queueBackend is redis); the operator's default Redis (--dag-redis-url) when omitted.",
      ),
    queueBackend: z
      .enum(queueBackends)
      .default("redis")
      .describe(
        "What carries ready tasks to the workers: redis (BullMQ queues in spec.redis) or rabbitmq (durable queues in spec.rabbitmq). State stays in Redis either way. Default redis.",
      ),
    rabbitmq: z
      .object({
        url: z
          .string()
          .max(2048)
          .regex(/^amqps?:\/\/\S+$/)
          .describe("amqp:// or amqps:// URL of the RabbitMQ broker, without the password."),
        passwordSecret: secretKeyRefSchema
          .optional()
          .describe("Secret key holding the password of the URL's user."),
      })
      .optional()
      .describe("RabbitMQ carrying the task queues when queueBackend is rabbitmq."),
    params: z
      .record(z.string(), z.string().max(4096))
      .optional()
      .describe(
        "Default parameters of every run; a manual trigger may override them. Tasks read them as JSON in TRIBUTARY_PARAMS.",
      ),
    scheduler: z
      .object(
        roleFields({
          what: "scheduler",
          replicas: {
            default: 1,
            min: 1,
            max: 1,
            note: "Always 1: one writer creates runs, so a run is never created twice.",
          },
        }),
      )
      .prefault({})
      .describe("The scheduler pod: creates runs and enqueues ready tasks."),
    workers: z
      .object({
        ...roleFields({ what: "worker", replicas: { default: 2 } }),
        concurrency: z.number().int().min(1).max(256).default(4).describe("Tasks each worker runs at once."),
        queues: z
          .array(z.string().max(63).regex(queueName))
          .min(1)
          .max(16)
          .default(["default"])
          .describe("Queues the workers consume; default [default]."),
        heartbeatSeconds: z
          .number()
          .int()
          .min(1)
          .max(300)
          .default(5)
          .describe(
            "How often a worker reports each running task; a task not reported for three periods counts as lost and is retried. Default 5.",
          ),
        maxResultBytes: z
          .number()
          .int()
          .min(0)
          .max(1048576)
          .default(65536)
          .describe(
            "Largest result a task may pass downstream (the file TRIBUTARY_RESULT_FILE, an HTTP response); a larger one fails the task. Default 64 KiB.",
          ),
        logLinesPerTry: z
          .number()
          .int()
          .min(100)
          .max(10000000)
          .default(100000)
          .describe("Log lines kept per task try in Redis (the oldest are trimmed). Default 100,000."),
      })
      .prefault({})
      .describe("The worker pods: take tasks from the Redis queues and run them."),
    deletionPolicy: deletionPolicySchema("Delete", "the Dag's queues and run history are removed from Redis"),
    clusterOperation: clusterOperationSchema,
  })
  .describe("Desired state of the Dag.");

export const dagStatusSchema = z
  .object({
    ...commonStatusFields,
    lastRunId: z
      .string()
      .optional()
      .describe("Id of the most recent run, e.g. scheduled__2026-01-01T00:00:00Z."),
    lastRunState: z.enum(runStates).optional().describe("State of the most recent run."),
    lastRunStartTime: z.iso
      .datetime({ offset: true })
      .optional()
      .describe("When the most recent run started."),
    lastRunEndTime: z.iso.datetime({ offset: true }).optional().describe("When the most recent run ended."),
    lastLogicalDate: z.iso
      .datetime({ offset: true })
      .optional()
      .describe("Logical date (start of the data interval) of the latest scheduled run."),
    nextRunTime: z.iso.datetime({ offset: true }).optional().describe("When the next scheduled run starts."),
    activeRuns: z.number().int().min(0).optional().describe("Runs queued or running."),
    runs: z
      .object({
        queued: z.number().int().min(0).describe("Runs waiting for maxActiveRuns."),
        running: z.number().int().min(0).describe("Runs running."),
        success: z.number().int().min(0).describe("Runs that succeeded."),
        failed: z.number().int().min(0).describe("Runs that failed."),
      })
      .optional()
      .describe("Runs kept in the scheduler's state, by state."),
    failingTasks: z
      .array(
        z
          .object({
            runId: z.string().describe("Run of the task."),
            taskId: z.string().describe("The task."),
            state: z.enum(taskStates).describe("failed or up_for_retry."),
            try: z.number().int().min(0).describe("Try that failed."),
            error: z.string().max(1024).describe("Its last error, cut to 1 KiB."),
          })
          .describe("A task whose last try failed."),
      )
      .max(10)
      .optional()
      .describe("Up to ten tasks of recent runs whose last try failed, newest first, with their last error."),
    scheduler: z
      .string()
      .optional()
      .describe("Identity and epoch of the scheduler that holds the Dag, e.g. dag-scheduler-7f9c (epoch 3)."),
    tasks: z.number().int().min(0).optional().describe("Number of tasks in the Dag."),
  })
  .describe("Observed state of the Dag.");

export const dagDefinition = defineResource({
  kind: "Dag",
  description:
    "An Airflow-like directed acyclic graph of tasks: a scheduler turns the schedule into runs and ready tasks into messages on a Redis queue, and worker pods run them with retries, timeouts and trigger rules.",
  plural: "dags",
  shortNames: ["dag"],
  spec: dagSpecSchema,
  status: dagStatusSchema,
  printerColumns: [
    readyColumn("Whether the scheduler and workers run."),
    {
      name: "Schedule",
      type: "string",
      jsonPath: ".spec.schedule",
      description: "Schedule, empty when manual.",
    },
    {
      name: "Paused",
      type: "boolean",
      jsonPath: ".spec.paused",
      description: "Whether scheduling is paused.",
    },
    {
      name: "Last Run",
      type: "string",
      jsonPath: ".status.lastRunState",
      description: "State of the latest run.",
    },
    { name: "Active", type: "integer", jsonPath: ".status.activeRuns", description: "Active runs." },
    { name: "Next Run", type: "string", jsonPath: ".status.nextRunTime", description: "Next scheduled run." },
    {
      name: "Age",
      type: "date",
      jsonPath: ".metadata.creationTimestamp",
      description: "Time since creation.",
    },
  ],
  validations: [
    {
      path: "spec",
      rule: "self.tasks.all(t, t.dependsOn.all(d, self.tasks.exists(u, u.id == d)))",
      message: "spec.tasks[].dependsOn must name tasks of this Dag",
      fieldPath: ".tasks",
    },
    {
      path: "spec.tasks[]",
      rule: "!(self.id in self.dependsOn)",
      message: "spec.tasks[].dependsOn must not name the task itself",
      fieldPath: ".dependsOn",
    },
    {
      path: "spec.tasks[]",
      rule: "has(self.command) || has(self.image) || has(self.http) || has(self.platform)",
      message: "spec.tasks[] needs a command, an image, or both (or an http or platform action)",
    },
    {
      path: "spec.tasks[]",
      rule: "(has(self.command) || has(self.image) ? 1 : 0) + (has(self.http) ? 1 : 0) + (has(self.platform) ? 1 : 0) <= 1",
      message: "spec.tasks[] takes one action: a command (with its image), http, or platform",
    },
    {
      path: "spec.tasks[]",
      rule: "!has(self.runAs) || self.runAs != 'job' || has(self.command) || has(self.image)",
      message: "spec.tasks[].runAs: job needs a command or an image",
      fieldPath: ".runAs",
    },
    {
      path: "spec.tasks[].platform",
      rule: "(has(self.waitForFile) ? 1 : 0) + (has(self.cdcSnapshot) ? 1 : 0) + (has(self.yarnApplication) ? 1 : 0) == 1",
      message: "spec.tasks[].platform needs exactly one of waitForFile, cdcSnapshot, yarnApplication",
    },
    {
      path: "spec",
      rule: "self.queueBackend != 'rabbitmq' || has(self.rabbitmq)",
      message: "spec.rabbitmq is required when spec.queueBackend is rabbitmq",
      fieldPath: ".rabbitmq",
    },
    {
      path: "spec",
      rule: "self.tasks.all(t, !has(t.pool) || self.pools.exists(p, p.name == t.pool))",
      message: "spec.tasks[].pool must name a pool of spec.pools",
      fieldPath: ".tasks",
    },
    {
      path: "spec",
      rule: "!has(self.startDate) || !has(self.endDate) || timestamp(self.endDate) > timestamp(self.startDate)",
      message: "spec.endDate must be after spec.startDate",
      fieldPath: ".endDate",
    },
    {
      path: "spec.tasks[].env[]",
      rule: "has(self.value) != has(self.secretKeyRef)",
      message: "spec.tasks[].env[] needs exactly one of value or secretKeyRef",
    },
  ],
});

export type DagSpec = z.infer<typeof dagSpecSchema>;
export type DagStatus = z.infer<typeof dagStatusSchema>;
export type Task = z.infer<typeof taskSchema>;
export type Dag = ResourceOf<typeof dagDefinition>;
