// Test machine for device models: RAM, a real RISC-V IOMMU (queues on, a 2-level DDT built by
// hand with the riscv-iommu test fixture), a PCIe hierarchy the test builds, firmware
// enumeration, the IOMMU as the host's translation agent, and the IO bridge. Page tables are
// pgtable PageTables in the same RAM; device contexts and process contexts are written raw.

import { PciHost } from "../../../src/hw/pci/host.js";
import { IoBridge } from "../../../src/hw/pci/io-bridge.js";
import type { PciHostOptions } from "../../../src/hw/pci/options.js";
import {
  PCI_ATS_CTRL,
  PCI_PASID_CTRL,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
} from "../../../src/hw/pci/regs.js";
import type { PciFunction } from "../../../src/hw/pci/topology.js";
import { type PagingMode, SV39, SV39X4 } from "../../../src/hw/pgtable/modes.js";
import { PageTable } from "../../../src/hw/pgtable/page-table.js";
import { PTE_A, PTE_D, PTE_R, PTE_U, PTE_W, PTE_X } from "../../../src/hw/pgtable/pte.js";
import type { IommuCapabilities } from "../../../src/hw/riscv-iommu/capabilities.js";
import {
  atp,
  cmd,
  Ddt,
  dcTa,
  enableQueues,
  type Fault,
  iohgatp,
  Pdt,
  pcTa,
  type Queues,
  R,
  RAM_BASE,
  type Rig,
  rig,
  submit,
  TC,
  takeFaults,
} from "../riscv-iommu/fixture.js";

export { cmd, R, RAM_BASE, submit, TC };

/** User read/write page (requests without a PASID, or non-privileged ones, are User). */
export const URW = PTE_R | PTE_W | PTE_A | PTE_D | PTE_U;
/** Supervisor read/write page. */
export const SRW = PTE_R | PTE_W | PTE_A | PTE_D;
export const UR = PTE_R | PTE_A | PTE_U;
export const UX = PTE_X;

/** iosatp / PC.fsc MODE of Sv39, pdtp MODE of PD8, iohgatp MODE of Sv39x4. */
const MODE_SV39 = 8;
const MODE_PD8 = 1;

export interface Machine {
  readonly r: Rig;
  readonly host: PciHost;
  readonly bridge: IoBridge;
  readonly q: Queues;
  readonly ddt: Ddt;
}

export interface MachineOptions {
  readonly host?: PciHostOptions;
  /** Attach the IOMMU as the host's translation agent (default true). */
  readonly iommu?: boolean;
  readonly caps?: Partial<IommuCapabilities>;
}

/** Builds the machine: `build` adds the hierarchy; firmware enumerates it afterwards. */
export function machine(build: (host: PciHost) => void, o: MachineOptions = {}): Machine {
  const r = rig({ IGS: "WSI", ...o.caps });
  const host = new PciHost(r.ctx, o.host ?? {});
  build(host);
  host.enumerate();
  if (o.iommu !== false) host.setTranslationAgent(r.iommu);
  const q = enableQueues(r);
  const ddt = new Ddt(r, 2);
  ddt.install();
  const bridge = new IoBridge(host, r.mem);
  return { r, host, bridge, q, ddt };
}

/** `ddtp` in Bare mode: no translation, Untranslated requests pass through. */
export function bareMode(m: Machine): void {
  m.r.iommu.write64(R.ddtp, 1n);
}

export function pageTable(m: Machine, mode: PagingMode = SV39): PageTable {
  return PageTable.create(m.r.mem, m.r.frames, mode)!;
}

/** A zeroed RAM page (physical address). */
export function page(m: Machine): bigint {
  return m.r.page();
}

/** Maps one 4 KiB page. */
export function map(pt: PageTable, va: bigint, pa: bigint, perm = URW): void {
  const s = pt.map(va, pa, 4096n, perm);
  if (s !== "ok") throw new Error(`map ${va.toString(16)} failed: ${s}`);
}

export interface DcOptions {
  readonly ats?: boolean;
  readonly pri?: boolean;
  readonly prpr?: boolean;
  readonly pscid?: number;
  readonly t2gpa?: boolean;
}

function tcOf(o: DcOptions, extra: bigint): bigint {
  return (
    TC.V |
    (o.ats ? TC.EN_ATS : 0n) |
    (o.pri ? TC.EN_PRI : 0n) |
    (o.prpr ? TC.PRPR : 0n) |
    (o.t2gpa ? TC.T2GPA : 0n) |
    extra
  );
}

/** The device_id the IOMMU sees for `fn`. */
export function did(m: Machine, fn: PciFunction): number {
  return m.bridge.requesterId(fn);
}

/** DC of `id`: single-stage Sv39 (iosatp) with `pt`, or both stages Bare without `pt`. */
export function dcPaging(m: Machine, id: number, pt: PageTable | null, o: DcOptions = {}): void {
  m.ddt.writeDc(id, {
    tc: tcOf(o, 0n),
    ta: dcTa(o.pscid ?? 1),
    fsc: pt ? atp(MODE_SV39, BigInt(pt.rootPpn)) : 0n,
  });
}

/** DC of `id`: first stage `s1` (Sv39) over G-stage `g` (Sv39x4) with GSCID `gscid`. */
export function dcTwoStage(
  m: Machine,
  id: number,
  s1: PageTable,
  g: PageTable,
  gscid: number,
  o: DcOptions = {},
): void {
  m.ddt.writeDc(id, {
    tc: tcOf(o, 0n),
    iohgatp: iohgatp(MODE_SV39, gscid, BigInt(g.rootPpn)),
    ta: dcTa(o.pscid ?? 1),
    fsc: atp(MODE_SV39, BigInt(s1.rootPpn)),
  });
}

/** A G-stage table mapping guest RAM 1:1 (1 GiB leaf), so first-stage tables are valid GPAs. */
export function identityGStage(m: Machine): PageTable {
  const g = PageTable.create(m.r.mem, m.r.frames, SV39X4)!;
  const s = g.map(RAM_BASE, RAM_BASE, 1n << 30n, URW | PTE_X);
  if (s !== "ok") throw new Error(`G-stage identity map failed: ${s}`);
  return g;
}

/** DC of `id` with a PD8 process directory; returns it for `processContext`. */
export function dcPasid(m: Machine, id: number, o: DcOptions & { dpe?: boolean } = {}): Pdt {
  const pdt = new Pdt(m.r, 1);
  m.ddt.writeDc(id, {
    tc: tcOf(o, TC.PDTV | (o.dpe ? TC.DPE : 0n)),
    fsc: atp(MODE_PD8, pdt.root >> 12n),
  });
  return pdt;
}

/** PC of `pasid`: Sv39 first stage `pt`, PSCID, ENS (supervisor requests allowed), SUM. */
export function processContext(
  pdt: Pdt,
  pasid: number,
  pt: PageTable,
  o: { pscid?: number; ens?: boolean; sum?: boolean } = {},
): void {
  pdt.writePc(
    pasid,
    pcTa({ pscid: o.pscid ?? pasid, ens: o.ens ?? false, sum: o.sum ?? false }),
    atp(MODE_SV39, BigInt(pt.rootPpn)),
  );
}

/** Fault records queued since the last call. */
export function faults(m: Machine): Fault[] {
  return takeFaults(m.r, m.q);
}

/** Page-request queue records since `from`, decoded ("Page-request-queue record"). */
export function pageRequests(
  m: Machine,
  from = 0,
): Array<{
  did: number;
  pid: number | null;
  priv: boolean;
  r: boolean;
  w: boolean;
  l: boolean;
  prgi: number;
  addr: bigint;
}> {
  const out = [];
  const t = m.r.iommu.read32(R.pqt);
  for (let i = from; i !== t; i = (i + 1) % m.q.pqEntries) {
    const a = m.q.pq + BigInt(i) * 16n;
    const h = m.r.mem.read64(a);
    const p = m.r.mem.read64(a + 8n);
    out.push({
      did: Number(h >> 40n),
      pid: ((h >> 32n) & 1n) === 1n ? Number((h >> 12n) & 0xfffffn) : null,
      priv: ((h >> 33n) & 1n) === 1n,
      r: (p & 1n) === 1n,
      w: (p & 2n) === 2n,
      l: (p & 4n) === 4n,
      prgi: Number((p >> 3n) & 0x1ffn),
      addr: (p >> 12n) << 12n,
    });
  }
  return out;
}

/** Software enables PASID (with Execute/Privileged as asked) in `fn`'s PASID capability. */
export function enablePasid(fn: PciFunction, priv = false): void {
  fn.config.write(fn.caps.pasid + PCI_PASID_CTRL, 2, 1 | (priv ? 4 : 0));
}

export function enableAts(fn: PciFunction, on = true): void {
  fn.config.write(fn.caps.ats + PCI_ATS_CTRL, 2, on ? 0x8000 : 0);
}

/** Software allocates `alloc` outstanding page requests and enables PRI. */
export function enablePri(fn: PciFunction, alloc = 32): void {
  fn.config.write(fn.caps.pri + PCI_PRI_ALLOC_REQ, 4, alloc);
  fn.config.write(fn.caps.pri + PCI_PRI_CTRL, 2, 1);
}

/** Invalidates the IOMMU's caches for `id` (IODIR.INVAL_DDT, IOTINVAL.VMA all, IOFENCE.C). */
export function invalidateAll(m: Machine, id: number): void {
  submit(m.r, m.q, cmd.inval_ddt(id), cmd.vma(), cmd.fence());
}
