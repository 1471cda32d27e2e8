/**
 * Flags (`--heartbeat-interval-ms 3000`) over environment variables
 * (`TRIBUTARY_HEARTBEAT_INTERVAL_MS=3000`) over defaults, validated with zod. The variable names
 * are the ones the BlockPool controller sets on both roles (`TRIBUTARY_NAMENODES`,
 * `TRIBUTARY_REPLICATION`, `TRIBUTARY_BLOCK_SIZE`, `TRIBUTARY_WEBHDFS_PORT`).
 */
import { z } from "zod";
import { ConfigError, commaList, configUsage, inputKeys, parseRoleConfig } from "../config.js";

import { loadClusterSecret } from "./clusterAuth.js";

export { ConfigError };

export const addressList = commaList(
  z.string().regex(/^[^\s]+:\d+$/, { error: "each address must be host:port" }),
  "at least one host:port is required",
);

export const port = z.coerce.number().int().min(0).max(65535);
export const positive = z.coerce.number().int().positive();

const storageRole = (role: string, schema: z.ZodObject) => ({
  role,
  // The BlockPool controller sets the same variables on both roles (TRIBUTARY_NAMENODES, ...).
  envPrefix: "TRIBUTARY_",
  schema,
  keys: inputKeys(schema),
});

export function usageFor(role: string, schema: z.ZodObject): string {
  return configUsage(storageRole(role, schema));
}

export function parseConfig<S extends z.ZodObject>(
  role: string,
  schema: S,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): z.output<S> {
  return parseRoleConfig({ ...storageRole(role, schema), schema }, argv, env);
}

/** Runs `start` until SIGTERM/SIGINT, then `close`; a bad configuration exits 2 with the problem. */
export async function runUntilSignal(
  role: string,
  schema: z.ZodObject,
  argv: string[],
  start: (argv: string[]) => Promise<{ close(): Promise<void> }>,
): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(usageFor(role, schema));
    return;
  }
  let running: { close(): Promise<void> };
  try {
    running = await start(argv);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`tributary ${role}: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw error;
  }
  await new Promise<void>((resolve) => {
    const stop = () => {
      running.close().then(resolve, (error: unknown) => {
        process.stderr.write(
          `tributary ${role}: shutdown did not complete cleanly: ${(error as Error).message}\n`,
        );
        process.exitCode = 1;
        resolve();
      });
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
}

/**
 * The pool's cluster secret for a role's configuration: the file named by
 * --cluster-secret-file (TRIBUTARY_CLUSTER_SECRET_FILE), else TRIBUTARY_CLUSTER_SECRET, else
 * none. An unreadable or too short secret is a configuration error, not a silent open pool.
 */
export function clusterSecret(file: string | undefined, env: NodeJS.ProcessEnv): Buffer | undefined {
  try {
    return loadClusterSecret(file, env.TRIBUTARY_CLUSTER_SECRET);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}
