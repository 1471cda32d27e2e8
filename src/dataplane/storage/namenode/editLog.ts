/**
 * The name node's journal on a volume (shared by the active and the standby in an HA pair):
 *
 *   epoch_<n>                          fencing tokens: created exclusively, the highest is the
 *                                      writer; its mtime is the writer's liveness heartbeat
 *   edits_<epoch>_<firstTxid>          segments of records [u32 length][u32 crc32c][JSON],
 *                                      preallocated with zeros a MiB at a time (a zero length
 *                                      ends the records)
 *   fsimage_<txid>                     checkpoints: the namespace after txid, JSON + crc32c
 *
 * Group commit: appends queue in memory and one synchronous write (O_DSYNC: the write returns
 * once the bytes are on the disk, one trip to the thread pool instead of write + fdatasync)
 * makes a whole batch durable; every caller of the batch resolves together. What is appended in
 * one turn of the event loop goes in one write (at 16 callers over RPC, 16 edits a sync instead
 * of 3.5 written as each came, and half the name node's CPU per file), except that a write
 * starts early once eight edits are queued (SPLIT_EDITS). Up to three batches
 * are written at once, each at its own offset, so an edit arriving during a sync does not wait
 * for it to end; a batch is answered only when every batch before it is durable too. As HDFS
 * does, the segment is preallocated a MiB at a time, so a batch overwrites zeros already on disk
 * and its sync flushes the data alone, not the file's growing size through the journal as an
 * append would (a crash can leave zeros between batches: replay stops there, before anything
 * that was not acknowledged). After each sync the writer checks that no higher epoch exists
 * before acknowledging: a deposed active's writes are refused. That check is one stat made on
 * the event loop the moment the write returns, not a trip through the thread pool: queued there
 * behind the writes, and shared by the batches finishing meanwhile, it cost each edit 0.26 ms at
 * 16 callers (more than half a sync), where the stat itself takes a few µs. A new writer claims
 * its epoch *before* reading the previous segments, so every record the old writer acknowledged
 * is in what the new writer reads, and anything the old one wrote later is cut off because the
 * new segment starts at the next txid (a segment's records at or past the next segment's first
 * txid are ignored on every read).
 */
import { constants, statSync } from "node:fs";
import {
  type FileHandle,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { crc32c } from "../crc32c.js";
import { RemoteException } from "../protocol.js";
import type { EditOp, NamespaceImage } from "./namespace.js";
import type { RpcIds } from "./retryCache.js";

/**
 * One logged edit. `rpc` is the call it ended and that call's answer (HDFS logs the rpc ids with
 * its edits): whoever reads the record rebuilds the retry cache's entry for it.
 */
export type EditRecord = EditOp & { txid: number; epoch: number; rpc?: RpcIds & { result: unknown } };

interface Segment {
  epoch: number;
  firstTxid: number;
  file: string;
}

const pad = (value: number) => String(value).padStart(19, "0");

/** A segment grows by this much zero-filled space at a time (HDFS's edit-log preallocation, 1 MB). */
const PREALLOCATION_BYTES = 1024 * 1024;
const ZEROS = Buffer.alloc(PREALLOCATION_BYTES);
/** The first buffer a batch is serialised into (it grows for a larger batch). */
const PENDING_BUFFER_BYTES = 16 * 1024;
/**
 * Writes of batches at once, each to its own place in the segment. Concurrent synchronous writes
 * share the disk's flushes: measured here, two in flight synced 1.6–2.4 times the batches per
 * second of one, three 2–3 times. More did not help: at 16 callers, eight in flight lengthened
 * every sync (0.6–0.7 → 1.0–1.1 ms: the disk queues them) and halved the edits each carried;
 * four and six measured no different from three within the noise. Node's thread pool has four
 * threads, so a preallocation never waits behind these writes (the fencing check does not use
 * the pool); the pool need not be larger.
 */
const MAX_WRITES_IN_FLIGHT = 3;
/**
 * A write starts as soon as this many edits are queued, while a write is free, rather than at the
 * end of the turn: the sync of the first ones then overlaps the name node's work on the rest of
 * what one socket read carried, and their callers' next calls arrive while it runs. Measured
 * here at 16 callers, eight gave 16.2–21.0k files/s in process against 13.3–13.7k for one write a
 * turn, and 8.0–9.2k over RPC against 6.7–8.6k; four and six measured between.
 */
const SPLIT_EDITS = 8;
/** Each write is durable when it returns (write + fdatasync in one call); never O_APPEND: writes are positioned. */
const SEGMENT_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_DSYNC;

export class FencedException extends RemoteException {
  constructor(epoch: number) {
    super(
      "FencedException",
      `this name node's epoch ${epoch} was superseded by a newer active; its edits are refused`,
    );
  }
}

export class EditLog {
  private segment: FileHandle | undefined;
  /** Where the next record goes in the segment, and how far its zero-filled preallocation reaches. */
  private position = 0;
  private allocated = 0;
  /** Settles when every written batch has passed its fencing check and been answered. */
  private confirmed: Promise<void> = Promise.resolve();
  private epoch = 0;
  /**
   * The queued records, serialised in place (a batch's buffer is handed to its write and a new
   * one started): no buffer per record, no copy to join them.
   */
  private pending = Buffer.allocUnsafe(PENDING_BUFFER_BYTES);
  /** txid of the first queued record: the name of a segment rolled before writing them. */
  private pendingFirstTxid = 0;
  private rollRequested = false;
  private waiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  /** Bytes queued in `pending`. */
  private pendingBytes = 0;
  private get hasPending(): boolean {
    return this.pendingBytes > 0;
  }
  /** A roll or preallocation under way: no write starts until it ends. */
  private issuing: Promise<void> | undefined;
  private writesInFlight = 0;
  /** A write of what is queued is due at the end of this turn of the event loop. */
  private writeScheduled = false;
  /** epoch_<n+1> for this writer's epoch n: its existence fences this writer. */
  private successorEpochFile = "";
  /** Settles once every write started so far has returned (a roll waits for it). */
  private lastWrite: Promise<unknown> = Promise.resolve();
  private fenced = false;
  /** The write or sync error that stopped this log: nothing is appended after it. */
  private failure: Error | undefined;
  /**
   * Called once when a write or sync fails for any reason but fencing. The name node stops the
   * process (HDFS's FSEditLog terminates): its memory may hold the failed edits, and only a restart,
   * which reads what the disk holds, makes memory and disk agree again.
   */
  onIoError: (error: Error) => void = () => undefined;
  /** Number of synchronous writes (one per batch), so tests and metrics can see group commit at work. */
  syncs = 0;
  /** Milliseconds those writes took in all (HDFS's SyncsAvgTime is this over `syncs`). */
  syncMs = 0;
  lastWrittenTxid = 0;

  constructor(readonly dir: string) {}

  async epochs(): Promise<number[]> {
    const names = await readdir(this.dir);
    return names
      .map((name) => /^epoch_(\d+)$/.exec(name))
      .filter((match): match is RegExpExecArray => match !== null)
      .map((match) => Number(match[1]))
      .sort((a, b) => a - b);
  }

  /** The current writer's epoch and how long ago it last proved itself alive (Infinity: released or none). */
  async writerState(): Promise<{ epoch: number; silentForMs: number }> {
    const epochs = await this.epochs();
    const epoch = epochs.at(-1) ?? 0;
    if (epoch === 0) return { epoch, silentForMs: Number.POSITIVE_INFINITY };
    const { mtimeMs } = await stat(join(this.dir, `epoch_${epoch}`));
    return { epoch, silentForMs: mtimeMs === 0 ? Number.POSITIVE_INFINITY : Date.now() - mtimeMs };
  }

  /** Creates epoch_<n+1> exclusively; returns it, or undefined if another name node won the race. */
  async claimEpoch(seen: number): Promise<number | undefined> {
    const next = seen + 1;
    try {
      await writeFile(join(this.dir, `epoch_${next}`), `${process.pid}\n`, { flag: "wx" });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") return undefined;
      throw error;
    }
    return next;
  }

  /** The writer's liveness heartbeat; also notices being fenced between writes. */
  async renew(): Promise<void> {
    if (!this.epoch || this.fenced) return;
    if (await this.isSuperseded()) {
      this.fenced = true;
      return;
    }
    const now = new Date();
    await utimes(join(this.dir, `epoch_${this.epoch}`), now, now);
  }

  /** Steps down cleanly: the standby may take over at once instead of waiting out the heartbeat. */
  async release(): Promise<void> {
    if (!this.epoch) return;
    await this.flush().catch(() => undefined);
    await this.segment?.close();
    this.segment = undefined;
    if (!(await this.isSuperseded())) await utimes(join(this.dir, `epoch_${this.epoch}`), 0, 0);
    this.epoch = 0;
  }

  get isFenced(): boolean {
    return this.fenced;
  }

  /**
   * Whether a newer epoch exists, from a stat made now, on the event loop (see the header): called
   * once a batch's write has returned, it is a check that started after the batch was durable.
   * Any error but "no such file" counts as superseded: an edit is acknowledged only on a check
   * that positively saw no newer epoch.
   */
  private supersededNow(): boolean {
    try {
      return statSync(this.successorEpochFile, { throwIfNoEntry: false }) !== undefined;
    } catch {
      return true;
    }
  }

  /**
   * The same question for the heartbeat and for stepping down, off the event loop. Unlike
   * supersededNow, a failed stat counts as not superseded here: nothing is acknowledged on it.
   */
  private async isSuperseded(): Promise<boolean> {
    try {
      await stat(this.successorEpochFile);
      return true;
    } catch {
      return false;
    }
  }

  /** Starts writing as `epoch`, in a new segment whose first record will be `firstTxid`. */
  async startWriting(epoch: number, firstTxid: number): Promise<void> {
    this.epoch = epoch;
    this.successorEpochFile = join(this.dir, `epoch_${epoch + 1}`);
    this.fenced = false;
    this.lastWrittenTxid = firstTxid - 1;
    await this.openSegment(firstTxid);
  }

  private async openSegment(firstTxid: number): Promise<void> {
    this.segment = await open(join(this.dir, `edits_${pad(this.epoch)}_${pad(firstTxid)}`), SEGMENT_FLAGS);
    this.position = 0;
    this.allocated = 0;
    await syncDir(this.dir);
  }

  /** Zero-fills the segment ahead of the records so that `bytes` more fit (see the header). */
  private async preallocate(bytes: number): Promise<void> {
    const segment = this.segment!;
    while (this.position + bytes > this.allocated) {
      await segment.write(ZEROS, 0, ZEROS.length, this.allocated);
      this.allocated += ZEROS.length;
    }
  }

  get writerEpoch(): number {
    return this.epoch;
  }

  /** Throws what append would refuse with: a failed log, or a fenced (or never started) writer. */
  checkWritable(): void {
    if (this.failure) throw this.failure;
    if (!this.segment || this.fenced) throw new FencedException(this.epoch);
  }

  /** Queues a record; resolves once it is durable and this writer is still the active one. */
  append(record: EditRecord): Promise<void> {
    const { txid, epoch, rpc, ...op } = record;
    return this.appendEdit(op as EditOp, txid, epoch, rpc);
  }

  /**
   * `append` without building the record first: the op's JSON gets the txid, epoch and answer
   * spliced in (what a reader parses is the same record). Spreading every op into a new object
   * and stringifying that cost the name node a tenth of its time per edit.
   */
  appendEdit(op: EditOp, txid: number, epoch: number, rpc?: RpcIds & { result: unknown }): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.segment || this.fenced) return Promise.reject(new FencedException(this.epoch));
    const fields = JSON.stringify(op);
    const text =
      rpc === undefined
        ? `{"txid":${txid},"epoch":${epoch},${fields.slice(1)}`
        : `{"txid":${txid},"epoch":${epoch},"rpc":${JSON.stringify(rpc)},${fields.slice(1)}`;
    const length = Buffer.byteLength(text);
    const at = this.pendingBytes;
    if (at + 8 + length > this.pending.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * this.pending.length, at + 8 + length));
      this.pending.copy(grown, 0, 0, at);
      this.pending = grown;
    }
    this.pending.write(text, at + 8);
    this.pending.writeUInt32BE(length, at);
    this.pending.writeUInt32BE(crc32c(this.pending.subarray(at + 8, at + 8 + length)), at + 4);
    if (at === 0) this.pendingFirstTxid = txid;
    this.pendingBytes = at + 8 + length;
    this.lastWrittenTxid = txid;
    const durable = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    // Starts a write only while one is free (writeQueued checks); the rest of the turn's edits
    // still go in one write, at its end.
    if (this.waiters.length >= SPLIT_EDITS) this.writeQueued();
    if (!this.writeScheduled) {
      this.writeScheduled = true;
      process.nextTick(this.writeScheduledBatch);
    }
    return durable;
  }

  /**
   * Edits appended in the same turn, such as every call one socket read carried, go in one write:
   * started at each append while a write was free, the first few took a sync each and the rest
   * waited for one of those to end.
   */
  private readonly writeScheduledBatch = () => {
    this.writeScheduled = false;
    this.writeQueued();
  };

  /** Resolves once everything queued so far is written and answered. */
  async flush(): Promise<void> {
    while (this.hasPending || this.writesInFlight > 0 || this.issuing) {
      if (!this.issuing) this.writeQueued();
      await this.issuing;
      await this.confirmed;
    }
    await this.confirmed;
  }

  /**
   * Starts a write of everything queued, while fewer than MAX_WRITES_IN_FLIGHT are in flight:
   * what queues meanwhile goes in the next. Writes land at their own positions, so an edit that
   * arrives during a sync starts its own at once instead of waiting for that one to end.
   */
  private writeQueued(): void {
    if (this.issuing) return;
    while (this.hasPending && this.writesInFlight < MAX_WRITES_IN_FLIGHT) {
      if (!this.segment || this.rollRequested || this.position + this.pendingBytes > this.allocated) {
        // Rolling the segment or growing its preallocation takes awaiting: done in order, off this loop.
        this.issuing = this.prepareSegment().finally(() => {
          this.issuing = undefined;
          this.writeQueued();
        });
        return;
      }
      const batch = this.pending.subarray(0, this.pendingBytes);
      const waiters = this.waiters;
      this.pending = Buffer.allocUnsafe(PENDING_BUFFER_BYTES);
      this.pendingBytes = 0;
      this.waiters = [];
      const position = this.position;
      this.position += batch.length;
      this.writesInFlight++;
      const started = performance.now();
      const written = this.segment.write(batch, 0, batch.length, position).then(() => {
        this.syncs++;
        this.syncMs += performance.now() - started;
      });
      const settled = written.then(
        () => undefined,
        () => undefined,
      );
      this.lastWrite = Promise.all([this.lastWrite, settled]);
      settled.then(() => {
        this.writesInFlight--;
        this.writeQueued();
      });
      // The fencing check is made once this batch is on the disk (a writer claiming an epoch
      // later reads it); answers go out in the order written.
      const superseded = written.then(() => this.supersededNow());
      superseded.catch(() => undefined);
      this.confirmed = this.confirmed.then(async () => {
        try {
          await written;
        } catch (error) {
          this.failed(error as Error, waiters);
          return;
        }
        // An earlier batch failed: the log may have a hole before this one, which replay stops at.
        if (this.failure) {
          for (const waiter of waiters) waiter.reject(this.failure);
          return;
        }
        if (await superseded) {
          this.fenced = true;
          const error = new FencedException(this.epoch);
          for (const waiter of waiters) waiter.reject(error);
        } else {
          for (const waiter of waiters) waiter.resolve();
        }
      });
    }
  }

  /** Rolls to a new segment when a checkpoint asked for it, and preallocates room for what is queued. */
  private async prepareSegment(): Promise<void> {
    try {
      if (!this.segment) throw new FencedException(this.epoch);
      if (this.rollRequested) {
        // A new segment per checkpoint lets older segments be deleted once images cover them.
        this.rollRequested = false;
        await this.lastWrite;
        await this.segment.close();
        await this.openSegment(this.pendingFirstTxid);
      }
      await this.preallocate(this.pendingBytes);
    } catch (caught) {
      // Fails every queued record, those queued while this ran too.
      this.failed(caught as Error, []);
    }
  }

  private failed(caught: Error, waiters: { resolve: () => void; reject: (error: Error) => void }[]): void {
    let error = caught;
    if (!(error instanceof FencedException) && !this.failure) {
      this.failure = new RemoteException(
        "IOException",
        `the edit log in ${this.dir} could not be written: ${error.message}; the name node stops`,
      );
      error = this.failure;
    }
    for (const waiter of waiters) waiter.reject(error);
    for (const waiter of this.waiters) waiter.reject(error);
    this.waiters = [];
    this.pendingBytes = 0;
    // After the waiters' rejections (microtasks) so their callers' error answers go out first.
    if (error === this.failure) setImmediate(() => this.onIoError(error));
  }

  async segments(): Promise<Segment[]> {
    const names = await readdir(this.dir);
    return names
      .map((name) => /^edits_(\d+)_(\d+)$/.exec(name))
      .filter((match): match is RegExpExecArray => match !== null)
      .map((match) => ({
        epoch: Number(match[1]),
        firstTxid: Number(match[2]),
        file: join(this.dir, match[0]),
      }))
      .sort((a, b) => a.firstTxid - b.firstTxid || a.epoch - b.epoch);
  }

  /**
   * The durable records after `afterTxid`, in order. Throws GapError if the segments holding them
   * were removed after a checkpoint (the reader must reload from the newest image).
   */
  async readAfter(afterTxid: number): Promise<EditRecord[]> {
    const segments = await this.segments();
    const records: EditRecord[] = [];
    let expected = afterTxid + 1;
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      const cut = segments[i + 1]?.firstTxid ?? Number.POSITIVE_INFINITY;
      if (cut <= expected) continue;
      if (segment.firstTxid > expected) throw new GapError(expected, segment.firstTxid);
      for (const record of parseSegment(await readFile(segment.file))) {
        if (record.txid >= cut) break;
        if (record.txid < expected) continue;
        if (record.txid !== expected) throw new GapError(expected, record.txid);
        records.push(record);
        expected++;
      }
    }
    return records;
  }

  async latestImage(): Promise<{ txid: number; image: NamespaceImage } | undefined> {
    const names = (await readdir(this.dir))
      .map((name) => /^fsimage_(\d+)$/.exec(name))
      .filter((match): match is RegExpExecArray => match !== null)
      .sort((a, b) => Number(b[1]) - Number(a[1]));
    for (const match of names) {
      const bytes = await readFile(join(this.dir, match[0]));
      const body = bytes.subarray(4);
      if (bytes.length >= 4 && bytes.readUInt32BE(0) === crc32c(body)) {
        return { txid: Number(match[1]), image: JSON.parse(body.toString("utf8")) as NamespaceImage };
      }
    }
    return undefined;
  }

  /**
   * Writes the image of the namespace right after `txid`, given as JSON text slices
   * (Namespace.beginImage), once `txid` is durable, then rolls to a new segment and removes what
   * the older of the two newest images makes redundant. Each slice is written before the next is
   * made, so RPCs run between them: the checkpoint never holds the event loop for the whole tree.
   */
  async checkpoint(
    txid: number,
    slices: Generator<string, void>,
    onSlice?: (written: number) => Promise<void> | void,
  ): Promise<void> {
    const temporary = join(this.dir, `.fsimage_${txid}.tmp`);
    try {
      await this.flush();
      if (this.fenced || (await this.isSuperseded())) throw new FencedException(this.epoch);
      const handle = await open(temporary, "w");
      try {
        // The checksum heads the file; it is known once the last slice is written.
        let position = 4;
        let sum = 0;
        let written = 0;
        for (const slice of slices) {
          const bytes = Buffer.from(slice);
          sum = crc32c(bytes, sum);
          await handle.write(bytes, 0, bytes.length, position);
          position += bytes.length;
          await onSlice?.(++written);
        }
        const header = Buffer.allocUnsafe(4);
        header.writeUInt32BE(sum, 0);
        await handle.write(header, 0, 4, 0);
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    } finally {
      slices.return();
    }
    // Asked before the image shows: whoever sees fsimage_<txid> knows the next edit opens a
    // segment of its own.
    this.rollRequested = true;
    await rename(temporary, join(this.dir, `fsimage_${pad(txid)}`));
    await syncDir(this.dir);
    const images = (await readdir(this.dir))
      .map((name) => /^fsimage_(\d+)$/.exec(name))
      .filter((match): match is RegExpExecArray => match !== null)
      .map((match) => ({ txid: Number(match[1]), file: join(this.dir, match[0]) }))
      .sort((a, b) => b.txid - a.txid);
    for (const old of images.slice(2)) await rm(old.file, { force: true });
    const keepFrom = images[1]?.txid;
    if (keepFrom === undefined) return;
    const segments = await this.segments();
    for (let i = 0; i + 1 < segments.length; i++) {
      // Segment i holds nothing past the older kept image: replay never needs it again.
      if (segments[i + 1]!.firstTxid <= keepFrom + 1) await rm(segments[i]!.file, { force: true });
    }
  }

  async close(): Promise<void> {
    await this.flush().catch(() => undefined);
    await this.segment?.close();
    this.segment = undefined;
  }
}

export class GapError extends Error {
  constructor(expected: number, found: number) {
    super(`edit log gap: expected txid ${expected}, found ${found}`);
  }
}

/** Whole, checksummed records; stops at a torn or corrupt tail (a write the crash interrupted). */
function* parseSegment(bytes: Buffer): Generator<EditRecord> {
  let at = 0;
  while (at + 8 <= bytes.length) {
    const length = bytes.readUInt32BE(at);
    // The preallocated zeros past the last record (no record is empty).
    if (length === 0) return;
    const sum = bytes.readUInt32BE(at + 4);
    if (at + 8 + length > bytes.length) return;
    const json = bytes.subarray(at + 8, at + 8 + length);
    if (crc32c(json) !== sum) return;
    yield JSON.parse(json.toString("utf8")) as EditRecord;
    at += 8 + length;
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
