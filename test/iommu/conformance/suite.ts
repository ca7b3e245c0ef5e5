// The core-semantics conformance suite: what the IOMMU core promises whatever driver sits below
// it. Every IOMMU driver runs it with a factory that builds a fresh machine around the driver
// (the mock now, the RISC-V driver later). Driver-specific details (page sizes, static domains,
// group strategy) come from the driver itself; the suite only asserts core behaviour, and checks
// every invariant (with the driver's programming view when it has one) after each scenario.

import { describe, expect, it } from "vitest";
import type { SimContext } from "../../../src/base/context.js";
import { err, OK, unwrap } from "../../../src/base/result.js";
import type { Device } from "../../../src/bus/device.js";
import { checkCore, type IommuProgrammingView } from "../../../src/check/invariants.js";
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_UNMANAGED,
  IOMMU_PASID_INVALID,
  IOMMU_READ,
  IOMMU_WRITE,
} from "../../../src/iommu/constants.js";
import type { IommuCore } from "../../../src/iommu/core.js";
import { IommuAttachHandle } from "../../../src/iommu/domain.js";

/** A machine built around the driver under test. */
export interface ConformanceMachine {
  readonly ctx: SimContext;
  readonly core: IommuCore;
  /** What the driver programmed, when it can say (compared by the invariant checker). */
  readonly view?: IommuProgrammingView;
  /**
   * A new device behind the driver's IOMMU, probed into its own group. `pasid` asks for a device
   * supporting at least 256 PASIDs; otherwise the device has no PASID support (max_pasids <= 1).
   */
  newDevice(opts: { readonly pasid: boolean }): Device;
  /** Hot-removes a device created by `newDevice`. */
  removeDevice(dev: Device): void;
}

export type ConformanceFactory = () => ConformanceMachine;

export function runCoreConformance(driverName: string, factory: ConformanceFactory): void {
  const invariants = (m: ConformanceMachine) => {
    expect(checkCore(m.core, m.view ? { drivers: [m.view] } : {})).toEqual([]);
  };

  describe(`core conformance: ${driverName}`, () => {
    it("probes a device into a group whose current domain is its default domain", () => {
      const m = factory();
      const d = m.newDevice({ pasid: false });
      const g = m.core.groupOf(d)!;
      expect(g).not.toBeNull();
      expect(g.defaultDomain).not.toBeNull();
      expect(g.domain).toBe(g.defaultDomain);
      expect(m.core.getDomainForDev(d)).toBe(g.defaultDomain);
      expect(m.core.getDmaDomain(d)).toBe(g.defaultDomain);
      expect(g.hasDevice(d)).toBe(true);
      invariants(m);
    });

    it("allocates paging domains through the device's own driver and frees them", () => {
      const m = factory();
      const d = m.newDevice({ pasid: false });
      const dom = unwrap(m.core.pagingDomainAlloc(d));
      expect(dom.type).toBe(IOMMU_DOMAIN_UNMANAGED);
      expect(dom.owner).toBe(m.core.devIommuOps(d)!);
      expect(dom.pgShifts.length).toBeGreaterThan(0);
      expect(m.core.domains()).toContain(dom);
      m.core.domainFree(dom);
      expect(m.core.domains()).not.toContain(dom);
      invariants(m);
    });

    it("attaches and detaches a paging domain; a second user domain is EBUSY", () => {
      const m = factory();
      const d = m.newDevice({ pasid: false });
      const g = m.core.groupOf(d)!;
      const d1 = unwrap(m.core.pagingDomainAlloc(d));
      const d2 = unwrap(m.core.pagingDomainAlloc(d));
      expect(m.core.attachDevice(d1, d)).toEqual(OK);
      expect(m.core.getDomainForDev(d)).toBe(d1);
      invariants(m);
      expect(m.core.attachDevice(d2, d)).toEqual(err("EBUSY"));
      m.core.detachDevice(d1, d);
      expect(g.domain).toBe(g.defaultDomain);
      invariants(m);
    });

    it("maps, translates and unmaps with the domain's smallest page", () => {
      const m = factory();
      const d = m.newDevice({ pasid: false });
      const dom = unwrap(m.core.pagingDomainAlloc(d));
      const pg = 1n << BigInt(dom.pgShifts[0]!);
      const iova = dom.geometry.apertureStart + 4n * pg;
      const rec = m.ctx.trace.record();
      expect(m.core.map(dom, iova, 0x8000_0000n, 2n * pg, IOMMU_READ | IOMMU_WRITE)).toEqual(OK);
      expect(m.core.iovaToPhys(dom, iova + pg + 0x10n)).toBe(0x8000_0000n + pg + 0x10n);
      expect(m.core.map(dom, iova + 1n, 0n, pg, IOMMU_READ)).toEqual(err("EINVAL"));
      expect(m.core.unmap(dom, iova, 2n * pg)).toBe(2n * pg);
      expect(m.core.iovaToPhys(dom, iova)).toBe(0n);
      const r = rec.stop();
      expect(r.filter((x) => x.event === "iommu:map").map((x) => x.fields)).toEqual([
        { iova, paddr: 0x8000_0000n, size: 2n * pg },
      ]);
      expect(r.filter((x) => x.event === "iommu:unmap").map((x) => x.fields)).toEqual([
        { iova, size: 2n * pg, unmapped_size: 2n * pg },
      ]);
    });

    it("DMA ownership: claim blocks, a user domain can replace blocking, release restores the default", () => {
      const m = factory();
      const d = m.newDevice({ pasid: false });
      const g = m.core.groupOf(d)!;
      expect(m.core.deviceUseDefaultDomain(d)).toEqual(OK);
      expect(m.core.deviceClaimDmaOwner(d, "user")).toEqual(err("EPERM"));
      m.core.deviceUnuseDefaultDomain(d);
      expect(m.core.deviceClaimDmaOwner(d, "user")).toEqual(OK);
      expect(g.domain).toBe(g.blockingDomain);
      expect([IOMMU_DOMAIN_BLOCKED, IOMMU_DOMAIN_UNMANAGED]).toContain(g.blockingDomain!.type);
      expect(m.core.deviceUseDefaultDomain(d)).toEqual(err("EBUSY"));
      invariants(m);
      const dom = unwrap(m.core.pagingDomainAlloc(d));
      expect(m.core.attachGroup(dom, g)).toEqual(OK);
      invariants(m);
      m.core.detachGroup(dom, g);
      expect(g.domain).toBe(g.blockingDomain);
      m.core.deviceReleaseDmaOwner(d);
      expect(g.domain).toBe(g.defaultDomain);
      expect(g.owner).toBeNull();
      invariants(m);
    });

    it("PASIDs: global allocation, attach, EBUSY, replace, handle lookup, detach", () => {
      const m = factory();
      const d = m.newDevice({ pasid: true });
      const g = m.core.groupOf(d)!;
      if (!m.core.devIommuOps(d)!.blockedDomain) {
        // Removing a PASID needs the driver's blocked domain: without one PASIDs are unsupported.
        const dom = unwrap(m.core.pagingDomainAlloc(d));
        expect(m.core.attachDevicePasid(dom, d, 1, null)).toEqual(err("EOPNOTSUPP"));
        return;
      }
      expect(d.iommu!.maxPasids).toBeGreaterThanOrEqual(256);
      const pasid = m.core.allocGlobalPasid(d);
      expect(pasid).not.toBe(IOMMU_PASID_INVALID);
      expect(pasid).toBeGreaterThanOrEqual(1);
      const d1 = unwrap(m.core.pagingDomainAlloc(d));
      const d2 = unwrap(m.core.pagingDomainAlloc(d));
      const h1 = new IommuAttachHandle("h1");
      expect(m.core.attachDevicePasid(d1, d, pasid, h1)).toEqual(OK);
      expect(m.core.attachDevicePasid(d2, d, pasid, null)).toEqual(err("EBUSY"));
      expect(m.core.attachDevicePasid(d1, d, 0, null)).toEqual(err("EINVAL"));
      invariants(m);
      const h2 = new IommuAttachHandle("h2");
      expect(m.core.replaceDevicePasid(d2, d, pasid, h2)).toEqual(OK);
      expect(unwrap(m.core.attachHandleGet(g, pasid, 0))).toBe(h2);
      invariants(m);
      // While PASIDs are attached the group cannot change hands.
      expect(m.core.deviceClaimDmaOwner(d, "user")).toEqual(err("EBUSY"));
      m.core.detachDevicePasid(d2, d, pasid);
      expect(m.core.attachHandleGet(g, pasid, 0)).toEqual(err("ENOENT"));
      m.core.freeGlobalPasid(pasid);
      invariants(m);
    });

    it("refuses PASIDs beyond the device's range", () => {
      const m = factory();
      const d = m.newDevice({ pasid: true });
      const dom = unwrap(m.core.pagingDomainAlloc(d));
      const expected = m.core.devIommuOps(d)!.blockedDomain ? "EINVAL" : "EOPNOTSUPP";
      expect(m.core.attachDevicePasid(dom, d, d.iommu!.maxPasids, null)).toEqual(err(expected));
    });

    it("releasing the last device frees the group's domains and leaves no trace behind", () => {
      const m = factory();
      const d = m.newDevice({ pasid: true });
      const g = m.core.groupOf(d)!;
      expect(m.core.deviceClaimDmaOwner(d, "user")).toEqual(OK);
      m.core.deviceReleaseDmaOwner(d);
      m.removeDevice(d);
      expect(d.iommuGroup).toBeNull();
      expect(d.iommu).toBeNull();
      expect(g.devices).toEqual([]);
      expect(g.domain).toBeNull();
      expect(g.defaultDomain).toBeNull();
      invariants(m);
      expect(m.ctx.warnings.list()).toEqual([]);
    });
  });
}
