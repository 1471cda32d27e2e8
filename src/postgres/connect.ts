/**
 * Connections to a user's PostgreSQL with libpq's `sslmode`, shared by the operator's checks, the
 * CDC connector and the scheduled snapshot job.
 */
import { readFileSync } from "node:fs";
import pg from "pg";

/** libpq's sslmode values. */
export type SslMode = "disable" | "prefer" | "require" | "verify-ca" | "verify-full";

/**
 * pg's `ssl` option for an sslmode, read as libpq reads it; `ca` is the PEM for verify-ca and
 * verify-full. `prefer` is plaintext here: its first try, with TLS, is connectPostgres's.
 */
export function sslFor(mode: SslMode, ca?: string): pg.ClientConfig["ssl"] {
  if (mode === "disable" || mode === "prefer") return false;
  if (mode === "require") return { rejectUnauthorized: false };
  return {
    rejectUnauthorized: true,
    ...(ca ? { ca } : {}),
    // verify-ca checks the chain only, as libpq does.
    ...(mode === "verify-ca" ? { checkServerIdentity: () => undefined } : {}),
  };
}

/** The CA file's PEM when `mode` verifies the server; the file is not read otherwise. */
export function caFileFor(mode: SslMode, path: string | undefined): string | undefined {
  return (mode === "verify-ca" || mode === "verify-full") && path ? readFileSync(path, "utf8") : undefined;
}

/**
 * A connected client for `config` under `mode`. With `prefer`, TLS (unverified) is tried first and
 * a server that does not support SSL is then reached in the clear, as libpq does. A client that
 * fails to connect is ended; the error is PostgreSQL's or the network's, as it came.
 */
export async function connectPostgres(
  config: Omit<pg.ClientConfig, "ssl">,
  mode: SslMode,
  ca?: string,
): Promise<pg.Client> {
  const attempt = async (ssl: pg.ClientConfig["ssl"]) => {
    const client = new pg.Client({ ...config, ssl });
    try {
      await client.connect();
      return client;
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
  };
  if (mode !== "prefer") return attempt(sslFor(mode, ca));
  try {
    return await attempt({ rejectUnauthorized: false });
  } catch (error) {
    if (!/does not support SSL/i.test((error as Error).message)) throw error;
    return attempt(false);
  }
}
