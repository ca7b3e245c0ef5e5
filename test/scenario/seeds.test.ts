// scenarios/seeds/: one runnable example per seed review thread (000–004), each opening with a
// two- or three-line comment naming the design the thread discusses and what the scenario shows
// (scenarios.test.ts runs them on every driver they apply to).

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadScenario } from "../../src/scenario/load.js";
import { machineHost } from "../../src/scenario/machine-host.js";
import { applicableDrivers } from "../../src/scenario/run.js";

const DIR = join(import.meta.dirname, "../../scenarios/seeds");
const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

describe("scenarios/seeds", () => {
  it("has an example for every seed thread", () => {
    const seeds = new Set(files.map((f) => f.slice(0, 3)));
    expect([...seeds]).toEqual(["000", "001", "002", "003", "004"]);
  });

  it.each(files)("%s opens with the thread's design and what it shows", (f) => {
    const text = readFileSync(join(DIR, f), "utf8");
    const head = text
      .split("\n")
      .filter((_, i, all) => all.slice(0, i + 1).every((l) => l.startsWith("#")));
    expect(head.length).toBeGreaterThanOrEqual(2);
    expect(head.length).toBeLessThanOrEqual(3);
    expect(head[0]).toMatch(new RegExp(`^# Seed ${f.slice(0, 3)} \\(`));
    const s = loadScenario(text, f, machineHost);
    expect(s.name).toMatch(new RegExp(`^seed ${f.slice(0, 3)}: `));
    expect(applicableDrivers(s, machineHost).length).toBeGreaterThan(0);
  });
});
