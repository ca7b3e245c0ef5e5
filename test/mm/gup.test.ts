// pin_user_pages_remote / unpin_user_pages: what a pin faults in (write pins, the read-only
// long-term unshare of the zero page), what it returns (the frames, a short count, an errno), and
// that a pinned frame outlives munmap, exit_mmap, the last put of a shmem object and mprotect
// until its last unpin — with the frames accounted exactly.

import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { PTE_D, PTE_W } from "../../src/hw/pgtable/pte.js";
import { Cpu } from "../../src/mm/cpu.js";
import {
  FOLL_FORCE,
  FOLL_GET,
  FOLL_LONGTERM,
  FOLL_NOFAULT,
  FOLL_PIN,
  FOLL_WRITE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/flags.js";
import { mmput } from "../../src/mm/fork.js";
import {
  folioMaybeDmaPinned,
  pinUserPagesRemote,
  unpinUserPage,
  unpinUserPages,
} from "../../src/mm/gup.js";
import { vmMmap, vmMunmap } from "../../src/mm/mmap.js";
import { doMprotect } from "../../src/mm/mprotect.js";
import { PAGE_SPECIAL } from "../../src/mm/pgprot.js";
import { machine, must, newMm, pteEntry } from "./helpers.js";

const ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
const RW = PROT_READ | PROT_WRITE;
const A = 0x40_0000n;
const LT_W = FOLL_LONGTERM | FOLL_WRITE;

function rig(pages = 4n, flags = ANON) {
  const m = machine();
  const mm = newMm(m.sys);
  must(vmMmap(mm, A, pages * 0x1000n, RW, flags));
  return { ...m, mm, cpu: new Cpu(m.sys) };
}

describe("pin_user_pages_remote faults pages in", () => {
  it("a write pin of untouched memory allocates the page, writable and dirty, and pins that frame", () => {
    const { sys, mm } = rig();
    const pages = must(pinUserPagesRemote(mm, A, 2, LT_W));
    expect(pages).toHaveLength(2);
    for (let i = 0; i < 2; i++) {
      const pte = pteEntry(mm, A + BigInt(i) * 0x1000n)!;
      expect(pte.ppn).toBe(pages[i]);
      expect(pte.flags & (PTE_W | PTE_D)).toBe(PTE_W | PTE_D);
      expect(sys.pages.pinCount(pages[i]!)).toBe(1);
    }
    expect(pteEntry(mm, A + 0x2000n)).toBeNull();
    expect(mm.rssAnon).toBe(2);
  });

  it("a write pin of the zero page breaks copy-on-write; of a written page, pins it as it is", () => {
    const { sys, mm, cpu } = rig();
    expect(cpu.load(mm, A, 1).ok).toBe(true);
    expect(pteEntry(mm, A)!.ppn).toBe(sys.zeroPfn);
    expect(cpu.store64(mm, A + 0x1000n, 0x55n).ok).toBe(true);
    const own = pteEntry(mm, A + 0x1000n)!.ppn;
    const pages = must(pinUserPagesRemote(mm, A, 2, LT_W));
    expect(pages[0]).not.toBe(sys.zeroPfn);
    expect(pteEntry(mm, A)!.ppn).toBe(pages[0]);
    expect(pages[1]).toBe(own);
  });

  it("a read-only long-term pin of the zero page unshares it: a private copy mapped read-only, which the process's writes then reach", () => {
    const { sys, mm, cpu, memory } = rig();
    // Untouched: the read fault maps the zero page, the unshare fault replaces it.
    const [ppn] = must(pinUserPagesRemote(mm, A, 1, FOLL_LONGTERM));
    expect(ppn).not.toBe(sys.zeroPfn);
    const pte = pteEntry(mm, A)!;
    expect(pte.ppn).toBe(ppn);
    expect(pte.flags & (PTE_W | PTE_D | PAGE_SPECIAL)).toBe(0);
    // The process's write reuses its own page: the pinned frame sees it.
    expect(cpu.store64(mm, A, 0xfeedn).ok).toBe(true);
    expect(pteEntry(mm, A)!.ppn).toBe(ppn);
    expect(memory.read64(BigInt(ppn!) << 12n)).toBe(0xfeedn);
  });

  it("a short-term read-only pin takes the zero page as it is (no unshare)", () => {
    const { sys, mm } = rig();
    const [ppn] = must(pinUserPagesRemote(mm, A, 1, 0));
    expect(ppn).toBe(sys.zeroPfn);
    expect(sys.pages.pinCount(sys.zeroPfn)).toBe(1);
    unpinUserPage(sys, ppn!);
    expect(sys.pages.pinCount(sys.zeroPfn)).toBe(0);
    expect(sys.frames.isAllocated(sys.zeroPfn)).toBe(true);
  });

  it("a shared mapping's read-only long-term pin takes the object's page (no copy)", () => {
    const { mm, cpu } = rig(2n, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED);
    const [ppn] = must(pinUserPagesRemote(mm, A, 1, FOLL_LONGTERM));
    expect(pteEntry(mm, A)!.ppn).toBe(ppn);
    expect(cpu.store64(mm, A, 9n).ok).toBe(true);
    expect(pteEntry(mm, A)!.ppn).toBe(ppn);
  });
});

describe("pin_user_pages_remote errors", () => {
  it("EFAULT without a VMA or without the VMA's permission; a failure after the first page is a short count", () => {
    const { sys, mm } = rig(2n);
    expect(pinUserPagesRemote(mm, A - 0x1000n, 1, LT_W)).toEqual({ ok: false, errno: "EFAULT" });
    // Pages 0 and 1 are mapped, page 2 is not.
    const pages = must(pinUserPagesRemote(mm, A, 3, LT_W));
    expect(pages).toHaveLength(2);
    unpinUserPages(sys, pages);
    must(doMprotect(mm, A, 0x1000n, PROT_READ));
    expect(pinUserPagesRemote(mm, A, 1, LT_W)).toEqual({ ok: false, errno: "EFAULT" });
    must(pinUserPagesRemote(mm, A, 1, FOLL_LONGTERM));
    must(doMprotect(mm, A + 0x1000n, 0x1000n, PROT_NONE));
    expect(pinUserPagesRemote(mm, A + 0x1000n, 1, FOLL_LONGTERM)).toEqual({
      ok: false,
      errno: "EFAULT",
    });
  });

  it("FOLL_NOFAULT: EFAULT where a fault would be needed; nr_pages 0 pins nothing", () => {
    const { mm, cpu } = rig();
    expect(pinUserPagesRemote(mm, A, 1, FOLL_NOFAULT | FOLL_WRITE)).toEqual({
      ok: false,
      errno: "EFAULT",
    });
    expect(cpu.store64(mm, A, 1n).ok).toBe(true);
    expect(must(pinUserPagesRemote(mm, A, 1, FOLL_NOFAULT | FOLL_WRITE))).toHaveLength(1);
    expect(must(pinUserPagesRemote(mm, A, 0, LT_W))).toEqual([]);
  });

  it("ENOMEM when no frame is left for the page", () => {
    const { frames, mm } = rig();
    must(pinUserPagesRemote(mm, A, 1, LT_W)); // the page-table pages exist now
    const hog: number[] = [];
    for (let p = frames.alloc(); p >= 0; p = frames.alloc()) hog.push(p);
    expect(pinUserPagesRemote(mm, A + 0x1000n, 1, LT_W)).toEqual({ ok: false, errno: "ENOMEM" });
  });

  it("EINVAL with a warning for FOLL_GET or an internal flag; unmodelled flags are a misuse", () => {
    const { ctx, mm } = rig();
    expect(pinUserPagesRemote(mm, A, 1, FOLL_GET)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pinUserPagesRemote(mm, A, 1, FOLL_PIN)).toEqual({ ok: false, errno: "EINVAL" });
    expect(ctx.warnings.take().map((w) => w.site)).toEqual([
      "is_valid_gup_args",
      "is_valid_gup_args",
    ]);
    expect(() => pinUserPagesRemote(mm, A, 1, FOLL_FORCE)).toThrow(/not modelled/);
    expect(() => pinUserPagesRemote(mm, A + 8n, 1, 0)).toThrow(/page address/);
  });
});

describe("a pinned frame outlives its mapping until the last unpin", () => {
  it("munmap: the PTE goes, the frame and its data stay, a new mapping gets another frame; the unpin frees it", () => {
    const { sys, frames, mm, cpu, memory } = rig();
    const [ppn] = must(pinUserPagesRemote(mm, A, 1, LT_W));
    expect(cpu.store64(mm, A, 0xabcdn).ok).toBe(true);
    const inUse = frames.framesInUse;
    must(vmMunmap(mm, A, 0x4000n));
    expect(pteEntry(mm, A)).toBeNull();
    expect(frames.isAllocated(ppn!)).toBe(true);
    expect(memory.read64(BigInt(ppn!) << 12n)).toBe(0xabcdn);
    expect(sys.pages.toJSON()).toEqual({ pinned_frames: 1, orphaned_frames: 1 });
    // Page tables emptied by the munmap may have gone; the pinned frame is still counted.
    const afterMunmap = frames.framesInUse;
    expect(afterMunmap).toBeLessThanOrEqual(inUse);
    must(vmMmap(mm, A, 0x1000n, RW, ANON));
    expect(cpu.store64(mm, A, 1n).ok).toBe(true);
    expect(pteEntry(mm, A)!.ppn).not.toBe(ppn);
    const withNew = frames.framesInUse;
    unpinUserPage(sys, ppn!);
    expect(frames.isAllocated(ppn!)).toBe(false);
    expect(frames.framesInUse).toBe(withNew - 1);
    expect(sys.pages.toJSON()).toEqual({ pinned_frames: 0, orphaned_frames: 0 });
    expect(() => unpinUserPage(sys, ppn!)).toThrow(/not pinned/);
  });

  it("exit: exit_mmap frees every unpinned page; the pinned ones go at their unpin", () => {
    const m = machine();
    const before = m.frames.framesInUse;
    const mm = newMm(m.sys);
    must(vmMmap(mm, A, 0x4000n, RW, ANON));
    const pages = must(pinUserPagesRemote(mm, A + 0x1000n, 2, LT_W));
    unpinUserPages(m.sys, must(pinUserPagesRemote(mm, A, 1, LT_W)));
    mmput(mm);
    expect(mm.state).toBe("freed");
    expect(m.frames.framesInUse).toBe(before + 2);
    for (const p of pages) expect(folioMaybeDmaPinned(m.sys, p)).toBe(true);
    unpinUserPages(m.sys, pages);
    expect(m.frames.framesInUse).toBe(before);
  });

  it("two pins: the frame goes with the second unpin, not the first", () => {
    const { sys, frames, mm } = rig();
    const [ppn] = must(pinUserPagesRemote(mm, A, 1, LT_W));
    must(pinUserPagesRemote(mm, A, 1, FOLL_LONGTERM));
    expect(sys.pages.pinCount(ppn!)).toBe(2);
    must(vmMunmap(mm, A, 0x1000n));
    unpinUserPage(sys, ppn!);
    expect(frames.isAllocated(ppn!)).toBe(true);
    unpinUserPage(sys, ppn!);
    expect(frames.isAllocated(ppn!)).toBe(false);
  });

  it("shmem: the object's last put leaves a pinned page to its pin", () => {
    const { sys, frames, mm } = rig(2n, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED);
    const [ppn] = must(pinUserPagesRemote(mm, A, 1, LT_W));
    unpinUserPages(sys, must(pinUserPagesRemote(mm, A + 0x1000n, 1, LT_W)));
    const other = pteEntry(mm, A + 0x1000n)!.ppn;
    must(vmMunmap(mm, A, 0x2000n));
    expect(frames.isAllocated(other)).toBe(false);
    expect(frames.isAllocated(ppn!)).toBe(true);
    unpinUserPage(sys, ppn!);
    expect(frames.isAllocated(ppn!)).toBe(false);
  });

  it("mprotect: PROT_NONE and back keeps the pinned frame mapped and allocated; the process and the pin share it", () => {
    const { sys, frames, mm, cpu, memory } = rig();
    const [ppn] = must(pinUserPagesRemote(mm, A, 1, LT_W));
    must(doMprotect(mm, A, 0x2000n, PROT_NONE));
    expect(pteEntry(mm, A)).toMatchObject({ valid: false, ppn });
    must(doMprotect(mm, A, 0x1000n, RW));
    expect(cpu.store64(mm, A, 0x77n).ok).toBe(true);
    expect(pteEntry(mm, A)!.ppn).toBe(ppn);
    expect(memory.read64(BigInt(ppn!) << 12n)).toBe(0x77n);
    must(vmMunmap(mm, A, 0x4000n));
    unpinUserPage(sys, ppn!);
    expect(frames.isAllocated(ppn!)).toBe(false);
  });
});

const step = fc.oneof(
  fc.record({
    op: fc.constant("pin" as const),
    page: fc.nat(7),
    n: fc.integer({ min: 1, max: 3 }),
    write: fc.boolean(),
  }),
  fc.record({ op: fc.constant("unpin" as const), which: fc.nat() }),
  fc.record({
    op: fc.constant("munmap" as const),
    page: fc.nat(7),
    n: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({
    op: fc.constant("mmap" as const),
    page: fc.nat(7),
    n: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({ op: fc.constant("store" as const), page: fc.nat(7), value: fc.nat() }),
);

test.prop([fc.array(step, { maxLength: 30 }), fc.boolean()], { numRuns: 60 })(
  "pins keep exactly their frames: allocated with their data while pinned, never the process's again once unmapped, all freed at the end",
  (steps, shared) => {
    const m = machine();
    const before = m.frames.framesInUse;
    const mm = newMm(m.sys);
    const kind = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_FIXED;
    must(vmMmap(mm, A, 0x8000n, RW, kind));
    const cpu = new Cpu(m.sys);
    /** Each pin: the frame pinned at each page. */
    const held: { page: number; ppn: number }[][] = [];
    /** What the process last stored at each page, and in each pinned frame it could reach. */
    const pageVal = new Map<number, bigint>();
    const data = new Map<number, bigint>();
    /** Pinned frames whose page was unmapped since: the process can never reach them again. */
    const gone = new Set<number>();
    const va = (page: number) => A + BigInt(page) * 0x1000n;
    const pinnedNow = () => new Set(held.flat().map((h) => h.ppn));
    /** munmap, or MAP_FIXED over, pages [page, end): the model's side. */
    const unmapped = (page: number, end: number) => {
      for (const h of held.flat()) {
        if (h.page >= page && h.page < end && pteEntry(mm, va(h.page))?.ppn === h.ppn) {
          gone.add(h.ppn);
        }
      }
      for (let p = page; p < end; p++) pageVal.delete(p);
    };
    for (const s of steps) {
      if (s.op === "pin") {
        const n = Math.min(s.n, 8 - s.page);
        const flags = FOLL_LONGTERM | (s.write ? FOLL_WRITE : 0);
        const r = pinUserPagesRemote(mm, va(s.page), n, flags);
        if (!r.ok) continue;
        const pin = r.value.map((ppn, i) => ({ page: s.page + i, ppn }));
        for (const h of pin) data.set(h.ppn, pageVal.get(h.page) ?? 0n);
        held.push(pin);
      } else if (s.op === "unpin") {
        if (held.length === 0) continue;
        const [pin] = held.splice(s.which % held.length, 1);
        unpinUserPages(
          m.sys,
          pin!.map((h) => h.ppn),
        );
        const still = pinnedNow();
        for (const h of pin!) {
          if (!still.has(h.ppn)) {
            data.delete(h.ppn);
            gone.delete(h.ppn);
          }
        }
      } else if (s.op === "munmap") {
        unmapped(s.page, s.page + s.n);
        must(vmMunmap(mm, va(s.page), BigInt(s.n) * 0x1000n));
      } else if (s.op === "mmap") {
        const n = Math.min(s.n, 8 - s.page);
        unmapped(s.page, s.page + n);
        must(vmMmap(mm, va(s.page), BigInt(n) * 0x1000n, RW, kind));
      } else if (s.op === "store") {
        const v = BigInt(s.value) + 1n;
        if (!cpu.store64(mm, va(s.page), v).ok) continue;
        pageVal.set(s.page, v);
        const ppn = pteEntry(mm, va(s.page))!.ppn;
        if (pinnedNow().has(ppn)) data.set(ppn, v);
      }
      for (const ppn of pinnedNow()) {
        expect(m.frames.isAllocated(ppn)).toBe(true);
        expect(m.memory.read64(BigInt(ppn) << 12n)).toBe(data.get(ppn) ?? 0n);
      }
      for (let page = 0; page < 8; page++) {
        const pte = pteEntry(mm, va(page));
        if (pte !== null) expect(gone.has(pte.ppn)).toBe(false);
      }
      // A private page goes with its PTE; a shared one stays in its object while another VMA
      // still holds the object, unreachable all the same.
      if (shared) expect(m.sys.pages.orphanedFrames).toBeLessThanOrEqual(gone.size);
      else expect(m.sys.pages.orphanedFrames).toBe(gone.size);
    }
    mmput(mm);
    for (const pin of held) {
      unpinUserPages(
        m.sys,
        pin.map((h) => h.ppn),
      );
    }
    expect(m.sys.pages.toJSON()).toEqual({ pinned_frames: 0, orphaned_frames: 0 });
    expect(m.frames.framesInUse).toBe(before);
  },
);
