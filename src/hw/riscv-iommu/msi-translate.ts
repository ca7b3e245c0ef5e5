// "Process to translate addresses of MSIs" for flat MSI page tables (capabilities.MSI_FLAT):
// recognising a guest physical page as a virtual interrupt file with DC.msi_addr_mask/pattern,
// and translating it through the basic-mode (M=3) MSI PTE. MRIF mode (M=1) is not implemented
// (capabilities.MSI_MRIF is 0), so it is "MSI PTE misconfigured".

import type { DeviceContext } from "./context.js";
import { FAULTS, type IommuFault } from "./faults.js";
import { ACCESS_CORRUPT, ACCESS_OK, type ImplicitMemory } from "./implicit-memory.js";

const TWO32 = 0x1_0000_0000;

function lo32(x: number): number {
  return x >>> 0;
}

function hi32(x: number): number {
  return Math.floor(x / TWO32) >>> 0;
}

/** True when guest page `gpaPage` is a virtual interrupt file page of `dc` ("MSI_ID"). */
export function isMsiPage(dc: DeviceContext, gpaPage: number): boolean {
  const mlo = lo32(dc.msiAddrMask);
  const mhi = hi32(dc.msiAddrMask);
  return (
    ((lo32(gpaPage) ^ lo32(dc.msiAddrPattern)) & ~mlo) === 0 &&
    ((hi32(gpaPage) ^ hi32(dc.msiAddrPattern)) & ~mhi) === 0
  );
}

/** extract(x, mask): the bits of x where mask is 1, packed at the low end (interrupt file number). */
export function interruptFileNumber(gpaPage: number, mask: number): number {
  let out = 0;
  let weight = 1;
  let x = gpaPage;
  let m = mask;
  while (m > 0) {
    if (m % 2 === 1) {
      if (x % 2 === 1) out += weight;
      weight *= 2;
    }
    m = Math.floor(m / 2);
    x = Math.floor(x / 2);
  }
  return out;
}

/** Result of an MSI translation: the target page, or a fault. */
export class MsiOutcome {
  fault: IommuFault | null = null;
  ppn = 0;
}

/**
 * Translates MSI page `gpaPage` with the MSI page table of `dc`. An execute access is an
 * "Instruction access fault" (the MSI PTE grants R=W=1, X=0).
 */
export function translateMsi(
  mem: ImplicitMemory,
  be: boolean,
  dc: DeviceContext,
  gpaPage: number,
  execute: boolean,
  out: MsiOutcome,
): boolean {
  out.fault = null;
  const i = interruptFileNumber(gpaPage, dc.msiAddrMask);
  // The PTE is at (msiptp.PPN × 2^12) | (I × 16): an OR, so a table not aligned to its size
  // folds onto itself rather than running past its end.
  const iPage = Math.floor(i / 256);
  const page =
    (hi32(dc.msiptpPpn) | hi32(iPage)) * TWO32 + ((lo32(dc.msiptpPpn) | lo32(iPage)) >>> 0);
  const st = mem.load64(page, (i % 256) * 16, be);
  if (st !== ACCESS_OK) {
    out.fault =
      st === ACCESS_CORRUPT ? FAULTS.msi_pt_data_corruption : FAULTS.msi_pte_load_access_fault;
    return false;
  }
  const lo = mem.lo;
  const hi = mem.hi;
  if ((lo & 1) === 0) {
    out.fault = FAULTS.msi_pte_not_valid;
    return false;
  }
  const m = (lo >>> 1) & 3;
  // C=1 is implementation defined and this implementation defines nothing: misconfigured. M=0
  // and M=2 are reserved; M=1 (MRIF) needs MSI_MRIF. Basic mode: bits 9:3 and 62:54 reserved.
  if ((hi & 0x8000_0000) !== 0 || m !== 3 || (lo & 0x3f8) !== 0 || (hi & 0x7fc0_0000) !== 0) {
    out.fault = FAULTS.msi_pte_misconfigured;
    return false;
  }
  if (execute) {
    out.fault = FAULTS.instruction_access_fault;
    return false;
  }
  out.ppn = (lo >>> 10) + (hi & 0x3f_ffff) * 0x40_0000;
  return true;
}
