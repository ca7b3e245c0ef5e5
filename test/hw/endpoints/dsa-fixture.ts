// DSA test helpers: a machine with one DSA-like function, software's register programming
// through CPU MMIO (the IO bridge's downstream path), descriptors encoded byte by byte from the
// idxd layout, and completion records decoded from physical memory.

import { DsaDevice, type DsaOptions } from "../../../src/hw/endpoints/dsa.js";
import {
  CR_SIZE,
  DSA_CMD,
  DSA_REG,
  dsaFunctionOptions,
  IDXD_OP_FLAG,
} from "../../../src/hw/endpoints/dsa-regs.js";
import type { PageTable } from "../../../src/hw/pgtable/page-table.js";
import {
  dcPasid,
  did,
  enableAts,
  enablePasid,
  enablePri,
  type Machine,
  machine,
  map,
  page,
  pageTable,
  processContext,
} from "./fixture.js";

export const PASID = 5;

export interface DsaRig extends Machine {
  readonly dsa: DsaDevice;
  readonly id: number;
}

export function dsaMachine(
  o: { ats?: boolean; pri?: boolean; useAts?: boolean; options?: DsaOptions } = {},
): DsaRig {
  const m = machine((h) => {
    h.addRootPort().addEndpoint(
      dsaFunctionOptions({ name: "dsa0", ats: o.ats ?? true, pri: o.pri ?? true }),
    );
  });
  const dsa = new DsaDevice(m.bridge, m.host.function("dsa0"), o.options ?? {});
  enablePasid(dsa.fn, true);
  if (o.useAts) enableAts(dsa.fn);
  if (dsa.fn.caps.pri) enablePri(dsa.fn);
  return { ...m, dsa, id: did(m, dsa.fn) };
}

export function w32(r: DsaRig, off: number, v: number): void {
  r.bridge.mmioWrite(r.dsa.registerAddress(off), 4, BigInt(v >>> 0));
}

export function r32(r: DsaRig, off: number): number {
  return Number(r.bridge.mmioRead(r.dsa.registerAddress(off), 4));
}

/** Writes CMD and returns CMDSTS. */
export function command(r: DsaRig, cmd: number, operand = 0): number {
  w32(r, DSA_REG.CMD, (cmd << 20) | operand);
  return r32(r, DSA_REG.CMDSTS);
}

/** ENQCMD of descriptor `d` to WQ `wq`'s portal with the submitter's `pasid`; false on Retry. */
export function enqueue(r: DsaRig, d: Uint8Array, pasid = PASID, wq = 0): boolean {
  return r.bridge.mmioEnqueue(r.dsa.portalAddress(wq), d, pasid);
}

export interface WqConfig {
  size?: number;
  dedicated?: boolean;
  bof?: boolean;
  /** Dedicated WQ PASID (pasid_en = 1). */
  pasid?: number;
  priv?: boolean;
  prsDisable?: boolean;
}

/** Programs WQCFG `i` (dwords 0 and 2) the way idxd does, and enables the WQ. */
export function setupWq(r: DsaRig, i: number, c: WqConfig = {}): number {
  const base = DSA_REG.WQCFG + 32 * i;
  w32(r, base, c.size ?? 16);
  w32(
    r,
    base + 8,
    (c.dedicated ? 1 : 0) |
      (c.bof ? 2 : 0) |
      (c.prsDisable ? 8 : 0) |
      ((c.pasid ?? 0) << 8) |
      (c.pasid !== undefined ? 1 << 28 : 0) |
      (c.priv ? 1 << 29 : 0),
  );
  return command(r, DSA_CMD.ENABLE_WQ, i);
}

export function enableDevice(r: DsaRig): number {
  return command(r, DSA_CMD.ENABLE_DEVICE);
}

export interface Descriptor {
  opcode: number;
  flags?: number;
  completion?: bigint;
  /** src_addr / pattern / desc_list_addr */
  a1?: bigint;
  /** dst_addr / src2_addr / comp_pattern */
  a2?: bigint;
  /** xfer_size / desc_count */
  size?: number;
  expected?: number;
  pasid?: number;
}

function put64(b: Uint8Array, at: number, v: bigint): void {
  for (let i = 0; i < 8; i++) b[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

/** A 64-byte descriptor (include/uapi/linux/idxd.h dsa_hw_desc). */
export function descriptor(d: Descriptor): Uint8Array {
  const b = new Uint8Array(64);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, d.pasid ?? 0, true);
  dv.setUint32(4, ((d.opcode << 24) | (d.flags ?? 0)) >>> 0, true);
  put64(b, 8, d.completion ?? 0n);
  put64(b, 16, d.a1 ?? 0n);
  put64(b, 24, d.a2 ?? 0n);
  dv.setUint32(32, d.size ?? 0, true);
  b[40] = d.expected ?? 0;
  return b;
}

/** Completion record flags software usually sets. */
export const RECORD = IDXD_OP_FLAG.CRAV | IDXD_OP_FLAG.RCR;

export interface Record {
  status: number;
  result: number;
  bytes: number;
  faultAddr: bigint;
  invalidFlags: number;
}

/** Decodes the completion record at physical address `pa`. */
export function record(r: Machine, pa: bigint): Record {
  const b = r.r.mem.readBytes(pa, CR_SIZE);
  const dv = new DataView(b.buffer);
  return {
    status: b[0]!,
    result: b[1]!,
    bytes: dv.getUint32(4, true),
    faultAddr: dv.getBigUint64(8, true),
    invalidFlags: dv.getUint32(16, true),
  };
}

/** An SVA address space for PASID `pasid`: a first-stage table, and a PD8 directory. */
export function svaSpace(
  r: DsaRig,
  o: { ats?: boolean; pri?: boolean; pasid?: number; ens?: boolean } = {},
): PageTable {
  const pdt = dcPasid(r, r.id, { ats: o.ats ?? false, pri: o.pri ?? false });
  const pt = pageTable(r);
  processContext(pdt, o.pasid ?? PASID, pt, { ens: o.ens ?? false });
  return pt;
}

/** Maps `pages` fresh frames at `va`; returns their physical addresses. */
export function mapPages(r: Machine, pt: PageTable, va: bigint, pages: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < pages; i++) {
    const pa = page(r);
    map(pt, va + BigInt(i) * 4096n, pa);
    out.push(pa);
  }
  return out;
}

/** Reads `len` bytes at `va` through `frames` (the physical pages mapped from page-aligned `base`). */
export function readVa(
  r: Machine,
  frames: bigint[],
  base: bigint,
  va: bigint,
  len: number,
): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    const off = va - base + BigInt(i);
    out[i] = r.r.mem.read8(frames[Number(off / 4096n)]! + (off % 4096n));
  }
  return out;
}

export function writeVa(
  r: Machine,
  frames: bigint[],
  base: bigint,
  va: bigint,
  data: Uint8Array,
): void {
  for (let i = 0; i < data.length; i++) {
    const off = va - base + BigInt(i);
    r.r.mem.write8(frames[Number(off / 4096n)]! + (off % 4096n), data[i]!);
  }
}
