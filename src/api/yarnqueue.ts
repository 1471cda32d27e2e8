/**
 * YarnQueue: one queue of a YARN-like capacity scheduler. The YarnQueue objects of a namespace
 * that name the same `spec.cluster` form one queue tree: the one with `spec.root` is the root
 * queue and declares the cluster itself (resource manager and node managers); every other
 * queue hangs under `spec.parent`, or under the root when `parent` is omitted. A queue's leaf
 * name is its metadata.name, so its path is e.g. `root.analytics.adhoc`.
 */
import { z } from "zod";
import {
  clusterOperationSchema,
  deletionPolicySchema,
  dns1123Label,
  quantitySchema,
  roleFields,
  statefulRoleFields,
} from "./common.js";
import { commonStatusFields } from "./conditions.js";
import { defineResource, type ResourceOf, readyColumn } from "./resource.js";

const percent = (what: string) => z.number().min(0).max(100).describe(what);

const principalList = z
  .object({
    users: z
      .array(z.string().min(1).max(256))
      .max(256)
      .default([])
      .describe("User names; '*' means everyone."),
    groups: z.array(z.string().min(1).max(256)).max(256).default([]).describe("Group names."),
  })
  .describe("Users and groups, as YARN ACLs list them.");

export const yarnClusterSchema = z
  .object({
    resourceManager: z
      .object(
        roleFields({
          what: "resource manager",
          replicas: {
            default: 1,
            min: 1,
            max: 1,
            note: "Always 1: one resource manager keeps the journal; running applications survive its restart, there is no standby yet.",
          },
        }),
      )
      .prefault({})
      .describe(
        "The resource manager: runs the capacity scheduler over this queue tree and the application-master protocol.",
      ),
    nodeManagers: z
      .object({
        ...statefulRoleFields({
          what: "node manager",
          replicas: {
            default: 2,
            min: 0,
            note: "The cluster's capacity is replicas × vcores and replicas × memory.",
          },
          storage: { defaultSize: "10Gi", note: "Local directories and logs of containers." },
        }),
        vcores: z
          .number()
          .int()
          .min(1)
          .max(1024)
          .default(4)
          .describe(
            "Virtual cores each node manager offers to containers (yarn.nodemanager.resource.cpu-vcores).",
          ),
        memory: quantitySchema
          .default("8Gi")
          .describe(
            "Memory each node manager offers to containers (yarn.nodemanager.resource.memory-mb), as a quantity.",
          ),
      })
      .prefault({})
      .describe("The node managers: launch application containers on behalf of the resource manager."),
    minimumAllocation: z
      .object({
        vcores: z
          .number()
          .int()
          .min(1)
          .default(1)
          .describe("Smallest vcores of a container; requests are rounded up to a multiple."),
        memory: quantitySchema
          .default("1Gi")
          .describe("Smallest memory of a container; requests are rounded up to a multiple."),
      })
      .prefault({})
      .describe("Smallest container the scheduler allocates (yarn.scheduler.minimum-allocation-*)."),
    maximumAllocation: z
      .object({
        vcores: z.number().int().min(1).default(4).describe("Largest vcores of one container."),
        memory: quantitySchema.default("8Gi").describe("Largest memory of one container."),
      })
      .prefault({})
      .describe("Largest container the scheduler allocates (yarn.scheduler.maximum-allocation-*)."),
    deletionPolicy: deletionPolicySchema(
      "Delete",
      "running applications are killed and the node managers' volumes (container logs) are deleted",
    ),
    clusterOperation: clusterOperationSchema,
  })
  .describe(
    "Makes this queue the root of the cluster named spec.cluster and declares the cluster's processes. Exactly one YarnQueue per cluster has it; its capacity is always 100% and it has no parent.",
  );

export const yarnQueueSpecSchema = z
  .object({
    cluster: z
      .string()
      .min(1)
      .max(52)
      .regex(dns1123Label)
      .default("default")
      .describe(
        "Name of the YARN cluster the queue belongs to; default 'default'. Queues of a namespace with the same cluster form one tree. Immutable.",
      ),
    parent: z
      .string()
      .max(63)
      .regex(dns1123Label)
      .optional()
      .describe(
        "metadata.name of the parent YarnQueue in the same cluster; the root queue when omitted. A queue with children is a parent queue and takes no applications itself. Immutable.",
      ),
    root: yarnClusterSchema.optional(),
    capacity: percent(
      "Guaranteed share of the parent's resources, in percent (fractions allowed); the capacities of siblings must add up to 100. Required except on the root queue.",
    ).optional(),
    maximumCapacity: percent(
      "Most of the parent's resources the queue may use by borrowing idle capacity, in percent; default 100 (elastic). At least capacity.",
    ).default(100),
    userLimitFactor: z
      .number()
      .gt(0)
      .max(1000)
      .default(1)
      .describe(
        "Multiple of the queue's capacity one user may take; default 1. Above 1 a single user can borrow beyond the guarantee.",
      ),
    minimumUserLimitPercent: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(100)
      .describe(
        "Smallest share, in percent, each active user is guaranteed when users compete; default 100 (no sharing floor).",
      ),
    maxApplications: z
      .number()
      .int()
      .min(0)
      .max(1000000)
      .optional()
      .describe(
        "Most applications running or pending in the queue; proportional to its absolute capacity when omitted.",
      ),
    maximumAMResourcePercent: z
      .number()
      .gt(0)
      .max(1)
      .default(0.1)
      .describe(
        "Fraction (0..1] of the queue's resources application masters may use, which bounds concurrently running applications; default 0.1.",
      ),
    priority: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .default(0)
      .describe("Priority among sibling queues when the scheduler hands out spare resources; higher first."),
    state: z
      .enum(["RUNNING", "STOPPED"])
      .default("RUNNING")
      .describe(
        "RUNNING accepts applications; STOPPED rejects new ones and lets running ones finish (draining).",
      ),
    acl: z
      .object({
        submitApplications: principalList
          .optional()
          .describe(
            "Who may submit applications to the queue; inherited from the parent when omitted (the root allows everyone).",
          ),
        administerQueue: principalList
          .optional()
          .describe(
            "Who may kill or reprioritise others' applications; inherited from the parent when omitted.",
          ),
      })
      .optional()
      .describe("Access control of the queue; a principal allowed on a parent is allowed on its children."),
  })
  .describe("Desired state of the queue, as capacity-scheduler properties of its path.");

export const yarnQueueStatusSchema = z
  .object({
    ...commonStatusFields,
    queuePath: z.string().optional().describe("Full path of the queue, e.g. root.analytics.adhoc."),
    leaf: z.boolean().optional().describe("Whether the queue has no children and takes applications."),
    guaranteedCapacity: z
      .number()
      .min(0)
      .max(100)
      .optional()
      .describe(
        "Absolute guaranteed capacity: percent of the whole cluster (product of the capacities up the path).",
      ),
    absoluteMaximumCapacity: z
      .number()
      .min(0)
      .max(100)
      .optional()
      .describe("Absolute maximum capacity: percent of the whole cluster the queue may reach."),
    usedCapacity: z
      .number()
      .min(0)
      .optional()
      .describe("Used resources in percent of the queue's guaranteed capacity; above 100 while borrowing."),
    runningApplications: z.number().int().min(0).optional().describe("Applications running in the queue."),
    pendingApplications: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Applications accepted and waiting for resources."),
    pendingContainers: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Containers the queue's applications asked for and have not been given yet."),
    absoluteUsedCapacity: z
      .number()
      .min(0)
      .optional()
      .describe("Used resources in percent of the whole cluster."),
    cluster: z
      .object({
        resourceManagerAddress: z.string().optional().describe("In-cluster address of the resource manager."),
        liveNodeManagers: z
          .number()
          .int()
          .min(0)
          .optional()
          .describe("Node managers registered and healthy."),
        totalVcores: z.number().int().min(0).optional().describe("Vcores offered by live node managers."),
        totalMemoryBytes: z
          .number()
          .int()
          .min(0)
          .optional()
          .describe("Memory offered by live node managers."),
      })
      .optional()
      .describe("State of the cluster; on the root queue only."),
  })
  .describe("Observed state of the queue.");

export const yarnQueueDefinition = defineResource({
  kind: "YarnQueue",
  description:
    "A queue of a YARN-like capacity scheduler. The queue with spec.root also declares its cluster: the resource manager and the node managers that run application containers.",
  plural: "yarnqueues",
  shortNames: ["yq"],
  spec: yarnQueueSpecSchema,
  status: yarnQueueStatusSchema,
  printerColumns: [
    readyColumn("Whether the queue is live in its cluster's scheduler."),
    { name: "Path", type: "string", jsonPath: ".status.queuePath", description: "Full queue path." },
    { name: "State", type: "string", jsonPath: ".spec.state", description: "RUNNING or STOPPED." },
    { name: "Capacity", type: "number", jsonPath: ".spec.capacity", description: "Percent of the parent." },
    {
      name: "Guaranteed",
      type: "number",
      jsonPath: ".status.guaranteedCapacity",
      description: "Percent of the cluster.",
    },
    {
      name: "Used",
      type: "number",
      jsonPath: ".status.usedCapacity",
      description: "Percent of the guarantee in use.",
    },
    {
      name: "Running",
      type: "integer",
      jsonPath: ".status.runningApplications",
      description: "Running applications.",
    },
    {
      name: "Pending",
      type: "integer",
      jsonPath: ".status.pendingApplications",
      description: "Pending applications.",
    },
    { name: "Cluster", type: "string", jsonPath: ".spec.cluster", description: "YARN cluster.", priority: 1 },
    {
      name: "Age",
      type: "date",
      jsonPath: ".metadata.creationTimestamp",
      description: "Time since creation.",
    },
  ],
  validations: [
    {
      path: "",
      rule: "!self.metadata.name.contains('.')",
      message: "metadata.name must not contain '.': it is the queue's name in a dotted queue path",
    },
    {
      path: "",
      rule: "has(self.spec.root) || self.metadata.name != 'root'",
      message: "metadata.name 'root' is reserved for the root queue (spec.root)",
    },
    {
      path: "spec.cluster",
      rule: "self == oldSelf",
      message: "spec.cluster is immutable: create the queue anew in the other cluster",
    },
    {
      path: "spec",
      rule: "has(self.parent) == has(oldSelf.parent) && (!has(self.parent) || self.parent == oldSelf.parent)",
      message: "spec.parent is immutable: moving a queue would strand its running applications",
      fieldPath: ".parent",
    },
    {
      path: "spec",
      rule: "has(self.root) == has(oldSelf.root)",
      message:
        "spec.root cannot be added or removed after creation: a queue cannot become or stop being the root",
      fieldPath: ".root",
    },
    {
      path: "spec",
      rule: "!has(self.root) || !has(self.parent)",
      message: "spec.parent must be omitted on the root queue (spec.root)",
      fieldPath: ".parent",
    },
    {
      path: "spec",
      rule: "has(self.root) || has(self.capacity)",
      message: "spec.capacity is required on every queue but the root",
      fieldPath: ".capacity",
    },
    {
      path: "spec",
      rule: "!has(self.capacity) || self.maximumCapacity >= self.capacity",
      message: "spec.maximumCapacity must be at least spec.capacity",
      fieldPath: ".maximumCapacity",
    },
  ],
});

export type YarnQueueSpec = z.infer<typeof yarnQueueSpecSchema>;
export type YarnQueueStatus = z.infer<typeof yarnQueueStatusSchema>;
export type YarnCluster = z.infer<typeof yarnClusterSchema>;
export type YarnQueue = ResourceOf<typeof yarnQueueDefinition>;
