import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { caFileFor, sslFor } from "../../src/postgres/connect.js";

describe("libpq's sslmode as pg's ssl option", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pg-ca-"));
    await writeFile(join(dir, "root.pem"), "PEM");
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("is plaintext for disable and prefer (prefer's TLS try is the connect's), unverified TLS for require", () => {
    expect(sslFor("disable")).toBe(false);
    expect(sslFor("prefer", "PEM")).toBe(false);
    expect(sslFor("require", "PEM")).toEqual({ rejectUnauthorized: false });
  });

  it("verifies the chain for verify-ca and the host name too for verify-full", () => {
    const ca = sslFor("verify-ca", "PEM") as {
      rejectUnauthorized: boolean;
      ca: string;
      checkServerIdentity: () => unknown;
    };
    expect(ca).toMatchObject({ rejectUnauthorized: true, ca: "PEM" });
    expect(ca.checkServerIdentity()).toBeUndefined();
    expect(sslFor("verify-full", "PEM")).toEqual({ rejectUnauthorized: true, ca: "PEM" });
    expect(sslFor("verify-full")).toEqual({ rejectUnauthorized: true });
  });

  it("reads the CA file only for the modes that verify", () => {
    expect(caFileFor("verify-full", join(dir, "root.pem"))).toBe("PEM");
    expect(caFileFor("require", join(dir, "missing.pem"))).toBeUndefined();
    expect(() => caFileFor("verify-ca", join(dir, "missing.pem"))).toThrow(/ENOENT/);
  });
});
