// The machine's device drivers: `driver: idxd | nic | vfio-pci` bind the real drivers of
// src/drivers (which program the device models through their registers and DMA through the
// IOMMU), name-only drivers behind a mock IOMMU, and the description's driver rules.

import { describe, expect, it } from "vitest";
import { buildMachine } from "../../src/machine/build.js";
import type { InputErrors } from "../../src/machine/input/diagnostics.js";
import { machineDescription, parseMachineDescription } from "../../src/machine/load.js";

function inputErrors(yaml: string): string[] {
  try {
    parseMachineDescription(yaml, "d.yaml");
  } catch (e) {
    return (e as InputErrors).errors.map((x) => x.format());
  }
  throw new Error("accepted");
}

describe("the machine's device drivers", () => {
  it("default: idxd drives dsa0 (system PASID, WQs), the nic driver drives nic0 (rings, RX buffers)", () => {
    const m = buildMachine("default");
    const dsa0 = m.device("dsa0")!;
    const nic0 = m.device("nic0")!;
    expect(dsa0.driver?.name).toBe("idxd");
    expect(nic0.driver?.name).toBe("nic");
    const idxd = m.deviceDrivers.idxd.idxdOf(dsa0)!;
    expect(idxd.state).toBe("enabled");
    // idxd_enable_system_pasid: the DMA domain at the first global PASID.
    expect(idxd.pasid).toBe(1);
    expect(idxd.pasidDomain).toBe(m.core.getDomainForDev(dsa0));
    expect(m.programmedPasids(dsa0)).toEqual([1]);
    expect(idxd.wqs.filter((w) => w.enabled).map((w) => [w.type, w.mode])).toEqual([
      ["kernel", "dedicated"],
      ["user", "shared"],
    ]);
    const adapter = m.deviceDrivers.nic.adapterOf(nic0)!;
    expect(adapter.tx).not.toBeNull();
    // Every RX descriptor but one has a buffer mapped FROM_DEVICE through the DMA API.
    expect(adapter.mappedBuffers()).toHaveLength(2 + 63);
    expect(m.core.groupOf(nic0)!.ownerCnt).toBe(1);
    expect(m.checkInvariants()).toEqual([]);
    expect(m.ctx.warnings.count).toBe(0);
  });

  it("behind a mock IOMMU there is no device model: the drivers bind name-only", () => {
    const m = buildMachine("default", { driver: "mock" });
    const dsa0 = m.device("dsa0")!;
    expect(dsa0.driver?.name).toBe("idxd");
    expect(m.deviceDrivers.idxd.idxdOf(dsa0)).toBeUndefined();
    expect(m.core.groupOf(dsa0)!.ownerCnt).toBe(1);
    expect(m.core.groupOf(dsa0)!.pasidArray.entries()).toEqual([]);
    expect(m.deviceDrivers.nic.adapterOf(m.device("nic0")!)).toBeUndefined();
  });

  it("binds only the devices the description names, whatever the ID tables match", () => {
    const m = buildMachine(
      machineDescription({
        extends: "default",
        pci: { rp9: { type: "root_port", slot: 9, acs: true } },
        devices: {
          dsa1: { parent: "rp9", iommu: "iommu0", pasid_bits: 20, endpoint: "dsa" },
          dsa0: { driver: null },
        },
      }),
    );
    expect(m.device("dsa0")!.driver).toBeNull();
    expect(m.device("dsa1")!.driver).toBeNull();
    expect(m.deviceDrivers.idxd.devices()).toEqual([]);
    // Bound on request (sysfs bind), the real driver probes it.
    expect(m.bindDriver(m.device("dsa1")!, "idxd").ok).toBe(true);
    expect(m.deviceDrivers.idxd.idxdOf(m.device("dsa1")!)?.state).toBe("enabled");
  });

  it("unbind runs the driver's remove: nic0's buffers are unmapped, dsa0's PASID detached and freed", () => {
    const m = buildMachine("default");
    const nic0 = m.device("nic0")!;
    const dsa0 = m.device("dsa0")!;
    const stats = () => m.dma.toJSON() as { stats: { unmap_calls?: number } };
    const before = JSON.stringify(stats());
    m.unbindDriver(nic0);
    expect(JSON.stringify(stats())).not.toBe(before);
    expect(m.deviceDrivers.nic.adapterOf(nic0)).toBeUndefined();
    expect(m.core.groupOf(nic0)!.ownerCnt).toBe(0);
    m.unbindDriver(dsa0);
    expect(m.deviceDrivers.idxd.idxdOf(dsa0)).toBeUndefined();
    expect(m.core.groupOf(dsa0)!.pasidArray.entries()).toEqual([]);
    expect(m.programmedPasids(dsa0)).toEqual([]);
    expect((m.toJSON() as { global_pasids: number[] }).global_pasids).toEqual([]);
    // vfio-pci manages DMA itself: binding it leaves ownership alone.
    expect(m.bindDriver(nic0, "vfio-pci").ok).toBe(true);
    expect(m.deviceDrivers.vfio.device(nic0)).toBeDefined();
    expect(m.core.groupOf(nic0)!.ownerCnt).toBe(0);
    expect(m.checkInvariants()).toEqual([]);
    expect(m.ctx.warnings.count).toBe(0);
  });

  it("a driver forced onto a device it does not drive fails its probe with ENODEV", () => {
    const m = buildMachine("default");
    const nic0 = m.device("nic0")!;
    m.unbindDriver(nic0);
    expect(m.bindDriver(nic0, "idxd")).toEqual({ ok: false, errno: "ENODEV" });
    expect(nic0.driver).toBeNull();
    expect(() => m.bindDriver(nic0, "vfio-pci", false)).toThrow(
      "the vfio-pci driver has driver_managed_dma=true",
    );
  });

  it("a hot-plugged device finds its registers when its driver probes", () => {
    const m = buildMachine(
      machineDescription({
        extends: "default",
        pci: { rp9: { type: "root_port", slot: 9, acs: true } },
        devices: { nic1: { parent: "rp9", endpoint: "nic", driver: "nic", present: false } },
      }),
    );
    m.hotAdd("nic1");
    const nic1 = m.device("nic1")!;
    expect(nic1.driver?.name).toBe("nic");
    const adapter = m.deviceDrivers.nic.adapterOf(nic1)!;
    expect(adapter.xmit(new Uint8Array([1, 2, 3]))).toBe("NETDEV_TX_OK");
    m.settle();
    expect(adapter.poll().tx).toBe(1);
    m.hotRemove("nic1");
    expect(m.deviceDrivers.nic.adapterOf(nic1)).toBeUndefined();
    expect(m.checkInvariants()).toEqual([]);
  });

  it("the description's driver rules", () => {
    const head = [
      "iommus: {io: {driver: riscv}}",
      "pci: {rp0: {type: root_port, acs: true}}",
      "devices:",
    ];
    expect(
      inputErrors([...head, "  a: {parent: rp0, endpoint: test, driver: idxd}", ""].join("\n")),
    ).toEqual([
      'd.yaml:4:44: devices.a.driver: the idxd driver drives an "endpoint: dsa" device (a has "test")',
    ]);
    expect(
      inputErrors(
        [
          ...head,
          "  b: {parent: rp0, endpoint: test, driver: {name: vfio-pci, driver_managed_dma: false}}",
          "",
        ].join("\n"),
      ),
    ).toEqual([
      "d.yaml:4:44: devices.b.driver.driver_managed_dma: the vfio-pci driver manages DMA itself: driver_managed_dma is true",
    ]);
    expect(inputErrors([...head, "  c: {bus: platform, driver: nic}", ""].join("\n"))).toEqual([
      "d.yaml:4:30: devices.c.driver: nic is a PCI driver",
    ]);
    // Written as a plain name, vfio-pci brings its own driver_managed_dma.
    const m = buildMachine(
      machineDescription({ extends: "default", devices: { acc0: { driver: "vfio-pci" } } }),
    );
    expect(m.drivers().find((d) => d.name === "vfio-pci")?.driverManagedDma).toBe(true);
    expect(m.core.groupOf(m.device("acc0")!)!.ownerCnt).toBe(0);
  });
});
