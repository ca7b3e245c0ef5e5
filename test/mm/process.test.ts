import { describe, expect, it } from "vitest";
import { ok } from "../../src/base/result.js";
import { SV57 } from "../../src/hw/pgtable/modes.js";
import { Cpu } from "../../src/mm/cpu.js";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../../src/mm/flags.js";
import { mmput } from "../../src/mm/fork.js";
import { mmdrop, mmgrab } from "../../src/mm/mm-refs.js";
import { MmuNotifier, type MmuNotifierOps } from "../../src/mm/mm-types.js";
import { vmMmap } from "../../src/mm/mmap.js";
import { mmuNotifierGet, mmuNotifierPut } from "../../src/mm/mmu-notifier.js";
import { getTaskMm, ProcessTable } from "../../src/mm/process.js";
import { machine, must } from "./helpers.js";

function table() {
  const m = machine();
  return { ...m, procs: new ProcessTable(m.sys) };
}

describe("processes", () => {
  it("hands out the lowest free pid and reuses reaped ones", () => {
    const { procs } = table();
    const a = must(procs.spawn("init"));
    const b = must(procs.spawn("app"));
    expect([a.pid, b.pid]).toEqual([1, 2]);
    procs.exit(b, 0); // no parent: reaped at once
    expect(procs.get(2)).toBeUndefined();
    expect(must(procs.spawn("next")).pid).toBe(2);
    expect(procs.list().map((p) => p.comm)).toEqual(["init", "next"]);
  });

  it("fails with EAGAIN when pids run out, and with ENOMEM when memory does", () => {
    const m = machine();
    const procs = new ProcessTable(m.sys, { pidMax: 3 });
    must(procs.spawn("a"));
    must(procs.spawn("b"));
    const used = m.frames.framesInUse;
    expect(procs.spawn("c")).toEqual({ ok: false, errno: "EAGAIN" });
    expect(m.frames.framesInUse).toBe(used);
    const more = new ProcessTable(m.sys);
    while (m.frames.alloc() >= 0);
    expect(more.spawn("d")).toEqual({ ok: false, errno: "ENOMEM" });
  });

  it("keeps an exited child a zombie until its parent waits for it", () => {
    const { procs } = table();
    const parent = must(procs.spawn("sh", { mode: SV57 }));
    const child = must(procs.fork(parent));
    expect(child.comm).toBe("sh");
    expect(child.mm!.pgtable.mode).toBe(SV57);
    expect(procs.wait(parent)).toEqual(ok(null));
    procs.exit(child, 3);
    expect(child.state).toBe("zombie");
    expect(child.mm).toBeNull();
    expect(procs.wait(parent, child.pid)).toEqual(ok({ pid: child.pid, code: 3 }));
    expect(child.state).toBe("reaped");
    expect(() => procs.wait(parent)).toThrow(/no child/);
  });

  it("orphans lose their parent and are reaped when they exit", () => {
    const { procs } = table();
    const parent = must(procs.spawn("sh"));
    const child = must(procs.fork(parent, "worker"));
    procs.exit(parent, 0);
    expect(child.parent).toBeNull();
    procs.exit(child, 0);
    expect(procs.list()).toEqual([]);
  });

  it("exits the mm before closing files, and a bound device keeps the mm until it lets go", () => {
    const { procs, sys, frames } = table();
    const baseline = frames.framesInUse;
    const task = must(procs.spawn("dsa-app"));
    const mm = task.mm!;
    const cpu = new Cpu(sys);
    const a = must(vmMmap(mm, 0n, 0x2000n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    expect(cpu.store64(mm, a, 1n, task).ok).toBe(true);
    expect(task.minFlt).toBe(1);

    // What an SVA bind holds: the domain's mmgrab and the driver's notifier.
    const log: string[] = [];
    const ops: MmuNotifierOps = {
      allocNotifier: () => ok(new MmuNotifier(ops)),
      release: () => log.push(`release (mm ${mm.state}, rss ${mm.rssAnon})`),
      freeNotifier: () => log.push("free_notifier"),
    };
    mmgrab(mm);
    const sub = must(mmuNotifierGet(ops, mm));
    sys.onFinalDrop(() => log.push("mm_pasid_drop"));
    task.openFile({
      name: "/dev/dsa/wq0.0",
      release: () => {
        log.push(`close (mm ${mm.state})`);
        mmuNotifierPut(sub);
        mmdrop(mm);
      },
    });

    const rec = sys.ctx.trace.record();
    procs.exit(task, 0);
    expect(log).toEqual(["release (mm live, rss 1)", "close (mm exited)"]);
    expect(mm.state).toBe("exited");
    sys.ctx.scheduler.settle();
    expect(log.slice(2)).toEqual(["free_notifier", "mm_pasid_drop"]);
    expect(mm.state).toBe("freed");
    expect(frames.framesInUse).toBe(baseline);
    expect(rec.stop().find((r) => r.event === "mm:process_exit")!.fields).toEqual({
      pid: task.pid,
      comm: "dsa-app",
      code: 0,
    });
  });

  it("closes files in fd order and gives the lowest free fd", () => {
    const { procs } = table();
    const task = must(procs.spawn("x"));
    const closed: string[] = [];
    const file = (name: string) => ({ name, release: () => closed.push(name) });
    expect(task.openFile(file("a"))).toBe(0);
    expect(task.openFile(file("b"))).toBe(1);
    task.closeFile(0);
    expect(task.openFile(file("c"))).toBe(0);
    expect(task.fds()).toEqual([0, 1]);
    procs.exit(task, 0);
    expect(closed).toEqual(["a", "c", "b"]);
    expect(() => task.openFile(file("d"))).toThrow(/cannot/);
  });

  it("get_task_mm takes a user reference until the task has exited", () => {
    const { procs } = table();
    const task = must(procs.spawn("x"));
    const mm = getTaskMm(task)!;
    expect(mm).toBe(task.mm);
    expect(mm.users).toBe(2);
    expect((mm.toJSON() as { pid: number }).pid).toBe(task.pid);
    procs.exit(task, 0);
    expect(mm.owner).toBeNull();
    // The reference keeps the address space itself alive past the exit.
    expect(mm.state).toBe("live");
    expect(getTaskMm(task)).toBeNull();
    mmput(mm);
    expect(mm.state).toBe("freed");
  });

  it("has a JSON view", () => {
    const { procs } = table();
    const p = must(procs.spawn("init"));
    const c = must(procs.fork(p, "child"));
    expect(procs.toJSON()).toEqual([
      {
        pid: 1,
        comm: "init",
        state: "running",
        mm: p.mm!.id,
        parent: null,
        children: [2],
        exit_code: null,
        min_flt: 0,
        maj_flt: 0,
        files: [],
      },
      {
        pid: 2,
        comm: "child",
        state: "running",
        mm: c.mm!.id,
        parent: 1,
        children: [],
        exit_code: null,
        min_flt: 0,
        maj_flt: 0,
        files: [],
      },
    ]);
  });
});
