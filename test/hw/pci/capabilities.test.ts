import { describe, expect, it } from "vitest";
import { createContext } from "../../../src/base/context.js";
import { PciHost } from "../../../src/hw/pci/host.js";
import {
  PCI_ACS_CAP,
  PCI_ACS_CTRL,
  PCI_ACS_EGRESS_CTL_V,
  PCI_ATS_CAP,
  PCI_ATS_CTRL,
  PCI_BASE_ADDRESS_0,
  PCI_CAPABILITY_LIST,
  PCI_DEVICE_ID,
  PCI_EXP_DEVCAP2,
  PCI_EXP_FLAGS,
  PCI_EXT_CAP_ID_ACS,
  PCI_EXT_CAP_ID_ATS,
  PCI_EXT_CAP_ID_PASID,
  PCI_EXT_CAP_ID_PRI,
  PCI_HEADER_TYPE,
  PCI_PASID_CAP,
  PCI_PASID_CTRL,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_MAX_REQ,
  PCI_PRI_STATUS,
  PCI_PRIMARY_BUS,
  PCI_STATUS,
  PCI_VENDOR_ID,
} from "../../../src/hw/pci/regs.js";
import type { PciFunction } from "../../../src/hw/pci/topology.js";

function host(): PciHost {
  return new PciHost(createContext());
}

/** Walks the standard capability list the way software does: [offset, id] pairs. */
function stdCaps(f: PciFunction): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  if (!(f.config.read(PCI_STATUS, 2) & 0x10)) return out;
  for (let pos = f.config.read(PCI_CAPABILITY_LIST, 1); pos >= 0x40; ) {
    out.push([pos, f.config.read(pos, 1)]);
    pos = f.config.read(pos + 1, 1);
  }
  return out;
}

/** Walks the extended capability list: [offset, id, version] triples. */
function extCaps(f: PciFunction): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  for (let pos = 0x100; pos >= 0x100; ) {
    const h = f.config.read(pos, 4);
    if (h === 0) break;
    out.push([pos, h & 0xffff, (h >>> 16) & 0xf]);
    pos = (h >>> 20) & 0xffc;
  }
  return out;
}

function ep(opts: Parameters<PciHost["addRootPort"]>[0] = {}, epOpts: object = {}): PciFunction {
  const h = host();
  return h.addRootPort(opts).addEndpoint(epOpts).function(0)!;
}

describe("capability lists", () => {
  it("chain the PCI Express capability and the extended capabilities in order", () => {
    const f = ep({}, { acs: ["rr"], ats: true, pri: true, pasid: true });
    expect(stdCaps(f).map(([, id]) => id)).toEqual([0x10]);
    const ext = extCaps(f);
    expect(ext.map(([, id]) => id)).toEqual([
      PCI_EXT_CAP_ID_ACS,
      PCI_EXT_CAP_ID_ATS,
      PCI_EXT_CAP_ID_PRI,
      PCI_EXT_CAP_ID_PASID,
    ]);
    expect(ext.every(([, , v]) => v === 1)).toBe(true);
    // Offsets are dword aligned, strictly increasing, and match what the hardware recorded.
    const offs = ext.map(([o]) => o);
    expect(offs.every((o, i) => o % 4 === 0 && (i === 0 || o > offs[i - 1]!))).toBe(true);
    expect(offs).toEqual([f.caps.acs, f.caps.ats, f.caps.pri, f.caps.pasid]);
  });

  it("is empty for a conventional PCI function (no PCIe capability, 256-byte space)", () => {
    const h = host();
    const br = h.addRootPort().addPcieToPciBridge();
    const f = br.addEndpoint().function(0)!;
    expect(stdCaps(f)).toEqual([]);
    expect(f.config.size).toBe(256);
    expect(f.config.read(0x100, 4)).toBe(0);
  });

  it("has no extended capabilities when none are implemented", () => {
    expect(extCaps(ep())).toEqual([]);
  });
});

describe("header registers", () => {
  it("keep IDs, header type and the PCIe type read-only", () => {
    const h = host();
    const rp = h.addRootPort();
    const dev = rp.addEndpoint({ functions: [{}, {}] });
    const f = dev.function(1)!;
    const before = [PCI_VENDOR_ID, PCI_DEVICE_ID].map((o) => f.config.read(o, 2));
    f.config.write(PCI_VENDOR_ID, 4, 0xdead_beef);
    expect([PCI_VENDOR_ID, PCI_DEVICE_ID].map((o) => f.config.read(o, 2))).toEqual(before);
    expect(f.config.read(PCI_HEADER_TYPE, 1)).toBe(0x80);
    f.config.write(PCI_HEADER_TYPE, 1, 0x01);
    expect(f.config.read(PCI_HEADER_TYPE, 1)).toBe(0x80);
    expect(rp.config.read(PCI_HEADER_TYPE, 1)).toBe(0x01);
    const flags = rp.config.read(rp.caps.pcie + PCI_EXP_FLAGS, 2);
    expect((flags >>> 4) & 0xf).toBe(4);
    rp.config.write(rp.caps.pcie + PCI_EXP_FLAGS, 2, 0);
    expect(rp.config.read(rp.caps.pcie + PCI_EXP_FLAGS, 2)).toBe(flags);
  });

  it("report each kind's Device/Port Type", () => {
    const h = host();
    const rp = h.addRootPort();
    const sw = rp.addSwitch({ downstream: 3 });
    const e = sw.port(0).addEndpoint().function(0)!;
    const leg = sw.port(1).addEndpoint({ legacy: true }).function(0)!;
    const br = sw.port(2).addPcieToPciBridge();
    const rc = h.addRcEndpoint().function(0)!;
    const type = (f: PciFunction) => (f.config.read(f.caps.pcie + PCI_EXP_FLAGS, 2) >>> 4) & 0xf;
    expect([rp, sw.upstream, sw.port(0), br, e, leg, rc].map(type)).toEqual([4, 5, 6, 7, 0, 1, 9]);
  });

  it("sizes BARs the way software probes them: write all ones, read back the mask", () => {
    const f = ep({}, { bars: [0x4000, 0x10_0000] });
    f.config.write(PCI_BASE_ADDRESS_0, 4, 0xffff_ffff);
    f.config.write(PCI_BASE_ADDRESS_0 + 4, 4, 0xffff_ffff);
    expect(f.config.read(PCI_BASE_ADDRESS_0, 4)).toBe(0xffff_c000);
    expect(f.config.read(PCI_BASE_ADDRESS_0 + 4, 4)).toBe(0xfff0_0000);
    // An unimplemented BAR reads 0 whatever is written.
    f.config.write(PCI_BASE_ADDRESS_0 + 8, 4, 0xffff_ffff);
    expect(f.config.read(PCI_BASE_ADDRESS_0 + 8, 4)).toBe(0);
  });

  it("makes bridge bus numbers read-write", () => {
    const rp = host().addRootPort();
    rp.config.write(PCI_PRIMARY_BUS, 4, 0x00_0504_03);
    expect([rp.primaryBusNumber, rp.secondaryBusNumber, rp.subordinateBusNumber]).toEqual([
      3, 4, 5,
    ]);
  });
});

describe("ACS capability", () => {
  it("lets software set only the controls the capability implements", () => {
    const rp = host().addRootPort({ acs: ["sv", "rr", "uf"] });
    const at = rp.caps.acs;
    expect(rp.config.read(at + PCI_ACS_CAP, 2)).toBe(0x15);
    rp.config.write(at + PCI_ACS_CTRL, 2, 0x7f);
    expect(rp.config.read(at + PCI_ACS_CTRL, 2)).toBe(0x15);
    rp.config.write(at + PCI_ACS_CAP, 2, 0);
    expect(rp.config.read(at + PCI_ACS_CAP, 2)).toBe(0x15);
  });

  it("keeps the firmware-enabled controls and sizes the egress vector", () => {
    const rp = host().addRootPort({
      acs: { capabilities: ["rr", "ec"], enabled: ["rr"], egressVectorSize: 4 },
    });
    const at = rp.caps.acs;
    expect(rp.config.read(at + PCI_ACS_CAP, 2)).toBe(0x0424);
    expect(rp.config.read(at + PCI_ACS_CTRL, 2)).toBe(0x04);
    rp.config.write(at + PCI_ACS_EGRESS_CTL_V, 4, 0xffff_ffff);
    expect(rp.config.read(at + PCI_ACS_EGRESS_CTL_V, 4)).toBe(0xf);
  });

  it("is refused where the spec forbids it or the bits are unknown", () => {
    expect(() => host().addRootPort().addPcieToPciBridge().addEndpoint({ acs: true })).toThrow(
      /conventional PCI function/,
    );
    expect(() => host().addRootPort({ acs: ["xx" as never] })).toThrow(/unknown ACS control "xx"/);
    expect(() => host().addRootPort({ acs: { capabilities: ["rr"], enabled: ["uf"] } })).toThrow(
      /does not implement/,
    );
  });
});

describe("ATS capability", () => {
  it("reports queue depth, page-aligned requests, global invalidate; controls Enable and STU", () => {
    const f = ep({}, { ats: { queueDepth: 32, pageAligned: true, globalInvalidate: true } });
    const at = f.caps.ats;
    expect(f.config.read(at + PCI_ATS_CAP, 2)).toBe(0x0060);
    const g = ep({}, { ats: { queueDepth: 5, pageAligned: false } });
    expect(g.config.read(g.caps.ats + PCI_ATS_CAP, 2)).toBe(5);
    f.config.write(at + PCI_ATS_CTRL, 2, 0xffff);
    expect(f.config.read(at + PCI_ATS_CTRL, 2)).toBe(0x801f);
    expect(f.atsEnabled).toBe(true);
  });
});

describe("PASID capability", () => {
  it("reports width and features; Exec/Priv enables are RsvdP when unsupported", () => {
    const f = ep({}, { pasid: { width: 16, exec: false, priv: true } });
    const at = f.caps.pasid;
    expect(f.config.read(at + PCI_PASID_CAP, 2)).toBe((16 << 8) | 0x4);
    f.config.write(at + PCI_PASID_CTRL, 2, 0x7);
    expect(f.config.read(at + PCI_PASID_CTRL, 2)).toBe(0x5);
    expect(f.pasidEnabled).toBe(true);
    expect(() => ep({}, { pasid: 21 })).toThrow(/PASID width 21/);
  });

  it("advertises End-End TLP prefixes by default with PASID", () => {
    const f = ep({}, { pasid: true });
    expect(f.config.read(f.caps.pcie + PCI_EXP_DEVCAP2, 4) & 0x0020_0000).not.toBe(0);
    const g = ep({}, { pasid: true, eePrefix: false });
    expect(g.config.read(g.caps.pcie + PCI_EXP_DEVCAP2, 4)).toBe(0);
    const h = ep({}, { eePrefix: 2 });
    expect((h.config.read(h.caps.pcie + PCI_EXP_DEVCAP2, 4) >>> 21) & 7).toBe(0b101);
  });
});

describe("PRI capability", () => {
  function pri(capacity = 4): PciFunction {
    return ep({}, { pri: { capacity, pasidRequired: true } });
  }
  const ctrl = (f: PciFunction) => f.config.read(f.caps.pri + PCI_PRI_CTRL, 2);
  const status = (f: PciFunction) => f.config.read(f.caps.pri + PCI_PRI_STATUS, 2);

  it("starts stopped with its capacity and the PASID-required bit read-only", () => {
    const f = pri();
    expect(status(f)).toBe(0x8100);
    expect(f.config.read(f.caps.pri + PCI_PRI_MAX_REQ, 4)).toBe(4);
    f.config.write(f.caps.pri + PCI_PRI_STATUS, 2, 0xffff);
    expect(status(f)).toBe(0x8100);
    f.config.write(f.caps.pri + PCI_PRI_MAX_REQ, 4, 99);
    expect(f.config.read(f.caps.pri + PCI_PRI_MAX_REQ, 4)).toBe(4);
  });

  it("is stopped only while disabled with nothing outstanding", () => {
    const f = pri();
    f.config.write(f.caps.pri + PCI_PRI_ALLOC_REQ, 4, 2);
    f.config.write(f.caps.pri + PCI_PRI_CTRL, 2, 1);
    expect(status(f) & 0x100).toBe(0);
    expect(f.priRequest(7)).toBe(true);
    expect(f.priRequest(7)).toBe(true);
    // The allocation is used up.
    expect(f.priRequest(8)).toBe(false);
    f.config.write(f.caps.pri + PCI_PRI_CTRL, 2, 0);
    expect(status(f) & 0x100).toBe(0);
    f.priResponse(7, "success");
    expect(f.priOutstanding).toBe(0);
    expect(status(f) & 0x100).toBe(0x100);
  });

  it("latches Response Failure and Unexpected PRG Index as RW1C", () => {
    const f = pri();
    f.config.write(f.caps.pri + PCI_PRI_ALLOC_REQ, 4, 4);
    f.config.write(f.caps.pri + PCI_PRI_CTRL, 2, 1);
    f.priRequest(1);
    f.priResponse(1, "failure");
    f.priResponse(9, "success");
    expect(status(f) & 0x3).toBe(0x3);
    // With Response Failure latched the function sends no more requests.
    expect(f.priRequest(2)).toBe(false);
    f.config.write(f.caps.pri + PCI_PRI_STATUS, 2, 0x1);
    expect(status(f) & 0x3).toBe(0x2);
    expect(f.priRequest(2)).toBe(true);
  });

  it("resets outstanding requests only while disabled; Reset reads back as 0", () => {
    const f = pri();
    f.config.write(f.caps.pri + PCI_PRI_ALLOC_REQ, 4, 4);
    f.config.write(f.caps.pri + PCI_PRI_CTRL, 2, 1);
    f.priRequest(3);
    f.config.write(f.caps.pri + PCI_PRI_CTRL, 2, 0x3);
    expect(f.priOutstanding).toBe(1);
    expect(ctrl(f)).toBe(1);
    f.config.write(f.caps.pri + PCI_PRI_CTRL, 2, 0);
    expect(status(f) & 0x100).toBe(0);
    f.config.write(f.caps.pri + PCI_PRI_CTRL, 2, 0x2);
    expect(f.priOutstanding).toBe(0);
    expect(ctrl(f)).toBe(0);
    expect(status(f) & 0x100).toBe(0x100);
  });
});

describe("capability views", () => {
  it("decode the registers as they read now", () => {
    const f = ep(
      {},
      { acs: ["rr", "uf"], ats: { queueDepth: 8 }, pri: { capacity: 16 }, pasid: 8 },
    );
    f.config.write(f.caps.acs + PCI_ACS_CTRL, 2, 0x10);
    f.config.write(f.caps.ats + PCI_ATS_CTRL, 2, 0x8001);
    expect(f.capabilitiesJSON()).toEqual({
      pcie: { offset: 0x40, type: "endpoint", ee_prefix_max: 4 },
      acs: { offset: f.caps.acs, capabilities: ["rr", "uf"], enabled: ["uf"] },
      ats: {
        offset: f.caps.ats,
        queue_depth: 8,
        page_aligned: true,
        global_invalidate: false,
        enabled: true,
        stu: 1,
      },
      pri: {
        offset: f.caps.pri,
        enabled: false,
        response_failure: false,
        unexpected_prg_index: false,
        stopped: true,
        pasid_required: true,
        capacity: 16,
        allocation: 0,
      },
      pasid: {
        offset: f.caps.pasid,
        width: 8,
        exec: true,
        priv: true,
        enabled: false,
        exec_enabled: false,
        priv_enabled: false,
      },
    });
  });
});
