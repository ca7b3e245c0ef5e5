// The RISC-V IOMMU driver's map/unmap path through the IOMMU core: a 4 KiB iommu_map +
// iommu_unmap with strict invalidation (IOTINVAL.VMA + IOFENCE.C per unmap), the same without
// the per-unmap sync (lazy, flush_iotlb_all every 256 unmaps, as a flush queue would), and a
// device translation right after the map (an IOTLB miss that walks the Sv57 table).

import { createContext } from "../src/base/context.js";
import { Device } from "../src/bus/device.js";
import { DeviceModel } from "../src/bus/driver-core.js";
import { FirmwareDescription, FwNode } from "../src/bus/firmware.js";
import { createPlatformBus } from "../src/bus/platform.js";
import { createRiscvIommu } from "../src/drivers/riscv/factory.js";
import { FrameAllocator, PhysicalMemory } from "../src/hw/memory.js";
import { DmaRequest, DmaResponse } from "../src/hw/pci/translation-agent.js";
import { IOMMU_READ, IOMMU_WRITE } from "../src/iommu/constants.js";
import { IommuCore, type IommuCoreOptions } from "../src/iommu/core.js";
import { IotlbGather } from "../src/iommu/domain.js";
import type { BenchSuite } from "./harness.js";

const RW = IOMMU_READ | IOMMU_WRITE;
const IOVA_PFN = 0x1000;
const PA_PFN = 0x8_3000;
const LAZY_BATCH = 256;

/** RAM, a device model with the platform bus, and the IOMMU core. */
export function benchCore(options: IommuCoreOptions = {}) {
  const ctx = createContext();
  const memory = new PhysicalMemory([{ base: 0x8000_0000n, size: 64n << 20n }]);
  const frames = new FrameAllocator(memory);
  const model = new DeviceModel(ctx);
  const platform = createPlatformBus();
  model.busRegister(platform);
  const core = new IommuCore(ctx, model, options);
  return { ctx, memory, frames, model, platform, core };
}

/** A RISC-V IOMMU on `b`'s platform bus and one platform device behind it (device_id `did`). */
export function riscvIommuWithDevice(b: ReturnType<typeof benchCore>, did: number) {
  const { ctx, memory, frames, model, platform, core } = b;
  const hwdev = new Device("iommu0", platform);
  model.deviceAdd(hwdev);
  const { hardware } = createRiscvIommu({ ctx, memory, frames, core, name: "iommu0", hwdev });
  const dev = new Device(
    "dev0",
    platform,
    new FirmwareDescription({
      node: new FwNode("dev0"),
      iommus: { fwnode: hwdev.fw.node, ids: [did] },
    }),
  );
  model.deviceAdd(dev);
  return { hardware, dev };
}

/** A machine with one RISC-V IOMMU and one device on an attached UNMANAGED domain. */
function machine() {
  const b = benchCore();
  const { hardware, dev } = riscvIommuWithDevice(b, 1);
  const core = b.core;
  const r = core.pagingDomainAlloc(dev);
  if (!r.ok) throw new Error(`paging domain: ${r.errno}`);
  const domain = r.value;
  if (!core.attachDevice(domain, dev).ok) throw new Error("attach failed");
  return { core, domain, hardware };
}

export const suite: BenchSuite = {
  title: "riscv-driver",
  build(bench) {
    const strict = machine();
    bench.add("iommu_map + iommu_unmap 4 KiB, strict (IOTINVAL.VMA + IOFENCE.C)", () => {
      strict.core.mapPfn(strict.domain, IOVA_PFN, PA_PFN, 1, RW);
      strict.core.unmapPfn(strict.domain, IOVA_PFN, 1);
    });

    const lazy = machine();
    const ops = lazy.domain.ops!;
    const gather = new IotlbGather();
    let n = 0;
    bench.add(`iommu_map + unmap 4 KiB, lazy (flush_iotlb_all every ${LAZY_BATCH})`, () => {
      lazy.core.mapPfn(lazy.domain, IOVA_PFN + n, PA_PFN, 1, RW);
      gather.init();
      ops.unmapPages!(lazy.domain, IOVA_PFN + n, 12, 1, gather);
      if (++n === LAZY_BATCH) {
        ops.flushIotlbAll!(lazy.domain);
        n = 0;
      }
    });

    const tr = machine();
    const req = new DmaRequest();
    req.deviceId = 1;
    req.iovaPage = IOVA_PFN;
    const out = new DmaResponse();
    let sink = 0;
    bench.add("iommu_map + device translate (IOTLB miss, Sv57 walk) + iommu_unmap", () => {
      tr.core.mapPfn(tr.domain, IOVA_PFN, PA_PFN, 1, RW);
      tr.hardware.translate(req, out);
      sink ^= out.ppn;
      tr.core.unmapPfn(tr.domain, IOVA_PFN, 1);
    });

    const hit = machine();
    hit.core.mapPfn(hit.domain, IOVA_PFN, PA_PFN, 1, RW);
    hit.hardware.translate(req, out);
    bench.add("device translate after map (IOTLB hit)", () => {
      hit.hardware.translate(req, out);
      sink ^= out.ppn;
    });
    if (sink === -1 || out.fault !== null) throw new Error("benchmark set-up does not translate");
  },
};
