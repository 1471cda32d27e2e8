/**
 * Kafka clients the operator keeps between reconciles: what it takes to reach a cluster, and one
 * connected admin client per cluster and credentials. Not controller logic: a controller owns a
 * `KafkaAdmins` and closes it when it stops.
 */
import type tls from "node:tls";
import type { Admin, SASLOptions } from "kafkajs";
import kafkajs from "kafkajs";
import { kafkaLogCreator } from "../dataplane/avro/kafka-log.js";
import type { Logger } from "../log.js";

const { Kafka, logLevel } = kafkajs;

/** What it takes to reach a cluster: brokers and, from the referenced Secrets, TLS and SASL. */
export interface KafkaConnection {
  brokers: string[];
  ssl?: tls.ConnectionOptions;
  sasl?: SASLOptions;
  /** Identifies the cluster and credentials: a changed Secret gives a new client. */
  key: string;
  /**
   * `<secret>@<resourceVersion>` of each Secret read, for the pods' template: a rotated Secret
   * rolls the collector and sinks, which read their credentials once at start. Versions, not a
   * hash of the contents, so nothing derived from a password is written into a pod spec.
   */
  secretVersions: string[];
}

/** `host:port,host:port` (a flag, an environment variable) as a list of brokers. */
export function parseBootstrap(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((broker) => broker.trim())
    .filter(Boolean);
}

/**
 * One connected admin client per cluster (and credentials), shared by every Topic on it; a
 * client whose connect failed is dropped so the next reconcile starts afresh.
 */
export class KafkaAdmins {
  private readonly admins = new Map<string, Promise<Admin>>();

  constructor(private readonly log?: Logger) {}

  get(connection: KafkaConnection): Promise<Admin> {
    let admin = this.admins.get(connection.key);
    if (!admin) {
      const kafka = new Kafka({
        clientId: "tributary-operator",
        brokers: connection.brokers,
        ssl: connection.ssl,
        sasl: connection.sasl,
        logLevel: logLevel.WARN,
        ...(this.log ? { logCreator: kafkaLogCreator(this.log) } : {}),
        // A reconcile should fail fast and retry with the work queue's backoff, not block a worker.
        connectionTimeout: 3_000,
        requestTimeout: 15_000,
        retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 2_000 },
      });
      const client = kafka.admin();
      admin = client.connect().then(() => client);
      admin.catch(() => {
        this.admins.delete(connection.key);
        void client.disconnect().catch(() => undefined);
      });
      this.admins.set(connection.key, admin);
    }
    return admin;
  }

  /** Disconnects every client; the operator calls it on shutdown. */
  async close(): Promise<void> {
    const admins = [...this.admins.values()];
    this.admins.clear();
    await Promise.all(
      admins.map((admin) => admin.then((client) => client.disconnect()).catch(() => undefined)),
    );
  }
}
