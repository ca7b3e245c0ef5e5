import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    reporters: ["default", "./tools/closing-line-reporter.ts"],
    pool: "threads",
    testTimeout: 60_000,
  },
});
