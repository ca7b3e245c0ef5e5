import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../src/base/result.js";
import { Device } from "../../src/bus/device.js";
import { IOMMU_RESV } from "../../src/bus/firmware.js";
import { checkCore } from "../../src/check/invariants.js";
import { MOCK_FLAGS_DEVICE_PASID, MockIommuDriver } from "../../src/drivers/mock/mock-iommu.js";
import { IOMMU_NO_PASID } from "../../src/iommu/constants.js";
import { IommuAttachHandle } from "../../src/iommu/domain.js";
import { mockBed, platBed, platformFw, traceFields } from "./setup.js";

describe("iommu_attach_device / iommu_detach_device", () => {
  it("attaches a singleton group, traces attach_device_to_domain, and detaches back to the core domain", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    const rec = b.ctx.trace.record();
    expect(b.core.attachDevice(dom, d)).toEqual(OK);
    const r = rec.stop();
    expect(
      r.filter((x) => x.event === "iommu:attach_device_to_domain").map((x) => x.fields),
    ).toEqual([{ device: d.name }]);
    expect(b.core.getDomainForDev(d)).toBe(dom);
    expect(b.core.getDmaDomain(d)).toBe(b.mock.blockedDomain);
    b.core.detachDevice(dom, d);
    expect(b.core.getDomainForDev(d)).toBe(b.mock.blockedDomain);
    expect(b.ctx.warnings.count).toBe(0);
  });

  it("errors: ENODEV without a group, EINVAL for a multi-device group, EBUSY on a non-core domain", () => {
    const b = platBed({ deviceGroup: "single" });
    const stray = new Device("stray", b.platform);
    b.model.deviceAdd(stray);
    const a = b.dev("a");
    const dom = unwrap(b.core.pagingDomainAlloc(a));
    expect(b.core.attachDevice(dom, stray)).toEqual(err("ENODEV"));
    expect(b.core.attachDevice(dom, a)).toEqual(OK);
    const dom2 = unwrap(b.core.pagingDomainAlloc(a));
    expect(b.core.attachDevice(dom2, a)).toEqual(err("EBUSY"));
    expect(b.core.attachGroup(dom2, b.core.groupOf(a)!)).toEqual(err("EBUSY"));
    // Re-attaching the current domain is not an error of iommu_attach_group either.
    expect(b.core.attachGroup(dom, b.core.groupOf(a)!)).toEqual(err("EBUSY"));
    b.core.detachDevice(dom, a);
    b.dev("c");
    expect(b.core.attachDevice(dom, a)).toEqual(err("EINVAL"));
    // iommu_attach_group has no device-count rule.
    expect(b.core.attachGroup(dom, b.core.groupOf(a)!)).toEqual(OK);
    expect(b.mock.ridDomain(b.platform.findDevice("c")!)).toBe(dom);
  });

  it("EINVAL for a domain of another driver", () => {
    const b = platBed();
    const a = b.dev("a");
    const other = new MockIommuDriver(b.core, { name: "other", claimBus: "platform" });
    const hw = new Device("iommu1", b.platform);
    b.model.deviceAdd(hw);
    unwrap(other.registerInstance("iommu1", hw));
    const x = new Device("x", b.platform, platformFw("x", hw));
    b.model.deviceAdd(x);
    const foreign = unwrap(b.core.pagingDomainAlloc(x));
    expect(b.core.attachDevice(foreign, a)).toEqual(err("EINVAL"));
    expect(b.core.attachDevice(other.blockedDomain!, a)).toEqual(err("EINVAL"));
    // The own driver's static domains are compatible.
    expect(b.core.attachDevice(b.mock.blockedDomain!, a)).toEqual(OK);
  });

  it("a driver failure rolls every device back to the old domain and leaves group.domain alone", () => {
    const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
    const a = b.dev("a");
    const c = b.dev("c");
    const e = b.dev("e");
    const g = b.core.groupOf(a)!;
    const def = g.defaultDomain!;
    const dom = unwrap(b.core.pagingDomainAlloc(a));
    b.mock.faults.arm({ op: "attach_dev", nth: 1, errno: "ENOSPC", filter: (i) => i.dev === e });
    b.mock.log.length = 0;
    const rec = b.ctx.trace.record();
    expect(b.core.attachGroup(dom, g)).toEqual(err("ENOSPC"));
    expect(g.domain).toBe(def);
    // core §3.3: every device processed so far goes back, the failing one included.
    expect(b.mock.log).toEqual([
      `attach_dev a ${dom.id}`,
      `attach_dev c ${dom.id}`,
      `attach_dev e ${dom.id}`,
      `attach_dev a ${def.id}`,
      `attach_dev c ${def.id}`,
      `attach_dev e ${def.id}`,
    ]);
    expect(traceFields(rec.stop(), "iommu:attach_device_to_domain")).toEqual(
      ["a", "c", "a", "c", "e"].map((device) => ({ device })),
    );
    for (const d of [a, c, e]) expect(b.mock.ridDomain(d)).toBe(def);
    expect(b.ctx.warnings.list()).toEqual([]);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("must-succeed transitions keep going, park a failing device on the blocking domain and WARN", () => {
    const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
    const a = b.dev("a");
    const c = b.dev("c");
    const g = b.core.groupOf(a)!;
    expect(b.core.groupClaimDmaOwner(g, "vfio")).toEqual(OK);
    const dom = unwrap(b.core.pagingDomainAlloc(a));
    expect(b.core.attachGroup(dom, g)).toEqual(OK);
    b.mock.faults.arm({
      op: "attach_dev",
      nth: 1,
      errno: "EIO",
      filter: (i) => i.dev === a && i.domain === g.blockingDomain,
    });
    b.core.detachGroup(dom, g);
    // The group is on the blocking domain anyway; `a` kept its old domain (the attach failed and
    // parking it on the same blocking domain is not tried twice).
    expect(g.domain).toBe(g.blockingDomain);
    expect(b.mock.ridDomain(c)).toBe(g.blockingDomain);
    expect(b.mock.ridDomain(a)).toBe(dom);
    // The checker sees the inconsistency the kernel warned about.
    expect(checkCore(b.core, { drivers: [b.mock] }).map((v) => v.invariant)).toEqual([
      "rid-programming",
    ]);
    expect(b.ctx.warnings.list().map((w) => w.site)).toContain("__iommu_group_set_domain_nofail");
  });

  it("parks a device on the blocking domain when must-succeed attach of another domain fails", () => {
    const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
    const a = b.dev("a");
    const g = b.core.groupOf(a)!;
    expect(b.core.groupClaimDmaOwner(g, "vfio")).toEqual(OK);
    b.core.groupReleaseDmaOwner(g);
    // Now the group has a blocking domain; make the must-succeed return to default fail.
    expect(b.core.groupClaimDmaOwner(g, "vfio")).toEqual(OK);
    b.mock.faults.arm({
      op: "attach_dev",
      nth: 1,
      errno: "EIO",
      filter: (i) => i.domain === g.defaultDomain,
    });
    b.mock.log.length = 0;
    b.core.groupReleaseDmaOwner(g);
    expect(g.domain).toBe(g.defaultDomain);
    expect(b.mock.log).toEqual([
      `attach_dev a ${g.defaultDomain!.id}`,
      `attach_dev a ${g.blockingDomain!.id}`,
    ]);
    expect(b.ctx.warnings.list().map((w) => w.site)).toContain("__iommu_group_set_domain_nofail");
  });

  it("iommu_detach_device WARNs and does nothing on a wrong domain or a shared group", () => {
    const b = platBed({ deviceGroup: "single" });
    const a = b.dev("a");
    const dom = unwrap(b.core.pagingDomainAlloc(a));
    expect(b.core.attachDevice(dom, a)).toEqual(OK);
    const other = unwrap(b.core.pagingDomainAlloc(a));
    b.core.detachDevice(other, a);
    expect(b.core.getDomainForDev(a)).toBe(dom);
    b.dev("c");
    b.core.detachDevice(dom, a);
    expect(b.core.getDomainForDev(a)).toBe(dom);
    expect(b.ctx.warnings.list().map((w) => w.message)).toEqual([
      "domain is not the group's domain",
      "group has more than one device",
    ]);
    b.core.detachGroup(null, b.core.groupOf(a)!);
    expect(b.core.getDomainForDev(a)).toBe(b.mock.blockedDomain);
  });

  it("require_direct devices refuse blocking domains (EINVAL) with a log line", () => {
    const b = platBed({ defaultDomain: "none" });
    const d = b.dev("d", {
      resv: [{ start: 0x1000n, length: 0x1000n, prot: 3, type: IOMMU_RESV.DIRECT }],
    });
    expect(b.core.attachDevice(b.mock.blockedDomain!, d)).toEqual(err("EINVAL"));
    expect(
      b.core
        .logs()
        .some((l) => l.message.startsWith("Firmware has requested this device have a 1:1")),
    ).toBe(true);
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.core.attachDevice(dom, d)).toEqual(OK);
  });

  it("ENODEV when the domain has no attach_dev", () => {
    const b = platBed();
    const d = b.dev("d");
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    dom.ops = { ...dom.ops, attachDev: undefined } as never;
    expect(b.core.attachDevice(dom, d)).toEqual(err("ENODEV"));
  });
});

describe("group attach handles", () => {
  it("attach stores the handle at slot 0, detach erases it", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const g = b.core.groupOf(d)!;
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    const h = new IommuAttachHandle("hwpt");
    expect(b.core.attachGroupHandle(dom, g, null)).toEqual(err("EINVAL"));
    expect(b.core.attachGroupHandle(dom, g, h)).toEqual(OK);
    expect(h.domain).toBe(dom);
    expect(unwrap(b.core.attachHandleGet(g, IOMMU_NO_PASID, 0))).toBe(h);
    expect(b.core.attachGroupHandle(dom, g, new IommuAttachHandle())).toEqual(err("EBUSY"));
    b.core.detachGroupHandle(dom, g);
    expect(g.pasidArray.isEmpty()).toBe(true);
    expect(g.domain).toBe(b.mock.blockedDomain);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("a failed attach releases the slot-0 reservation", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const g = b.core.groupOf(d)!;
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    b.mock.faults.arm({ op: "attach_dev", nth: 1, errno: "ENOMEM" });
    expect(b.core.attachGroupHandle(dom, g, new IommuAttachHandle())).toEqual(err("ENOMEM"));
    expect(g.pasidArray.isEmpty()).toBe(true);
    // A group on a user domain refuses a handle attach with EBUSY and keeps no reservation.
    expect(b.core.attachGroup(dom, g)).toEqual(OK);
    const dom2 = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.core.attachGroupHandle(dom2, g, new IommuAttachHandle())).toEqual(err("EBUSY"));
    expect(g.pasidArray.isEmpty()).toBe(true);
  });

  it("replace switches directly between two user domains; on failure the old handle stays", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const g = b.core.groupOf(d)!;
    const d1 = unwrap(b.core.pagingDomainAlloc(d));
    const d2 = unwrap(b.core.pagingDomainAlloc(d));
    const h1 = new IommuAttachHandle("h1");
    const h2 = new IommuAttachHandle("h2");
    expect(b.core.replaceGroupHandle(g, null, h1)).toEqual(err("EINVAL"));
    expect(b.core.replaceGroupHandle(g, d1, null)).toEqual(err("EINVAL"));
    // From a core domain it acts like attach.
    expect(b.core.replaceGroupHandle(g, d1, h1)).toEqual(OK);
    expect(b.core.replaceGroupHandle(g, d2, h2)).toEqual(OK);
    expect(g.domain).toBe(d2);
    expect(unwrap(b.core.attachHandleGet(g, 0, 0))).toBe(h2);
    b.mock.faults.arm({ op: "attach_dev", nth: 1, errno: "EIO", filter: (i) => i.domain === d1 });
    expect(b.core.replaceGroupHandle(g, d1, new IommuAttachHandle("h3"))).toEqual(err("EIO"));
    expect(g.domain).toBe(d2);
    expect(unwrap(b.core.attachHandleGet(g, 0, 0))).toBe(h2);
    expect(g.pasidArray.reservations()).toEqual([]);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("a failed replace re-attaches the old domain to the failing device as its own old domain (IOPF refcount kept)", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate(MOCK_FLAGS_DEVICE_PASID));
    const g = b.core.groupOf(d)!;
    const faulting = () => {
      const dom = unwrap(b.core.pagingDomainAlloc(d));
      dom.iopfHandler = () => OK;
      return dom;
    };
    // A fault-capable PASID puts the device on the IOPF queue (one reference).
    const sva = faulting();
    expect(b.core.attachDevicePasid(sva, d, 5, new IommuAttachHandle("p5"))).toEqual(OK);
    const d1 = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.core.replaceGroupHandle(g, d1, new IommuAttachHandle("h1"))).toEqual(OK);
    expect(b.mock.iopfRefcount(d)).toBe(1);
    const d2 = faulting();
    b.mock.faults.arm({ op: "attach_dev", nth: 1, errno: "EIO", filter: (i) => i.domain === d2 });
    b.mock.log.length = 0;
    expect(b.core.replaceGroupHandle(g, d2, new IommuAttachHandle("h2"))).toEqual(err("EIO"));
    expect(b.mock.log).toEqual([`attach_dev ${d.name} ${d2.id}`, `attach_dev ${d.name} ${d1.id}`]);
    // The device never left d1: re-attaching d1 must not give back a reference d2 never took.
    expect(b.mock.iopfRefcount(d)).toBe(1);
    expect(d.iommu!.faultParam).not.toBeNull();
    expect(g.domain).toBe(d1);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("a failed first replace leaves no reservation", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const g = b.core.groupOf(d)!;
    const d1 = unwrap(b.core.pagingDomainAlloc(d));
    b.mock.faults.arm({ op: "attach_dev", nth: 1, errno: "EIO" });
    expect(b.core.replaceGroupHandle(g, d1, new IommuAttachHandle())).toEqual(err("EIO"));
    expect(g.pasidArray.isEmpty()).toBe(true);
  });
});
