import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testEnv, uniqueName } from "../support/env.js";

// Proves pg against the real PostgreSQL of the test environment, with logical replication on.
describe("postgres smoke", () => {
  const database = uniqueName("smoke").replaceAll("-", "_");
  const slot = `${database}_slot`;
  const admin = new pg.Client({ connectionString: testEnv().postgresUrl });
  let client: pg.Client;

  beforeAll(async () => {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    const url = new URL(testEnv().postgresUrl);
    url.pathname = `/${database}`;
    client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
  });

  afterAll(async () => {
    await client.query("SELECT pg_drop_replication_slot($1)", [slot]).catch(() => undefined);
    await client.end();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  });

  it("runs with wal_level=logical", async () => {
    const { rows } = await client.query("SHOW wal_level");
    expect(rows[0].wal_level).toBe("logical");
  });

  it("creates a pgoutput replication slot and reads one change", async () => {
    await client.query("CREATE TABLE clicks (id bigint PRIMARY KEY, path text NOT NULL)");
    await client.query("CREATE PUBLICATION smoke_pub FOR TABLE clicks");
    await client.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
    await client.query("INSERT INTO clicks VALUES (1, '/watch?v=42')");

    const { rows } = await client.query(
      `SELECT lsn, data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
         'proto_version', '1', 'publication_names', 'smoke_pub')`,
      [slot],
    );
    // pgoutput messages: B(egin), R(elation), I(nsert), C(ommit).
    const kinds = rows.map((row: { data: Buffer }) => String.fromCharCode(row.data[0]!));
    expect(kinds).toEqual(["B", "R", "I", "C"]);
    const insert = rows[2].data as Buffer;
    expect(insert.includes(Buffer.from("/watch?v=42"))).toBe(true);
  });
});
