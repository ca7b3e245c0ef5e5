// One function's configuration space: little-endian bytes plus, per bit, whether software may
// write it (RW), clear it by writing 1 (RW1C), or not at all (RO / HwInit / RsvdP). Hardware
// models set registers with `init*` (ignoring the masks); software reaches the space only
// through `read`/`write`, which apply the masks and then call the register's write hook, if any.
//
// Routing reads registers on every DMA page (`peek`): aligned 16- and 32-bit registers are read
// through 16- and 32-bit views of the same bytes (the host is little-endian, like PCI), and every
// change (`write`, `init`, `setBits`) is announced to the owner, which may cache what it derived.

import { SimError } from "../../base/errors.js";

export type ConfigAccessSize = 1 | 2 | 4;

/** Called after a software write landed in `[offset, offset+length)`; `value` is the raw write. */
export type ConfigWriteHook = (offset: number, size: ConfigAccessSize, value: number) => void;

interface HookEntry {
  readonly start: number;
  readonly end: number;
  readonly fn: ConfigWriteHook;
}

/** Whether typed-array words read little-endian here (then aligned registers are one load). */
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class ConfigSpace {
  readonly size: number;
  readonly #bytes: Uint8Array;
  readonly #u16: Uint16Array | null;
  readonly #u32: Uint32Array | null;
  readonly #rw: Uint8Array;
  readonly #w1c: Uint8Array;
  readonly #hooks: HookEntry[] = [];
  readonly #onChange: (() => void) | null;

  /** `onChange` runs after every change of the contents, by software or by hardware. */
  constructor(size: number, onChange: (() => void) | null = null) {
    if (size !== 256 && size !== 4096) throw new SimError(`config space size ${size}`);
    this.size = size;
    this.#bytes = new Uint8Array(size);
    this.#u16 = LITTLE_ENDIAN_HOST ? new Uint16Array(this.#bytes.buffer) : null;
    this.#u32 = LITTLE_ENDIAN_HOST ? new Uint32Array(this.#bytes.buffer) : null;
    this.#rw = new Uint8Array(size);
    this.#w1c = new Uint8Array(size);
    this.#onChange = onChange;
  }

  /** A software read: naturally aligned, 1, 2 or 4 bytes; beyond the space reads as 0. */
  read(offset: number, size: ConfigAccessSize): number {
    checkAccess(offset, size);
    if (offset >= this.size) return 0;
    return this.peek(offset, size);
  }

  /** A software write: RW bits take the new value, RW1C bits clear where 1 is written. */
  write(offset: number, size: ConfigAccessSize, value: number): void {
    checkAccess(offset, size);
    if (offset >= this.size) return;
    for (let i = 0; i < size; i++) {
      const o = offset + i;
      const v = (value >>> (8 * i)) & 0xff;
      const rw = this.#rw[o]!;
      const w1c = this.#w1c[o]!;
      const old = this.#bytes[o]!;
      this.#bytes[o] = ((old & ~rw) | (v & rw)) & ~(v & w1c) & 0xff;
    }
    this.#onChange?.();
    for (const h of this.#hooks) {
      if (offset < h.end && offset + size > h.start) h.fn(offset, size, value >>> 0);
    }
  }

  /** The current value without access checks (hardware's own view of its registers). */
  peek(offset: number, size: ConfigAccessSize): number {
    const b = this.#bytes;
    if (size === 1) return b[offset]!;
    if (size === 4 && (offset & 3) === 0 && this.#u32 !== null) return this.#u32[offset >>> 2] ?? 0;
    if (size === 2 && (offset & 1) === 0 && this.#u16 !== null) return this.#u16[offset >>> 1] ?? 0;
    if (size === 2) return b[offset]! | (b[offset + 1]! << 8);
    return (
      (b[offset]! | (b[offset + 1]! << 8) | (b[offset + 2]! << 16) | (b[offset + 3]! << 24)) >>> 0
    );
  }

  /** Sets a register's value as hardware does (masks ignored). */
  init(offset: number, size: ConfigAccessSize, value: number): void {
    for (let i = 0; i < size; i++) this.#bytes[offset + i] = (value >>> (8 * i)) & 0xff;
    this.#onChange?.();
  }

  /** Sets or clears `bits` of a register as hardware does. */
  setBits(offset: number, size: ConfigAccessSize, bits: number, on: boolean): void {
    const v = this.peek(offset, size);
    this.init(offset, size, on ? v | bits : v & ~bits);
  }

  /** Declares which bits of a register software may write (the rest are read-only). */
  writable(offset: number, size: ConfigAccessSize, mask: number): void {
    for (let i = 0; i < size; i++) this.#rw[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Declares which bits of a register are RW1C. */
  writeOneToClear(offset: number, size: ConfigAccessSize, mask: number): void {
    for (let i = 0; i < size; i++) this.#w1c[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Runs `fn` after every software write touching `[offset, offset+length)`. */
  onWrite(offset: number, length: number, fn: ConfigWriteHook): void {
    this.#hooks.push({ start: offset, end: offset + length, fn });
  }
}

function checkAccess(offset: number, size: ConfigAccessSize): void {
  if (!Number.isInteger(offset) || offset < 0 || offset > 0xfff || offset % size !== 0) {
    throw new SimError(`config access of ${size} bytes at offset ${offset} is not aligned`);
  }
  if (size !== 1 && size !== 2 && size !== 4) throw new SimError(`config access size ${size}`);
}
