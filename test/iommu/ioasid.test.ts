import { describe, expect, it } from "vitest";
import { createContext } from "../../src/base/context.js";
import { err, OK, ok, unwrap } from "../../src/base/result.js";
import { INVALID_IOASID } from "../../src/iommu/constants.js";
import { IoasidAllocator, type IoasidAllocatorOps, IoasidSet } from "../../src/iommu/ioasid.js";
import { platBed } from "./setup.js";

function allocator() {
  const ctx = createContext();
  return { ctx, ioasid: new IoasidAllocator(ctx.warnings) };
}

/** A para-virtual allocator that hands out ids from a host-side counter. */
function pvOps(start: number, log: string[] = []): IoasidAllocatorOps {
  let next = start;
  return {
    alloc: (min, max) => {
      log.push(`alloc ${min} ${max}`);
      return next <= max && next >= min ? next++ : INVALID_IOASID;
    },
    free: (id) => {
      log.push(`free ${id}`);
    },
    pdata: { host: true },
  };
}

describe("IOASID allocator (ioasid.c)", () => {
  it("allocates the lowest free id in [min, max] with private data, or INVALID_IOASID", () => {
    const { ioasid } = allocator();
    const sva = new IoasidSet("sva");
    expect(ioasid.alloc(sva, 1, 3, "a")).toBe(1);
    expect(ioasid.alloc(sva, 1, 3, "b")).toBe(2);
    expect(ioasid.alloc(null, 1, 3, "c")).toBe(3);
    expect(ioasid.alloc(sva, 1, 3, "d")).toBe(INVALID_IOASID);
    expect(ioasid.alloc(sva, 5, 4, "e")).toBe(INVALID_IOASID);
    expect(ioasid.find(sva, 2)).toEqual(ok("b"));
  });

  it("find: ENOENT when not allocated, EACCES for another set, any set with NULL, getter veto", () => {
    const { ioasid } = allocator();
    const a = new IoasidSet("a");
    const b = new IoasidSet("b");
    const id = ioasid.alloc(a, 10, 20, { mm: 1 });
    expect(ioasid.find(a, 99)).toEqual(err("ENOENT"));
    expect(ioasid.find(b, id)).toEqual(err("EACCES"));
    expect(ioasid.find(null, id)).toEqual(ok({ mm: 1 }));
    expect(ioasid.find(a, id, () => false)).toEqual(ok(null));
    expect(ioasid.setData(id, "new")).toEqual(OK);
    expect(ioasid.find(a, id)).toEqual(ok("new"));
    expect(ioasid.setData(99, "x")).toEqual(err("ENOENT"));
  });

  it("get/put count references; the last put frees; get of an unknown id WARNs", () => {
    const { ctx, ioasid } = allocator();
    const id = ioasid.alloc(null, 1, 100, null);
    ioasid.get(id);
    expect(ioasid.put(id)).toBe(false);
    expect(ioasid.find(null, id).ok).toBe(true);
    expect(ioasid.put(id)).toBe(true);
    expect(ioasid.find(null, id)).toEqual(err("ENOENT"));
    expect(ioasid.put(id)).toBe(false);
    ioasid.get(id);
    expect(ctx.warnings.list().map((w) => w.site)).toEqual(["ioasid_get"]);
    const again = ioasid.alloc(null, 1, 100, null);
    expect(again).toBe(id);
    ioasid.get(again);
    ioasid.free(again);
    expect(ioasid.find(null, again)).toEqual(err("ENOENT"));
  });

  it("custom allocators: EAGAIN while default ids are outstanding, then they take over", () => {
    const { ioasid } = allocator();
    const first = ioasid.alloc(null, 1, 10, null);
    const log: string[] = [];
    const pv = pvOps(100, log);
    expect(ioasid.registerAllocator(pv)).toEqual(err("EAGAIN"));
    ioasid.put(first);
    expect(ioasid.registerAllocator(pv)).toEqual(OK);
    expect(ioasid.customActive).toBe(true);
    expect(ioasid.registerAllocator(pv)).toEqual(err("EEXIST"));
    const id = ioasid.alloc(null, 1, 1000, "guest");
    expect(id).toBe(100);
    expect(ioasid.find(null, id)).toEqual(ok("guest"));
    expect(ioasid.put(id)).toBe(true);
    expect(log).toEqual(["alloc 1 1000", "free 100"]);
  });

  it("refuses a duplicate id from a custom allocator (freeing it back)", () => {
    const { ioasid } = allocator();
    const log: string[] = [];
    const ops: IoasidAllocatorOps = {
      alloc: () => 7,
      free: (id) => {
        log.push(`free ${id}`);
      },
      pdata: null,
    };
    unwrap(ioasid.registerAllocator(ops));
    expect(ioasid.alloc(null, 1, 10, null)).toBe(7);
    expect(ioasid.alloc(null, 1, 10, null)).toBe(INVALID_IOASID);
    expect(log).toEqual(["free 7"]);
  });

  it("allocators with the same helpers share one ID space; the next registered takes over on removal", () => {
    const { ctx, ioasid } = allocator();
    const a = pvOps(100);
    const shared: IoasidAllocatorOps = { alloc: a.alloc, free: a.free, pdata: "other" };
    const b = pvOps(500);
    unwrap(ioasid.registerAllocator(a));
    unwrap(ioasid.registerAllocator(shared));
    unwrap(ioasid.registerAllocator(b));
    const id = ioasid.alloc(null, 1, 1000, null);
    expect(id).toBe(100);
    // Removing one of the sharing ops keeps the outstanding ids.
    ioasid.unregisterAllocator(shared);
    expect(ioasid.find(null, id).ok).toBe(true);
    // Removing the last user of those helpers drops them (WARN: ids outstanding) and activates b.
    ioasid.unregisterAllocator(a);
    expect(ctx.warnings.list().map((w) => w.site)).toEqual(["ioasid_unregister_allocator"]);
    expect(ioasid.alloc(null, 1, 1000, null)).toBe(500);
    ioasid.unregisterAllocator(b);
    expect(ioasid.customActive).toBe(false);
    expect(ioasid.alloc(null, 1, 1000, null)).toBe(1);
  });
});

describe("PASID consumers (seed 002)", () => {
  it("init resolves the vendor range through the device's IOMMU; alloc clamps to it", () => {
    const b = platBed({ pasidRange: { min: 16, max: 31 } });
    const d = b.dev("d");
    const c = unwrap(b.core.pasidInit(d));
    expect([c.min, c.max]).toEqual([16, 31]);
    expect(b.core.pasidAlloc(c, 1, 1000, "x")).toEqual(ok(16));
    expect(b.core.pasidAlloc(c, 20, 25, "y")).toEqual(ok(20));
    expect(b.core.pasidAlloc(c, 40, 50, "z")).toEqual(err("EINVAL"));
    expect(b.core.pasidFind(c, 20)).toEqual(ok("y"));
    const none = platBed();
    const all = unwrap(none.core.pasidInit(none.dev("e")));
    expect([all.min, all.max]).toEqual([1, 0xffff_fffe]);
  });

  it("ENODEV for a device without an IOMMU; ENOSPC when the range is used up", () => {
    const b = platBed({ pasidRange: { min: 1, max: 2 } });
    const bare = b.dev("bare");
    b.model.deviceDel(bare);
    expect(b.core.pasidInit(bare)).toEqual(err("ENODEV"));
    const c = unwrap(b.core.pasidInit(b.dev("d")));
    unwrap(b.core.pasidAlloc(c, 1, 2, null));
    unwrap(b.core.pasidAlloc(c, 1, 2, null));
    expect(b.core.pasidAlloc(c, 1, 2, null)).toEqual(err("ENOSPC"));
  });

  it("each consumer only sees its own PASIDs (EACCES across consumers)", () => {
    const b = platBed();
    const d = b.dev("d");
    const c1 = unwrap(b.core.pasidInit(d, "c1"));
    const c2 = unwrap(b.core.pasidInit(d, "c2"));
    const p = unwrap(b.core.pasidAlloc(c1, 1, 100, "mine"));
    expect(b.core.pasidFind(c2, p)).toEqual(err("EACCES"));
    expect(b.core.pasidFind(c2, 77)).toEqual(err("ENOENT"));
    b.core.pasidFree(c2, p);
    expect(b.ctx.warnings.list().map((w) => w.site)).toEqual(["iommu_pasid_free"]);
    expect(b.core.pasidFind(c1, p)).toEqual(ok("mine"));
    b.core.pasidFree(c1, p);
    expect(b.core.pasidFind(c1, p)).toEqual(err("ENOENT"));
  });

  it("for_each visits in order and stops at the first error; exit frees everything", () => {
    const b = platBed();
    const c = unwrap(b.core.pasidInit(b.dev("d")));
    for (const v of ["a", "b", "c"]) unwrap(b.core.pasidAlloc(c, 1, 100, v));
    const seen: string[] = [];
    const r = b.core.pasidForEach(
      c,
      (id, priv, data: string[]) => {
        data.push(`${id}:${priv}`);
        return id === 2 ? -16 : 0;
      },
      seen,
    );
    expect(r).toBe(-16);
    expect(seen).toEqual(["1:a", "2:b"]);
    expect(b.core.pasidForEach(c, () => 0, null)).toBe(0);
    b.core.pasidExit(c);
    expect(b.core.ioasid.ids()).toEqual([]);
    expect(() => b.core.pasidAlloc(c, 1, 2, null)).toThrow(/exited/);
  });
});
