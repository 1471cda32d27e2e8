/**
 * HDFS's LeaseManager: when each writer (client name) last renewed its lease. The files a writer
 * holds open are in the namespace (Namespace.leases, logged with the edits); renewals are not
 * logged, so a new active starts every holder's clock afresh. A holder silent past the hard limit
 * loses its files: the name node closes them with the blocks that were complete.
 */
export class LeaseManager {
  private readonly renewed = new Map<string, number>();

  constructor(private readonly hardLimitMs: number) {}

  renew(client: string, now = Date.now()): void {
    this.renewed.set(client, now);
  }

  /** On becoming active: every holder gets a whole hard limit from now. */
  renewAll(clients: Iterable<string>, now = Date.now()): void {
    for (const client of clients) this.renewed.set(client, now);
  }

  /** The holders among `clients` silent past the hard limit; forgotten here, for their files to be closed. */
  expired(clients: Iterable<string>, now = Date.now()): string[] {
    const expired: string[] = [];
    for (const client of clients) {
      const renewed = this.renewed.get(client);
      if (renewed === undefined) {
        this.renewed.set(client, now);
        continue;
      }
      if (now - renewed <= this.hardLimitMs) continue;
      this.renewed.delete(client);
      expired.push(client);
    }
    return expired;
  }
}
