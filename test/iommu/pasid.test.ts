import { describe, expect, it } from "vitest";
import { err, OK, ok, unwrap } from "../../src/base/result.js";
import { Device } from "../../src/bus/device.js";
import { checkCore } from "../../src/check/invariants.js";
import { MOCK_FLAGS_DEVICE_PASID, MockIommuDriver } from "../../src/drivers/mock/mock-iommu.js";
import {
  IOMMU_DOMAIN_SVA,
  IOMMU_DOMAIN_UNMANAGED,
  IOMMU_PASID_INVALID,
} from "../../src/iommu/constants.js";
import { IommuAttachHandle } from "../../src/iommu/domain.js";
import { mockBed, platBed, platformFw, traceFields } from "./setup.js";

/** A group of two PASID-capable devices and one without PASID support. */
function pasidGroup(maxBits = 8) {
  const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
  const a = b.dev("a", { pasidBits: maxBits });
  const c = b.dev("c", { pasidBits: maxBits });
  const z = b.dev("z");
  const g = b.core.groupOf(a)!;
  const d1 = unwrap(b.core.pagingDomainAlloc(a));
  const d2 = unwrap(b.core.pagingDomainAlloc(a));
  return { ...b, a, c, z, g, d1, d2 };
}

function pasidLog(log: readonly string[]): string[] {
  return log.filter((l) => l.startsWith("set_dev_pasid"));
}

describe("global PASID allocator", () => {
  it("hands out the lowest free PASID in [1, max_pasids - 1]", () => {
    const b = platBed({ maxPasids: 1 << 20 });
    const d = b.dev("d", { pasidBits: 2 });
    const rec = b.ctx.trace.record();
    expect([1, 2, 3].map(() => b.core.allocGlobalPasid(d))).toEqual([1, 2, 3]);
    expect(b.core.allocGlobalPasid(d)).toBe(IOMMU_PASID_INVALID);
    b.core.freeGlobalPasid(2);
    expect(b.core.allocGlobalPasid(d)).toBe(2);
    const r = rec.stop();
    expect(traceFields(r, "iommu_core:pasid_alloc").map((f) => f.pasid)).toEqual([1, 2, 3, 2]);
    expect(traceFields(r, "iommu_core:pasid_free")).toEqual([{ pasid: 2 }]);
  });

  it("is system wide: devices share one space", () => {
    const b = platBed();
    const x = b.dev("x", { pasidBits: 4 });
    const y = b.dev("y", { pasidBits: 4 });
    expect(b.core.allocGlobalPasid(x)).toBe(1);
    expect(b.core.allocGlobalPasid(y)).toBe(2);
  });

  it("gives IOMMU_PASID_INVALID to devices with max_pasids 0 or 1", () => {
    const b = platBed();
    expect(b.core.allocGlobalPasid(b.dev("none"))).toBe(IOMMU_PASID_INVALID);
    expect(b.core.allocGlobalPasid(b.dev("zero", { pasidBits: 0 }))).toBe(IOMMU_PASID_INVALID);
  });

  it("WARNs on freeing IOMMU_PASID_INVALID or an id that is not allocated", () => {
    const b = platBed();
    b.core.freeGlobalPasid(IOMMU_PASID_INVALID);
    b.core.freeGlobalPasid(77);
    expect(b.ctx.warnings.list().map((w) => w.site)).toEqual([
      "iommu_free_global_pasid",
      "ida_free",
    ]);
  });
});

describe("iommu_attach_device_pasid", () => {
  it("programs every PASID-capable device with old = NULL and records the entry", () => {
    const b = pasidGroup();
    b.mock.log.length = 0;
    const rec = b.ctx.trace.record();
    expect(b.core.attachDevicePasid(b.d1, b.a, 7, null)).toEqual(OK);
    expect(pasidLog(b.mock.log)).toEqual([
      `set_dev_pasid a 7 ${b.d1.id} old=null`,
      `set_dev_pasid c 7 ${b.d1.id} old=null`,
    ]);
    expect(b.g.pasidArray.load(7)).toEqual({ kind: "domain", domain: b.d1 });
    expect(b.mock.programmedPasids(b.z)).toEqual([]);
    expect(traceFields(rec.stop(), "iommu_core:attach_device_pasid")).toEqual([
      { device: "a", pasid: 7, domain: b.d1.id, result: "0" },
    ]);
    const h = new IommuAttachHandle("h");
    expect(b.core.attachDevicePasid(b.d2, b.c, 8, h)).toEqual(OK);
    expect(h.domain).toBe(b.d2);
    expect(b.g.pasidArray.load(8)).toEqual({ kind: "handle", handle: h });
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("errors: ENODEV, EOPNOTSUPP, EINVAL (foreign domain, PASID 0, out of range), EBUSY", () => {
    const b = pasidGroup();
    const stray = new Device("stray", b.platform);
    b.model.deviceAdd(stray);
    expect(b.core.attachDevicePasid(b.d1, stray, 1)).toEqual(err("ENODEV"));
    const noPasidOps = unwrap(b.core.pagingDomainAlloc(b.a));
    noPasidOps.ops = { ...noPasidOps.ops, setDevPasid: undefined } as never;
    expect(b.core.attachDevicePasid(noPasidOps, b.a, 1)).toEqual(err("EOPNOTSUPP"));
    expect(b.core.attachDevicePasid(b.d1, b.a, 0)).toEqual(err("EINVAL"));
    expect(b.core.attachDevicePasid(b.d1, b.a, 256)).toEqual(err("EINVAL"));
    const other = new MockIommuDriver(b.core, { name: "other", claimBus: "platform" });
    const hw = new Device("iommu1", b.platform);
    b.model.deviceAdd(hw);
    unwrap(other.registerInstance("iommu1", hw));
    const x = new Device("x", b.platform, platformFw("x", hw, { pasidBits: 8 }));
    b.model.deviceAdd(x);
    expect(b.core.attachDevicePasid(unwrap(b.core.pagingDomainAlloc(x)), b.a, 1)).toEqual(
      err("EINVAL"),
    );
    expect(b.core.attachDevicePasid(b.d1, b.a, 255)).toEqual(OK);
    expect(b.core.attachDevicePasid(b.d2, b.a, 255)).toEqual(err("EBUSY"));
    expect(b.g.pasidArray.load(255)).toEqual({ kind: "domain", domain: b.d1 });
    expect(b.g.pasidArray.reservations()).toEqual([]);
  });

  it("EOPNOTSUPP when the driver has no blocked domain to remove PASIDs with", () => {
    const b = platBed({ defaultDomain: "none", staticBlocked: false });
    const d = b.dev("d", { pasidBits: 8 });
    expect(b.core.attachDevicePasid(unwrap(b.core.pagingDomainAlloc(d)), d, 1)).toEqual(
      err("EOPNOTSUPP"),
    );
  });

  it("a driver failure reverts the devices already programmed and releases the slot", () => {
    const b = pasidGroup();
    b.mock.faults.arm({
      op: "set_dev_pasid",
      nth: 1,
      errno: "ENOMEM",
      filter: (i) => i.dev === b.c,
    });
    b.mock.log.length = 0;
    const rec = b.ctx.trace.record();
    expect(b.core.attachDevicePasid(b.d1, b.a, 4)).toEqual(err("ENOMEM"));
    expect(pasidLog(b.mock.log)).toEqual([
      `set_dev_pasid a 4 ${b.d1.id} old=null`,
      `set_dev_pasid c 4 ${b.d1.id} old=null`,
      `set_dev_pasid a 4 ${b.mock.blockedDomain!.id} old=${b.d1.id}`,
    ]);
    expect(b.g.pasidArray.isEmpty()).toBe(true);
    expect(traceFields(rec.stop(), "iommu_core:attach_device_pasid")[0]!.result).toBe("-ENOMEM");
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("v6.15: devices without PASID support are neither validated nor programmed", () => {
    const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
    const z = b.dev("z");
    const onlyNone = unwrap(b.core.pagingDomainAlloc(z));
    // Every device lacks PASID support: the entry is stored, nothing is programmed.
    b.mock.log.length = 0;
    expect(b.core.attachDevicePasid(onlyNone, z, 12345)).toEqual(OK);
    expect(pasidLog(b.mock.log)).toEqual([]);
    b.core.detachDevicePasid(onlyNone, z, 12345);
    const a = b.dev("a", { pasidBits: 8 });
    expect(b.core.attachDevicePasid(onlyNone, z, 300)).toEqual(err("EINVAL"));
    expect(b.core.attachDevicePasid(onlyNone, z, 5)).toEqual(OK);
    expect(b.mock.programmedPasids(a)).toEqual([5]);
    expect(b.mock.programmedPasids(z)).toEqual([]);
  });

  it("mock devices without the PASID flag have max_pasids 1 and fail the range check", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.core.attachDevicePasid(dom, d, 1)).toEqual(err("EINVAL"));
    const p = unwrap(b.mock.mockDevCreate(MOCK_FLAGS_DEVICE_PASID));
    expect(b.core.attachDevicePasid(unwrap(b.core.pagingDomainAlloc(p)), p, (1 << 20) - 1)).toEqual(
      OK,
    );
  });
});

describe("a device joining a group with attached PASIDs", () => {
  it("gets the RID domain only: existing PASIDs are not programmed on it (the kernel's probe path)", () => {
    const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
    const a = b.dev("a", { pasidBits: 8 });
    const d = unwrap(b.core.pagingDomainAlloc(a));
    expect(b.core.attachDevicePasid(d, a, 9)).toEqual(OK);
    const late = b.dev("late", { pasidBits: 8 });
    expect(b.mock.pasidDomain(a, 9)).toBe(d);
    expect(b.mock.pasidDomain(late, 9)).toBeUndefined();
    expect(b.core.groupOf(late)!.pasidProgrammed.get(9)).toEqual(new Set([a]));
    // The checker knows the late joiner was never programmed; detaching blocks it anyway.
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
    b.mock.log.length = 0;
    b.core.detachDevicePasid(d, a, 9);
    expect(pasidLog(b.mock.log)).toEqual([
      `set_dev_pasid a 9 ${b.mock.blockedDomain!.id} old=${d.id}`,
      `set_dev_pasid late 9 ${b.mock.blockedDomain!.id} old=${d.id}`,
    ]);
  });
});

describe("iommu_replace_device_pasid", () => {
  it("errors: ENODEV, EOPNOTSUPP, EINVAL (foreign, PASID 0, no handle, nothing attached)", () => {
    const b = pasidGroup();
    const stray = new Device("stray", b.platform);
    b.model.deviceAdd(stray);
    const h = new IommuAttachHandle();
    expect(b.core.replaceDevicePasid(b.d1, stray, 1, h)).toEqual(err("ENODEV"));
    const noOps = unwrap(b.core.pagingDomainAlloc(b.a));
    noOps.ops = { ...noOps.ops, setDevPasid: undefined } as never;
    expect(b.core.replaceDevicePasid(noOps, b.a, 1, h)).toEqual(err("EOPNOTSUPP"));
    expect(b.core.replaceDevicePasid(b.d1, b.a, 0, h)).toEqual(err("EINVAL"));
    expect(b.core.replaceDevicePasid(b.d1, b.a, 1, null)).toEqual(err("EINVAL"));
    expect(b.core.replaceDevicePasid(b.d1, b.a, 1, h)).toEqual(err("EINVAL"));
    expect(b.g.pasidArray.isEmpty()).toBe(true);
  });

  it("switches domains with old = the current domain on every PASID device", () => {
    const b = pasidGroup();
    const h1 = new IommuAttachHandle("h1");
    const h2 = new IommuAttachHandle("h2");
    expect(b.core.attachDevicePasid(b.d1, b.a, 3, h1)).toEqual(OK);
    b.mock.log.length = 0;
    const rec = b.ctx.trace.record();
    expect(b.core.replaceDevicePasid(b.d2, b.a, 3, h2)).toEqual(OK);
    expect(pasidLog(b.mock.log)).toEqual([
      `set_dev_pasid a 3 ${b.d2.id} old=${b.d1.id}`,
      `set_dev_pasid c 3 ${b.d2.id} old=${b.d1.id}`,
    ]);
    expect(b.g.pasidArray.load(3)).toEqual({ kind: "handle", handle: h2 });
    expect(traceFields(rec.stop(), "iommu_core:replace_device_pasid")).toEqual([
      { device: "a", pasid: 3, domain: b.d2.id, result: "0" },
    ]);
    // Same domain, new handle: no driver call.
    b.mock.log.length = 0;
    const h3 = new IommuAttachHandle("h3");
    expect(b.core.replaceDevicePasid(b.d2, b.a, 3, h3)).toEqual(OK);
    expect(pasidLog(b.mock.log)).toEqual([]);
    expect(b.g.pasidArray.load(3)).toEqual({ kind: "handle", handle: h3 });
    // Replacing a domain-tagged entry works too.
    expect(b.core.attachDevicePasid(b.d1, b.a, 4)).toEqual(OK);
    expect(b.core.replaceDevicePasid(b.d2, b.a, 4, new IommuAttachHandle())).toEqual(OK);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("reusing the current handle WARNs and fails with EINVAL", () => {
    const b = pasidGroup();
    const h = new IommuAttachHandle();
    expect(b.core.attachDevicePasid(b.d1, b.a, 3, h)).toEqual(OK);
    expect(b.core.replaceDevicePasid(b.d2, b.a, 3, h)).toEqual(err("EINVAL"));
    expect(b.ctx.warnings.list().map((w) => w.site)).toEqual(["iommu_replace_device_pasid"]);
  });

  it("a driver failure rolls the devices back to the old domain and keeps the old entry", () => {
    const b = pasidGroup();
    const h1 = new IommuAttachHandle("h1");
    expect(b.core.attachDevicePasid(b.d1, b.a, 3, h1)).toEqual(OK);
    b.mock.faults.arm({
      op: "set_dev_pasid",
      nth: 1,
      errno: "ENOSPC",
      filter: (i) => i.dev === b.c && i.domain === b.d2,
    });
    b.mock.log.length = 0;
    expect(b.core.replaceDevicePasid(b.d2, b.a, 3, new IommuAttachHandle("h2"))).toEqual(
      err("ENOSPC"),
    );
    expect(pasidLog(b.mock.log)).toEqual([
      `set_dev_pasid a 3 ${b.d2.id} old=${b.d1.id}`,
      `set_dev_pasid c 3 ${b.d2.id} old=${b.d1.id}`,
      `set_dev_pasid a 3 ${b.d1.id} old=${b.d2.id}`,
    ]);
    expect(b.g.pasidArray.load(3)).toEqual({ kind: "handle", handle: h1 });
    expect(b.mock.pasidDomain(b.a, 3)).toBe(b.d1);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("blocks the PASID when even the rollback fails (driver bug, WARN)", () => {
    const b = pasidGroup();
    expect(b.core.attachDevicePasid(b.d1, b.a, 3)).toEqual(OK);
    b.mock.faults.arm({
      op: "set_dev_pasid",
      nth: 1,
      errno: "ENOSPC",
      filter: (i) => i.dev === b.c && i.domain === b.d2,
    });
    b.mock.faults.arm({
      op: "set_dev_pasid",
      nth: 1,
      errno: "EIO",
      filter: (i) => i.dev === b.a && i.domain === b.d1,
    });
    expect(b.core.replaceDevicePasid(b.d2, b.a, 3, new IommuAttachHandle())).toEqual(err("ENOSPC"));
    expect(b.mock.pasidDomain(b.a, 3)).toBeUndefined();
    expect(b.ctx.warnings.list().map((w) => w.site)).toEqual(["__iommu_set_group_pasid"]);
  });

  it("the selftest's PASID 1024 quirk fails the second set, and the replace keeps the old domain", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate(MOCK_FLAGS_DEVICE_PASID));
    const g = b.core.groupOf(d)!;
    const d1 = unwrap(b.core.pagingDomainAlloc(d));
    const d2 = unwrap(b.core.pagingDomainAlloc(d));
    const h1 = new IommuAttachHandle("h1");
    expect(b.core.attachDevicePasid(d1, d, 1024, h1)).toEqual(OK);
    expect(b.core.replaceDevicePasid(d2, d, 1024, new IommuAttachHandle("h2"))).toEqual(
      err("ENOMEM"),
    );
    expect(g.pasidArray.load(1024)).toEqual({ kind: "handle", handle: h1 });
    expect(b.mock.pasidDomain(d, 1024)).toBe(d1);
    // The error was one-shot: the third set succeeds.
    expect(b.core.replaceDevicePasid(d2, d, 1024, new IommuAttachHandle("h3"))).toEqual(OK);
    expect(b.mock.pasidDomain(d, 1024)).toBe(d2);
    // A blocked set (detach) disarms it.
    b.core.detachDevicePasid(d2, d, 1024);
    expect(b.core.attachDevicePasid(d1, d, 1024)).toEqual(OK);
    b.core.detachDevicePasid(d1, d, 1024);
    expect(b.core.attachDevicePasid(d2, d, 1024)).toEqual(OK);
  });
});

describe("iommu_detach_device_pasid and iommu_attach_handle_get", () => {
  it("detach blocks the PASID on every PASID device and erases the slot", () => {
    const b = pasidGroup();
    expect(b.core.attachDevicePasid(b.d1, b.a, 6)).toEqual(OK);
    b.mock.log.length = 0;
    const rec = b.ctx.trace.record();
    b.core.detachDevicePasid(b.d1, b.c, 6);
    const blocked = b.mock.blockedDomain!.id;
    expect(pasidLog(b.mock.log)).toEqual([
      `set_dev_pasid a 6 ${blocked} old=${b.d1.id}`,
      `set_dev_pasid c 6 ${blocked} old=${b.d1.id}`,
    ]);
    expect(b.g.pasidArray.isEmpty()).toBe(true);
    expect(traceFields(rec.stop(), "iommu_core:detach_device_pasid")).toEqual([
      { device: "c", pasid: 6, domain: b.d1.id },
    ]);
    // Detaching what was never attached is harmless.
    b.core.detachDevicePasid(b.d2, b.a, 99);
    expect(b.ctx.warnings.count).toBe(0);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("attach_handle_get: ENOENT for an empty or domain-tagged slot, EBUSY on a type mismatch (seed 001)", () => {
    const b = pasidGroup();
    expect(b.core.attachHandleGet(b.g, 5, 0)).toEqual(err("ENOENT"));
    expect(b.core.attachDevicePasid(b.d1, b.a, 5)).toEqual(OK);
    expect(b.core.attachHandleGet(b.g, 5, 0)).toEqual(err("ENOENT"));
    const h = new IommuAttachHandle();
    expect(b.core.attachDevicePasid(b.d2, b.a, 6, h)).toEqual(OK);
    expect(b.core.attachHandleGet(b.g, 6, 0)).toEqual(ok(h));
    expect(b.core.attachHandleGet(b.g, 6, IOMMU_DOMAIN_UNMANAGED)).toEqual(ok(h));
    expect(b.core.attachHandleGet(b.g, 6, IOMMU_DOMAIN_SVA)).toEqual(err("EBUSY"));
  });
});
