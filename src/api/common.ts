/**
 * The vocabulary every Tributary resource shares, after Stackable's operators: per-role
 * replicas/resources/storage, a pod template merged over the generated one, cluster operations,
 * a deletion policy for state outside Kubernetes, and references to Secrets, Kafka and BlockPools.
 */
import { z } from "zod";

/** Kubernetes DNS-1123 label: names of Services, ports, sinks, sources. */
export const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Kubernetes DNS-1123 subdomain: names of objects such as Secrets and PVCs. */
export const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A Kafka topic name: what Kafka itself accepts. */
export const kafkaTopicName = /^[a-zA-Z0-9._-]+$/;
/** A non-negative Kubernetes quantity: sizes and counts here are never negative. */
const quantityPattern =
  /^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$/;

export function objectName(what: string) {
  return z.string().min(1).max(253).regex(dns1123Subdomain).describe(what);
}

/**
 * A Kubernetes quantity (`500m`, `2Gi`, `128Mi`) or a plain number, as in a Pod's resources.
 * YAML turns `cpu: 1` into a number, so both forms are accepted (`x-kubernetes-int-or-string`).
 */
export const quantitySchema = z
  .union([z.number().int().min(0), z.string().regex(quantityPattern)])
  .meta({ "x-kubernetes-int-or-string": true });
export type Quantity = z.infer<typeof quantitySchema>;

const quantitySuffixes: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** The numeric value of a quantity: bytes for sizes, cores for CPU. Throws on a malformed one. */
export function parseQuantity(quantity: Quantity): number {
  if (typeof quantity === "number") return quantity;
  const match = /^((?:\d+(?:\.\d*)?|\.\d+))([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$/.exec(quantity);
  if (!match) throw new Error(`'${quantity}' is not a Kubernetes quantity (e.g. 500m, 2Gi, 128Mi)`);
  const [, number, suffix = ""] = match;
  if (/^[eE]/.test(suffix)) return Number(`${number}${suffix}`);
  return Number(number) * quantitySuffixes[suffix]!;
}

export const resourceRequirementsSchema = z
  .object({
    requests: z
      .record(z.string(), quantitySchema)
      .optional()
      .describe("Resources reserved for each container of the role, e.g. {cpu: 500m, memory: 1Gi}."),
    limits: z
      .record(z.string(), quantitySchema)
      .optional()
      .describe("Upper bounds for each container of the role, e.g. {cpu: '2', memory: 2Gi}."),
  })
  .describe(
    "Compute resources of the role's main container, as a Pod's resources; the operator's defaults apply when empty.",
  );

export const storageSchema = z
  .object({
    size: quantitySchema.describe("Capacity requested for each replica's PersistentVolumeClaim, e.g. 10Gi."),
    storageClassName: z
      .string()
      .max(253)
      .optional()
      .describe("StorageClass of the claims; the cluster's default class when omitted."),
  })
  .describe("A PersistentVolumeClaim per replica, kept when the role scales down or stops.");

/**
 * A PodTemplateSpec (metadata and spec) deep-merged over the pod the operator generates:
 * anything Kubernetes accepts in a pod template, so the schema keeps it as written.
 */
export const podOverridesSchema = z
  .record(z.string(), z.unknown())
  .meta({ "x-kubernetes-preserve-unknown-fields": true })
  .describe(
    "A pod template (metadata, spec) deep-merged over the pod the operator generates for this role: add tolerations, node selectors, sidecars, env or labels. Containers merge by name.",
  );

interface RoleOptions {
  /** What the role's pods do, for the description. */
  what: string;
  replicas: { default: number; min?: number; max?: number; note?: string };
}

interface StatefulRoleOptions extends RoleOptions {
  /** The default size of each pod's PersistentVolumeClaim, and what it holds. */
  storage: { defaultSize: string; note?: string };
}

/** The fields of a stateless role: replicas, resources and podOverrides. */
export function roleFields(options: RoleOptions) {
  const { min = 0, max = 1000, note = "" } = options.replicas;
  return {
    replicas: z
      .number()
      .int()
      .min(min)
      .max(max)
      .default(options.replicas.default)
      .describe(`Number of ${options.what} pods (${min}..${max}).${note ? ` ${note}` : ""}`),
    resources: resourceRequirementsSchema.optional(),
    podOverrides: podOverridesSchema.optional(),
  };
}

/** The fields of a role that keeps data: those of `roleFields` plus a volume per pod. */
export function statefulRoleFields(options: StatefulRoleOptions) {
  const { defaultSize, note } = options.storage;
  return {
    ...roleFields(options),
    storage: storageSchema
      .prefault({ size: defaultSize })
      .describe(
        `PersistentVolumeClaim of each ${options.what} pod; default ${defaultSize}.${note ? ` ${note}` : ""}`,
      ),
  };
}

export const clusterOperationSchema = z
  .object({
    reconciliationPaused: z
      .boolean()
      .default(false)
      .describe(
        "When true the operator leaves the resource's children and external state as they are and ignores spec changes; status is still written. For maintenance by hand.",
      ),
    stopped: z
      .boolean()
      .default(false)
      .describe(
        "When true every role is scaled to 0 pods; volumes, topics, slots and stored files are kept, so setting it back to false resumes where it stopped.",
      ),
  })
  .prefault({})
  .describe("Operations on the whole resource: pause reconciliation or stop all pods while keeping data.");
export type ClusterOperation = z.infer<typeof clusterOperationSchema>;

export const DeletionPolicy = { Retain: "Retain", Delete: "Delete" } as const;
export type DeletionPolicy = (typeof DeletionPolicy)[keyof typeof DeletionPolicy];

/** `deletionPolicy` with a default and a sentence on what Delete releases, for each kind. */
export function deletionPolicySchema(defaultPolicy: DeletionPolicy, releases: string) {
  return z
    .enum([DeletionPolicy.Retain, DeletionPolicy.Delete])
    .default(defaultPolicy)
    .describe(
      `What happens to state outside Kubernetes when this resource is deleted. Delete: ${releases}. Retain: it is left in place for a new resource or a human to take over. Default ${defaultPolicy}.`,
    );
}

export const secretKeyRefSchema = z
  .object({
    name: objectName("Name of the Secret, in the resource's namespace."),
    key: z.string().min(1).max(253).describe("Key in the Secret's data."),
  })
  .describe("One key of a Secret in the resource's namespace.");

export const secretRefSchema = z
  .object({ name: objectName("Name of the Secret, in the resource's namespace.") })
  .describe("A Secret in the resource's namespace.");

export const kafkaClusterRefSchema = z
  .object({
    bootstrapServers: z
      .array(z.string().regex(/^[^\s:]+:[0-9]{1,5}$/))
      .min(1)
      .max(32)
      .describe("Kafka bootstrap brokers as host:port; any reachable subset of the cluster's brokers."),
    tls: z
      .object({
        enabled: z.boolean().default(true).describe("Connect with TLS."),
        caSecret: secretKeyRefSchema
          .optional()
          .describe(
            "CA certificate (PEM) that signs the brokers' certificates; the system trust store when omitted.",
          ),
        clientCertificateSecret: secretRefSchema
          .optional()
          .describe("A kubernetes.io/tls Secret (tls.crt, tls.key) for mutual TLS."),
      })
      .optional()
      .describe("TLS towards the brokers; plaintext when omitted."),
    sasl: z
      .object({
        mechanism: z
          .enum(["plain", "scram-sha-256", "scram-sha-512"])
          .default("scram-sha-512")
          .describe("SASL mechanism the brokers expect."),
        credentialsSecret: secretRefSchema.describe("Secret with the keys 'username' and 'password'."),
      })
      .optional()
      .describe("SASL authentication; none when omitted."),
  })
  .describe("A Kafka cluster to connect to.");
export type KafkaClusterRef = z.infer<typeof kafkaClusterRefSchema>;

export function kafkaClusterField(whoUsesIt: string) {
  return kafkaClusterRefSchema
    .optional()
    .describe(
      `Kafka cluster ${whoUsesIt}; the operator's default cluster (its --kafka-bootstrap setting, the chart value kafka.bootstrapServers) when omitted.`,
    );
}

/**
 * Path checks that the API server (a CEL rule on the field) and the operator (a zod refinement)
 * both make, with the same words. Each regular expression means the same to RE2 (CEL's
 * `matches`) and to JavaScript, so it is written once for both.
 */
interface PathCheck {
  /** The CEL rule, over the string field as `self`. */
  rule: string;
  test: (path: string) => boolean;
  /** Follows the field's path in both the API server's refusal and the operator's. */
  message: string;
}

/** A `..` component anywhere in a path. */
const parentComponent = "(^|/)[.][.](/|$)";
/** A `.` or `..` component anywhere in a path. */
const dotComponent = "(^|/)[.][.]?(/|$)";
/**
 * `/`, or `/` and components that are neither empty nor hold `:` or NUL: what the name node's
 * validatePath (after HDFS's DFSUtil.isValidName) accepts, trailing slash aside.
 */
const absoluteComponents = String.raw`^/([^/:\x00]+(/[^/:\x00]+)*)?$`;

const volumeSubPathCheck: PathCheck = {
  rule: `!self.startsWith('/') && !self.matches('${parentComponent}')`,
  test: (path) => !path.startsWith("/") && !new RegExp(parentComponent).test(path),
  message:
    "must be a relative path inside the volume, without a leading '/' or a '..' component (e.g. clickstream/avro)",
};

const blockPoolDirectoryCheck: PathCheck = {
  rule: `self.matches(r'${absoluteComponents}') && !self.matches('${dotComponent}')`,
  test: (path) => new RegExp(absoluteComponents).test(path) && !new RegExp(dotComponent).test(path),
  message:
    "must be an absolute path in the BlockPool: a leading '/', no empty, '.' or '..' component and no ':' (e.g. /lake/clickstream)",
};

function checkedPath(check: PathCheck) {
  return z
    .string()
    .max(4096)
    .refine(check.test, { message: check.message })
    .meta({ "x-kubernetes-validations": [{ rule: check.rule, message: check.message }] });
}

/** A directory relative to a volume's root that cannot climb out of it. */
export function volumeSubPath() {
  return checkedPath(volumeSubPathCheck);
}

/** An absolute directory inside a BlockPool, as its name nodes accept it. */
export function blockPoolDirectory(description: string) {
  return checkedPath(blockPoolDirectoryCheck).describe(description);
}

export const blockPoolPathSchema = z
  .object({
    blockPool: objectName("Name of a BlockPool in the same namespace."),
    path: blockPoolDirectory(
      "Absolute directory in the BlockPool, e.g. /lake/clickstream; created when missing.",
    ),
  })
  .describe("A directory in a BlockPool of the same namespace.");
export type BlockPoolPath = z.infer<typeof blockPoolPathSchema>;

export const volumePathSchema = z
  .object({
    claimName: objectName("Name of a PersistentVolumeClaim in the same namespace, mounted read-write."),
    subPath: volumeSubPath()
      .default("")
      .describe(
        "Relative directory inside the volume, e.g. clickstream/avro; the volume's root when empty. No leading '/' and no '..' component: files stay inside the claim.",
      ),
  })
  .describe(
    "A directory on an existing PersistentVolumeClaim (ReadWriteMany when more than one pod writes).",
  );

/** Where files go: a BlockPool directory or a PVC; exactly one (enforced by a CEL rule on the parent). */
export const fileTargetFields = {
  blockPool: blockPoolPathSchema.optional().describe("Write into a directory of a BlockPool."),
  volume: volumePathSchema.optional().describe("Write into a directory of a PersistentVolumeClaim."),
};
export const exactlyOneFileTargetRule = "has(self.blockPool) != has(self.volume)";

/** The schedule presets Tributary reads, and the five fields each stands for, as in Vixie cron. */
export const schedulePresets = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
} as const;

const presetNames = Object.keys(schedulePresets).map((preset) => preset.slice(1));

/**
 * A preset or five whitespace-separated fields. Only the shape is checked here, and so by the
 * API server as a pattern: what each field holds (ranges, names, dates that exist) needs a cron
 * parser, which the operator's validate step runs (Degraded, reason InvalidSchedule).
 */
export const cronOrPresetSchema = z
  .string()
  .max(128)
  .regex(new RegExp(`^(@(${presetNames.join("|")})|(\\S+\\s+){4}\\S+)$`), {
    message: `must be a cron expression of 5 fields (minute hour day-of-month month day-of-week, e.g. '*/15 * * * *') or one of the presets ${Object.keys(schedulePresets).join(", ")}`,
  });
