// The scenario host for real machines: `machine:` is a machine description (or a built-in name,
// or `{extends: name, …overrides}`), booted by buildMachine; the vocabulary is the kernel's.

import { buildMachine } from "../machine/build.js";
import { type MachineDescription, readDescriptionInto } from "../machine/description.js";
import { AVAILABLE_IOMMU_DRIVERS } from "../machine/iommu-options.js";
import { BUILTIN_RESOLVER } from "../machine/load.js";
import type { Machine } from "../machine/machine.js";
import type { MachinePlan, ScenarioHost } from "./host.js";
import { MACHINE_VOCABULARY } from "./vocabulary/index.js";

export interface MachineScenarioPlan extends MachinePlan {
  readonly description: MachineDescription;
}

export const machineHost: ScenarioHost<Machine, MachineScenarioPlan> = {
  vocabulary: MACHINE_VOCABULARY,
  availableDrivers: AVAILABLE_IOMMU_DRIVERS,
  readMachine(node, path, d) {
    const description = readDescriptionInto(node, path, d, BUILTIN_RESOLVER);
    if (!description) return undefined;
    const devices = description.devices.map((x) => x.name);
    return {
      description,
      names: {
        device: [...devices, ...description.pci.map((b) => b.name)],
        device_name: devices,
        bus: ["platform", "pci"],
        iommu: description.iommus.map((i) => i.name),
      },
      drivers: [...new Set(description.iommus.map((i) => i.driver))],
    };
  },
  boot(plan, opts) {
    return buildMachine(plan.description, {
      seed: opts.seed,
      ...(opts.driver === undefined ? {} : { driver: opts.driver }),
      ...(opts.onContext === undefined ? {} : { onContext: opts.onContext }),
    });
  },
};
