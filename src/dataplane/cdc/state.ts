/**
 * The connector's durable marker, one JSON file per slot under the state directory (the pod's
 * small PersistentVolumeClaim at /var/lib/tributary/cdc): whether the initial snapshot of the
 * slot finished, and the ad hoc snapshot requests with their progress. Written to a temporary
 * file, fsynced and renamed, so a crash leaves the old or the new marker, never half of one.
 *
 * The stream position itself is not kept here: it is the slot's confirmed_flush_lsn in
 * PostgreSQL, which only advances after Kafka acknowledged the events before it.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { open, rename } from "node:fs/promises";
import { join } from "node:path";

export type RequestState = "Pending" | "Running" | "Completed" | "Failed";

export interface SnapshotRequest {
  id: string;
  tables: string[];
  state: RequestState;
  rows: number;
  message?: string;
  /** Index into `tables` of the table being read, and the last primary key emitted (JSON). */
  tableIndex: number;
  lastKey?: unknown[];
  requestedAt: string;
  completedAt?: string;
}

export interface ConnectorState {
  slot: string;
  /** `running` while the initial snapshot is being read; `done` after its rows are acknowledged. */
  initialSnapshot?: "running" | "done";
  initialSnapshotCompletedAt?: string;
  initialSnapshotRows?: number;
  requests: SnapshotRequest[];
}

export class StateStore {
  private readonly file: string;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    readonly dir: string,
    readonly slot: string,
  ) {
    this.file = join(dir, `${slot}.json`);
  }

  load(): ConnectorState {
    mkdirSync(this.dir, { recursive: true });
    try {
      const state = JSON.parse(readFileSync(this.file, "utf8")) as ConnectorState;
      if (state.slot === this.slot) return { ...state, requests: state.requests ?? [] };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    return { slot: this.slot, requests: [] };
  }

  /** Saves a copy of `state`; saves run one after another in call order. */
  save(state: ConnectorState): Promise<void> {
    const text = JSON.stringify(state);
    const next = this.writing.then(async () => {
      const temporary = `${this.file}.tmp`;
      const handle = await open(temporary, "w");
      try {
        await handle.writeFile(text);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, this.file);
      const dir = await open(this.dir, "r");
      await dir.sync().finally(() => dir.close());
    });
    this.writing = next.catch(() => undefined);
    return next;
  }
}
