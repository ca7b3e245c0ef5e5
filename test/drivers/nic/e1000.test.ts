// The e1000-like driver on a RISC-V machine: rings from dma_alloc_coherent, RX buffers mapped
// FROM_DEVICE, TX buffers mapped TO_DEVICE and unmapped after the device wrote the descriptor
// back; strict and lazy invalidation (the flush-queue window), identity passthrough, and remove.

import { describe, expect, it } from "vitest";
import { IOVA_DEFAULT_FQ_TIMEOUT } from "../../../src/dma/flush-queue.js";
import { frame, type NicRig, nicMachine } from "./fixture.js";

/** Sends `frames` (MAC loopback), lets the machine run, polls. */
function roundTrip(r: NicRig, frames: Uint8Array[]) {
  for (const f of frames) expect(r.adapter.xmit(f)).toBe("NETDEV_TX_OK");
  r.m.settle();
  return r.adapter.poll();
}

describe("probe", () => {
  it("maps the rings and every RX buffer but one through the DMA API and programs the registers", () => {
    const r = nicMachine();
    const a = r.adapter;
    expect(r.dma.deviceView(r.dev)).toMatchObject({
      ops: "dma-iommu",
      dma_mask: "0xffffffffffffffff",
      mode: "strict",
    });
    expect(a.toJSON()).toMatchObject({
      up: true,
      tx: { count: 64, next_to_use: 0, buffers: 0 },
      rx: { count: 64, next_to_use: 63, buffers: 63 },
    });
    // The device sees the rings at their DMA addresses (IOVAs), owns 63 RX descriptors.
    expect(r.hw.tx.toJSON()).toMatchObject({
      base: `0x${a.tx!.desc.dmaHandle.toString(16)}`,
      count: 64,
    });
    expect(r.hw.rx.toJSON()).toMatchObject({ count: 64, head: 0, tail: 63 });
    expect(a.rx!.desc.dmaHandle).not.toBe(BigInt(a.rx!.desc.pages[0]!) << 12n);
    expect(r.dma.toJSON()).toMatchObject({ stats: { alloc: 2, map_page: 63 } });
    r.invariants();
  });
});

describe("TX and RX through the DMA API", () => {
  it("strict: loopback frames come back intact; each TX IOVA stops translating at its unmap", () => {
    const r = nicMachine({ nic: { loopback: true } });
    const frames = [frame(60, 1), frame(1514, 2), frame(2048, 3), frame(100, 4)];
    const iovas = frames.map((_, i) => r.adapter.tx!.buffers[i]);
    expect(iovas.every((b) => b === null)).toBe(true);
    for (const f of frames) expect(r.adapter.xmit(f)).toBe("NETDEV_TX_OK");
    const tx = r.adapter.tx!.buffers.slice(0, 4).map((b) => b!);
    for (const b of tx) expect(r.translate(b.dma)).toBe(BigInt(b.ppn) << 12n);
    r.m.settle();
    expect(r.adapter.poll()).toEqual({ tx: 4, rx: 4 });
    expect(r.adapter.received).toEqual(frames);
    for (const b of tx) expect(r.translate(b.dma)).toBe("read_page_fault");
    expect(r.adapter.stats.toJSON()).toMatchObject({ tx_packets: 4, rx_packets: 4, tx_dropped: 0 });
    // The RX ring was refilled: the device owns 63 descriptors again.
    expect(r.adapter.toJSON()).toMatchObject({ rx: { buffers: 63 } });
    r.invariants();
  });

  it("lazy (DMA-FQ): after the unmap the old IOVA still reaches the freed buffer until the flush queue flushes", () => {
    const r = nicMachine({ boot: { "iommu.strict": 0 }, nic: { loopback: true } });
    expect(r.dma.deviceView(r.dev)).toMatchObject({ domain_type: "DMA_FQ", mode: "lazy" });
    expect(r.adapter.xmit(frame(500, 5))).toBe("NETDEV_TX_OK");
    const b = r.adapter.tx!.buffers[0]!;
    const pa = BigInt(b.ppn) << 12n;
    r.m.settle();
    expect(r.adapter.poll()).toEqual({ tx: 1, rx: 1 });
    expect(r.adapter.received).toEqual([frame(500, 5)]);
    // Unmapped and freed by the driver, yet the IOTLB still translates it: the FQ window.
    expect(r.adapter.tx!.buffers[0]).toBeNull();
    expect(r.m.frames.isAllocated(b.ppn)).toBe(false);
    expect(r.translate(b.dma)).toBe(pa);
    r.m.advance(IOVA_DEFAULT_FQ_TIMEOUT * 1_000_000);
    expect(r.translate(b.dma)).toBe("read_page_fault");
    r.invariants();
  });

  it("identity (passthrough): DMA addresses are physical addresses and traffic flows the same", () => {
    const r = nicMachine({ boot: { "iommu.passthrough": 1 }, nic: { loopback: true } });
    expect(r.dma.opsKind(r.dev)).toBe("dma-direct");
    expect(r.adapter.rx!.desc.dmaHandle).toBe(BigInt(r.adapter.rx!.desc.pages[0]!) << 12n);
    expect(r.adapter.xmit(frame(64, 6))).toBe("NETDEV_TX_OK");
    const b = r.adapter.tx!.buffers[0]!;
    expect(b.dma).toBe(BigInt(b.ppn) << 12n);
    r.m.settle();
    expect(r.adapter.poll()).toEqual({ tx: 1, rx: 1 });
    expect(r.adapter.received).toEqual([frame(64, 6)]);
    r.invariants();
  });

  it("a frame from the wire larger than a buffer spans descriptors and is handed up whole", () => {
    const r = nicMachine({ nic: { rxBufferSize: 256 } });
    const f = frame(700, 7);
    expect(r.hw.receive(f)).toBe(true);
    r.m.settle();
    expect(r.adapter.poll()).toEqual({ tx: 0, rx: 1 });
    expect(r.adapter.received).toEqual([f]);
    expect(r.adapter.toJSON()).toMatchObject({ rx: { next_to_clean: 3, buffers: 63 } });
    r.invariants();
  });

  it("NETDEV_TX_BUSY when the TX ring is full; a poll frees it", () => {
    const r = nicMachine({ nic: { txDescs: 8 } });
    for (let i = 0; i < 7; i++) expect(r.adapter.xmit(frame(60, i))).toBe("NETDEV_TX_OK");
    expect(r.adapter.xmit(frame(60, 9))).toBe("NETDEV_TX_BUSY");
    expect(r.adapter.stats.txBusy).toBe(1);
    r.m.settle();
    expect(r.adapter.poll().tx).toBe(7);
    expect(r.hw.transmitted).toHaveLength(7);
    expect(r.adapter.xmit(frame(60, 9))).toBe("NETDEV_TX_OK");
  });
});

describe("remove", () => {
  it("unmaps every buffer, frees the rings and memory, stops the device", () => {
    const r = nicMachine({ nic: { loopback: true } });
    roundTrip(r, [frame(60, 1), frame(60, 2)]);
    // Leave one frame in flight: sent, not yet cleaned.
    expect(r.adapter.xmit(frame(80, 3))).toBe("NETDEV_TX_OK");
    const inFlight = r.adapter.tx!.buffers.find((b) => b !== null)!;
    const pages = r.adapter
      .mappedBuffers()
      .flatMap((b) => Array.from({ length: b.pages }, (_, k) => b.ppn + k));
    // Two ring pages, 63 RX buffers, the frame in flight.
    expect(pages.length).toBe(2 + 63 + 1);
    r.m.unbindDriver(r.dev);
    expect(r.driver.adapterOf(r.dev)).toBeUndefined();
    const stats = r.dma.toJSON() as { stats: Record<string, number> };
    expect(stats.stats.map_page).toBe(stats.stats.unmap_page);
    expect(stats.stats.alloc).toBe(stats.stats.free);
    expect(pages.filter((p) => r.m.frames.isAllocated(p))).toEqual([]);
    expect(r.translate(inFlight.dma)).toBe("read_page_fault");
    expect(r.dev.fn.busMasterEnabled).toBe(false);
    expect(r.hw.toJSON()).toMatchObject({ registers: { RCTL: 0, TCTL: 0 } });
    r.invariants();
  });
});

describe("PCI enable", () => {
  it("probe enables the device once and makes it a bus master; remove and a failed probe leave it disabled", () => {
    const r = nicMachine();
    const state = () => [r.dev.enableCnt, r.dev.isBusmaster, r.dev.fn.busMasterEnabled];
    expect(state()).toEqual([1, true, true]);
    expect(r.dev.upstreamBridgeDev!.enableCnt).toBe(1);
    r.m.unbindDriver(r.dev);
    expect(state()).toEqual([0, false, false]);
    // No memory for the rings: e1000_open fails and the probe disables the device again.
    const hog: number[] = [];
    for (let p = r.m.frames.alloc(); p >= 0; p = r.m.frames.alloc()) hog.push(p);
    expect(r.m.model.deviceDriverAttach(r.driver, r.dev).ok).toBe(false);
    expect(state()).toEqual([0, false, false]);
    for (const p of hog) r.m.frames.free(p);
    expect(r.m.model.deviceDriverAttach(r.driver, r.dev).ok).toBe(true);
    expect(state()).toEqual([1, true, true]);
    expect(r.m.ctx.warnings.list()).toEqual([]);
  });
});

describe("a NIC behind an external-facing port (untrusted)", () => {
  it("sub-page buffers cannot be mapped without bounce buffers: RX refill stops, TX frames are dropped", () => {
    const r = nicMachine({
      devices: { tb0: { endpoint: "nic", present: true } },
      name: "tb0",
      nic: { loopback: true },
    });
    expect(r.dev.untrusted).toBe(true);
    // The rings are whole pages and map; the first 2 KiB RX buffer does not.
    expect(r.adapter.toJSON()).toMatchObject({
      up: true,
      rx: { buffers: 0 },
      stats: { alloc_rx_buff_failed: 1 },
    });
    expect(r.dma.logs()).toContainEqual(
      expect.objectContaining({ level: "warn", message: expect.stringMatching(/bounce buffers/) }),
    );
    expect(r.adapter.xmit(frame(60, 1))).toBe("NETDEV_TX_OK");
    expect(r.adapter.stats.txDropped).toBe(1);
    r.m.settle();
    expect(r.adapter.poll()).toEqual({ tx: 0, rx: 0 });
    expect(r.hw.lastError).toBeNull();
  });
});
