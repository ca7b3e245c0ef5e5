// The DMA API on whole machines built from descriptions with the RISC-V driver: buildMachine
// installs the DMA layer at boot (machine.dma), before any IOMMU registers.

import { describe, expect, it } from "vitest";
import { pciDevId } from "../../src/bus/pci.js";
import { devIsPci } from "../../src/bus/pci-dev.js";
import { DMA_BIDIRECTIONAL, DMA_BIT_MASK } from "../../src/dma/constants.js";
import { IOVA_DEFAULT_FQ_TIMEOUT } from "../../src/dma/flush-queue.js";
import { DmaRequest, DmaResponse } from "../../src/hw/pci/translation-agent.js";
import { buildMachine } from "../../src/machine/build.js";
import { machineDescription } from "../../src/machine/load.js";
import type { Machine } from "../../src/machine/machine.js";

function deviceDma(m: Machine, name: string) {
  const dev = m.device(name);
  if (!dev || !devIsPci(dev)) throw new Error(`no PCI device ${name}`);
  const hw = m.iommus().find((i) => i.instance === dev.iommu!.iommuDev)!.riscv!.hardware;
  const req = new DmaRequest();
  const out = new DmaResponse();
  return {
    dev,
    translate(iova: bigint): bigint | string {
      req.deviceId = pciDevId(dev.fn);
      req.access = "read";
      req.setIova(iova);
      hw.translate(req, out);
      return out.fault?.code ?? out.paddr;
    },
  };
}

describe("the DMA API of a booted machine", () => {
  it("single-mock on riscv: the device's DMA domain gets a real cookie and maps through the hardware", () => {
    const m = buildMachine("single-mock", { driver: "riscv" });
    const { dev, translate } = deviceDma(m, "dev0");
    const domain = m.core.getDmaDomain(dev)!;
    const dma = m.dma;
    const cookie = dma.cookieOf(domain)!;
    expect(cookie.iovad).not.toBeNull();
    expect(dma.opsKind(dev)).toBe("dma-iommu");
    expect(dev.iommu!.pci32bitWorkaround).toBe(true);
    const pa = BigInt(m.frames.alloc()) << 12n;
    const iova = dma.mapSingle(dev, pa + 0x40n, 0x80n, DMA_BIDIRECTIONAL);
    expect(translate(iova)).toBe(pa + 0x40n);
    dma.unmapSingle(dev, iova, 0x80n, DMA_BIDIRECTIONAL);
    expect(translate(iova)).toBe("read_page_fault");
    expect(m.checkInvariants()).toEqual([]);
  });

  it("default on riscv: a firmware direct region is reserved in the IOVA domain; 64-bit PCI masks start below 4 GiB", () => {
    const m = buildMachine("default", { driver: "riscv" });
    const dma = m.dma;
    const gpu = m.device("gpu0")!;
    const cookie = dma.cookieOf(m.core.getDmaDomain(gpu)!)!;
    const ranges = cookie.iovad!.ranges();
    expect(ranges).toContainEqual(expect.objectContaining({ pfnLo: 0xa0000, pfnHi: 0xa00ff }));
    const { dev, translate } = deviceDma(m, "nic0");
    expect(dev.driver?.name).toBe("nic");
    expect(dma.setMaskAndCoherent(dev, DMA_BIT_MASK(64))).toMatchObject({ ok: true });
    const buf = dma.allocCoherent(dev, 0x2000n)!;
    expect(buf.dmaHandle).toBeLessThan(1n << 32n);
    expect(translate(buf.dmaHandle + 0x1004n)).toBe(buf.phys(0x1004n));
  });

  it("a lazy machine (iommu.strict=0) keeps DMA_FQ and flushes on the machine's clock", () => {
    const m = buildMachine(
      machineDescription({ extends: "single-mock", boot: { "iommu.strict": 0 } }),
      { driver: "riscv" },
    );
    const dma = m.dma;
    const { dev, translate } = deviceDma(m, "dev0");
    expect(dma.deviceView(dev)).toMatchObject({ domain_type: "DMA_FQ", mode: "lazy" });
    const pa = BigInt(m.frames.alloc()) << 12n;
    const iova = dma.mapSingle(dev, pa, 0x1000n, DMA_BIDIRECTIONAL);
    expect(translate(iova)).toBe(pa);
    dma.unmapSingle(dev, iova, 0x1000n, DMA_BIDIRECTIONAL);
    expect(translate(iova)).toBe(pa);
    m.ctx.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT * 1_000_000);
    expect(translate(iova)).toBe("read_page_fault");
  });
});
