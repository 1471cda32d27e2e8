/**
 * PostgreSQL log sequence numbers. An LSN is a 64-bit WAL byte position written `XXXXXXXX/XXXXXXXX`;
 * here it is a JavaScript number, exact up to 2^53 bytes of WAL (8 PiB), which a server does not
 * reach, so comparisons and arithmetic stay cheap on the streaming path.
 */

export type Lsn = number;

const TWO_32 = 0x1_0000_0000;

export function parseLsn(text: string): Lsn {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!match) throw new Error(`'${text}' is not an LSN (expected XXXXXXXX/XXXXXXXX)`);
  return Number.parseInt(match[1]!, 16) * TWO_32 + Number.parseInt(match[2]!, 16);
}

export function formatLsn(lsn: Lsn): string {
  const hi = Math.floor(lsn / TWO_32);
  const lo = lsn - hi * TWO_32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

export function readLsn(buffer: Buffer, offset: number): Lsn {
  return buffer.readUInt32BE(offset) * TWO_32 + buffer.readUInt32BE(offset + 4);
}

export function writeLsn(buffer: Buffer, offset: number, lsn: Lsn): void {
  const hi = Math.floor(lsn / TWO_32);
  buffer.writeUInt32BE(hi, offset);
  buffer.writeUInt32BE(lsn - hi * TWO_32, offset + 4);
}

/** Microseconds since 2000-01-01 (PostgreSQL's epoch), as in replication messages, to Unix ms. */
export const PG_EPOCH_MS = 946_684_800_000;

export function readPgTimestampMs(buffer: Buffer, offset: number): number {
  const micros = buffer.readBigInt64BE(offset);
  return Number(micros / 1000n) + PG_EPOCH_MS;
}
