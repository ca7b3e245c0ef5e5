// How a memory request travels up from a function, as the silicon on the way decides it:
// inside a multi-function device, on a shared conventional bus, at root and downstream ports
// (ACS Translation Blocking, P2P Request Redirect, Direct Translated P2P, Egress Control,
// Upstream Forwarding), through switch upstream ports, and whose requester ID it carries at each
// hop (PCIe-to-PCI bridges take ownership of forwarded requests; conventional bridges re-issue
// them as themselves). The request ends at the root complex (where the IOMMU sees it), at a peer
// whose BAR claims it, or blocked.
//
// DMA routes every page. Most pages (RAM) are decoded by no BAR or window on the way, and then
// only the page-independent checks matter: each function keeps, per request flags, a summary of
// that outcome and of the pages its path decodes (UpstreamPath), rebuilt when the host's
// generation moves (any configuration register or topology change). Other pages are routed in
// full.

import {
  PCI_ACS_CAP,
  PCI_ACS_CR,
  PCI_ACS_CTRL,
  PCI_ACS_DT,
  PCI_ACS_EC,
  PCI_ACS_EGRESS_CTL_V,
  PCI_ACS_RR,
  PCI_ACS_TB,
  PCI_ACS_UF,
  PCI_EXP_DEVCAP2,
  PCI_EXP_DEVCAP2_EE_PREFIX,
  PCI_EXP_LNKCAP,
  PCI_EXP_LNKCAP_PN_SHIFT,
  pciDevid,
} from "./regs.js";
import {
  newPciRoute,
  PCI_REQ_PASID,
  PCI_REQ_TRANSLATED,
  type PciBlockReason,
  PciBridge,
  type PciBus,
  type PciFunction,
  type PciRoute,
  UpstreamPath,
} from "./topology.js";

/**
 * Controls a component that implements an ACS capability but not a given control behaves as if
 * enabled: PCIe requires RR and UF wherever the component could route peer-to-peer, so their
 * absence means it never does (Linux's pci_acs_flags_enabled makes the same assumption).
 */
const ABSENT_MEANS_ON = PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF;

/** Whether ACS control `bit` is in effect in `fn` (a port, or a function of a multi-function device). */
export function acsInEffect(fn: PciFunction, bit: number): boolean {
  const at = fn.caps.acs;
  if (at === 0) return false;
  const cs = fn.config;
  if ((cs.peek(at + PCI_ACS_CAP, 2) & bit) === 0) return (ABSENT_MEANS_ON & bit) !== 0;
  return (cs.peek(at + PCI_ACS_CTRL, 2) & bit) !== 0;
}

function redirects(fn: PciFunction, translated: boolean): boolean {
  // Direct Translated P2P overrides P2P Request Redirect for translated requests.
  return acsInEffect(fn, PCI_ACS_RR) && !(translated && acsInEffect(fn, PCI_ACS_DT));
}

function egressBlocked(fn: PciFunction, index: number): boolean {
  if (!acsInEffect(fn, PCI_ACS_EC) || index > 31) return false;
  return ((fn.config.peek(fn.caps.acs + PCI_ACS_EGRESS_CTL_V, 4) >>> index) & 1) === 1;
}

function eePrefix(fn: PciFunction): boolean {
  return (
    fn.caps.pcie !== 0 &&
    (fn.config.peek(fn.caps.pcie + PCI_EXP_DEVCAP2, 4) & PCI_EXP_DEVCAP2_EE_PREFIX) !== 0
  );
}

function portNumber(port: PciBridge): number {
  return port.caps.pcie
    ? port.config.peek(port.caps.pcie + PCI_EXP_LNKCAP, 4) >>> PCI_EXP_LNKCAP_PN_SHIFT
    : 0;
}

/** The requester ID a bridge gives a request it forwards upstream. */
export function forwardedRid(bridge: PciBridge, rid: number): number {
  // PCI Express to PCI/PCI-X Bridge spec 2.3: the bridge takes ownership and uses its secondary
  // bus number with device and function 0.
  if (bridge.kind === "pcie-to-pci-bridge" || bridge.takesOwnership) {
    return pciDevid(bridge.secondaryBusNumber, 0);
  }
  // A conventional PCI-to-PCI bridge masters the transaction on its primary bus itself.
  if (bridge.kind === "pci-bridge") return bridge.rid;
  return rid;
}

/** The requester IDs a request from `fn`, tagged with `sourceDevfn`, carries hop by hop. */
export function ridHops(fn: PciFunction, sourceDevfn: number): number[] {
  let rid = pciDevid(fn.busNumber, sourceDevfn);
  const hops = [rid];
  for (let bus: PciBus = fn.bus; bus.self !== null; bus = bus.self.bus) {
    const next = forwardedRid(bus.self, rid);
    if (next !== rid) hops.push(next);
    rid = next;
  }
  return hops;
}

/** The requester ID the root complex sees for requests from `fn` tagged with `sourceDevfn`. */
export function rootRequesterId(fn: PciFunction, sourceDevfn: number): number {
  let rid = pciDevid(fn.busNumber, sourceDevfn);
  for (let bus: PciBus = fn.bus; bus.self !== null; bus = bus.self.bus)
    rid = forwardedRid(bus.self, rid);
  return rid;
}

function block(out: PciRoute, via: PciFunction, reason: PciBlockReason): PciRoute {
  out.kind = "blocked";
  out.via = via;
  out.reason = reason;
  return out;
}

function peer(out: PciRoute, target: PciFunction, bar: number, via: PciFunction): PciRoute {
  out.kind = "peer";
  out.target = target;
  out.bar = bar;
  out.via = via;
  return out;
}

/** Follows bridge windows down from `from` to the function whose BAR claims `page`. */
function descend(
  out: PciRoute,
  from: PciBridge,
  page: number,
  pasid: boolean,
  requester: PciFunction,
  turn: PciFunction,
): PciRoute {
  let bridge = from;
  for (;;) {
    if (pasid && bridge.caps.pcie !== 0 && !eePrefix(bridge))
      return block(out, bridge, "tlp-prefix-blocked");
    const f = bridge.secondary.claimant(page, requester);
    if (f === null) return block(out, turn, "unsupported-request");
    if (!(f instanceof PciBridge)) return peer(out, f, f.barForPage(page), turn);
    bridge = f;
  }
}

/**
 * Routes a memory request for `page` issued by `fn`, tagged with `sourceDevfn` (its own devfn
 * when negative). `flags`: PCI_REQ_TRANSLATED (AT = translated), PCI_REQ_PASID (PASID prefix).
 * Fills and returns `out`; allocates nothing.
 */
export function routeUpstream(
  fn: PciFunction,
  page: number,
  out: PciRoute,
  flags: number,
  sourceDevfn: number,
  peerToPeerAtRoot: boolean,
): PciRoute {
  out.kind = "root-complex";
  out.target = null;
  out.bar = -1;
  out.via = null;
  out.reason = null;
  let rid = pciDevid(fn.busNumber, sourceDevfn < 0 ? fn.devfn : sourceDevfn);
  out.rid = rid;
  if (!fn.busMasterEnabled) return block(out, fn, "bus-master-disabled");
  const translated = (flags & PCI_REQ_TRANSLATED) !== 0;
  const pasid = (flags & PCI_REQ_PASID) !== 0;

  // Inside a multi-function device a request for a sibling's BAR stays internal unless the
  // function's ACS redirects it (PCIe "ACS for multi-function devices").
  const device = fn.device;
  if (device.isMultifunction) {
    for (const sib of device.functions()) {
      if (sib === fn) continue;
      const bar = sib.barForPage(page);
      if (bar < 0) continue;
      if (redirects(fn, translated)) break;
      if (egressBlocked(fn, sib.number)) return block(out, fn, "acs-egress-control");
      return peer(out, sib, bar, fn);
    }
  }

  for (let bus: PciBus = fn.bus; ; ) {
    const self = bus.self;
    if (self === null) {
      out.rid = rid;
      return out;
    }
    if (bus.kind === "conventional") {
      // A shared bus: whoever on it decodes the address claims the transaction directly.
      for (const f of bus.functions()) {
        if (f === fn) continue;
        if (f instanceof PciBridge) {
          if (f.windowDecodes(page)) return descend(out, f, page, pasid, fn, f);
        } else {
          const bar = f.barForPage(page);
          if (bar >= 0) return peer(out, f, bar, self);
        }
      }
      // The bridge forwards upstream only what lies outside its own window.
      if (self.windowDecodes(page)) return block(out, self, "unsupported-request");
      if (!self.busMasterEnabled) return block(out, self, "bus-master-disabled");
      rid = forwardedRid(self, rid);
      out.rid = rid;
      bus = self.bus;
      continue;
    }
    if (bus.kind === "link") {
      // Ingress at a root or downstream port.
      const port = self;
      if (!port.busMasterEnabled) return block(out, port, "bus-master-disabled");
      if (translated && acsInEffect(port, PCI_ACS_TB))
        return block(out, port, "acs-translation-blocking");
      if (pasid && !eePrefix(port)) return block(out, port, "tlp-prefix-blocked");
      if (port.windowDecodes(page)) {
        // Normal routing targets the same port it arrived on: it goes back down unless ACS
        // Upstream Forwarding sends it on upstream.
        if (!acsInEffect(port, PCI_ACS_UF)) return descend(out, port, page, pasid, fn, port);
      } else {
        const parent = port.bus;
        if (parent.kind === "internal" || (parent.isRoot && peerToPeerAtRoot)) {
          const r = peerAcross(out, parent, port, page, translated, pasid, fn);
          if (r) return r;
        }
      }
      bus = port.bus;
      continue;
    }
    // Switch internal bus: the upstream port forwards to its own link.
    const up = self;
    if (!up.busMasterEnabled) return block(out, up, "bus-master-disabled");
    if (pasid && !eePrefix(up)) return block(out, up, "tlp-prefix-blocked");
    bus = up.bus;
  }
}

/** A request at `ingress` for a peer on `parent`: routed across, blocked, or (null) redirected up. */
function peerAcross(
  out: PciRoute,
  parent: PciBus,
  ingress: PciBridge,
  page: number,
  translated: boolean,
  pasid: boolean,
  requester: PciFunction,
): PciRoute | null {
  for (const f of parent.functions()) {
    if (f === ingress) continue;
    if (f instanceof PciBridge) {
      if (!f.windowDecodes(page)) continue;
      if (redirects(ingress, translated)) return null;
      if (egressBlocked(ingress, portNumber(f))) return block(out, ingress, "acs-egress-control");
      return descend(out, f, page, pasid, requester, ingress);
    }
    const bar = f.barForPage(page);
    if (bar < 0) continue;
    if (redirects(ingress, translated)) return null;
    return peer(out, f, bar, ingress);
  }
  return null;
}

/** A page number below every BAR and window: a request for it meets no decoder on its way. */
const NO_PAGE = -1;

/**
 * routeUpstream, answered from the function's path summary when `page` lies outside every BAR
 * and window on the buses the request crosses (the summary is rebuilt when `generation`, the
 * host's, has moved). The same result in every case; allocates only to rebuild a summary.
 */
export function routeUpstreamCached(
  fn: PciFunction,
  page: number,
  out: PciRoute,
  flags: number,
  sourceDevfn: number,
  peerToPeerAtRoot: boolean,
  generation: number,
): PciRoute {
  const key = flags & (PCI_REQ_TRANSLATED | PCI_REQ_PASID);
  let path = fn.upstreamPaths[key];
  if (path === undefined) {
    path = new UpstreamPath();
    fn.upstreamPaths[key] = path;
  }
  if (path.generation !== generation || path.sourceDevfn !== sourceDevfn) {
    summarise(path, fn, key, sourceDevfn, peerToPeerAtRoot);
    path.generation = generation;
    path.sourceDevfn = sourceDevfn;
  }
  if (page >= path.lowest && page <= path.highest && inRanges(path.ranges, page)) {
    return routeUpstream(fn, page, out, key, sourceDevfn, peerToPeerAtRoot);
  }
  out.kind = path.kind;
  out.rid = path.rid;
  out.target = null;
  out.bar = -1;
  out.via = path.via;
  out.reason = path.reason;
  return out;
}

/** Fills `path`: the route of a page nothing decodes, and every page a decoder on the way covers. */
function summarise(
  path: UpstreamPath,
  fn: PciFunction,
  flags: number,
  sourceDevfn: number,
  peerToPeerAtRoot: boolean,
): void {
  const r = routeUpstream(fn, NO_PAGE, newPciRoute(), flags, sourceDevfn, peerToPeerAtRoot);
  path.kind = r.kind;
  path.rid = r.rid;
  path.via = r.via;
  path.reason = r.reason;
  // The router only decodes with functions on the buses it crosses (siblings, peers across a
  // port, bridges above): their BARs and windows, whatever their enables (a superset is safe).
  const ranges = path.ranges;
  ranges.length = 0;
  for (let bus: PciBus = fn.bus; ; bus = bus.self.bus) {
    for (const f of bus.functions()) {
      for (let i = 0; i < f.barCount; i++) {
        const { first, count } = f.barPages(i);
        if (count > 0) ranges.push(first, first + count - 1);
      }
      const w = f instanceof PciBridge ? f.windowPages() : null;
      if (w !== null) ranges.push(w.first, w.last);
    }
    if (bus.self === null) break;
  }
  let lowest = Number.POSITIVE_INFINITY;
  let highest = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < ranges.length; i += 2) {
    lowest = Math.min(lowest, ranges[i]!);
    highest = Math.max(highest, ranges[i + 1]!);
  }
  path.lowest = lowest;
  path.highest = highest;
}

function inRanges(ranges: readonly number[], page: number): boolean {
  for (let i = 0; i < ranges.length; i += 2) {
    if (page >= ranges[i]! && page <= ranges[i + 1]!) return true;
  }
  return false;
}
