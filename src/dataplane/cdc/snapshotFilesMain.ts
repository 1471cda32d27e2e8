/**
 * `tributary cdc-snapshot`: one scheduled snapshot of a CDCStream's tables into files, run as a
 * Kubernetes Job. Exits 0 once `_manifest.json` is written, with a one-line summary as the
 * container's termination message, which the operator copies into the CDCStream's status.
 */
import { writeFile } from "node:fs/promises";
import pg from "pg";
import { createLogger } from "../../log.js";
import { caFileFor, connectPostgres } from "../../postgres/connect.js";
import { LocalDirectoryTarget, type SinkTarget } from "../sink/target.js";
import { WebHdfsTarget } from "../sink/webhdfsTarget.js";
import { WebHdfsClient } from "../storage/client.js";
import { snapshotTypeParsers, takeSnapshot } from "./snapshotFiles.js";
import { parseSnapshotFilesConfig, type SnapshotFilesConfig, usage } from "./snapshotFilesConfig.js";

export async function connect(config: SnapshotFilesConfig): Promise<pg.Client> {
  return connectPostgres(
    {
      host: config.pgHost,
      port: config.pgPort,
      database: config.pgDatabase,
      user: config.pgUser,
      password: config.pgPassword,
      application_name: `tributary-cdc-snapshot${config.name ? ` ${config.name}` : ""}`.slice(0, 63),
      types: snapshotTypeParsers(pg.types),
    },
    config.pgSslMode,
    caFileFor(config.pgSslMode, config.pgSslRootCertFile),
  );
}

export function targetOf(config: SnapshotFilesConfig): SinkTarget {
  return config.targetDir
    ? new LocalDirectoryTarget(config.targetDir)
    : new WebHdfsTarget(
        new WebHdfsClient({ nameNodes: config.targetWebhdfs!, user: "tributary" }),
        config.targetPath!,
        config.targetWebhdfs,
      );
}

export async function main(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(usage());
    return;
  }
  const config = parseSnapshotFilesConfig(argv);
  const log = createLogger("cdc-snapshot", config.name ? { stream: config.name } : {});
  const target = targetOf(config);
  const time = config.snapshotTime ? new Date(config.snapshotTime) : new Date();
  log.info({ target: target.location, format: config.format, time: time.toISOString() }, "taking a snapshot");
  const client = await connect(config);
  client.on("error", (error) => log.error({ err: error }, "database connection failed"));
  let lastLog = 0;
  try {
    const manifest = await takeSnapshot({
      client,
      target,
      format: config.format,
      include: config.tablesInclude,
      exclude: config.tablesExclude,
      fetchSize: config.fetchSize,
      rowGroupRows: config.rowGroupRows,
      maxFileBytes: config.maxFileBytes,
      time,
      ...(config.name ? { stream: config.name } : {}),
      onProgress: (table, rows) => {
        if (Date.now() - lastLog < 10_000) return;
        lastLog = Date.now();
        log.info({ table, rows }, "reading");
      },
    });
    const summary = {
      manifest: `${target.location}/${manifest.manifest}`,
      rows: manifest.totalRows,
      lsn: manifest.lsn,
      tables: manifest.tables.length,
    };
    log.info(summary, "snapshot written");
    await writeFile(config.terminationLog, JSON.stringify(summary)).catch(() => {});
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    await writeFile(config.terminationLog, message.slice(0, 2048)).catch(() => {});
    throw error;
  } finally {
    await client.end().catch(() => {});
  }
}
