// The PTE bits Linux on RISC-V gives user pages (arch/riscv/include/asm/pgtable.h and the
// protection_map of arch/riscv/mm/init.c).
//
// _PAGE_BASE is PRESENT | ACCESSED | USER: every user PTE is created with A=1, so the CPU never
// faults for A on a fresh page; D is set in software when the PTE is made for a write. Private
// writable mappings get no W from the map (PAGE_COPY = PAGE_READ): the fault handler adds W and D
// with pte_mkwrite(pte_mkdirty()), which is how copy-on-write of the zero page works. RISC-V
// has no write-only encoding (W without R is reserved), so a write-only VMA maps readable.

import { PTE_A, PTE_D, PTE_R, PTE_U, PTE_W, PTE_X } from "../hw/pgtable/pte.js";
import { VM_EXEC, VM_READ, VM_SHARED, VM_WRITE } from "./flags.js";

const BASE = PTE_A | PTE_U;
const READ = BASE | PTE_R;
const EXEC = BASE | PTE_X;
const READ_EXEC = BASE | PTE_R | PTE_X;
const WRITE = BASE | PTE_R | PTE_W;
const WRITE_EXEC = BASE | PTE_R | PTE_W | PTE_X;

/** PAGE_NONE: the VMA allows no access; its pages are kept PROT_NONE (not valid to hardware). */
export const PAGE_NONE = 0;

/** protection_map[VM_READ|VM_WRITE|VM_EXEC|VM_SHARED], as PTE bits 7:0 without V. */
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
 * pte_modify: the new protection with the old PTE's A and D kept (_PAGE_CHG_MASK keeps PFN,
 * A, D and the software bits; R W X U G V come from the new protection).
 */
export function pteModify(oldPte: number, newProt: number): number {
  return (oldPte & (PTE_A | PTE_D)) | newProt;
}
