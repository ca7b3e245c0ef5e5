// Runs every benchmark suite (bench/*.bench.ts, or those named on the command line) and prints
// one line per task: mean ns/op, ops/s and the relative margin of error.
//   npm run bench                 all suites
//   npm run bench -- pgtable      suites whose file name contains "pgtable"
//   npm run bench -- --json       machine-readable results

import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Bench } from "tinybench";
import type { BenchSuite } from "./harness.js";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const json = args.includes("--json");
const filters = args.filter((a) => !a.startsWith("--"));
const files = readdirSync(here)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();

const results: Array<{
  suite: string;
  task: string;
  nsPerOp: number;
  opsPerSec: number;
  rme: number;
}> = [];
for (const file of files) {
  const { suite } = (await import(join(here, file))) as { suite: BenchSuite };
  const bench = new Bench({ time: 500, warmupTime: 100 });
  await suite.build(bench);
  await bench.run();
  for (const task of bench.tasks) {
    const r = task.result;
    if (r?.state !== "completed") {
      console.error(`${suite.title} / ${task.name}: ${r?.state ?? "did not run"}`);
      process.exitCode = 1;
      continue;
    }
    results.push({
      suite: suite.title,
      task: task.name,
      nsPerOp: r.latency.mean * 1e6,
      opsPerSec: r.throughput.mean,
      rme: r.latency.rme,
    });
  }
}

if (json) {
  console.log(JSON.stringify(results, null, 2));
} else {
  for (const r of results) {
    const ns = r.nsPerOp < 10 ? r.nsPerOp.toFixed(2) : r.nsPerOp.toFixed(0);
    console.log(
      `${`${r.suite} / ${r.task}`.padEnd(60)} ${ns.padStart(10)} ns/op  ${Math.round(r.opsPerSec)
        .toLocaleString("en-US")
        .padStart(14)} ops/s  ±${r.rme.toFixed(1)}%`,
    );
  }
}
