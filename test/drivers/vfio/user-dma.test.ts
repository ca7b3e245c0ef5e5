// User DMA through VFIO: a process's buffer pinned and mapped at an IOVA it chooses, a device
// DMAing to that IOVA, the process reading what the device wrote — through VFIO type1 (group and
// container) and through iommufd (device cdev and IOAS); then unmap, detach (the blocking domain)
// and release (the default domain). Plus each errno of MAP_DMA / UNMAP_DMA and IOAS map/unmap.

import { describe, expect, it } from "vitest";
import { err, ok, unwrap } from "../../../src/base/result.js";
import { VFIO_TYPE1v2_IOMMU } from "../../../src/drivers/vfio/group.js";
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IommufdCtx,
} from "../../../src/drivers/vfio/iommufd.js";
import {
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
} from "../../../src/drivers/vfio/type1.js";
import { IOMMU_DOMAIN_UNMANAGED } from "../../../src/iommu/constants.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../../src/mm/flags.js";
import type { MmStruct } from "../../../src/mm/mm-types.js";
import { vmMmap, vmMunmap } from "../../../src/mm/mmap.js";
import { doMprotect } from "../../../src/mm/mprotect.js";
import { BUF_PAGES, BUF_VA, bytes, type VfioRig, vfioMachine } from "./fixture.js";

const X = 0x1_0000_0000n;
const RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
const SIZE = BigInt(BUF_PAGES) * 4096n;

/** The frames the process's buffer maps now. */
function ptePpns(mm: MmStruct): number[] {
  const out: number[] = [];
  for (let i = 0; i < BUF_PAGES; i++) {
    const ppn = mm.pgtable.lookupPpn(Number(BUF_VA >> 12n) + i);
    if (ppn >= 0) out.push(ppn);
  }
  return out;
}

/** acc0 (isolated, behind iommu1) given to user space through the group path. */
function type1(r: VfioRig) {
  const vdev = r.bindVfio("acc0");
  const group = r.groupOf(vdev.dev);
  unwrap(vdev.group.open());
  const container = r.vfio.openContainer();
  unwrap(vdev.group.setContainer(container));
  return { vdev, group, container, dev: r.endpoint("acc0") };
}

describe("user DMA through VFIO type1", () => {
  it("the device writes at IOVA X, the process reads it; the process writes, the device reads", () => {
    const r = vfioMachine();
    const { group, container, dev } = type1(r);
    // Owned, no domain of the user's yet: the blocking domain stops everything.
    expect(group.domain).toBe(group.blockingDomain);
    expect(dev.write(X, bytes(8, 1)).ok).toBe(false);
    unwrap(container.setIommu(VFIO_TYPE1v2_IOMMU));
    expect(group.domain!.type).toBe(IOMMU_DOMAIN_UNMANAGED);
    // The buffer was never touched: mapping pins (faults in) its pages.
    expect(r.proc.mm!.pgtable.lookup(BUF_VA)).toBeNull();
    unwrap(container.mapDma(r.proc, BUF_VA, X, SIZE, RW));
    expect(r.proc.mm!.pgtable.lookup(BUF_VA)).not.toBeNull();
    const data = bytes(0x1800, 2);
    expect(dev.write(X + 0x800n, data)).toMatchObject({ ok: true, done: data.length });
    expect(r.m.cpu.load(r.proc.mm!, BUF_VA + 0x800n, data.length)).toEqual(ok(data));
    const back = bytes(64, 3);
    expect(r.m.cpu.store(r.proc.mm!, BUF_VA + 0x7000n, back).ok).toBe(true);
    expect(dev.read(X + 0x7000n, 64)).toMatchObject({ ok: true, data: back });
    // Outside the mapping: faults.
    expect(dev.write(X + SIZE, bytes(4, 4)).ok).toBe(false);
    r.invariants();
  });

  it("unmap stops the device; unsetting the container restores the default domain", () => {
    const r = vfioMachine();
    const { group, container, dev, vdev } = type1(r);
    unwrap(container.setIommu(VFIO_TYPE1v2_IOMMU));
    unwrap(container.mapDma(r.proc, BUF_VA, X, SIZE, RW));
    const userDomain = group.domain!;
    expect(container.unmapDma(X, SIZE)).toEqual(ok(SIZE));
    expect(dev.write(X, bytes(8, 5)).result).toMatch(/write_page_fault/);
    unwrap(vdev.group.unsetContainer());
    expect(userDomain.freed).toBe(true);
    expect(group.domain).toBe(group.defaultDomain);
    expect(group.toJSON()).toMatchObject({ owner_cnt: 0, owner: null });
    r.invariants();
  });

  it("closing the group with mappings in place unmaps and unpins them and drops the mm references", () => {
    const r = vfioMachine();
    const { group, container, vdev } = type1(r);
    unwrap(container.setIommu(VFIO_TYPE1v2_IOMMU));
    const count = r.proc.mm!.count;
    unwrap(container.mapDma(r.proc, BUF_VA, X, 0x2000n, RW));
    unwrap(container.mapDma(r.proc, BUF_VA + 0x2000n, X + 0x10000n, 0x1000n, RW));
    expect(r.proc.mm!.count).toBe(count + 2);
    const domain = group.domain!;
    vdev.group.close();
    expect(r.proc.mm!.count).toBe(count);
    expect(domain.freed).toBe(true);
    expect(group.domain).toBe(group.defaultDomain);
    r.invariants();
  });

  it("MAP_DMA errnos: EINVAL, EOVERFLOW, EEXIST, EFAULT; UNMAP_DMA: EINVAL for a bisected mapping", () => {
    const r = vfioMachine();
    const { container } = type1(r);
    expect(container.mapDma(r.proc, BUF_VA, X, SIZE, RW)).toEqual(err("EINVAL")); // no backend
    unwrap(container.setIommu(VFIO_TYPE1v2_IOMMU));
    expect(container.mapDma(r.proc, BUF_VA, X, 0n, RW)).toEqual(err("EINVAL"));
    expect(container.mapDma(r.proc, BUF_VA + 8n, X, 0x1000n, RW)).toEqual(err("EINVAL"));
    expect(container.mapDma(r.proc, BUF_VA, X + 8n, 0x1000n, RW)).toEqual(err("EINVAL"));
    expect(container.mapDma(r.proc, BUF_VA, (1n << 64n) - 0x1000n, 0x2000n, RW)).toEqual(
      err("EOVERFLOW"),
    );
    // Beyond the domain's aperture (Sv39/48/57 IOVA bits − 1).
    expect(container.mapDma(r.proc, BUF_VA, 1n << 62n, 0x1000n, RW)).toEqual(err("EINVAL"));
    // No VMA behind the user address.
    expect(container.mapDma(r.proc, 0x10_0000n, X, 0x1000n, RW)).toEqual(err("EFAULT"));
    unwrap(container.mapDma(r.proc, BUF_VA, X, 0x4000n, RW));
    expect(container.mapDma(r.proc, BUF_VA + 0x4000n, X + 0x3000n, 0x2000n, RW)).toEqual(
      err("EEXIST"),
    );
    expect(container.unmapDma(X + 0x1000n, 0x3000n)).toEqual(err("EINVAL"));
    expect(container.unmapDma(X, 0x2000n)).toEqual(err("EINVAL"));
    expect(container.unmapDma(X, 0n)).toEqual(err("EINVAL"));
    // A range with nothing in it unmaps nothing.
    expect(container.unmapDma(X + 0x10_0000n, 0x1000n)).toEqual(ok(0n));
    expect(container.unmapDma(X, 0x4000n)).toEqual(ok(0x4000n));
    r.invariants();
  });

  it("a read-only VMA: a device-readable mapping pins it, a device-writable one is EFAULT", () => {
    const r = vfioMachine();
    const { container } = type1(r);
    unwrap(container.setIommu(VFIO_TYPE1v2_IOMMU));
    unwrap(doMprotect(r.proc.mm!, BUF_VA, 0x1000n, PROT_READ));
    expect(container.mapDma(r.proc, BUF_VA, X, 0x1000n, VFIO_DMA_MAP_FLAG_WRITE)).toEqual(
      err("EFAULT"),
    );
    unwrap(container.mapDma(r.proc, BUF_VA, X, 0x1000n, VFIO_DMA_MAP_FLAG_READ));
    const dev = r.endpoint("acc0");
    expect(dev.read(X, 4).ok).toBe(true);
    expect(dev.write(X, bytes(4, 1)).ok).toBe(false);
  });

  it("munmap of a mapped range: the device still reaches the pinned frames with the old data, which no new mapping gets, until UNMAP_DMA frees them", () => {
    const r = vfioMachine();
    const { container, dev, group } = type1(r);
    unwrap(container.setIommu(VFIO_TYPE1v2_IOMMU));
    const mm = r.proc.mm!;
    const old = bytes(0x2000, 9);
    expect(r.m.cpu.store(mm, BUF_VA, old).ok).toBe(true);
    unwrap(container.mapDma(r.proc, BUF_VA, X, 0x2000n, RW));
    const frames = [0n, 0x1000n].map((o) => r.m.core.iovaToPhys(group.domain!, X + o));
    unwrap(vmMunmap(mm, BUF_VA, SIZE));
    expect(r.m.cpu.load(mm, BUF_VA, 1).ok).toBe(false);
    expect(dev.read(X, old.length)).toMatchObject({ ok: true, data: old });
    // The process maps and writes memory again: it gets other frames, the device keeps its own.
    unwrap(
      vmMmap(mm, BUF_VA, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
    );
    expect(r.m.cpu.store(mm, BUF_VA, bytes(0x2000, 10)).ok).toBe(true);
    for (const pa of frames) {
      const ppn = Number(pa >> 12n);
      expect(r.m.frames.isAllocated(ppn)).toBe(true);
      expect(r.m.mm.pages.pinCount(ppn)).toBe(1);
      expect(ptePpns(mm)).not.toContain(ppn);
    }
    expect(dev.read(X, old.length)).toMatchObject({ ok: true, data: old });
    const device = bytes(16, 11);
    expect(dev.write(X + 0x1000n, device).ok).toBe(true);
    expect(r.m.cpu.load(mm, BUF_VA + 0x1000n, 16)).not.toEqual(ok(device));
    // UNMAP_DMA unpins: the frames the process let go of are freed.
    const inUse = r.m.frames.framesInUse;
    expect(container.unmapDma(X, 0x2000n)).toEqual(ok(0x2000n));
    for (const pa of frames) expect(r.m.frames.isAllocated(Number(pa >> 12n))).toBe(false);
    expect(r.m.frames.framesInUse).toBe(inUse - 2);
    expect(r.m.mm.pages.toJSON()).toEqual({ pinned_frames: 0, orphaned_frames: 0 });
    r.invariants();
  });

  it("the process exits with its memory mapped: the frames stay for the device until the container goes", () => {
    const r = vfioMachine();
    const { container, dev, vdev } = type1(r);
    unwrap(container.setIommu(VFIO_TYPE1v2_IOMMU));
    const data = bytes(64, 12);
    expect(r.m.cpu.store(r.proc.mm!, BUF_VA, data).ok).toBe(true);
    unwrap(container.mapDma(r.proc, BUF_VA, X, 0x1000n, RW));
    const mm = r.proc.mm!;
    r.m.processes.exit(r.proc, 0);
    expect(mm.state).toBe("exited");
    expect(dev.read(X, 64)).toMatchObject({ ok: true, data });
    expect(r.m.mm.pages.toJSON()).toEqual({ pinned_frames: 1, orphaned_frames: 1 });
    vdev.group.close();
    expect(r.m.mm.pages.toJSON()).toEqual({ pinned_frames: 0, orphaned_frames: 0 });
    expect(mm.state).toBe("freed");
  });

  it("a device-readable mapping of untouched memory pins a private page (not the zero page): the process's later writes reach the device", () => {
    const r = vfioMachine();
    const { container, dev } = type1(r);
    unwrap(container.setIommu(VFIO_TYPE1v2_IOMMU));
    unwrap(container.mapDma(r.proc, BUF_VA, X, 0x1000n, VFIO_DMA_MAP_FLAG_READ));
    const data = bytes(32, 13);
    expect(r.m.cpu.store(r.proc.mm!, BUF_VA, data).ok).toBe(true);
    expect(dev.read(X, 32)).toMatchObject({ ok: true, data });
  });

  it("two groups of one IOMMU share a domain; a group behind another IOMMU gets its own, with the mappings replayed", () => {
    const r = vfioMachine();
    const acc = r.bindVfio("acc0");
    const legacy = r.bindVfio("legacy0");
    r.m.hotAdd("tb0");
    const tb = r.bindVfio("tb0");
    const c = r.vfio.openContainer();
    for (const v of [acc, legacy]) {
      unwrap(v.group.open());
      unwrap(v.group.setContainer(c));
    }
    unwrap(c.setIommu(VFIO_TYPE1v2_IOMMU));
    expect(c.iommu!.domains).toHaveLength(1);
    expect(r.groupOf(acc.dev).domain).toBe(r.groupOf(legacy.dev).domain);
    unwrap(c.mapDma(r.proc, BUF_VA, X, SIZE, RW));
    unwrap(tb.group.open());
    unwrap(tb.group.setContainer(c));
    expect(c.iommu!.domains).toHaveLength(2);
    const data = bytes(32, 6);
    expect(r.endpoint("tb0").write(X + 0x100n, data).ok).toBe(true);
    expect(r.m.cpu.load(r.proc.mm!, BUF_VA + 0x100n, 32)).toEqual(ok(data));
    expect(r.endpoint("acc0").read(X + 0x100n, 32)).toMatchObject({ ok: true, data });
    c.close();
    for (const v of [acc, legacy, tb]) {
      expect(r.groupOf(v.dev).domain).toBe(r.groupOf(v.dev).defaultDomain);
    }
    r.invariants();
  });
});

describe("user DMA through iommufd", () => {
  function bound(r: VfioRig) {
    const vdev = r.bindVfio("acc0");
    unwrap(vdev.openCdev());
    const ictx = new IommufdCtx(r.m.core);
    unwrap(vdev.bindIommufd(ictx));
    return { vdev, ictx, group: r.groupOf(vdev.dev), dev: r.endpoint("acc0") };
  }
  const MAP = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

  it("bind blocks DMA; attach brings a paging domain through a group attach handle; map, DMA, detach, close", () => {
    const r = vfioMachine();
    const { vdev, ictx, group, dev } = bound(r);
    expect(group.domain).toBe(group.blockingDomain);
    const ioas = ictx.ioasAlloc();
    // Mappings may come before the attach: the new domain is filled from the IOAS.
    unwrap(ictx.ioasMap(ioas, r.proc, BUF_VA, X, SIZE, MAP));
    expect(dev.write(X, bytes(8, 7)).ok).toBe(false);
    unwrap(vdev.attachIoasPt(ioas));
    const domain = group.domain!;
    expect(domain.type).toBe(IOMMU_DOMAIN_UNMANAGED);
    expect(group.toJSON()).toMatchObject({ pasid_array: [{ pasid: 0, kind: "handle" }] });
    const data = bytes(0x3000, 8);
    expect(dev.write(X + 0x1000n, data).ok).toBe(true);
    expect(r.m.cpu.load(r.proc.mm!, BUF_VA + 0x1000n, data.length)).toEqual(ok(data));
    unwrap(vdev.detachIoasPt());
    expect(group.domain).toBe(group.blockingDomain);
    expect(domain.freed).toBe(true);
    expect(group.toJSON()).toMatchObject({ pasid_array: [], owner: "iommufd" });
    vdev.closeCdev();
    expect(group.domain).toBe(group.defaultDomain);
    expect(group.toJSON()).toMatchObject({ owner_cnt: 0, owner: null });
    ictx.close();
    r.invariants();
  });

  it("IOAS errnos: EINVAL (no access, misaligned, beyond the aperture), EOVERFLOW, EEXIST, ENOENT; attach needs a bind", () => {
    const r = vfioMachine();
    const { vdev, ictx } = bound(r);
    const ioas = ictx.ioasAlloc();
    unwrap(vdev.attachIoasPt(ioas));
    const FIXED = IOMMU_IOAS_MAP_FIXED_IOVA;
    expect(ictx.ioasMap(ioas, r.proc, BUF_VA, X, 0x1000n, FIXED)).toEqual(err("EINVAL"));
    expect(ictx.ioasMap(ioas, r.proc, BUF_VA, X + 8n, 0x1000n, MAP)).toEqual(err("EINVAL"));
    expect(ictx.ioasMap(ioas, r.proc, BUF_VA, 1n << 62n, 0x1000n, MAP)).toEqual(err("EINVAL"));
    expect(ictx.ioasMap(ioas, r.proc, BUF_VA, (1n << 64n) - 0x1000n, 0x2000n, MAP)).toEqual(
      err("EOVERFLOW"),
    );
    unwrap(ictx.ioasMap(ioas, r.proc, BUF_VA, X, 0x2000n, MAP));
    expect(ictx.ioasMap(ioas, r.proc, BUF_VA, X + 0x1000n, 0x1000n, MAP)).toEqual(err("EEXIST"));
    expect(ictx.ioasUnmap(ioas, X, 0x1000n)).toEqual(err("ENOENT"));
    expect(ictx.ioasUnmap(ioas, X + 0x10000n, 0x1000n)).toEqual(err("ENOENT"));
    expect(ictx.ioasUnmap(ioas, X, 0x2000n)).toEqual(ok(0x2000n));
    const other = r.bindVfio("gpu0");
    unwrap(other.openCdev());
    expect(other.attachIoasPt(ioas)).toEqual(err("EINVAL"));
  });
});

describe("reserved IOVA ranges, limits and traces", () => {
  const RESV = 0x2_0000_0000n;
  function withReserved() {
    return vfioMachine({
      extends: "default",
      devices: {
        acc0: { reserved_regions: [{ type: "reserved", start: "0x200000000", size: "64K" }] },
      },
    });
  }

  it("type1: a mapping in a group's reserved range is EINVAL, and a group whose range holds a mapping cannot join (EINVAL, ownership released)", () => {
    const r = withReserved();
    const acc = r.bindVfio("acc0");
    const legacy = r.bindVfio("legacy0");
    const c = r.vfio.openContainer();
    unwrap(legacy.group.open());
    unwrap(legacy.group.setContainer(c));
    unwrap(c.setIommu(VFIO_TYPE1v2_IOMMU));
    unwrap(c.mapDma(r.proc, BUF_VA, RESV, 0x1000n, RW));
    unwrap(acc.group.open());
    expect(acc.group.setContainer(c)).toEqual(err("EINVAL"));
    const group = r.groupOf(acc.dev);
    expect(group.toJSON()).toMatchObject({ owner_cnt: 0, owner: null });
    expect(group.domain).toBe(group.defaultDomain);
    // Without that mapping the group joins, and the range is closed to new mappings.
    expect(c.unmapDma(RESV, 0x1000n)).toEqual(ok(0x1000n));
    unwrap(acc.group.setContainer(c));
    expect(c.mapDma(r.proc, BUF_VA, RESV + 0x8000n, 0x1000n, RW)).toEqual(err("EINVAL"));
    unwrap(c.mapDma(r.proc, BUF_VA, RESV + 0x10000n, 0x1000n, RW));
    r.invariants();
  });

  it("iommufd: a mapping in an attached device's reserved range is EINVAL", () => {
    const r = withReserved();
    const vdev = r.bindVfio("acc0");
    unwrap(vdev.openCdev());
    const ictx = new IommufdCtx(r.m.core);
    unwrap(vdev.bindIommufd(ictx));
    const ioas = ictx.ioasAlloc();
    unwrap(vdev.attachIoasPt(ioas));
    const MAP = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE;
    expect(ictx.ioasMap(ioas, r.proc, BUF_VA, RESV, 0x1000n, MAP)).toEqual(err("EINVAL"));
    unwrap(ictx.ioasMap(ioas, r.proc, BUF_VA, RESV + 0x10000n, 0x1000n, MAP));
  });

  it("ENOSPC past dma_entry_limit; every map and unmap is traced with its result", () => {
    const r = vfioMachine();
    const { container } = type1(r);
    unwrap(container.setIommu(VFIO_TYPE1v2_IOMMU));
    const rec = r.m.ctx.trace.record();
    unwrap(container.mapDma(r.proc, BUF_VA, X, 0x1000n, RW));
    container.iommu!.dmaAvail = 0;
    expect(container.mapDma(r.proc, BUF_VA + 0x1000n, X + 0x1000n, 0x1000n, RW)).toEqual(
      err("ENOSPC"),
    );
    unwrap(container.unmapDma(X, 0x1000n));
    expect(container.iommu!.dmaAvail).toBe(1);
    const events = rec.stop().filter((t) => t.event === "driver:vfio_dma");
    expect(events.map((t) => t.fields)).toEqual([
      { owner: container.name, op: "map", iova: X, size: 0x1000n, vaddr: BUF_VA, result: "ok" },
      {
        owner: container.name,
        op: "map",
        iova: X + 0x1000n,
        size: 0x1000n,
        vaddr: BUF_VA + 0x1000n,
        result: "ENOSPC",
      },
      { owner: container.name, op: "unmap", iova: X, size: 0x1000n, vaddr: null, result: "ok" },
    ]);
  });
});
