/**
 * The connector: one session at a time against the source, retried with backoff when it ends.
 *
 * A session checks the source (wal_level, tables, keys, replica identity), syncs the publication,
 * finds or creates the replication slot, reads the initial snapshot when the snapshot mode asks
 * for it (in the snapshot the slot exported when it was created, so the stream starts exactly
 * where the snapshot ends), then streams pgoutput from the slot. Events go to Kafka in read
 * order; the slot's confirmed flush LSN advances only to the end of the last transaction whose
 * events Kafka acknowledged. A session that fails (the database, Kafka, the slot taken) is
 * closed whole and a new one resumes from the slot: at most the unacknowledged events repeat.
 */
import type { Admin, Kafka } from "kafkajs";
import kafkajs from "kafkajs";
import type pg from "pg";
import type { Logger } from "../../log.js";
import type { SchemaRegistry } from "../avro/registry.js";
import { IdempotentProducer } from "../idempotentProducer.js";
import { explainKafkaError } from "../kafkaClient.js";
import type { CdcConfig } from "./config.js";
import {
  type ChangeValue,
  CONNECTOR_VERSION,
  type Op,
  type Row,
  TableCodec,
  type TransactionInfo,
} from "./events.js";
import { IncrementalSnapshots, WATERMARK_PREFIX } from "./incremental.js";
import { formatLsn, type Lsn, parseLsn } from "./lsn.js";
import type { CdcMetrics } from "./metrics.js";
import { decodePgOutput, type Relation } from "./pgoutput.js";
import { ChangeProducer, type OutRecord } from "./producer.js";
import { ReplicationConnection } from "./replication.js";
import {
  type CapturedTable,
  connect,
  explainPgError,
  prepareSource,
  primaryKeyOf,
  qualified,
  SourceProblem,
  slotHolder,
  slotInfo,
  tableId,
} from "./source.js";
import { type ConnectorState, type SnapshotRequest, StateStore } from "./state.js";
import { TypeCatalog } from "./values.js";

const { Partitioners } = kafkajs;

export type ConnectorPhase = "starting" | "snapshotting" | "streaming" | "stopped" | "failed";

export interface Problem {
  reason: string;
  message: string;
}

interface OpenTransaction {
  xid: number;
  finalLsn: Lsn;
  commitTimeMs: number;
  id: string;
  total: number;
  perTable: Map<string, number>;
  begun: boolean;
}

class Stopped extends Error {}

/** Backoff between sessions: 1 s doubling to 30 s, back to 1 s after a session that streamed. */
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;

export interface ConnectorDeps {
  config: CdcConfig;
  kafka: Kafka;
  registry?: SchemaRegistry;
  metrics: CdcMetrics;
  log: Logger;
}

export class Connector {
  phase: ConnectorPhase = "starting";
  private problems: Problem[] = [];
  private sessionProblems: Problem[] = [];
  private tables: string[] = [];
  private tablesWithoutFullIdentity: string[] = [];
  private confirmedLsn: Lsn = 0;
  private lagBytes: number | null = null;
  private lastEventTime: number | null = null;
  private lastCommitTimeMs: number | null = null;
  private eventsWindow: { at: number; count: number }[] = [];
  private ackedTotal = 0;
  private snapshotProgress = {
    tablesDone: 0,
    tablesTotal: 0,
    rowsRead: 0,
    completedAt: null as string | null,
  };
  /** Commit-to-ack latencies (ms) of recent transactions, for the benchmark and the status. */
  readonly latencies: number[] = [];

  private readonly store: StateStore;
  private state: ConnectorState;
  private readonly catalog = new TypeCatalog();
  private readonly codecs = new Map<string, TableCodec>();
  private readonly relations = new Map<number, { relation: Relation; codec: TableCodec }>();
  private readonly incremental: IncrementalSnapshots;
  private producer: IdempotentProducer | undefined;
  private admin: Admin | undefined;
  private knownTopics = new Set<string>();
  private stopping = false;
  private wakeStop: (() => void) | undefined;
  private session: Session | undefined;

  constructor(private readonly deps: ConnectorDeps) {
    this.store = new StateStore(deps.config.stateDir, deps.config.slot);
    this.state = this.store.load();
    this.incremental = new IncrementalSnapshots(this, this.state, () => this.saveState());
    if (this.state.initialSnapshot === "done" && this.state.initialSnapshotCompletedAt) {
      this.snapshotProgress.completedAt = this.state.initialSnapshotCompletedAt;
      this.snapshotProgress.rowsRead = this.state.initialSnapshotRows ?? 0;
    }
  }

  get config(): CdcConfig {
    return this.deps.config;
  }

  get log(): Logger {
    return this.deps.log;
  }

  ready(): boolean {
    return this.phase === "streaming";
  }

  /** Runs sessions until `stop()`; never throws for a problem of the source or of Kafka. */
  async run(): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (!this.stopping) {
      this.phase = "starting";
      const session = new Session(this);
      this.session = session;
      let streamed = false;
      try {
        const outcome = await session.run(() => {
          streamed = true;
        });
        if (outcome === "finished") {
          this.phase = "stopped";
          this.problems = [...this.sessionProblems];
          await new Promise<void>((resolve) => {
            this.wakeStop = resolve;
            if (this.stopping) resolve();
          });
          break;
        }
      } catch (error) {
        if (this.stopping || error instanceof Stopped) break;
        const explained = explainPgError(error, this.config);
        const problem: Problem =
          explained instanceof SourceProblem
            ? { reason: explained.reason, message: explained.message }
            : (explained as Error)?.name?.startsWith("KafkaJS") ||
                (explained as Error)?.name === "KafkaAuthenticationError"
              ? {
                  reason: "KafkaUnavailable",
                  message: `Kafka (${this.config.kafkaBootstrap.join(",")}): ${(explainKafkaError(explained, this.config.kafkaBootstrap, this.config.kafkaSecurity) as Error).message}; events since the last confirmed LSN are produced again when it answers`,
                }
              : { reason: "ConnectorError", message: (explained as Error)?.message ?? String(explained) };
        this.problems = [...this.sessionProblems.filter((p) => p.reason !== problem.reason), problem];
        this.phase = "failed";
        this.deps.metrics.errors.inc({ reason: problem.reason });
        this.log.warn({ reason: problem.reason, err: explained, retryInMs: backoff }, problem.message);
        // A producer whose send failed may hold sequence numbers Kafka never saw: start afresh.
        await this.producer?.disconnect().catch(() => undefined);
        this.producer = undefined;
      } finally {
        await session.close();
        this.session = undefined;
      }
      if (this.stopping) break;
      if (streamed) backoff = BACKOFF_MIN_MS;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff);
        this.wakeStop = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
    this.phase = "stopped";
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeStop?.();
    await this.session?.close();
    await this.producer?.disconnect().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
  }

  // ---- shared pieces a session uses ----

  async kafkaProducer(): Promise<IdempotentProducer> {
    if (!this.producer) {
      const producer = IdempotentProducer.of(this.deps.kafka, {
        createPartitioner: Partitioners.DefaultPartitioner,
        allowAutoTopicCreation: false,
        // kafkajs retries an idempotent producer forever by default: the stream would wait without
        // a word while Kafka is away. Bounded retries end the session instead, the problem shows in
        // the status, and the next session resumes from the slot (repeats, never a loss).
        retry: { retries: 6, initialRetryTime: 300, maxRetryTime: 15_000 },
      });
      await producer.connect();
      this.producer = producer;
    }
    return this.producer;
  }

  /** Creates the change topics that are missing, with the spec's partitions and replication factor. */
  async ensureTopics(topics: string[]): Promise<void> {
    const missing = topics.filter((t) => !this.knownTopics.has(t));
    if (missing.length === 0) return;
    if (!this.admin) {
      const admin = this.deps.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    const existing = new Set(await this.admin.listTopics());
    const create = missing.filter((t) => !existing.has(t));
    if (create.length > 0) {
      await this.admin.createTopics({
        waitForLeaders: false,
        topics: create.map((topic) => ({
          topic,
          numPartitions: this.config.partitions,
          replicationFactor: this.config.replicationFactor,
        })),
      });
      this.log.info({ topics: create }, "created change topics");
      await this.waitForLeaders(create);
    }
    for (const t of missing) this.knownTopics.add(t);
  }

  /** New topics answer produce requests once every partition has a leader the brokers agree on. */
  private async waitForLeaders(topics: string[]): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const metadata = await this.admin!.fetchTopicMetadata({ topics });
        if (metadata.topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0)))
          return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
      }
      if (Date.now() > deadline) throw new Error(`topics ${topics.join(", ")} have no leaders after 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  codecFor(schema: string, table: string, primaryKey?: string[]): TableCodec {
    const id = `${schema}.${table}`;
    let codec = this.codecs.get(id);
    if (!codec) {
      codec = new TableCodec(
        schema,
        table,
        this.config.topicPrefix,
        this.config.format,
        this.catalog,
        primaryKey ?? [],
      );
      this.codecs.set(id, codec);
    } else if (primaryKey) {
      codec.setPrimaryKey(primaryKey);
    }
    return codec;
  }

  codecById(id: string): TableCodec | undefined {
    return this.codecs.get(id);
  }

  get types(): TypeCatalog {
    return this.catalog;
  }

  get registry(): SchemaRegistry | undefined {
    return this.deps.registry;
  }

  get metrics(): CdcMetrics {
    return this.deps.metrics;
  }

  get connectorState(): ConnectorState {
    return this.state;
  }

  get stateStore(): StateStore {
    return this.store;
  }

  get relationMap(): Map<number, { relation: Relation; codec: TableCodec }> {
    return this.relations;
  }

  get incrementalSnapshots(): IncrementalSnapshots {
    return this.incremental;
  }

  saveState(): Promise<void> {
    return this.store.save(this.state);
  }

  setPlan(tables: CapturedTable[], withoutFull: string[], problems: Problem[]): void {
    this.tables = tables.map(tableId);
    this.tablesWithoutFullIdentity = withoutFull;
    this.sessionProblems = problems;
    this.problems = problems;
  }

  setSnapshotProgress(progress: Partial<Connector["snapshotProgress"]>): void {
    Object.assign(this.snapshotProgress, progress);
  }

  noteConfirmed(lsn: Lsn): void {
    if (lsn > this.confirmedLsn) this.confirmedLsn = lsn;
    this.deps.metrics.confirmedLsn.set(this.confirmedLsn);
  }

  noteTransactionAcked(commitTimeMs: number): void {
    const latency = Math.max(0, Date.now() - commitTimeMs);
    this.deps.metrics.commitToAck.observe(latency / 1000);
    this.latencies.push(latency);
    if (this.latencies.length > 100_000) this.latencies.splice(0, 50_000);
    this.lastCommitTimeMs = commitTimeMs;
  }

  noteAcked(count: number): void {
    this.ackedTotal += count;
    this.deps.metrics.acked.inc(count);
    const now = Date.now();
    this.lastEventTime = now;
    this.eventsWindow.push({ at: now, count });
    while (this.eventsWindow.length > 0 && this.eventsWindow[0]!.at < now - 10_000) this.eventsWindow.shift();
  }

  setLag(bytes: number | null, confirmed: string | null): void {
    this.lagBytes = bytes;
    if (bytes !== null) this.deps.metrics.lagBytes.set(bytes);
    if (confirmed && this.confirmedLsn === 0) this.confirmedLsn = parseLsn(confirmed);
  }

  get confirmedFlushLsn(): Lsn {
    return this.confirmedLsn;
  }

  /** `POST /snapshots`: idempotent by id. */
  requestSnapshot(id: string, tables: string[]): { created: boolean; request: unknown } {
    return this.incremental.request(id, tables);
  }

  snapshotRequests(): unknown[] {
    return this.incremental.list();
  }

  status(): unknown {
    const now = Date.now();
    const windowStart = this.eventsWindow[0]?.at ?? now;
    const windowCount = this.eventsWindow.reduce((sum, e) => sum + e.count, 0);
    const seconds = Math.max(1, (now - Math.min(windowStart, now - 1_000)) / 1000);
    return {
      state: this.phase,
      slotName: this.config.slot,
      publicationName: this.config.publication,
      confirmedFlushLsn: this.confirmedLsn > 0 ? formatLsn(this.confirmedLsn) : null,
      lagBytes: this.lagBytes,
      lagSeconds:
        this.phase === "streaming" && this.lastCommitTimeMs !== null && this.session?.idle() === false
          ? Math.max(0, (now - this.lastCommitTimeMs) / 1000)
          : this.phase === "streaming"
            ? 0
            : null,
      eventsPerSecond: Math.round((windowCount / seconds) * 10) / 10,
      eventsTotal: this.ackedTotal,
      lastEventTime: this.lastEventTime ? new Date(this.lastEventTime).toISOString() : null,
      tables: this.tables,
      tablesWithoutFullIdentity: this.tablesWithoutFullIdentity,
      snapshot: { ...this.snapshotProgress },
      snapshotRequests: this.incremental.list(),
      problems: this.problems,
    };
  }
}

/** One connection to the source, from checks to streaming, closed whole when anything fails. */
class Session {
  private client: pg.Client | undefined;
  private replication: ReplicationConnection | undefined;
  private changes: ChangeProducer | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private closed = false;
  private failure: ((error: unknown) => void) | undefined;
  private readonly failed: Promise<never>;

  // Stream state.
  private inbox: { walStart: Lsn; payload: Buffer }[] = [];
  private inboxHead = 0;
  private processing = false;
  private tx: OpenTransaction | undefined;
  private lastCommitLsn: Lsn = 0;
  private serverWalEnd: Lsn = 0;
  private pauseAbove: number;
  private sinceYield = 0;

  constructor(private readonly connector: Connector) {
    this.failed = new Promise<never>((_, reject) => {
      this.failure = reject;
    });
    this.failed.catch(() => undefined);
    this.pauseAbove = Math.max(20_000, connector.config.maxBatchSize * 8);
  }

  private get config(): CdcConfig {
    return this.connector.config;
  }

  private fail(error: unknown): void {
    this.failure?.(error);
  }

  idle(): boolean {
    return (this.changes?.pending ?? 0) === 0 && this.inbox.length - this.inboxHead === 0 && !this.tx;
  }

  async run(onStreaming: () => void): Promise<"streaming-ended" | "finished"> {
    const config = this.config;
    const log = this.connector.log;
    this.client = await connect(config, false, "tributary-cdc");
    this.client.on("error", (error) => this.fail(error));
    await this.connector.types.load(this.client);
    const plan = await prepareSource(this.client, config);
    this.connector.setPlan(plan.tables, plan.tablesWithoutFullIdentity, plan.problems);
    for (const problem of plan.problems) log.warn({ reason: problem.reason }, problem.message);
    for (const table of plan.tables) this.connector.codecFor(table.schema, table.table, table.primaryKey);

    const topics = plan.tables.map((t) => this.connector.codecFor(t.schema, t.table).topic);
    if (config.transactionTopic) topics.push(`${config.topicPrefix}.transaction`);
    await this.connector.ensureTopics(topics);
    const producer = await this.connector.kafkaProducer();
    this.changes = new ChangeProducer(producer, config.maxBatchSize, {
      acked: (count) => {
        this.connector.noteAcked(count);
        if (this.changes!.pending < this.pauseAbove / 2) this.replication?.resume();
      },
      confirmed: (lsn) => {
        // Never past what the server has sent: a confirmed LSN beyond it would skip WAL.
        if (lsn > this.serverWalEnd && this.serverWalEnd > 0) {
          this.fail(
            new Error(
              `refusing to confirm ${formatLsn(lsn)}, beyond the server's ${formatLsn(this.serverWalEnd)}`,
            ),
          );
          return;
        }
        this.connector.noteConfirmed(lsn);
        if (!this.closed) this.replication?.sendStatus(this.connector.confirmedFlushLsn);
      },
      transactionAcked: (commitTimeMs) => this.connector.noteTransactionAcked(commitTimeMs),
    });
    this.changes.onFailure((error) => this.fail(error));

    // The slot: ours, free, and usable?
    const state = this.connector.connectorState;
    let slot = await slotInfo(this.client, config.slot);
    if (slot && (slot.plugin !== "pgoutput" || slot.database !== config.pgDatabase)) {
      throw new SourceProblem(
        "SlotConflict",
        `replication slot '${config.slot}' exists for plugin ${slot.plugin} on database '${slot.database}'; the connector needs a pgoutput slot on '${config.pgDatabase}'. Choose another slot name or drop that slot`,
      );
    }
    if (slot?.activePid) {
      throw new SourceProblem(
        "SlotInUse",
        `replication slot '${config.slot}' is active for ${await slotHolder(this.client, slot.activePid)}; only one client can stream from a slot. Stop the other client, or give this CDCStream another slot`,
      );
    }
    const mode = config.snapshotMode;
    this.replication = new ReplicationConnection(await connect(config, true, "tributary-cdc-stream"));
    const dropSlot = async (why: string) => {
      log.warn({ slot: config.slot }, why);
      await this.replication!.dropSlot(config.slot);
      slot = undefined;
    };
    if (slot?.walStatus === "lost") {
      if (mode !== "when_needed" && mode !== "always") {
        throw new SourceProblem(
          "SlotInvalidated",
          `replication slot '${config.slot}' lost WAL it needed (wal_status lost, max_slot_wal_keep_size reached); changes were missed. Set snapshotMode when_needed to re-snapshot automatically, or drop the slot`,
        );
      }
      await dropSlot("slot lost its WAL: dropping it to take a new snapshot");
    }
    if (slot && state.initialSnapshot === "running" && mode !== "never") {
      // The exported snapshot died with the crashed process; nothing of the slot was confirmed
      // yet, so a new slot and a new snapshot cover every change without a gap.
      await dropSlot("the initial snapshot was interrupted: recreating the slot to take it again");
    }
    if (mode === "initial_only" && state.initialSnapshot === "done") return "finished";

    let created: { consistentPoint: Lsn; snapshotName: string | null } | undefined;
    const snapshotWanted =
      mode !== "never" &&
      config.snapshotToTopics &&
      (slot === undefined ||
        mode === "always" ||
        (mode === "initial_only" && state.initialSnapshot !== "done"));
    if (!slot) {
      created = await this.replication.createSlot(config.slot, snapshotWanted);
      log.info(
        { slot: config.slot, consistentPoint: formatLsn(created.consistentPoint) },
        "created replication slot",
      );
    }
    if (snapshotWanted) {
      this.connector.phase = "snapshotting";
      state.initialSnapshot = "running";
      await this.connector.saveState();
      await this.snapshot(plan.tables, created?.snapshotName ?? null, created?.consistentPoint ?? null);
      state.initialSnapshot = "done";
      state.initialSnapshotCompletedAt = new Date().toISOString();
      await this.connector.saveState();
      if (mode === "initial_only") {
        // Nothing will stream from the slot: keeping it would make PostgreSQL keep WAL forever.
        await this.replication.dropSlot(config.slot);
        log.info({ slot: config.slot }, "initial_only: snapshot done, slot dropped");
        return "finished";
      }
    } else if (created) {
      state.initialSnapshot = "done";
      await this.connector.saveState();
    }

    // Stream. A new slot streams from its consistent point; an existing one from where it was confirmed.
    await this.replication.start(config.slot, created?.consistentPoint ?? 0, config.publication, {
      data: (walStart, walEnd, payload) => {
        if (walEnd > this.serverWalEnd) this.serverWalEnd = walEnd;
        // `pg` hands out views into its socket buffer, which the next read reuses: a frame that
        // waits in the inbox must own its bytes.
        this.inbox.push({ walStart, payload: Buffer.from(payload) });
        if (this.inbox.length - this.inboxHead > this.pauseAbove) this.replication?.pause();
        if (!this.processing) void this.process();
      },
      keepalive: (walEnd, replyRequested) => {
        if (walEnd > this.serverWalEnd) this.serverWalEnd = walEnd;
        // Nothing waits for Kafka and no transaction is open: everything the server sent up to
        // walEnd is handled, so the slot may advance there (this is what keeps a quiet slot moving).
        if (this.idle() && !this.processing && walEnd > this.connector.confirmedFlushLsn) {
          this.connector.noteConfirmed(walEnd);
          this.replication?.sendStatus(walEnd);
        } else if (replyRequested) {
          this.replication?.sendStatus(this.connector.confirmedFlushLsn);
        }
      },
    });
    this.connector.phase = "streaming";
    onStreaming();
    log.info({ slot: config.slot, publication: config.publication }, "streaming");

    if (config.heartbeatIntervalSeconds > 0) {
      this.every(config.heartbeatIntervalSeconds * 1000, () => {
        // Ask the server for its position; the keepalive it answers with advances an idle slot.
        this.replication?.sendStatus(this.connector.confirmedFlushLsn, true);
      });
    }
    this.every(5_000, () => this.pollLag());
    this.every(30_000, () => this.refreshPlan());
    void this.pollLag();
    void this.connector.incrementalSnapshots.work(this).catch((error) => this.fail(error));

    await Promise.race([this.replication.ended, this.failed]);
    if (this.closed) throw new Stopped();
    throw new Error("PostgreSQL ended the replication stream");
  }

  private every(ms: number, task: () => unknown): void {
    const timer = setInterval(() => {
      if (this.closed) return;
      Promise.resolve()
        .then(task)
        .catch((error) => this.fail(error));
    }, ms);
    timer.unref();
    this.timers.push(timer);
  }

  private async pollLag(): Promise<void> {
    if (!this.client || this.closed) return;
    const result = await this.client.query<{ lag: string | null; confirmed_flush_lsn: string | null }>(
      "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint::text AS lag, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1",
      [this.config.slot],
    );
    const row = result.rows[0];
    this.connector.setLag(row?.lag ? Math.max(0, Number(row.lag)) : null, row?.confirmed_flush_lsn ?? null);
  }

  /** Keeps the publication's table list in line with the include/exclude patterns. */
  private async refreshPlan(): Promise<void> {
    if (!this.client || this.closed) return;
    const plan = await prepareSource(this.client, this.config);
    for (const table of plan.tables) this.connector.codecFor(table.schema, table.table, table.primaryKey);
    await this.connector.ensureTopics(
      plan.tables.map((t) => this.connector.codecFor(t.schema, t.table).topic),
    );
    this.connector.setPlan(plan.tables, plan.tablesWithoutFullIdentity, plan.problems);
  }

  /** A client for the incremental snapshots' watermarks and chunk reads. */
  get sourceClient(): pg.Client {
    return this.client!;
  }

  get producer(): ChangeProducer {
    return this.changes!;
  }

  /** Settles when the session ends, for whatever reason. */
  get finished(): Promise<unknown> {
    return this.failed.catch(() => undefined);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- the initial snapshot ----

  private async snapshot(
    tables: CapturedTable[],
    snapshotName: string | null,
    consistentPoint: Lsn | null,
  ): Promise<void> {
    const config = this.config;
    const log = this.connector.log;
    const reader = await connect(config, false, "tributary-cdc-snapshot");
    const startedAt = Date.now();
    let rowsRead = 0;
    this.connector.setSnapshotProgress({
      tablesDone: 0,
      tablesTotal: tables.length,
      rowsRead: 0,
      completedAt: null,
    });
    try {
      await reader.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      if (snapshotName) await reader.query(`SET TRANSACTION SNAPSHOT '${snapshotName}'`);
      const lsn =
        consistentPoint ??
        parseLsn((await reader.query<{ l: string }>("SELECT pg_current_wal_lsn() AS l")).rows[0]!.l);
      for (const [index, table] of tables.entries()) {
        const codec = this.connector.codecFor(table.schema, table.table, table.primaryKey);
        await reader.query(
          `DECLARE snapshot_cursor NO SCROLL CURSOR FOR SELECT * FROM ${qualified(table.schema, table.table)}`,
        );
        let pendingRow: Row | undefined;
        const emit = (row: Row, marker: "first" | "true" | "last") =>
          this.pushReadEvent(codec, row, this.source(codec, startedAt, marker, null, lsn));
        let first = index === 0;
        for (;;) {
          await this.changes!.room(this.pauseAbove);
          if (this.closed) throw new Stopped();
          const batch = await reader.query({
            text: `FETCH ${config.fetchSize} FROM snapshot_cursor`,
            rowMode: "array",
          });
          if (batch.fields.length > 0) {
            codec.adopt(batch.fields.map((f) => ({ name: f.name, typeOid: f.dataTypeID })));
            if (codec.needsRegistration) await codec.register(this.connector.registry!, log);
          }
          for (const values of batch.rows as (string | null)[][]) {
            if (pendingRow) {
              emit(pendingRow, first ? "first" : "true");
              first = false;
            }
            pendingRow = codec.textRow(values);
            rowsRead++;
          }
          this.connector.setSnapshotProgress({ rowsRead });
          this.connector.metrics.snapshotRows.inc({ kind: "initial" }, batch.rows.length);
          if (batch.rows.length < config.fetchSize) break;
        }
        if (pendingRow) emit(pendingRow, index === tables.length - 1 ? "last" : first ? "first" : "true");
        await reader.query("CLOSE snapshot_cursor");
        this.connector.setSnapshotProgress({ tablesDone: index + 1 });
        log.info({ table: tableId(table), rowsRead }, "snapshot of table read");
      }
      await reader.query("COMMIT");
      // The marker says done only once Kafka holds every snapshot row.
      await Promise.race([this.changes!.drained(), this.failed]);
      this.connector.connectorState.initialSnapshotRows = rowsRead;
      this.connector.setSnapshotProgress({ completedAt: new Date().toISOString() });
      log.info({ rowsRead, tables: tables.length }, "snapshot complete");
    } finally {
      await reader.end().catch(() => undefined);
    }
  }

  source(
    codec: TableCodec,
    tsMs: number,
    snapshot: "true" | "false" | "first" | "last" | "incremental",
    txId: number | null,
    lsn: Lsn | null,
  ) {
    return {
      version: CONNECTOR_VERSION,
      connector: "postgresql" as const,
      name: this.config.topicPrefix,
      ts_ms: tsMs,
      snapshot,
      db: this.config.pgDatabase,
      sequence: JSON.stringify([
        this.lastCommitLsn ? String(this.lastCommitLsn) : null,
        lsn === null ? null : String(lsn),
      ]),
      schema: codec.schema,
      table: codec.table,
      txId,
      lsn,
      xmin: null,
    };
  }

  // ---- the stream ----

  private async process(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.inboxHead < this.inbox.length && !this.closed) {
        const frame = this.inbox[this.inboxHead]!;
        this.inbox[this.inboxHead++] = undefined as never;
        if (this.inboxHead > 8192 && this.inboxHead * 2 > this.inbox.length) {
          this.inbox = this.inbox.slice(this.inboxHead);
          this.inboxHead = 0;
        }
        const pending = this.handle(frame.walStart, frame.payload);
        if (pending) await pending;
        // Yield now and then: an acknowledgement that arrived while frames were decoded should
        // send the next batch at once, not after the whole backlog (Kafka would sit idle).
        if (++this.sinceYield >= 256) {
          this.sinceYield = 0;
          await new Promise((resolve) => setImmediate(resolve));
        }
        if ((this.changes?.pending ?? 0) > this.pauseAbove) {
          this.replication?.pause();
          await Promise.race([this.changes!.room(this.pauseAbove / 2), this.failed]);
          this.replication?.resume();
        }
      }
      if (this.inbox.length - this.inboxHead < this.pauseAbove / 2) this.replication?.resume();
    } catch (error) {
      this.fail(error);
    } finally {
      this.processing = false;
    }
  }

  private handle(walStart: Lsn, payload: Buffer): Promise<void> | undefined {
    const message = decodePgOutput(payload);
    switch (message.tag) {
      case "begin":
        this.tx = {
          xid: message.xid,
          finalLsn: message.finalLsn,
          commitTimeMs: message.commitTimeMs,
          id: `${message.xid}:${message.finalLsn}`,
          total: 0,
          perTable: new Map(),
          begun: false,
        };
        return undefined;
      case "commit": {
        const tx = this.tx;
        if (tx) this.connector.incrementalSnapshots.onCommit(tx.xid);
        if (tx?.begun && this.config.transactionTopic) {
          const topic = `${this.config.topicPrefix}.transaction`;
          const key = JSON.stringify({ id: tx.id });
          this.changes!.push({
            topic,
            key,
            value: JSON.stringify({
              status: "END",
              id: tx.id,
              event_count: tx.total,
              data_collections: [...tx.perTable].map(([data_collection, event_count]) => ({
                data_collection,
                event_count,
              })),
              ts_ms: tx.commitTimeMs,
            }),
          });
        }
        this.tx = undefined;
        this.lastCommitLsn = message.commitLsn;
        this.changes!.mark(message.endLsn, message.commitTimeMs);
        return undefined;
      }
      case "relation":
        return this.adoptRelation(message.relation);
      case "insert":
      case "update":
      case "delete": {
        const known = this.connector.relationMap.get(message.relationOid);
        if (!known)
          throw new Error(`pgoutput: change for relation ${message.relationOid} before its Relation message`);
        const { codec } = known;
        if (message.tag === "insert") {
          const after = codec.tupleRow(message.after);
          this.emitChange(codec, walStart, "c", null, after);
        } else if (message.tag === "update") {
          const before = message.before ? codec.tupleRow(message.before) : null;
          const after = codec.tupleRow(message.after, before);
          const beforeImage = message.beforeKind === "K" ? keyOnly(codec, before) : before;
          if (before && codec.hasKey && codec.keyText(before) !== codec.keyText(after)) {
            // The primary key changed: Debezium's delete of the old key, its tombstone, then a create.
            this.emitChange(codec, walStart, "d", beforeImage, null);
            this.emitChange(codec, walStart, "c", null, after);
          } else {
            this.emitChange(codec, walStart, "u", beforeImage, after);
          }
        } else {
          const before = codec.tupleRow(message.before);
          this.emitChange(
            codec,
            walStart,
            "d",
            message.beforeKind === "K" ? keyOnly(codec, before) : before,
            null,
          );
        }
        return undefined;
      }
      case "truncate": {
        for (const oid of message.relationOids) {
          const known = this.connector.relationMap.get(oid);
          if (!known) continue;
          const { codec } = known;
          const value = this.envelope(codec, walStart, "t", null, null);
          const encoded = codec.encodeValue(value);
          // Every partition hears of the truncate, so a consumer folding any partition clears it.
          for (let partition = 0; partition < this.config.partitions; partition++) {
            this.changes!.push({ topic: codec.topic, partition, key: null, value: encoded });
          }
          this.connector.metrics.events.inc({ op: "t" });
        }
        return undefined;
      }
      case "message":
        if (message.prefix === WATERMARK_PREFIX) {
          this.connector.incrementalSnapshots.onWatermark(this, message.content.toString("utf8"), walStart);
        }
        return undefined;
      default:
        return undefined;
    }
  }

  private async adoptRelation(relation: Relation): Promise<void> {
    if (relation.columns.some((c) => !this.connector.types.has(c.typeOid))) {
      await this.connector.types.load(this.client!);
    }
    const known = this.connector.codecById(`${relation.schema}.${relation.table}`);
    const codec =
      known ??
      this.connector.codecFor(
        relation.schema,
        relation.table,
        await primaryKeyOf(this.client!, relation.schema, relation.table),
      );
    this.connector.relationMap.set(relation.oid, { relation, codec });
    if (codec.adopt(relation.columns)) {
      this.connector.log.info({ table: codec.id, columns: codec.columnNames }, "table shape");
    }
    if (codec.needsRegistration) await codec.register(this.connector.registry!, this.connector.log);
    await this.connector.ensureTopics([codec.topic]);
  }

  envelope(codec: TableCodec, walStart: Lsn, op: Op, before: Row | null, after: Row | null): ChangeValue {
    const tx = this.tx;
    let transaction: TransactionInfo | null = null;
    if (tx && this.config.transactionTopic) {
      if (!tx.begun) {
        tx.begun = true;
        this.changes!.push({
          topic: `${this.config.topicPrefix}.transaction`,
          key: JSON.stringify({ id: tx.id }),
          value: JSON.stringify({
            status: "BEGIN",
            id: tx.id,
            event_count: null,
            data_collections: null,
            ts_ms: tx.commitTimeMs,
          }),
        });
      }
      tx.total++;
      const perTable = (tx.perTable.get(codec.id) ?? 0) + 1;
      tx.perTable.set(codec.id, perTable);
      transaction = { id: tx.id, total_order: tx.total, data_collection_order: perTable };
    }
    return {
      before,
      after,
      source: this.source(codec, tx?.commitTimeMs ?? Date.now(), "false", tx?.xid ?? null, walStart),
      op,
      ts_ms: Date.now(),
      transaction,
    };
  }

  private emitChange(codec: TableCodec, walStart: Lsn, op: Op, before: Row | null, after: Row | null): void {
    const value = this.envelope(codec, walStart, op, before, after);
    const keyRow = codec.key((after ?? before)!);
    const key = codec.encodeKey(keyRow);
    this.changes!.push({ topic: codec.topic, key, value: codec.encodeValue(value) });
    if (op === "d" && key !== null) this.changes!.push({ topic: codec.topic, key, value: null });
    this.connector.metrics.events.inc({ op });
    this.connector.incrementalSnapshots.onChange(codec, keyRow);
  }

  /** Pushes an incremental-snapshot row into the stream at the current position. */
  pushRead(codec: TableCodec, row: Row, walStart: Lsn): void {
    this.pushReadEvent(codec, row, this.source(codec, Date.now(), "incremental", null, walStart));
    this.connector.metrics.events.inc({ op: "r" });
  }

  /** A read (`op: "r"`) of one row, as snapshots of either kind send it. */
  private pushReadEvent(codec: TableCodec, row: Row, source: ChangeValue["source"]): void {
    const value: ChangeValue = {
      before: null,
      after: row,
      source,
      op: "r",
      ts_ms: Date.now(),
      transaction: null,
    };
    this.changes!.push({
      topic: codec.topic,
      key: codec.encodeKey(codec.key(row)),
      value: codec.encodeValue(value),
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    this.fail(new Stopped());
    await this.replication?.close();
    await this.client?.end().catch(() => undefined);
  }
}

export type { OutRecord, Session, SnapshotRequest };

function keyOnly(codec: TableCodec, row: Row | null): Row | null {
  if (!row) return null;
  const key = codec.key(row);
  if (!key) return row;
  const only: Row = {};
  for (const name of Object.keys(row)) only[name] = name in key ? row[name] : null;
  return only;
}
