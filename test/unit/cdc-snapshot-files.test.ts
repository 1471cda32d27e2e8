import { describe, expect, it } from "vitest";
import { manifestPath, snapshotStamp } from "../../src/dataplane/cdc/snapshotFiles.js";
import { parseSnapshotFilesConfig } from "../../src/dataplane/cdc/snapshotFilesConfig.js";
import { ConfigError } from "../../src/dataplane/config.js";

const env = {
  TRIBUTARY_CDC_SNAPSHOT_PG_HOST: "db",
  TRIBUTARY_CDC_SNAPSHOT_PG_DATABASE: "shop",
  TRIBUTARY_CDC_SNAPSHOT_PG_USER: "cdc",
  TRIBUTARY_CDC_SNAPSHOT_TARGET_DIR: "/var/lib/tributary/snapshot",
};

describe("tributary cdc-snapshot's configuration", () => {
  it("reads the variables the controller sets, with flags over them", () => {
    const config = parseSnapshotFilesConfig(["--fetch-size", "500"], {
      ...env,
      TRIBUTARY_CDC_SNAPSHOT_TABLES_INCLUDE: "public.orders, billing.*",
      TRIBUTARY_CDC_SNAPSHOT_FETCH_SIZE: "100",
    });
    expect(config).toMatchObject({
      pgHost: "db",
      pgPort: 5432,
      tablesInclude: ["public.orders", "billing.*"],
      fetchSize: 500,
      format: "parquet",
      rowGroupRows: 50_000,
    });
  });

  it("refuses a missing or doubled target and names the variable", () => {
    const { TRIBUTARY_CDC_SNAPSHOT_TARGET_DIR: _dir, ...without } = env;
    expect(() => parseSnapshotFilesConfig([], without)).toThrow(ConfigError);
    expect(() => parseSnapshotFilesConfig([], without)).toThrow(/TRIBUTARY_CDC_SNAPSHOT_TARGET_PATH/);
    expect(() =>
      parseSnapshotFilesConfig([], { ...env, TRIBUTARY_CDC_SNAPSHOT_TARGET_PATH: "/lake" }),
    ).toThrow(/not both/);
    expect(() =>
      parseSnapshotFilesConfig([], { ...without, TRIBUTARY_CDC_SNAPSHOT_TARGET_PATH: "/lake" }),
    ).toThrow(/targetWebhdfs/);
  });

  it("names snapshots by their time without the ':' a BlockPool path refuses", () => {
    const time = new Date("2026-12-06T01:00:00.000Z");
    expect(snapshotStamp(time)).toBe("20261206T010000Z");
    expect(manifestPath(time)).toBe("_snapshots/snapshot=20261206T010000Z/_manifest.json");
  });
});
