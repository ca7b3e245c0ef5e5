// Prints `tests: N passed, N failed, N skipped` as the very last line of stdout, so CI can tell
// that tests ran and how they went. Module, suite and hook errors and unhandled errors count as
// failures: a file that fails to load must never look like a green run.
import type { Reporter, SerializedError, TestModule } from "vitest/node";

export default class ClosingLineReporter implements Reporter {
  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<SerializedError>,
  ): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const mod of testModules) {
      failed += mod.errors().length;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
      for (const suite of mod.children.allSuites()) {
        failed += suite.errors().length;
      }
    }
    // Written after vitest's own summary, which the default reporter prints first.
    process.stdout.write(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
