// Test rig for the RISC-V IOMMU: a machine's RAM, an IOMMU, and helpers that build every
// in-memory structure by hand with raw 64-bit writes at addresses computed here from the spec's
// formats (not with the model's own decoders), program registers through MMIO only, and read
// queue records back from memory.

import { createContext, type SimContext } from "../../../src/base/context.js";
import { FrameAllocator, PhysicalMemory } from "../../../src/hw/memory.js";
import {
  AtsCompletion,
  AtsRequest,
  DmaRequest,
  DmaResponse,
  type EndpointPort,
  type InvalidationRequest,
  type PrgResponse,
} from "../../../src/hw/pci/translation-agent.js";
import type { IommuCapabilities, IommuConfig } from "../../../src/hw/riscv-iommu/capabilities.js";
import { RiscvIommu } from "../../../src/hw/riscv-iommu/iommu.js";

export const RAM_BASE = 0x8000_0000n;
export const RAM_SIZE = 64n << 20n;
/** First page of the optional 1 MiB of RAM at 4 GiB. */
export const HIGH_RAM_PPN = 0x10_0000n;

// ---- register offsets (spec "Register layout") ----
export const R = {
  capabilities: 0,
  fctl: 8,
  ddtp: 16,
  cqb: 24,
  cqh: 32,
  cqt: 36,
  fqb: 40,
  fqh: 48,
  fqt: 52,
  pqb: 56,
  pqh: 64,
  pqt: 68,
  cqcsr: 72,
  fqcsr: 76,
  pqcsr: 80,
  ipsr: 84,
  tr_req_iova: 600,
  tr_req_ctl: 608,
  tr_response: 616,
  iommu_qosid: 624,
  icvec: 760,
  msi_cfg_tbl: 768,
} as const;

export const MODE = { Off: 0n, Bare: 1n, LVL1: 2n, LVL2: 3n, LVL3: 4n } as const;

export interface Rig {
  readonly ctx: SimContext;
  readonly mem: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly iommu: RiscvIommu;
  /** A zeroed page's physical address. */
  page(): bigint;
  /** `count` contiguous zeroed pages aligned to `align` pages. */
  pages(count: number, align?: number): bigint;
}

export function rig(
  caps: Partial<IommuCapabilities> = {},
  config: Omit<IommuConfig, "capabilities"> = {},
  highRam = false,
): Rig {
  const ctx = createContext({ seed: 7 });
  const regions = [{ base: RAM_BASE, size: RAM_SIZE }];
  if (highRam) regions.push({ base: HIGH_RAM_PPN << 12n, size: 1n << 20n });
  const mem = new PhysicalMemory(regions);
  const frames = new FrameAllocator(mem);
  const iommu = new RiscvIommu(ctx, mem, "iommu0", { ...config, capabilities: caps });
  return {
    ctx,
    mem,
    frames,
    iommu,
    page: () => BigInt(frames.alloc()) << 12n,
    pages: (count, align = 1) => BigInt(frames.allocContiguous(count, align)) << 12n,
  };
}

// ---- queues ----

export interface Queues {
  cq: bigint;
  fq: bigint;
  pq: bigint;
  cqEntries: number;
  fqEntries: number;
  pqEntries: number;
}

/** Programs and enables the CQ, FQ (and PQ) the way "Guidelines for initialization" says. */
export function enableQueues(r: Rig, log2: { cq?: number; fq?: number; pq?: number } = {}): Queues {
  const io = r.iommu;
  const cqL = log2.cq ?? 6;
  const fqL = log2.fq ?? 6;
  const pqL = log2.pq ?? 6;
  const cq = r.pages(Math.max(1, (16 << cqL) / 4096), Math.max(1, (16 << cqL) / 4096));
  const fq = r.pages(Math.max(1, (32 << fqL) / 4096), Math.max(1, (32 << fqL) / 4096));
  io.write64(R.cqb, ((cq >> 12n) << 10n) | BigInt(cqL - 1));
  io.write32(R.cqt, 0);
  io.write32(R.cqcsr, 1);
  io.write64(R.fqb, ((fq >> 12n) << 10n) | BigInt(fqL - 1));
  io.write32(R.fqh, 0);
  io.write32(R.fqcsr, 1);
  let pq = 0n;
  if (io.caps.ATS) {
    pq = r.pages(Math.max(1, (16 << pqL) / 4096), Math.max(1, (16 << pqL) / 4096));
    io.write64(R.pqb, ((pq >> 12n) << 10n) | BigInt(pqL - 1));
    io.write32(R.pqh, 0);
    io.write32(R.pqcsr, 1);
  }
  return { cq, fq, pq, cqEntries: 1 << cqL, fqEntries: 1 << fqL, pqEntries: 1 << pqL };
}

/** Writes commands at `cqt` and advances it (the IOMMU processes them in the write). */
export function submit(r: Rig, q: Queues, ...cmds: Array<[bigint, bigint]>): void {
  let t = r.iommu.read32(R.cqt);
  for (const [d0, d1] of cmds) {
    r.mem.write64(q.cq + BigInt(t) * 16n, d0);
    r.mem.write64(q.cq + BigInt(t) * 16n + 8n, d1);
    t = (t + 1) % q.cqEntries;
  }
  r.iommu.write32(R.cqt, t);
}

// ---- command encodings ("IOMMU command opcodes" and the operand layouts) ----

export interface InvalOps {
  av?: boolean;
  pscv?: boolean;
  gv?: boolean;
  nl?: boolean;
  s?: boolean;
  pscid?: number;
  gscid?: number;
  /** ADDR[63:12] as a page number. */
  addrPage?: number;
}

function iotinval(func3: bigint, o: InvalOps): [bigint, bigint] {
  const d0 =
    1n |
    (func3 << 7n) |
    (o.av ? 1n << 10n : 0n) |
    (BigInt(o.pscid ?? 0) << 12n) |
    (o.pscv ? 1n << 32n : 0n) |
    (o.gv ? 1n << 33n : 0n) |
    (o.nl ? 1n << 34n : 0n) |
    (BigInt(o.gscid ?? 0) << 44n);
  const d1 = (BigInt(o.addrPage ?? 0) << 10n) | (o.s ? 1n << 9n : 0n);
  return [d0, d1];
}

export const cmd = {
  vma: (o: InvalOps = {}) => iotinval(0n, o),
  gvma: (o: InvalOps = {}) => iotinval(1n, o),
  fence: (
    o: {
      av?: boolean;
      wsi?: boolean;
      pr?: boolean;
      pw?: boolean;
      data?: number;
      addr?: bigint;
    } = {},
  ): [bigint, bigint] => [
    2n |
      (o.av ? 1n << 10n : 0n) |
      (o.wsi ? 1n << 11n : 0n) |
      (o.pr ? 1n << 12n : 0n) |
      (o.pw ? 1n << 13n : 0n) |
      (BigInt(o.data ?? 0) << 32n),
    (o.addr ?? 0n) >> 2n,
  ],
  inval_ddt: (did?: number): [bigint, bigint] => [
    3n | (did !== undefined ? (1n << 33n) | (BigInt(did) << 40n) : 0n),
    0n,
  ],
  inval_pdt: (did: number, pid: number): [bigint, bigint] => [
    3n | (1n << 7n) | (BigInt(pid) << 12n) | (1n << 33n) | (BigInt(did) << 40n),
    0n,
  ],
  ats_inval: (
    rid: number,
    o: { pid?: number; dseg?: number; g?: boolean; s?: boolean; addrPage?: number } = {},
  ): [bigint, bigint] => [
    4n |
      (o.pid !== undefined ? (BigInt(o.pid) << 12n) | (1n << 32n) : 0n) |
      (o.dseg !== undefined ? (1n << 33n) | (BigInt(o.dseg) << 56n) : 0n) |
      (BigInt(rid) << 40n),
    (o.g ? 1n : 0n) | (o.s ? 1n << 11n : 0n) | (BigInt(o.addrPage ?? 0) << 12n),
  ],
  ats_prgr: (rid: number, prgi: number, code: number, pid?: number): [bigint, bigint] => [
    4n |
      (1n << 7n) |
      (pid !== undefined ? (BigInt(pid) << 12n) | (1n << 32n) : 0n) |
      (BigInt(rid) << 40n),
    (BigInt(prgi) << 32n) | (BigInt(code) << 44n),
  ],
};

// ---- fault records ----

export interface Fault {
  cause: number;
  pid: number;
  pv: boolean;
  priv: boolean;
  ttyp: number;
  did: number;
  reserved: bigint;
  iotval: bigint;
  iotval2: bigint;
}

/** Decodes the record at index `i` of the FQ from memory ("Fault-queue record"). */
export function faultAt(r: Rig, q: Queues, i: number): Fault {
  const a = q.fq + BigInt(i) * 32n;
  const h = r.mem.read64(a);
  return {
    cause: Number(h & 0xfffn),
    pid: Number((h >> 12n) & 0xfffffn),
    pv: ((h >> 32n) & 1n) === 1n,
    priv: ((h >> 33n) & 1n) === 1n,
    ttyp: Number((h >> 34n) & 0x3fn),
    did: Number(h >> 40n),
    reserved: r.mem.read64(a + 8n),
    iotval: r.mem.read64(a + 16n),
    iotval2: r.mem.read64(a + 24n),
  };
}

/** Records between fqh and fqt, consumed (fqh advanced). */
export function takeFaults(r: Rig, q: Queues): Fault[] {
  const out: Fault[] = [];
  let h = r.iommu.read32(R.fqh);
  const t = r.iommu.read32(R.fqt);
  while (h !== t) {
    out.push(faultAt(r, q, h));
    h = (h + 1) % q.fqEntries;
  }
  r.iommu.write32(R.fqh, h);
  return out;
}

// ---- device directory ----

export interface DcFields {
  tc?: bigint;
  iohgatp?: bigint;
  ta?: bigint;
  fsc?: bigint;
  msiptp?: bigint;
  msiMask?: bigint;
  msiPattern?: bigint;
  reserved7?: bigint;
}

export const TC = {
  V: 1n,
  EN_ATS: 2n,
  EN_PRI: 4n,
  T2GPA: 8n,
  DTF: 16n,
  PDTV: 32n,
  PRPR: 64n,
  GADE: 128n,
  SADE: 256n,
  DPE: 512n,
  SBE: 1024n,
  SXL: 2048n,
} as const;

/** iosatp / pdtp / PC.fsc / msiptp: MODE 63:60, PPN 43:0. */
export function atp(mode: number, ppn: bigint): bigint {
  return (BigInt(mode) << 60n) | ppn;
}

export function iohgatp(mode: number, gscid: number, ppn: bigint): bigint {
  return (BigInt(mode) << 60n) | (BigInt(gscid) << 44n) | ppn;
}

export function dcTa(pscid: number): bigint {
  return BigInt(pscid) << 12n;
}

/**
 * A device directory built by hand: root page plus non-leaf pages allocated on demand. `levels`
 * 1-3; base (32-byte DC) or extended (64-byte) format.
 */
export class Ddt {
  readonly root: bigint;
  constructor(
    readonly r: Rig,
    readonly levels: 1 | 2 | 3,
    readonly extended = false,
  ) {
    this.root = r.page();
  }

  /** Sets ddtp to this table. */
  install(): void {
    const mode = this.levels === 1 ? MODE.LVL1 : this.levels === 2 ? MODE.LVL2 : MODE.LVL3;
    this.r.iommu.write64(R.ddtp, ((this.root >> 12n) << 10n) | mode);
  }

  /** Address of the DC of `did` (building non-leaf entries as needed). */
  dcAddress(did: number): bigint {
    const b0 = this.extended ? 6 : 7;
    const ddi = [did & ((1 << b0) - 1), (did >> b0) & 0x1ff, did >> (b0 + 9)];
    let a = this.root;
    for (let i = this.levels - 1; i > 0; i--) {
      const e = a + BigInt(ddi[i]!) * 8n;
      let v = this.r.mem.read64(e);
      if ((v & 1n) === 0n) {
        v = ((this.r.page() >> 12n) << 10n) | 1n;
        this.r.mem.write64(e, v);
      }
      a = ((v >> 10n) & ((1n << 44n) - 1n)) << 12n;
    }
    return a + BigInt(ddi[0]!) * (this.extended ? 64n : 32n);
  }

  /** Writes the DC of `did` (unspecified doublewords are 0). */
  writeDc(did: number, f: DcFields): bigint {
    const a = this.dcAddress(did);
    const dws = [f.tc ?? 0n, f.iohgatp ?? 0n, f.ta ?? 0n, f.fsc ?? 0n];
    if (this.extended)
      dws.push(f.msiptp ?? 0n, f.msiMask ?? 0n, f.msiPattern ?? 0n, f.reserved7 ?? 0n);
    for (const [i, v] of dws.entries()) this.r.mem.write64(a + BigInt(i) * 8n, v);
    return a;
  }

  /** The non-leaf entry address at `level` (2 or 1) for `did`. */
  nonLeafAddress(did: number, level: number): bigint {
    const b0 = this.extended ? 6 : 7;
    const ddi = [did & ((1 << b0) - 1), (did >> b0) & 0x1ff, did >> (b0 + 9)];
    let a = this.root;
    for (let i = this.levels - 1; i > level; i--) {
      const v = this.r.mem.read64(a + BigInt(ddi[i]!) * 8n);
      a = ((v >> 10n) & ((1n << 44n) - 1n)) << 12n;
    }
    return a + BigInt(ddi[level]!) * 8n;
  }
}

/**
 * A process directory built by hand (PD8 = 1 level, PD17 = 2, PD20 = 3). `toSpa` maps the
 * table's own (guest) physical addresses to where they live, for two-stage set-ups.
 */
export class Pdt {
  readonly root: bigint;
  constructor(
    readonly r: Rig,
    readonly levels: 1 | 2 | 3,
  ) {
    this.root = r.page();
  }

  get mode(): number {
    return this.levels;
  }

  pcAddress(pid: number): bigint {
    const pdi = [pid & 0xff, (pid >> 8) & 0x1ff, pid >> 17];
    let a = this.root;
    for (let i = this.levels - 1; i > 0; i--) {
      const e = a + BigInt(pdi[i]!) * 8n;
      let v = this.r.mem.read64(e);
      if ((v & 1n) === 0n) {
        v = ((this.r.page() >> 12n) << 10n) | 1n;
        this.r.mem.write64(e, v);
      }
      a = ((v >> 10n) & ((1n << 44n) - 1n)) << 12n;
    }
    return a + BigInt(pdi[0]!) * 16n;
  }

  writePc(pid: number, ta: bigint, fsc: bigint): bigint {
    const a = this.pcAddress(pid);
    this.r.mem.write64(a, ta);
    this.r.mem.write64(a + 8n, fsc);
    return a;
  }
}

export function pcTa(o: { v?: boolean; ens?: boolean; sum?: boolean; pscid?: number }): bigint {
  return (
    (o.v === false ? 0n : 1n) |
    (o.ens ? 2n : 0n) |
    (o.sum ? 4n : 0n) |
    (BigInt(o.pscid ?? 0) << 12n)
  );
}

// ---- page tables by hand (RV64 PTE: V R W X U G A D, PPN 53:10) ----

export const P = { V: 1n, R: 2n, W: 4n, X: 8n, U: 16n, G: 32n, A: 64n, D: 128n } as const;
export const RW_AD = P.R | P.W | P.A | P.D;
/** A user read/write page (requests without a PASID are User-mode requests). */
export const URW = RW_AD | P.U;

/**
 * A first-stage (levels 3/4/5) or G-stage (x4) page table written PTE by PTE. Table pages come
 * from `r.page()`; addresses written into PTEs are physical (identity G-stage set-ups make them
 * valid GPAs too).
 */
export class RawPt {
  readonly root: bigint;
  constructor(
    readonly r: Rig,
    readonly levels: number,
    readonly x4 = false,
  ) {
    this.root = x4 ? r.pages(4, 4) : r.page();
  }

  get rootPpn(): bigint {
    return this.root >> 12n;
  }

  /** Maps the page containing `va` to `pa` with a leaf at `level` (0 = 4 KiB). */
  map(va: bigint, pa: bigint, perm: bigint, level = 0, extraHi = 0n): bigint {
    let table = this.root;
    for (let i = this.levels - 1; i > level; i--) {
      const e = table + this.index(va, i) * 8n;
      let v = this.r.mem.read64(e);
      if ((v & 1n) === 0n) {
        v = ((this.r.page() >> 12n) << 10n) | P.V;
        this.r.mem.write64(e, v);
      }
      table = ((v >> 10n) & ((1n << 44n) - 1n)) << 12n;
    }
    const e = table + this.index(va, level) * 8n;
    this.r.mem.write64(e, ((pa >> 12n) << 10n) | perm | P.V | extraHi);
    return e;
  }

  /** Address of the leaf PTE for `va` at `level`. */
  pteAddress(va: bigint, level = 0): bigint {
    let table = this.root;
    for (let i = this.levels - 1; i > level; i--) {
      const v = this.r.mem.read64(table + this.index(va, i) * 8n);
      table = ((v >> 10n) & ((1n << 44n) - 1n)) << 12n;
    }
    return table + this.index(va, level) * 8n;
  }

  index(va: bigint, level: number): bigint {
    const bits = level === this.levels - 1 && this.x4 ? 11n : 9n;
    return (va >> (12n + 9n * BigInt(level))) & ((1n << bits) - 1n);
  }
}

/** A G-stage Sv39x4 table mapping guest RAM 1:1 with one 1 GiB leaf (GPA == SPA). */
export function identityGStage(r: Rig, perm = RW_AD | P.X | P.U): RawPt {
  const g = new RawPt(r, 3, true);
  g.map(RAM_BASE, RAM_BASE, perm, 2);
  return g;
}

// ---- requests ----

export function dma(
  did: number,
  iova: bigint,
  access: "read" | "write" | "execute" = "read",
  o: { pasid?: number; priv?: boolean; translated?: boolean } = {},
): DmaRequest {
  const q = new DmaRequest();
  q.deviceId = did;
  q.access = access;
  q.pasidValid = o.pasid !== undefined;
  q.pasid = o.pasid ?? 0;
  q.privileged = o.priv ?? false;
  q.translated = o.translated ?? false;
  return q.setIova(iova);
}

export function translate(r: Rig, req: DmaRequest): DmaResponse {
  const out = new DmaResponse();
  r.iommu.translate(req, out);
  return out;
}

export function ats(
  r: Rig,
  did: number,
  iova: bigint,
  o: { pasid?: number; priv?: boolean; exe?: boolean; nw?: boolean } = {},
): AtsCompletion {
  const q = new AtsRequest();
  q.deviceId = did;
  q.pasidValid = o.pasid !== undefined;
  q.pasid = o.pasid ?? 0;
  q.privileged = o.priv ?? false;
  q.executeRequested = o.exe ?? false;
  q.noWrite = o.nw ?? false;
  q.setIova(iova);
  const out = new AtsCompletion();
  r.iommu.atsTranslate(q, out);
  return out;
}

/** An endpoint port that records what it receives and can answer invalidations at once. */
export class RecordingPort implements EndpointPort {
  readonly invalidations: InvalidationRequest[] = [];
  readonly responses: PrgResponse[] = [];
  autoComplete: ((m: InvalidationRequest) => void) | null = null;

  invalidationRequest(msg: InvalidationRequest): void {
    this.invalidations.push(msg);
    this.autoComplete?.(msg);
  }

  prgResponse(msg: PrgResponse): void {
    this.responses.push(msg);
  }
}
