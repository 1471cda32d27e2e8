import { describe, expect, it } from "vitest";
import { Reason } from "../../src/api/conditions.js";
import { bootstrapServers } from "../../src/controllers/topic/kafka.js";
import { createTopicController } from "../../src/controllers/topic/reconcile.js";
import { parseBootstrap } from "../../src/kafka/admins.js";
import { ReconcileError } from "../../src/operator/controller.js";

describe("the Topic controller's Kafka cluster", () => {
  it("takes spec.kafka's brokers, else the default the controller was built with", () => {
    const spec = { bootstrapServers: ["spec:9092"] } as Parameters<typeof bootstrapServers>[0];
    expect(bootstrapServers(spec, ["default:9092"], "Topic web/clicks")).toEqual(["spec:9092"]);
    expect(bootstrapServers(undefined, ["default:9092"], "Topic web/clicks")).toEqual(["default:9092"]);
  });

  it("reports a Topic without spec.kafka on an operator without a default as KafkaUnavailable", () => {
    let error: unknown;
    try {
      bootstrapServers(undefined, [], "Topic web/clicks");
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(ReconcileError);
    expect((error as ReconcileError).reason).toBe(Reason.KafkaUnavailable);
    expect((error as ReconcileError).message).toMatch(/^Topic web\/clicks: .*--kafka-bootstrap/);
  });

  it("parses --kafka-bootstrap, dropping blanks", () => {
    expect(parseBootstrap(" a:1, ,b:2 ")).toEqual(["a:1", "b:2"]);
    expect(parseBootstrap(undefined)).toEqual([]);
  });

  it("has a stop hook that disconnects its admin clients, and is harmless before any reconcile", async () => {
    const controller = createTopicController({ defaultBootstrap: ["127.0.0.1:1"] });
    expect(controller.stop).toBeTypeOf("function");
    await expect(controller.stop?.()).resolves.toBeUndefined();
  });
});
