/**
 * The connector's pure parts: LSNs, pgoutput frames, PostgreSQL text values as Debezium values,
 * and the rule that a commit's LSN is confirmed only once Kafka acknowledged every event before it.
 */
import type { Producer } from "kafkajs";
import { describe, expect, it } from "vitest";
import { parseCdcConfig } from "../../src/dataplane/cdc/config.js";
import { formatLsn, parseLsn, readLsn, writeLsn } from "../../src/dataplane/cdc/lsn.js";
import { decodePgOutput, UNCHANGED_TOAST } from "../../src/dataplane/cdc/pgoutput.js";
import { ChangeProducer } from "../../src/dataplane/cdc/producer.js";
import {
  dateDays,
  parseArrayLiteral,
  timeMicros,
  timestampMicros,
  timestamptzIso,
} from "../../src/dataplane/cdc/values.js";

describe("LSNs", () => {
  it("round-trips text and wire forms", () => {
    for (const text of ["0/0", "0/16B3748", "1/0", "FFFF/FFFFFFFF"])
      expect(formatLsn(parseLsn(text))).toBe(text);
    const buffer = Buffer.alloc(8);
    writeLsn(buffer, 0, parseLsn("2A/1234ABCD"));
    expect(buffer.toString("hex")).toBe("0000002a1234abcd");
    expect(formatLsn(readLsn(buffer, 0))).toBe("2A/1234ABCD");
    expect(() => parseLsn("nope")).toThrow(/not an LSN/);
  });
});

/** Builds pgoutput frames as PostgreSQL writes them. */
class Frame {
  private readonly parts: Buffer[] = [];
  byte(value: number | string): this {
    this.parts.push(Buffer.from([typeof value === "string" ? value.charCodeAt(0) : value]));
    return this;
  }
  int16(value: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(value);
    this.parts.push(b);
    return this;
  }
  int32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(value);
    this.parts.push(b);
    return this;
  }
  int64(value: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(value);
    this.parts.push(b);
    return this;
  }
  cstring(value: string): this {
    this.parts.push(Buffer.from(`${value}\0`));
    return this;
  }
  tuple(values: (string | null | "u")[]): this {
    this.int16(values.length);
    for (const value of values) {
      if (value === null) this.byte("n");
      else if (value === "u") this.byte("u");
      else {
        const text = Buffer.from(value);
        this.byte("t").int32(text.length);
        this.parts.push(text);
      }
    }
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

describe("pgoutput decoding", () => {
  it("reads relation, begin, insert, update with old row, delete, truncate, message and commit", () => {
    const relation = decodePgOutput(
      new Frame()
        .byte("R")
        .int32(16384)
        .cstring("public")
        .cstring("t")
        .byte("f")
        .int16(2)
        .byte(1)
        .cstring("id")
        .int32(23)
        .int32(-1)
        .byte(0)
        .cstring("body")
        .int32(25)
        .int32(-1)
        .build(),
    );
    expect(relation).toEqual({
      tag: "relation",
      relation: {
        oid: 16384,
        schema: "public",
        table: "t",
        replicaIdentity: "f",
        columns: [
          { name: "id", typeOid: 23, typeMod: -1, isKey: true },
          { name: "body", typeOid: 25, typeMod: -1, isKey: false },
        ],
      },
    });
    // Commit time 1 s after PostgreSQL's epoch (2000-01-01).
    const begin = decodePgOutput(new Frame().byte("B").int64(0x100n).int64(1_000_000n).int32(77).build());
    expect(begin).toEqual({ tag: "begin", finalLsn: 0x100, commitTimeMs: 946_684_801_000, xid: 77 });
    expect(
      decodePgOutput(new Frame().byte("I").int32(16384).byte("N").tuple(["1", "héllo"]).build()),
    ).toEqual({
      tag: "insert",
      relationOid: 16384,
      after: ["1", "héllo"],
    });
    expect(
      decodePgOutput(
        new Frame().byte("U").int32(16384).byte("O").tuple(["1", "a"]).byte("N").tuple(["1", "u"]).build(),
      ),
    ).toEqual({
      tag: "update",
      relationOid: 16384,
      beforeKind: "O",
      before: ["1", "a"],
      after: ["1", UNCHANGED_TOAST],
    });
    expect(decodePgOutput(new Frame().byte("U").int32(16384).byte("N").tuple(["1", null]).build())).toEqual({
      tag: "update",
      relationOid: 16384,
      after: ["1", null],
    });
    expect(decodePgOutput(new Frame().byte("D").int32(16384).byte("K").tuple(["1", null]).build())).toEqual({
      tag: "delete",
      relationOid: 16384,
      beforeKind: "K",
      before: ["1", null],
    });
    expect(decodePgOutput(new Frame().byte("T").int32(2).byte(3).int32(1).int32(2).build())).toEqual({
      tag: "truncate",
      relationOids: [1, 2],
      cascade: true,
      restartIdentity: true,
    });
    const message = decodePgOutput(
      new Frame()
        .byte("M")
        .byte(1)
        .int64(0x200n)
        .cstring("tributary-watermark")
        .int32(2)
        .byte("h")
        .byte("i")
        .build(),
    );
    expect(message).toMatchObject({
      tag: "message",
      transactional: true,
      lsn: 0x200,
      prefix: "tributary-watermark",
    });
    expect((message as { content: Buffer }).content.toString()).toBe("hi");
    expect(
      decodePgOutput(new Frame().byte("C").byte(0).int64(0x300n).int64(0x310n).int64(0n).build()),
    ).toEqual({
      tag: "commit",
      commitLsn: 0x300,
      endLsn: 0x310,
      commitTimeMs: 946_684_800_000,
    });
  });
});

describe("PostgreSQL text values as Debezium values", () => {
  it("converts timestamps, dates and times at microsecond precision", () => {
    expect(timestamptzIso("2024-05-01 10:00:00.123456+00")).toBe("2024-05-01T10:00:00.123456Z");
    expect(timestamptzIso("2024-05-01 10:00:00+00")).toBe("2024-05-01T10:00:00Z");
    expect(timestamptzIso("2024-05-01 12:00:00.5+02")).toBe("2024-05-01T10:00:00.500000Z");
    expect(timestampMicros("1970-01-01 00:00:01.000001")).toBe(1_000_001);
    expect(timestampMicros("2024-05-01 10:00:00.5")).toBe(Date.UTC(2024, 4, 1, 10) * 1000 + 500_000);
    expect(timestampMicros("0044-03-15 12:00:00 BC")).toBeLessThan(timestampMicros("0001-01-01 00:00:00"));
    expect(dateDays("1970-01-02")).toBe(1);
    expect(dateDays("1969-12-31")).toBe(-1);
    expect(timeMicros("00:00:01.25")).toBe(1_250_000);
  });

  it("parses array literals with quotes, escapes, NULL and nesting", () => {
    expect(parseArrayLiteral("{1,2,NULL}")).toEqual(["1", "2", null]);
    expect(parseArrayLiteral('{"a b","c\\"d",e}')).toEqual(["a b", 'c"d', "e"]);
    expect(parseArrayLiteral("{{1,2},{3,4}}")).toEqual([
      ["1", "2"],
      ["3", "4"],
    ]);
    expect(parseArrayLiteral("{}")).toEqual([]);
    expect(parseArrayLiteral("[0:1]={7,8}")).toEqual(["7", "8"]);
  });
});

describe("confirmed LSN follows Kafka's acknowledgements", () => {
  // A stand-in producer whose sends complete when the test says so: the order of acknowledgement
  // and confirmation is what is tested here; the integration tests do it against real Kafka.
  function controlledProducer() {
    const sends: { count: number; ack: () => void; fail: (e: Error) => void }[] = [];
    const producer = {
      sendBatch: ({ topicMessages }: { topicMessages: { messages: unknown[] }[] }) =>
        new Promise<void>((resolve, reject) => {
          const count = topicMessages.reduce((n, t) => n + t.messages.length, 0);
          sends.push({ count, ack: resolve, fail: reject });
        }),
    } as unknown as Producer;
    return { producer, sends };
  }
  const tick = () => new Promise((resolve) => setImmediate(resolve));

  it("confirms a commit only after every event before it is acknowledged, one batch in flight", async () => {
    const { producer, sends } = controlledProducer();
    const confirmed: number[] = [];
    const changes = new ChangeProducer(producer, 3, {
      acked: () => undefined,
      confirmed: (lsn) => confirmed.push(lsn),
      transactionAcked: () => undefined,
    });
    const record = { topic: "t", key: "k", value: "v" };
    changes.push(record);
    changes.push(record);
    changes.mark(100, 0);
    changes.push(record);
    changes.push(record);
    changes.mark(200, 0);
    await tick();
    expect(sends.map((s) => s.count)).toEqual([3]);
    expect(confirmed).toEqual([]);
    sends[0]!.ack();
    await tick();
    // The first transaction (2 events) is acknowledged whole; the second only in part.
    expect(confirmed).toEqual([100]);
    expect(sends.map((s) => s.count)).toEqual([3, 1]);
    sends[1]!.ack();
    await tick();
    expect(confirmed).toEqual([100, 200]);
    await changes.drained();
  });

  it("confirms nothing more once a send failed", async () => {
    const { producer, sends } = controlledProducer();
    const confirmed: number[] = [];
    const changes = new ChangeProducer(producer, 10, {
      acked: () => undefined,
      confirmed: (lsn) => confirmed.push(lsn),
      transactionAcked: () => undefined,
    });
    const failures: unknown[] = [];
    changes.onFailure((error) => failures.push(error));
    changes.push({ topic: "t", key: null, value: "v" });
    changes.mark(100, 0);
    await tick();
    sends[0]!.fail(new Error("broker gone"));
    await tick();
    expect(confirmed).toEqual([]);
    expect(failures).toHaveLength(1);
    await expect(changes.drained()).rejects.toThrow("broker gone");
  });
});

describe("connector configuration", () => {
  it("reads the controller's variables with their defaults", () => {
    const config = parseCdcConfig([], {
      TRIBUTARY_CDC_NAME: "shop/orders",
      TRIBUTARY_CDC_PG_HOST: "db",
      TRIBUTARY_CDC_PG_DATABASE: "shop",
      TRIBUTARY_CDC_PG_USER: "cdc",
      TRIBUTARY_CDC_PUBLICATION: "tributary_shop_orders",
      TRIBUTARY_CDC_SLOT: "tributary_shop_orders",
      TRIBUTARY_CDC_TOPIC_PREFIX: "shop",
      TRIBUTARY_CDC_KAFKA_BOOTSTRAP: "k1:9092, k2:9092",
      TRIBUTARY_CDC_TABLES_INCLUDE: "public.orders, sales.*",
      TRIBUTARY_CDC_BEFORE_IMAGES: "false",
    });
    expect(config).toMatchObject({
      pgPort: 5432,
      pgSslMode: "prefer",
      tablesInclude: ["public.orders", "sales.*"],
      beforeImages: false,
      partitions: 1,
      replicationFactor: 3,
      format: "json",
      snapshotMode: "initial",
      snapshotToTopics: true,
      fetchSize: 10_240,
      heartbeatIntervalSeconds: 10,
      maxBatchSize: 2048,
      kafkaBootstrap: ["k1:9092", "k2:9092"],
      stateDir: "/var/lib/tributary/cdc",
      httpPort: 8080,
    });
  });
});
