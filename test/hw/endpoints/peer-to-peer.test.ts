// Peer-to-peer DMA through the IO bridge: a request for a peer's BAR below the same switch goes
// straight to the peer when ACS does not redirect it; with ACS P2P Request Redirect it goes up
// to the root complex, where the IOMMU translates it and the root complex routes the result.

import { describe, expect, it } from "vitest";
import { TestDevice } from "../../../src/hw/endpoints/test-device.js";
import type { PciHostOptions } from "../../../src/hw/pci/options.js";
import {
  PCI_ACS_CTRL,
  PCI_ACS_DT,
  PCI_ACS_RR,
  PCI_ACS_TB,
  PCI_ACS_UF,
} from "../../../src/hw/pci/regs.js";
import type { PciFunction } from "../../../src/hw/pci/topology.js";
import {
  bareMode,
  dcPaging,
  did,
  enableAts,
  faults,
  machine,
  map,
  page,
  pageTable,
} from "./fixture.js";

function acs(f: PciFunction, bits: number): void {
  f.config.write(f.caps.acs + PCI_ACS_CTRL, 2, bits);
}

/** P2P Request Redirect at the switch port, Upstream Forwarding at the root port. */
function redirect(dp: PciFunction, rp: PciFunction, extra = 0): void {
  acs(dp, PCI_ACS_RR | extra);
  acs(rp, PCI_ACS_UF);
}

/**
 * rp0 → switch: dp0 → a, dp1 → b; every port implements ACS (controls off). A redirected request
 * reaches the root complex only when rp0 forwards upstream what its own window decodes (ACS
 * Upstream Forwarding), as Linux enables it.
 */
function pair(host: PciHostOptions = {}) {
  const m = machine(
    (h) => {
      const sw = h.addRootPort({ name: "rp0", acs: true }).addSwitch({
        downstream: [
          { name: "dp0", acs: true },
          { name: "dp1", acs: true },
        ],
      });
      sw.port(0).addEndpoint({ name: "a", bars: [0x4000], ats: true });
      sw.port(1).addEndpoint({ name: "b", bars: [0x4000] });
    },
    { host },
  );
  const a = new TestDevice(m.bridge, m.host.function("a"));
  const b = new TestDevice(m.bridge, m.host.function("b"));
  return {
    m,
    a,
    b,
    dp0: m.host.function("dp0"),
    rp0: m.host.function("rp0"),
    bBar: b.fn.barAddress(0),
  };
}

const DATA = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);

describe("peer-to-peer routing", () => {
  it("without ACS redirect, a write to a peer's BAR lands in the peer and skips the IOMMU", () => {
    const { m, a, b, bBar } = pair();
    // Paging with nothing mapped: were the request translated, it would fault.
    dcPaging(m, did(m, a.fn), pageTable(m));
    const w = a.write(bBar + 0x1ff8n, DATA);
    expect(w).toMatchObject({ ok: true, done: 8 });
    expect(b.barMemory(0).subarray(0x1ff8, 0x2000)).toEqual(DATA);
    expect(a.read(bBar + 0x1ff8n, 8).data).toEqual(DATA);
    expect(a.log().at(-1)!.pages).toEqual([-1]);
    expect(faults(m)).toEqual([]);
    expect(m.r.iommu.ioatc.stats.iotlbMisses).toBe(0);
  });

  it("with ACS P2P Request Redirect, the request goes up and the IOMMU translates it", () => {
    const { m, a, b, dp0, rp0, bBar } = pair();
    redirect(dp0, rp0);
    const id = did(m, a.fn);
    dcPaging(m, id, pageTable(m));
    const w = a.write(bBar, DATA);
    expect(w.result).toBe("CA translation-fault write_page_fault");
    expect(b.barMemory(0).subarray(0, 8)).toEqual(new Uint8Array(8));
    expect(faults(m).map((f) => [f.cause, f.did, f.iotval])).toEqual([[15, id, bBar]]);
  });

  it("redirected and mapped to RAM, it reaches memory, not the peer", () => {
    const { m, a, b, dp0, rp0, bBar } = pair();
    redirect(dp0, rp0);
    const pt = pageTable(m);
    const frame = page(m);
    map(pt, bBar, frame);
    dcPaging(m, did(m, a.fn), pt);
    expect(a.write(bBar, DATA).ok).toBe(true);
    expect(m.r.mem.readBytes(frame, 8)).toEqual(DATA);
    expect(b.barMemory(0).subarray(0, 8)).toEqual(new Uint8Array(8));
  });

  it("redirected and untranslated, the root complex routes it down only if it does peer-to-peer", () => {
    const no = pair();
    redirect(no.dp0, no.rp0);
    bareMode(no.m);
    expect(no.a.write(no.bBar, DATA).result).toBe("UR not-memory");

    const yes = pair({ peerToPeer: true });
    redirect(yes.dp0, yes.rp0);
    bareMode(yes.m);
    expect(yes.a.write(yes.bBar, DATA).ok).toBe(true);
    expect(yes.b.barMemory(0).subarray(0, 8)).toEqual(DATA);
  });

  it("ACS Direct Translated P2P lets Translated requests past the redirect", () => {
    const { m, a, b, dp0, rp0, bBar } = pair();
    enableAts(a.fn);
    redirect(dp0, rp0, PCI_ACS_DT);
    dcPaging(m, did(m, a.fn), pageTable(m), { ats: true });
    expect(a.write(bBar, DATA, { translated: true }).ok).toBe(true);
    expect(b.barMemory(0).subarray(0, 8)).toEqual(DATA);
    // Untranslated requests are still redirected (and fault: nothing is mapped).
    expect(a.write(bBar, DATA).result).toBe("CA translation-fault write_page_fault");
  });

  it("ACS Translation Blocking stops Translated requests at the port", () => {
    const { m, a, dp0 } = pair();
    enableAts(a.fn);
    acs(dp0, PCI_ACS_TB);
    dcPaging(m, did(m, a.fn), null, { ats: true });
    expect(a.read(0x8000_0000n, 8, { translated: true }).result).toBe(
      "UR acs-translation-blocking",
    );
    expect(a.read(0x8000_0000n, 8).ok).toBe(true);
  });

  it("a peer BAR without a device model behind it answers Unsupported Request", () => {
    const m = machine((h) => {
      const sw = h.addRootPort().addSwitch();
      sw.port(0).addEndpoint({ name: "a" });
      sw.port(1).addEndpoint({ name: "bare", bars: [0x1000] });
    });
    const a = new TestDevice(m.bridge, m.host.function("a"));
    const bar = m.host.function("bare").barAddress(0);
    expect(a.read(bar, 4).result).toBe("UR no-device-model");
  });
});
