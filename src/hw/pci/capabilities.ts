// Lays out the capabilities a function implements in its configuration space: the standard
// capability list (PCI Express capability) and the extended list from 0x100 (ACS, ATS, PRI,
// PASID), each register with the access semantics the PCI Express Base Specification gives it.

import type { Json } from "../../base/json.js";
import type { ConfigSpace } from "./config-space.js";
import {
  extCapHeader,
  PCI_ACS_ALL,
  PCI_ACS_CAP,
  PCI_ACS_CTRL,
  PCI_ACS_EC,
  PCI_ACS_EGRESS_BITS_SHIFT,
  PCI_ACS_EGRESS_CTL_V,
  PCI_ATS_CAP,
  PCI_ATS_CAP_GLOBAL_INV,
  PCI_ATS_CAP_PAGE_ALIGNED,
  PCI_ATS_CTRL,
  PCI_ATS_CTRL_ENABLE,
  PCI_ATS_CTRL_STU_MASK,
  PCI_CAP_EXP_SIZEOF,
  PCI_CAP_ID_EXP,
  PCI_CAP_LIST_NEXT,
  PCI_CAPABILITY_LIST,
  PCI_EXP_DEVCAP2,
  PCI_EXP_DEVCAP2_EE_PREFIX,
  PCI_EXP_DEVCAP2_EE_PREFIX_MAX_SHIFT,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL2,
  PCI_EXP_DEVSTA,
  PCI_EXP_FLAGS,
  PCI_EXP_FLAGS_SLOT,
  PCI_EXP_LNKCAP,
  PCI_EXP_LNKCAP_PN_SHIFT,
  PCI_EXP_LNKCTL,
  PCI_EXP_LNKSTA,
  PCI_EXP_SLTCAP,
  PCI_EXP_SLTCAP_HPC,
  PCI_EXP_SLTCAP_HPS,
  PCI_EXP_SLTCTL,
  PCI_EXP_SLTSTA,
  PCI_EXP_SLTSTA_DLLSC,
  PCI_EXP_SLTSTA_PDC,
  PCI_EXT_CAP_ATS_SIZEOF,
  PCI_EXT_CAP_ID_ACS,
  PCI_EXT_CAP_ID_ATS,
  PCI_EXT_CAP_ID_PASID,
  PCI_EXT_CAP_ID_PRI,
  PCI_EXT_CAP_PASID_SIZEOF,
  PCI_EXT_CAP_PRI_SIZEOF,
  PCI_EXT_CAP_START,
  PCI_PASID_CAP,
  PCI_PASID_CAP_EXEC,
  PCI_PASID_CAP_PRIV,
  PCI_PASID_CAP_WIDTH_SHIFT,
  PCI_PASID_CTRL,
  PCI_PASID_CTRL_ENABLE,
  PCI_PASID_CTRL_EXEC,
  PCI_PASID_CTRL_PRIV,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_CTRL_ENABLE,
  PCI_PRI_MAX_REQ,
  PCI_PRI_STATUS,
  PCI_PRI_STATUS_PASID,
  PCI_PRI_STATUS_RF,
  PCI_PRI_STATUS_STOPPED,
  PCI_PRI_STATUS_UPRGI,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
} from "./regs.js";

/** The PCI Express capability of a PCIe function. */
export interface PcieCapDesc {
  /** Device/Port Type (`PCI_EXP_TYPE_*`). */
  readonly type: number;
  /** Slot Implemented (root and downstream ports with a slot). */
  readonly slot: boolean;
  /** Hot-Plug Capable / Hot-Plug Surprise in Slot Capabilities. */
  readonly hotplug: boolean;
  /** Port Number in Link Capabilities (ports); used by ACS egress control. */
  readonly portNumber: number;
  /** Max End-End TLP Prefixes, 0 when End-End TLP Prefixes are not supported. */
  readonly eePrefixMax: number;
}

/** ACS capability register (implemented controls) and the control value firmware left. */
export interface AcsCapDesc {
  readonly capabilities: number;
  readonly control: number;
  /** Egress Control Vector Size, 1..32 when P2P Egress Control is implemented. */
  readonly egressVectorSize: number;
}

export interface AtsCapDesc {
  /** Invalidate Queue Depth, 1..32 (the register holds 0 for 32). */
  readonly queueDepth: number;
  readonly pageAligned: boolean;
  readonly globalInvalidate: boolean;
}

export interface PriCapDesc {
  /** Outstanding Page Request Capacity. */
  readonly capacity: number;
  /** PRG Response PASID Required. */
  readonly pasidRequired: boolean;
}

export interface PasidCapDesc {
  /** Max PASID Width, 0..20. */
  readonly width: number;
  readonly exec: boolean;
  readonly priv: boolean;
}

/** Offsets of the capabilities a function implements (0 when absent). */
export interface CapOffsets {
  pcie: number;
  acs: number;
  ats: number;
  pri: number;
  pasid: number;
}

/** Chains capabilities into the standard list (from 0x40) and the extended list (from 0x100). */
export class CapabilityLayout {
  readonly offsets: CapOffsets = { pcie: 0, acs: 0, ats: 0, pri: 0, pasid: 0 };
  #nextStd = 0x40;
  #stdLink = PCI_CAPABILITY_LIST;
  #nextExt = PCI_EXT_CAP_START;
  #lastExt = -1;

  constructor(private readonly cs: ConfigSpace) {}

  /** Appends a standard capability of `size` bytes; returns its offset. */
  addStd(id: number, size: number): number {
    const at = this.#nextStd;
    this.cs.init(at, 1, id);
    this.cs.init(at + PCI_CAP_LIST_NEXT, 1, 0);
    this.cs.init(this.#stdLink, 1, at);
    this.cs.setBits(PCI_STATUS, 2, PCI_STATUS_CAP_LIST, true);
    this.#stdLink = at + PCI_CAP_LIST_NEXT;
    this.#nextStd = (at + size + 3) & ~3;
    return at;
  }

  /** Appends an extended capability of `size` bytes; returns its offset. */
  addExt(id: number, version: number, size: number): number {
    const at = this.#nextExt;
    this.cs.init(at, 4, extCapHeader(id, version, 0));
    if (this.#lastExt >= 0) {
      const prev = this.cs.peek(this.#lastExt, 4);
      this.cs.init(this.#lastExt, 4, (prev & 0x000f_ffff) | (at << 20));
    }
    this.#lastExt = at;
    this.#nextExt = (at + size + 7) & ~7;
    return at;
  }

  pcie(d: PcieCapDesc): number {
    const cs = this.cs;
    const at = this.addStd(PCI_CAP_ID_EXP, PCI_CAP_EXP_SIZEOF);
    this.offsets.pcie = at;
    cs.init(at + PCI_EXP_FLAGS, 2, 2 | (d.type << 4) | (d.slot ? PCI_EXP_FLAGS_SLOT : 0));
    cs.writable(at + PCI_EXP_DEVCTL, 2, 0x7fff);
    cs.writeOneToClear(at + PCI_EXP_DEVSTA, 2, 0x000f);
    cs.init(at + PCI_EXP_LNKCAP, 4, ((d.portNumber & 0xff) << PCI_EXP_LNKCAP_PN_SHIFT) | 0x11);
    cs.writable(at + PCI_EXP_LNKCTL, 2, 0x0ffb);
    cs.init(at + PCI_EXP_LNKSTA, 2, 0x0011);
    cs.writeOneToClear(at + PCI_EXP_LNKSTA, 2, 0xc000);
    if (d.slot) {
      const hp = d.hotplug ? PCI_EXP_SLTCAP_HPC | PCI_EXP_SLTCAP_HPS : 0;
      cs.init(at + PCI_EXP_SLTCAP, 4, (hp | ((d.portNumber & 0x1fff) << 19)) >>> 0);
      cs.writable(at + PCI_EXP_SLTCTL, 2, 0x1fff);
      // Attention/Power-fault/MRL/Presence-detect/Command-completed and DLL changed are RW1C;
      // MRL, Presence Detect and Interlock state are read-only.
      cs.writeOneToClear(at + PCI_EXP_SLTSTA, 2, 0x001f | PCI_EXP_SLTSTA_DLLSC);
    }
    const ee =
      d.eePrefixMax > 0
        ? PCI_EXP_DEVCAP2_EE_PREFIX | ((d.eePrefixMax & 3) << PCI_EXP_DEVCAP2_EE_PREFIX_MAX_SHIFT)
        : 0;
    cs.init(at + PCI_EXP_DEVCAP2, 4, ee >>> 0);
    cs.writable(at + PCI_EXP_DEVCTL2, 2, 0x07ff);
    return at;
  }

  acs(d: AcsCapDesc): number {
    const cs = this.cs;
    const hasEc = (d.capabilities & PCI_ACS_EC) !== 0;
    const at = this.addExt(PCI_EXT_CAP_ID_ACS, 1, hasEc ? 12 : 8);
    this.offsets.acs = at;
    const vec = hasEc ? d.egressVectorSize & 0xff : 0;
    cs.init(
      at + PCI_ACS_CAP,
      2,
      (d.capabilities & PCI_ACS_ALL) | (vec << PCI_ACS_EGRESS_BITS_SHIFT),
    );
    // Controls of capabilities that are not implemented are hardwired to 0.
    cs.writable(at + PCI_ACS_CTRL, 2, d.capabilities & PCI_ACS_ALL);
    cs.init(at + PCI_ACS_CTRL, 2, d.control & d.capabilities & PCI_ACS_ALL);
    if (hasEc) {
      cs.writable(at + PCI_ACS_EGRESS_CTL_V, 4, vec >= 32 ? 0xffff_ffff : (1 << vec) - 1);
    }
    return at;
  }

  ats(d: AtsCapDesc): number {
    const cs = this.cs;
    const at = this.addExt(PCI_EXT_CAP_ID_ATS, 1, PCI_EXT_CAP_ATS_SIZEOF);
    this.offsets.ats = at;
    const qdep = d.queueDepth === 32 ? 0 : d.queueDepth;
    const cap =
      qdep |
      (d.pageAligned ? PCI_ATS_CAP_PAGE_ALIGNED : 0) |
      (d.globalInvalidate ? PCI_ATS_CAP_GLOBAL_INV : 0);
    cs.init(at + PCI_ATS_CAP, 2, cap);
    cs.writable(at + PCI_ATS_CTRL, 2, PCI_ATS_CTRL_ENABLE | PCI_ATS_CTRL_STU_MASK);
    return at;
  }

  pri(d: PriCapDesc): number {
    const cs = this.cs;
    const at = this.addExt(PCI_EXT_CAP_ID_PRI, 1, PCI_EXT_CAP_PRI_SIZEOF);
    this.offsets.pri = at;
    // Reset is write-only (reads as 0): the function model acts on it in a write hook.
    cs.writable(at + PCI_PRI_CTRL, 2, PCI_PRI_CTRL_ENABLE);
    cs.init(
      at + PCI_PRI_STATUS,
      2,
      PCI_PRI_STATUS_STOPPED | (d.pasidRequired ? PCI_PRI_STATUS_PASID : 0),
    );
    cs.writeOneToClear(at + PCI_PRI_STATUS, 2, PCI_PRI_STATUS_RF | PCI_PRI_STATUS_UPRGI);
    cs.init(at + PCI_PRI_MAX_REQ, 4, d.capacity >>> 0);
    cs.writable(at + PCI_PRI_ALLOC_REQ, 4, 0xffff_ffff);
    return at;
  }

  pasid(d: PasidCapDesc): number {
    const cs = this.cs;
    const at = this.addExt(PCI_EXT_CAP_ID_PASID, 1, PCI_EXT_CAP_PASID_SIZEOF);
    this.offsets.pasid = at;
    const cap =
      (d.exec ? PCI_PASID_CAP_EXEC : 0) |
      (d.priv ? PCI_PASID_CAP_PRIV : 0) |
      ((d.width & 0x1f) << PCI_PASID_CAP_WIDTH_SHIFT);
    cs.init(at + PCI_PASID_CAP, 2, cap);
    // Execute/Privileged Mode Enable are RsvdP unless the matching feature is supported.
    const rw =
      PCI_PASID_CTRL_ENABLE |
      (d.exec ? PCI_PASID_CTRL_EXEC : 0) |
      (d.priv ? PCI_PASID_CTRL_PRIV : 0);
    cs.writable(at + PCI_PASID_CTRL, 2, rw);
    return at;
  }
}

/** PDC is set, as a slot's presence detect logic does, when presence changes. */
export function slotPresenceChanged(cs: ConfigSpace, pcieCap: number, present: boolean): void {
  const sta = pcieCap + PCI_EXP_SLTSTA;
  cs.setBits(sta, 2, 0x0040, present);
  cs.setBits(sta, 2, PCI_EXP_SLTSTA_PDC | PCI_EXP_SLTSTA_DLLSC, true);
}

/** Names of the ACS bits set in `mask`, in register order. */
export function acsBitNames(mask: number): string[] {
  const names = ["sv", "tb", "rr", "cr", "uf", "ec", "dt"];
  return names.filter((_, i) => (mask & (1 << i)) !== 0);
}

const PCIE_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: "endpoint",
  1: "legacy-endpoint",
  4: "root-port",
  5: "upstream-port",
  6: "downstream-port",
  7: "pcie-to-pci-bridge",
  8: "pci-to-pcie-bridge",
  9: "rc-endpoint",
  10: "rc-event-collector",
};

/** The capabilities as the registers currently read: the JSON view of a function's caps. */
export function capabilitiesView(cs: ConfigSpace, o: CapOffsets): Json {
  const out: { [key: string]: Json } = {};
  if (o.pcie) {
    const flags = cs.peek(o.pcie + PCI_EXP_FLAGS, 2);
    const type = (flags >>> 4) & 0xf;
    const devcap2 = cs.peek(o.pcie + PCI_EXP_DEVCAP2, 4);
    const ee = (devcap2 & PCI_EXP_DEVCAP2_EE_PREFIX) !== 0;
    const pcie: { [key: string]: Json } = {
      offset: o.pcie,
      type: PCIE_TYPE_NAMES[type] ?? `type-${type}`,
      ee_prefix_max: ee ? (devcap2 >>> PCI_EXP_DEVCAP2_EE_PREFIX_MAX_SHIFT) & 3 || 4 : 0,
    };
    if (flags & PCI_EXP_FLAGS_SLOT) {
      const sltcap = cs.peek(o.pcie + PCI_EXP_SLTCAP, 4);
      const sltsta = cs.peek(o.pcie + PCI_EXP_SLTSTA, 2);
      pcie.slot = {
        hotplug: (sltcap & PCI_EXP_SLTCAP_HPC) !== 0,
        presence: (sltsta & 0x0040) !== 0,
        presence_changed: (sltsta & PCI_EXP_SLTSTA_PDC) !== 0,
      };
    }
    out.pcie = pcie;
  }
  if (o.acs) {
    const cap = cs.peek(o.acs + PCI_ACS_CAP, 2);
    const acs: { [key: string]: Json } = {
      offset: o.acs,
      capabilities: acsBitNames(cap),
      enabled: acsBitNames(cs.peek(o.acs + PCI_ACS_CTRL, 2)),
    };
    if (cap & PCI_ACS_EC) acs.egress_vector = cs.peek(o.acs + PCI_ACS_EGRESS_CTL_V, 4);
    out.acs = acs;
  }
  if (o.ats) {
    const cap = cs.peek(o.ats + PCI_ATS_CAP, 2);
    const ctrl = cs.peek(o.ats + PCI_ATS_CTRL, 2);
    out.ats = {
      offset: o.ats,
      queue_depth: cap & 0x1f || 32,
      page_aligned: (cap & PCI_ATS_CAP_PAGE_ALIGNED) !== 0,
      global_invalidate: (cap & PCI_ATS_CAP_GLOBAL_INV) !== 0,
      enabled: (ctrl & PCI_ATS_CTRL_ENABLE) !== 0,
      stu: ctrl & PCI_ATS_CTRL_STU_MASK,
    };
  }
  if (o.pri) {
    const ctrl = cs.peek(o.pri + PCI_PRI_CTRL, 2);
    const sta = cs.peek(o.pri + PCI_PRI_STATUS, 2);
    out.pri = {
      offset: o.pri,
      enabled: (ctrl & PCI_PRI_CTRL_ENABLE) !== 0,
      response_failure: (sta & PCI_PRI_STATUS_RF) !== 0,
      unexpected_prg_index: (sta & PCI_PRI_STATUS_UPRGI) !== 0,
      stopped: (sta & PCI_PRI_STATUS_STOPPED) !== 0,
      pasid_required: (sta & PCI_PRI_STATUS_PASID) !== 0,
      capacity: cs.peek(o.pri + PCI_PRI_MAX_REQ, 4),
      allocation: cs.peek(o.pri + PCI_PRI_ALLOC_REQ, 4),
    };
  }
  if (o.pasid) {
    const cap = cs.peek(o.pasid + PCI_PASID_CAP, 2);
    const ctrl = cs.peek(o.pasid + PCI_PASID_CTRL, 2);
    out.pasid = {
      offset: o.pasid,
      width: (cap >>> PCI_PASID_CAP_WIDTH_SHIFT) & 0x1f,
      exec: (cap & PCI_PASID_CAP_EXEC) !== 0,
      priv: (cap & PCI_PASID_CAP_PRIV) !== 0,
      enabled: (ctrl & PCI_PASID_CTRL_ENABLE) !== 0,
      exec_enabled: (ctrl & PCI_PASID_CTRL_EXEC) !== 0,
      priv_enabled: (ctrl & PCI_PASID_CTRL_PRIV) !== 0,
    };
  }
  return out;
}
