import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../src/base/result.js";
import type { DeviceDriver } from "../../src/bus/device.js";
import { IOMMU_RESV } from "../../src/bus/firmware.js";
import type { PciDev } from "../../src/bus/pci-dev.js";
import { checkCore } from "../../src/check/invariants.js";
import type { PciBridge } from "../../src/hw/pci/topology.js";
import { IOMMU_DOMAIN_DMA } from "../../src/iommu/constants.js";
import { pciBed, traceFields } from "./setup.js";

describe("PCI hot plug through the whole stack", () => {
  it("hot-add probes and binds; surprise removal unbinds (unuse), releases, and frees the group", () => {
    const b = pciBed(
      (h) => {
        h.addRootPort({ name: "slot", acs: true, hotplug: true });
      },
      { config: { defaultDomain: "none" } },
    );
    const nic: DeviceDriver = {
      name: "nic",
      bus: b.pci,
      match: (d) => (d as PciDev).fn.name === "card",
    };
    b.model.driverRegister(nic);
    const rec = b.ctx.trace.record();
    const port = b.host.function("slot") as PciBridge;
    port.addEndpoint({ name: "card", pasid: 8 });
    const card = b.pdev("card");
    const g = b.core.groupOf(card)!;
    expect(card.driver).toBe(nic);
    expect(g.defaultDomain!.type).toBe(IOMMU_DOMAIN_DMA);
    expect(g.ownerCnt).toBe(1);
    expect(card.iommu!.maxPasids).toBe(256);
    const def = g.defaultDomain!;
    port.removeDevice(b.host.device("card"));
    expect(card.driver).toBeNull();
    expect(card.registered).toBe(false);
    expect(g.released).toBe(true);
    expect(def.freed).toBe(true);
    const r = rec.stop();
    expect(traceFields(r, "iommu:add_device_to_group")).toEqual([{ gid: g.id, device: card.name }]);
    expect(traceFields(r, "iommu:remove_device_from_group")).toEqual([
      { gid: g.id, device: card.name },
    ]);
    expect(traceFields(r, "iommu_core:dma_owner").map((f) => [f.op, f.owner_cnt])).toEqual([
      ["use_default_domain", 1],
      ["unuse_default_domain", 0],
    ]);
    expect(traceFields(r, "iommu_core:domain_alloc")).toEqual([
      { domain: def.id, type: "DMA", device: card.name },
    ]);
    expect(traceFields(r, "iommu_core:group_set_domain")).toEqual([
      { gid: g.id, domain: def.id, result: "0" },
    ]);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
    expect(b.ctx.warnings.list()).toEqual([]);
  });

  it("re-plugging a card gives it a fresh pci_dev, group and default domain", () => {
    const b = pciBed((h) => {
      h.addRootPort({ name: "slot", acs: true, hotplug: true });
    });
    const port = b.host.function("slot") as PciBridge;
    port.addEndpoint({ name: "card" });
    const first = b.pdev("card");
    const g1 = b.core.groupOf(first)!.id;
    port.removeDevice(b.host.device("card"));
    port.addEndpoint({ name: "card" });
    const second = b.pdev("card");
    expect(second).not.toBe(first);
    expect(b.core.groupOf(second)!.id).toBe(g1);
    expect(b.core.deviceClaimDmaOwner(second, "vfio")).toEqual(OK);
    const d = unwrap(b.core.pagingDomainAlloc(second));
    expect(b.core.attachGroup(d, b.core.groupOf(second)!)).toEqual(OK);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("a hot-plugged function whose firmware declares an IOMMU_RESV_DIRECT region requires direct mappings", () => {
    const direct = { start: 0x9000_0000n, length: 0x2000n, prot: 3, type: IOMMU_RESV.DIRECT };
    const b = pciBed((h) => h.addRootPort({ name: "slot", acs: true, hotplug: true }), {
      config: { defaultDomain: "none" },
      firmware: (fn, fw) => {
        if (fn.name === "card") fw.addResvRegion(direct);
      },
    });
    const port = b.host.function("slot") as PciBridge;
    port.addEndpoint({ name: "card" });
    const card = b.pdev("card");
    const g = b.core.groupOf(card)!;
    expect(card.iommu!.requireDirect).toBe(true);
    expect(b.core.getResvRegions(card)).toEqual([direct]);
    expect(b.core.groupShowResvRegions(g)).toBe("0x0000000090000000 0x0000000090001fff direct\n");
    // The default domain maps the region 1:1.
    expect(b.core.iovaToPhys(g.defaultDomain!, 0x9000_1234n)).toBe(0x9000_1234n);
    // No blocking domain for it: VFIO-style ownership is refused.
    expect(b.core.deviceClaimDmaOwner(card, "vfio")).toEqual(err("EINVAL"));
    expect(b.pdev("slot").iommu!.requireDirect).toBe(false);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });
});
