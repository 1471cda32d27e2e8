import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts", "test/integration/**/*.test.ts", "src/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Integration tests share one API server, one Kafka cluster and one PostgreSQL; each test
    // file isolates itself with its own namespace, topic or database, so files may run in
    // parallel, but this machine has two cores: keep the fan-out small.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
