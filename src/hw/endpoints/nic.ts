// A NIC-like device with TX and RX descriptor rings in memory, programmed like an e1000 (the
// register offsets, legacy descriptor layouts and bits follow the 8254x manual as Linux's e1000
// driver uses them; only what is listed here is modelled). Every descriptor and buffer access is
// DMA through the IO bridge without a PASID: the DMA API path, translated by whatever domain the
// device's requester ID is attached to.
//
// TX: while TCTL.EN and TDH != TDT the device reads the descriptor at TDH, reads its buffer,
// gathers buffers until one has EOP, then transmits the frame: back into its own receive path in
// MAC loopback (RCTL.LBM = 01), to a connected peer NIC, or onto the wire (kept in
// `transmitted`). With RS it writes DD back into the descriptor (and raises ICR.TXDW); then TDH
// advances.
// RX: a frame arriving (`receive`, loopback or a peer) waits in a FIFO of `rxFifoFrames` frames
// (beyond it: dropped, MPC counts it, ICR.RXO). While RCTL.EN and enough descriptors are owned
// by the device (RDH up to RDT - 1), it is written into their buffers (RCTL.BSIZE bytes each),
// each descriptor written back with its length and DD (EOP on the last), RDH advances, ICR.RXT0.
// A DMA that aborts halts that ring and sets the model's STATUS.TXERR / STATUS.RXERR (no e1000
// counterpart) until software rewrites TCTL / RCTL or resets the device; `lastError` says where.
//
// Timing: see endpoint.ts; one descriptor (TX) or one frame (RX) per work item, alternating.

import { SimError } from "../../base/errors.js";
import { type Json, jsonAddr } from "../../base/json.js";
import type { Work } from "../../base/workqueue.js";
import type { IoBridge } from "../pci/io-bridge.js";
import type { PciFunctionOptions } from "../pci/options.js";
import type { PciFunction } from "../pci/topology.js";
import { Endpoint, type EndpointOptions } from "./endpoint.js";

export const NIC_REG = {
  CTRL: 0x0000,
  STATUS: 0x0008,
  ICR: 0x00c0,
  IMS: 0x00d0,
  RCTL: 0x0100,
  TCTL: 0x0400,
  RDBAL: 0x2800,
  RDBAH: 0x2804,
  RDLEN: 0x2808,
  RDH: 0x2810,
  RDT: 0x2818,
  TDBAL: 0x3800,
  TDBAH: 0x3804,
  TDLEN: 0x3808,
  TDH: 0x3810,
  TDT: 0x3818,
  MPC: 0x4010,
  GPRC: 0x4074,
  GPTC: 0x4080,
} as const;

export const NIC_BAR_SIZE = 0x2_0000;
export const CTRL_RST = 1 << 26;
export const STATUS_LU = 1 << 1;
/** Model-specific: the ring stopped on an aborted DMA. */
export const STATUS_TXERR = 1 << 30;
export const STATUS_RXERR = 1 << 31;
export const ICR_TXDW = 0x01;
export const ICR_RXO = 0x40;
export const ICR_RXT0 = 0x80;
export const RCTL_EN = 1 << 1;
export const RCTL_LBM_MAC = 1 << 6;
export const RCTL_LBM_MASK = 3 << 6;
export const RCTL_BSIZE_SHIFT = 16;
export const TCTL_EN = 1 << 1;
/** TX descriptor command bits and status. */
export const TXD_CMD_EOP = 0x01;
export const TXD_CMD_RS = 0x08;
export const TXD_STAT_DD = 0x01;
/** RX descriptor status. */
export const RXD_STAT_DD = 0x01;
export const RXD_STAT_EOP = 0x02;
export const DESC_BYTES = 16;
const MAX_FRAME = 16384;

/** PCI identity of the NIC-like function, for the hierarchy builder (no PASID/ATS/PRI). */
export function nicFunctionOptions(o: { name?: string } = {}): PciFunctionOptions {
  return {
    ...(o.name !== undefined ? { name: o.name } : {}),
    vendorId: 0x8086,
    deviceId: 0x100e,
    classCode: 0x020000,
    bars: [NIC_BAR_SIZE],
  };
}

export interface NicOptions extends EndpointOptions {
  /** Frames the receive FIFO holds (default 64). */
  readonly rxFifoFrames?: number;
  /** Transmitted frames kept in `transmitted` (default 256). */
  readonly keepTransmitted?: number;
}

/** A ring's registers from its xDBAL (the same layout for RX at RDBAL and TX at TDBAL). */
const RING = { BAL: 0x00, BAH: 0x04, LEN: 0x08, H: 0x10, T: 0x18 } as const;

/** One descriptor ring's registers. */
class Ring {
  bal = 0;
  bah = 0;
  len = 0;
  head = 0;
  tail = 0;

  /** `base`: the offset of its xDBAL register. */
  constructor(readonly base: number) {}

  /** Whether register `off` is one of this ring's (xDBAL to xDT). */
  holds(off: number): boolean {
    return off >= this.base && off <= this.base + RING.T;
  }

  read(off: number): number {
    switch (off - this.base) {
      case RING.BAL:
        return this.bal;
      case RING.BAH:
        return this.bah;
      case RING.LEN:
        return this.len;
      case RING.H:
        return this.head;
      case RING.T:
        return this.tail;
      default:
        return 0;
    }
  }

  /** Writes register `off`; true for the tail (the device has new descriptors to look at). */
  write(off: number, v: number): boolean {
    switch (off - this.base) {
      case RING.BAL:
        this.bal = v & ~0xf;
        return false;
      case RING.BAH:
        this.bah = v;
        return false;
      case RING.LEN:
        this.len = v & 0xf_ff80;
        return false;
      case RING.H:
        this.head = this.#index(v);
        return false;
      case RING.T:
        this.tail = this.#index(v);
        return true;
      default:
        return false;
    }
  }

  #index(v: number): number {
    return this.count === 0 ? 0 : (v & 0xffff) % this.count;
  }

  get count(): number {
    return Math.floor(this.len / DESC_BYTES);
  }

  /** Page number and offset of descriptor `i`. */
  page(i: number): number {
    return this.bah * 0x10_0000 + Math.floor(((this.bal >>> 0) + i * DESC_BYTES) / 4096);
  }

  offset(i: number): number {
    return ((this.bal >>> 0) + i * DESC_BYTES) % 4096;
  }

  address(i: number): bigint {
    return ((BigInt(this.bah) << 32n) | BigInt(this.bal >>> 0)) + BigInt(i * DESC_BYTES);
  }

  reset(): void {
    this.bal = this.bah = this.len = this.head = this.tail = 0;
  }

  toJSON(): Json {
    return {
      base: jsonAddr(this.address(0)),
      count: this.count,
      head: this.head,
      tail: this.tail,
    };
  }
}

export interface NicError {
  readonly ring: "tx" | "rx";
  readonly index: number;
  readonly what: "descriptor" | "buffer" | "write-back";
  readonly address: bigint;
  readonly detail: string;
}

export class NicDevice extends Endpoint {
  readonly rxFifoFrames: number;
  readonly keepTransmitted: number;
  readonly tx = new Ring(NIC_REG.TDBAL);
  readonly rx = new Ring(NIC_REG.RDBAL);
  /** Frames sent onto the wire (not looped back, no peer), oldest first. */
  readonly transmitted: Uint8Array[] = [];
  readonly #fifo: Uint8Array[] = [];
  readonly #work: Work;
  #peer: NicDevice | null = null;
  #status = STATUS_LU;
  #icr = 0;
  #ims = 0;
  #rctl = 0;
  #tctl = 0;
  #mpc = 0;
  #gprc = 0;
  #gptc = 0;
  /** The TX frame being gathered across descriptors, and its length so far. */
  readonly #frame = new Uint8Array(MAX_FRAME);
  #frameLen = 0;
  #turn: "tx" | "rx" = "tx";
  #lastError: NicError | null = null;
  readonly #desc = new Uint8Array(DESC_BYTES);

  constructor(bridge: IoBridge, fn: PciFunction, opts: NicOptions = {}) {
    if (fn.barCount < 1 || fn.barSize(0) < NIC_BAR_SIZE) {
      throw new SimError(`${fn.name}: the NIC needs BAR 0 of 128 KiB`);
    }
    super(bridge, fn, opts);
    this.rxFifoFrames = opts.rxFifoFrames ?? 64;
    this.keepTransmitted = opts.keepTransmitted ?? 256;
    this.#work = this.newWork("rings", () => this.#process());
  }

  /** Physical address of register `offset` (BAR 0). */
  registerAddress(offset: number): bigint {
    return this.fn.barAddress(0) + BigInt(offset);
  }

  /** Frames sent by this NIC arrive at `peer` (and the other way round). */
  connect(peer: NicDevice): void {
    if (peer === this) throw new SimError(`${this.name} cannot be its own peer (use MAC loopback)`);
    this.#peer = peer;
    peer.#peer = this;
  }

  /** A frame arrives from the wire. False when the FIFO is full and it was dropped. */
  receive(frame: Uint8Array): boolean {
    if (frame.length === 0 || frame.length > MAX_FRAME) {
      throw new SimError(`${this.name}: a frame of ${frame.length} bytes`);
    }
    if (this.#fifo.length >= this.rxFifoFrames) {
      this.#mpc++;
      this.#icr |= ICR_RXO;
      return false;
    }
    this.#fifo.push(frame.slice());
    this.kick(this.#work);
    return true;
  }

  get lastError(): NicError | null {
    return this.#lastError;
  }

  get rxPending(): number {
    return this.#fifo.length;
  }

  // ---------------------------------------------------------------- BAR

  barRead(bar: number, offset: number, out: Uint8Array): void {
    if (bar !== 0) throw new SimError(`${this.name} has no BAR ${bar}`);
    // Each register is read once, even by a narrower or wider access.
    for (let dw = offset & ~3; dw < offset + out.length; dw += 4) {
      const v = this.#readReg(dw);
      for (let k = 0; k < 4; k++) {
        const i = dw + k - offset;
        if (i >= 0 && i < out.length) out[i] = (v >>> (8 * k)) & 0xff;
      }
    }
  }

  barWrite(bar: number, offset: number, data: Uint8Array): void {
    if (bar !== 0) throw new SimError(`${this.name} has no BAR ${bar}`);
    // Registers are 32 bits wide: other writes are dropped.
    if (data.length !== 4 || offset % 4 !== 0) return;
    this.#write32(offset, (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0);
  }

  /** A register read; reading ICR clears it, as on an e1000. */
  #readReg(off: number): number {
    switch (off) {
      case NIC_REG.CTRL:
        return 0;
      case NIC_REG.STATUS:
        return this.#status >>> 0;
      case NIC_REG.ICR: {
        const v = this.#icr;
        this.#icr = 0;
        return v;
      }
      case NIC_REG.IMS:
        return this.#ims;
      case NIC_REG.RCTL:
        return this.#rctl;
      case NIC_REG.TCTL:
        return this.#tctl;
      case NIC_REG.MPC:
        return this.#mpc;
      case NIC_REG.GPRC:
        return this.#gprc;
      case NIC_REG.GPTC:
        return this.#gptc;
      default:
        if (this.rx.holds(off)) return this.rx.read(off);
        if (this.tx.holds(off)) return this.tx.read(off);
        return 0;
    }
  }

  #write32(off: number, v: number): void {
    switch (off) {
      case NIC_REG.CTRL:
        if (v & CTRL_RST) this.#reset();
        return;
      case NIC_REG.ICR:
        this.#icr &= ~v;
        return;
      case NIC_REG.IMS:
        this.#ims |= v;
        return;
      case NIC_REG.RCTL:
        this.#rctl = v;
        this.#status &= ~STATUS_RXERR;
        break;
      case NIC_REG.TCTL:
        this.#tctl = v;
        this.#status &= ~STATUS_TXERR;
        break;
      default: {
        const ring = this.rx.holds(off) ? this.rx : this.tx.holds(off) ? this.tx : null;
        // Only a tail write gives the device work.
        if (ring === null || !ring.write(off, v)) return;
      }
    }
    this.kick(this.#work);
  }

  #reset(): void {
    this.tx.reset();
    this.rx.reset();
    this.#fifo.length = 0;
    this.#frameLen = 0;
    this.#status = STATUS_LU;
    this.#icr = this.#ims = this.#rctl = this.#tctl = 0;
    this.#lastError = null;
  }

  // ---------------------------------------------------------------- processing

  get #txReady(): boolean {
    return (
      (this.#tctl & TCTL_EN) !== 0 &&
      (this.#status & STATUS_TXERR) === 0 &&
      this.tx.count > 0 &&
      this.tx.head !== this.tx.tail
    );
  }

  get #rxReady(): boolean {
    if ((this.#rctl & RCTL_EN) === 0 || (this.#status & STATUS_RXERR) !== 0) return false;
    const frame = this.#fifo[0];
    if (!frame || this.rx.count === 0) return false;
    const owned = (this.rx.tail - this.rx.head + this.rx.count) % this.rx.count;
    return owned >= Math.ceil(frame.length / this.#bufferSize);
  }

  get #bufferSize(): number {
    return 2048 >>> ((this.#rctl >>> RCTL_BSIZE_SHIFT) & 3);
  }

  #process(): void {
    const tx = this.#txReady;
    const rx = this.#rxReady;
    if (tx && (!rx || this.#turn === "tx")) {
      this.#turn = "rx";
      this.#transmitOne();
    } else if (rx) {
      this.#turn = "tx";
      this.#receiveOne();
    }
    if (this.#txReady || this.#rxReady) this.kick(this.#work);
  }

  #transmitOne(): void {
    const ring = this.tx;
    const i = ring.head;
    const d = this.#desc;
    const dma = this.dma;
    if (!dma.read(false, 0, false, ring.page(i), ring.offset(i), d, 0, DESC_BYTES)) {
      this.#halt("tx", i, "descriptor");
      return;
    }
    const len = d[8]! | (d[9]! << 8);
    const cmd = d[11]!;
    const lo = u32(d, 0);
    const hi = u32(d, 4);
    if (len > 0) {
      if (this.#frameLen + len > MAX_FRAME) {
        throw new SimError(`${this.name}: a TX frame longer than ${MAX_FRAME} bytes`);
      }
      const page = hi * 0x10_0000 + (lo >>> 12);
      if (!dma.read(false, 0, false, page, lo & 0xfff, this.#frame, this.#frameLen, len)) {
        this.#halt("tx", i, "buffer");
        return;
      }
      this.#frameLen += len;
    }
    if (cmd & TXD_CMD_RS) {
      d[12] = d[12]! | TXD_STAT_DD;
      if (!dma.write(false, 0, false, ring.page(i), ring.offset(i) + 12, d, 12, 1)) {
        this.#halt("tx", i, "write-back");
        return;
      }
      this.#icr |= ICR_TXDW;
    }
    ring.head = (i + 1) % ring.count;
    let result = "gathered";
    if (cmd & TXD_CMD_EOP) {
      const frame = this.#frame.slice(0, this.#frameLen);
      this.#frameLen = 0;
      if (frame.length === 0) {
        result = "empty";
      } else {
        this.#gptc++;
        result = this.#send(frame);
      }
    }
    this.#tracePacket("tx", i, len, result);
  }

  #send(frame: Uint8Array): string {
    if ((this.#rctl & RCTL_LBM_MASK) === RCTL_LBM_MAC) {
      return this.receive(frame) ? "loopback" : "loopback dropped";
    }
    if (this.#peer !== null) {
      return this.#peer.receive(frame) ? `to ${this.#peer.name}` : `dropped by ${this.#peer.name}`;
    }
    this.transmitted.push(frame);
    if (this.transmitted.length > this.keepTransmitted) this.transmitted.shift();
    return "wire";
  }

  #receiveOne(): void {
    const ring = this.rx;
    const frame = this.#fifo[0]!;
    const size = this.#bufferSize;
    const d = this.#desc;
    const dma = this.dma;
    const first = ring.head;
    for (let done = 0; done < frame.length; ) {
      const i = ring.head;
      if (!dma.read(false, 0, false, ring.page(i), ring.offset(i), d, 0, DESC_BYTES)) {
        this.#halt("rx", i, "descriptor");
        return;
      }
      const n = Math.min(size, frame.length - done);
      const lo = u32(d, 0);
      const hi = u32(d, 4);
      if (!dma.write(false, 0, false, hi * 0x10_0000 + (lo >>> 12), lo & 0xfff, frame, done, n)) {
        this.#halt("rx", i, "buffer");
        return;
      }
      done += n;
      // Write-back: length, checksum 0, status (DD, EOP on the last), errors 0, special 0.
      d.fill(0, 8);
      d[8] = n & 0xff;
      d[9] = n >>> 8;
      d[12] = RXD_STAT_DD | (done === frame.length ? RXD_STAT_EOP : 0);
      if (!dma.write(false, 0, false, ring.page(i), ring.offset(i) + 8, d, 8, 8)) {
        this.#halt("rx", i, "write-back");
        return;
      }
      ring.head = (i + 1) % ring.count;
    }
    this.#fifo.shift();
    this.#gprc++;
    this.#icr |= ICR_RXT0;
    this.#tracePacket("rx", first, frame.length, "ok");
  }

  #halt(ring: "tx" | "rx", index: number, what: NicError["what"]): void {
    const dma = this.dma;
    this.#status |= ring === "tx" ? STATUS_TXERR : STATUS_RXERR;
    this.#lastError = { ring, index, what, address: dma.faultAddress, detail: dma.faultDetail };
    this.#tracePacket(ring, index, 0, `${what} ${dma.faultDetail}`);
  }

  #tracePacket(dir: "tx" | "rx", index: number, len: number, result: string): void {
    const trace = this.ctx.trace;
    if (trace.enabled)
      trace.emit("device:packet", this.name, { dir, ring_index: index, len, result });
  }

  // ---------------------------------------------------------------- view

  toJSON(): Json {
    const e = this.#lastError;
    return {
      ...this.endpointJSON("nic"),
      registers: {
        STATUS: this.#status >>> 0,
        ICR: this.#icr,
        RCTL: this.#rctl,
        TCTL: this.#tctl,
      },
      tx: this.tx.toJSON(),
      rx: this.rx.toJSON(),
      rx_fifo: this.#fifo.length,
      peer: this.#peer?.name ?? null,
      counters: {
        transmitted: this.#gptc,
        received: this.#gprc,
        missed: this.#mpc,
        on_wire: this.transmitted.length,
      },
      last_error:
        e === null
          ? null
          : {
              ring: e.ring,
              index: e.index,
              what: e.what,
              address: jsonAddr(e.address),
              detail: e.detail,
            },
    };
  }
}

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}
