/**
 * The streaming-replication side of a `replication=database` connection: slot creation with an
 * exported snapshot, START_REPLICATION in CopyBoth mode, XLogData and keepalive frames in, standby
 * status updates (the confirmed flush LSN) out, and backpressure by pausing the socket.
 */
import type pg from "pg";
import { formatLsn, type Lsn, PG_EPOCH_MS, parseLsn, readLsn, writeLsn } from "./lsn.js";
import { quoteIdent, quoteLiteral } from "./source.js";

export interface CreatedSlot {
  consistentPoint: Lsn;
  /** Exported snapshot: valid until the next command on this connection, or its end. */
  snapshotName: string | null;
}

export interface ReplicationHandlers {
  /** One pgoutput message; `walStart` is the LSN of the change it carries. */
  data(walStart: Lsn, walEnd: Lsn, payload: Buffer): void;
  /** The server's position; `replyRequested` asks for a status update now. */
  keepalive(walEnd: Lsn, replyRequested: boolean): void;
}

interface RawConnection {
  on(event: "copyData", listener: (message: { chunk: Buffer }) => void): void;
  removeAllListeners(event: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  stream: { pause(): void; resume(): void; isPaused?(): boolean };
}

export class ReplicationConnection {
  private readonly connection: RawConnection;
  private streaming: Promise<unknown> | undefined;
  private paused = false;

  constructor(private readonly client: pg.Client) {
    this.connection = (client as unknown as { connection: RawConnection }).connection;
  }

  async createSlot(slot: string, exportSnapshot: boolean): Promise<CreatedSlot> {
    const result = await this.client.query<{ consistent_point: string; snapshot_name: string | null }>(
      `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput ${exportSnapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT"}`,
    );
    const row = result.rows[0]!;
    return { consistentPoint: parseLsn(row.consistent_point), snapshotName: row.snapshot_name };
  }

  async dropSlot(slot: string): Promise<void> {
    await this.client.query(`DROP_REPLICATION_SLOT ${quoteIdent(slot)} WAIT`);
  }

  /**
   * Starts streaming. Resolves once the server switched to CopyBoth; `ended` settles when the
   * stream stops (an error, or the server ending it).
   */
  start(slot: string, startLsn: Lsn, publication: string, handlers: ReplicationHandlers): Promise<void> {
    const sql = `START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL ${formatLsn(startLsn)} (proto_version '1', publication_names ${quoteLiteral(quoteIdent(publication))}, messages 'true')`;
    const started = new Promise<void>((resolve, reject) => {
      (this.connection as unknown as { once(e: string, l: () => void): void }).once(
        "replicationStart",
        resolve,
      );
      this.connection.on("copyData", ({ chunk }) => {
        const kind = chunk[0];
        if (kind === 0x77 /* w: XLogData */) {
          handlers.data(readLsn(chunk, 1), readLsn(chunk, 9), chunk.subarray(25));
        } else if (kind === 0x6b /* k: primary keepalive */) {
          handlers.keepalive(readLsn(chunk, 1), chunk[17] === 1);
        }
      });
      this.streaming = this.client.query(sql);
      this.streaming.catch(reject);
    });
    return started;
  }

  /** Settles when the replication query ends: rejects with the server's error. */
  get ended(): Promise<unknown> {
    return this.streaming ?? Promise.resolve();
  }

  /**
   * A standby status update: everything up to `flushLsn` is durable downstream, so the server may
   * advance the slot's confirmed_flush_lsn and recycle the WAL before it.
   */
  sendStatus(flushLsn: Lsn, replyRequested = false): void {
    const message = Buffer.alloc(34);
    message[0] = 0x72; // 'r'
    writeLsn(message, 1, flushLsn);
    writeLsn(message, 9, flushLsn);
    writeLsn(message, 17, flushLsn);
    message.writeBigInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 25);
    message[33] = replyRequested ? 1 : 0;
    this.connection.sendCopyFromChunk(message);
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.connection.stream.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.connection.stream.resume();
  }

  async close(): Promise<void> {
    this.connection.removeAllListeners("copyData");
    this.resume();
    await this.client.end().catch(() => undefined);
  }
}
