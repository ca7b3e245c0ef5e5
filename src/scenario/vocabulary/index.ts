// The whole scenario vocabulary of a machine: every table, the object kinds, the expect forms.

import type { Machine } from "../../machine/machine.js";
import { ATTACH } from "./attach.js";
import { DEVICE_DMA } from "./device-dma.js";
import { DEVICES } from "./devices.js";
import { DMA_API } from "./dma-api.js";
import { DOMAINS } from "./domains.js";
import { DEVICE_DRIVER_CALLS } from "./drivers.js";
import { DSA } from "./dsa.js";
import { SUBJECTS } from "./expect.js";
import { GROUPS } from "./groups.js";
import { KINDS } from "./kinds.js";
import { MACHINE_ACTIONS } from "./machine.js";
import { MAP } from "./map.js";
import { OWNERSHIP } from "./ownership.js";
import { PASIDS } from "./pasid.js";
import { PROCESSES } from "./process.js";
import { SEEDS } from "./seeds.js";
import { SVA } from "./sva.js";
import type { FunctionSpec, Vocabulary } from "./types.js";

/** The tables in documentation order. */
export const VOCABULARY_AREAS: readonly {
  readonly area: string;
  readonly title: string;
  readonly functions: readonly FunctionSpec<Machine>[];
}[] = [
  { area: "devices", title: "Devices, instances and policy (§2)", functions: DEVICES },
  { area: "groups", title: "Groups (§2.3)", functions: GROUPS },
  {
    area: "domains",
    title: "Domains and default domains (§2.4–§2.6, §3.1)",
    functions: DOMAINS,
  },
  { area: "attach", title: "Attach and detach (§3.3–§3.4)", functions: ATTACH },
  { area: "map", title: "Mapping (§3.5)", functions: MAP },
  { area: "ownership", title: "DMA ownership (§4)", functions: OWNERSHIP },
  { area: "pasid", title: "PASIDs (§5)", functions: PASIDS },
  { area: "sva", title: "SVA and I/O page faults (§6, §7)", functions: SVA },
  {
    area: "process",
    title: "Processes, address spaces and the CPU",
    functions: PROCESSES,
  },
  { area: "dma", title: "The DMA API and kernel memory", functions: DMA_API },
  { area: "device", title: "Device DMA (riscv driver only)", functions: DEVICE_DMA },
  { area: "dsa", title: "The DSA-like engine (riscv driver only)", functions: DSA },
  {
    area: "drivers",
    title: "Device drivers: idxd, the NIC, VFIO and iommufd",
    functions: DEVICE_DRIVER_CALLS,
  },
  {
    area: "seeds",
    title: "Historical APIs: IOASID allocator (§5.3), seed 002, seed 004",
    functions: SEEDS,
  },
  { area: "machine", title: "Machine actions", functions: MACHINE_ACTIONS },
];

export const MACHINE_VOCABULARY: Vocabulary<Machine> = {
  functions: VOCABULARY_AREAS.flatMap((a) => a.functions),
  subjects: SUBJECTS,
  kinds: KINDS,
};
