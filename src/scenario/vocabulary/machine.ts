// Machine actions: not kernel functions but things that happen to the machine — hot plug, a
// driver bound or unbound through sysfs, time passing, deferred work running, a fault armed in
// the mock driver.

import type { Errno } from "../../base/errno.js";
import { SimError } from "../../base/errors.js";
import type { Device } from "../../bus/device.js";
import { MOCK_OPS, type MockOp } from "../../drivers/mock/fault-inject.js";
import type { Machine, MachineIommu } from "../../machine/machine.js";
import { DEV, PASID } from "./kinds.js";
import {
  BOOL,
  enumOf,
  type FunctionSpec,
  int,
  object,
  param,
  returnsResult,
  TEXT,
  VOID,
} from "./types.js";

const DEV_NAME = param(object("device_name"), { doc: "a device of the machine description" });

export const MACHINE_ACTIONS: readonly FunctionSpec<Machine>[] = [
  {
    name: "hot_add",
    area: "machine",
    params: { dev: DEV_NAME },
    returns: VOID,
    ts: "machine.hotAdd(dev)",
    doc: "Plugs in a described device that is not present (present: false, or removed earlier): the bus adds it and the IOMMU core probes it.",
    call: (m, a) => m.hotAdd(a.dev as string),
  },
  {
    name: "hot_remove",
    area: "machine",
    params: { dev: DEV_NAME },
    returns: VOID,
    ts: "machine.hotRemove(dev)",
    doc: "Unplugs a present device (a PCI device leaves with all its functions): its driver is unbound and the IOMMU core releases it.",
    call: (m, a) => m.hotRemove(a.dev as string),
  },
  {
    name: "bind_driver",
    area: "machine",
    params: {
      dev: DEV,
      driver: param(TEXT, {
        doc: "driver name (registered on first use): idxd, nic, vfio-pci are the machine's device drivers, any other name a name-only driver",
      }),
      driver_managed_dma: param(BOOL, {
        optional: true,
        doc: "default: the device driver's own (vfio-pci true), else false",
      }),
    },
    returns: returnsResult("void"),
    ts: "machine.bindDriver(dev, driver, driver_managed_dma)",
    doc: "Binds a driver (sysfs bind → device_driver_attach → really_probe → dma_configure, then the driver's probe). EBUSY if a driver is bound or (without driver_managed_dma) the group is owned; ENODEV if the device is not one the driver drives; the driver's probe errors.",
    call: (m, a) =>
      m.bindDriver(
        a.dev as Device,
        a.driver as string,
        a.driver_managed_dma as boolean | undefined,
      ),
  },
  {
    name: "unbind_driver",
    area: "machine",
    params: { dev: DEV },
    returns: VOID,
    ts: "machine.unbindDriver(dev)",
    doc: "Unbinds the device's driver (sysfs unbind → device_release_driver → dma_cleanup).",
    call: (m, a) => m.unbindDriver(a.dev as Device),
  },
  {
    name: "advance",
    area: "machine",
    params: { ns: param(int(0, Number.MAX_SAFE_INTEGER, "a duration in nanoseconds")) },
    returns: VOID,
    ts: "machine.advance(ns)",
    doc: "Advances virtual time, firing timers that fall due.",
    call: (m, a) => m.advance(a.ns as number),
  },
  {
    name: "settle",
    area: "machine",
    params: {},
    returns: VOID,
    ts: "machine.settle()",
    doc: "Runs every deferred work item (IOPF work, deferred probe, …) to completion.",
    call: (m) => {
      m.settle();
    },
  },
  {
    name: "attach_isolation_oracle",
    area: "machine",
    params: {},
    returns: VOID,
    ts: "machine.attachIsolationOracle()",
    doc: "Attaches the isolation oracle (docs/isolation-oracle.md) to every IO bridge: from now on each page a device reaches, or fails to reach, is compared with what the OS maps for it at that moment; `expect: {isolation: …}` reads its verdict. Attach it before devices start DMA.",
    call: (m) => {
      m.attachIsolationOracle();
    },
  },
  {
    name: "inject_fault",
    area: "machine",
    params: {
      iommu: param(object("iommu")),
      op: param(enumOf(MOCK_OPS), { doc: "the mock driver op to fail" }),
      errno: param({ kind: "errno" }),
      nth: param(int(1, 1_000_000), {
        optional: true,
        doc: "fail the nth matching call (default 1)",
      }),
      times: param(int(1, 1_000_000), { optional: true, doc: "consecutive failures (default 1)" }),
      dev: param(object("device"), { optional: true, doc: "only calls for this device count" }),
      pasid: { ...PASID, optional: true, doc: "only calls for this PASID count" },
      partial_pages: param(int(0, 1 << 30), {
        optional: true,
        doc: "map_pages: pages mapped before failing",
      }),
    },
    returns: VOID,
    drivers: ["mock"],
    ts: "machine.iommu(iommu).mock.faults.arm(rule)",
    doc: "Arms a fault in a mock IOMMU driver: its nth matching op call fails with the errno.",
    call: (_m, a) => {
      const mock = (a.iommu as MachineIommu).mock;
      if (!mock)
        throw new SimError(`IOMMU ${(a.iommu as MachineIommu).name} does not run the mock driver`);
      const dev = a.dev as Device | undefined;
      const pasid = a.pasid as number | undefined;
      mock.faults.arm({
        op: a.op as MockOp,
        errno: a.errno as Errno,
        nth: (a.nth as number | undefined) ?? 1,
        times: (a.times as number | undefined) ?? 1,
        partialPages: (a.partial_pages as number | undefined) ?? 0,
        ...(dev === undefined && pasid === undefined
          ? {}
          : {
              filter: (info) =>
                (dev === undefined || info.dev === dev) &&
                (pasid === undefined || info.pasid === pasid),
            }),
      });
    },
  },
];
