import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { createContext } from "../../src/base/context.js";
import { OK } from "../../src/base/result.js";
import { DeviceModel } from "../../src/bus/driver-core.js";
import {
  PCI_ACS_CR,
  PCI_ACS_EC,
  PCI_ACS_RR,
  PCI_ACS_SV,
  PCI_ACS_TB,
  PCI_ACS_UF,
  PCI_PASID_CAP_EXEC,
  PCI_PASID_CAP_PRIV,
  pciAcsEnabled,
  pciAcsPathEnabled,
  pciAtsEnabled,
  pciAtsPageAligned,
  pciAtsQueueDepth,
  pciAtsSupported,
  pciClearMaster,
  pciDevId,
  pciDevIsExternalFacing,
  pciDevIsMultifunction,
  pciDevIsUntrusted,
  pciDevsAreDmaAliases,
  pciDisableAts,
  pciDisableDevice,
  pciDisablePasid,
  pciDisablePri,
  pciDmaAliasDevfns,
  pciEetlpPrefixMax,
  pciEnableAcs,
  pciEnableAts,
  pciEnableDevice,
  pciEnableDeviceMem,
  pciEnablePasid,
  pciEnablePri,
  pciFindCapability,
  pciFindExtCapability,
  pciForEachDmaAlias,
  pciIsEnabled,
  pciMatchId,
  pciMaxPasids,
  pciName,
  pciPasidEnabled,
  pciPasidFeatures,
  pciPasidStatus,
  pciPcieType,
  pciPrgRespPasidRequired,
  pciPriEnabled,
  pciPriSupported,
  pciResetPri,
  pciSetMaster,
  pciUpstreamBridge,
  REQ_ACS_FLAGS,
} from "../../src/bus/pci.js";
import { createPciBus, pciScanHost } from "../../src/bus/pci-dev.js";
import { PciHost } from "../../src/hw/pci/host.js";
import type { AcsBit } from "../../src/hw/pci/options.js";
import {
  PCI_ACS_CTRL,
  PCI_ATS_CTRL,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_STATUS,
  pciDevfn,
  pciDevid,
} from "../../src/hw/pci/regs.js";
import { newPciRoute, type PciFunction } from "../../src/hw/pci/topology.js";
import { buildTree, treeArb } from "../hw/pci/trees.js";

const ALL: AcsBit[] = ["sv", "tb", "rr", "cr", "uf", "ec", "dt"];

function host(): PciHost {
  return new PciHost(createContext());
}

function aliases(pdev: PciFunction): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  pciForEachDmaAlias(pdev, (p, a) => {
    out.push([p.name, a]);
    return 0;
  });
  return out;
}

function warnings(pdev: PciFunction): string[] {
  return pdev.host.ctx.warnings.take().map((w) => w.site);
}

describe("identity and capability lookup", () => {
  it("names devices like pci_name and finds capabilities by walking the lists", () => {
    const h = new PciHost(createContext(), { segment: 0x12 });
    const e = h.addRootPort({ slot: 3 }).addEndpoint({ ats: true, pasid: true }).function(0)!;
    h.enumerate();
    expect(pciName(e)).toBe("0012:01:00.0");
    expect(pciDevId(e)).toBe(0x100);
    expect(pciFindCapability(e, 0x10)).toBe(e.caps.pcie);
    expect(pciFindCapability(e, 0x05)).toBe(0);
    expect(pciFindExtCapability(e, 0x1b)).toBe(e.caps.pasid);
    expect(pciFindExtCapability(e, 0x0d)).toBe(0);
    expect(pciPcieType(e)).toBe(0);
    expect(pciUpstreamBridge(e)!.name).toBe("rp0");
    expect(pciUpstreamBridge(pciUpstreamBridge(e)!)).toBeNull();
  });

  it("detects multifunction devices from the header type and the function number", () => {
    const h = host();
    const single = h.addRcEndpoint();
    const multi = h.addRcEndpoint({ functions: [{}, {}] });
    expect(pciDevIsMultifunction(single.function(0)!)).toBe(false);
    expect(pciDevIsMultifunction(multi.function(0)!)).toBe(true);
    // A non-zero function is multifunction even if its header type says otherwise.
    multi.function(1)!.config.setBits(0x0e, 1, 0x80, false);
    expect(pciDevIsMultifunction(multi.function(1)!)).toBe(true);
  });
});

describe("pci_for_each_dma_alias", () => {
  it("reports only the requester ID of a PCIe endpoint", () => {
    const h = host();
    const e = h.addRootPort().addSwitch().port(0).addEndpoint({ name: "e" }).function(0)!;
    h.enumerate();
    expect(aliases(e)).toEqual([["e", e.rid]]);
  });

  it("adds (subordinate bus, 00.0) for a PCIe-to-PCI bridge and each conventional bridge's own ID", () => {
    const h = host();
    const br = h.addRootPort().addPcieToPciBridge({ name: "br" });
    const ppb = br.addPciBridge({ name: "ppb", slot: 4 });
    const d = ppb.addEndpoint({ name: "d", slot: 2 }).function(0)!;
    h.enumerate();
    expect(aliases(d)).toEqual([
      ["d", d.rid],
      ["ppb", ppb.rid],
      ["br", pciDevid(br.secondaryBusNumber, 0)],
    ]);
  });

  it("uses the quirk for bridge parts that hide their PCIe capability, and only for known IDs", () => {
    const h = host();
    const known = h.addRootPort().addPcieToPciBridge({ name: "asm", part: "asmedia-asm1083" });
    const c = known.addEndpoint({ slot: 1 }).function(0)!;
    const unknown = h.addRootPort().addPcieToPciBridge({ name: "anon", pcieCapability: false });
    const u = unknown.addEndpoint({ slot: 1 }).function(0)!;
    h.enumerate();
    const owned = pciDevid(known.secondaryBusNumber, 0);
    expect(aliases(c)).toEqual([
      [c.name, c.rid],
      ["asm", owned],
    ]);
    // Without the quirk Linux assumes the bridge's own ID, but the hardware uses (secondary, 00.0):
    // the root complex sees an ID Linux never programmed.
    expect(aliases(u).map(([, a]) => a)).toEqual([u.rid, unknown.rid]);
    expect(u.upstreamRequesterId()).toBe(pciDevid(unknown.secondaryBusNumber, 0));
    expect(aliases(u).map(([, a]) => a)).not.toContain(u.upstreamRequesterId());
  });

  it("walks the quirk aliases of functions that DMA with other devfns", () => {
    const h = host();
    const dev = h.addRootPort().addEndpoint({
      functions: [{ part: "ricoh-r5c832" }, { part: "ricoh-r5c832" }, { part: "ricoh-r5c832" }],
    });
    const mic = h
      .addRootPort()
      .addEndpoint({ name: "mic", part: "intel-mic-x200-dma" })
      .function(0)!;
    h.enumerate();
    const [f0, f1, f2] = dev.functions();
    expect(aliases(f2!).map(([, a]) => a)).toEqual([f2!.rid, f0!.rid]);
    expect(pciDmaAliasDevfns(f0!)).toEqual([]);
    expect(pciDevsAreDmaAliases(f1!, f0!)).toBe(true);
    expect(pciDevsAreDmaAliases(f0!, f2!)).toBe(true);
    expect(pciDevsAreDmaAliases(f1!, f2!)).toBe(false);
    const bus = mic.busNumber;
    expect(aliases(mic).map(([, a]) => a)).toEqual([
      mic.rid,
      pciDevid(bus, pciDevfn(0x10, 0)),
      pciDevid(bus, pciDevfn(0x11, 0)),
      pciDevid(bus, pciDevfn(0x12, 3)),
    ]);
  });

  it("stops at the first non-zero return and returns it", () => {
    const h = host();
    const br = h.addRootPort().addPcieToPciBridge();
    const d = br.addPciBridge().addEndpoint().function(0)!;
    h.enumerate();
    const calls: number[] = [];
    const ret = pciForEachDmaAlias(d, (_p, a) => {
      calls.push(a);
      return calls.length === 2 ? -16 : 0;
    });
    expect(ret).toBe(-16);
    expect(calls).toHaveLength(2);
    expect(pciForEachDmaAlias(d, () => 0)).toBe(0);
  });

  test.prop([treeArb])(
    "reports exactly the requester IDs the hardware can put on the function's requests",
    (desc) => {
      const h = buildTree(desc);
      for (const f of h.functions()) {
        const linux = [...new Set(aliases(f).map(([, a]) => a))].sort((a, b) => a - b);
        expect(linux).toEqual(h.requesterIdsOnPath(f));
        // In particular the ID the IOMMU sees is one Linux knows about.
        for (const src of f.dmaSourceDevfns()) expect(linux).toContain(f.upstreamRequesterId(src));
      }
    },
  );
});

describe("pci_acs_enabled", () => {
  function acsHost() {
    const h = host();
    const rpNone = h.addRootPort({ name: "rpNone" });
    const rp = h.addRootPort({ name: "rp", acs: ALL });
    const sw = rp.addSwitch({ downstream: [{ acs: ALL }, {}, { acs: ["sv", "cr"] }] });
    const single = sw.port(0).addEndpoint({ name: "single" }).function(0)!;
    const multi = sw
      .port(1)
      .addEndpoint({ name: "multi", functions: [{}, {}] })
      .function(0)!;
    const multiAcs = sw
      .port(2)
      .addEndpoint({ name: "multiAcs", functions: [{ acs: ["rr", "cr"] }, {}] })
      .function(0)!;
    const br = rpNone.addPcieToPciBridge({ name: "br" });
    const conv = br.addEndpoint({ name: "conv" }).function(0)!;
    const rcSingle = h.addRcEndpoint({ name: "rcs" }).function(0)!;
    const rcMulti = h.addRcEndpoint({ name: "rcm", functions: [{}, {}] }).function(0)!;
    h.enumerate();
    return { h, rpNone, rp, sw, single, multi, multiAcs, br, conv, rcSingle, rcMulti };
  }

  it("applies Linux's rules for devices without ACS", () => {
    const t = acsHost();
    expect(pciAcsEnabled(t.conv, REQ_ACS_FLAGS)).toBe(false);
    expect(pciAcsEnabled(t.br, REQ_ACS_FLAGS)).toBe(false);
    expect(pciAcsEnabled(t.rpNone, REQ_ACS_FLAGS)).toBe(false);
    expect(pciAcsEnabled(t.sw.port(1), REQ_ACS_FLAGS)).toBe(false);
    expect(pciAcsEnabled(t.single, REQ_ACS_FLAGS)).toBe(true);
    expect(pciAcsEnabled(t.sw.upstream, REQ_ACS_FLAGS)).toBe(true);
    expect(pciAcsEnabled(t.rcSingle, REQ_ACS_FLAGS)).toBe(true);
    expect(pciAcsEnabled(t.multi, REQ_ACS_FLAGS)).toBe(false);
    expect(pciAcsEnabled(t.rcMulti, REQ_ACS_FLAGS)).toBe(false);
  });

  it("reads the control register where ACS applies, counting unimplemented controls as on", () => {
    const t = acsHost();
    expect(pciAcsEnabled(t.rp, REQ_ACS_FLAGS)).toBe(false);
    t.rp.config.write(t.rp.caps.acs + PCI_ACS_CTRL, 2, REQ_ACS_FLAGS);
    expect(pciAcsEnabled(t.rp, REQ_ACS_FLAGS)).toBe(true);
    // Egress control is never assumed.
    expect(pciAcsEnabled(t.rp, REQ_ACS_FLAGS | PCI_ACS_EC)).toBe(false);
    // dp2 implements only SV and CR: RR and UF count as hard-wired.
    const dp2 = t.sw.port(2);
    expect(pciAcsEnabled(dp2, REQ_ACS_FLAGS)).toBe(false);
    dp2.config.write(dp2.caps.acs + PCI_ACS_CTRL, 2, PCI_ACS_SV | PCI_ACS_CR);
    expect(pciAcsEnabled(dp2, REQ_ACS_FLAGS)).toBe(true);
    // A multi-function endpoint with ACS: SV and UF are not implemented, RR and CR must be set.
    expect(pciAcsEnabled(t.multiAcs, REQ_ACS_FLAGS)).toBe(false);
    t.multiAcs.config.write(t.multiAcs.caps.acs + PCI_ACS_CTRL, 2, PCI_ACS_RR | PCI_ACS_CR);
    expect(pciAcsEnabled(t.multiAcs, REQ_ACS_FLAGS)).toBe(true);
  });

  it("checks a path up to an end device or the root bus", () => {
    const t = acsHost();
    const dp0 = t.sw.port(0);
    pciEnableAcs(dp0);
    expect(pciAcsPathEnabled(dp0, null, REQ_ACS_FLAGS)).toBe(false);
    expect(pciAcsPathEnabled(dp0, t.sw.upstream, REQ_ACS_FLAGS)).toBe(true);
    expect(pciAcsPathEnabled(t.single, dp0, REQ_ACS_FLAGS)).toBe(true);
    pciEnableAcs(t.rp);
    expect(pciAcsPathEnabled(t.single, null, REQ_ACS_FLAGS)).toBe(true);
    // Reaching the root bus before `end` means `end` was not above `start`.
    expect(pciAcsPathEnabled(t.single, t.rpNone, REQ_ACS_FLAGS)).toBe(false);
    expect(pciAcsPathEnabled(t.multi, null, REQ_ACS_FLAGS)).toBe(false);
  });

  it("enables SV/RR/CR/UF where implemented, and TB on external-facing ports and below", () => {
    const h = host();
    const ext = h.addRootPort({ acs: ALL, externalFacing: true });
    const sw = ext.addSwitch({ downstream: [{ acs: ALL }] });
    const plain = h.addRootPort({ acs: ["rr", "uf", "tb"] });
    const none = h.addRootPort();
    h.enumerate();
    const ctrl = (f: PciFunction) => f.config.read(f.caps.acs + PCI_ACS_CTRL, 2);
    for (const f of [ext, sw.port(0), plain, none]) pciEnableAcs(f);
    expect(ctrl(ext)).toBe(REQ_ACS_FLAGS | PCI_ACS_TB);
    expect(ctrl(sw.port(0))).toBe(REQ_ACS_FLAGS | PCI_ACS_TB);
    expect(ctrl(plain)).toBe(PCI_ACS_RR | PCI_ACS_UF);
    pciEnableAcs(plain, { atsDisabled: true });
    expect(ctrl(plain)).toBe(PCI_ACS_RR | PCI_ACS_UF | PCI_ACS_TB);
    expect(none.config.read(0x100, 4)).toBe(0);
  });
});

describe("trust", () => {
  it("marks everything below an external-facing root port untrusted", () => {
    const h = host();
    const ext = h.addRootPort({ externalFacing: true });
    const sw = ext.addSwitch();
    const e = sw.port(0).addEndpoint().function(0)!;
    const inside = h.addRootPort().addEndpoint().function(0)!;
    h.enumerate();
    expect(pciDevIsExternalFacing(ext)).toBe(true);
    expect(pciDevIsUntrusted(ext)).toBe(false);
    expect([sw.upstream, sw.port(0), e].map(pciDevIsUntrusted)).toEqual([true, true, true]);
    expect(pciDevIsExternalFacing(sw.port(0))).toBe(false);
    expect(pciDevIsUntrusted(inside)).toBe(false);
  });
});

describe("PASID", () => {
  function pasidHost(opts: { rpAcs?: boolean; eeUp?: boolean; exec?: boolean } = {}) {
    const h = host();
    const rp = h.addRootPort(opts.rpAcs === false ? {} : { acs: ALL });
    const sw = rp.addSwitch({
      upstream: { eePrefix: opts.eeUp ?? true },
      downstream: [{ acs: ALL }, { acs: ALL }],
    });
    const e = sw
      .port(0)
      .addEndpoint({
        name: "e",
        bars: [0x1000],
        pasid: { width: 16, exec: opts.exec ?? true, priv: true },
      })
      .function(0)!;
    const peer = sw
      .port(1)
      .addEndpoint({ name: "p", bars: [0x1000] })
      .function(0)!;
    h.enumerate();
    return { h, rp, sw, e, peer };
  }

  it("enables PASID with the requested features once RR and UF cover the path", () => {
    const { rp, sw, e, peer } = pasidHost();
    expect(pciEnablePasid(e, 0)).toEqual({ ok: false, errno: "EINVAL" });
    pciEnableAcs(sw.port(0));
    expect(pciEnablePasid(e, 0).ok).toBe(false);
    pciEnableAcs(rp);
    expect(pciEnablePasid(e, PCI_PASID_CAP_EXEC | PCI_PASID_CAP_PRIV)).toEqual({
      ok: true,
      value: undefined,
    });
    expect(pciPasidEnabled(e)).toBe(true);
    expect(pciPasidStatus(e)).toEqual({ ok: true, value: 0x7 });
    // The hardware now keeps the device's requests away from its peer.
    expect(e.routeUpstream(peer.barPages(0).first, newPciRoute()).kind).toBe("root-complex");
  });

  it("returns -EBUSY with a warning when already enabled; disable warns when not", () => {
    const { rp, sw, e } = pasidHost();
    pciEnableAcs(rp);
    pciEnableAcs(sw.port(0));
    expect(pciEnablePasid(e, 0).ok).toBe(true);
    expect(warnings(e)).toEqual([]);
    expect(pciEnablePasid(e, 0)).toEqual({ ok: false, errno: "EBUSY" });
    expect(warnings(e)).toEqual(["pci_enable_pasid"]);
    pciDisablePasid(e);
    expect(pciPasidEnabled(e)).toBe(false);
    pciDisablePasid(e);
    expect(warnings(e)).toEqual(["pci_disable_pasid"]);
  });

  it("returns -EINVAL without End-End TLP prefixes up to the root port", () => {
    const { rp, sw, e } = pasidHost({ eeUp: false });
    pciEnableAcs(rp);
    pciEnableAcs(sw.port(0));
    expect(pciEetlpPrefixMax(e)).toBe(0);
    expect(pciEetlpPrefixMax(rp)).toBe(4);
    expect(pciEnablePasid(e, 0)).toEqual({ ok: false, errno: "EINVAL" });
  });

  it("returns -EINVAL for features the device does not support", () => {
    const { rp, sw, e } = pasidHost({ exec: false });
    pciEnableAcs(rp);
    pciEnableAcs(sw.port(0));
    expect(pciPasidFeatures(e)).toEqual({ ok: true, value: PCI_PASID_CAP_PRIV });
    expect(pciEnablePasid(e, PCI_PASID_CAP_EXEC)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciEnablePasid(e, 0x1)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciEnablePasid(e, PCI_PASID_CAP_PRIV).ok).toBe(true);
    expect(pciPasidStatus(e)).toEqual({ ok: true, value: 0x5 });
  });

  it("returns -EINVAL and no features or width without a PASID capability", () => {
    const { rp, sw, e, peer } = pasidHost();
    pciEnableAcs(rp);
    pciEnableAcs(sw.port(1));
    expect(pciEnablePasid(peer, 0)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciMaxPasids(peer)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciPasidFeatures(peer)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciPasidStatus(peer)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciMaxPasids(e)).toEqual({ ok: true, value: 1 << 16 });
  });

  it("needs ACS on a multi-function device itself", () => {
    const h = host();
    const rp = h.addRootPort({ acs: ALL });
    const dev = rp.addEndpoint({ functions: [{ pasid: true }, {}] });
    const withAcs = h
      .addRootPort({ acs: ALL })
      .addEndpoint({ functions: [{ pasid: true, acs: ["rr", "uf"] }, {}] });
    h.enumerate();
    for (const p of h.functions()) pciEnableAcs(p);
    expect(pciEnablePasid(dev.function(0)!, 0)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciEnablePasid(withAcs.function(0)!, 0).ok).toBe(true);
  });

  test.prop([treeArb, fc.array(fc.boolean(), { minLength: 64, maxLength: 64 })])(
    "once PASID is enabled the hardware never routes the device's requests to a peer",
    (desc, picks) => {
      const h = buildTree(desc);
      const fns = h.functions();
      fns.forEach((f, i) => {
        if (picks[i % 64]) pciEnableAcs(f);
      });
      const pages = fns.flatMap((t) =>
        Array.from({ length: t.barCount }, (_, i) => t.barPages(i).first),
      );
      for (const f of fns) {
        if (!pciAcsPathEnabled(f, null, PCI_ACS_RR | PCI_ACS_UF)) continue;
        for (const p of pages) expect(f.routeUpstream(p, newPciRoute()).kind).not.toBe("peer");
      }
    },
  );
});

describe("PRI", () => {
  function priDev(capacity = 8) {
    const h = host();
    const e = h
      .addRootPort()
      .addEndpoint({ pri: { capacity, pasidRequired: true }, pasid: true })
      .function(0)!;
    const plain = h.addRootPort().addEndpoint().function(0)!;
    h.enumerate();
    return { e, plain };
  }

  it("enables with min(capacity, reqs) outstanding requests", () => {
    const { e } = priDev(8);
    expect(pciPriSupported(e)).toBe(true);
    expect(pciPrgRespPasidRequired(e)).toBe(true);
    expect(pciEnablePri(e, 100)).toEqual({ ok: true, value: undefined });
    expect(e.config.read(e.caps.pri + PCI_PRI_ALLOC_REQ, 4)).toBe(8);
    expect(pciPriEnabled(e)).toBe(true);
    pciDisablePri(e);
    expect(pciEnablePri(e, 3).ok).toBe(true);
    expect(e.config.read(e.caps.pri + PCI_PRI_ALLOC_REQ, 4)).toBe(3);
  });

  it("returns -EBUSY (warning) when enabled, -EBUSY when not stopped, -EINVAL without PRI", () => {
    const { e, plain } = priDev();
    expect(pciEnablePri(plain, 4)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciPriSupported(plain)).toBe(false);
    expect(pciEnablePri(e, 4).ok).toBe(true);
    expect(pciEnablePri(e, 4)).toEqual({ ok: false, errno: "EBUSY" });
    expect(warnings(e)).toEqual(["pci_enable_pri"]);
    // A request still outstanding after disable keeps PRI from stopping.
    e.priRequest(1);
    pciDisablePri(e);
    expect(e.config.read(e.caps.pri + PCI_PRI_STATUS, 2) & 0x100).toBe(0);
    expect(pciEnablePri(e, 4)).toEqual({ ok: false, errno: "EBUSY" });
    expect(warnings(e)).toEqual([]);
    // pci_reset_pri clears the outstanding state; then it can be enabled again.
    expect(pciResetPri(e)).toEqual({ ok: true, value: undefined });
    expect(pciEnablePri(e, 4).ok).toBe(true);
  });

  it("refuses to reset while enabled, and without the capability", () => {
    const { e, plain } = priDev();
    pciEnablePri(e, 1);
    expect(pciResetPri(e)).toEqual({ ok: false, errno: "EBUSY" });
    expect(warnings(e)).toEqual(["pci_reset_pri"]);
    expect(pciResetPri(plain)).toEqual({ ok: false, errno: "EINVAL" });
    pciDisablePri(e);
    pciDisablePri(e);
    expect(warnings(e)).toEqual(["pci_disable_pri"]);
    expect(e.config.read(e.caps.pri + PCI_PRI_CTRL, 2)).toBe(0);
  });
});

describe("ATS", () => {
  function atsHost() {
    const h = host();
    const e = h
      .addRootPort()
      .addEndpoint({ ats: { queueDepth: 32 } })
      .function(0)!;
    const small = h
      .addRootPort()
      .addEndpoint({ ats: { queueDepth: 4, pageAligned: false } })
      .function(0)!;
    const ext = h.addRootPort({ externalFacing: true }).addEndpoint({ ats: true }).function(0)!;
    const none = h.addRootPort().addEndpoint().function(0)!;
    h.enumerate();
    return { e, small, ext, none };
  }

  it("enables ATS with the STU for the IOMMU page shift", () => {
    const { e } = atsHost();
    expect(pciAtsSupported(e)).toBe(true);
    expect(pciEnableAts(e, 12)).toEqual({ ok: true, value: undefined });
    expect(e.config.read(e.caps.ats + PCI_ATS_CTRL, 2)).toBe(0x8000);
    expect(pciAtsEnabled(e)).toBe(true);
    pciDisableAts(e);
    expect(pciEnableAts(e, 21).ok).toBe(true);
    expect(e.config.read(e.caps.ats + PCI_ATS_CTRL, 2)).toBe(0x8009);
    expect(e.atsEnabled).toBe(true);
  });

  it("returns -EINVAL when unsupported, untrusted or the page shift is too small", () => {
    const { e, ext, none } = atsHost();
    expect(pciAtsSupported(ext)).toBe(false);
    expect(pciEnableAts(ext, 12)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciEnableAts(none, 12)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciEnableAts(e, 11)).toEqual({ ok: false, errno: "EINVAL" });
    expect(pciAtsEnabled(e)).toBe(false);
  });

  it("returns -EBUSY with a warning when enabled twice; disabling twice warns", () => {
    const { e } = atsHost();
    pciEnableAts(e, 12);
    expect(pciEnableAts(e, 12)).toEqual({ ok: false, errno: "EBUSY" });
    expect(warnings(e)).toEqual(["pci_enable_ats"]);
    pciDisableAts(e);
    pciDisableAts(e);
    expect(warnings(e)).toEqual(["pci_disable_ats"]);
  });

  it("reports the invalidate queue depth and page alignment", () => {
    const { e, small, none } = atsHost();
    expect(pciAtsQueueDepth(e)).toEqual({ ok: true, value: 32 });
    expect(pciAtsQueueDepth(small)).toEqual({ ok: true, value: 4 });
    expect(pciAtsQueueDepth(none)).toEqual({ ok: false, errno: "EINVAL" });
    expect([e, small, none].map(pciAtsPageAligned)).toEqual([true, false, false]);
  });
});

describe("pci_enable_device, pci_set_master, pci_disable_device", () => {
  /**
   * rp0 → switch (up, dn0) → ep (one BAR), and rp1 → bare (no BAR), scanned into pci_devs with
   * every Command register cleared, as firmware that leaves decoding to the OS would.
   */
  function scanned() {
    const ctx = createContext();
    const model = new DeviceModel(ctx);
    const bus = createPciBus();
    model.busRegister(bus);
    const h = new PciHost(ctx);
    const sw = h.addRootPort({ name: "rp0" }).addSwitch({ name: "sw", downstream: [{}] });
    sw.port(0).addEndpoint({ name: "ep", bars: [0x4000] });
    h.addRootPort({ name: "rp1" }).addEndpoint({ name: "bare" });
    h.enumerate();
    pciScanHost(model, bus, h);
    for (const fn of h.functions()) fn.config.write(PCI_COMMAND, 2, 0);
    const dev = (name: string) => bus.pciDevOf(h.function(name))!;
    const cmd = (name: string) => h.function(name).config.read(PCI_COMMAND, 2);
    return { ctx, dev, cmd, fns: h.functions() };
  }
  const MEM = PCI_COMMAND_MEMORY;
  const MASTER = PCI_COMMAND_MASTER;

  it("the first enable turns on memory decoding and enables every upstream bridge as a bus master; later ones count", () => {
    const { dev, cmd, fns } = scanned();
    const ep = dev("ep");
    expect(pciEnableDevice(ep)).toEqual(OK);
    expect(ep.enableCnt).toBe(1);
    expect(pciIsEnabled(ep)).toBe(true);
    expect(cmd("ep")).toBe(MEM);
    expect(ep.isBusmaster).toBe(false);
    const path = fns.filter(
      (f) => f.name !== "ep" && !f.name.startsWith("rp1") && f.name !== "bare",
    );
    expect(path.length).toBe(3); // rp0, the switch's upstream and downstream ports
    for (const f of path) {
      const d = dev(f.name);
      expect([f.name, d.enableCnt, d.isBusmaster, cmd(f.name)]).toEqual([
        f.name,
        1,
        true,
        MEM | MASTER,
      ]);
    }
    expect(dev("rp1").enableCnt).toBe(0);
    expect(cmd("rp1")).toBe(0);
    expect(pciEnableDeviceMem(ep)).toEqual(OK);
    expect(ep.enableCnt).toBe(2);
    // Another device below the same bridges does not enable them again.
    expect(dev("rp0").enableCnt).toBe(1);
  });

  it("a function with nothing to decode gets no Memory Space; an enabled bridge that is not a bus master only becomes one", () => {
    const { dev, cmd } = scanned();
    const rp1 = dev("rp1");
    pciEnableDevice(rp1);
    pciClearMaster(rp1);
    expect([rp1.enableCnt, rp1.isBusmaster, cmd("rp1") & MASTER]).toEqual([1, false, 0]);
    pciEnableDevice(dev("bare"));
    expect(cmd("bare")).toBe(0);
    expect([rp1.enableCnt, rp1.isBusmaster, cmd("rp1") & MASTER]).toEqual([1, true, MASTER]);
  });

  it("bus mastering follows set/clear; the last disable turns it off (Memory Space stays), an extra one warns", () => {
    const { ctx, dev, cmd } = scanned();
    const ep = dev("ep");
    pciEnableDevice(ep);
    pciEnableDevice(ep);
    pciSetMaster(ep);
    expect([ep.isBusmaster, cmd("ep")]).toEqual([true, MEM | MASTER]);
    pciClearMaster(ep);
    expect([ep.isBusmaster, cmd("ep")]).toEqual([false, MEM]);
    pciSetMaster(ep);
    pciDisableDevice(ep);
    expect([ep.enableCnt, ep.isBusmaster, cmd("ep")]).toEqual([1, true, MEM | MASTER]);
    pciDisableDevice(ep);
    expect([ep.enableCnt, ep.isBusmaster, cmd("ep")]).toEqual([0, false, MEM]);
    expect(ctx.warnings.list()).toEqual([]);
    pciDisableDevice(ep);
    expect(ep.enableCnt).toBe(-1);
    expect(ctx.warnings.take().map((w) => [w.site, w.message])).toEqual([
      ["pci_disable_device", `${ep.name}: disabling already-disabled device`],
    ]);
    expect((ep.toJSON() as { pci: unknown }).pci).toMatchObject({
      enable_cnt: -1,
      is_busmaster: false,
    });
  });
});

describe("pci_match_id", () => {
  it("returns the first entry whose vendor/device (and subsystem, when given) configuration space matches", () => {
    const h = host();
    const ep = h.addRootPort().addEndpoint({
      name: "ep",
      vendorId: 0x8086,
      deviceId: 0x100e,
      subsystemVendorId: 0x1af4,
      subsystemId: 7,
    });
    h.enumerate();
    const fn = h.function("ep");
    expect(ep).toBeDefined();
    const plain = { vendor: 0x8086, device: 0x100e };
    const sub = { vendor: 0x8086, device: 0x100e, subVendor: 0x1af4, subDevice: 7 };
    const otherSub = { vendor: 0x8086, device: 0x100e, subVendor: 0x1af4, subDevice: 8 };
    expect(pciMatchId([{ vendor: 0x8086, device: 0x0b25 }, plain], fn)).toBe(plain);
    expect(pciMatchId([otherSub, sub, plain], fn)).toBe(sub);
    expect(pciMatchId([otherSub, { vendor: 0x10ec, device: 0x100e }], fn)).toBeNull();
    expect(pciMatchId([], fn)).toBeNull();
  });
});
