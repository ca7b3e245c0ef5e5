// The PTE bits Linux on RISC-V gives user pages (arch/riscv/include/asm/pgtable-bits.h,
// pgtable.h and the protection_map of arch/riscv/mm/init.c), as PTE bits 9:0.
//
// _PAGE_BASE is PRESENT | ACCESSED | USER: every user PTE is created with V=1 and A=1, so the
// CPU never faults for A on a fresh page; D is set in software when the PTE is made for a
// write. Private writable mappings get no W from the map (PAGE_COPY = PAGE_READ): the fault
// handler adds W and D with pte_mkwrite(pte_mkdirty()), which is how copy-on-write of the zero
// page works. RISC-V has no write-only encoding (W without R is reserved), so a write-only VMA
// maps readable.
//
// PAGE_NONE is _PAGE_PROT_NONE | _PAGE_READ with V=0, where _PAGE_PROT_NONE reuses the G bit
// (hardware ignores every bit of a PTE with V=0): a PROT_NONE page keeps its PTE — PFN, A, D
// and the software bits — and the hardware sees an invalid entry. pte_present() is V or
// _PAGE_PROT_NONE; with no swap here, every non-empty user PTE is present.
//
// _PAGE_SPECIAL is RSW value 1 (PTE bit 8): pte_mkspecial marks PTEs with no struct page
// behind them. Here that is the shared zero page alone (vm_normal_page returns NULL for it), so
// the bit is how the mm tells the zero page from the process's own pages.

import {
  PTE_A,
  PTE_D,
  PTE_G,
  PTE_R,
  PTE_RSW_MASK,
  PTE_U,
  PTE_V,
  PTE_W,
  PTE_X,
} from "../hw/pgtable/pte.js";
import { VM_EXEC, VM_READ, VM_SHARED, VM_WRITE } from "./flags.js";

/** _PAGE_PROT_NONE: the G bit, on PTEs with V=0. */
export const PAGE_PROT_NONE = PTE_G;
/** _PAGE_SPECIAL: RSW = 1. */
export const PAGE_SPECIAL = 0x100;

const BASE = PTE_V | PTE_A | PTE_U;
const READ = BASE | PTE_R;
const EXEC = BASE | PTE_X;
const READ_EXEC = BASE | PTE_R | PTE_X;
const WRITE = BASE | PTE_R | PTE_W;
const WRITE_EXEC = BASE | PTE_R | PTE_W | PTE_X;

/** PAGE_NONE: the VMA allows no access; its pages keep their PTEs, invalid to hardware. */
export const PAGE_NONE = PAGE_PROT_NONE | PTE_R;

/** protection_map[VM_READ|VM_WRITE|VM_EXEC|VM_SHARED], as PTE bits 9:0. */
const PROTECTION_MAP: readonly number[] = [
  PAGE_NONE, // ---p
  READ, // r--p
  READ, // -w-p: PAGE_COPY
  READ, // rw-p: PAGE_COPY
  EXEC, // --xp
  READ_EXEC, // r-xp
  READ_EXEC, // -wxp: PAGE_COPY_EXEC
  READ_EXEC, // rwxp: PAGE_COPY_EXEC
  PAGE_NONE, // ---s
  READ, // r--s
  WRITE, // -w-s: PAGE_SHARED
  WRITE, // rw-s: PAGE_SHARED
  EXEC, // --xs
  READ_EXEC, // r-xs
  WRITE_EXEC, // -wxs: PAGE_SHARED_EXEC
  WRITE_EXEC, // rwxs: PAGE_SHARED_EXEC
];

/** vm_get_page_prot: the vm_page_prot of a VMA with these flags. */
export function vmGetPageProt(vmFlags: number): number {
  return PROTECTION_MAP[vmFlags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED)]!;
}

/** maybe_mkwrite: W when the VMA is writable. */
export function maybeMkwrite(pte: number, vmFlags: number): number {
  return vmFlags & VM_WRITE ? pte | PTE_W : pte;
}

/**
 * pte_modify: the new protection with what _PAGE_CHG_MASK keeps of the old PTE — A, D and the
 * software bits (the PFN stays in the PTE); V R W X U G come from the new protection.
 */
export function pteModify(oldPte: number, newProt: number): number {
  return (oldPte & (PTE_A | PTE_D | PTE_RSW_MASK)) | newProt;
}

/** pte_protnone: V=0 with _PAGE_PROT_NONE. */
export function pteProtnone(pte: number): boolean {
  return (pte & (PTE_V | PAGE_PROT_NONE)) === PAGE_PROT_NONE;
}

/** pte_special. */
export function pteSpecial(pte: number): boolean {
  return (pte & PAGE_SPECIAL) !== 0;
}

// Kernel mappings (asm/pgtable.h): _PAGE_KERNEL is READ | WRITE | PRESENT | ACCESSED | DIRTY |
// GLOBAL — supervisor-only (U = 0), never faulted for A/D, and global: G = 1 tells the hardware
// the translation is the same in every address space, so a per-ASID (PSCID) flush spares it.

/** PAGE_KERNEL. */
export const PAGE_KERNEL = PTE_V | PTE_R | PTE_W | PTE_A | PTE_D | PTE_G;
/** PAGE_KERNEL_READ. */
export const PAGE_KERNEL_READ = PAGE_KERNEL & ~PTE_W;
/** PAGE_KERNEL_EXEC. */
export const PAGE_KERNEL_EXEC = PAGE_KERNEL | PTE_X;
/** PAGE_KERNEL_READ_EXEC. */
export const PAGE_KERNEL_READ_EXEC = PAGE_KERNEL_READ | PTE_X;
