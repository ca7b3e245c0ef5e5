// SVA on the mock driver (core §6): every errno path of iommu_sva_bind_device, bond and domain
// reference counts, domain reuse per IOMMU instance, and the PASID's lifetime (freed at the
// final mmdrop only).

import { describe, expect, it } from "vitest";
import { SimError } from "../../src/base/errors.js";
import { err, OK, unwrap } from "../../src/base/result.js";
import { Device } from "../../src/bus/device.js";
import { checkCore } from "../../src/check/invariants.js";
import { MockSvaDomain } from "../../src/drivers/mock/mock-domain.js";
import {
  IOMMU_DOMAIN_SVA,
  IOMMU_DOMAIN_UNMANAGED,
  IOMMU_PASID_INVALID,
} from "../../src/iommu/constants.js";
import { IommuAttachHandle } from "../../src/iommu/domain.js";
import { IOMMU_SVA_BIND_SUPERVISOR, IommuMmData, IommuSva } from "../../src/iommu/sva.js";
import { initMm } from "../../src/mm/init-mm.js";
import { traceFields } from "./setup.js";
import { type SvaBed, svaBed } from "./sva-setup.js";

function clean(b: SvaBed): void {
  expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  expect(b.ctx.warnings.list()).toEqual([]);
}

const allocs = (b: SvaBed) => b.mock.log.filter((l) => l.startsWith("domain_alloc_sva"));

describe("iommu_sva_bind_device", () => {
  it("first bind: iommu_mm with a global PASID, a new SVA domain holding the mm, the bond in pasid_array", () => {
    const b = svaBed();
    const d = b.pdev("d");
    const p = b.spawn();
    const mm = p.mm!;
    expect(mm.iommuMm).toBeNull();
    expect(b.core.mmGetPasid(mm)).toBe(IOMMU_PASID_INVALID);
    const count = mm.count;
    const rec = b.ctx.trace.record();
    const bond = unwrap(b.core.svaBindDevice(d, mm));
    expect(bond).toBeInstanceOf(IommuSva);
    expect(mm.iommuMm).toBeInstanceOf(IommuMmData);
    const pasid = b.core.svaGetPasid(bond);
    expect(pasid).toBe(1);
    expect(b.core.mmGetPasid(mm)).toBe(1);
    const dom = bond.domain!;
    expect(dom).toBeInstanceOf(MockSvaDomain);
    expect(dom.type).toBe(IOMMU_DOMAIN_SVA);
    expect(dom.cookieType).toBe("SVA");
    expect(dom.mm).toBe(mm);
    expect(dom.users).toBe(1);
    expect(dom.owner).toBe(b.mock.ops);
    expect(dom.iopfHandler).not.toBeNull();
    expect(mm.count).toBe(count + 1);
    expect(bond.users).toBe(1);
    expect(bond.dev).toBe(d);
    expect(unwrap(b.core.attachHandleGet(b.core.groupOf(d)!, pasid, IOMMU_DOMAIN_SVA))).toBe(bond);
    expect(b.mock.pasidDomain(d, pasid)).toBe(dom);
    expect((mm.iommuMm as IommuMmData).svaDomains).toEqual([dom]);
    const r = rec.stop();
    expect(traceFields(r, "iommu_core:sva_bind")).toEqual([
      { device: "d", mm: mm.id, pasid: 1, result: "0" },
    ]);
    expect(traceFields(r, "iommu_core:pasid_alloc")).toEqual([{ pasid: 1, device: "d" }]);
    clean(b);
  });

  it("a second bind of the same (device, mm) returns the same bond with one more user; unbinds balance", () => {
    const b = svaBed();
    const d = b.pdev("d");
    const mm = b.spawn().mm!;
    const bond = unwrap(b.core.svaBindDevice(d, mm));
    const calls = b.mock.log.length;
    const again = unwrap(b.core.svaBindDevice(d, mm));
    expect(again).toBe(bond);
    expect(bond.users).toBe(2);
    expect(bond.domain!.users).toBe(1);
    // No driver call at all for the extra reference.
    expect(b.mock.log.length).toBe(calls);
    clean(b);
    const dom = bond.domain!;
    b.core.svaUnbindDevice(bond);
    expect(bond.users).toBe(1);
    expect(b.mock.pasidDomain(d, 1)).toBe(dom);
    expect(dom.freed).toBe(false);
    clean(b);
    const rec = b.ctx.trace.record();
    b.core.svaUnbindDevice(bond);
    expect(traceFields(rec.stop(), "iommu_core:sva_unbind")).toEqual([
      { device: "d", mm: mm.id, pasid: 1 },
    ]);
    expect(bond.users).toBe(0);
    expect(b.mock.pasidDomain(d, 1)).toBeUndefined();
    expect(b.core.attachHandleGet(b.core.groupOf(d)!, 1, 0)).toEqual(err("ENOENT"));
    expect(dom.freed).toBe(true);
    expect((mm.iommuMm as IommuMmData).svaDomains).toEqual([]);
    // The PASID stays with the mm.
    expect(b.core.mmGetPasid(mm)).toBe(1);
    expect(b.core.toJSON()).toMatchObject({ global_pasids: [1] });
    expect(() => b.core.svaUnbindDevice(bond)).toThrow(SimError);
    clean(b);
  });

  it("ENODEV for a device without an IOMMU group", () => {
    const b = svaBed();
    const lone = new Device("lone", b.platform);
    b.model.deviceAdd(lone);
    expect(b.core.svaBindDevice(lone, b.spawn().mm!)).toEqual(err("ENODEV"));
  });

  it("EBUSY when the architecture says the mm's page tables are not DMA-compatible (x86 LAM)", () => {
    const b = svaBed();
    const d = b.pdev("d");
    const mm = b.spawn().mm!;
    b.core.setArchPgtableDmaCompat((m) => m !== mm);
    expect(b.core.svaBindDevice(d, mm)).toEqual(err("EBUSY"));
    expect(mm.iommuMm).toBeNull();
    expect(b.core.svaBindDevice(d, b.spawn("other").mm!).ok).toBe(true);
  });

  it("ENOSPC when the global allocator has no PASID for the device (none supported, or all taken)", () => {
    const b = svaBed();
    const mm = b.spawn().mm!;
    // pasid-num-bits 0: max_pasids 1, no PASID above 0.
    expect(b.core.svaBindDevice(b.pdev("narrow", { pasidBits: 0 }), mm)).toEqual(err("ENOSPC"));
    const two = b.pdev("two", { pasidBits: 1 });
    expect(b.core.allocGlobalPasid(two)).toBe(1);
    expect(b.core.svaBindDevice(two, mm)).toEqual(err("ENOSPC"));
    expect(mm.iommuMm).toBeNull();
    clean(b);
  });

  it("EOVERFLOW when the mm's PASID does not fit the device; the PASID stays allocated after a failed bind", () => {
    const b = svaBed();
    const wide = b.pdev("wide");
    const narrow = b.pdev("narrow", { pasidBits: 2 });
    for (let i = 0; i < 4; i++) b.core.allocGlobalPasid(wide);
    const mm = b.spawn().mm!;
    unwrap(b.core.svaBindDevice(wide, mm));
    expect(b.core.mmGetPasid(mm)).toBe(5);
    expect(b.core.svaBindDevice(narrow, mm)).toEqual(err("EOVERFLOW"));
    // A bind that fails after the PASID was set up keeps it.
    const other = b.spawn("other").mm!;
    b.mock.faults.arm({ op: "domain_alloc_sva", nth: 1, errno: "ENOMEM" });
    expect(b.core.svaBindDevice(wide, other)).toEqual(err("ENOMEM"));
    expect(b.core.mmGetPasid(other)).toBe(6);
    clean(b);
  });

  it("EBUSY when the PASID holds another mm's SVA bond (a PASID used twice is a bug, seed 001)", () => {
    const b = svaBed();
    const x = b.pdev("x");
    const mmA = b.spawn("a").mm!;
    const mmB = b.spawn("b").mm!;
    const bondB = unwrap(b.core.svaBindDevice(x, mmB));
    expect(b.core.svaGetPasid(bondB)).toBe(1);
    // The bug: PASID 1 goes back to the allocator while B still uses it; A then gets it.
    b.core.freeGlobalPasid(1);
    const y = b.pdev("y");
    unwrap(b.core.svaBindDevice(y, mmA));
    expect(b.core.mmGetPasid(mmA)).toBe(1);
    expect(b.core.svaBindDevice(x, mmA)).toEqual(err("EBUSY"));
    expect(bondB.users).toBe(1);
  });

  it("EBUSY at once when the PASID holds a handle of a non-SVA domain (no domain is tried)", () => {
    const b = svaBed();
    const x = b.pdev("x");
    const y = b.pdev("y");
    const mm = b.spawn().mm!;
    unwrap(b.core.svaBindDevice(x, mm));
    const paging = unwrap(b.core.pagingDomainAlloc(y));
    expect(b.core.attachDevicePasid(paging, y, 1, new IommuAttachHandle("iommufd"))).toEqual(OK);
    const before = allocs(b).length;
    const pasidCalls = b.mock.log.filter((l) => l.startsWith("set_dev_pasid")).length;
    expect(b.core.svaBindDevice(y, mm)).toEqual(err("EBUSY"));
    expect(allocs(b).length).toBe(before);
    expect(b.mock.log.filter((l) => l.startsWith("set_dev_pasid")).length).toBe(pasidCalls);
    expect(paging.type).toBe(IOMMU_DOMAIN_UNMANAGED);
    clean(b);
  });

  it("a domain-tagged PASID reads as free: the existing domains fail with EBUSY, a temporary SVA domain is allocated and freed, EBUSY", () => {
    const b = svaBed();
    const x = b.pdev("x");
    const y = b.pdev("y");
    const mm = b.spawn().mm!;
    const bondX = unwrap(b.core.svaBindDevice(x, mm));
    const shared = bondX.domain!;
    // A kernel DMA-with-PASID user took PASID 1 on y without a handle (and without allocating it).
    const dma = unwrap(b.core.pagingDomainAlloc(y));
    expect(b.core.attachDevicePasid(dma, y, 1, null)).toEqual(OK);
    const rec = b.ctx.trace.record();
    expect(b.core.svaBindDevice(y, mm)).toEqual(err("EBUSY"));
    const r = rec.stop();
    const tried = traceFields(r, "iommu_core:attach_device_pasid");
    const temp = traceFields(r, "iommu_core:domain_alloc");
    expect(temp).toHaveLength(1);
    expect(tried).toEqual([
      { device: "y", pasid: 1, domain: shared.id, result: "-EBUSY" },
      { device: "y", pasid: 1, domain: temp[0]!.domain, result: "-EBUSY" },
    ]);
    expect(traceFields(r, "iommu_core:domain_free")).toEqual([
      { domain: temp[0]!.domain, type: "SVA" },
    ]);
    expect(shared.users).toBe(1);
    expect(b.mock.pasidDomain(y, 1)).toBe(dma);
    clean(b);
  });

  it("devices of one instance share the mm's domain; the last unbind frees it", () => {
    const b = svaBed();
    const a = b.pdev("a");
    const c = b.pdev("c");
    const mm = b.spawn().mm!;
    const ba = unwrap(b.core.svaBindDevice(a, mm));
    const bc = unwrap(b.core.svaBindDevice(c, mm));
    expect(bc).not.toBe(ba);
    expect(bc.domain).toBe(ba.domain);
    const dom = ba.domain!;
    expect(dom.users).toBe(2);
    expect(allocs(b)).toHaveLength(1);
    expect(b.mock.pasidDomain(c, 1)).toBe(dom);
    clean(b);
    b.core.svaUnbindDevice(ba);
    expect(dom.users).toBe(1);
    expect(dom.freed).toBe(false);
    expect(b.mock.pasidDomain(a, 1)).toBeUndefined();
    clean(b);
    b.core.svaUnbindDevice(bc);
    expect(dom.freed).toBe(true);
    clean(b);
  });

  it("another IOMMU instance gets its own domain, put at the head of the mm's list; scanning skips the refusals", () => {
    const b = svaBed();
    const a = b.pdev("a");
    const z = b.pdev("z", { instance: 1 });
    const e = b.pdev("e");
    const mm = b.spawn().mm!;
    const da = unwrap(b.core.svaBindDevice(a, mm)).domain!;
    const dz = unwrap(b.core.svaBindDevice(z, mm)).domain!;
    expect(dz).not.toBe(da);
    expect((dz as MockSvaDomain).instance).toBe("iommu1");
    expect((mm.iommuMm as IommuMmData).svaDomains).toEqual([dz, da]);
    b.mock.log.length = 0;
    const be = unwrap(b.core.svaBindDevice(e, mm));
    expect(be.domain).toBe(da);
    // The instance-1 domain was offered first and refused (EINVAL), then the shared one taken.
    expect(b.mock.log.filter((l) => l.startsWith("set_dev_pasid"))).toEqual([
      `set_dev_pasid e 1 ${dz.id} old=null`,
      `set_dev_pasid e 1 ${da.id} old=null`,
    ]);
    expect(da.users).toBe(2);
    expect(dz.users).toBe(1);
    clean(b);
  });

  it("attach failures while scanning are ignored; a failing attach of the new domain frees it and fails the bind", () => {
    const b = svaBed();
    const a = b.pdev("a");
    const c = b.pdev("c");
    const mm = b.spawn().mm!;
    const da = unwrap(b.core.svaBindDevice(a, mm)).domain!;
    b.mock.faults.arm({ op: "set_dev_pasid", nth: 1, errno: "EIO", filter: (i) => i.dev === c });
    const bc = unwrap(b.core.svaBindDevice(c, mm));
    expect(bc.domain).not.toBe(da);
    expect((mm.iommuMm as IommuMmData).svaDomains).toEqual([bc.domain, da]);
    clean(b);
    const f = b.pdev("f");
    b.mock.faults.arm({
      op: "set_dev_pasid",
      nth: 1,
      errno: "ENOMEM",
      times: 3,
      filter: (i) => i.dev === f,
    });
    const rec = b.ctx.trace.record();
    expect(b.core.svaBindDevice(f, mm)).toEqual(err("ENOMEM"));
    const r = rec.stop();
    const made = traceFields(r, "iommu_core:domain_alloc");
    expect(made).toHaveLength(1);
    expect(traceFields(r, "iommu_core:domain_free")).toEqual([
      { domain: made[0]!.domain, type: "SVA" },
    ]);
    expect((mm.iommuMm as IommuMmData).svaDomains).toHaveLength(2);
    clean(b);
  });

  it("EOPNOTSUPP when the driver has no domain_alloc_sva; driver allocation errors come back as they are", () => {
    const b = svaBed({ sva: false });
    const mm = b.spawn().mm!;
    expect(b.core.svaBindDevice(b.pdev("d"), mm)).toEqual(err("EOPNOTSUPP"));
    const c = svaBed();
    c.mock.faults.arm({ op: "domain_alloc_sva", nth: 1, errno: "ENOMEM" });
    expect(c.core.svaBindDevice(c.pdev("d"), c.spawn().mm!)).toEqual(err("ENOMEM"));
    clean(c);
  });
});

describe("PASID lifetime (core §6.5)", () => {
  it("the PASID survives unbind and exit, and is freed at the final mmdrop (the SVA domain's mmgrab)", () => {
    const b = svaBed();
    const d = b.pdev("d");
    const p = b.spawn();
    const mm = p.mm!;
    const bond = unwrap(b.core.svaBindDevice(d, mm));
    b.core.svaUnbindDevice(bond);
    expect(b.core.mmGetPasid(mm)).toBe(1);
    const again = unwrap(b.core.svaBindDevice(d, mm));
    expect(b.core.svaGetPasid(again)).toBe(1);
    // Exit with the device still bound: the address space goes, the structure and PASID stay.
    b.procs.exit(p);
    expect(mm.state).toBe("exited");
    expect(b.core.mmGetPasid(mm)).toBe(1);
    expect(b.core.toJSON()).toMatchObject({ global_pasids: [1] });
    clean(b);
    const rec = b.ctx.trace.record();
    b.core.svaUnbindDevice(again);
    const r = rec.stop();
    expect(mm.state).toBe("freed");
    expect(traceFields(r, "iommu_core:pasid_free")).toEqual([{ pasid: 1 }]);
    // __mmdrop runs while the domain is freed: the PASID goes back after the domain does.
    const order = r
      .filter((x) => ["iommu_core:domain_free", "iommu_core:pasid_free"].includes(x.event))
      .map((x) => x.event);
    expect(order).toEqual(["iommu_core:pasid_free", "iommu_core:domain_free"]);
    expect(b.core.toJSON()).toMatchObject({ global_pasids: [], sva_mms: [] });
    // The next mm can have the PASID.
    expect(b.core.svaGetPasid(unwrap(b.core.svaBindDevice(d, b.spawn("next").mm!)))).toBe(1);
    clean(b);
  });

  it("an mm that exits unbound frees its PASID at exit's final drop", () => {
    const b = svaBed();
    const d = b.pdev("d");
    const p = b.spawn();
    const mm = p.mm!;
    b.core.svaUnbindDevice(unwrap(b.core.svaBindDevice(d, mm)));
    b.procs.exit(p);
    expect(mm.state).toBe("freed");
    expect(b.core.toJSON()).toMatchObject({ global_pasids: [] });
    clean(b);
  });

  it("a fork child starts with no iommu_mm and gets a PASID of its own", () => {
    const b = svaBed();
    const d = b.pdev("d");
    const parent = b.spawn();
    const bp = unwrap(b.core.svaBindDevice(d, parent.mm!));
    const child = unwrap(b.procs.fork(parent));
    expect(child.mm!.iommuMm).toBeNull();
    expect(b.core.mmGetPasid(child.mm!)).toBe(IOMMU_PASID_INVALID);
    const bc = unwrap(b.core.svaBindDevice(d, child.mm!));
    expect(b.core.svaGetPasid(bc)).toBe(2);
    expect(bc.domain).not.toBe(bp.domain);
    expect(bc.domain!.mm).toBe(child.mm);
    clean(b);
  });
});

describe("supervisor SVA (historical IOMMU_SVA_BIND_SUPERVISOR, seed 003)", () => {
  function kernelBed(config: Parameters<typeof svaBed>[0] = { svaSupervisor: true }) {
    const b = svaBed(config);
    b.core.setMmSubsystem(b.sys);
    return { ...b, initMm: initMm(b.sys) };
  }

  it("binds the mm subsystem's init_mm, created on first use", () => {
    const b = svaBed({ svaSupervisor: true });
    expect(b.core.initMm).toBeNull();
    b.core.setMmSubsystem(b.sys);
    expect(b.core.initMm).toBeNull();
    const bond = unwrap(b.core.svaBindDevice(b.pdev("a"), null, IOMMU_SVA_BIND_SUPERVISOR));
    const kernel = initMm(b.sys);
    expect(bond.domain!.mm).toBe(kernel);
    expect(b.core.initMm).toBe(kernel);
    expect(kernel.kernel).toBe(true);
    // The domain's mmgrab and the driver's notifier come on top of init_mm's own references.
    expect(kernel.count).toBeGreaterThan(1);
    b.core.svaUnbindDevice(bond);
    expect([kernel.users, kernel.count]).toEqual([2, 1]);
    clean(b);
  });

  it("binds init_mm through the driver's supervisor op, at init_mm's own PASID", () => {
    const b = kernelBed();
    const a = b.pdev("a");
    const c = b.pdev("c");
    const bond = unwrap(b.core.svaBindDevice(a, null, IOMMU_SVA_BIND_SUPERVISOR));
    const dom = bond.domain as MockSvaDomain;
    expect(dom.supervisor).toBe(true);
    expect(dom.mm).toBe(b.initMm);
    expect(b.core.svaGetPasid(bond)).toBe(1);
    expect(b.mock.log).toContain("domain_alloc_sva_supervisor a");
    // Another device shares the supervisor domain; a user bind gets another PASID and domain.
    expect(unwrap(b.core.svaBindDevice(c, null, IOMMU_SVA_BIND_SUPERVISOR)).domain).toBe(dom);
    const user = unwrap(b.core.svaBindDevice(a, b.spawn().mm!));
    expect(b.core.svaGetPasid(user)).toBe(2);
    expect((user.domain as MockSvaDomain).supervisor).toBe(false);
    clean(b);
  });

  it("EOPNOTSUPP where the driver cannot, EINVAL with a user mm; misuse throws", () => {
    const no = kernelBed({});
    const d = no.pdev("d");
    expect(no.core.svaBindDevice(d, null, IOMMU_SVA_BIND_SUPERVISOR)).toEqual(err("EOPNOTSUPP"));
    expect(no.core.logs()).toContainEqual({
      level: "err",
      device: "d",
      message: "Supervisor PASID not supported",
    });
    const b = kernelBed();
    const e = b.pdev("e");
    expect(b.core.svaBindDevice(e, b.spawn().mm!, IOMMU_SVA_BIND_SUPERVISOR)).toEqual(
      err("EINVAL"),
    );
    expect(() => b.core.svaBindDevice(e, null, 0x2)).toThrow(SimError);
    expect(() => b.core.svaBindDevice(e, null)).toThrow(SimError);
    const bare = svaBed({ svaSupervisor: true });
    expect(() => bare.core.svaBindDevice(bare.pdev("x"), null, IOMMU_SVA_BIND_SUPERVISOR)).toThrow(
      /init_mm/,
    );
  });
});
