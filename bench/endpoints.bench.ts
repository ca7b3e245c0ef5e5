// Device DMA cost through the whole path (PCIe routing, IOMMU translation, memory): a test
// device's 64-byte read that hits the IOTLB, and a DSA 4 KiB memmove submitted with ENQCMD under
// a PASID (portal write, engine, two page-sized DMAs, completion record); and the PCIe routing of
// one DMA page alone, from a multi-function endpoint below two switches (4 hops).

import { createContext } from "../src/base/context.js";
import { DsaDevice } from "../src/hw/endpoints/dsa.js";
import {
  DSA_CMD,
  DSA_OPCODE,
  DSA_REG,
  dsaFunctionOptions,
  IDXD_OP_FLAG,
} from "../src/hw/endpoints/dsa-regs.js";
import { TestDevice } from "../src/hw/endpoints/test-device.js";
import { FrameAllocator, PhysicalMemory } from "../src/hw/memory.js";
import { PciHost } from "../src/hw/pci/host.js";
import { DmaAttrs, IoBridge } from "../src/hw/pci/io-bridge.js";
import { PCI_PASID_CTRL } from "../src/hw/pci/regs.js";
import { newPciRoute, PCI_REQ_PASID } from "../src/hw/pci/topology.js";
import { SV39 } from "../src/hw/pgtable/modes.js";
import { PageTable } from "../src/hw/pgtable/page-table.js";
import { PTE_A, PTE_D, PTE_R, PTE_U, PTE_W } from "../src/hw/pgtable/pte.js";
import { RiscvIommu } from "../src/hw/riscv-iommu/iommu.js";
import type { BenchSuite } from "./harness.js";

const URW = PTE_R | PTE_W | PTE_U | PTE_A | PTE_D;
const IOVA = 0x1000_0000n;

/**
 * RAM, an IOMMU with a 1-level DDT, one root-complex integrated endpoint (device_id < 128),
 * and the IO bridge. `dc` writes the endpoint's device context (base format) raw.
 */
function machine(endpoint: Parameters<PciHost["addRcEndpoint"]>[0]) {
  const ctx = createContext();
  const mem = new PhysicalMemory([{ base: 0x8000_0000n, size: 256n << 20n }]);
  const frames = new FrameAllocator(mem);
  const iommu = new RiscvIommu(ctx, mem, "iommu0");
  const host = new PciHost(ctx);
  host.addRcEndpoint(endpoint);
  host.enumerate();
  host.setTranslationAgent(iommu);
  const bridge = new IoBridge(host, mem);
  const ddt = BigInt(frames.alloc()) << 12n;
  iommu.write64(16, ((ddt >> 12n) << 10n) | 2n); // ddtp: 1LVL
  const pt = PageTable.create(mem, frames, SV39)!;
  const page = () => BigInt(frames.alloc()) << 12n;
  const dc = (did: number, tc: bigint, ta: bigint, fsc: bigint) => {
    const at = ddt + BigInt(did) * 32n;
    mem.write64(at, tc);
    mem.write64(at + 16n, ta);
    mem.write64(at + 24n, fsc);
  };
  return { ctx, mem, frames, iommu, host, bridge, pt, page, dc };
}

export const suite: BenchSuite = {
  title: "endpoints",
  build(bench) {
    let sink = 0;

    // ---- test device: 64-byte Untranslated read, IOTLB hit ----
    const t = machine({ name: "t0" });
    const dev = new TestDevice(t.bridge, t.host.function("t0"), { logCapacity: 0 });
    const frame = t.page();
    t.pt.map(IOVA, frame, 4096n, URW);
    const did = t.bridge.requesterId(dev.fn);
    // V, iosatp Sv39, PSCID 1.
    t.dc(did, 1n, 1n << 12n, (8n << 60n) | BigInt(t.pt.rootPpn));
    const attrs = new DmaAttrs();
    const buf = new Uint8Array(64);
    const page = Number(IOVA >> 12n);
    if (!dev.readInto(attrs, page, 0x40, buf, 0, 64).ok) throw new Error("test device read failed");
    bench.add("test device: 64-byte DMA read, IOTLB hit (Sv39)", () => {
      dev.readInto(attrs, page, 0x40, buf, 0, 64);
      sink ^= buf[0]!;
    });

    // ---- DSA: 4 KiB memmove, ENQCMD with a PASID ----
    const d = machine(dsaFunctionOptions({ name: "dsa0" }));
    const dsa = new DsaDevice(d.bridge, d.host.function("dsa0"));
    dsa.fn.config.write(dsa.fn.caps.pasid + PCI_PASID_CTRL, 2, 1);
    const pasid = 3;
    const pdt = d.page();
    d.mem.write64(pdt + BigInt(pasid) * 16n, 1n | (2n << 12n)); // PC.ta: V, PSCID 2
    d.mem.write64(pdt + BigInt(pasid) * 16n + 8n, (8n << 60n) | BigInt(d.pt.rootPpn));
    // V, PDTV; pdtp PD8.
    d.dc(d.bridge.requesterId(dsa.fn), 1n | 32n, 0n, (1n << 60n) | (pdt >> 12n));
    for (let i = 0n; i < 3n; i++) d.pt.map(IOVA + i * 4096n, d.page(), 4096n, URW);
    const w32 = (off: number, v: number) =>
      d.bridge.mmioWrite(dsa.registerAddress(off), 4, BigInt(v));
    w32(DSA_REG.CMD, DSA_CMD.ENABLE_DEVICE << 20);
    w32(DSA_REG.WQCFG, 16);
    w32(DSA_REG.CMD, DSA_CMD.ENABLE_WQ << 20);
    const desc = new Uint8Array(64);
    const dv = new DataView(desc.buffer);
    dv.setUint32(4, (DSA_OPCODE.MEMMOVE << 24) | IDXD_OP_FLAG.CRAV | IDXD_OP_FLAG.RCR, true);
    dv.setBigUint64(8, IOVA + 0x2000n, true);
    dv.setBigUint64(16, IOVA, true);
    dv.setBigUint64(24, IOVA + 0x1000n, true);
    dv.setUint32(32, 4096, true);
    const portal = dsa.portalAddress(0);
    const memmove = () => {
      d.bridge.mmioEnqueue(portal, desc, pasid);
      dsa.run();
    };
    memmove();
    if (dsa.completed !== 1) throw new Error("DSA memmove did not complete");
    bench.add("DSA: 4 KiB memmove (ENQCMD, PASID, completion record)", () => {
      memmove();
      sink ^= dsa.completed;
    });

    // ---- PCIe routing: root port (ACS) → switch → switch → function 0 of a 2-function device ----
    const host = new PciHost(createContext());
    host
      .addRootPort({ acs: true })
      .addSwitch({ downstream: [{ acs: true }, { acs: true }] })
      .port(0)
      .addSwitch({ downstream: [{ acs: true }, { acs: true }] })
      .port(1)
      .addEndpoint({
        name: "ep",
        functions: [{ bars: [0x4000], pasid: 20 }, { bars: [0x4000] }],
      });
    host.addRootPort({ acs: true }).addEndpoint({ name: "peer", bars: [0x4000] });
    host.enumerate();
    const from = host.device("ep").function(0)!;
    const route = newPciRoute();
    const ramPage = 0x8_1234; // RAM: no BAR or window on the way decodes it
    host.routeUpstream(from, ramPage, route, PCI_REQ_PASID);
    if (route.kind !== "root-complex") throw new Error("the route does not reach the root complex");
    bench.add("PCIe route of a RAM page, 4 hops (2 switches, multi-function device)", () => {
      host.routeUpstream(from, ramPage, route, PCI_REQ_PASID);
      sink ^= route.rid;
    });
    if (sink === -1) throw new Error("unreachable");
  },
};
