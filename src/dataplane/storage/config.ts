/**
 * Flags (`--heartbeat-interval-ms 3000`) over environment variables
 * (`TRIBUTARY_HEARTBEAT_INTERVAL_MS=3000`) over defaults, validated with zod. The variable names
 * are the ones the BlockPool controller sets on both roles (`TRIBUTARY_NAMENODES`,
 * `TRIBUTARY_REPLICATION`, `TRIBUTARY_BLOCK_SIZE`, `TRIBUTARY_WEBHDFS_PORT`).
 */
import { parseArgs } from "node:util";
import { z } from "zod";

export class ConfigError extends Error {
  override name = "ConfigError";
}

const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const envName = (key: string) => `TRIBUTARY_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

export const addressList = z
  .union([z.string(), z.array(z.string())])
  .transform((value) =>
    (Array.isArray(value) ? value : value.split(","))
      .map((address) => address.trim())
      .filter((address) => address.length > 0),
  )
  .pipe(
    z
      .array(z.string().regex(/^[^\s]+:\d+$/, { error: "each address must be host:port" }))
      .min(1, { error: "at least one host:port is required" }),
  );

export const port = z.coerce.number().int().min(0).max(65535);
export const positive = z.coerce.number().int().positive();

export function usageFor(role: string, schema: z.ZodObject): string {
  const lines = Object.keys(schema.shape).map((key) => `  --${kebab(key).padEnd(30)} ${envName(key)}`);
  return `usage: tributary ${role} [options]\n\noptions (flag, or environment variable):\n${lines.join("\n")}\n`;
}

export function parseConfig<S extends z.ZodObject>(
  role: string,
  schema: S,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): z.output<S> {
  const keys = Object.keys(schema.shape);
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(keys.map((key) => [kebab(key), { type: "string" as const }])),
    }).values;
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n\n${usageFor(role, schema)}`);
  }
  const raw: Record<string, unknown> = {};
  for (const key of keys) {
    const value = values[kebab(key)] ?? env[envName(key)];
    if (value !== undefined && value !== "") raw[key] = value;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? "");
      return `  --${kebab(key)} (${envName(key)}): ${issue.message}`;
    });
    throw new ConfigError(`invalid ${role} configuration:\n${problems.join("\n")}`);
  }
  return parsed.data;
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
