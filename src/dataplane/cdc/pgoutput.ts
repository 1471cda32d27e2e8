/**
 * A decoder of PostgreSQL's pgoutput logical replication messages (protocol versions 1 and 2,
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html).
 *
 * Why not `pg-logical-replication` (npm, 2.5.0), evaluated for this role: its pgoutput parser runs
 * every column through `pg`'s process-wide type parsers (timestamptz becomes a Date and loses its
 * microseconds, json is parsed and re-serialised), it folds an unchanged TOAST value (`u`) into the
 * old value or `undefined` so "unchanged" and "absent" cannot be told apart, and its service
 * acknowledges the last *received* LSN on a timer, while a connector may only confirm what Kafka
 * acknowledged. Its flow control awaits every message one at a time. The protocol is small, so the
 * connector decodes it here over `pg`'s own replication connection (CopyBoth) and keeps the text
 * values, the `u` marker and the confirmed LSN under its control; bench/cdc.bench.ts measures it.
 */
import { type Lsn, readLsn, readPgTimestampMs } from "./lsn.js";

export interface RelationColumn {
  name: string;
  typeOid: number;
  typeMod: number;
  /** Part of the replica identity (the primary key, or every column with REPLICA IDENTITY FULL). */
  isKey: boolean;
}

export interface Relation {
  oid: number;
  schema: string;
  table: string;
  /** d (default: primary key), n (nothing), f (full), i (index). */
  replicaIdentity: string;
  columns: RelationColumn[];
}

/** One column of a tuple: text, null, or an unchanged TOAST value that was not sent. */
export type TupleValue = string | null | typeof UNCHANGED_TOAST;
export const UNCHANGED_TOAST: unique symbol = Symbol("unchanged-toast");

export type PgOutputMessage =
  | { tag: "begin"; finalLsn: Lsn; commitTimeMs: number; xid: number }
  | { tag: "commit"; commitLsn: Lsn; endLsn: Lsn; commitTimeMs: number }
  | { tag: "relation"; relation: Relation }
  | { tag: "type"; oid: number; schema: string; name: string }
  | { tag: "insert"; relationOid: number; after: TupleValue[] }
  | {
      tag: "update";
      relationOid: number;
      /** 'K' (only key columns are meaningful) or 'O' (the whole old row); absent when the key did not change and identity is not FULL. */
      beforeKind?: "K" | "O";
      before?: TupleValue[];
      after: TupleValue[];
    }
  | { tag: "delete"; relationOid: number; beforeKind: "K" | "O"; before: TupleValue[] }
  | { tag: "truncate"; relationOids: number[]; cascade: boolean; restartIdentity: boolean }
  | { tag: "message"; transactional: boolean; lsn: Lsn; prefix: string; content: Buffer }
  | { tag: "origin"; lsn: Lsn; name: string }
  | { tag: "other"; code: number };

class Reader {
  offset = 0;
  constructor(readonly buffer: Buffer) {}
  u8(): number {
    return this.buffer[this.offset++]!;
  }
  i16(): number {
    const value = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }
  i32(): number {
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  u32(): number {
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  lsn(): Lsn {
    const value = readLsn(this.buffer, this.offset);
    this.offset += 8;
    return value;
  }
  timestampMs(): number {
    const value = readPgTimestampMs(this.buffer, this.offset);
    this.offset += 8;
    return value;
  }
  cstring(): string {
    const end = this.buffer.indexOf(0, this.offset);
    const value = this.buffer.toString("utf8", this.offset, end);
    this.offset = end + 1;
    return value;
  }
  tuple(): TupleValue[] {
    const count = this.i16();
    const values: TupleValue[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const kind = this.u8();
      if (kind === 0x74 /* t */ || kind === 0x62 /* b */) {
        const length = this.i32();
        values[i] = this.buffer.toString("utf8", this.offset, this.offset + length);
        this.offset += length;
      } else if (kind === 0x6e /* n */) {
        values[i] = null;
      } else if (kind === 0x75 /* u */) {
        values[i] = UNCHANGED_TOAST;
      } else {
        throw new Error(`pgoutput: unknown tuple column kind 0x${kind.toString(16)}`);
      }
    }
    return values;
  }
}

/** Decodes one pgoutput message (the payload of an XLogData frame). */
export function decodePgOutput(buffer: Buffer): PgOutputMessage {
  const reader = new Reader(buffer);
  const code = reader.u8();
  switch (code) {
    case 0x42 /* B */:
      {
        const finalLsn = reader.lsn();
        const commitTimeMs = reader.timestampMs();
        return { tag: "begin", finalLsn, commitTimeMs, xid: reader.u32() };
      }
    case 0x43 /* C */:
      {
        reader.u8();
        const commitLsn = reader.lsn();
        const endLsn = reader.lsn();
        return { tag: "commit", commitLsn, endLsn, commitTimeMs: reader.timestampMs() };
      }
    case 0x49 /* I */:
      {
        const relationOid = reader.u32();
        reader.u8(); // 'N'
        return { tag: "insert", relationOid, after: reader.tuple() };
      }
    case 0x55 /* U */:
      {
        const relationOid = reader.u32();
        let kind = reader.u8();
        let beforeKind: "K" | "O" | undefined;
        let before: TupleValue[] | undefined;
        if (kind === 0x4b /* K */ || kind === 0x4f /* O */) {
          beforeKind = kind === 0x4b ? "K" : "O";
          before = reader.tuple();
          kind = reader.u8(); // 'N'
        }
        const after = reader.tuple();
        return before
          ? { tag: "update", relationOid, beforeKind, before, after }
          : { tag: "update", relationOid, after };
      }
    case 0x44 /* D */:
      {
        const relationOid = reader.u32();
        const beforeKind = reader.u8() === 0x4b ? "K" : "O";
        return { tag: "delete", relationOid, beforeKind, before: reader.tuple() };
      }
    case 0x52 /* R */:
      {
        const oid = reader.u32();
        const schema = reader.cstring();
        const table = reader.cstring();
        const replicaIdentity = String.fromCharCode(reader.u8());
        const count = reader.i16();
        const columns: RelationColumn[] = [];
        for (let i = 0; i < count; i++) {
          const flags = reader.u8();
          const name = reader.cstring();
          const typeOid = reader.u32();
          const typeMod = reader.i32();
          columns.push({ name, typeOid, typeMod, isKey: (flags & 1) === 1 });
        }
        return { tag: "relation", relation: { oid, schema, table, replicaIdentity, columns } };
      }
    case 0x59 /* Y */:
      {
        const oid = reader.u32();
        const schema = reader.cstring();
        return { tag: "type", oid, schema, name: reader.cstring() };
      }
    case 0x54 /* T */:
      {
        const count = reader.i32();
        const options = reader.u8();
        const relationOids: number[] = [];
        for (let i = 0; i < count; i++) relationOids.push(reader.u32());
        return {
          tag: "truncate",
          relationOids,
          cascade: (options & 1) === 1,
          restartIdentity: (options & 2) === 2,
        };
      }
    case 0x4d /* M */:
      {
        const transactional = (reader.u8() & 1) === 1;
        const lsn = reader.lsn();
        const prefix = reader.cstring();
        const length = reader.i32();
        const content = buffer.subarray(reader.offset, reader.offset + length);
        return { tag: "message", transactional, lsn, prefix, content };
      }
    case 0x4f /* O */:
      {
        const lsn = reader.lsn();
        return { tag: "origin", lsn, name: reader.cstring() };
      }
    default:
      return { tag: "other", code };
  }
}
