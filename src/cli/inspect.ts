// `iommu-sim inspect FILE [--step N] [--domain ID] [--driver NAME] [--json]`: runs the scenario up
// to step N (default: its last) and shows the machine as it is then (src/machine/inspect.ts).

import { InputError } from "../base/errors.js";
import { formatInspect, inspectJSON } from "../machine/inspect.js";
import type { Machine } from "../machine/machine.js";
import type { Scenario } from "../scenario/load.js";
import type { MachineScenarioPlan } from "../scenario/machine-host.js";
import { machineHost } from "../scenario/machine-host.js";
import { failureText, runScenario } from "../scenario/run.js";
import type { InspectOpts } from "./program.js";

export function inspect(
  scenario: Scenario<Machine, MachineScenarioPlan>,
  opts: InspectOpts,
): { text: string; code: number } {
  const total = scenario.steps.length;
  const step = opts.step ?? total;
  if (step > total) {
    throw new InputError(
      `--step: ${step} is past the end; the scenario has ${total} step${total === 1 ? "" : "s"} (0 = just booted)`,
      { file: scenario.file },
    );
  }
  if (
    opts.driver !== undefined &&
    scenario.onlyDrivers !== undefined &&
    !scenario.onlyDrivers.includes(opts.driver)
  ) {
    throw new InputError(
      `--driver: the scenario runs only on ${scenario.onlyDrivers.join(", ")}, not on ${opts.driver}`,
      { file: scenario.file },
    );
  }
  let machine: Machine | null = null;
  const r = runScenario(scenario, machineHost, {
    ...(opts.driver === undefined ? {} : { driver: opts.driver }),
    stopAfter: step,
    onBoot: (m) => {
      machine = m;
    },
  });
  const m = machine as Machine | null;
  if (m === null) throw new Error("the scenario's machine did not boot");
  const failed = r.steps.find((s) => s.status === "fail");
  const last = r.steps.filter((s) => s.status !== "skipped").at(-1);
  const view = { ...(opts.domain === undefined ? {} : { domain: opts.domain }) };
  if (opts.json) {
    const doc = {
      file: r.file,
      driver: r.driver,
      step,
      steps: total,
      status: r.status,
      ...(failed
        ? {
            failure: {
              step: failed.step,
              call: failed.call,
              message: failed.failure?.message ?? "",
            },
          }
        : {}),
      state: inspectJSON(m, view),
    };
    return { text: `${JSON.stringify(doc, null, 2)}\n`, code: failed ? 1 : 0 };
  }
  const head: string[] = [];
  head.push(
    step === 0 || last === undefined
      ? `${r.file} [${r.driver}]: just booted (step 0 of ${total})`
      : `${r.file} [${r.driver}] after step ${last.step} of ${total}: ${last.call}${last.errno ? ` = ${failureText(last.errno)}` : ""}`,
  );
  if (failed) {
    head.push(
      `step ${failed.step} failed: ${failed.failure?.message ?? "?"} — the machine is shown as that step left it`,
    );
  }
  return { text: `${head.join("\n")}\n\n${formatInspect(m, view)}`, code: failed ? 1 : 0 };
}
