// Properties of the scenario engine on real machines, over random call sequences:
// - record → replay: executing steps directly and writing what happened (errno, returned value,
//   WARN sites) back as expectations gives a scenario that passes, on every driver — the
//   validator, runner, errno/returns/warns checks and bindings agree with direct calls;
// - determinism: the same scenario gives byte-identical JSON results.

import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import type { Machine } from "../../src/machine/machine.js";
import { loadScenario } from "../../src/scenario/load.js";
import { machineHost } from "../../src/scenario/machine-host.js";
import { scenarioResultJSON } from "../../src/scenario/report.js";
import { runScenario } from "../../src/scenario/run.js";
import { type RunEnv, resolve } from "../../src/scenario/values.js";
import { isResult } from "../../src/scenario/vocabulary/types.js";

// pci-no-acs: mf0/mf1 share a group, iso0 and nic0 (with its port) do not.
const DEVS = ["mf0", "mf1", "iso0", "nic0"] as const;
const dev = fc.constantFrom(...DEVS);
const dom = fc.nat({ max: 2 });
const pasid = fc.constantFrom(1, 2, 5);
const owner = fc.constantFrom("vfio", "iommufd", "null");

/** One step as YAML (domain k is bound as dk by the alloc steps that precede every sequence). */
const stepArb: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(dom, dev).map(([d, v]) => `iommu_attach_device: {domain: d${d}, dev: ${v}}`),
  fc.tuple(dom, dev).map(([d, v]) => `iommu_detach_device: {domain: d${d}, dev: ${v}}`),
  fc.tuple(dom, dev).map(([d, v]) => `iommu_attach_group: {domain: d${d}, group: ${v}}`),
  dev.map((v) => `iommu_detach_group: {domain: null, group: ${v}}`),
  fc.tuple(dev, owner).map(([v, o]) => `iommu_group_claim_dma_owner: {group: ${v}, owner: ${o}}`),
  fc.tuple(dev, owner).map(([v, o]) => `iommu_device_claim_dma_owner: {dev: ${v}, owner: ${o}}`),
  dev.map((v) => `iommu_group_release_dma_owner: {group: ${v}}`),
  dev.map((v) => `iommu_device_release_dma_owner: {dev: ${v}}`),
  dev.map((v) => `iommu_device_use_default_domain: {dev: ${v}}`),
  dev.map((v) => `iommu_device_unuse_default_domain: {dev: ${v}}`),
  fc
    .tuple(dom, dev, pasid)
    .map(([d, v, p]) => `iommu_attach_device_pasid: {domain: d${d}, dev: ${v}, pasid: ${p}}`),
  fc
    .tuple(dom, dev, pasid)
    .map(([d, v, p]) => `iommu_detach_device_pasid: {domain: d${d}, dev: ${v}, pasid: ${p}}`),
  dev.map((v) => `iommu_get_domain_for_dev: {dev: ${v}}`),
  dev.map((v) => `iommu_alloc_global_pasid: {dev: ${v}}`),
);

const PRELUDE = [
  "  - iommu_paging_domain_alloc: {dev: mf0}\n    as: d0",
  "  - iommu_paging_domain_alloc: {dev: iso0}\n    as: d1",
  "  - iommu_paging_domain_alloc: {dev: nic0}\n    as: d2",
];

function scenarioText(steps: readonly string[]): string {
  return `machine: pci-no-acs\nsteps:\n${[...PRELUDE, ...steps.map((s) => `  - ${s}`)].join("\n")}\n`;
}

/** Runs the steps directly and writes what each did as its expectations. */
function record(text: string, driver: string): string {
  const scenario = loadScenario(text, "p.yaml", machineHost);
  const m = machineHost.boot(scenario.machine, { seed: 1, driver });
  const env: RunEnv<Machine> = { m, vocabulary: machineHost.vocabulary, bindings: new Map() };
  const lines = text.split("\n").slice(0, 2);
  for (const step of scenario.steps) {
    if (step.kind !== "call") throw new Error("only calls are generated");
    const w0 = m.ctx.warnings.count;
    const args: Record<string, unknown> = {};
    for (const [k, c] of step.args) args[k] = resolve(c, env);
    const raw = step.fn.call(m, args);
    const value = isResult(raw) ? (raw.ok ? raw.value : undefined) : raw;
    if (step.bind !== undefined) env.bindings.set(step.bind, { kind: "domain", value });
    const sites = m.ctx.warnings
      .list()
      .slice(w0)
      .map((w) => w.site);
    const src = text.split("\n")[step.loc.line! - 1]!.trim().slice(2);
    const out = [`  - ${src}`];
    if (step.bind !== undefined) out.push(`    as: ${step.bind}`);
    if (isResult(raw) && !raw.ok) out.push(`    error: ${raw.errno}`);
    else if (step.fn.name === "iommu_get_domain_for_dev") {
      const name = [...env.bindings].find(([, b]) => b.value === value)?.[0];
      const id = (value as { id?: number } | null)?.id;
      out.push(`    returns: ${value === null ? "null" : name ? `$${name}` : `{id: ${id}}`}`);
    } else if (step.fn.name === "iommu_alloc_global_pasid")
      out.push(`    returns: ${value as number}`);
    out.push(`    warns: [${sites.join(", ")}]`);
    lines.push(...out);
  }
  return `${lines.join("\n")}\n`;
}

test.prop([fc.array(stepArb, { minLength: 1, maxLength: 25 }), fc.constantFrom("mock", "riscv")], {
  numRuns: 60,
})("a recorded run replays as a passing scenario", (steps, driver) => {
  const replay = record(scenarioText(steps), driver);
  // Random sequences misuse the API the way a buggy caller would (unbalanced unuse after a
  // claim leaves an owner with owner_cnt 0, as in the kernel): invariants are not the point here.
  const r = runScenario(loadScenario(replay, "replay.yaml", machineHost), machineHost, {
    driver,
    checkInvariants: false,
  });
  if (r.status !== "pass")
    expect.fail(`${replay}\n${JSON.stringify(r.steps.find((s) => s.status === "fail"))}`);
});

test.prop([fc.array(stepArb, { minLength: 1, maxLength: 15 })], { numRuns: 20 })(
  "the same scenario gives identical JSON results",
  (steps) => {
    const text = record(scenarioText(steps), "mock");
    const once = () =>
      JSON.stringify(
        scenarioResultJSON(runScenario(loadScenario(text, "d.yaml", machineHost), machineHost)),
      );
    expect(once()).toBe(once());
  },
);
