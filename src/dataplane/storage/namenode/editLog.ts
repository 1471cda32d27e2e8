/**
 * The name node's journal on a volume (shared by the active and the standby in an HA pair):
 *
 *   epoch_<n>                          fencing tokens: created exclusively, the highest is the
 *                                      writer; its mtime is the writer's liveness heartbeat
 *   edits_<epoch>_<firstTxid>          segments of records [u32 length][u32 crc32c][JSON]
 *   fsimage_<txid>                     checkpoints: the namespace after txid, JSON + crc32c
 *
 * Group commit: appends queue in memory and one write + fdatasync makes a whole batch durable;
 * every caller of the batch resolves together. After each sync the writer checks that no higher
 * epoch exists before acknowledging: a deposed active's writes are refused. A new writer claims
 * its epoch *before* reading the previous segments, so every record the old writer acknowledged
 * is in what the new writer reads, and anything the old one wrote later is cut off because the
 * new segment starts at the next txid (a segment's records at or past the next segment's first
 * txid are ignored on every read).
 */
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

export type EditRecord = EditOp & { txid: number; epoch: number };

interface Segment {
  epoch: number;
  firstTxid: number;
  file: string;
}

const pad = (value: number) => String(value).padStart(19, "0");

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
  private epoch = 0;
  private pending: Buffer[] = [];
  /** txid of the first queued record: the name of a segment rolled before writing them. */
  private pendingFirstTxid = 0;
  private rollRequested = false;
  private waiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  private flushing: Promise<void> | undefined;
  private fenced = false;
  /** Number of fdatasyncs, so tests and metrics can see group commit at work. */
  syncs = 0;
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

  private async isSuperseded(): Promise<boolean> {
    try {
      await stat(join(this.dir, `epoch_${this.epoch + 1}`));
      return true;
    } catch {
      return false;
    }
  }

  /** Starts writing as `epoch`, in a new segment whose first record will be `firstTxid`. */
  async startWriting(epoch: number, firstTxid: number): Promise<void> {
    this.epoch = epoch;
    this.fenced = false;
    this.lastWrittenTxid = firstTxid - 1;
    this.segment = await open(join(this.dir, `edits_${pad(epoch)}_${pad(firstTxid)}`), "a");
    await syncDir(this.dir);
  }

  get writerEpoch(): number {
    return this.epoch;
  }

  /** Queues a record; resolves once it is durable and this writer is still the active one. */
  append(record: EditRecord): Promise<void> {
    if (!this.segment || this.fenced) return Promise.reject(new FencedException(this.epoch));
    const json = Buffer.from(JSON.stringify(record));
    const header = Buffer.allocUnsafe(8);
    header.writeUInt32BE(json.length, 0);
    header.writeUInt32BE(crc32c(json), 4);
    if (this.pending.length === 0) this.pendingFirstTxid = record.txid;
    this.pending.push(header, json);
    this.lastWrittenTxid = record.txid;
    const durable = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.flush().catch(() => undefined);
    return durable;
  }

  /** Writes and syncs everything queued; one sync for every record queued while the previous one ran. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.pending.length === 0) return Promise.resolve();
    this.flushing = (async () => {
      while (this.pending.length > 0) {
        const batch = Buffer.concat(this.pending);
        const firstTxid = this.pendingFirstTxid;
        const waiters = this.waiters;
        this.pending = [];
        this.waiters = [];
        try {
          if (!this.segment) throw new FencedException(this.epoch);
          if (this.rollRequested) {
            // A new segment per checkpoint lets older segments be deleted once images cover them.
            this.rollRequested = false;
            await this.segment.close();
            this.segment = await open(join(this.dir, `edits_${pad(this.epoch)}_${pad(firstTxid)}`), "a");
          }
          await this.segment.write(batch);
          await this.segment.datasync();
          this.syncs++;
          if (await this.isSuperseded()) {
            this.fenced = true;
            throw new FencedException(this.epoch);
          }
          for (const waiter of waiters) waiter.resolve();
        } catch (error) {
          for (const waiter of waiters) waiter.reject(error as Error);
          for (const waiter of this.waiters) waiter.reject(error as Error);
          this.waiters = [];
          this.pending = [];
        }
      }
    })().finally(() => {
      this.flushing = undefined;
      // Records queued after the loop's last check, while this promise was settling.
      if (this.pending.length > 0) this.flush().catch(() => undefined);
    });
    return this.flushing;
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
   * Writes `image` (the namespace right after `txid`) once `txid` is durable, then rolls to a new
   * segment and removes what the older of the two newest images makes redundant.
   */
  async checkpoint(txid: number, image: NamespaceImage): Promise<void> {
    await this.flush();
    if (this.fenced || (await this.isSuperseded())) throw new FencedException(this.epoch);
    const body = Buffer.from(JSON.stringify(image));
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(crc32c(body), 0);
    const temporary = join(this.dir, `.fsimage_${txid}.tmp`);
    const handle = await open(temporary, "w");
    try {
      await handle.write(Buffer.concat([header, body]));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, join(this.dir, `fsimage_${pad(txid)}`));
    await syncDir(this.dir);
    this.rollRequested = true;
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
