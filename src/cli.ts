#!/usr/bin/env node
/**
 * The one entrypoint of Tributary's container image: the operator and every data-plane role
 * are this program started with a different subcommand.
 */

import { ConfigError } from "./dataplane/config.js";

type Role = { describe: string; load: () => Promise<{ main: (argv: string[]) => Promise<void> }> };

const roles: Record<string, Role> = {
  operator: {
    describe: "run the controllers (leader-elected) with health, readiness and metrics endpoints",
    load: () => import("./operator/main.js"),
  },
  sink: {
    describe:
      "roll a Kafka topic into Avro or Parquet files (dt=/hr= partitions), committing after each durable file",
    load: () => import("./dataplane/sink/main.js"),
  },
  collector: {
    describe:
      "take clickstream events over HTTP and produce them, Avro-encoded and keyed by session, to Kafka",
    load: () => import("./dataplane/clickstream/main.js"),
  },
  "schema-registry": {
    describe:
      "serve Confluent Schema Registry's REST API from the schemas topic, so Avro consumers outside Tributary decode its messages",
    load: () => import("./dataplane/registry/main.js"),
  },
  video: {
    describe:
      "pull or receive camera streams, sample them with ffmpeg into JPEG/WebP frames and publish them to Kafka keyed by camera",
    load: () => import("./dataplane/video/main.js"),
  },
  "video-read": {
    describe:
      "read a VideoCollector's topic as whole frames (chunked frames reassembled), optionally to files",
    load: () => import("./dataplane/video/reader.js"),
  },
  "cdc-snapshot": {
    describe:
      "dump a CDCStream's tables at one consistent point into Parquet or Avro files with a manifest (a scheduled Job)",
    load: () => import("./dataplane/cdc/snapshotFilesMain.js"),
  },
  cdc: {
    describe:
      "stream PostgreSQL row changes (logical replication, pgoutput) into Kafka as Debezium change events",
    load: () => import("./dataplane/cdc/main.js"),
  },
  namenode: {
    describe:
      "the BlockPool's namespace, edit log and block manager with WebHDFS (active or standby by fencing epoch)",
    load: () => import("./dataplane/storage/namenode/main.js"),
  },
  "dag-scheduler": {
    describe:
      "schedule a Dag: runs from its schedule, ready tasks to its queue, retries and timeouts (one active, fenced by epoch)",
    load: () => import("./dataplane/dag/schedulerMain.js"),
  },
  worker: {
    describe:
      "run a Dag's tasks from its queue (as processes or Kubernetes Jobs), with heartbeats and logs in Redis",
    load: () => import("./dataplane/dag/workerMain.js"),
  },
  dag: {
    describe: "a Dag's runs, task trees and logs; trigger, clear, backfill and mark runs",
    load: () => import("./dataplane/dag/cli.js"),
  },
  datanode: {
    describe:
      "store a BlockPool's replicas: pipelined block writes, verified reads, heartbeats, block scanner",
    load: () => import("./dataplane/storage/datanode/main.js"),
  },
  resourcemanager: {
    describe:
      "a YarnQueue cluster's resource manager: capacity scheduler, applications, YARN's REST API (/ws/v1/cluster)",
    load: () => import("./dataplane/yarn/main.js").then((m) => ({ main: m.resourceManagerMain })),
  },
  nodemanager: {
    describe: "run YARN containers as processes: register, heartbeat, memory monitor, container logs",
    load: () => import("./dataplane/yarn/main.js").then((m) => ({ main: m.nodeManagerMain })),
  },
  yarn: {
    describe: "YARN client and shipped masters: submit, list, status, kill, logs; am-shell, am-mapcombine",
    load: () => import("./dataplane/yarn/client.js"),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(roles).map((name) => name.length)) + 2;
  const lines = Object.entries(roles).map(([name, role]) => `  ${name.padEnd(width)} ${role.describe}`);
  return `usage: tributary <role> [options]\n\nroles:\n${lines.join("\n")}\n`;
}

async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const role = roles[name];
  if (!role) {
    process.stderr.write(`tributary: unknown role '${name}'\n\n${usage()}`);
    return 2;
  }
  const module = await role.load();
  await module.main(rest);
  return 0;
}

run(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (error: unknown) => {
    // A bad configuration is the user's to fix: its message names the flag; a stack would hide it.
    if (error instanceof ConfigError) {
      process.stderr.write(`tributary: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    // A refused Kafka login says which Secret to fix; checked by name so the CLI loads no Kafka client.
    if (error instanceof Error && error.name === "KafkaAuthenticationError") {
      process.stderr.write(`tributary: ${error.message}\n`);
      process.exitCode = 1;
      return;
    }
    process.stderr.write(
      `tributary: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
