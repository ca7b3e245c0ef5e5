import { describe, expect, it } from "vitest";
import { SimError } from "../../../src/base/errors.js";
import { err, OK, unwrap } from "../../../src/base/result.js";
import { Device } from "../../../src/bus/device.js";
import { checkCore } from "../../../src/check/invariants.js";
import { MockFaultInjector } from "../../../src/drivers/mock/fault-inject.js";
import type { MockPagingDomain } from "../../../src/drivers/mock/mock-domain.js";
import {
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_HUGE_IOVA,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_FLAGS_DEVICE_PASID,
  MOCK_HUGE_PAGE_SIZE,
  MOCK_IO_PAGE_SIZE,
} from "../../../src/drivers/mock/mock-iommu.js";
import {
  IOMMU_CAP,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_READ,
} from "../../../src/iommu/constants.js";
import { mockBed, pciBed, platformFw } from "../../iommu/setup.js";

describe("MockFaultInjector", () => {
  it("fails the n-th matching call, `times` times, and records what it injected", () => {
    const f = new MockFaultInjector();
    f.arm({ op: "attach_dev", nth: 2, errno: "EIO", times: 2, filter: (i) => i.pasid !== 9 });
    expect(f.check("attach_dev")).toBeNull();
    expect(f.check("attach_dev", { pasid: 9 })).toBeNull();
    expect(f.check("attach_dev")?.errno).toBe("EIO");
    expect(f.check("attach_dev")?.errno).toBe("EIO");
    expect(f.check("attach_dev")).toBeNull();
    expect(f.armed).toBe(0);
    expect(f.calls("attach_dev")).toBe(5);
    expect(f.injected().map((x) => x.call)).toEqual([3, 4]);
    expect(() => f.arm({ op: "nope" as never, nth: 1, errno: "EIO" })).toThrow(SimError);
    expect(() => f.arm({ op: "alloc", nth: 0, errno: "EIO" })).toThrow(SimError);
    f.arm({ op: "alloc", nth: 5, errno: "ENOMEM" });
    f.disarmAll();
    expect(f.armed).toBe(0);
  });
});

describe("mock devices and domains (selftest.c)", () => {
  it("mock_dev_create refuses unknown flags and names devices iommufd_mock<N>", () => {
    const b = mockBed();
    expect(b.mock.mockDevCreate(1 << 7)).toEqual(err("EINVAL"));
    const d0 = unwrap(b.mock.mockDevCreate());
    expect(d0.name).toBe("iommufd_mock0");
    expect(d0.fw.readU32("pasid-num-bits")).toBe(0);
    const d1 = unwrap(b.mock.mockDevCreate(MOCK_FLAGS_DEVICE_PASID));
    expect(d1.fw.readU32("pasid-num-bits")).toBe(20);
    b.mock.mockDevDestroy(d0);
    expect(unwrap(b.mock.mockDevCreate()).name).toBe("iommufd_mock0");
  });

  it("domain_alloc_paging_flags: allowed flags only, no user data, no dirty tracking on NO_DIRTY devices", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const nd = unwrap(b.mock.mockDevCreate(MOCK_FLAGS_DEVICE_NO_DIRTY));
    const alloc = b.mock.ops.domainAllocPagingFlags!;
    expect(alloc(d, 1 << 9, null)).toEqual(err("EOPNOTSUPP"));
    expect(alloc(d, 0, { data: 1 })).toEqual(err("EOPNOTSUPP"));
    expect(alloc(nd, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, null)).toEqual(err("EOPNOTSUPP"));
    const ok = unwrap(
      alloc(
        d,
        IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID,
        null,
      ),
    ) as MockPagingDomain;
    expect(ok.dirtyTracking).toBe(true);
    expect(ok.geometry).toEqual({
      apertureStart: MOCK_APERTURE_START,
      apertureEnd: MOCK_APERTURE_LAST,
      forceAperture: true,
    });
    expect(ok.pgsizeBitmap).toBe(MOCK_IO_PAGE_SIZE);
    const huge = unwrap(b.mock.mockDevCreate(MOCK_FLAGS_DEVICE_HUGE_IOVA));
    expect(unwrap(b.core.pagingDomainAlloc(huge)).pgsizeBitmap).toBe(
      MOCK_IO_PAGE_SIZE | MOCK_HUGE_PAGE_SIZE,
    );
  });

  it("attach: a dirty-tracking domain is incompatible (EINVAL) with NO_DIRTY devices; capable() follows", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const nd = unwrap(b.mock.mockDevCreate(MOCK_FLAGS_DEVICE_NO_DIRTY));
    const dirty = unwrap(b.core.pagingDomainAllocFlags(d, IOMMU_HWPT_ALLOC_DIRTY_TRACKING));
    expect(b.core.attachDevice(dirty, nd)).toEqual(err("EINVAL"));
    expect(b.core.attachDevice(dirty, d)).toEqual(OK);
    expect(b.core.deviceIommuCapable(d, IOMMU_CAP.DIRTY_TRACKING)).toBe(true);
    expect(b.core.deviceIommuCapable(nd, IOMMU_CAP.DIRTY_TRACKING)).toBe(false);
    expect(b.core.deviceIommuCapable(d, IOMMU_CAP.CACHE_COHERENCY)).toBe(true);
    expect(b.core.deviceIommuCapable(d, IOMMU_CAP.DEFERRED_FLUSH)).toBe(false);
    expect(b.mock.ops.userPasidTable).toBe(true);
  });

  it("the mapping store WARNs on a remap and on unmaps that split a map_pages call", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const dom = unwrap(b.core.pagingDomainAlloc(d)) as MockPagingDomain;
    unwrap(b.core.map(dom, 0x10000n, 0x20000n, 0x3000n, IOMMU_READ));
    expect(b.core.unmap(dom, 0x11000n, 0x1000n)).toBe(0x1000n);
    expect(b.core.unmap(dom, 0x10000n, 0x1000n)).toBe(0x1000n);
    unwrap(b.core.map(dom, 0x30000n, 0x40000n, 0x1000n, IOMMU_READ));
    dom.ops!.mapPages!(dom, 0x30, 0x50, 12, 1, IOMMU_READ, { mappedPages: 0 });
    expect(b.ctx.warnings.list().map((w) => w.message)).toEqual([
      "unmap starts inside a mapping",
      "unmap ends inside a mapping",
      "unmap ends inside a mapping",
      "IOVA page 0x30 already mapped",
    ]);
    expect(dom.lookup(0x30123n)).toBe(0x50123n);
    const view = dom.toJSON() as { mapped_pages: number };
    expect(view.mapped_pages).toBe(2);
  });

  it("attach_dev drops the IOPF reference of the domain the device is on (mdev->domain), whatever the core thinks it left", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const g = b.core.groupOf(d)!;
    const blocked = b.mock.blockedDomain!;
    const faulting = unwrap(b.core.pagingDomainAlloc(d));
    faulting.iopfHandler = () => OK;
    expect(b.core.deviceClaimDmaOwner(d, "ictx")).toEqual(OK);
    expect(b.core.attachGroup(faulting, g)).toEqual(OK);
    expect(b.mock.iopfRefcount(d)).toBe(1);
    // A must-succeed detach whose attach fails: the group says blocked, the device stays put.
    b.mock.faults.arm({
      op: "attach_dev",
      nth: 1,
      errno: "EIO",
      filter: (i) => i.domain === blocked,
    });
    b.core.detachGroup(faulting, g);
    expect(g.domain).toBe(blocked);
    expect(b.mock.ridDomain(d)).toBe(faulting);
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["__iommu_group_set_domain_nofail"]);
    // Leaving for a domain without faults gives back the reference the device really held.
    const plain = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.core.attachGroup(plain, g)).toEqual(OK);
    expect(b.mock.iopfRefcount(d)).toBe(0);
    expect(d.iommu!.faultParam).toBeNull();
  });

  it("release_device forgets what the driver programmed for the device", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate(MOCK_FLAGS_DEVICE_PASID));
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.core.attachDevicePasid(dom, d, 3)).toEqual(OK);
    expect(b.mock.programmedPasids(d)).toEqual([3]);
    expect(b.mock.ridDomain(d)).toBe(b.mock.blockedDomain);
    b.core.detachDevicePasid(dom, d, 3);
    b.mock.mockDevDestroy(d);
    expect(b.mock.ridDomain(d)).toBeUndefined();
    expect(b.mock.programmedDevices()).toEqual([]);
    expect(b.mock.toJSON()).toMatchObject({ name: "mock", rid: [], pasids: [] });
  });
});

describe("device_group strategies", () => {
  /** A PCI host (endpoint `a` below a root port without ACS) and one platform device, both
   * translated by one mock instance with `deviceGroup` = `strategy`. */
  function mixed(strategy: "generic" | "pci" | "bus") {
    const b = pciBed((h) => h.addRootPort({ name: "rp0" }).addEndpoint({ name: "a" }), {
      config: { claimBus: null, deviceGroup: strategy },
    });
    const plat = new Device("plat0", b.platform, platformFw("plat0", b.iommuDev));
    b.model.deviceAdd(plat);
    return { ...b, plat };
  }

  it('"bus": pci_device_group for PCI functions, generic_device_group for platform devices, on one instance', () => {
    const b = mixed("bus");
    const rp = b.core.groupOf(b.pdev("rp0"))!;
    // No ACS at the root port: the endpoint shares its group (pci_device_group).
    expect(b.core.groupOf(b.pdev("a"))).toBe(rp);
    const g = b.core.groupOf(b.plat)!;
    expect(g).not.toBe(rp);
    expect(g.devices.map((d) => d.dev)).toEqual([b.plat]);
    expect(b.plat.iommu?.iommuDev).toBe(b.inst);
    expect(b.ctx.warnings.list()).toEqual([]);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it('one strategy for every device fails one kind: "pci" refuses platform devices (EINVAL, WARN), "generic" splits PCI functions ACS does not isolate', () => {
    const pci = mixed("pci");
    expect(pci.core.groupOf(pci.plat)).toBeNull();
    expect(pci.plat.iommu).toBeNull();
    expect(pci.ctx.warnings.list().map((w) => w.site)).toEqual(["pci_device_group"]);
    const gen = mixed("generic");
    expect(gen.core.groupOf(gen.pdev("a"))).not.toBe(gen.core.groupOf(gen.pdev("rp0")));
    expect(gen.core.groupOf(gen.plat)).not.toBeNull();
  });
});
