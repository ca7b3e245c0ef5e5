// Interrupt generation: `ipsr`, `icvec`, the MSI configuration table, and delivery to the
// platform through an InterruptSink. With `fctl.WSI` = 1 each vector is a wire whose level is the
// OR of the `ipsr` bits mapped to it (level semantics). With `fctl.WSI` = 0 an interrupt is a
// message: a 4-byte write of `msi_data` to `msi_addr` when an `ipsr` bit goes from 0 to 1 (edge
// semantics), held back while the vector is masked and sent when it is unmasked.

import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import type { ImplicitMemory } from "./implicit-memory.js";
import { IPSR } from "./registers.js";

/** The platform side of the IOMMU's interrupts (an interrupt controller). */
export interface InterruptSink {
  /** Wire-signaled interrupt: wire `vector` is now asserted or deasserted. */
  setWire(vector: number, asserted: boolean): void;
  /**
   * Message-signaled interrupt: the IOMMU writes `data` to `address`. Returns true when an
   * interrupt controller (e.g. an IMSIC) decodes the address; otherwise the IOMMU writes memory.
   */
  message(address: bigint, data: number, vector: number): boolean;
}

/** The interrupt causes in `ipsr` bit order, with their `icvec` field position. */
const CAUSES = [
  { bit: IPSR.cip, name: "cip", shift: 0 },
  { bit: IPSR.fip, name: "fip", shift: 4 },
  { bit: IPSR.pmip, name: "pmip", shift: 8 },
  { bit: IPSR.pip, name: "pip", shift: 12 },
] as const;

export class Interrupts {
  /** `ipsr` */
  ipsr = 0;
  /** `icvec` (low half; the high half is custom and reads 0). */
  icvec = 0;
  sink: InterruptSink | null = null;
  /** Number of messages and wire edges delivered (for views). */
  delivered = 0;
  readonly #vectors: number;
  readonly #msi: boolean;
  readonly #mem: ImplicitMemory;
  readonly #wsi: () => boolean;
  readonly #be: () => boolean;
  readonly #onEvent: (cause: string, vector: number) => void;
  readonly #onMsiFault: (addrLo: number, addrHi: number) => void;
  readonly #addrLo: Uint32Array;
  readonly #addrHi: Uint32Array;
  readonly #data: Uint32Array;
  readonly #ctl: Uint32Array;
  #pendingMsi = 0;
  #wires = 0;

  constructor(opts: {
    vectors: number;
    msi: boolean;
    mem: ImplicitMemory;
    wsi: () => boolean;
    be: () => boolean;
    onEvent: (cause: string, vector: number) => void;
    onMsiFault: (addrLo: number, addrHi: number) => void;
  }) {
    this.#vectors = opts.vectors;
    this.#msi = opts.msi;
    this.#mem = opts.mem;
    this.#wsi = opts.wsi;
    this.#be = opts.be;
    this.#onEvent = opts.onEvent;
    this.#onMsiFault = opts.onMsiFault;
    const n = opts.msi ? opts.vectors : 0;
    this.#addrLo = new Uint32Array(n);
    this.#addrHi = new Uint32Array(n);
    this.#data = new Uint32Array(n);
    this.#ctl = new Uint32Array(n);
  }

  /** Vector of an `ipsr` bit. */
  vectorOf(bit: number): number {
    for (let i = 0; i < CAUSES.length; i++) {
      const c = CAUSES[i]!;
      if (c.bit === bit) return (this.icvec >>> c.shift) & 0xf;
    }
    throw new SimError(`ipsr bit ${bit} is not an interrupt cause`);
  }

  /** Sets the `ipsr` bits in `bits` (conditions or events); 0→1 edges generate messages. */
  raise(bits: number): void {
    const rising = bits & ~this.ipsr;
    if (rising === 0) return;
    this.ipsr |= rising;
    for (const c of CAUSES) {
      if ((rising & c.bit) !== 0) this.#signal(c.bit, c.name);
    }
    this.#updateWires();
  }

  /** Software write to `ipsr` (RW1C); `conditions` are the causes still present afterwards. */
  writeIpsr(value: number, conditions: number): void {
    this.ipsr &= ~(value & 0xf);
    this.#updateWires();
    this.raise(conditions);
  }

  writeIcvec(lo: number): void {
    const m = this.#vectors - 1;
    this.icvec = (lo & m) | (lo & (m << 4)) | (lo & (m << 8)) | (lo & (m << 12));
    this.#updateWires();
  }

  /** Re-evaluates the wires after `fctl.WSI` changed. */
  refresh(): void {
    this.#updateWires();
  }

  // ---- msi_cfg_tbl: entry x is 16 bytes at 768 + 16x ----

  readMsi(offset: number): number {
    const x = offset >>> 4;
    if (x >= this.#addrLo.length) return 0;
    switch (offset & 0xc) {
      case 0:
        return this.#addrLo[x]!;
      case 4:
        return this.#addrHi[x]!;
      case 8:
        return this.#data[x]!;
      default:
        return this.#ctl[x]!;
    }
  }

  writeMsi(offset: number, value: number): void {
    const x = offset >>> 4;
    if (x >= this.#addrLo.length) return;
    switch (offset & 0xc) {
      case 0:
        this.#addrLo[x] = value & ~3; // bits 1:0 are fixed to 0
        break;
      case 4:
        this.#addrHi[x] = value & 0x00ff_ffff; // ADDR[55:32]; 63:56 reserved
        break;
      case 8:
        this.#data[x] = value;
        break;
      default: {
        const wasMasked = (this.#ctl[x]! & 1) !== 0;
        this.#ctl[x] = value & 1;
        if (wasMasked && (value & 1) === 0 && (this.#pendingMsi & (1 << x)) !== 0) {
          this.#pendingMsi &= ~(1 << x);
          this.#send(x, "unmask");
        }
      }
    }
  }

  #signal(bit: number, name: string): void {
    const v = this.vectorOf(bit);
    if (this.#wsi()) return; // wires are updated by level
    if (!this.#msi) return;
    if ((this.#ctl[v]! & 1) !== 0) {
      this.#pendingMsi |= 1 << v;
      return;
    }
    this.#send(v, name);
  }

  #send(v: number, cause: string): void {
    const lo = this.#addrLo[v]!;
    const hi = this.#addrHi[v]!;
    const data = this.#data[v]!;
    this.#onEvent(cause, v);
    this.delivered++;
    const address = (BigInt(hi) << 32n) | BigInt(lo);
    if (this.sink?.message(address, data, v)) return;
    const ppn = hi * 0x10_0000 + (lo >>> 12);
    if (!this.#mem.store32(ppn, lo & 0xffc, data, this.#be())) this.#onMsiFault(lo, hi);
  }

  #updateWires(): void {
    let wires = 0;
    if (this.#wsi()) {
      for (const c of CAUSES) {
        if ((this.ipsr & c.bit) !== 0) wires |= 1 << ((this.icvec >>> c.shift) & 0xf);
      }
    }
    const changed = wires ^ this.#wires;
    this.#wires = wires;
    if (changed === 0) return;
    for (let v = 0; v < 16; v++) {
      if ((changed & (1 << v)) === 0) continue;
      const up = (wires & (1 << v)) !== 0;
      if (up) {
        this.delivered++;
        this.#onEvent("wire", v);
      }
      this.sink?.setWire(v, up);
    }
  }

  /** Asserted wires (bit v = wire v). */
  get wires(): number {
    return this.#wires;
  }

  toJSON(): Json {
    return {
      ipsr: {
        cip: (this.ipsr & IPSR.cip) !== 0,
        fip: (this.ipsr & IPSR.fip) !== 0,
        pmip: (this.ipsr & IPSR.pmip) !== 0,
        pip: (this.ipsr & IPSR.pip) !== 0,
      },
      icvec: {
        civ: this.icvec & 0xf,
        fiv: (this.icvec >>> 4) & 0xf,
        pmiv: (this.icvec >>> 8) & 0xf,
        piv: (this.icvec >>> 12) & 0xf,
      },
      wires: this.#wires,
      msi_cfg_tbl: Array.from({ length: this.#addrLo.length }, (_, x) => ({
        msi_addr: `0x${((BigInt(this.#addrHi[x]!) << 32n) | BigInt(this.#addrLo[x]!)).toString(16)}`,
        msi_data: this.#data[x]!,
        M: (this.#ctl[x]! & 1) !== 0,
        pending: (this.#pendingMsi & (1 << x)) !== 0,
      })),
    };
  }
}
