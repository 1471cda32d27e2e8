/**
 * Checkpoints (HDFS's saveNamespace on the active): an image of the namespace every
 * `checkpointTxns` edits or `checkpointPeriodMs`, so that a restart or a standby far behind
 * replays little of the log, and older segments can be removed. Written off the request path:
 * the tree is serialised a slice at a time (Namespace.beginImage) while RPCs and edits go on.
 */
import type { FSNamesystem } from "./fsNamesystem.js";

export class Checkpointer {
  private lastCheckpointTxid = 0;
  private lastCheckpointAt = Date.now();
  private checkpointing: Promise<void> | undefined;

  constructor(private readonly fs: FSNamesystem) {}

  /** The namespace was (re)loaded from an image at `txid`: the next checkpoint counts from there. */
  loaded(txid: number): void {
    this.lastCheckpointTxid = txid;
  }

  maybeCheckpoint(): void {
    const txns = this.fs.lastAppliedTxid - this.lastCheckpointTxid;
    if (txns === 0) return;
    if (
      txns < this.fs.config.checkpointTxns &&
      Date.now() - this.lastCheckpointAt < this.fs.config.checkpointPeriodMs
    )
      return;
    this.checkpoint().catch((error) =>
      this.fs.logger.warn({ error: (error as Error).message }, "checkpoint failed"),
    );
  }

  /**
   * Writes an image of the namespace as of now, off the request path: the tree is serialised a
   * slice at a time while RPCs and edits go on (Namespace.beginImage keeps what they change from
   * showing in it). One checkpoint at a time; resolves when the image is durable.
   */
  checkpoint(): Promise<void> {
    if (this.checkpointing) return this.checkpointing;
    const txid = this.fs.lastAppliedTxid;
    const slices = this.fs.namespace.beginImage(this.fs.config.checkpointSliceInodes);
    this.lastCheckpointTxid = txid;
    this.lastCheckpointAt = Date.now();
    this.checkpointing = this.fs.editLog
      .checkpoint(txid, slices, this.fs.config.onCheckpointSlice)
      .then(() => this.fs.logger.info({ txid }, "checkpoint written"))
      .finally(() => {
        this.checkpointing = undefined;
      });
    return this.checkpointing;
  }
}
