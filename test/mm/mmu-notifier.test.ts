import { describe, expect, it } from "vitest";
import { err, ok } from "../../src/base/result.js";
import { Cpu } from "../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_POPULATE,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/flags.js";
import { mmput } from "../../src/mm/fork.js";
import { mmgrab } from "../../src/mm/mm-refs.js";
import { type MmStruct, MmuNotifier, type MmuNotifierOps } from "../../src/mm/mm-types.js";
import { vmMmap, vmMunmap } from "../../src/mm/mmap.js";
import {
  FLUSH_ALL_END,
  mmuNotifierGet,
  mmuNotifierPut,
  mmuNotifierRegister,
  mmuNotifierSynchronize,
  mmuNotifierUnregister,
} from "../../src/mm/mmu-notifier.js";
import { machine, must, newMm } from "./helpers.js";

const A = 0x40_0000n;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

function populated() {
  const m = machine();
  const mm = newMm(m.sys);
  must(vmMmap(mm, A, 0x4000n, PROT_READ | PROT_WRITE, ANON | MAP_POPULATE));
  return { ...m, mm };
}

/** A subscription that logs `name: call` for each callback. */
function logger(name: string, log: string[]): MmuNotifier {
  return new MmuNotifier({
    release: (_s, mm) => log.push(`${name}: release mm${mm.id}`),
    archInvalidateSecondaryTlbs: (_s, _mm, s, e) =>
      log.push(`${name}: tlb ${s.toString(16)}-${e === FLUSH_ALL_END ? "all" : e.toString(16)}`),
  });
}

describe("mmu notifier calls", () => {
  it("calls subscribers newest first (hlist_add_head), with the exact range", () => {
    const { mm } = populated();
    const log: string[] = [];
    must(mmuNotifierRegister(logger("first", log), mm));
    must(mmuNotifierRegister(logger("second", log), mm));
    vmMunmap(mm, A + 0x1000n, 0x2000n);
    expect(log).toEqual(["second: tlb 401000-403000", "first: tlb 401000-403000"]);
  });

  it("calls ->release at exit while the pages are still mapped, and nothing after", () => {
    const { mm, sys } = populated();
    const log: string[] = [];
    let rssAtRelease = -1;
    const sub = new MmuNotifier({
      release: (_s, m) => {
        rssAtRelease = m.rssAnon;
        log.push("release");
      },
      archInvalidateSecondaryTlbs: () => log.push("tlb"),
    });
    must(mmuNotifierRegister(sub, mm));
    const rec = sys.ctx.trace.record();
    mmput(mm);
    expect(log).toEqual(["release"]);
    expect(rssAtRelease).toBe(4);
    expect(sub.hashed).toBe(false);
    expect(mm.notifiers).toEqual([]);
    const events = rec.stop().map((r) => r.event);
    expect(events.indexOf("mm:release")).toBeLessThan(events.indexOf("mm:invalidate_range"));
    expect(events.at(-1)).toBe("mm:exit_mmap");
    // The registration's mm_count keeps the structure until unregister, which does not
    // call ->release again.
    expect(mm.state).toBe("exited");
    mmuNotifierUnregister(sub, mm);
    expect(log).toEqual(["release"]);
    expect(mm.state).toBe("freed");
  });

  it("unregister calls ->release itself when the mm is still alive", () => {
    const { mm } = populated();
    const log: string[] = [];
    const sub = logger("n", log);
    must(mmuNotifierRegister(sub, mm));
    expect(mm.count).toBe(2);
    mmuNotifierUnregister(sub, mm);
    expect(log).toEqual([`n: release mm${mm.id}`]);
    expect(mm.count).toBe(1);
    vmMunmap(mm, A, 0x1000n);
    expect(log).toHaveLength(1);
  });

  it("refuses registration on an mm without users (the kernel BUG_ONs)", () => {
    const { mm } = populated();
    mmgrab(mm);
    mmput(mm);
    expect(() => mmuNotifierRegister(new MmuNotifier({}), mm)).toThrow(/without users/);
  });
});

describe("mmu_notifier_get / put", () => {
  function opsFor(log: string[]): MmuNotifierOps {
    const ops: MmuNotifierOps = {
      allocNotifier: (mm: MmStruct) => {
        log.push(`alloc mm${mm.id}`);
        return ok(new MmuNotifier(ops));
      },
      freeNotifier: () => log.push("free"),
    };
    return ops;
  }

  it("shares one subscription per ops, and frees it in an SRCU callback after the last put", () => {
    const { mm, sys } = populated();
    const log: string[] = [];
    const ops = opsFor(log);
    const a = must(mmuNotifierGet(ops, mm));
    const b = must(mmuNotifierGet(ops, mm));
    expect(b).toBe(a);
    expect(a.users).toBe(2);
    expect(log).toEqual([`alloc mm${mm.id}`]);
    expect(mm.count).toBe(2);
    mmuNotifierPut(a);
    expect(mm.notifiers).toEqual([a]);
    mmuNotifierPut(a);
    // Unlinked at once (no ->release), freed later.
    expect(mm.notifiers).toEqual([]);
    expect(log).toEqual([`alloc mm${mm.id}`]);
    expect(mm.count).toBe(2);
    mmuNotifierSynchronize(sys);
    expect(log).toEqual([`alloc mm${mm.id}`, "free"]);
    expect(mm.count).toBe(1);
  });

  it("passes the allocator's error through", () => {
    const { mm } = populated();
    const ops: MmuNotifierOps = { allocNotifier: () => err("ENOMEM") };
    expect(mmuNotifierGet(ops, mm)).toEqual({ ok: false, errno: "ENOMEM" });
    expect(mm.count).toBe(1);
  });

  it("defers the final __mmdrop of an exited mm to the SRCU callback", () => {
    const { mm, sys } = populated();
    const ops: MmuNotifierOps = { allocNotifier: () => ok(new MmuNotifier(ops)) };
    const sub = must(mmuNotifierGet(ops, mm));
    const drops: number[] = [];
    sys.onFinalDrop((m) => drops.push(m.id));
    mmput(mm);
    mmuNotifierPut(sub);
    expect(drops).toEqual([]);
    sys.ctx.scheduler.settle();
    expect(drops).toEqual([mm.id]);
  });

  it("warns on a put without users", () => {
    const { mm, ctx } = populated();
    const ops: MmuNotifierOps = { allocNotifier: () => ok(new MmuNotifier(ops)) };
    const sub = must(mmuNotifierGet(ops, mm));
    mmuNotifierPut(sub);
    mmuNotifierPut(sub);
    expect(ctx.warnings.list().map((w) => w.site)).toEqual(["mmu_notifier_put"]);
  });
});

describe("secondary TLB invalidation", () => {
  it("is not called for faults that only add PTEs, and is for a COW that replaces one", () => {
    const { mm, sys } = populated();
    const cpu = new Cpu(sys);
    const log: string[] = [];
    must(mmuNotifierRegister(logger("n", log), mm));
    must(vmMmap(mm, A + 0x10_0000n, 0x2000n, PROT_READ | PROT_WRITE, ANON));
    cpu.load64(mm, A + 0x10_0000n);
    cpu.store64(mm, A + 0x10_1000n, 1n);
    expect(log).toEqual([]);
    cpu.store64(mm, A + 0x10_0000n, 1n); // zero page → own page
    expect(log).toEqual(["n: tlb 500000-501000"]);
  });
});
