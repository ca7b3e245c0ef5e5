// What the isolation oracle costs a device's DMA on a booted RISC-V machine (acc0, a DMA-API
// buffer, a 64-byte Untranslated read that hits the IOTLB): with no observer on the IO bridge
// (the hook's one null check), and with the oracle attached (the OS view: group, domain, a page
// table lookup, the comparison).

import { attachOracle } from "../src/check/oracle.js";
import { DMA_BIDIRECTIONAL } from "../src/dma/constants.js";
import type { TestDevice } from "../src/hw/endpoints/test-device.js";
import { DmaAttrs } from "../src/hw/pci/io-bridge.js";
import { buildMachine } from "../src/machine/build.js";
import type { BenchSuite } from "./harness.js";

function rig() {
  const m = buildMachine("default", { driver: "riscv" });
  const dev = m.device("acc0")!;
  const model = m.endpoints.model("acc0") as TestDevice;
  const pa = BigInt(m.frames.alloc()) << 12n;
  const iova = m.dma.mapSingle(dev, pa, 0x1000n, DMA_BIDIRECTIONAL);
  const attrs = new DmaAttrs();
  const buf = new Uint8Array(64);
  const page = Number(iova >> 12n);
  if (!model.readInto(attrs, page, 0x40, buf, 0, 64).ok) throw new Error("acc0 read failed");
  return { m, read: () => model.readInto(attrs, page, 0x40, buf, 0, 64).ok };
}

export const suite: BenchSuite = {
  title: "oracle",
  build(bench) {
    let sink = 0;
    const bare = rig();
    bench.add("acc0: 64-byte DMA read, IOTLB hit, no observer", () => {
      sink ^= bare.read() ? 1 : 0;
    });
    const watched = rig();
    const oracle = attachOracle(watched.m);
    bench.add("acc0: 64-byte DMA read, IOTLB hit, oracle attached", () => {
      sink ^= watched.read() ? 1 : 0;
    });
    if (sink === -1 || !oracle.verdict().isolated) throw new Error("unreachable");
  },
};
