/**
 * HDFS's HA state and EditLogTailer: a name node is standby until it claims the fencing epoch on
 * the shared edit-log volume. The standby tails the log (applying each edit, and rebuilding the
 * retry cache from the answers logged with them) and takes over when the active stops renewing
 * its epoch; an active that finds a newer epoch steps down and reloads what the log holds.
 */
import { type EditRecord, GapError } from "./editLog.js";
import type { FSNamesystem } from "./fsNamesystem.js";
import { Namespace } from "./namespace.js";

export class HaStateMachine {
  private busy = false;

  constructor(private readonly fs: FSNamesystem) {}

  async loadFromDisk(): Promise<void> {
    const latest = await this.fs.editLog.latestImage();
    this.fs.wireNamespace(latest ? Namespace.fromImage(latest.image) : new Namespace());
    this.fs.lastAppliedTxid = latest?.txid ?? 0;
    this.fs.checkpointer.loaded(this.fs.lastAppliedTxid);
    await this.tail();
  }

  async tail(): Promise<void> {
    let records: EditRecord[];
    try {
      records = await this.fs.editLog.readAfter(this.fs.lastAppliedTxid);
    } catch (error) {
      if (!(error instanceof GapError)) throw error;
      // A checkpoint removed segments this standby had not read yet: start over from the image.
      this.fs.logger.info(
        { txid: this.fs.lastAppliedTxid },
        "edit log moved past this name node: reloading from the newest image",
      );
      const latest = await this.fs.editLog.latestImage();
      if (!latest) throw error;
      this.fs.wireNamespace(Namespace.fromImage(latest.image));
      this.fs.lastAppliedTxid = latest.txid;
      records = await this.fs.editLog.readAfter(this.fs.lastAppliedTxid);
    }
    for (const record of records) {
      this.fs.namespace.apply(record);
      this.fs.lastAppliedTxid = record.txid;
      if (record.rpc) this.fs.retryCache.record(record.rpc, record.rpc.result);
    }
  }

  async tick(): Promise<void> {
    if (this.busy || this.fs.haState === "stopped") return;
    this.busy = true;
    try {
      if (this.fs.haState === "active") {
        await this.fs.editLog.renew();
        if (this.fs.editLog.isFenced) await this.stepDown("a newer epoch exists");
        return;
      }
      await this.tail();
      const writer = await this.fs.editLog.writerState();
      if (writer.silentForMs <= this.fs.config.takeoverTimeoutMs) return;
      const epoch = await this.fs.editLog.claimEpoch(writer.epoch);
      if (epoch === undefined) return;
      // Everything the previous active acknowledged is durable before our claim: read it all.
      await this.tail();
      await this.fs.editLog.startWriting(epoch, this.fs.lastAppliedTxid + 1);
      const now = Date.now();
      this.fs.leases.renewAll(this.fs.namespace.leases.keys(), now);
      this.fs.haState = "active";
      this.fs
        .applySpec()
        .catch((error) =>
          this.fs.logger.error(
            { error: (error as Error).message },
            "could not apply the pool's erasure-coding policies and quotas",
          ),
        );
      this.fs.logger.info(
        { epoch, txid: this.fs.lastAppliedTxid, previousEpoch: writer.epoch },
        "transitioned to active",
      );
    } catch (error) {
      this.fs.logger.error({ error: (error as Error).message }, "HA state check failed");
    } finally {
      this.busy = false;
    }
  }

  async stepDown(reason: string): Promise<void> {
    if (this.fs.haState !== "active") return;
    this.fs.logger.warn(
      { reason, epoch: this.fs.editLog.writerEpoch },
      "fenced: transitioning to standby and reloading the namespace from the edit log",
    );
    this.fs.haState = "standby";
    await this.fs.editLog.close();
    await this.loadFromDisk();
  }
}
