/**
 * BlockPool: HDFS-like block storage. Name nodes keep the namespace (one active, one standby
 * sharing an edit log), data nodes keep blocks replicated (3 copies by default) or, per
 * directory, Reed-Solomon coded; a WebHDFS-compatible REST API serves clients.
 */
import { z } from "zod";
import {
  blockPoolDirectory,
  clusterOperationSchema,
  deletionPolicySchema,
  quantitySchema,
  statefulRoleFields,
} from "./common.js";
import { commonStatusFields } from "./conditions.js";
import { defineResource, type ResourceOf, readyColumn } from "./resource.js";

/** Erasure-coding policies as HDFS names them: codec, data units, parity units. */
export const erasureCodingPolicies = ["RS-6-3", "RS-3-2", "RS-10-4", "XOR-2-1"] as const;
export type ErasureCodingPolicyName = (typeof erasureCodingPolicies)[number];

/** A Kubernetes label selector (metav1.LabelSelector). */
const labelSelectorSchema = z
  .object({
    matchLabels: z
      .record(z.string().min(1).max(317), z.string().max(63))
      .optional()
      .describe("Labels a selected object carries, all of them."),
    matchExpressions: z
      .array(
        z
          .object({
            key: z.string().min(1).max(317).describe("The label's key."),
            operator: z
              .enum(["In", "NotIn", "Exists", "DoesNotExist"])
              .describe("How the values are matched."),
            values: z.array(z.string().max(63)).max(64).optional().describe("Values for In and NotIn."),
          })
          .describe("One requirement: the label's key, an operator and, for In and NotIn, values."),
      )
      .max(16)
      .optional()
      .describe("Requirements on labels, all of them."),
  })
  .describe("A label selector.");

export const blockPoolSpecSchema = z
  .object({
    nameNodes: z
      .object({
        ...statefulRoleFields({
          what: "name node",
          replicas: {
            default: 2,
            min: 1,
            max: 2,
            note: "2 runs an active and a standby that takes over when the active fails (default); 1 has no failover and suits development only.",
          },
          storage: {
            defaultSize: "5Gi",
            note: "Holds the namespace image and the edit log of a single name node; with two, they live on sharedEdits.",
          },
        }),
        sharedEdits: z
          .object({
            size: quantitySchema.default("5Gi").describe("Capacity of the claim; default 5Gi."),
            storageClassName: z
              .string()
              .max(253)
              .optional()
              .describe(
                "A StorageClass that provisions ReadWriteMany volumes (NFS, CephFS, EFS, Azure Files, Filestore); the cluster's default class when omitted.",
              ),
          })
          .prefault({})
          .describe(
            "With two name nodes: the one ReadWriteMany claim both mount, holding the edit log, the checkpoints and the fencing epoch (HDFS's shared edits directory).",
          ),
      })
      .prefault({})
      .describe("The name nodes: keep the file tree and block map and choose where blocks go."),
    dataNodes: z
      .object(
        statefulRoleFields({
          what: "data node",
          replicas: { default: 3, min: 1, note: "At least spec.replication, and k+m for coded directories." },
          storage: {
            defaultSize: "10Gi",
            note: "Holds the blocks; the pool's capacity is the sum over data nodes.",
          },
        }),
      )
      .prefault({})
      .describe("The data nodes: store blocks and report them to the name nodes."),
    replication: z
      .number()
      .int()
      .min(1)
      .max(512)
      .default(3)
      .describe(
        "Copies of each block of a replicated file on distinct data nodes (and distinct racks with rackAwareness); default 3. Applies to new files; existing files keep theirs.",
      ),
    blockSize: quantitySchema
      .default("128Mi")
      .describe(
        "Size at which files are split into blocks, as bytes or a quantity; default 128Mi. Applies to new files.",
      ),
    erasureCoding: z
      .array(
        z
          .object({
            path: blockPoolDirectory("Directory whose new files are coded, recursively, e.g. /lake/archive."),
            policy: z
              .enum(erasureCodingPolicies)
              .describe(
                "Coding policy: RS-k-m (Reed-Solomon, k data + m parity cells, survives m lost nodes at (k+m)/k storage) or XOR-2-1. Needs at least k+m data nodes.",
              ),
            cellSize: quantitySchema
              .default("1Mi")
              .describe("Size of one striping cell; default 1Mi (HDFS's 1024k)."),
          })
          .describe("An erasure-coding policy on one directory."),
      )
      .max(64)
      .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["path"] })
      .default([])
      .describe(
        "Directories stored with erasure coding instead of replication: about half the raw storage of 3 copies for RS-6-3, at the cost of CPU and reconstruction reads.",
      ),
    quotas: z
      .array(
        z
          .object({
            path: blockPoolDirectory("Directory the quota applies to, recursively, e.g. /lake/clickstream."),
            bytes: quantitySchema
              .optional()
              .describe("Space quota: raw bytes (replicas and parity included) the directory may use."),
            files: z
              .number()
              .int()
              .min(1)
              .optional()
              .describe("Name quota: most files and directories under the directory, itself included."),
          })
          .describe("A quota on one directory; writes beyond it fail."),
      )
      .max(256)
      .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["path"] })
      .default([])
      .describe("Space and name quotas per directory."),
    rackAwareness: z
      .object({
        topologyKey: z
          .string()
          .min(1)
          .max(316)
          .default("topology.kubernetes.io/zone")
          .describe(
            "Node label whose value is a data node's rack; replicas of a block are spread across racks.",
          ),
      })
      .optional()
      .describe("Place replicas across failure domains; all data nodes are one rack when omitted."),
    permissions: z
      .object({
        enabled: z
          .boolean()
          .default(true)
          .describe(
            "Check owners and modes on every operation, as HDFS's dfs.permissions.enabled (default). Off, modes are stored but anyone may do anything.",
          ),
        superusers: z
          .array(
            z
              .string()
              .min(1)
              .max(256)
              .regex(/^[^\s,]+$/),
          )
          .min(1)
          .max(64)
          .default(["hdfs"])
          .describe(
            "Users who pass every check (HDFS's superuser); default hdfs. Identity is the caller's user.name, as in HDFS's simple authentication.",
          ),
      })
      .prefault({})
      .describe(
        "Owner and mode checks. The root directory starts world-writable and sticky (like /tmp): anyone creates top-level directories, only their owners remove them.",
      ),
    networkPolicy: z
      .object({
        enabled: z
          .boolean()
          .default(true)
          .describe(
            "Create a NetworkPolicy admitting to the pool's pods only the pool's own pods, the operator's pods and pods labelled tributary.dev/blockpool-client=<pool name> in the pool's namespace (plus allowFrom). Needs a network plugin that enforces NetworkPolicy.",
          ),
        allowFrom: z
          .array(
            z
              .object({
                namespaceSelector: labelSelectorSchema
                  .optional()
                  .describe("Namespaces whose pods may connect; omitted: the pool's namespace only."),
                podSelector: labelSelectorSchema
                  .optional()
                  .describe("Pods that may connect, within the selected namespaces; omitted: all of them."),
              })
              .describe("A NetworkPolicy peer, as in networking.k8s.io/v1 NetworkPolicyPeer."),
          )
          .max(32)
          .default([])
          .describe(
            "More clients allowed to reach the name and data nodes (e.g. Spark in another namespace).",
          ),
      })
      .prefault({})
      .describe("Who may connect to the pool's name nodes and data nodes."),
    webHdfs: z
      .object({
        port: z
          .number()
          .int()
          .min(1)
          .max(65535)
          .default(9870)
          .describe("Port of the WebHDFS REST API (/webhdfs/v1)."),
      })
      .prefault({})
      .describe("The WebHDFS-compatible REST API served by the active name node."),
    deletionPolicy: deletionPolicySchema(
      "Retain",
      "the name and data nodes' PersistentVolumeClaims are deleted, and every file with them",
    ),
    clusterOperation: clusterOperationSchema,
  })
  .describe("Desired state of the block pool.");

export const blockPoolStatusSchema = z
  .object({
    ...commonStatusFields,
    activeNameNode: z.string().optional().describe("Pod name of the active name node."),
    standbyNameNode: z.string().optional().describe("Pod name of the standby name node."),
    liveDataNodes: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe(
        "Data nodes in service that sent a heartbeat recently, as the active name node counts them; ready data-node pods while no name node can be reached.",
      ),
    deadDataNodes: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Known data nodes that stopped sending heartbeats."),
    decommissioningDataNodes: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe(
        "Data nodes the active name node is decommissioning: copying their blocks to other nodes before they leave.",
      ),
    retiringDataNodes: z
      .array(z.string())
      .optional()
      .describe(
        "Data-node pods a scale-down will remove, decommissioned first; the data-node StatefulSet keeps its replicas until all are DECOMMISSIONED. Absent when no scale-down waits.",
      ),
    capacityBytes: z.number().int().min(0).optional().describe("Raw capacity of the live data nodes."),
    usedBytes: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Raw bytes used by blocks, replicas and parity included."),
    files: z.number().int().min(0).optional().describe("Files and directories in the namespace."),
    blocks: z.number().int().min(0).optional().describe("Blocks (block groups for coded files)."),
    underReplicatedBlocks: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Blocks with fewer live replicas (or fragments) than their policy asks; being repaired."),
    missingBlocks: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Blocks with no live replica, or fewer than k fragments: data that cannot be read now."),
    erasureCodingPolicies: z
      .array(z.string())
      .optional()
      .describe(
        "Erasure-coding policies in force on the pool's directories, as the active name node names them (RS-6-3-1024k); spec.erasureCoding's policies while no name node can be reached.",
      ),
    webHdfsEndpoint: z.string().optional().describe("In-cluster URL of the WebHDFS API."),
  })
  .describe("Observed state of the block pool.");

export const blockPoolDefinition = defineResource({
  kind: "BlockPool",
  description:
    "HDFS-like block storage: active and standby name nodes, data nodes, replication (3 by default), Reed-Solomon erasure coding per directory and a WebHDFS-compatible REST API.",
  plural: "blockpools",
  shortNames: ["bp"],
  spec: blockPoolSpecSchema,
  status: blockPoolStatusSchema,
  printerColumns: [
    readyColumn("Whether an active name node and enough data nodes serve the pool."),
    { name: "Active", type: "string", jsonPath: ".status.activeNameNode", description: "Active name node." },
    { name: "Live", type: "integer", jsonPath: ".status.liveDataNodes", description: "Live data nodes." },
    { name: "Dead", type: "integer", jsonPath: ".status.deadDataNodes", description: "Dead data nodes." },
    { name: "Used", type: "integer", jsonPath: ".status.usedBytes", description: "Raw bytes used." },
    {
      name: "Under-Replicated",
      type: "integer",
      jsonPath: ".status.underReplicatedBlocks",
      description: "Blocks below their replication.",
    },
    {
      name: "Missing",
      type: "integer",
      jsonPath: ".status.missingBlocks",
      description: "Unreadable blocks.",
    },
    {
      name: "Capacity",
      type: "integer",
      jsonPath: ".status.capacityBytes",
      description: "Raw capacity.",
      priority: 1,
    },
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
      rule: "self.replication <= self.dataNodes.replicas",
      message:
        "spec.replication must not exceed spec.dataNodes.replicas: each copy of a block needs its own data node",
      fieldPath: ".replication",
    },
    {
      path: "spec",
      rule: "self.erasureCoding.all(e, self.dataNodes.replicas >= (e.policy == 'RS-10-4' ? 14 : e.policy == 'RS-6-3' ? 9 : e.policy == 'RS-3-2' ? 5 : 3))",
      message:
        "spec.erasureCoding: a policy RS-k-m needs at least k+m data nodes (RS-6-3: 9, RS-3-2: 5, RS-10-4: 14, XOR-2-1: 3)",
      fieldPath: ".erasureCoding",
    },
    {
      path: "spec.quotas[]",
      rule: "has(self.bytes) || has(self.files)",
      message: "spec.quotas[] needs bytes, files or both",
    },
  ],
});

export type BlockPoolSpec = z.infer<typeof blockPoolSpecSchema>;
export type BlockPoolStatus = z.infer<typeof blockPoolStatusSchema>;
export type BlockPool = ResourceOf<typeof blockPoolDefinition>;
