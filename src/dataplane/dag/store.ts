/**
 * The durable state of a Dag in Redis: runs, task instances, results (XCom), logs, requests from
 * the CLI, and the fencing epoch. Redis holds it for both queue backends: workers already reach
 * it for logs and results, its writes are atomic per Lua script, and with appendonly it survives
 * a restart of Redis itself.
 *
 * Writers and their fences:
 * - the scheduler writes in one Lua script per pass that first checks the epoch it took when it
 *   became active; a deposed scheduler's pass is refused whole ("fenced");
 * - a worker writes a task instance only from the state and try it was sent for (queued → running
 *   → final, same try), so a try that was already retried, cleared or marked is refused, and a
 *   task ends exactly once however often its message was delivered;
 * - the scheduler's changes to a task instance carry the version it read, so a worker's
 *   completion landing in between makes the pass start over instead of being overwritten.
 *
 * Keys (prefix P, `tributary:<namespace>:<name>:` by default):
 *   P epoch                      fencing epoch (INCR by each scheduler that takes over)
 *   P scheduler                  hash: identity, epoch, lastScheduled (logical date), nextRun
 *   P runs                       zset runId by logical date (ms)
 *   P active                     set of runIds queued or running
 *   P run:<runId>                hash: "run" → Run JSON, "t:<taskId>" → TaskInstance JSON
 *   P xcom:<runId>               hash taskId → result
 *   P hb:<runId>:<taskId>        a running try's heartbeat (value: the try), expires
 *   P log:<runId>:<taskId>:<try> stream of log lines, capped
 *   P failures                   list of recent failures (JSON), capped
 *   P requests                   list of requests from the CLI (JSON)
 *   P wake                       list the scheduler blocks on; workers and the CLI push to it
 */
import { Redis, type RedisOptions } from "ioredis";
import type { TaskState } from "../../api/dag.js";
import type { Run, TaskInstance } from "./model.js";

export interface DagKeys {
  prefix: string;
  epoch: string;
  scheduler: string;
  runs: string;
  active: string;
  failures: string;
  requests: string;
  wake: string;
  run(runId: string): string;
  xcom(runId: string): string;
  heartbeat(runId: string, taskId: string): string;
  log(runId: string, taskId: string, tryNumber: number): string;
}

export function dagKeys(prefix: string): DagKeys {
  return {
    prefix,
    epoch: `${prefix}epoch`,
    scheduler: `${prefix}scheduler`,
    runs: `${prefix}runs`,
    active: `${prefix}active`,
    failures: `${prefix}failures`,
    requests: `${prefix}requests`,
    wake: `${prefix}wake`,
    run: (runId) => `${prefix}run:${runId}`,
    xcom: (runId) => `${prefix}xcom:${runId}`,
    heartbeat: (runId, taskId) => `${prefix}hb:${runId}:${taskId}`,
    log: (runId, taskId, tryNumber) => `${prefix}log:${runId}:${taskId}:${tryNumber}`,
  };
}

export const defaultKeyPrefix = (namespace: string, name: string) => `tributary:${namespace}:${name}:`;
export const taskField = (taskId: string) => `t:${taskId}`;
export const failuresKept = 50;

/** One change of the scheduler's pass. */
export type Op =
  | { op: "hset"; key: string; field: string; value: string }
  | { op: "hdel"; key: string; field: string }
  | { op: "zadd"; key: string; score: number; member: string }
  | { op: "sadd"; key: string; member: string }
  | { op: "srem"; key: string; member: string }
  | { op: "lrem"; key: string; value: string }
  | { op: "lpushcap"; key: string; value: string; keep: number }
  | { op: "del"; key: string };

/** A task instance the pass read at version `v`, which must not have moved since. */
export interface Check {
  key: string;
  field: string;
  v: number;
}

const commitScript = `
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return 'fenced' end
local batch = cjson.decode(ARGV[2])
for _, check in ipairs(batch.checks) do
  local raw = redis.call('HGET', check.key, check.field)
  local v = 0
  if raw then v = cjson.decode(raw).v end
  if v ~= check.v then return 'conflict:' .. check.field end
end
for _, o in ipairs(batch.ops) do
  if o.op == 'hset' then redis.call('HSET', o.key, o.field, o.value)
  elseif o.op == 'hdel' then redis.call('HDEL', o.key, o.field)
  elseif o.op == 'zadd' then redis.call('ZADD', o.key, o.score, o.member)
  elseif o.op == 'sadd' then redis.call('SADD', o.key, o.member)
  elseif o.op == 'srem' then redis.call('SREM', o.key, o.member)
  elseif o.op == 'lrem' then redis.call('LREM', o.key, 1, o.value)
  elseif o.op == 'lpushcap' then
    redis.call('LPUSH', o.key, o.value)
    redis.call('LTRIM', o.key, 0, o.keep - 1)
  elseif o.op == 'del' then redis.call('DEL', o.key)
  end
end
return 'ok'
`;

// KEYS: run hash, heartbeat. ARGV: field, try, worker, now (ISO), heartbeat ttl ms.
const startScript = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 'missing' end
local ti = cjson.decode(raw)
if ti.try ~= tonumber(ARGV[2]) then return 'try ' .. ti.try end
if ti.state ~= 'queued' then return ti.state end
ti.state = 'running'
ti.startDate = ARGV[4]
ti.worker = ARGV[3]
ti.v = ti.v + 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(ti))
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[5])
return 'ok'
`;

// KEYS: run hash, heartbeat. ARGV: field, try, ttl ms.
const heartbeatScript = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 'stop' end
local ti = cjson.decode(raw)
if ti.try ~= tonumber(ARGV[2]) or ti.state ~= 'running' then return 'stop' end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 'ok'
`;

// KEYS: run hash, heartbeat, xcom, wake, failures.
// ARGV: field, try, outcome, now (ISO), error, retry-at ms ('' = no retry), result ('' none), has result, taskId, runId, keep.
const finishScript = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 'missing' end
local ti = cjson.decode(raw)
if ti.try ~= tonumber(ARGV[2]) then return 'try ' .. ti.try end
if ti.state ~= 'running' then return ti.state end
ti.v = ti.v + 1
ti.endDate = ARGV[4]
if ARGV[3] == 'success' then
  ti.state = 'success'
  ti.error = nil
  if ARGV[8] == '1' then redis.call('HSET', KEYS[3], ARGV[9], ARGV[7]) end
else
  ti.error = ARGV[5]
  if ARGV[6] ~= '' then
    ti.state = 'up_for_retry'
    ti.nextTryAt = tonumber(ARGV[6])
  else
    ti.state = 'failed'
  end
  redis.call('LPUSH', KEYS[5], cjson.encode({runId = ARGV[10], taskId = ARGV[9], state = ti.state, try = ti.try, error = ARGV[5], at = ARGV[4]}))
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[11]) - 1)
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(ti))
redis.call('DEL', KEYS[2])
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, 0)
return 'ok'
`;

export interface DagGraph {
  tasks: { id: string; dependsOn: string[]; pool?: string; queue: string }[];
}

export interface RunRecord {
  run: Run;
  instances: Map<string, TaskInstance>;
}

export interface FailureRecord {
  runId: string;
  taskId: string;
  state: TaskState;
  try: number;
  error: string;
  at: string;
}

export type Request =
  | { type: "trigger"; runId?: string; logicalDate?: string; params?: Record<string, string> }
  | { type: "clear"; runId: string; taskIds: string[]; downstream: boolean; onlyFailed?: boolean }
  | { type: "mark"; runId: string; taskId?: string; state: "success" | "failed" }
  | { type: "backfill"; from: string; to: string; rerun?: boolean };

type Scripted = Redis & {
  dagCommit(epochKey: string, epoch: string, batch: string): Promise<string>;
  dagStart(
    run: string,
    hb: string,
    field: string,
    tryNumber: number,
    worker: string,
    now: string,
    ttl: number,
  ): Promise<string>;
  dagHeartbeat(run: string, hb: string, field: string, tryNumber: number, ttl: number): Promise<string>;
  dagFinish(...args: (string | number)[]): Promise<string>;
};

export function connectRedis(url: string, password?: string, options: RedisOptions = {}): Redis {
  return new Redis(url, {
    ...(password ? { password } : {}),
    // Commands wait across a reconnect instead of failing after 20 retries: a scheduler or
    // worker rides out a Redis restart.
    maxRetriesPerRequest: null,
    ...options,
  });
}

/** The Dag's state in Redis, as the scheduler, the workers, the CLI and the operator read it. */
export class DagStore {
  readonly keys: DagKeys;
  private readonly redis: Scripted;

  constructor(redis: Redis, prefix: string) {
    this.keys = dagKeys(prefix);
    this.redis = redis as Scripted;
    this.redis.defineCommand("dagCommit", { numberOfKeys: 1, lua: commitScript });
    this.redis.defineCommand("dagStart", { numberOfKeys: 2, lua: startScript });
    this.redis.defineCommand("dagHeartbeat", { numberOfKeys: 2, lua: heartbeatScript });
    this.redis.defineCommand("dagFinish", { numberOfKeys: 5, lua: finishScript });
  }

  get client(): Redis {
    return this.redis;
  }

  /** Becomes the active scheduler: a new epoch, which fences every earlier one. */
  async takeOver(identity: string, graph: DagGraph): Promise<number> {
    const epoch = await this.redis.incr(this.keys.epoch);
    await this.redis.hset(this.keys.scheduler, {
      identity,
      epoch: String(epoch),
      since: new Date().toISOString(),
      graph: JSON.stringify(graph),
    });
    return epoch;
  }

  /** The tasks and their edges, as the active scheduler runs them (for the CLI's views). */
  async graph(): Promise<DagGraph | undefined> {
    const raw = await this.redis.hget(this.keys.scheduler, "graph");
    return raw ? (JSON.parse(raw) as DagGraph) : undefined;
  }

  async commit(epoch: number, checks: Check[], ops: Op[]): Promise<"ok" | "fenced" | `conflict:${string}`> {
    if (ops.length === 0) return "ok";
    return (await this.redis.dagCommit(
      this.keys.epoch,
      String(epoch),
      JSON.stringify({ checks: checks.length ? checks : {}, ops }),
    )) as "ok";
  }

  async activeRunIds(): Promise<string[]> {
    return this.redis.smembers(this.keys.active);
  }

  async readRuns(runIds: readonly string[]): Promise<RunRecord[]> {
    if (runIds.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const runId of runIds) pipeline.hgetall(this.keys.run(runId));
    const results = (await pipeline.exec()) ?? [];
    const records: RunRecord[] = [];
    for (const [error, hash] of results) {
      if (error) throw error;
      const record = parseRun(hash as Record<string, string>);
      if (record) records.push(record);
    }
    return records;
  }

  async readRun(runId: string): Promise<RunRecord | undefined> {
    return (await this.readRuns([runId]))[0];
  }

  /** Run ids, newest logical date first. */
  async runIds(limit = 25, offset = 0): Promise<string[]> {
    return this.redis.zrevrange(this.keys.runs, offset, offset + limit - 1);
  }

  async runIdsAt(logicalDateMs: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.runs, logicalDateMs, logicalDateMs);
  }

  async runCount(): Promise<number> {
    return this.redis.zcard(this.keys.runs);
  }

  async schedulerInfo(): Promise<Record<string, string>> {
    return this.redis.hgetall(this.keys.scheduler);
  }

  async pendingRequests(limit = 100): Promise<string[]> {
    return this.redis.lrange(this.keys.requests, -limit, -1);
  }

  /** Queues a request for the scheduler (FIFO) and wakes it. */
  async request(request: Request): Promise<void> {
    await this.redis
      .multi()
      .lpush(this.keys.requests, JSON.stringify(request))
      .lpush(this.keys.wake, "1")
      .ltrim(this.keys.wake, 0, 0)
      .exec();
  }

  async failures(limit = failuresKept): Promise<FailureRecord[]> {
    return (await this.redis.lrange(this.keys.failures, 0, limit - 1)).map(
      (raw) => JSON.parse(raw) as FailureRecord,
    );
  }

  async results(runId: string, taskIds: readonly string[]): Promise<Record<string, string>> {
    if (taskIds.length === 0) return {};
    const values = await this.redis.hmget(this.keys.xcom(runId), ...taskIds);
    const results: Record<string, string> = {};
    taskIds.forEach((taskId, index) => {
      const value = values[index];
      if (value != null) results[taskId] = value;
    });
    return results;
  }

  async alive(runId: string, taskIds: readonly string[]): Promise<Set<string>> {
    if (taskIds.length === 0) return new Set();
    const pipeline = this.redis.pipeline();
    for (const taskId of taskIds) pipeline.exists(this.keys.heartbeat(runId, taskId));
    const results = (await pipeline.exec()) ?? [];
    return new Set(taskIds.filter((_, index) => results[index]?.[1] === 1));
  }

  // The worker's side: each call succeeds only from the state and try the message was for.

  async start(
    runId: string,
    taskId: string,
    tryNumber: number,
    worker: string,
    ttlMs: number,
  ): Promise<string> {
    return this.redis.dagStart(
      this.keys.run(runId),
      this.keys.heartbeat(runId, taskId),
      taskField(taskId),
      tryNumber,
      worker,
      new Date().toISOString(),
      ttlMs,
    );
  }

  async heartbeat(runId: string, taskId: string, tryNumber: number, ttlMs: number): Promise<string> {
    return this.redis.dagHeartbeat(
      this.keys.run(runId),
      this.keys.heartbeat(runId, taskId),
      taskField(taskId),
      tryNumber,
      ttlMs,
    );
  }

  async finish(options: {
    runId: string;
    taskId: string;
    tryNumber: number;
    outcome: "success" | "failed";
    error?: string;
    retryAtMs?: number;
    result?: string;
  }): Promise<string> {
    const { runId, taskId } = options;
    return this.redis.dagFinish(
      this.keys.run(runId),
      this.keys.heartbeat(runId, taskId),
      this.keys.xcom(runId),
      this.keys.wake,
      this.keys.failures,
      taskField(taskId),
      options.tryNumber,
      options.outcome,
      new Date().toISOString(),
      (options.error ?? "").slice(0, 4096),
      options.retryAtMs !== undefined ? String(options.retryAtMs) : "",
      options.result ?? "",
      options.result !== undefined ? "1" : "0",
      taskId,
      runId,
      failuresKept,
    );
  }

  /** Every key of the Dag (deletionPolicy Delete), in batches. */
  async deleteAll(): Promise<number> {
    let cursor = "0";
    let deleted = 0;
    do {
      const [next, keys] = await this.redis.scan(
        cursor,
        "MATCH",
        `${escapeGlob(this.keys.prefix)}*`,
        "COUNT",
        500,
      );
      cursor = next;
      if (keys.length > 0) deleted += await this.redis.unlink(...keys);
    } while (cursor !== "0");
    return deleted;
  }
}

const escapeGlob = (text: string) => text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);

export function parseRun(hash: Record<string, string>): RunRecord | undefined {
  if (!hash.run) return undefined;
  const run = JSON.parse(hash.run) as Run;
  const instances = new Map<string, TaskInstance>();
  for (const [field, value] of Object.entries(hash)) {
    if (field.startsWith("t:")) instances.set(field.slice(2), JSON.parse(value) as TaskInstance);
  }
  return { run, instances };
}
