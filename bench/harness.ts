// Shared shape of the benchmark files: each `bench/*.bench.ts` exports `suite`, a title and a
// function that adds tinybench tasks. `bench/run.ts` runs them all and prints ns/op.

import type { Bench } from "tinybench";

export interface BenchSuite {
  readonly title: string;
  /** Adds tasks to `bench`. Setup (machines, tables) happens here, outside the timed functions. */
  readonly build: (bench: Bench) => void | Promise<void>;
}
