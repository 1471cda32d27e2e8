/**
 * IdempotentProducer: after a send whose outcome is unknown, nothing more is sent with the old
 * producer id (whose rolled-back sequence numbers could make the broker take a new batch for a
 * retry of one it already has, and drop it); a new producer, connected first, takes over.
 */
import type { Producer } from "kafkajs";
import { describe, expect, it } from "vitest";
import { IdempotentProducer } from "../../src/dataplane/idempotentProducer.js";

interface Fake {
  id: number;
  connected: boolean;
  sent: unknown[];
  listeners: string[];
  failNextSend: boolean;
  failConnect: boolean;
}

function fakes() {
  const made: Fake[] = [];
  const create = () => {
    const fake: Fake = {
      id: made.length,
      connected: false,
      sent: [],
      listeners: [],
      failNextSend: false,
      failConnect: false,
    };
    made.push(fake);
    return {
      events: { CONNECT: "producer.connect" },
      on: (event: string) => {
        fake.listeners.push(event);
        return () => {};
      },
      connect: async () => {
        if (fake.failConnect) throw new Error(`producer ${fake.id}: connection refused`);
        fake.connected = true;
      },
      disconnect: async () => {
        fake.connected = false;
      },
      send: async (record: unknown) => {
        if (!fake.connected) throw new Error(`producer ${fake.id} is not connected`);
        if (fake.failNextSend) {
          fake.failNextSend = false;
          throw new Error("Connection closed (the answer was lost)");
        }
        fake.sent.push(record);
        return [];
      },
    } as unknown as Producer;
  };
  return { made, create };
}

describe("IdempotentProducer", () => {
  it("sends through a new, connected producer after a failed send, keeping its listeners", async () => {
    const { made, create } = fakes();
    const producer = new IdempotentProducer(create);
    producer.on(producer.events.CONNECT, () => {});
    await producer.connect();
    await producer.send({ topic: "t", messages: [{ value: "a" }] });
    made[0]!.failNextSend = true;
    await expect(producer.send({ topic: "t", messages: [{ value: "b" }] })).rejects.toThrow(
      /answer was lost/,
    );
    await producer.send({ topic: "t", messages: [{ value: "c" }] });
    expect(made).toHaveLength(2);
    expect(made[0]!.connected).toBe(false);
    expect(made[0]!.sent).toHaveLength(1);
    expect(made[1]!.sent).toEqual([{ topic: "t", messages: [{ value: "c" }] }]);
    expect(made[1]!.listeners).toEqual(["producer.connect"]);
  });

  it("fails sends with the connect error while the replacement cannot connect, then recovers", async () => {
    const { made, create } = fakes();
    let kafkaAway = false;
    const producer = new IdempotentProducer(() => {
      const next = create();
      made.at(-1)!.failConnect = kafkaAway;
      return next;
    });
    await producer.connect();
    made[0]!.failNextSend = true;
    kafkaAway = true;
    await expect(producer.send({ topic: "t", messages: [{ value: "x" }] })).rejects.toThrow(
      /answer was lost/,
    );
    await expect(producer.send({ topic: "t", messages: [{ value: "y" }] })).rejects.toThrow(
      /connection refused/,
    );
    // Kafka is back: the same replacement connects and sends; no further producer was made.
    made[1]!.failConnect = false;
    await producer.send({ topic: "t", messages: [{ value: "z" }] });
    expect(made).toHaveLength(2);
    expect(made[1]!.sent).toEqual([{ topic: "t", messages: [{ value: "z" }] }]);
  });
});
