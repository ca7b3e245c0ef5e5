// The DMA API over the RISC-V driver: dma_map_single + dma_unmap_single of a 4 KiB buffer in
// strict mode (iotlb_sync per unmap: IOTINVAL.VMA + IOFENCE.C) and in lazy mode (the IOVA goes on
// the flush queue; a full ring flushes every 255 unmaps), through the kernel-shaped bigint API and
// through the page-number API; and a device translation of a fresh mapping.

import { DMA_BIDIRECTIONAL, DMA_MAPPING_ERROR } from "../src/dma/constants.js";
import { installDmaApi } from "../src/dma/mapping.js";
import { DmaRequest, DmaResponse } from "../src/hw/pci/translation-agent.js";
import type { BenchSuite } from "./harness.js";
import { benchCore, riscvIommuWithDevice } from "./riscv-driver.bench.js";

const DID = 1;

/** One RISC-V IOMMU and one platform device on its DMA (strict) or DMA_FQ (lazy) domain. */
function machine(strict: boolean) {
  const b = benchCore({ strict });
  // The DMA layer is there before the IOMMU registers, as at boot.
  const dma = installDmaApi(b.core, { memory: b.memory, frames: b.frames });
  const { hardware, dev } = riscvIommuWithDevice(b, DID);
  const { core, frames } = b;
  const expected = strict ? "strict" : "lazy";
  if (dma.cookieOf(core.getDmaDomain(dev)!)?.mode !== expected) {
    throw new Error(`benchmark set-up is not ${expected}`);
  }
  const ppn = frames.alloc();
  return { dma, dev, hardware, ppn, pa: BigInt(ppn) << 12n };
}

export const suite: BenchSuite = {
  title: "dma",
  build(bench) {
    let sink = 0n;
    for (const strict of [true, false]) {
      const mode = strict ? "strict" : "lazy";
      const m = machine(strict);
      bench.add(`dma_map_single + dma_unmap_single 4 KiB, ${mode}`, () => {
        const iova = m.dma.mapSingle(m.dev, m.pa, 4096n, DMA_BIDIRECTIONAL);
        m.dma.unmapSingle(m.dev, iova, 4096n, DMA_BIDIRECTIONAL);
        sink ^= iova;
      });
      const p = machine(strict);
      let pfnSink = 0;
      bench.add(`mapPagePfn + unmapPagePfn 4 KiB, ${mode}`, () => {
        const iova = p.dma.mapPagePfn(p.dev, p.ppn, 0, 4096, DMA_BIDIRECTIONAL);
        p.dma.unmapPagePfn(p.dev, iova, 0, 4096, DMA_BIDIRECTIONAL);
        pfnSink ^= iova;
      });
      if (pfnSink === -2) throw new Error("unreachable");
    }

    const t = machine(true);
    const req = new DmaRequest();
    req.deviceId = DID;
    const out = new DmaResponse();
    bench.add("dma_map_single + device translate (IOTLB miss) + dma_unmap_single, strict", () => {
      const iova = t.dma.mapSingle(t.dev, t.pa, 4096n, DMA_BIDIRECTIONAL);
      req.iovaPage = Number(iova >> 12n);
      t.hardware.translate(req, out);
      t.dma.unmapSingle(t.dev, iova, 4096n, DMA_BIDIRECTIONAL);
      sink ^= iova;
    });
    if (sink === DMA_MAPPING_ERROR) throw new Error("unreachable");
  },
};
