import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { createContext } from "../../../src/base/context.js";
import { PciHost } from "../../../src/hw/pci/host.js";
import type { AcsBit, PciPortOptions } from "../../../src/hw/pci/options.js";
import {
  PCI_ACS_CTRL,
  PCI_ACS_EGRESS_CTL_V,
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_EXP_DEVCAP2,
  PCI_EXP_DEVCAP2_EE_PREFIX,
  PCI_MEMORY_LIMIT,
  pciDevfn,
  pciDevid,
} from "../../../src/hw/pci/regs.js";
import { routeUpstream } from "../../../src/hw/pci/router.js";
import {
  newPciRoute,
  PCI_REQ_PASID,
  PCI_REQ_TRANSLATED,
  PciBridge,
  type PciFunction,
} from "../../../src/hw/pci/topology.js";
import { buildTree, treeArb } from "./trees.js";

const ALL: AcsBit[] = ["sv", "tb", "rr", "cr", "uf", "ec", "dt"];

function enable(f: PciFunction, ...bits: AcsBit[]): void {
  const m = { sv: 1, tb: 2, rr: 4, cr: 8, uf: 16, ec: 32, dt: 64 };
  f.config.write(
    f.caps.acs + PCI_ACS_CTRL,
    2,
    bits.reduce((a, b) => a | m[b], 0),
  );
}

function page(f: PciFunction, bar = 0): number {
  return f.barPages(bar).first;
}

/** rp0 → switch (dp0 → a, dp1 → b), each with the ACS capabilities given. */
function switchHost(
  opts: { rp?: PciPortOptions; dp0?: PciPortOptions; dp1?: PciPortOptions } = {},
) {
  const h = new PciHost(createContext());
  const rp = h.addRootPort(opts.rp ?? { acs: ALL });
  const sw = rp.addSwitch({
    downstream: [
      opts.dp0 ?? { acs: { capabilities: ALL, egressVectorSize: 4 } },
      opts.dp1 ?? { acs: ALL },
    ],
  });
  const a = sw
    .port(0)
    .addEndpoint({ name: "a", bars: [0x4000] })
    .function(0)!;
  const b = sw
    .port(1)
    .addEndpoint({ name: "b", bars: [0x4000] })
    .function(0)!;
  h.enumerate();
  return { h, rp, sw, dp0: sw.port(0), dp1: sw.port(1), a, b };
}

describe("requester IDs", () => {
  it("are the function's own below PCIe ports", () => {
    const { a, h } = switchHost();
    expect(a.upstreamRequesterId()).toBe(a.rid);
    expect(h.requesterIdsOnPath(a)).toEqual([a.rid]);
  });

  it("are taken over by a PCIe-to-PCI bridge as (secondary bus, 00.0)", () => {
    const h = new PciHost(createContext());
    const br = h.addRootPort().addPcieToPciBridge();
    const c = br.addEndpoint({ slot: 5 }).function(0)!;
    const ppb = br.addPciBridge({ slot: 7 });
    const d = ppb.addEndpoint({ slot: 2 }).function(0)!;
    h.enumerate();
    const owned = pciDevid(br.secondaryBusNumber, 0);
    expect(c.upstreamRequesterId()).toBe(owned);
    expect(h.requesterIdsOnPath(c)).toEqual([owned, c.rid].sort((x, y) => x - y));
    // Behind a conventional bridge the request is first re-issued by that bridge.
    expect(d.upstreamRequesterId()).toBe(owned);
    expect(h.requesterIdsOnPath(d)).toEqual([owned, ppb.rid, d.rid].sort((x, y) => x - y));
    const r = newPciRoute();
    expect(d.routeUpstream(0, r).kind).toBe("root-complex");
    expect(r.rid).toBe(owned);
  });

  it("are taken over by a bridge part that hides its PCIe capability", () => {
    const h = new PciHost(createContext());
    const br = h.addRootPort().addPcieToPciBridge({ part: "asmedia-asm1083" });
    const c = br.addEndpoint({ slot: 3 }).function(0)!;
    h.enumerate();
    expect(br.isPcie).toBe(false);
    expect(br.takesOwnership).toBe(true);
    expect(c.upstreamRequesterId()).toBe(pciDevid(br.secondaryBusNumber, 0));
  });

  it("include the devfns a quirky function also tags its requests with", () => {
    const h = new PciHost(createContext());
    const dev = h
      .addRootPort()
      .addEndpoint({ functions: [{ part: "ricoh-r5c832" }, { part: "ricoh-r5c832" }] });
    h.enumerate();
    const f1 = dev.function(1)!;
    const f0 = dev.function(0)!;
    expect(f1.dmaSourceDevfns()).toEqual([f1.devfn, f0.devfn]);
    expect(f1.upstreamRequesterId(f0.devfn)).toBe(f0.rid);
    expect(h.requesterIdsOnPath(f1)).toEqual([f0.rid, f1.rid]);
    const r = newPciRoute();
    f1.routeUpstream(0, r, 0, pciDevfn(0, 0));
    expect(r.rid).toBe(f0.rid);
    // Its own RID again, then the alias again: each request carries the devfn it is tagged with.
    expect([f1.routeUpstream(0, r).rid, f1.routeUpstream(0, r, 0, f0.devfn).rid]).toEqual([
      f1.rid,
      f0.rid,
    ]);
  });
});

describe("routing follows every register change at once", () => {
  it("sees hardware-set bits (init, setBits) as well as software writes", () => {
    const { rp, a } = switchHost();
    const r = newPciRoute();
    expect(a.routeUpstream(0x10, r, PCI_REQ_PASID).kind).toBe("root-complex");
    // The root port loses End-End TLP prefix support: PASID-prefixed requests stop there.
    rp.config.setBits(rp.caps.pcie + PCI_EXP_DEVCAP2, 4, PCI_EXP_DEVCAP2_EE_PREFIX, false);
    a.routeUpstream(0x10, r, PCI_REQ_PASID);
    expect([r.kind, r.reason, r.via]).toEqual(["blocked", "tlp-prefix-blocked", rp]);
    expect(a.routeUpstream(0x10, r).kind).toBe("root-complex");
    // Bus mastering cleared by a hardware model's init, then set again by software.
    const cmd = a.config.peek(PCI_COMMAND, 2);
    a.config.init(PCI_COMMAND, 2, cmd & ~PCI_COMMAND_MASTER);
    expect(a.routeUpstream(0x10, r).reason).toBe("bus-master-disabled");
    a.config.write(PCI_COMMAND, 2, cmd);
    expect(a.routeUpstream(0x10, r).kind).toBe("root-complex");
  });
});

describe("peer-to-peer routing in a switch", () => {
  it("goes straight to the peer without ACS", () => {
    const { a, b, dp0 } = switchHost();
    const r = a.routeUpstream(page(b) + 1, newPciRoute());
    expect([r.kind, r.target, r.bar, r.via]).toEqual(["peer", b, 0, dp0]);
  });

  it("is redirected up by P2P Request Redirect, then reflected at a port without Upstream Forwarding", () => {
    const { a, b, dp0, rp } = switchHost();
    enable(dp0, "rr");
    let r = a.routeUpstream(page(b), newPciRoute());
    expect([r.kind, r.target, r.via]).toEqual(["peer", b, rp]);
    enable(rp, "uf");
    r = a.routeUpstream(page(b), newPciRoute());
    expect([r.kind, r.rid]).toEqual(["root-complex", a.rid]);
  });

  it("is never routed across by a port whose ACS lacks RR (hard-wired redirect)", () => {
    const { a, b } = switchHost({ dp0: { acs: ["sv"] }, rp: { acs: ["sv"] } });
    expect(a.routeUpstream(page(b), newPciRoute()).kind).toBe("root-complex");
  });

  it("is routed across by a port without an ACS capability, whatever others enable", () => {
    const { a, b, dp1, rp, dp0 } = switchHost({ dp0: {} });
    enable(dp1, "rr", "uf");
    enable(rp, "rr", "uf");
    const r = a.routeUpstream(page(b), newPciRoute());
    expect([r.kind, r.via]).toEqual(["peer", dp0]);
  });

  it("lets translated requests across with Direct Translated P2P, or blocks them with TB", () => {
    const { a, b, dp0, rp } = switchHost();
    enable(dp0, "rr", "dt");
    enable(rp, "uf");
    const t = a.routeUpstream(page(b), newPciRoute(), PCI_REQ_TRANSLATED);
    expect([t.kind, t.via]).toEqual(["peer", dp0]);
    expect(a.routeUpstream(page(b), newPciRoute()).kind).toBe("root-complex");
    enable(dp0, "rr", "tb");
    const r = a.routeUpstream(0, newPciRoute(), PCI_REQ_TRANSLATED);
    expect([r.kind, r.reason, r.via]).toEqual(["blocked", "acs-translation-blocking", dp0]);
  });

  it("blocks requests to ports set in the egress control vector", () => {
    const { a, b, dp0, dp1 } = switchHost();
    enable(dp0, "ec");
    // Port numbers are 1-based in slot order: dp1 is port 2.
    dp0.config.write(dp0.caps.acs + PCI_ACS_EGRESS_CTL_V, 4, 1 << 2);
    let r = a.routeUpstream(page(b), newPciRoute());
    expect([r.kind, r.reason]).toEqual(["blocked", "acs-egress-control"]);
    dp0.config.write(dp0.caps.acs + PCI_ACS_EGRESS_CTL_V, 4, 1 << 1);
    r = a.routeUpstream(page(b), newPciRoute());
    expect([r.kind, r.target]).toEqual(["peer", b]);
    expect(dp1.name).toBe("sw0.dp1");
  });

  it("reports addresses a window routes but no BAR claims as unsupported requests", () => {
    const { a, b, dp0 } = switchHost();
    const r = a.routeUpstream(page(b) + 8, newPciRoute());
    expect([r.kind, r.reason, r.via]).toEqual(["blocked", "unsupported-request", dp0]);
  });

  it("needs Upstream Forwarding at every level above a redirecting switch", () => {
    const h = new PciHost(createContext());
    const rp = h.addRootPort({ acs: ALL });
    const top = rp.addSwitch({ downstream: [{ acs: ALL }] });
    const low = top.port(0).addSwitch({ downstream: [{ acs: ALL }, { acs: ALL }] });
    const a = low
      .port(0)
      .addEndpoint({ bars: [0x1000] })
      .function(0)!;
    const b = low
      .port(1)
      .addEndpoint({ bars: [0x1000] })
      .function(0)!;
    h.enumerate();
    enable(low.port(0), "rr");
    let r = a.routeUpstream(page(b), newPciRoute());
    expect([r.kind, r.via]).toEqual(["peer", top.port(0)]);
    enable(top.port(0), "uf");
    r = a.routeUpstream(page(b), newPciRoute());
    expect([r.kind, r.via]).toEqual(["peer", rp]);
    enable(rp, "uf");
    expect(a.routeUpstream(page(b), newPciRoute()).kind).toBe("root-complex");
  });
});

describe("multi-function devices", () => {
  function mfHost(fn0Acs?: AcsBit[]) {
    const h = new PciHost(createContext());
    const rp = h.addRootPort({ acs: ALL });
    const dev = rp.addEndpoint({
      functions: [{ bars: [0x1000], ...(fn0Acs ? { acs: fn0Acs } : {}) }, { bars: [0x1000] }],
    });
    h.enumerate();
    return { rp, f0: dev.function(0)!, f1: dev.function(1)! };
  }

  it("route between sibling functions internally without ACS", () => {
    const { f0, f1 } = mfHost();
    const r = f0.routeUpstream(page(f1), newPciRoute());
    expect([r.kind, r.target, r.via]).toEqual(["peer", f1, f0]);
  });

  it("send sibling requests out when the function's ACS redirects them", () => {
    const { f0, f1, rp } = mfHost(["rr"]);
    enable(f0, "rr");
    let r = f0.routeUpstream(page(f1), newPciRoute());
    // Out on the link, the root port reflects it back down without Upstream Forwarding.
    expect([r.kind, r.via]).toEqual(["peer", rp]);
    enable(rp, "uf");
    r = f0.routeUpstream(page(f1), newPciRoute());
    expect(r.kind).toBe("root-complex");
    // ACS present but without RR: the function never routes internally.
    const other = mfHost(["sv"]);
    enable(other.rp, "uf");
    expect(other.f0.routeUpstream(page(other.f1), newPciRoute()).kind).toBe("root-complex");
  });
});

describe("conventional PCI", () => {
  it("lets any device on the shared bus claim a request", () => {
    const h = new PciHost(createContext());
    const br = h.addRootPort().addPcieToPciBridge();
    const c = br.addEndpoint({ bars: [0x1000] }).function(0)!;
    const ppb = br.addPciBridge();
    const d = ppb.addEndpoint({ bars: [0x1000] }).function(0)!;
    h.enumerate();
    let r = c.routeUpstream(page(d), newPciRoute());
    expect([r.kind, r.target, r.via]).toEqual(["peer", d, ppb]);
    r = d.routeUpstream(page(c), newPciRoute());
    expect([r.kind, r.target, r.via]).toEqual(["peer", c, br]);
  });
});

describe("root complex and request attributes", () => {
  function twoRoots(peerToPeer: boolean) {
    const h = new PciHost(createContext(), { peerToPeer });
    const rp0 = h.addRootPort({ acs: ALL });
    const rp1 = h.addRootPort({ acs: ALL });
    const a = rp0.addEndpoint({ bars: [0x1000] }).function(0)!;
    const b = rp1.addEndpoint({ bars: [0x1000] }).function(0)!;
    h.enumerate();
    return { rp0, a, b };
  }

  it("sends everything to the root complex unless it routes peer-to-peer between root ports", () => {
    const off = twoRoots(false);
    expect(off.a.routeUpstream(page(off.b), newPciRoute()).kind).toBe("root-complex");
    const on = twoRoots(true);
    expect(on.a.routeUpstream(page(on.b), newPciRoute()).kind).toBe("peer");
    enable(on.rp0, "rr");
    expect(on.a.routeUpstream(page(on.b), newPciRoute()).kind).toBe("root-complex");
  });

  it("stops requests when bus mastering is off at the function or a bridge", () => {
    const { a, dp0 } = switchHost();
    dp0.config.write(PCI_COMMAND, 2, 0x2);
    let r = a.routeUpstream(0, newPciRoute());
    expect([r.kind, r.reason, r.via]).toEqual(["blocked", "bus-master-disabled", dp0]);
    a.config.write(PCI_COMMAND, 2, 0x2);
    r = a.routeUpstream(0, newPciRoute());
    expect([r.kind, r.via]).toEqual(["blocked", a]);
  });

  it("drops PASID-prefixed requests at a port without End-End TLP prefixes", () => {
    const h = new PciHost(createContext());
    const rp = h.addRootPort();
    const sw = rp.addSwitch({ upstream: { eePrefix: false } });
    const a = sw.port(0).addEndpoint({ pasid: true }).function(0)!;
    h.enumerate();
    expect(a.routeUpstream(0, newPciRoute()).kind).toBe("root-complex");
    const r = a.routeUpstream(0, newPciRoute(), PCI_REQ_PASID);
    expect([r.kind, r.reason, r.via]).toEqual(["blocked", "tlp-prefix-blocked", sw.upstream]);
  });

  it("traces requests that do not reach the root complex", () => {
    const { h, a, b } = switchHost();
    const rec = h.ctx.trace.record();
    a.routeUpstream(0, newPciRoute());
    a.routeUpstream(page(b), newPciRoute());
    const recs = rec.stop();
    expect(recs.map((x) => [x.event, x.fields])).toEqual([
      [
        "pci:route",
        {
          device: "a",
          rid: a.rid,
          addr: BigInt(page(b)) << 12n,
          kind: "peer",
          target: "b",
          via: "sw0.dp0",
          reason: null,
        },
      ],
    ]);
  });

  it("refuses functions of another host", () => {
    const { a } = switchHost();
    const other = switchHost();
    expect(() => other.h.routeUpstream(a, 0, newPciRoute())).toThrow(/not a function of/);
  });
});

test.prop([treeArb, fc.nat(), fc.boolean()])(
  "a route ends at the root complex, at a function whose BAR holds the page, or blocked",
  (desc, pick, translated) => {
    const h = buildTree(desc);
    const fns = h.functions();
    const targets = fns.filter((f) => f.barCount > 0);
    const from = fns[pick % fns.length]!;
    const pages = [0, ...targets.map((t) => page(t))];
    for (const p of pages) {
      const r = from.routeUpstream(p, newPciRoute(), translated ? PCI_REQ_TRANSLATED : 0);
      if (r.kind === "peer") {
        expect(r.target!.barForPage(p)).toBe(r.bar);
        expect(r.target).not.toBe(from);
      } else if (r.kind === "root-complex") {
        expect(r.rid).toBe(from.upstreamRequesterId());
      } else {
        expect(r.reason).not.toBeNull();
      }
    }
  },
);

test.prop([treeArb])(
  "requests for RAM (outside every window) always reach the root complex",
  (desc) => {
    const h = buildTree(desc);
    for (const f of h.functions()) {
      const r = f.routeUpstream(0x10, newPciRoute());
      expect([r.kind, r.rid]).toEqual(["root-complex", f.upstreamRequesterId()]);
    }
  },
);

// The host answers most pages from each function's path summary: whatever software or hardware
// changes in configuration space, it must route exactly as the router does from scratch.
const stepArb = fc.oneof(
  fc.record({
    t: fc.constant("route" as const),
    from: fc.nat(),
    page: fc.nat(),
    flags: fc.integer({ min: 0, max: 3 }),
    alias: fc.boolean(),
  }),
  fc.record({
    t: fc.constantFrom(
      "acs" as const,
      "egress" as const,
      "command" as const,
      "bar" as const,
      "window" as const,
      "prefix" as const,
    ),
    fn: fc.nat(),
    value: fc.nat({ max: 0xffff }),
  }),
);

test.prop([treeArb, fc.boolean(), fc.array(stepArb, { maxLength: 30 })])(
  "routes from the path summaries exactly as from scratch, across configuration changes",
  (desc, peerToPeer, steps) => {
    const h = buildTree(desc, { peerToPeer });
    const fns = h.functions();
    const pagesOf = (f: PciFunction): number[] => {
      const out: number[] = [];
      for (let i = 0; i < f.barCount; i++) {
        const { first, count } = f.barPages(i);
        out.push(first, first + count - 1, first + count);
      }
      const w = f instanceof PciBridge ? f.windowPages() : null;
      if (w) out.push(w.first - 1, w.first, w.last, w.last + 1);
      return out;
    };
    for (const st of steps) {
      if (st.t === "route") {
        const from = fns[st.from % fns.length]!;
        const pages = [0, 0x10, 0x8_0000, ...fns.flatMap(pagesOf)];
        const p = Math.max(0, pages[st.page % pages.length]!);
        const aliases = from.dmaSourceDevfns();
        const src = st.alias ? aliases[st.page % aliases.length]! : -1;
        const got = h.routeUpstream(from, p, newPciRoute(), st.flags, src);
        const want = routeUpstream(from, p, newPciRoute(), st.flags, src, peerToPeer);
        expect(got).toEqual(want);
        continue;
      }
      const f = fns[st.fn % fns.length]!;
      const cs = f.config;
      if (st.t === "acs" && f.caps.acs) cs.write(f.caps.acs + PCI_ACS_CTRL, 2, st.value);
      if (st.t === "egress" && f.caps.acs) cs.init(f.caps.acs + PCI_ACS_EGRESS_CTL_V, 4, st.value);
      if (st.t === "command") {
        cs.setBits(PCI_COMMAND, 2, st.value & 1 ? PCI_COMMAND_MASTER : PCI_COMMAND_MEMORY, false);
      }
      if (st.t === "bar" && f.barCount > 0) cs.write(PCI_BASE_ADDRESS_0, 4, st.value << 12);
      if (st.t === "window" && f instanceof PciBridge) cs.write(PCI_MEMORY_LIMIT, 2, st.value);
      if (st.t === "prefix" && f.caps.pcie) {
        cs.setBits(f.caps.pcie + PCI_EXP_DEVCAP2, 4, PCI_EXP_DEVCAP2_EE_PREFIX, false);
      }
    }
  },
);
