// DMA ownership through VFIO: the group path claims the IOMMU group with the vfio group as
// cookie, the cdev path claims each device for its iommufd context. Kernel drivers and user
// ownership exclude each other (§4), firmware direct mappings keep a device away from user
// space, and releasing ownership puts the group back on its default domain.

import { describe, expect, it } from "vitest";
import { err, unwrap } from "../../../src/base/result.js";
import { VFIO_TYPE1v2_IOMMU } from "../../../src/drivers/vfio/group.js";
import { IommufdCtx } from "../../../src/drivers/vfio/iommufd.js";
import { vfioMachine } from "./fixture.js";

describe("the group path: iommu_group_claim_dma_owner(group, vfio_group)", () => {
  it("EPERM while a kernel driver uses another device of the group; then the other way round: EBUSY for the kernel driver", () => {
    const r = vfioMachine();
    const legacy0 = r.pci("legacy0");
    const legacy1 = r.pci("legacy1");
    const group = r.groupOf(legacy0);
    expect(r.groupOf(legacy1)).toBe(group);
    // legacy1 gets a DMA-API driver: the group is in kernel use.
    unwrap(r.m.model.deviceDriverAttach(r.kernelDriver, legacy1));
    expect(group.toJSON()).toMatchObject({ owner_cnt: 1, owner: null });
    const vdev = r.bindVfio("legacy0");
    // Binding vfio-pci itself claims nothing (driver_managed_dma).
    expect(group.toJSON()).toMatchObject({ owner_cnt: 1, owner: null });
    const vgroup = vdev.group;
    unwrap(vgroup.open());
    expect(vgroup.status()).toEqual({ viable: false, containerSet: false });
    const container = r.vfio.openContainer();
    expect(vgroup.setContainer(container)).toEqual(err("EPERM"));
    expect(group.domain).toBe(group.defaultDomain);
    // The kernel driver goes; now the claim works and the group blocks all DMA.
    r.m.unbindDriver(legacy1);
    expect(vgroup.status()).toEqual({ viable: true, containerSet: false });
    unwrap(vgroup.setContainer(container));
    expect(group.toJSON()).toMatchObject({ owner_cnt: 1, owner: vgroup.name });
    expect(group.domain).toBe(group.blockingDomain);
    // A kernel driver can no longer bind to the other device: use_default_domain says EBUSY.
    expect(r.m.model.deviceDriverAttach(r.kernelDriver, legacy1)).toEqual(err("EBUSY"));
    expect(legacy1.driver).toBeNull();
    // Release: the default domain is back and the kernel driver binds.
    unwrap(vgroup.unsetContainer());
    expect(group.toJSON()).toMatchObject({ owner_cnt: 0, owner: null });
    expect(group.domain).toBe(group.defaultDomain);
    unwrap(r.m.model.deviceDriverAttach(r.kernelDriver, legacy1));
    r.invariants();
  });

  it("EINVAL for a device with a firmware direct-mapped region (require_direct refuses the blocking domain)", () => {
    const r = vfioMachine();
    const gpu = r.pci("gpu0");
    expect(gpu.iommu!.requireDirect).toBe(true);
    const vgroup = r.bindVfio("gpu0").group;
    unwrap(vgroup.open());
    expect(vgroup.setContainer(r.vfio.openContainer())).toEqual(err("EINVAL"));
    const group = r.groupOf(gpu);
    expect(group.toJSON()).toMatchObject({ owner_cnt: 0, owner: null });
    expect(group.domain).toBe(group.defaultDomain);
  });

  it("EBUSY when the group sits on a domain that is neither its default nor its blocking domain", () => {
    const r = vfioMachine();
    const acc = r.pci("acc0");
    const group = r.groupOf(acc);
    const other = unwrap(r.m.core.pagingDomainAlloc(acc));
    unwrap(r.m.core.attachGroup(other, group));
    const vgroup = r.bindVfio("acc0").group;
    unwrap(vgroup.open());
    expect(vgroup.setContainer(r.vfio.openContainer())).toEqual(err("EBUSY"));
    r.m.core.detachGroup(other, group);
    unwrap(vgroup.setContainer(r.vfio.openContainer()));
  });

  it("group file and container misuse: EBUSY for a second open, EINVAL for a second container, SET_IOMMU without groups or twice", () => {
    const r = vfioMachine();
    const vgroup = r.bindVfio("acc0").group;
    unwrap(vgroup.open());
    expect(vgroup.open()).toEqual(err("EBUSY"));
    const c = r.vfio.openContainer();
    expect(c.setIommu(VFIO_TYPE1v2_IOMMU)).toEqual(err("EINVAL"));
    unwrap(vgroup.setContainer(c));
    expect(vgroup.setContainer(r.vfio.openContainer())).toEqual(err("EINVAL"));
    expect(c.setIommu(99)).toEqual(err("EINVAL"));
    unwrap(c.setIommu(VFIO_TYPE1v2_IOMMU));
    expect(c.setIommu(VFIO_TYPE1v2_IOMMU)).toEqual(err("EINVAL"));
    expect(vgroup.status()).toEqual({ viable: true, containerSet: true });
    unwrap(vgroup.unsetContainer());
    expect(vgroup.unsetContainer()).toEqual(err("EINVAL"));
    r.invariants();
  });
});

describe("the cdev path: iommu_device_claim_dma_owner(dev, ictx)", () => {
  it("EPERM while a kernel driver uses the group, EINVAL for require_direct, shared by the devices of one group", () => {
    const r = vfioMachine();
    const legacy0 = r.bindVfio("legacy0");
    unwrap(r.m.model.deviceDriverAttach(r.kernelDriver, r.pci("legacy1")));
    const ictx = new IommufdCtx(r.m.core);
    unwrap(legacy0.openCdev());
    expect(legacy0.bindIommufd(ictx)).toEqual(err("EPERM"));
    r.m.unbindDriver(r.pci("legacy1"));
    unwrap(legacy0.bindIommufd(ictx));
    expect(legacy0.bindIommufd(ictx)).toEqual(err("EINVAL"));
    const legacy1 = r.bindVfio("legacy1");
    unwrap(legacy1.openCdev());
    unwrap(legacy1.bindIommufd(ictx));
    const group = r.groupOf(r.pci("legacy0"));
    expect(group.toJSON()).toMatchObject({ owner_cnt: 2, owner: "iommufd" });
    // Another context cannot have them.
    const other = new IommufdCtx(r.m.core, "other");
    expect(other.bind(r.pci("legacy0"))).toEqual(err("EPERM"));
    legacy0.closeCdev();
    expect(group.toJSON()).toMatchObject({ owner_cnt: 1, owner: "iommufd" });
    legacy1.closeCdev();
    expect(group.toJSON()).toMatchObject({ owner_cnt: 0, owner: null });
    expect(group.domain).toBe(group.defaultDomain);

    const gpu = r.bindVfio("gpu0");
    unwrap(gpu.openCdev());
    expect(gpu.bindIommufd(ictx)).toEqual(err("EINVAL"));
    r.invariants();
  });

  it("the group file and the cdevs of its devices exclude each other (EBUSY)", () => {
    const r = vfioMachine();
    const vdev = r.bindVfio("acc0");
    unwrap(vdev.group.open());
    expect(vdev.openCdev()).toEqual(err("EBUSY"));
    vdev.group.close();
    unwrap(vdev.openCdev());
    expect(vdev.group.open()).toEqual(err("EBUSY"));
  });
});

describe("vfio-pci probe", () => {
  it("EINVAL for a bridge and for a device without an IOMMU group", () => {
    const r = vfioMachine();
    const bridge = r.pci("br0");
    expect(r.m.model.deviceDriverAttach(r.vfio, bridge)).toEqual(err("EINVAL"));
    // A device behind no IOMMU at all: no group, so no VFIO (there is no noiommu mode).
    const bare = vfioMachine({
      name: "bare",
      iommus: { iommu0: { driver: "riscv" } },
      pci: { rp0: { type: "root_port", slot: 1, acs: true } },
      devices: { t0: { parent: "rp0", iommu: null, endpoint: "test" } },
    });
    expect(bare.m.core.groupOf(bare.pci("t0"))).toBeNull();
    expect(bare.m.model.deviceDriverAttach(bare.vfio, bare.pci("t0"))).toEqual(err("EINVAL"));
  });
});
