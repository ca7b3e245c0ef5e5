// Shared test fixtures: random PCI hierarchies (as plain descriptions, so fast-check can shrink
// them) and the builder calls that turn a description into hardware.

import { fc } from "@fast-check/vitest";
import { createContext } from "../../../src/base/context.js";
import type { PciPartName } from "../../../src/hw/pci/catalog.js";
import { PciHost } from "../../../src/hw/pci/host.js";
import type { AcsBit } from "../../../src/hw/pci/options.js";
import type { PciBridge } from "../../../src/hw/pci/topology.js";

export interface FnDesc {
  /** BAR sizes in pages. */
  readonly bars: readonly number[];
  readonly acs: readonly AcsBit[] | null;
  readonly part: PciPartName | null;
}
export interface EpDesc {
  readonly t: "ep";
  readonly fns: readonly FnDesc[];
}
export interface PortDesc {
  readonly acs: readonly AcsBit[] | null;
  readonly child: PortChild;
}
export interface SwitchDesc {
  readonly t: "sw";
  readonly ports: readonly PortDesc[];
}
export interface BridgeDesc {
  readonly t: "br";
  /** A PCIe-to-PCI bridge part that hides its PCI Express capability. */
  readonly hidden: boolean;
  readonly children: readonly ConvChild[];
}
export interface PciEpDesc {
  readonly t: "pep";
  readonly fns: readonly { readonly bars: readonly number[] }[];
}
export interface PpbDesc {
  readonly t: "ppb";
  readonly children: readonly ConvChild[];
}
export type PortChild = null | EpDesc | SwitchDesc | BridgeDesc;
export type ConvChild = PciEpDesc | PpbDesc;
export interface TreeDesc {
  readonly rootPorts: readonly PortDesc[];
  readonly rcEndpoints: readonly EpDesc[];
}

const acsArb = fc.option(fc.subarray(["sv", "rr", "cr", "uf", "tb", "dt"] as AcsBit[]), {
  nil: null,
});
const barsArb = fc.array(fc.constantFrom(1, 2, 4, 16, 256), { maxLength: 2 });
const partArb = fc.option(
  fc.constantFrom<PciPartName>(
    "ricoh-r5c832",
    "marvell-88se9123",
    "adaptec-2405",
    "intel-mic-x200-dma",
  ),
  { nil: null, freq: 4 },
);
const fnArb: fc.Arbitrary<FnDesc> = fc.record({ bars: barsArb, acs: acsArb, part: partArb });

const tree = fc.letrec<{
  portChild: PortChild;
  ep: EpDesc;
  sw: SwitchDesc;
  br: BridgeDesc;
  conv: ConvChild;
  pep: PciEpDesc;
  ppb: PpbDesc;
  port: PortDesc;
}>((tie) => ({
  portChild: fc.oneof({ maxDepth: 4 }, fc.constant(null), tie("ep"), tie("sw"), tie("br")),
  ep: fc.record({
    t: fc.constant("ep" as const),
    fns: fc.array(fnArb, { minLength: 1, maxLength: 3 }),
  }),
  port: fc.record({ acs: acsArb, child: tie("portChild") }),
  sw: fc.record({
    t: fc.constant("sw" as const),
    ports: fc.array(tie("port"), { minLength: 1, maxLength: 3 }),
  }),
  br: fc.record({
    t: fc.constant("br" as const),
    hidden: fc.boolean(),
    children: fc.array(tie("conv"), { maxLength: 3 }),
  }),
  conv: fc.oneof({ maxDepth: 3 }, tie("pep"), tie("ppb")),
  pep: fc.record({
    t: fc.constant("pep" as const),
    fns: fc.array(fc.record({ bars: barsArb }), { minLength: 1, maxLength: 2 }),
  }),
  ppb: fc.record({
    t: fc.constant("ppb" as const),
    children: fc.array(tie("conv"), { maxLength: 2 }),
  }),
}));

export const treeArb: fc.Arbitrary<TreeDesc> = fc.record({
  rootPorts: fc.array(tree.port, { minLength: 1, maxLength: 3 }),
  rcEndpoints: fc.array(tree.ep, { maxLength: 2 }),
});

function fnOptions(f: FnDesc) {
  return {
    bars: f.bars.map((p) => p * 4096),
    ...(f.acs ? { acs: f.acs } : {}),
    ...(f.part ? { part: f.part } : {}),
  };
}

function buildPortChild(port: PciBridge, child: PortChild): void {
  if (child === null) return;
  if (child.t === "ep") {
    if (child.fns.length === 1) port.addEndpoint(fnOptions(child.fns[0]!));
    else port.addEndpoint({ functions: child.fns.map(fnOptions) });
  } else if (child.t === "sw") {
    const sw = port.addSwitch({
      downstream: child.ports.map((p) => (p.acs ? { acs: p.acs } : {})),
    });
    child.ports.forEach((p, i) => {
      buildPortChild(sw.port(i), p.child);
    });
  } else {
    const br = port.addPcieToPciBridge(child.hidden ? { part: "asmedia-asm1083" } : {});
    buildConv(br, child.children);
  }
}

function buildConv(bridge: PciBridge, children: readonly ConvChild[]): void {
  for (const c of children) {
    if (c.t === "pep") {
      const fns = c.fns.map((f) => ({ bars: f.bars.map((p) => p * 4096) }));
      if (fns.length === 1) bridge.addEndpoint(fns[0]!);
      else bridge.addEndpoint({ functions: fns });
    } else {
      buildConv(bridge.addPciBridge(), c.children);
    }
  }
}

/** Builds (and enumerates) the hierarchy a description gives. */
export function buildTree(
  desc: TreeDesc,
  opts: { enumerate?: boolean; peerToPeer?: boolean } = {},
): PciHost {
  const host = new PciHost(createContext(), { peerToPeer: opts.peerToPeer ?? false });
  for (const rp of desc.rootPorts) {
    const port = host.addRootPort(rp.acs ? { acs: rp.acs } : {});
    buildPortChild(port, rp.child);
  }
  for (const ep of desc.rcEndpoints) {
    if (ep.fns.length === 1) host.addRcEndpoint(fnOptions(ep.fns[0]!));
    else host.addRcEndpoint({ functions: ep.fns.map(fnOptions) });
  }
  if (opts.enumerate ?? true) host.enumerate();
  return host;
}

/** A small fixed machine most example tests share. */
export function sampleHost(): PciHost {
  return new PciHost(createContext());
}
