// Runs every scenario file under scenarios/ against every driver it applies to; any failed step
// fails the test with the scenario's own report.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/base/errors.js";
import type { Machine } from "../../src/machine/machine.js";
import { loadScenario } from "../../src/scenario/load.js";
import { type MachineScenarioPlan, machineHost } from "../../src/scenario/machine-host.js";
import { formatScenarioResult } from "../../src/scenario/report.js";
import { applicableDrivers, runScenario } from "../../src/scenario/run.js";

const ROOT = join(import.meta.dirname, "../..");
const DIR = join(ROOT, "scenarios");

function scenarioFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...scenarioFiles(full));
    else if (/\.(ya?ml|json)$/.test(name)) out.push(relative(ROOT, full));
  }
  return out;
}

const files = scenarioFiles(DIR);

describe("scenarios/", () => {
  it("holds scenario files", () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const file of files) {
    let scenario: ReturnType<typeof loadScenario<Machine, MachineScenarioPlan>>;
    try {
      scenario = loadScenario(readFileSync(join(ROOT, file), "utf8"), file, machineHost);
    } catch (e) {
      it(`${file} is valid`, () => {
        expect.fail(e instanceof InputError ? e.format() : String(e));
      });
      continue;
    }
    const drivers = applicableDrivers(scenario, machineHost);
    it(`${file} applies to at least one available driver`, () => {
      expect(drivers.length).toBeGreaterThan(0);
    });
    for (const driver of drivers) {
      it(`${file} [${driver}]`, () => {
        const r = runScenario(scenario, machineHost, { driver });
        if (r.status !== "pass") expect.fail(formatScenarioResult(r));
        expect(r.steps.every((s) => s.status === "pass")).toBe(true);
      });
    }
  }
});
