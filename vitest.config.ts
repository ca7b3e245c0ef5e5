import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    reporters: ["default", "./tools/closing-line-reporter.ts"],
    setupFiles: ["./tools/vitest-setup.ts"],
    pool: "threads",
    // The simulator keeps no global state (one SimContext per machine), so test files can share
    // a worker's module cache: this cuts the run from minutes of re-imports to seconds.
    isolate: false,
    testTimeout: 60_000,
  },
});
