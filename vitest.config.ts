import { defineConfig } from "vitest/config";

const isolated = ["test/integration/storage-pipeline-stall.test.ts"];

export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: "main",
          globalSetup: ["test/support/global-setup.ts"],
          setupFiles: ["test/support/setup.ts"],
          include: ["test/unit/**/*.test.ts", "test/integration/**/*.test.ts", "src/**/*.test.ts"],
          exclude: [...isolated],
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
          // Tests of stall timeouts between processes: a hung node must be told from a slow one by
          // which timer fires first, so they run alone, not beside other files competing for the
          // two cores. Run after the main project by npm test.
          name: "isolated",
          globalSetup: ["test/support/global-setup.ts"],
          setupFiles: ["test/support/setup.ts"],
          include: isolated,
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
          maxWorkers: 1,
        },
      },
      {
        extends: true,
        test: {
          // helm install on a real node (test/e2e/cluster.ts says which): pods of the project's
          // image run the data plane. One file at a time; it runs after the main project in npm test.
          name: "e2e",
          globalSetup: ["test/e2e/global-setup.ts"],
          setupFiles: ["test/support/setup.ts"],
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
