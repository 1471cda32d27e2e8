/**
 * Whether a broker answers, checked in the background for readiness. The produce pipeline only
 * learns that Kafka went away when a batch waits too long, which never happens while no events
 * flow; an idle collector would stay ready in front of a dead cluster. So every few seconds an
 * admin client asks for the events topic's metadata (one small request to any broker), and a
 * check that fails or takes longer than its timeout makes the collector not ready until one
 * succeeds. Probes read the last outcome; they never wait on Kafka themselves.
 */
import type { Admin } from "kafkajs";
import type { Logger } from "../../log.js";

export interface BrokerCheckOptions {
  topic: string;
  intervalMs: number;
  timeoutMs: number;
}

export class BrokerCheck {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private failure: string | undefined;
  private stopped = false;

  constructor(
    private readonly admin: Admin,
    private readonly options: BrokerCheckOptions,
    private readonly logger: Logger,
  ) {}

  /** Connects the admin client and schedules the checks; the first runs at once. */
  async start(): Promise<void> {
    await this.admin.connect();
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.tick();
  }

  /** Why no broker counts as reachable, or undefined when the last check succeeded. */
  unreachableReason(): string | undefined {
    return this.failure;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    // Not waiting for a check in flight: against a hung broker it could outlast the shutdown
    // deadline. Disconnecting ends its request.
    await this.admin.disconnect().catch(() => undefined);
  }

  private tick(): void {
    // A check still waiting on a hung broker has already counted as failed by its timeout.
    if (this.running || this.stopped) return;
    this.running = this.check().finally(() => {
      this.running = undefined;
    });
  }

  private async check(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.options.timeoutMs);
    });
    const answered = this.admin.fetchTopicMetadata({ topics: [this.options.topic] }).then(
      () => undefined,
      (error: unknown) => `Kafka metadata request failed: ${(error as Error).message}`,
    );
    const outcome = await Promise.race([answered, timedOut]);
    clearTimeout(timer);
    const failure =
      outcome === "timeout"
        ? `no Kafka broker answered a metadata request within ${this.options.timeoutMs} ms`
        : outcome;
    if (failure !== this.failure && !this.stopped) {
      if (failure) this.logger.warn({ reason: failure }, "Kafka unreachable: not ready");
      else this.logger.info("Kafka reachable again: ready");
    }
    this.failure = failure;
    // A hung request is still running; the next tick starts only after it gives up.
    if (outcome === "timeout") await answered;
  }
}
