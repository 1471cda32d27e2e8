import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: "main",
          globalSetup: ["test/support/global-setup.ts"],
          include: ["test/unit/**/*.test.ts", "test/integration/**/*.test.ts", "src/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // Integration tests share one API server, one Kafka cluster and one PostgreSQL; each
          // test file isolates itself with its own namespace, topic or database, so files may run
          // in parallel, but this machine has two cores: keep the fan-out small.
          maxWorkers: 2,
          fileParallelism: true,
        },
      },
      {
        extends: true,
        test: {
          // helm install on a real node (test/e2e/cluster.ts says which): pods of the project's
          // image run the data plane. One file at a time; it runs after the main project in npm test.
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          testTimeout: 600_000,
          hookTimeout: 600_000,
          fileParallelism: false,
          maxWorkers: 1,
        },
      },
    ],
  },
});
