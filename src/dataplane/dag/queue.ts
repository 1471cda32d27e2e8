/**
 * What carries ready tasks from the scheduler to the workers: BullMQ queues in Redis, or durable
 * RabbitMQ queues (amqplib). Both are transports only: delivery is at least once, and a message
 * delivered twice, or for a try that has since been retried, is refused by the task instance's
 * fence in Redis (DagStore.start), so the queue's own retry and stall rules never decide a
 * task's fate.
 */
import { createHash } from "node:crypto";
import amqplib from "amqplib";
import { Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "../../log.js";
import { connectRedis } from "./store.js";

export type QueueBackend = "redis" | "rabbitmq";

/**
 * `ack` tells the transport the message is claimed (the try is running or was refused); the
 * handler's promise settles when the task is done. RabbitMQ is acknowledged on `ack`, so a task
 * of hours never meets the broker's consumer timeout; BullMQ keeps its job until the end.
 */
export type MessageHandler = (message: unknown, ack: () => void) => Promise<void>;

export interface TaskQueue {
  readonly backend: QueueBackend;
  send(queue: string, message: unknown, dedupeId: string): Promise<void>;
  /** Consumes `queues` with at most `concurrency` handlers at once, until close. */
  consume(queues: readonly string[], concurrency: number, handle: MessageHandler): Promise<void>;
  /** Messages waiting in a queue (for the bench and status). */
  depth(queue: string): Promise<number>;
  /** Removes the queues (deletionPolicy Delete, tests). */
  destroy(queues: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

export interface QueueOptions {
  backend: QueueBackend;
  /** Prefix of every queue name (the Dag's key prefix). */
  prefix: string;
  redisUrl: string;
  redisPassword?: string;
  rabbitmqUrl?: string;
  rabbitmqPassword?: string;
  log: Logger;
}

export async function openTaskQueue(options: QueueOptions): Promise<TaskQueue> {
  if (options.backend === "rabbitmq") {
    if (!options.rabbitmqUrl)
      throw new Error("queue backend rabbitmq needs a RabbitMQ URL (spec.rabbitmq.url)");
    return RabbitTaskQueue.open(options.rabbitmqUrl, options.rabbitmqPassword, options.prefix, options.log);
  }
  return new BullTaskQueue(options.redisUrl, options.redisPassword, options.prefix, options.log);
}

/** BullMQ: one Queue per name; the job id dedupes a message the scheduler sends again. */
class BullTaskQueue implements TaskQueue {
  readonly backend = "redis";
  private readonly queues = new Map<string, Queue>();
  private readonly workers: Worker[] = [];
  private readonly connections: Redis[] = [];
  private readonly bullPrefix: string;

  constructor(
    private readonly url: string,
    private readonly password: string | undefined,
    prefix: string,
    private readonly log: Logger,
  ) {
    // BullMQ builds keys as <prefix>:<queue>:...; the Dag's prefix ends in ':'.
    this.bullPrefix = `${prefix}bull`;
  }

  private connection(): Redis {
    const connection = connectRedis(this.url, this.password);
    connection.on("error", (error) => this.log.warn({ err: error.message }, "queue connection"));
    this.connections.push(connection);
    return connection;
  }

  private queue(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.connection(), prefix: this.bullPrefix });
      this.queues.set(name, queue);
    }
    return queue;
  }

  async send(queue: string, message: unknown, dedupeId: string): Promise<void> {
    await this.queue(queue).add("task", message, {
      // Custom ids may not hold ':'; a hash of the try's identity also bounds the length.
      jobId: createHash("sha1").update(dedupeId).digest("hex"),
      attempts: 1,
      removeOnComplete: true,
      removeOnFail: true,
    });
  }

  async consume(queues: readonly string[], concurrency: number, handle: MessageHandler): Promise<void> {
    for (const name of queues) {
      const worker = new Worker(
        name,
        async (job) => {
          await handle(job.data, () => {});
        },
        {
          connection: this.connection(),
          prefix: this.bullPrefix,
          concurrency,
          // A stalled job (its worker died) is not re-run by BullMQ: the Dag's heartbeat decides
          // about the try, and a new try is a new message.
          maxStalledCount: 0,
        },
      );
      worker.on("error", (error) => this.log.warn({ err: error.message, queue: name }, "queue worker"));
      this.workers.push(worker);
    }
  }

  async depth(queue: string): Promise<number> {
    return this.queue(queue).getWaitingCount();
  }

  async destroy(queues: readonly string[]): Promise<void> {
    for (const name of queues) await this.queue(name).obliterate({ force: true });
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.workers.map((worker) => worker.close(true)));
    await Promise.allSettled([...this.queues.values()].map((queue) => queue.close()));
    for (const connection of this.connections) connection.disconnect();
  }
}

/**
 * RabbitMQ: a durable queue per name, persistent messages through a confirm channel (sent means
 * the broker has it), consumption with a prefetch of the worker's concurrency. A message is
 * acknowledged once the try is claimed in Redis; one that was delivered but never claimed (the
 * worker died first) is redelivered by the broker.
 */
class RabbitTaskQueue implements TaskQueue {
  readonly backend = "rabbitmq";
  private readonly asserted = new Set<string>();
  private consumeChannel: amqplib.Channel | undefined;
  private closing = false;

  private constructor(
    private readonly connection: amqplib.ChannelModel,
    private readonly publishChannel: amqplib.ConfirmChannel,
    private readonly prefix: string,
    private readonly log: Logger,
  ) {}

  static async open(url: string, password: string | undefined, prefix: string, log: Logger) {
    let target = url;
    if (password) {
      const parsed = new URL(url);
      parsed.password = encodeURIComponent(password);
      target = parsed.toString();
    }
    const connection = await amqplib.connect(target);
    const channel = await connection.createConfirmChannel();
    const queue = new RabbitTaskQueue(connection, channel, prefix, log);
    connection.on("error", (error: Error) => log.warn({ err: error.message }, "rabbitmq connection"));
    connection.on("close", () => {
      // A lost broker connection is fatal to the process: the pod restarts and reconnects, and
      // unacknowledged messages go back to the queue.
      if (!queue.closing) {
        log.error("rabbitmq connection closed");
        process.emitWarning("rabbitmq connection closed");
        queue.onLost?.();
      }
    });
    return queue;
  }

  /** Called when the broker connection is lost outside close(). */
  onLost: (() => void) | undefined;

  private name(queue: string) {
    return `${this.prefix}${queue}`;
  }

  private async assert(channel: amqplib.Channel, queue: string) {
    const name = this.name(queue);
    if (!this.asserted.has(name)) {
      await channel.assertQueue(name, { durable: true });
      this.asserted.add(name);
    }
    return name;
  }

  async send(queue: string, message: unknown, dedupeId: string): Promise<void> {
    const name = await this.assert(this.publishChannel, queue);
    await new Promise<void>((resolve, reject) => {
      this.publishChannel.sendToQueue(
        name,
        Buffer.from(JSON.stringify(message)),
        { persistent: true, messageId: dedupeId, contentType: "application/json" },
        (error) => (error ? reject(error) : resolve()),
      );
    });
  }

  async consume(queues: readonly string[], concurrency: number, handle: MessageHandler): Promise<void> {
    const channel = await this.connection.createChannel();
    this.consumeChannel = channel;
    // Messages held unacknowledged: those waiting for a slot and those being claimed.
    await channel.prefetch(concurrency);
    let running = 0;
    const waiting: (() => void)[] = [];
    const slot = async () => {
      while (running >= concurrency) await new Promise<void>((resolve) => waiting.push(resolve));
      running++;
    };
    const release = () => {
      running--;
      waiting.shift()?.();
    };
    for (const queue of queues) {
      const name = await this.assert(channel, queue);
      await channel.consume(name, (delivery) => {
        if (!delivery) return;
        void (async () => {
          await slot();
          let acked = false;
          const ack = () => {
            if (acked || this.closing) return;
            acked = true;
            channel.ack(delivery);
          };
          try {
            await handle(JSON.parse(delivery.content.toString("utf8")), ack);
          } catch (error) {
            this.log.warn({ err: (error as Error).message }, "task message failed");
          } finally {
            ack();
            release();
          }
        })();
      });
    }
  }

  async depth(queue: string): Promise<number> {
    const name = await this.assert(this.publishChannel, queue);
    return (await this.publishChannel.checkQueue(name)).messageCount;
  }

  async destroy(queues: readonly string[]): Promise<void> {
    for (const queue of queues) {
      await this.publishChannel.deleteQueue(this.name(queue));
      this.asserted.delete(this.name(queue));
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.consumeChannel?.close().catch(() => {});
    await this.publishChannel.close().catch(() => {});
    await this.connection.close().catch(() => {});
  }
}
