// Runs every scenario file under scenarios/ against every driver it applies to; any failed step
// fails the test with the scenario's own report.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/base/errors.js";
import type { Machine } from "../../src/machine/machine.js";
import { loadScenario } from "../../src/scenario/load.js";
import { type MachineScenarioPlan, machineHost } from "../../src/scenario/machine-host.js";
import { formatScenarioResult } from "../../src/scenario/report.js";
import { applicableDrivers, runScenario } from "../../src/scenario/run.js";
import { ROOT, scenarioFiles } from "./scenario-files.js";

const files = scenarioFiles();

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
