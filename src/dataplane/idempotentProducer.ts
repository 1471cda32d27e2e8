/**
 * An idempotent kafkajs producer that starts a new idempotent session (a new producer id) after
 * any send that failed.
 *
 * kafkajs takes an idempotent producer's sequence numbers back when a produce request fails, even
 * when the broker had written the batch and only its answer was lost (a broker killed, or cut
 * off, after appending). The next batch sent to that partition then reuses those sequence
 * numbers, and a broker that still knows the first batch takes the new one for a retry of it:
 * it answers success without writing it. That is an acknowledged loss, seen in Tributary's
 * kill -9 tests of the collector. Kafka's Java producer bumps its epoch after such an unknown
 * outcome; this wrapper replaces the producer instead, before anything else is sent. A batch
 * whose outcome was unknown may then be written twice once the caller retries it (at least
 * once), never lost.
 */
import type { Kafka, Producer, ProducerBatch, ProducerConfig, ProducerRecord, RecordMetadata } from "kafkajs";

/** What Tributary's writers use of a kafkajs producer. */
export type ProducerLike = Pick<Producer, "connect" | "disconnect" | "send" | "sendBatch" | "on" | "events">;

export class IdempotentProducer implements ProducerLike {
  private current: Producer;
  private listeners: Parameters<Producer["on"]>[] = [];
  /** The replacement's connect, once a send failed; sends wait for it. */
  private connecting: Promise<void> | undefined;
  private closed = false;
  /** The replacement producer has not connected yet. */
  private unconnected = false;
  readonly events: Producer["events"];

  /**
   * The producers `kafka` makes with `config`, idempotent with one request in flight (what keeps
   * a retried batch from being written twice or out of order).
   */
  static of(kafka: Kafka, config: Omit<ProducerConfig, "idempotent" | "maxInFlightRequests"> = {}) {
    return new IdempotentProducer(() =>
      kafka.producer({ ...config, idempotent: true, maxInFlightRequests: 1 }),
    );
  }

  /** `create` makes a producer with `idempotent: true`; it is called again after each failed send. */
  constructor(private readonly create: () => Producer) {
    this.current = create();
    this.events = this.current.events;
  }

  on: Producer["on"] = ((...args: Parameters<Producer["on"]>) => {
    this.listeners.push(args);
    return this.current.on(...args);
  }) as Producer["on"];

  async connect(): Promise<void> {
    await this.current.connect();
  }

  async disconnect(): Promise<void> {
    this.closed = true;
    await this.connecting?.catch(() => undefined);
    await this.current.disconnect();
  }

  send(record: ProducerRecord): Promise<RecordMetadata[]> {
    return this.guarded((producer) => producer.send(record));
  }

  sendBatch(batch: ProducerBatch): Promise<RecordMetadata[]> {
    return this.guarded((producer) => producer.sendBatch(batch));
  }

  private async guarded(send: (producer: Producer) => Promise<RecordMetadata[]>): Promise<RecordMetadata[]> {
    if (this.connecting) await this.connecting;
    // A replacement that could not connect (Kafka still away) connects here; if it cannot, the
    // send fails with that error and nothing was sent on it.
    if (this.unconnected) {
      await this.current.connect();
      this.unconnected = false;
    }
    const producer = this.current;
    try {
      return await send(producer);
    } catch (error) {
      this.renew(producer);
      throw error;
    }
  }

  private renew(failed: Producer): void {
    if (this.closed || this.current !== failed) return;
    const next = this.create();
    for (const args of this.listeners) next.on(...args);
    this.current = next;
    this.unconnected = true;
    this.connecting = (async () => {
      await failed.disconnect().catch(() => undefined);
      await next.connect();
      this.unconnected = false;
    })()
      .catch(() => undefined)
      .finally(() => {
        this.connecting = undefined;
      });
  }
}
