// Random mmap / munmap / mprotect / touch / fork / exit sequences, checked after every step
// against an independent page-level model and the mm's invariants:
// - VMAs sorted, non-empty, non-overlapping, covering exactly the model's pages with its
//   permissions;
// - every PTE (read from memory) is a 4 KiB user entry inside a VMA: valid with permissions
//   within the VMA's (W ⇒ VM_WRITE, X ⇒ VM_EXEC, R ⇒ VM_READ or VM_WRITE), or PROT_NONE (V=0)
//   in a VMA without access; the special bit marks exactly the zero page; RSS matches;
// - every PTE that a munmap/mprotect removed, moved or downgraded was covered by a secondary
//   TLB invalidation during that call;
// - loads return what the model says was stored (private pages per mm, shared per object,
//   fork copies private data), stores and loads fault exactly where the model forbids them;
// - frames are accounted exactly: the zero page, page-table pages, private pages and shared
//   objects' pages, nothing else; after every mm has exited and been dropped, only the zero
//   page is left.

import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { PT_OK } from "../../src/hw/pgtable/page-table.js";
import { PTE_G, PTE_R, PTE_U, PTE_V, PTE_W, PTE_X } from "../../src/hw/pgtable/pte.js";
import { PteCursor } from "../../src/hw/pgtable/pte-cursor.js";
import { Cpu } from "../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  VM_EXEC,
  VM_READ,
  VM_WRITE,
} from "../../src/mm/flags.js";
import { dupMm, mmput } from "../../src/mm/fork.js";
import { type MmStruct, MmuNotifier } from "../../src/mm/mm-types.js";
import { vmMmap, vmMunmap } from "../../src/mm/mmap.js";
import { mmuNotifierRegister, mmuNotifierUnregister } from "../../src/mm/mmu-notifier.js";
import { doMprotect } from "../../src/mm/mprotect.js";
import { PAGE_SPECIAL } from "../../src/mm/pgprot.js";
import type { ShmemObject } from "../../src/mm/shmem.js";
import { machine, must, newMm } from "./helpers.js";

const WINDOW = 0x1000_0000n;
const PAGES = 8;
const page = (i: number) => WINDOW + BigInt(i) * 0x1000n;

type Op =
  | { k: "mmap"; mm: number; at: number; n: number; prot: number; shared: boolean; fixed: boolean }
  | { k: "munmap"; mm: number; at: number; n: number }
  | { k: "mprotect"; mm: number; at: number; n: number; prot: number }
  | { k: "load"; mm: number; at: number }
  | { k: "store"; mm: number; at: number; value: number }
  | { k: "verify"; mm: number }
  | { k: "fork"; mm: number }
  | { k: "exit"; mm: number };

const prot = fc.constantFrom(0, PROT_READ, PROT_READ | PROT_WRITE, PROT_WRITE, PROT_EXEC, 7);
const at = fc.integer({ min: 0, max: PAGES - 1 });
const n = fc.integer({ min: 1, max: 4 });
const mmIx = fc.nat(3);
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant("mmap" as const),
      mm: mmIx,
      at,
      n,
      prot,
      shared: fc.boolean(),
      fixed: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("munmap" as const), mm: mmIx, at, n }) },
  {
    weight: 3,
    arbitrary: fc.record({ k: fc.constant("mprotect" as const), mm: mmIx, at, n, prot }),
  },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("load" as const), mm: mmIx, at }) },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("store" as const),
      mm: mmIx,
      at,
      value: fc.integer({ min: 1, max: 0x7fff_ffff }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("verify" as const), mm: mmIx }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("fork" as const), mm: mmIx }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("exit" as const), mm: mmIx }) },
);

/** The model's view of one page of one mm. */
interface ModelPage {
  prot: number;
  /** Shared object id and page offset, or null for private memory. */
  obj: { id: number; off: number } | null;
}

interface ModelMm {
  readonly mm: MmStruct;
  readonly pages: Map<number, ModelPage>;
  /** Private data written, by page index. */
  readonly data: Map<number, bigint>;
  /** Ranges the secondary TLB was told to drop during the current call. */
  readonly invalidated: Array<[bigint, bigint]>;
  /** The recording subscription (it holds an mm_count reference). */
  sub: MmuNotifier | null;
}

test.prop([fc.array(op, { minLength: 1, maxLength: 60, size: "max" })], { numRuns: 200 })(
  "mm operations keep VMAs, PTEs, data and frame accounting consistent",
  (ops) => {
    const { sys, frames } = machine();
    const baseline = frames.framesInUse;
    const cpu = new Cpu(sys);
    const shared = new Map<number, Map<number, bigint>>();
    let objIds = 0;
    const mms: ModelMm[] = [];

    const adopt = (mm: MmStruct): ModelMm => {
      const m: ModelMm = { mm, pages: new Map(), data: new Map(), invalidated: [], sub: null };
      m.sub = new MmuNotifier({
        archInvalidateSecondaryTlbs: (_s, _mm, s, e) => m.invalidated.push([s, e]),
      });
      must(mmuNotifierRegister(m.sub, mm));
      mms.push(m);
      return m;
    };
    const exit = (m: ModelMm): void => {
      mmput(m.mm);
      mmuNotifierUnregister(m.sub!, m.mm);
      expect(m.mm.state).toBe("freed");
    };
    adopt(newMm(sys));

    for (const o of ops) {
      if (mms.length === 0) adopt(newMm(sys));
      const m = mms[o.mm % mms.length]!;
      const mm = m.mm;
      const before = snapshot(mm);
      m.invalidated.length = 0;
      switch (o.k) {
        case "mmap": {
          const n = Math.min(o.n, PAGES - o.at);
          const flags =
            (o.shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | (o.fixed ? MAP_FIXED : 0);
          const addr = must(vmMmap(mm, page(o.at), BigInt(n) * 0x1000n, o.prot, flags));
          if (addr < WINDOW || addr >= page(PAGES)) {
            // Placed outside the window (hint taken): out of the model's sight, so drop it.
            must(vmMunmap(mm, addr, BigInt(n) * 0x1000n));
            break;
          }
          const first = Number((addr - WINDOW) >> 12n);
          const id = ++objIds;
          if (o.shared) shared.set(id, new Map());
          for (let i = 0; i < n; i++) {
            if (!o.fixed) expect(m.pages.has(first + i)).toBe(false);
            m.pages.set(first + i, { prot: o.prot, obj: o.shared ? { id, off: i } : null });
            m.data.delete(first + i);
          }
          break;
        }
        case "munmap": {
          must(vmMunmap(mm, page(o.at), BigInt(o.n) * 0x1000n));
          for (let i = o.at; i < o.at + o.n; i++) {
            m.pages.delete(i);
            m.data.delete(i);
          }
          break;
        }
        case "mprotect": {
          const r = doMprotect(mm, page(o.at), BigInt(o.n) * 0x1000n, o.prot);
          let i = o.at;
          // The kernel changes VMAs from the start up to the first hole.
          while (i < o.at + o.n && m.pages.has(i)) m.pages.get(i++)!.prot = o.prot;
          expect(r.ok).toBe(i === o.at + o.n);
          break;
        }
        case "load":
        case "store": {
          const p = m.pages.get(o.at);
          const write = o.k === "store";
          const allowed =
            p !== undefined && (write ? p.prot & PROT_WRITE : p.prot & (PROT_READ | PROT_WRITE));
          const value = BigInt(o.k === "store" ? o.value : 0);
          const r = write ? cpu.store64(mm, page(o.at), value) : cpu.load64(mm, page(o.at));
          expect(r.ok).toBe(Boolean(allowed));
          if (!r.ok || p === undefined) break;
          const store = p.obj === null ? m.data : shared.get(p.obj.id)!;
          const key = p.obj === null ? o.at : p.obj.off;
          if (write) store.set(key, value);
          else expect(r.value).toBe(store.get(key) ?? 0n);
          break;
        }
        case "verify": {
          // Every readable page holds what the model says.
          for (const [i, p] of m.pages) {
            if ((p.prot & (PROT_READ | PROT_WRITE)) === 0) continue;
            const want = p.obj === null ? m.data.get(i) : shared.get(p.obj.id)!.get(p.obj.off);
            expect(cpu.load64(mm, page(i))).toEqual({ ok: true, value: want ?? 0n });
          }
          break;
        }
        case "fork": {
          const child = adopt(must(dupMm(mm)));
          for (const [i, p] of m.pages) child.pages.set(i, { ...p });
          for (const [i, v] of m.data) child.data.set(i, v);
          break;
        }
        case "exit": {
          exit(m);
          mms.splice(mms.indexOf(m), 1);
          break;
        }
      }
      sys.ctx.scheduler.settle();
      if (o.k !== "exit") {
        checkInvalidated(before, snapshot(mm), m.invalidated);
        checkMm(m);
      }
      checkFrames(sys, mms, baseline);
    }
    for (const m of mms.splice(0)) exit(m);
    sys.ctx.scheduler.settle();
    expect(frames.framesInUse).toBe(baseline);
  },
);

/** Valid leaves of the page table: address → [perm, ppn]. */
function snapshot(mm: MmStruct): Map<bigint, [number, bigint]> {
  const out = new Map<bigint, [number, bigint]>();
  if (mm.state !== "live") return out;
  for (const x of mm.pgtable.mappings()) out.set(x.va, [x.perm, x.pa]);
  return out;
}

/** Every removed, moved or downgraded PTE was covered by an invalidation. */
function checkInvalidated(
  before: Map<bigint, [number, bigint]>,
  after: Map<bigint, [number, bigint]>,
  ranges: Array<[bigint, bigint]>,
): void {
  for (const [va, [perm, pa]] of before) {
    const now = after.get(va);
    const lost =
      now === undefined || now[1] !== pa || (perm & ~now[0] & (PTE_R | PTE_W | PTE_X)) !== 0;
    if (lost) expect(ranges.some(([s, e]) => s <= va && va < e)).toBe(true);
  }
}

function checkMm(m: ModelMm): void {
  const mm = m.mm;
  const vmas = mm.vmas.toArray();
  for (let i = 0; i < vmas.length; i++) {
    const v = vmas[i]!;
    expect(v.startPage).toBeLessThan(v.endPage);
    if (i > 0) expect(vmas[i - 1]!.endPage).toBeLessThanOrEqual(v.startPage);
    expect(v.detached).toBe(false);
  }
  // VMAs cover exactly the model's pages, with its permissions.
  let covered = 0;
  for (const v of vmas) {
    for (let p = v.startPage; p < v.endPage; p++) {
      const i = Number((BigInt(p) << 12n) - WINDOW) >> 12;
      const mp = m.pages.get(i);
      expect(mp).toBeDefined();
      expect(v.flags & (VM_READ | VM_WRITE | VM_EXEC)).toBe(mp!.prot);
      expect(v.isShared).toBe(mp!.obj !== null);
      covered++;
    }
  }
  expect(covered).toBe(m.pages.size);
  // PTEs, read from the table: 4 KiB user entries inside VMAs. Valid ones have permissions
  // within the VMA's; PROT_NONE ones (V=0, G and R, frame kept) sit only in VMAs that allow no
  // access; the special bit marks exactly the zero page, which is never writable; RSS counts
  // every other PTE.
  let anon = 0;
  let shmem = 0;
  const cur = new PteCursor();
  expect(mm.pgtable.leafRange(cur, 0, mm.layout.taskSizePages)).toBe(PT_OK);
  while (mm.pgtable.nextLeaf(cur)) {
    expect(cur.pages).toBe(1);
    const vma = mm.vmas.lookup(cur.vpn);
    expect(vma).not.toBeNull();
    const f = vma!.flags;
    const pte = cur.flags;
    const special = (pte & PAGE_SPECIAL) !== 0;
    expect(special).toBe(cur.ppn === mm.sys.zeroPfn);
    if (cur.valid) {
      expect(pte & PTE_U).toBe(PTE_U);
      if (pte & PTE_W) expect(f & VM_WRITE).toBe(VM_WRITE);
      if (pte & PTE_X) expect(f & VM_EXEC).toBe(VM_EXEC);
      if (pte & PTE_R) expect(f & (VM_READ | VM_WRITE)).not.toBe(0);
      if (special) expect(pte & PTE_W).toBe(0);
    } else {
      expect(f & (VM_READ | VM_WRITE | VM_EXEC)).toBe(0);
      expect(pte & (PTE_G | PTE_R | PTE_W | PTE_X | PTE_U)).toBe(PTE_G | PTE_R);
    }
    if (special) continue;
    if (vma!.isShared) shmem++;
    else anon++;
  }
  expect([mm.rssAnon, mm.rssShmem]).toEqual([anon, shmem]);
  // The hardware's view is the valid PTEs alone.
  for (const x of mm.pgtable.mappings()) {
    expect(x.size).toBe(4096n);
    expect(x.perm & (PTE_V | PTE_U)).toBe(PTE_V | PTE_U);
  }
}

function checkFrames(
  sys: ReturnType<typeof machine>["sys"],
  mms: readonly ModelMm[],
  baseline: number,
): void {
  expect(sys.memory.pageU8(sys.zeroPfn)!.every((b) => b === 0)).toBe(true);
  let expected = baseline;
  const objects = new Set<ShmemObject>();
  for (const { mm } of mms) {
    expected += mm.pgtable.tablePages + mm.rssAnon;
    expect(mm.pgtable.deferredPages).toBe(0);
    for (const v of mm.vmas) if (v.shmem !== null) objects.add(v.shmem);
  }
  for (const o of objects) expected += o.nrPages;
  expect(sys.frames.framesInUse).toBe(expected);
}
