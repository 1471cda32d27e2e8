/**
 * How every data-plane role reads its configuration: command-line flags (`--max-body-bytes 1048576`)
 * over environment variables (`TRIBUTARY_COLLECTOR_MAX_BODY_BYTES=1048576`, which is how the
 * controllers set them in pod specs) over the schema's defaults, validated with zod. A bad value
 * is a ConfigError naming the flag, the variable and what was expected.
 */
import { parseArgs } from "node:util";
import { z } from "zod";

export class ConfigError extends Error {
  override name = "ConfigError";
}

export interface RoleConfig<S extends z.ZodType> {
  /** The subcommand, as in `tributary <role>`. */
  role: string;
  /** Prefix of the environment variables, e.g. `TRIBUTARY_SINK_`. */
  envPrefix: string;
  schema: S;
  /** The schema's input keys, camelCase; each is a `--kebab-case` flag and a variable. */
  keys: readonly string[];
}

const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const envName = (prefix: string, key: string) =>
  `${prefix}${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

/** The keys of an object schema, or of the object at the input of a refined/transformed one. */
export function inputKeys(schema: z.ZodType): string[] {
  const object = (schema as unknown as { in?: { shape?: object }; shape?: object }).shape
    ? (schema as unknown as { shape: object })
    : (schema as unknown as { in: { shape: object } }).in;
  return Object.keys(object.shape);
}

export function configUsage(config: RoleConfig<z.ZodType>): string {
  const width = Math.max(...config.keys.map((key) => kebab(key).length)) + 4;
  const lines = config.keys.map((key) => `  --${kebab(key).padEnd(width)} ${envName(config.envPrefix, key)}`);
  return `usage: tributary ${config.role} [options]\n\noptions (flag, or environment variable):\n${lines.join("\n")}\n`;
}

export function parseRoleConfig<S extends z.ZodType>(
  config: RoleConfig<S>,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): z.output<S> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(config.keys.map((key) => [kebab(key), { type: "string" as const }])),
    }).values;
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n\n${configUsage(config)}`);
  }
  const raw: Record<string, unknown> = {};
  for (const key of config.keys) {
    const value = values[kebab(key)] ?? env[envName(config.envPrefix, key)];
    if (value !== undefined && value !== "") raw[key] = value;
  }
  const parsed = config.schema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? "");
      return `  --${kebab(key)} (${envName(config.envPrefix, key)}): ${issue.message}`;
    });
    throw new ConfigError(`invalid ${config.role} configuration:\n${problems.join("\n")}`);
  }
  return parsed.data;
}

/** A whole number above zero, as a flag or variable gives it (text) or a default does. */
export const positiveInteger = (what: string) =>
  z.coerce
    .number({ error: `${what} must be a number` })
    .int({ error: `${what} must be a whole number` })
    .positive({ error: `${what} must be positive` });

/** A yes/no setting: true, false, 1 or 0 from a flag or variable. */
export const booleanFlag = z
  .union([z.boolean(), z.enum(["true", "false", "1", "0"])])
  .transform((value) => value === true || value === "true" || value === "1");

/** The items of `a,b,c` (or of an array), trimmed, blanks dropped. */
function listItems(value: string | string[]): string[] {
  return (Array.isArray(value) ? value : value.split(","))
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
}

/** A list from a flag or variable (`a,b,c`, blanks dropped); `absent` is the message when not given. */
export const splitList = (absent?: string) =>
  z.string(absent === undefined ? undefined : { error: absent }).transform(listItems);

/**
 * A list from a flag or variable (`a,b,c`, blanks dropped) or an array, each item checked by
 * `item`, at least one required (`required` is the message when none is given).
 */
export const commaList = (item: z.ZodString, required: string) =>
  z
    .union([z.string(), z.array(z.string())])
    .transform(listItems)
    .pipe(z.array(item).min(1, { error: required }));

/** Kafka bootstrap brokers: `host:port,host:port` from a flag or variable, or a list. */
export const brokerList = commaList(
  z.string().regex(/^[^\s:]+:\d+$/, { error: "each broker must be host:port" }),
  "brokers is required (host:port,host:port)",
);
