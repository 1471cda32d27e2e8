/**
 * The capacity scheduler, pure and synchronous: a queue tree with guaranteed and maximum
 * capacities, per-user limits, FIFO-with-priorities ordering inside a leaf, the application-master
 * share limit, delay scheduling for locality and proportional preemption. It knows nothing of
 * HTTP or processes: the resource manager feeds it node heartbeats, asks and completions, and
 * takes back allocations. Capacity is counted in memory, as YARN's DefaultResourceCalculator
 * does; a container must also fit a node's free vcores.
 *
 * Shapes and rules follow Hadoop's CapacityScheduler, LeafQueue and
 * ProportionalCapacityPreemptionPolicy; where this one is simpler the comment says so.
 */

export interface Resource {
  /** MB, as YARN's `memory-mb`. */
  memory: number;
  vcores: number;
}

export interface Principals {
  users: string[];
  groups: string[];
}

/** One queue of the tree, as capacity-scheduler properties of its path. */
export interface QueueDefinition {
  /** Dotted path from `root`, e.g. `root.analytics.adhoc`. */
  path: string;
  /** Percent of the parent; the root is 100. */
  capacity: number;
  maximumCapacity?: number;
  userLimitFactor?: number;
  minimumUserLimitPercent?: number;
  maxApplications?: number;
  maximumAMResourcePercent?: number;
  priority?: number;
  state?: "RUNNING" | "STOPPED";
  acl?: { submitApplications?: Principals; administerQueue?: Principals };
}

export interface ResourceRequest {
  /** Lower is served first, as YARN's request priorities. */
  priority: number;
  /** `*` (anywhere), a rack (`/default-rack`) or a host name. */
  resourceName: string;
  capability: Resource;
  numContainers: number;
  relaxLocality?: boolean;
}

export interface Container {
  id: string;
  appId: string;
  nodeId: string;
  host: string;
  resource: Resource;
  priority: number;
  isAM: boolean;
  /** NODE_LOCAL, RACK_LOCAL or OFF_SWITCH. */
  locality: "NODE_LOCAL" | "RACK_LOCAL" | "OFF_SWITCH";
  allocatedAt: number;
}

export interface ContainerStatusReport {
  containerId: string;
  state: "COMPLETE";
  exitStatus: number;
  diagnostics: string;
}

/** YARN's ContainerExitStatus values the scheduler itself produces. */
export const ExitStatus = {
  SUCCESS: 0,
  INVALID: -1000,
  ABORTED: -100,
  DISKS_FAILED: -101,
  PREEMPTED: -102,
  KILLED_EXCEEDED_VMEM: -103,
  KILLED_EXCEEDED_PMEM: -104,
  KILLED_BY_APPMASTER: -105,
  KILLED_BY_RESOURCEMANAGER: -106,
  KILLED_AFTER_APP_COMPLETION: -107,
} as const;

export class QueueConfigError extends Error {
  override name = "QueueConfigError";
}

/** A submission the scheduler refuses, with the reason a user reads. */
export class SubmissionRefused extends Error {
  override name = "SubmissionRefused";
}

export interface SchedulerOptions {
  minimumAllocation?: Resource;
  maximumAllocation?: Resource;
  /** Off by default, as yarn.resourcemanager.scheduler.monitor.enable. */
  preemption?: {
    enabled: boolean;
    /** yarn.resourcemanager.monitor.capacity.preemption.max_wait_before_kill (15 s in YARN). */
    maxWaitBeforeKillMs?: number;
    /** max_ignored_over_capacity: a queue this fraction over its ideal share is left alone. */
    maxIgnoredOverCapacity?: number;
    /** total_preemption_per_round: at most this fraction of the cluster per round. */
    totalPreemptionPerRound?: number;
  };
  /** Missed scheduling opportunities before a request gives up node locality (node-locality-delay). */
  nodeLocalityDelay?: number;
  now?: () => number;
  /** Names a new container; the resource manager gives YARN-shaped ids. */
  containerId?: (app: { id: string; attempt: number }, sequence: number) => string;
}

interface Node {
  id: string;
  host: string;
  rack: string;
  total: Resource;
  available: Resource;
  containers: Set<string>;
}

interface PriorityAsk {
  priority: number;
  capability: Resource;
  /** The `*` request: the total still wanted at this priority. */
  any: number;
  hosts: Map<string, number>;
  racks: Map<string, number>;
  relaxLocality: boolean;
  /** Scheduling opportunities passed over waiting for locality (delay scheduling). */
  missed: number;
}

interface App {
  id: string;
  attempt: number;
  queue: LeafQueue;
  user: string;
  priority: number;
  order: number;
  amResource: Resource | null;
  /** The master's container is wanted but not yet allocated. */
  amPending: boolean;
  active: boolean;
  asks: PriorityAsk[];
  pendingMemory: number;
  used: Resource;
  amUsed: Resource;
  containers: Map<string, Container>;
  newlyAllocated: Container[];
  completed: ContainerStatusReport[];
  /** Containers marked for preemption and when, reported to the master before they are killed. */
  toPreempt: Map<string, number>;
  containerSequence: number;
}

interface QueueBase {
  name: string;
  path: string;
  parent: ParentQueue | null;
  capacity: number;
  maximumCapacity: number;
  /** Fractions of the whole cluster. */
  absoluteCapacity: number;
  absoluteMaximumCapacity: number;
  priority: number;
  state: "RUNNING" | "STOPPED";
  submitAcl: Principals | undefined;
  adminAcl: Principals | undefined;
  usedMemory: number;
  usedVcores: number;
}

interface ParentQueue extends QueueBase {
  kind: "parent";
  children: Queue[];
}

interface LeafQueue extends QueueBase {
  kind: "leaf";
  userLimitFactor: number;
  minimumUserLimitPercent: number;
  maxApplications: number | undefined;
  maximumAMResourcePercent: number;
  /** Active first (FIFO by priority, then submission), then pending for the AM limit. */
  apps: App[];
  amUsedMemory: number;
  users: Map<string, { usedMemory: number; apps: number }>;
}

type Queue = ParentQueue | LeafQueue;

const EVERYONE: Principals = { users: ["*"], groups: [] };

function allowed(acl: Principals, user: string, groups: readonly string[]): boolean {
  return acl.users.includes("*") || acl.users.includes(user) || groups.some((g) => acl.groups.includes(g));
}

/**
 * What one assignment on a node gave: a container; WAITING, nothing, but a request that the node
 * could hold once enough of it is free (see assign); or null, nothing.
 */
const WAITING = "waiting";
type Assignment = Container | typeof WAITING | null;

const fits = (need: Resource, available: Resource) =>
  need.memory <= available.memory && need.vcores <= available.vcores;

export class CapacityScheduler {
  private readonly nodes = new Map<string, Node>();
  private readonly nodeList: Node[] = [];
  private readonly apps = new Map<string, App>();
  private readonly containers = new Map<string, Container>();
  private root!: ParentQueue;
  private readonly queuesByName = new Map<string, Queue>();
  private readonly queuesByPath = new Map<string, Queue>();
  private leaves: LeafQueue[] = [];
  private clusterMemory = 0;
  private clusterVcores = 0;
  private appOrder = 0;
  private readonly minimum: Resource;
  private readonly maximum: Resource;
  private readonly now: () => number;
  private readonly containerIdOf: (app: { id: string; attempt: number }, sequence: number) => string;
  private preemptionEnabled: boolean;
  private readonly maxWaitBeforeKillMs: number;
  private readonly maxIgnoredOverCapacity: number;
  private readonly totalPreemptionPerRound: number;
  private readonly nodeLocalityDelay: number | undefined;
  /** Allocations made since the scheduler started: the benchmark's count. */
  allocations = 0;

  constructor(queues: QueueDefinition[], options: SchedulerOptions = {}) {
    this.minimum = options.minimumAllocation ?? { memory: 1024, vcores: 1 };
    this.maximum = options.maximumAllocation ?? { memory: 8192, vcores: 4 };
    this.now = options.now ?? Date.now;
    this.containerIdOf =
      options.containerId ??
      ((app, sequence) => `${app.id}_${app.attempt}_${String(sequence).padStart(6, "0")}`);
    this.preemptionEnabled = options.preemption?.enabled ?? false;
    this.maxWaitBeforeKillMs = options.preemption?.maxWaitBeforeKillMs ?? 15_000;
    this.maxIgnoredOverCapacity = options.preemption?.maxIgnoredOverCapacity ?? 0.1;
    this.totalPreemptionPerRound = options.preemption?.totalPreemptionPerRound ?? 0.1;
    this.nodeLocalityDelay = options.nodeLocalityDelay;
    this.refreshQueues(queues);
  }

  get minimumAllocation(): Resource {
    return this.minimum;
  }
  get maximumAllocation(): Resource {
    return this.maximum;
  }

  setPreemption(enabled: boolean): void {
    this.preemptionEnabled = enabled;
  }

  // ---------------------------------------------------------------- queues

  /**
   * Replaces the queue tree, as `yarn rmadmin -refreshQueues`: capacities, limits, states and
   * ACLs change live; running applications keep their containers. Refused (nothing changes) when
   * a leaf with applications would disappear or become a parent, or siblings do not add to 100.
   */
  refreshQueues(definitions: QueueDefinition[]): void {
    const byPath = new Map(definitions.map((d) => [d.path, d]));
    if (!byPath.has("root")) byPath.set("root", { path: "root", capacity: 100 });
    for (const path of byPath.keys()) {
      if (!path.startsWith("root")) throw new QueueConfigError(`queue path '${path}' does not start at root`);
      const parentPath = path.slice(0, path.lastIndexOf("."));
      if (path !== "root" && !byPath.has(parentPath))
        throw new QueueConfigError(`queue '${path}': parent queue '${parentPath}' is not defined`);
    }
    const childrenOf = new Map<string, QueueDefinition[]>();
    for (const definition of byPath.values()) {
      if (definition.path === "root") continue;
      const parentPath = definition.path.slice(0, definition.path.lastIndexOf("."));
      childrenOf.set(parentPath, [...(childrenOf.get(parentPath) ?? []), definition]);
    }
    const names = new Map<string, string>();
    for (const path of byPath.keys()) {
      const name = path.slice(path.lastIndexOf(".") + 1);
      const other = names.get(name);
      if (other) throw new QueueConfigError(`queues '${other}' and '${path}' share the leaf name '${name}'`);
      names.set(name, path);
    }
    for (const [parentPath, children] of childrenOf) {
      const sum = children.reduce((total, child) => total + child.capacity, 0);
      if (Math.abs(sum - 100) > 1e-6)
        throw new QueueConfigError(
          `the capacities of the children of '${parentPath}' add up to ${Number(sum.toFixed(6))}% (${children
            .map((c) => `${c.path.slice(c.path.lastIndexOf(".") + 1)}=${c.capacity}`)
            .join(", ")}); they must add up to 100`,
        );
      for (const child of children) {
        if ((child.maximumCapacity ?? 100) < child.capacity)
          throw new QueueConfigError(
            `queue '${child.path}': maximumCapacity ${child.maximumCapacity} is below capacity ${child.capacity}`,
          );
      }
    }
    for (const [path, queue] of this.queuesByPath) {
      if (queue.kind !== "leaf" || queue.apps.length === 0) continue;
      if (!byPath.has(path))
        throw new QueueConfigError(
          `queue '${path}' has ${queue.apps.length} application(s) and cannot be removed; stop it and let them finish first`,
        );
      if (childrenOf.has(path))
        throw new QueueConfigError(
          `queue '${path}' has ${queue.apps.length} application(s) and cannot become a parent queue`,
        );
    }

    const previous = this.queuesByPath;
    const build = (definition: QueueDefinition, parent: ParentQueue | null): Queue => {
      const name = definition.path.slice(definition.path.lastIndexOf(".") + 1);
      const capacity = definition.path === "root" ? 100 : definition.capacity;
      const maximumCapacity = definition.path === "root" ? 100 : (definition.maximumCapacity ?? 100);
      const base: QueueBase = {
        name,
        path: definition.path,
        parent,
        capacity,
        maximumCapacity,
        absoluteCapacity: (parent ? parent.absoluteCapacity : 1) * (capacity / 100),
        absoluteMaximumCapacity: (parent ? parent.absoluteMaximumCapacity : 1) * (maximumCapacity / 100),
        priority: definition.priority ?? 0,
        state: parent?.state === "STOPPED" ? "STOPPED" : (definition.state ?? "RUNNING"),
        submitAcl: definition.acl?.submitApplications,
        adminAcl: definition.acl?.administerQueue,
        usedMemory: 0,
        usedVcores: 0,
      };
      const children = childrenOf.get(definition.path);
      if (children) {
        const queue: ParentQueue = { ...base, kind: "parent", children: [] };
        queue.children = children.map((child) => build(child, queue));
        return queue;
      }
      const old = previous.get(definition.path);
      const leaf: LeafQueue = {
        ...base,
        kind: "leaf",
        userLimitFactor: definition.userLimitFactor ?? 1,
        minimumUserLimitPercent: definition.minimumUserLimitPercent ?? 100,
        maxApplications: definition.maxApplications,
        maximumAMResourcePercent: definition.maximumAMResourcePercent ?? 0.1,
        apps: old?.kind === "leaf" ? old.apps : [],
        amUsedMemory: old?.kind === "leaf" ? old.amUsedMemory : 0,
        users: old?.kind === "leaf" ? old.users : new Map(),
      };
      return leaf;
    };
    const root = build(byPath.get("root")!, null) as ParentQueue;
    if (root.kind !== "parent") throw new QueueConfigError("the root queue needs at least one child queue");
    this.root = root;
    this.queuesByName.clear();
    this.queuesByPath.clear();
    this.leaves = [];
    const index = (queue: Queue) => {
      this.queuesByName.set(queue.name, queue);
      this.queuesByPath.set(queue.path, queue);
      if (queue.kind === "leaf") {
        this.leaves.push(queue);
        for (const app of queue.apps) app.queue = queue;
      } else queue.children.forEach(index);
    };
    index(root);
    // Used resources are recounted from the containers, which survive the refresh.
    for (const container of this.containers.values()) {
      const app = this.apps.get(container.appId);
      if (app) this.chargeQueues(app.queue, container.resource, 1);
    }
    for (const leaf of this.leaves) this.activatePending(leaf);
  }

  private queueOf(name: string): Queue | undefined {
    return this.queuesByPath.get(name) ?? this.queuesByName.get(name);
  }

  private effectiveAcl(queue: Queue, which: "submitAcl" | "adminAcl"): Principals[] {
    const chain: Principals[] = [];
    for (let q: Queue | null = queue; q; q = q.parent) {
      const acl = q[which];
      if (acl) chain.push(acl);
    }
    return chain;
  }

  /** YARN's rule: a principal allowed on a queue or any of its ancestors may act on it. */
  private mayAct(queue: Queue, which: "submitAcl" | "adminAcl", user: string, groups: readonly string[]) {
    const chain = this.effectiveAcl(queue, which);
    if (chain.length === 0) return which === "submitAcl" || allowed(EVERYONE, user, groups);
    return chain.some((acl) => allowed(acl, user, groups));
  }

  mayAdminister(queueName: string, user: string, groups: readonly string[] = []): boolean {
    const queue = this.queueOf(queueName);
    return queue ? this.mayAct(queue, "adminAcl", user, groups) : false;
  }

  /** Leaf queue's path for a name or path; throws SubmissionRefused with the reason. */
  resolveLeaf(queueName: string): string {
    const queue = this.queueOf(queueName);
    if (!queue) throw new SubmissionRefused(`queue '${queueName}' does not exist`);
    if (queue.kind !== "leaf")
      throw new SubmissionRefused(
        `queue '${queue.path}' is a parent queue; submit to one of its leaves (${queue.children.map((c) => c.name).join(", ")})`,
      );
    return queue.path;
  }

  // ---------------------------------------------------------------- nodes

  addNode(id: string, host: string, rack: string, total: Resource): void {
    if (this.nodes.has(id)) this.removeNode(id, "re-registered");
    const node: Node = {
      id,
      host,
      rack,
      total: { ...total },
      available: { ...total },
      containers: new Set(),
    };
    this.nodes.set(id, node);
    this.nodeList.push(node);
    this.clusterMemory += total.memory;
    this.clusterVcores += total.vcores;
  }

  hasNode(id: string): boolean {
    return this.nodes.has(id);
  }

  /** A lost or removed node: its containers complete as ABORTED and each master is told. */
  removeNode(id: string, why = "lost"): Container[] {
    const node = this.nodes.get(id);
    if (!node) return [];
    const lost: Container[] = [];
    for (const containerId of [...node.containers]) {
      const container = this.containers.get(containerId)!;
      lost.push(container);
      this.completeContainer(
        containerId,
        ExitStatus.ABORTED,
        `Container released on a *${why}* node ${node.host} (${node.id})`,
      );
    }
    this.nodes.delete(id);
    this.nodeList.splice(this.nodeList.indexOf(node), 1);
    this.clusterMemory -= node.total.memory;
    this.clusterVcores -= node.total.vcores;
    return lost;
  }

  get clusterResource(): Resource {
    return { memory: this.clusterMemory, vcores: this.clusterVcores };
  }

  /** The largest node: a request above it can never run. */
  largestNode(): Resource {
    let memory = 0;
    let vcores = 0;
    for (const node of this.nodeList) {
      memory = Math.max(memory, node.total.memory);
      vcores = Math.max(vcores, node.total.vcores);
    }
    return { memory, vcores };
  }

  // ---------------------------------------------------------------- applications

  /** Checks a submission without changing anything; throws SubmissionRefused with the reason. */
  checkSubmission(queueName: string, user: string, groups: readonly string[] = []): LeafQueue {
    const path = this.resolveLeaf(queueName);
    const queue = this.queuesByPath.get(path) as LeafQueue;
    if (queue.state !== "RUNNING")
      throw new SubmissionRefused(
        `queue '${queue.path}' is STOPPED: it lets running applications finish and accepts no new ones`,
      );
    if (!this.mayAct(queue, "submitAcl", user, groups))
      throw new SubmissionRefused(
        `user '${user}' may not submit applications to queue '${queue.path}' (acl)`,
      );
    const maxApps = this.maxApplications(queue);
    if (queue.apps.length >= maxApps)
      throw new SubmissionRefused(
        `queue '${queue.path}' already has ${queue.apps.length} applications, its maxApplications is ${maxApps}`,
      );
    const perUser = Math.max(
      1,
      Math.floor(maxApps * (queue.minimumUserLimitPercent / 100) * queue.userLimitFactor),
    );
    const userApps = queue.users.get(user)?.apps ?? 0;
    if (userApps >= perUser)
      throw new SubmissionRefused(
        `user '${user}' already has ${userApps} applications in queue '${queue.path}', its limit (maxApplicationsPerUser = maxApplications × minimumUserLimitPercent × userLimitFactor) is ${perUser}`,
      );
    return queue;
  }

  private maxApplications(queue: LeafQueue): number {
    // yarn.scheduler.capacity.maximum-applications (10,000) × absolute capacity when unset.
    return queue.maxApplications ?? Math.max(1, Math.floor(10_000 * queue.absoluteCapacity));
  }

  /**
   * Adds an accepted application. With `amResource` the scheduler allocates its master's
   * container first, once the queue's maximumAMResourcePercent allows (the application is
   * pending until then).
   */
  addApplication(spec: {
    id: string;
    queue: string;
    user: string;
    groups?: string[];
    priority?: number;
    amResource?: Resource;
    attempt?: number;
    /** Recovery after a restart: skip the submission checks. */
    recovering?: boolean;
  }): void {
    const queue = spec.recovering
      ? (this.queuesByPath.get(this.resolveLeaf(spec.queue)) as LeafQueue)
      : this.checkSubmission(spec.queue, spec.user, spec.groups);
    if (spec.amResource) this.checkRequestable(spec.amResource);
    const app: App = {
      id: spec.id,
      attempt: spec.attempt ?? 1,
      queue,
      user: spec.user,
      priority: spec.priority ?? 0,
      order: this.appOrder++,
      amResource: spec.amResource ? this.normalize(spec.amResource) : null,
      amPending: spec.amResource !== undefined,
      active: false,
      asks: [],
      pendingMemory: 0,
      used: { memory: 0, vcores: 0 },
      amUsed: { memory: 0, vcores: 0 },
      containers: new Map(),
      newlyAllocated: [],
      completed: [],
      toPreempt: new Map(),
      containerSequence: 0,
    };
    this.apps.set(app.id, app);
    const user = queue.users.get(app.user) ?? { usedMemory: 0, apps: 0 };
    user.apps++;
    queue.users.set(app.user, user);
    // Pending applications sit after the active ones; activatePending moves them in FIFO order.
    queue.apps.push(app);
    this.activatePending(queue);
  }

  hasApplication(id: string): boolean {
    return this.apps.has(id);
  }

  /** A new attempt of the master: its containers are gone, a new AM container is wanted. */
  newAttempt(appId: string, attempt: number): void {
    const app = this.apps.get(appId);
    if (!app) return;
    for (const id of [...app.containers.keys()])
      this.completeContainer(id, ExitStatus.KILLED_BY_RESOURCEMANAGER, "Container of a failed attempt");
    app.attempt = attempt;
    app.asks = [];
    app.pendingMemory = 0;
    app.completed = [];
    app.newlyAllocated = [];
    app.amPending = app.amResource !== null;
  }

  /** Removes a finished or killed application; returns the containers still running, to kill. */
  removeApplication(appId: string): Container[] {
    const app = this.apps.get(appId);
    if (!app) return [];
    const running = [...app.containers.values()];
    for (const container of running)
      this.completeContainer(container.id, ExitStatus.KILLED_AFTER_APP_COMPLETION, "Application finished");
    const queue = app.queue;
    queue.apps.splice(queue.apps.indexOf(app), 1);
    const user = queue.users.get(app.user)!;
    user.apps--;
    if (user.apps === 0 && user.usedMemory === 0) queue.users.delete(app.user);
    this.apps.delete(appId);
    this.activatePending(queue);
    return running;
  }

  private amLimit(queue: LeafQueue): number {
    // YARN bounds masters by the queue's share of the cluster × maximum-am-resource-percent.
    return this.clusterMemory * queue.absoluteCapacity * queue.maximumAMResourcePercent;
  }

  private activatePending(queue: LeafQueue): void {
    let activeAny = queue.apps.some((app) => app.active);
    for (const app of queue.apps) {
      if (app.active) continue;
      const am = app.amResource?.memory ?? 0;
      // At least one application runs in a queue whatever the limit, as in YARN.
      if (activeAny && queue.amUsedMemory + am > this.amLimit(queue)) break;
      app.active = true;
      activeAny = true;
      queue.amUsedMemory += am;
    }
    queue.apps.sort((a, b) =>
      a.active !== b.active ? (a.active ? -1 : 1) : b.priority - a.priority || a.order - b.order,
    );
  }

  private normalize(resource: Resource): Resource {
    const step = (value: number, minimum: number) => Math.max(minimum, Math.ceil(value / minimum) * minimum);
    return {
      memory: step(resource.memory, this.minimum.memory),
      vcores: step(resource.vcores, this.minimum.vcores),
    };
  }

  /** A request larger than the maximum allocation or than any node is refused, with the figures. */
  checkRequestable(resource: Resource): void {
    if (resource.memory > this.maximum.memory || resource.vcores > this.maximum.vcores)
      throw new SubmissionRefused(
        `requested resource <memory:${resource.memory}, vCores:${resource.vcores}> exceeds the maximum allocation <memory:${this.maximum.memory}, vCores:${this.maximum.vcores}>`,
      );
    const largest = this.largestNode();
    if (this.nodeList.length > 0 && !fits(resource, largest))
      throw new SubmissionRefused(
        `requested resource <memory:${resource.memory}, vCores:${resource.vcores}> is larger than any node (the largest offers <memory:${largest.memory}, vCores:${largest.vcores}>)`,
      );
  }

  /**
   * The master's asks, with YARN's semantics: each (priority, resourceName) request replaces the
   * previous count; the `*` request is the total wanted at that priority, host and rack requests
   * say where the master prefers them.
   */
  updateAsks(appId: string, requests: readonly ResourceRequest[]): void {
    const app = this.apps.get(appId);
    if (!app) return;
    for (const request of requests) {
      if (request.numContainers < 0 || !Number.isFinite(request.numContainers))
        throw new SubmissionRefused(
          `numContainers must be a non-negative number, got ${request.numContainers}`,
        );
      this.checkRequestable(request.capability);
      let ask = app.asks.find((a) => a.priority === request.priority);
      if (!ask) {
        ask = {
          priority: request.priority,
          capability: this.normalize(request.capability),
          any: 0,
          hosts: new Map(),
          racks: new Map(),
          relaxLocality: true,
          missed: 0,
        };
        app.asks.push(ask);
        app.asks.sort((a, b) => a.priority - b.priority);
      }
      if (request.resourceName === "*") {
        app.pendingMemory += (request.numContainers - ask.any) * ask.capability.memory;
        ask.any = request.numContainers;
        ask.capability = this.normalize(request.capability);
        ask.relaxLocality = request.relaxLocality ?? true;
      } else if (request.resourceName.startsWith("/"))
        ask.racks.set(request.resourceName, request.numContainers);
      else ask.hosts.set(request.resourceName, request.numContainers);
    }
  }

  release(appId: string, containerIds: readonly string[]): void {
    const app = this.apps.get(appId);
    if (!app) return;
    for (const id of containerIds)
      if (app.containers.has(id))
        this.completeContainer(id, ExitStatus.KILLED_BY_APPMASTER, "Container released by the application");
  }

  /** Takes the containers allocated to an application since its last call. */
  pullAllocated(appId: string): Container[] {
    const app = this.apps.get(appId);
    if (!app || app.newlyAllocated.length === 0) return [];
    const allocated = app.newlyAllocated;
    app.newlyAllocated = [];
    return allocated;
  }

  pullCompleted(appId: string): ContainerStatusReport[] {
    const app = this.apps.get(appId);
    if (!app || app.completed.length === 0) return [];
    const completed = app.completed;
    app.completed = [];
    return completed;
  }

  /** Containers the scheduler will take back: YARN's PreemptionMessage (strict contract). */
  preemptionMessage(appId: string): string[] {
    const app = this.apps.get(appId);
    return app ? [...app.toPreempt.keys()] : [];
  }

  /** A container finished (exited, killed, lost): resources back, the master told. */
  completeContainer(containerId: string, exitStatus: number, diagnostics: string): Container | undefined {
    const container = this.containers.get(containerId);
    if (!container) return undefined;
    this.containers.delete(containerId);
    const node = this.nodes.get(container.nodeId);
    if (node) {
      node.containers.delete(containerId);
      node.available.memory += container.resource.memory;
      node.available.vcores += container.resource.vcores;
    }
    const app = this.apps.get(container.appId);
    if (app) {
      app.containers.delete(containerId);
      app.toPreempt.delete(containerId);
      app.used.memory -= container.resource.memory;
      app.used.vcores -= container.resource.vcores;
      if (container.isAM) {
        app.amUsed = { memory: 0, vcores: 0 };
      }
      const user = app.queue.users.get(app.user);
      if (user) user.usedMemory -= container.resource.memory;
      this.chargeQueues(app.queue, container.resource, -1);
      app.completed.push({ containerId, state: "COMPLETE", exitStatus, diagnostics });
    }
    return container;
  }

  /**
   * A completion the scheduler has no container for: one that ended while the resource manager
   * was down, reported by its node manager after the restart. The master is told all the same.
   */
  reportCompleted(appId: string, status: ContainerStatusReport): void {
    this.apps.get(appId)?.completed.push(status);
  }

  /**
   * A container the resource manager learned of from a node manager after a restart
   * (work-preserving recovery): charged to its application and node as if just allocated.
   */
  recoverContainer(container: Omit<Container, "allocatedAt" | "locality">): boolean {
    const app = this.apps.get(container.appId);
    const node = this.nodes.get(container.nodeId);
    if (!app || !node || this.containers.has(container.id)) return false;
    const recovered: Container = { ...container, locality: "OFF_SWITCH", allocatedAt: this.now() };
    this.place(app, node, recovered);
    if (container.isAM) app.amPending = false;
    return true;
  }

  private place(app: App, node: Node, container: Container): void {
    this.containers.set(container.id, container);
    node.containers.add(container.id);
    node.available.memory -= container.resource.memory;
    node.available.vcores -= container.resource.vcores;
    app.containers.set(container.id, container);
    app.used.memory += container.resource.memory;
    app.used.vcores += container.resource.vcores;
    if (container.isAM) app.amUsed = { ...container.resource };
    const user = app.queue.users.get(app.user);
    if (user) user.usedMemory += container.resource.memory;
    this.chargeQueues(app.queue, container.resource, 1);
  }

  private chargeQueues(queue: Queue, resource: Resource, sign: 1 | -1): void {
    for (let q: Queue | null = queue; q; q = q.parent) {
      q.usedMemory += sign * resource.memory;
      q.usedVcores += sign * resource.vcores;
    }
  }

  // ---------------------------------------------------------------- allocation

  /**
   * A node heartbeat: hand out as much of the node as the queues' shares and the asks allow.
   * Returns what was allocated (also queued per application for its next allocate call).
   */
  nodeUpdate(nodeId: string): Container[] {
    const node = this.nodes.get(nodeId);
    if (!node) return [];
    const allocated: Container[] = [];
    while (node.available.memory >= this.minimum.memory && node.available.vcores >= this.minimum.vcores) {
      const container = this.assign(this.root, node);
      if (!container || container === WAITING) break;
      allocated.push(container);
    }
    return allocated;
  }

  /** Runs a scheduling pass over every node (the asynchronous scheduler's loop). */
  schedule(): Container[] {
    const allocated: Container[] = [];
    for (const node of this.nodeList) for (const c of this.nodeUpdate(node.id)) allocated.push(c);
    return allocated;
  }

  private canUse(queue: Queue, need: Resource): boolean {
    for (let q: Queue | null = queue; q; q = q.parent) {
      if (q.usedMemory + need.memory > q.absoluteMaximumCapacity * this.clusterMemory + 1e-6) return false;
    }
    return true;
  }

  private usedRatio(queue: Queue): number {
    const guaranteed = queue.absoluteCapacity * this.clusterMemory;
    return guaranteed > 0
      ? queue.usedMemory / guaranteed
      : queue.usedMemory > 0
        ? Number.POSITIVE_INFINITY
        : 0;
  }

  private assign(queue: Queue, node: Node): Assignment {
    if (queue.kind === "leaf") return this.assignInLeaf(queue, node);
    if (queue.usedMemory + this.minimum.memory > queue.absoluteMaximumCapacity * this.clusterMemory + 1e-6)
      return null;
    // Children furthest below their guarantee first; among equals, the higher queue priority.
    const children = queue.children;
    if (children.length > 1) {
      children.sort((a, b) => this.usedRatio(a) - this.usedRatio(b) || b.priority - a.priority);
    }
    // A queue past its guarantee is not given a node while a queue below its guarantee waits
    // for room on it: otherwise the space that completions or preemption free, a container at
    // a time on different nodes, goes straight back to the borrowing queue whenever the waiting
    // request (an application master, say) is larger than one such hole, and the starved queue
    // never starts. YARN reserves the node for the waiting request to the same end; here the
    // node is held for as long as the request waits, and a queue below its guarantee may still
    // use it meanwhile.
    let waiting = false;
    for (const child of children) {
      if (waiting && this.usedRatio(child) >= 1) break;
      const assigned = this.assign(child, node);
      if (assigned === WAITING) {
        if (child.absoluteCapacity > 0 && this.usedRatio(child) < 1) waiting = true;
      } else if (assigned) return assigned;
    }
    return waiting ? WAITING : null;
  }

  /** `need` would fit `node` once enough of it is free, and `queue` may take it. */
  private couldFitLater(queue: Queue, node: Node, need: Resource): boolean {
    return !fits(need, node.available) && fits(need, node.total) && this.canUse(queue, need);
  }

  private userLimit(queue: LeafQueue, need: number): number {
    // LeafQueue.computeUserLimit: the queue's capacity (or what it uses, once past it) shared by
    // active users with a floor of minimum-user-limit-percent, capped at user-limit-factor.
    const guaranteed = queue.absoluteCapacity * this.clusterMemory;
    const current = queue.usedMemory < guaranteed ? guaranteed : queue.usedMemory + need;
    let activeUsers = 0;
    for (const user of queue.users.keys()) {
      for (const app of queue.apps) {
        if (app.user === user && app.active && (app.pendingMemory > 0 || app.amPending)) {
          activeUsers++;
          break;
        }
      }
    }
    const share = Math.max(
      current / Math.max(1, activeUsers),
      (current * queue.minimumUserLimitPercent) / 100,
    );
    const cap = Math.min(
      guaranteed * queue.userLimitFactor,
      queue.absoluteMaximumCapacity * this.clusterMemory,
    );
    // Rounded up to the minimum allocation so a small queue can still run one container.
    const step = this.minimum.memory;
    return Math.ceil(Math.min(share, cap) / step) * step;
  }

  private assignInLeaf(queue: LeafQueue, node: Node): Assignment {
    if (queue.apps.length === 0) return null;
    const limits = new Map<string, number>();
    let waiting = false;
    for (const app of queue.apps) {
      if (!app.active) break;
      if (!app.amPending && app.pendingMemory <= 0) continue;
      if (app.amPending) {
        const need = app.amResource!;
        if (!fits(need, node.available) || !this.canUse(queue, need)) {
          if (this.couldFitLater(queue, node, need)) waiting = true;
          continue;
        }
        return this.allocate(app, node, need, -1, true, "OFF_SWITCH");
      }
      // A running master's asks, highest request priority (lowest number) first.
      for (const ask of app.asks) {
        if (ask.any <= 0) continue;
        const need = ask.capability;
        if (!fits(need, node.available)) {
          const withinUserLimit =
            queue.users.get(app.user)!.usedMemory <=
            (limits.get(app.user) ?? this.userLimit(queue, need.memory));
          if (withinUserLimit && this.couldFitLater(queue, node, need)) waiting = true;
          continue;
        }
        if (!this.canUse(queue, need)) return waiting ? WAITING : null;
        let limit = limits.get(app.user);
        if (limit === undefined) {
          limit = this.userLimit(queue, need.memory);
          limits.set(app.user, limit);
        }
        // LeafQueue.canAssignToUser: refused once the user's usage is already past its limit,
        // so the last container may overshoot it (a queue is not stuck just below its guarantee).
        const user = queue.users.get(app.user)!;
        if (user.usedMemory > limit) break;
        const locality = this.locality(ask, node);
        if (!locality) continue;
        ask.any--;
        app.pendingMemory -= need.memory;
        const hostCount = ask.hosts.get(node.host);
        if (hostCount) ask.hosts.set(node.host, hostCount - 1);
        const rackCount = ask.racks.get(node.rack);
        if (rackCount) ask.racks.set(node.rack, rackCount - 1);
        ask.missed = 0;
        return this.allocate(app, node, need, ask.priority, false, locality);
      }
    }
    return waiting ? WAITING : null;
  }

  /** Delay scheduling: wait some opportunities for a node-local, then rack-local, placement. */
  private locality(ask: PriorityAsk, node: Node): Container["locality"] | null {
    if (ask.hosts.size === 0 && ask.racks.size === 0) return "OFF_SWITCH";
    if ((ask.hosts.get(node.host) ?? 0) > 0) return "NODE_LOCAL";
    const delay = this.nodeLocalityDelay ?? Math.min(40, this.nodeList.length);
    if ((ask.racks.get(node.rack) ?? 0) > 0 && ask.missed >= delay) return "RACK_LOCAL";
    if (ask.relaxLocality && ask.missed >= delay * 2) return "OFF_SWITCH";
    if (!ask.relaxLocality && ask.hosts.size > 0) {
      ask.missed++;
      return null;
    }
    ask.missed++;
    return null;
  }

  private allocate(
    app: App,
    node: Node,
    resource: Resource,
    priority: number,
    isAM: boolean,
    locality: Container["locality"],
  ): Container {
    if (isAM) app.amPending = false;
    const container: Container = {
      id: this.containerIdOf(app, ++app.containerSequence),
      appId: app.id,
      nodeId: node.id,
      host: node.host,
      resource: { memory: resource.memory, vcores: resource.vcores },
      priority,
      isAM,
      locality,
      allocatedAt: this.now(),
    };
    this.place(app, node, container);
    app.newlyAllocated.push(container);
    this.allocations++;
    return container;
  }

  /** Raises a recovered application's container sequence past the ids it already used. */
  bumpContainerSequence(appId: string, sequence: number): void {
    const app = this.apps.get(appId);
    if (app && app.containerSequence < sequence) app.containerSequence = sequence;
  }

  // ---------------------------------------------------------------- preemption

  /**
   * One round of ProportionalCapacityPreemptionPolicy: compute each leaf's ideal share (its
   * guarantee, then the idle rest handed out by guarantee among queues that still want more, up
   * to their maximum), mark containers of queues over their ideal share by more than the dead
   * zone (newest first, masters last), and return those whose grace period has passed: the
   * resource manager kills them and they complete as PREEMPTED.
   */
  preemptionRound(): Container[] {
    if (!this.preemptionEnabled || this.clusterMemory === 0) return [];
    const now = this.now();
    const toKill: Container[] = [];
    for (const app of this.apps.values())
      for (const [id, markedAt] of app.toPreempt) {
        if (now - markedAt >= this.maxWaitBeforeKillMs) {
          const container = this.containers.get(id);
          if (container) toKill.push(container);
        }
      }
    for (const container of toKill)
      this.completeContainer(container.id, ExitStatus.PREEMPTED, "Container preempted by scheduler");

    const ideal = this.idealAssignment();
    let starved = 0;
    for (const leaf of this.leaves) {
      const target = ideal.get(leaf)!;
      if (target > leaf.usedMemory) starved += target - leaf.usedMemory;
    }
    if (starved <= 0) return toKill;
    let budget = Math.min(starved, this.totalPreemptionPerRound * this.clusterMemory);
    for (const leaf of this.leaves) {
      if (budget <= 0) break;
      const target = ideal.get(leaf)!;
      const alreadyMarked = leaf.apps.reduce(
        (sum, app) =>
          sum +
          [...app.toPreempt.keys()].reduce((s, id) => s + (this.containers.get(id)?.resource.memory ?? 0), 0),
        0,
      );
      let over = leaf.usedMemory - alreadyMarked - target;
      if (over <= this.maxIgnoredOverCapacity * leaf.absoluteCapacity * this.clusterMemory) continue;
      // Lowest priority, latest submitted applications first; their newest containers first.
      const apps = [...leaf.apps].reverse();
      for (const app of apps) {
        const candidates = [...app.containers.values()]
          .filter((c) => !c.isAM && !app.toPreempt.has(c.id))
          .sort((a, b) => b.allocatedAt - a.allocatedAt);
        for (const container of candidates) {
          if (over <= 0 || budget <= 0) break;
          app.toPreempt.set(container.id, now);
          over -= container.resource.memory;
          budget -= container.resource.memory;
        }
      }
    }
    return toKill;
  }

  private idealAssignment(): Map<LeafQueue, number> {
    const ideal = new Map<LeafQueue, number>();
    const wanted = new Map<LeafQueue, number>();
    let remaining = this.clusterMemory;
    for (const leaf of this.leaves) {
      let pending = 0;
      for (const app of leaf.apps) {
        pending += Math.max(0, app.pendingMemory);
        if (app.amPending && app.active) pending += app.amResource!.memory;
      }
      const want = Math.min(leaf.usedMemory + pending, leaf.absoluteMaximumCapacity * this.clusterMemory);
      wanted.set(leaf, want);
      const guaranteed = Math.min(want, leaf.absoluteCapacity * this.clusterMemory);
      ideal.set(leaf, guaranteed);
      remaining -= guaranteed;
    }
    // Water-fill the rest by guarantee among queues that still want more.
    for (let round = 0; round < this.leaves.length && remaining > 1e-6; round++) {
      const hungry = this.leaves.filter((leaf) => ideal.get(leaf)! < wanted.get(leaf)! - 1e-6);
      if (hungry.length === 0) break;
      const weight = hungry.reduce((sum, leaf) => sum + leaf.absoluteCapacity, 0) || hungry.length;
      let handed = 0;
      for (const leaf of hungry) {
        const share = (remaining * (leaf.absoluteCapacity || 1 / hungry.length)) / weight;
        const give = Math.min(share, wanted.get(leaf)! - ideal.get(leaf)!);
        ideal.set(leaf, ideal.get(leaf)! + give);
        handed += give;
      }
      remaining -= handed;
    }
    return ideal;
  }

  // ---------------------------------------------------------------- reports

  applicationUsage(appId: string): { used: Resource; containers: number; pendingMemory: number } | undefined {
    const app = this.apps.get(appId);
    if (!app) return undefined;
    return { used: { ...app.used }, containers: app.containers.size, pendingMemory: app.pendingMemory };
  }

  /** Whether the application is waiting on the AM limit (ACCEPTED, not yet given a master). */
  isActive(appId: string): boolean {
    return this.apps.get(appId)?.active ?? false;
  }

  containersOfApp(appId: string): Container[] {
    const app = this.apps.get(appId);
    return app ? [...app.containers.values()] : [];
  }

  containersOfNode(nodeId: string): Container[] {
    const node = this.nodes.get(nodeId);
    return node ? [...node.containers].map((id) => this.containers.get(id)!) : [];
  }

  container(id: string): Container | undefined {
    return this.containers.get(id);
  }

  nodeUsage(nodeId: string): { used: Resource; available: Resource; containers: number } | undefined {
    const node = this.nodes.get(nodeId);
    if (!node) return undefined;
    return {
      used: {
        memory: node.total.memory - node.available.memory,
        vcores: node.total.vcores - node.available.vcores,
      },
      available: { ...node.available },
      containers: node.containers.size,
    };
  }

  /** The queue tree as YARN's `/ws/v1/cluster/scheduler` reports it (capacities in percent). */
  schedulerInfo(): CapacitySchedulerInfo {
    const describe = (queue: Queue): QueueInfo => {
      const guaranteed = queue.absoluteCapacity * this.clusterMemory;
      const base = {
        queueName: queue.name,
        queuePath: queue.path,
        capacity: queue.capacity,
        maxCapacity: queue.maximumCapacity,
        absoluteCapacity: round(queue.absoluteCapacity * 100),
        absoluteMaxCapacity: round(queue.absoluteMaximumCapacity * 100),
        absoluteUsedCapacity: this.clusterMemory ? round((queue.usedMemory / this.clusterMemory) * 100) : 0,
        usedCapacity: guaranteed ? round((queue.usedMemory / guaranteed) * 100) : 0,
        resourcesUsed: { memory: queue.usedMemory, vCores: queue.usedVcores },
        state: queue.state,
        priority: queue.priority,
      };
      if (queue.kind === "parent")
        return {
          ...base,
          type: "capacitySchedulerQueueInfo",
          queues: { queue: queue.children.map(describe) },
        };
      let pendingContainers = 0;
      let numActive = 0;
      let allocatedContainers = 0;
      for (const app of queue.apps) {
        if (app.active) numActive++;
        if (app.amPending) pendingContainers++;
        for (const ask of app.asks) pendingContainers += Math.max(0, ask.any);
        allocatedContainers += app.containers.size;
      }
      return {
        ...base,
        type: "capacitySchedulerLeafQueueInfo",
        numApplications: queue.apps.length,
        numActiveApplications: numActive,
        numPendingApplications: queue.apps.length - numActive,
        numContainers: allocatedContainers,
        pendingContainers,
        maxApplications: this.maxApplications(queue),
        userLimitFactor: queue.userLimitFactor,
        userLimit: queue.minimumUserLimitPercent,
        AMResourceLimit: { memory: Math.round(this.amLimit(queue)), vCores: 0 },
        usedAMResource: { memory: queue.amUsedMemory, vCores: 0 },
        users: {
          user: [...queue.users].map(([username, user]) => ({
            username,
            resourcesUsed: { memory: user.usedMemory, vCores: 0 },
            numActiveApplications: queue.apps.filter((a) => a.user === username && a.active).length,
            numPendingApplications: queue.apps.filter((a) => a.user === username && !a.active).length,
          })),
        },
      };
    };
    const root = describe(this.root);
    return {
      type: "capacityScheduler",
      capacity: 100,
      usedCapacity: root.usedCapacity,
      maxCapacity: 100,
      queueName: "root",
      queues: (root as { queues: { queue: QueueInfo[] } }).queues,
    };
  }

  /** Leaf queues' path, state and usage: what the metrics and the operator's status read. */
  leafQueues(): Array<{ path: string; state: string; usedMemory: number }> {
    return this.leaves.map((leaf) => ({ path: leaf.path, state: leaf.state, usedMemory: leaf.usedMemory }));
  }
}

const round = (value: number) => Math.round(value * 1000) / 1000;

export interface QueueInfo {
  type: string;
  queueName: string;
  queuePath: string;
  capacity: number;
  maxCapacity: number;
  absoluteCapacity: number;
  absoluteMaxCapacity: number;
  absoluteUsedCapacity: number;
  usedCapacity: number;
  resourcesUsed: { memory: number; vCores: number };
  state: string;
  priority: number;
  queues?: { queue: QueueInfo[] };
  numApplications?: number;
  numActiveApplications?: number;
  numPendingApplications?: number;
  numContainers?: number;
  pendingContainers?: number;
  [key: string]: unknown;
}

export interface CapacitySchedulerInfo {
  type: "capacityScheduler";
  capacity: number;
  usedCapacity: number;
  maxCapacity: number;
  queueName: string;
  queues: { queue: QueueInfo[] };
}

/** Flattens a scheduler report to its queues by path. */
export function queuesByPath(info: CapacitySchedulerInfo): Map<string, QueueInfo> {
  const byPath = new Map<string, QueueInfo>();
  const walk = (queues: QueueInfo[]) => {
    for (const queue of queues) {
      byPath.set(queue.queuePath, queue);
      if (queue.queues) walk(queue.queues.queue);
    }
  };
  walk(info.queues.queue);
  return byPath;
}
