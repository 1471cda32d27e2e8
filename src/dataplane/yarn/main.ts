/**
 * `tributary resourcemanager` and `tributary nodemanager`: configuration (flags over
 * TRIBUTARY_RESOURCEMANAGER_* / TRIBUTARY_NODEMANAGER_* variables, which the YarnQueue controller
 * sets), start, and a clean stop on SIGTERM.
 */
import { hostname } from "node:os";
import { z } from "zod";
import { parseQuantity } from "../../api/common.js";
import { createLogger } from "../../log.js";
import { ConfigError, configUsage, inputKeys, parseRoleConfig, type RoleConfig } from "../config.js";
import { NodeManager } from "./nodemanager.js";
import { ResourceManager } from "./resourcemanager.js";
import type { QueueDefinition } from "./scheduler.js";

const port = z.coerce.number().int().min(0).max(65535);
const positive = z.coerce.number().int().positive();
const memoryMb = z
  .string()
  .transform((value, context) => {
    try {
      // A bare number is MB (YARN's memory-mb); a quantity (4Gi) is converted.
      return /^\d+$/.test(value) ? Number(value) : Math.floor(parseQuantity(value) / 1024 / 1024);
    } catch (error) {
      context.addIssue({ code: "custom", message: (error as Error).message });
      return z.NEVER;
    }
  })
  .pipe(z.number().int().positive());

const queueSchema: z.ZodType<QueueDefinition> = z.object({
  path: z.string().regex(/^root(\.[\w-]+)*$/),
  capacity: z.number().min(0).max(100),
  maximumCapacity: z.number().min(0).max(100).optional(),
  userLimitFactor: z.number().positive().optional(),
  minimumUserLimitPercent: z.number().min(1).max(100).optional(),
  maxApplications: z.number().int().min(0).optional(),
  maximumAMResourcePercent: z.number().gt(0).max(1).optional(),
  priority: z.number().int().optional(),
  state: z.enum(["RUNNING", "STOPPED"]).optional(),
  acl: z
    .object({
      submitApplications: z.object({ users: z.array(z.string()), groups: z.array(z.string()) }).optional(),
      administerQueue: z.object({ users: z.array(z.string()), groups: z.array(z.string()) }).optional(),
    })
    .optional(),
}) as z.ZodType<QueueDefinition>;

function json<T extends z.ZodType>(schema: T) {
  return z.string().transform((text, context) => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      context.addIssue({ code: "custom", message: `not JSON: ${(error as Error).message}` });
      return z.NEVER;
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      context.addIssue({
        code: "custom",
        message: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
      });
      return z.NEVER;
    }
    return parsed.data as z.output<T>;
  });
}

export const resourceManagerConfigSchema = z.object({
  host: z.string().default("0.0.0.0"),
  port: port.default(8088),
  advertisedAddress: z.string().optional(),
  stateDir: z.string().default("/var/lib/tributary/yarn"),
  /** The queue tree as JSON (the operator also PUTs it to /ws/v1/cluster/scheduler-conf). */
  queues: json(z.array(queueSchema)).default([
    { path: "root", capacity: 100 },
    { path: "root.default", capacity: 100 },
  ]),
  minimumAllocationMb: memoryMb.default(1024),
  minimumAllocationVcores: positive.default(1),
  maximumAllocationMb: memoryMb.default(8192),
  maximumAllocationVcores: positive.default(4),
  nodeHeartbeatIntervalMs: positive.default(1000),
  nodeExpiryMs: positive.default(30_000),
  maxAttempts: positive.default(2),
  preemption: z.stringbool().default(false),
  preemptionIntervalMs: positive.default(3000),
  preemptionMaxWaitBeforeKillMs: z.coerce.number().int().min(0).default(15_000),
  userGroups: json(z.record(z.string(), z.array(z.string()))).default({}),
  clusterId: z.string().default("default"),
});

export const nodeManagerConfigSchema = z.object({
  resourceManager: z.string().regex(/^[^\s]+:\d+$/, { error: "must be host:port" }),
  host: z.string().default("0.0.0.0"),
  port: port.default(8042),
  advertisedHost: z.string().optional(),
  rack: z.string().default("/default-rack"),
  vcores: positive.default(4),
  memory: memoryMb.default(8192),
  localDir: z.string().default("/var/lib/tributary/yarn/local"),
  logDir: z.string().default("/var/lib/tributary/yarn/logs"),
  monitorIntervalMs: positive.default(3000),
  pmemCheck: z.stringbool().default(true),
});

function role<S extends z.ZodObject>(name: string, schema: S): RoleConfig<S> {
  return { role: name, envPrefix: `TRIBUTARY_${name.toUpperCase()}_`, schema, keys: inputKeys(schema) };
}

async function runUntilSignal(
  config: RoleConfig<z.ZodObject>,
  argv: string[],
  start: () => Promise<{ close(): Promise<void> }>,
): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(configUsage(config));
    return;
  }
  const running = await start();
  await new Promise<void>((resolve) => {
    const stop = () => {
      running.close().then(resolve, (error: unknown) => {
        process.stderr.write(
          `tributary ${config.role}: shutdown did not complete cleanly: ${(error as Error).message}\n`,
        );
        process.exitCode = 1;
        resolve();
      });
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
}

export async function resourceManagerMain(argv: string[]): Promise<void> {
  const config = role("resourcemanager", resourceManagerConfigSchema);
  await runUntilSignal(config, argv, async () => {
    const parsed = parseRoleConfig(config, argv);
    const log = createLogger("resourcemanager");
    let rm: ResourceManager;
    try {
      rm = new ResourceManager(
        {
          host: parsed.host,
          port: parsed.port,
          advertisedAddress: parsed.advertisedAddress,
          stateDir: parsed.stateDir,
          queues: parsed.queues,
          minimumAllocation: { memory: parsed.minimumAllocationMb, vcores: parsed.minimumAllocationVcores },
          maximumAllocation: { memory: parsed.maximumAllocationMb, vcores: parsed.maximumAllocationVcores },
          nodeHeartbeatIntervalMs: parsed.nodeHeartbeatIntervalMs,
          nodeExpiryMs: parsed.nodeExpiryMs,
          maxAttempts: parsed.maxAttempts,
          preemption: parsed.preemption,
          preemptionIntervalMs: parsed.preemptionIntervalMs,
          preemptionMaxWaitBeforeKillMs: parsed.preemptionMaxWaitBeforeKillMs,
          userGroups: parsed.userGroups,
          clusterId: parsed.clusterId,
        },
        log,
      );
    } catch (error) {
      if ((error as Error).name === "QueueConfigError")
        throw new ConfigError(`--queues: ${(error as Error).message}`);
      throw error;
    }
    await rm.start();
    process.stdout.write(`${JSON.stringify({ ready: "resourcemanager", port: rm.port })}\n`);
    return rm;
  });
}

export async function nodeManagerMain(argv: string[]): Promise<void> {
  const config = role("nodemanager", nodeManagerConfigSchema);
  await runUntilSignal(config, argv, async () => {
    const parsed = parseRoleConfig(config, argv);
    const log = createLogger("nodemanager");
    const nm = new NodeManager(
      {
        resourceManager: parsed.resourceManager,
        host: parsed.host,
        port: parsed.port,
        advertisedHost: parsed.advertisedHost ?? podAddress() ?? hostname(),
        rack: parsed.rack,
        resource: { memory: parsed.memory, vcores: parsed.vcores },
        localDir: parsed.localDir,
        logDir: parsed.logDir,
        monitorIntervalMs: parsed.monitorIntervalMs,
        pmemCheck: parsed.pmemCheck,
      },
      log,
    );
    await nm.start();
    process.stdout.write(`${JSON.stringify({ ready: "nodemanager", port: nm.port, nodeId: nm.nodeId })}\n`);
    return nm;
  });
}

/** In a StatefulSet pod: <pod>.<governing service>.<namespace>.svc, set by the controller. */
function podAddress(): string | undefined {
  const { POD_NAME, POD_NAMESPACE, TRIBUTARY_NODEMANAGER_SERVICE } = process.env;
  return POD_NAME && POD_NAMESPACE && TRIBUTARY_NODEMANAGER_SERVICE
    ? `${POD_NAME}.${TRIBUTARY_NODEMANAGER_SERVICE}.${POD_NAMESPACE}.svc`
    : undefined;
}
