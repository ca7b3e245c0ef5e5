// Expectations on an IOMMU instance (the records its hardware queued: faults, page requests;
// the page responses its driver sent) and on an SVA bond.

import type { Json } from "../../base/json.js";
import type { Device } from "../../bus/device.js";
import type { FaultLogEntry } from "../../drivers/riscv/iommu.js";
import { FAULT_CAUSE_NAMES } from "../../drivers/riscv/iommu-bits.js";
import { TTYP } from "../../hw/riscv-iommu/faults.js";
import type { IommuSva } from "../../iommu/sva.js";
import { describedName, type Machine, type MachineIommu } from "../../machine/machine.js";
import { COUNT, int, JSON_VALUE, object, param, type SubjectSpec, VIEW } from "./types.js";

const TTYP_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(TTYP).map(([name, v]) => [v, name]),
);

const RESPONSE_CODES = ["SUCCESS", "INVALID", "FAILURE"] as const;

/** A device's description name from its kernel name (as driver logs keep it). */
function deviceName(m: Machine, kernelName: string | null): string | null {
  if (kernelName === null) return null;
  for (const d of m.description.devices) {
    const dev = m.device(d.name);
    if (dev?.name === kernelName) return describedName(dev);
  }
  return kernelName;
}

/** One fault-queue record as the hardware wrote it, with the cause's code name. */
function faultView(m: Machine, e: FaultLogEntry): Json {
  const r = e.record;
  return {
    code: FAULT_CAUSE_NAMES[r.cause] ?? null,
    cause: r.cause,
    ttyp: TTYP_NAMES[r.ttyp] ?? r.ttyp,
    device: deviceName(m, e.device),
    did: `0x${r.did.toString(16)}`,
    pasid: r.pv ? r.pid : null,
    priv: r.priv,
    iotval: `0x${r.iotval.toString(16)}`,
    iotval2: `0x${r.iotval2.toString(16)}`,
  };
}

function hardwareView(i: MachineIommu): { [k: string]: Json } | null {
  const v = i.riscv?.hardware.toJSON();
  return v !== undefined && v !== null && typeof v === "object" && !Array.isArray(v) ? v : null;
}

/** Records the page-request queue took (riscv), or the requests the mock was told to raise. */
function pageRequests(i: MachineIommu): number {
  if (i.mock !== null) return i.mock.log.filter((l) => l.startsWith("trigger_iopf ")).length;
  const queues = hardwareView(i)?.queues as { pq?: { queued?: number } } | undefined;
  return queues?.pq?.queued ?? 0;
}

export const IOMMU_SUBJECTS: readonly SubjectSpec<Machine>[] = [
  {
    name: "iommu",
    doc: "an IOMMU instance",
    arg: param(object("iommu")),
    props: {
      faults: {
        type: JSON_VALUE,
        doc: "fault-queue records the driver took, oldest first, as {code (the cause's name: read_page_fault, pdt_entry_not_valid, …), cause, ttyp, device, did, pasid, priv, iotval, iotval2} (exact list; none on the mock, which has no hardware)",
        get: (m, s) =>
          ((s as MachineIommu).riscv?.iommu.faultLog ?? []).map((e) => faultView(m, e)),
      },
      fault_count: {
        type: COUNT,
        doc: "fault records the driver has seen",
        get: (_m, s) => (s as MachineIommu).riscv?.iommu.faultsSeen ?? 0,
      },
      page_requests: {
        type: COUNT,
        doc: "page requests: records the page-request queue took (riscv), requests raised with trigger_iopf (mock)",
        get: (_m, s) => pageRequests(s as MachineIommu),
      },
      page_responses: {
        type: JSON_VALUE,
        doc: "the mock driver's page_response calls as {dev, pasid, grpid, code: SUCCESS|INVALID|FAILURE} (exact list); on riscv see the devices' PRI counters (engine)",
        get: (m, s) =>
          ((s as MachineIommu).mock?.pageResponses ?? []).map((r) => ({
            dev: deviceName(m, r.dev),
            pasid: r.pasid,
            grpid: r.grpid,
            code: RESPONSE_CODES[r.code],
          })),
      },
      view: {
        type: JSON_VALUE,
        doc: "its JSON view: the iommu_device, and the RISC-V hardware's registers and queues",
        get: (_m, s) => {
          const i = s as MachineIommu;
          return { instance: i.instance.toJSON(), hardware: hardwareView(i) };
        },
      },
    },
  },
  {
    name: "sva",
    doc: "an SVA bond bound with as:",
    arg: param(object("sva")),
    props: {
      users: {
        type: COUNT,
        doc: "unbalanced binds of this (device, mm)",
        get: (_m, s) => (s as IommuSva).users,
      },
      pasid: {
        type: int(0, 0xffff_ffff),
        doc: "iommu_sva_get_pasid",
        get: (m, s) => m.core.svaGetPasid(s as IommuSva),
      },
      domain: {
        type: object("domain"),
        doc: "its SVA domain",
        get: (_m, s) => (s as IommuSva).domain,
      },
      dev: {
        type: object("device"),
        doc: "the bound device",
        get: (_m, s) => (s as IommuSva).dev as Device | null,
      },
      view: VIEW,
    },
  },
];
