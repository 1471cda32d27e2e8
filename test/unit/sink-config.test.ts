import avro from "avsc";
import { describe, expect, it } from "vitest";
import { parseSinkConfig } from "../../src/dataplane/sink/config.js";
import { JsonRecordDecoder } from "../../src/dataplane/sink/decode.js";

describe("sink configuration", () => {
  it("takes flags over environment variables and fills defaults", () => {
    const config = parseSinkConfig(
      ["--topic", "clicks", "--target-dir", "/data/clicks", "--roll-max-bytes", "1048576"],
      {
        TRIBUTARY_SINK_BROKERS: "k1:9092,k2:9092",
        TRIBUTARY_SINK_ROLL_MAX_BYTES: "5",
        TRIBUTARY_SINK_FORMAT: "avro",
      },
    );
    expect(config).toMatchObject({
      brokers: ["k1:9092", "k2:9092"],
      topic: "clicks",
      format: "avro",
      codec: "deflate",
      groupId: "tributary-sink-clicks",
      deadLetterTopic: "clicks.dlq",
      rollMaxBytes: 1_048_576,
      rollMaxAgeMs: 600_000,
      rowGroupRows: 50_000,
      valueFormat: "confluent-avro",
      eventTimeField: "eventTime",
      timestampFields: ["eventTime", "receivedAt"],
    });
    expect(config.writerId).toMatch(/^[A-Za-z0-9_]+$/);
  });

  it("names the flag, the variable and what was expected when a value is wrong", () => {
    const base = ["--brokers", "k:9092", "--topic", "clicks", "--target-dir", "/data"];
    expect(() => parseSinkConfig([...base, "--format", "parquet", "--codec", "deflate"], {})).toThrow(
      /--codec \(TRIBUTARY_SINK_CODEC\): codec 'deflate' is not one of snappy, gzip, uncompressed for format parquet/,
    );
    expect(() => parseSinkConfig([...base, "--roll-max-age-ms=0"], {})).toThrow(
      /--roll-max-age-ms .*must be positive/,
    );
    expect(() => parseSinkConfig(["--topic", "clicks", "--target-dir", "relative"], {})).toThrow(
      /--brokers[\s\S]*--target-dir \(TRIBUTARY_SINK_TARGET_DIR\): targetDir must be an absolute path/,
    );
    expect(() => parseSinkConfig([...base, "--value-format", "json"], {})).toThrow(
      /valueFormat json needs schemaFile/,
    );
    expect(() => parseSinkConfig([...base, "--no-such-flag", "1"], {})).toThrow(
      /Unknown option '--no-such-flag'/,
    );
  });
});

describe("sink target", () => {
  const base = ["--brokers", "k:9092", "--topic", "clicks"];

  it("takes a BlockPool through WebHDFS addresses and a path", () => {
    const config = parseSinkConfig([...base, "--target-path", "/lake/clicks"], {
      TRIBUTARY_SINK_TARGET_WEBHDFS: "nn-0:9870, nn-1:9870",
    });
    expect(config).toMatchObject({ targetWebhdfs: ["nn-0:9870", "nn-1:9870"], targetPath: "/lake/clicks" });
    expect(config.targetDir).toBeUndefined();
  });

  it("needs exactly one of targetDir or targetWebhdfs with targetPath", () => {
    expect(() => parseSinkConfig(base, {})).toThrow(/a target is required: targetDir .* or targetWebhdfs/);
    expect(() =>
      parseSinkConfig(
        [...base, "--target-dir", "/data", "--target-webhdfs", "nn:9870", "--target-path", "/x"],
        {},
      ),
    ).toThrow(/--target-dir \(TRIBUTARY_SINK_TARGET_DIR\): give either targetDir or targetWebhdfs/);
    expect(() => parseSinkConfig([...base, "--target-webhdfs", "nn:9870"], {})).toThrow(
      /--target-path \(TRIBUTARY_SINK_TARGET_PATH\): a BlockPool target needs both/,
    );
    expect(() => parseSinkConfig([...base, "--target-webhdfs", "nn", "--target-path", "/x"], {})).toThrow(
      /each WebHDFS address must be host:port/,
    );
    expect(() => parseSinkConfig([...base, "--target-webhdfs", "nn:1", "--target-path", "x"], {})).toThrow(
      /targetPath must be an absolute path/,
    );
  });
});

describe("JSON record decoder", () => {
  const type = avro.Type.forSchema({
    type: "record",
    name: "Visit",
    fields: [
      { name: "path", type: "string" },
      { name: "at", type: "long" },
      { name: "user", type: ["null", "string"], default: null },
    ],
  });
  const decoder = new JsonRecordDecoder(type);

  it("decodes JSON objects that match the schema", async () => {
    const result = await decoder.decode(Buffer.from(JSON.stringify({ path: "/", at: 1, user: null })));
    expect(result).toEqual({
      ok: true,
      schemaKey: "json:Visit",
      type,
      record: { path: "/", at: 1, user: null },
    });
  });

  it("says why a value is refused", async () => {
    expect(await decoder.decode(null)).toEqual({
      ok: false,
      reason: "the message has no value (a tombstone)",
    });
    expect(await decoder.decode(Buffer.from("{nope"))).toMatchObject({
      ok: false,
      reason: /value is not JSON/,
    });
    expect(await decoder.decode(Buffer.from(JSON.stringify({ path: 3, at: 1 })))).toMatchObject({
      ok: false,
      reason: /does not match schema Visit: path: got 3/,
    });
  });
});
