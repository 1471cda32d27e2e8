import { describe, expect, it } from "vitest";
import { parseOperatorArgs } from "../../src/operator/main.js";

describe("tributary operator flags", () => {
  it("needs the data-plane image from the chart, never a built-in default", () => {
    expect(() => parseOperatorArgs([], {})).toThrow(/--image/);
  });

  it("takes client-go's lease timings, all namespaces and leader election by default", () => {
    const config = parseOperatorArgs(["--image", "tributary:1"], {});
    expect(config).toMatchObject({
      image: "tributary:1",
      namespaces: [],
      leaderElect: true,
      leaseNamespace: "default",
      leaseName: "tributary-operator",
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      healthPort: 8081,
      metricsPort: 8080,
    });
  });

  it("reads the environment the chart sets, and flags win over it", () => {
    const env = {
      TRIBUTARY_IMAGE: "tributary:env",
      TRIBUTARY_WATCH_NAMESPACES: "a, b",
      POD_NAMESPACE: "tributary-system",
      TRIBUTARY_LEADER_ELECT: "false",
    };
    expect(parseOperatorArgs([], env)).toMatchObject({
      image: "tributary:env",
      namespaces: ["a", "b"],
      leaseNamespace: "tributary-system",
      leaderElect: false,
    });
    expect(
      parseOperatorArgs(["--image", "tributary:flag", "--namespaces", "c", "--lease-duration", "4"], env),
    ).toMatchObject({
      image: "tributary:flag",
      namespaces: ["c"],
      leaseDurationMs: 4_000,
    });
  });

  it("refuses malformed values with the flag's name", () => {
    expect(() => parseOperatorArgs(["--image", "x", "--lease-duration", "soon"], {})).toThrow(
      /--lease-duration/,
    );
    expect(() => parseOperatorArgs(["--image", "x", "--leader-elect", "maybe"], {})).toThrow(
      /--leader-elect/,
    );
    expect(() => parseOperatorArgs(["--image", "x", "--unknown"], {})).toThrow();
  });
});
