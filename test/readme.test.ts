// The README's example scenario is real: it must validate and pass as written.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadScenario } from "../src/scenario/load.js";
import { machineHost } from "../src/scenario/machine-host.js";
import { formatScenarioResult } from "../src/scenario/report.js";
import { applicableDrivers, runScenario } from "../src/scenario/run.js";

const readme = readFileSync(join(import.meta.dirname, "../README.md"), "utf8");

describe("README", () => {
  it("keeps its two set-up commands", () => {
    expect(readme).toContain("    npm ci && npm start\n");
    expect(readme).toContain("    npm ci && npm test\n");
  });

  it("its example scenario passes on every driver it applies to", () => {
    const yaml = /```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(yaml).toBeDefined();
    const scenario = loadScenario(yaml!, "README.md", machineHost);
    const drivers = applicableDrivers(scenario, machineHost);
    expect(drivers.length).toBeGreaterThan(0);
    for (const driver of drivers) {
      const r = runScenario(scenario, machineHost, { driver });
      expect(r.status, formatScenarioResult(r)).toBe("pass");
      expect(r.steps.length).toBe(5);
    }
  });
});
