// Expectations on the CPU side: a process (its state, fault counters, address space, memory)
// and an address space (its references, VMAs, PASID, memory). Memory is read through the page
// table as it is, without faulting anything in: a page not mapped reads as null.

import { IOMMU_PASID_INVALID } from "../../iommu/constants.js";
import type { Machine } from "../../machine/machine.js";
import type { MmStruct } from "../../mm/mm-types.js";
import type { Process } from "../../mm/process.js";
import { TASK } from "./process.js";
import {
  Bytes,
  COUNT,
  int,
  JSON_VALUE,
  object,
  type PropSpec,
  param,
  type SubjectSpec,
  TEXT,
  VIEW,
} from "./types.js";

const MEMORY = { kind: "memory" } as const;

/**
 * The bytes at `addr` of `mm` as its page table maps them, or null when a page of the range is
 * not mapped (or the address space is gone). No fault is taken.
 */
export function readMapped(mm: MmStruct, addr: bigint, len: number): Bytes | null {
  if (mm.state === "freed") return null;
  const out = new Uint8Array(len);
  let done = 0;
  let va = addr;
  while (done < len) {
    const ppn = mm.pgtable.lookupPpn(Number(va >> 12n));
    if (ppn < 0) return null;
    const off = Number(va & 0xfffn);
    const n = Math.min(4096 - off, len - done);
    out.set(mm.sys.memory.readBytes((BigInt(ppn) << 12n) + BigInt(off), n), done);
    done += n;
    va += BigInt(n);
  }
  return new Bytes(out);
}

/** The `memory` property: reads each address the expectation names, as long as it expects. */
function memoryProp(toMm: (m: Machine, s: unknown) => MmStruct | null): PropSpec<Machine> {
  return {
    type: MEMORY,
    doc: "address → the bytes there (as many as expected; null: not mapped), read through the page table without faulting",
    get: () => ({}),
    getFor: (m, s, expected) => {
      const mm = toMm(m, s);
      const out: Record<string, Bytes | null> = {};
      for (const [k, want] of Object.entries(expected as Record<string, Bytes | null>)) {
        const len = want === null ? 1 : want.data.length;
        out[k] = mm === null || len === 0 ? null : readMapped(mm, BigInt(k), len);
      }
      return out;
    },
  };
}

/** The PASID of `mm` (mm->iommu_mm->pasid), or IOMMU_PASID_INVALID before any SVA bind. */
function mmPasid(m: Machine, mm: MmStruct | null): number {
  return mm === null || mm.state === "freed" ? IOMMU_PASID_INVALID : m.core.mmGetPasid(mm);
}

export const CPU_SUBJECTS: readonly SubjectSpec<Machine>[] = [
  {
    name: "task",
    doc: "a process",
    arg: TASK,
    props: {
      pid: { type: COUNT, doc: "its pid", get: (_m, s) => (s as Process).pid },
      comm: { type: TEXT, doc: "its name", get: (_m, s) => (s as Process).comm },
      state: {
        type: TEXT,
        doc: "running, zombie (exited, not waited for) or reaped",
        get: (_m, s) => (s as Process).state,
      },
      exit_code: {
        type: int(0, 255),
        doc: "the exit code, or null while running",
        get: (_m, s) => (s as Process).exitCode,
      },
      min_flt: {
        type: COUNT,
        doc: "minor page faults the process took",
        get: (_m, s) => (s as Process).minFlt,
      },
      maj_flt: {
        type: COUNT,
        doc: "major page faults",
        get: (_m, s) => (s as Process).majFlt,
      },
      mm: {
        type: object("mm"),
        doc: "its address space (a $name, or a partial view), null once it exited",
        get: (_m, s) => (s as Process).mm,
      },
      pasid: {
        type: int(0, 0xffff_ffff),
        doc: "its mm's PASID (mm_get_enqcmd_pasid), 0xffffffff (IOMMU_PASID_INVALID) before any SVA bind or after exit",
        get: (m, s) => mmPasid(m, (s as Process).mm),
      },
      memory: memoryProp((_m, s) => (s as Process).mm),
      view: VIEW,
    },
  },
  {
    name: "mm",
    doc: "an address space (a process's name means its mm)",
    arg: param(object("mm")),
    props: {
      state: {
        type: TEXT,
        doc: "live, exited (exit_mmap ran: no pages) or freed (__mmdrop ran)",
        get: (_m, s) => (s as MmStruct).state,
      },
      users: {
        type: COUNT,
        doc: "mm_users: users of the address space (tasks, mmget)",
        get: (_m, s) => (s as MmStruct).users,
      },
      count: {
        type: COUNT,
        doc: "mm_count: references to the structure (the users' one, mmgrab: SVA domains, notifiers)",
        get: (_m, s) => (s as MmStruct).count,
      },
      pasid: {
        type: int(0, 0xffff_ffff),
        doc: "mm->iommu_mm->pasid, or 0xffffffff (IOMMU_PASID_INVALID)",
        get: (m, s) => mmPasid(m, s as MmStruct),
      },
      notifiers: {
        type: COUNT,
        doc: "mmu notifier subscriptions (an IOMMU driver's SVA domain holds one)",
        get: (_m, s) => (s as MmStruct).notifiers.length,
      },
      vmas: {
        type: JSON_VALUE,
        doc: "its VMAs as {start, end, perms, …} (exact list)",
        get: (_m, s) => (s as MmStruct).vmas.toArray().map((v) => v.toJSON()),
      },
      memory: memoryProp((_m, s) => s as MmStruct),
      view: VIEW,
    },
  },
];
