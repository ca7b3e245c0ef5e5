// The in-memory directories the driver builds for the IOMMU: the device directory (DDT, one per
// IOMMU, "Device-directory-table") and a process directory (PDT, one per device that uses
// PASIDs, "Process-directory-table"). Non-leaf levels are allocated on demand and never freed
// while the directory lives (riscv_iommu_get_dc does the same for the DDT); the PDT's pages are
// freed only when its device is released, after its device contexts were invalidated.
//
// A valid non-leaf entry is written once (V=1 and the PPN): going from invalid to valid needs no
// invalidation, since invalid entries are never cached ("Caching invalid entries").

import { hex } from "../../base/bits.js";
import type { Json } from "../../base/json.js";
import type { FrameAllocator, PhysicalMemory } from "../../hw/memory.js";
import {
  DC_SIZE_BASE,
  DC_SIZE_EXTENDED,
  DDTP_MODE,
  PC_SIZE,
  PDTP_MODE,
  PDTP_MODE_NAMES,
  ppn53Hi,
  ppn53Lo,
  ppn53Of,
} from "./iommu-bits.js";

/** A leaf entry's place: page number and byte offset. */
export interface EntryPlace {
  readonly ppn: number;
  readonly offset: number;
}

/**
 * The pages of one radix directory in memory: its root, and the non-leaf levels allocated on
 * demand (kept until the directory is destroyed).
 */
class DirectoryPages {
  readonly rootPpn: number;
  readonly #memory: PhysicalMemory;
  readonly #frames: FrameAllocator;
  /** Non-leaf-level pages allocated so far (the root excluded). */
  readonly #pages: number[] = [];

  constructor(memory: PhysicalMemory, frames: FrameAllocator, rootPpn: number) {
    this.#memory = memory;
    this.#frames = frames;
    this.rootPpn = rootPpn;
  }

  /** Pages in use: the root and the non-leaf levels. */
  get pageCount(): number {
    return 1 + this.#pages.length;
  }

  /**
   * Frees every page: for the DDT once the IOMMU is Off or Bare, for a PDT once the device
   * contexts pointing at it are invalid and invalidated.
   */
  destroy(): void {
    for (const p of this.#pages) this.#frames.free(p);
    this.#pages.length = 0;
    this.#frames.free(this.rootPpn);
  }

  /**
   * The table page the non-leaf doubleword at byte `off` of page `table` points to, allocating
   * and linking a zeroed page when it is invalid; −1 without memory.
   */
  protected nextLevel(table: number, off: number): number {
    const words = this.#memory.writablePageU32(table)!;
    const w = off >>> 2;
    if ((words[w]! & 1) !== 0) return ppn53Of(words[w]!, words[w + 1]!);
    const page = this.#frames.alloc();
    if (page < 0) return -1;
    this.#pages.push(page);
    words[w + 1] = ppn53Hi(page);
    words[w] = (ppn53Lo(page) | 1) >>> 0;
    return page;
  }

  /** The table page that doubleword points to, or −1 while it is invalid (nothing allocated). */
  protected existingLevel(table: number, off: number): number {
    const words = this.#memory.pageU32(table)!;
    const w = off >>> 2;
    return (words[w]! & 1) === 0 ? -1 : ppn53Of(words[w]!, words[w + 1]!);
  }
}

/** The device directory of one IOMMU. */
export class DeviceDirectory extends DirectoryPages {
  /** `ddtp.iommu_mode` in use (1LVL..3LVL); set once the mode is accepted. */
  mode: number = DDTP_MODE.LVL3;
  /** Extended-format (64-byte) device contexts: capabilities.MSI_FLAT. */
  readonly extended: boolean;

  constructor(memory: PhysicalMemory, frames: FrameAllocator, rootPpn: number, extended: boolean) {
    super(memory, frames, rootPpn);
    this.extended = extended;
  }

  get dcSize(): number {
    return this.extended ? DC_SIZE_EXTENDED : DC_SIZE_BASE;
  }

  /** Bits of device_id the DDT of `mode` indexes ("Device-directory-table" DDI split). */
  deviceIdBits(mode = this.mode): number {
    const ddi0 = this.extended ? 6 : 7;
    if (mode === DDTP_MODE.LVL1) return ddi0;
    if (mode === DDTP_MODE.LVL2) return ddi0 + 9;
    return 24;
  }

  /**
   * riscv_iommu_get_dc: where the DC of `devid` lives, allocating the non-leaf levels on the way;
   * null when `devid` is too wide for the mode or memory ran out.
   */
  dcPlace(devid: number): EntryPlace | null {
    if (devid < 0 || devid >= 2 ** this.deviceIdBits()) return null;
    const ddi0 = this.extended ? 6 : 7;
    let table = this.rootPpn;
    const levels = this.mode - 1;
    for (let level = levels - 1; level > 0; level--) {
      const ddi = level === 1 ? (devid >>> ddi0) & 0x1ff : devid >>> (ddi0 + 9);
      table = this.nextLevel(table, ddi * 8);
      if (table < 0) return null;
    }
    return { ppn: table, offset: (devid & ((1 << ddi0) - 1)) * this.dcSize };
  }

  toJSON(): Json {
    return {
      root: hex(this.rootPpn * 4096),
      format: this.extended ? "extended" : "base",
      pages: this.pageCount,
    };
  }
}

/** The process directory of one device (PD8 = one level, PD17 = two, PD20 = three). */
export class ProcessDirectory extends DirectoryPages {
  readonly mode: number;

  /** A new empty PDT, or null without memory for its root. */
  static create(
    memory: PhysicalMemory,
    frames: FrameAllocator,
    mode: number,
  ): ProcessDirectory | null {
    const root = frames.alloc();
    return root < 0 ? null : new ProcessDirectory(memory, frames, mode, root);
  }

  private constructor(
    memory: PhysicalMemory,
    frames: FrameAllocator,
    mode: number,
    rootPpn: number,
  ) {
    super(memory, frames, rootPpn);
    this.mode = mode;
  }

  /** PASIDs this format indexes: 2^8, 2^17 or 2^20. */
  get maxPasids(): number {
    return this.mode === PDTP_MODE.PD8 ? 2 ** 8 : this.mode === PDTP_MODE.PD17 ? 2 ** 17 : 2 ** 20;
  }

  /**
   * Where the PC of `pasid` lives; with `allocate` the non-leaf levels are created, otherwise
   * null when a level is missing (the PC was never written). Null also without memory.
   */
  pcPlace(pasid: number, allocate: boolean): EntryPlace | null {
    if (pasid < 0 || pasid >= this.maxPasids) return null;
    let table = this.rootPpn;
    for (let level = this.mode - 1; level > 0; level--) {
      const pdi = level === 1 ? (pasid >>> 8) & 0x1ff : pasid >>> 17;
      table = allocate ? this.nextLevel(table, pdi * 8) : this.existingLevel(table, pdi * 8);
      if (table < 0) return null;
    }
    return { ppn: table, offset: (pasid & 0xff) * PC_SIZE };
  }

  toJSON(): Json {
    return {
      mode: PDTP_MODE_NAMES[this.mode] ?? this.mode,
      root: hex(this.rootPpn * 4096),
      pages: this.pageCount,
    };
  }
}
