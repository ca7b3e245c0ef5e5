// Every shipped scenario that runs on the RISC-V driver, with the isolation oracle attached at
// boot: each still passes (the oracle changes nothing), and the oracle finds something only
// where a scenario demonstrates a window Linux leaves open on purpose — lazy invalidation's flush
// window and supervisor SVA's unflushed kernel mappings, each listed with its exact count.
// Everything else is correct software: nothing at all to find.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { attachOracle, type IsolationOracle } from "../../src/check/oracle.js";
import type { Machine } from "../../src/machine/machine.js";
import type { ScenarioHost } from "../../src/scenario/host.js";
import { loadScenario } from "../../src/scenario/load.js";
import { type MachineScenarioPlan, machineHost } from "../../src/scenario/machine-host.js";
import { formatScenarioResult } from "../../src/scenario/report.js";
import { applicableDrivers, runScenario } from "../../src/scenario/run.js";
import { ROOT, scenarioFiles } from "../scenario/scenario-files.js";

/** Scenarios known to show a stale window, with the findings they must produce. */
const DEMONSTRATIONS: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  "scenarios/demo/story.yaml": { "stale-iotlb: lazy flush window": 1 },
  "scenarios/devices/dma-api-lazy.yaml": { "stale-iotlb: lazy flush window": 2 },
  "scenarios/seeds/003-supervisor-pasid.yaml": { "stale-iotlb: kernel mapping not flushed": 3 },
};

/** The machine host, with an oracle attached to every machine it boots. */
function watchedHost(oracles: IsolationOracle[]): ScenarioHost<Machine, MachineScenarioPlan> {
  return {
    ...machineHost,
    boot(plan, opts) {
      const m = machineHost.boot(plan, opts);
      oracles.push(attachOracle(m));
      return m;
    },
  };
}

describe("scenarios/ under the isolation oracle", () => {
  const files = scenarioFiles();
  let ran = 0;
  for (const file of files) {
    const text = readFileSync(join(ROOT, file), "utf8");
    const scenario = loadScenario(text, file, machineHost);
    if (!applicableDrivers(scenario, machineHost).includes("riscv")) continue;
    ran++;
    it(`${file} [riscv]`, () => {
      const oracles: IsolationOracle[] = [];
      const r = runScenario(scenario, watchedHost(oracles), { driver: "riscv" });
      if (r.status !== "pass") expect.fail(formatScenarioResult(r));
      expect(oracles).toHaveLength(1);
      const oracle = oracles[0]!;
      const known = DEMONSTRATIONS[file];
      if (known !== undefined) {
        expect(oracle.counts().byCategory).toEqual(known);
        return;
      }
      // Every other scenario is correct software under strict invalidation: any finding (even a
      // lazy window nobody listed above) would be a bug in the model or a false positive.
      expect(oracle.findings().map((f) => f.detail)).toEqual([]);
      expect(oracle.verdict().isolated).toBe(true);
      expect(oracle.verdict().p2pBypasses).toBe(0);
    });
  }
  it("runs the RISC-V scenarios, the demonstrations among them", () => {
    expect(ran).toBeGreaterThan(10);
    for (const f of Object.keys(DEMONSTRATIONS)) expect(files).toContain(f);
  });
});
