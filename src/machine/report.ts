// A readable text report of a booted machine: memory and policy, IOMMU instances, the PCI tree
// with each function's group and driver, platform devices, and every group with its domain,
// owners and PASID table. The CLI's `demo` prints it; it uses only the layers' own views.

import { formatSize, hex } from "../base/bits.js";
import type { Device } from "../bus/device.js";
import { pciName } from "../bus/pci.js";
import { DDTP_MODE_NAMES } from "../drivers/riscv/iommu-bits.js";
import { DsaDevice } from "../hw/endpoints/dsa.js";
import { NicDevice } from "../hw/endpoints/nic.js";
import { PciBridge, type PciBus, type PciFunction } from "../hw/pci/topology.js";
import { domainTypeName } from "../iommu/constants.js";
import type { IommuDomain } from "../iommu/domain.js";
import { ownerLabel } from "../iommu/group.js";
import { describedName, type Machine } from "./machine.js";

export function machineReport(m: Machine): string {
  const out: string[] = [];
  const desc = m.description;
  const drivers = [...new Set(desc.iommus.map((i) => i.driver))].join(", ");
  out.push(`Machine "${desc.name}" (IOMMU driver: ${drivers || "none"})`);
  out.push(`  RAM: ${desc.ram.map((r) => `${formatSize(r.size)} at ${hex(r.base)}`).join(", ")}`);
  const policy = m.core.defDomainType;
  out.push(
    `  Default domain type: ${domainTypeName(policy)} (${m.core.dmaStrict ? "strict" : "lazy"} invalidation)`,
  );
  out.push("");
  out.push("IOMMU instances:");
  for (const i of desc.iommus) {
    const live = m.iommu(i.name);
    const pasids = i.pasidBits === 0 ? "no PASIDs" : `${i.pasidBits}-bit PASIDs`;
    const hw = live?.riscv?.iommu;
    const rv = hw
      ? `; DDT ${DDTP_MODE_NAMES[hw.ddtMode]}, ${hw.pagingMode?.name ?? "no"} paging, ${hw.msi ? "MSI" : "wired"} interrupts (${hw.irqsCount} vectors)`
      : "";
    const sizes =
      i.driver === "mock"
        ? `, pages ${i.pageSizes.map((s) => formatSize(s).replace(" ", "")).join("/")}`
        : "";
    const failed = live ? "" : "  (failed to register)";
    out.push(`  ${i.name.padEnd(10)} ${i.driver} driver, ${pasids}${sizes}${rv}${failed}`);
  }
  for (const { host, iommu } of m.pci.hosts) {
    out.push("");
    const dma =
      host.translationAgent !== null
        ? "DMA translated by its hardware"
        : iommu === null
          ? "DMA untranslated"
          : "no DMA hardware behind a mock IOMMU";
    out.push(
      `PCI segment ${host.segment.toString(16).padStart(4, "0")} (${iommu ?? "no IOMMU"}; ${dma}):`,
    );
    walkBus(m, host.rootBus, 1, out);
  }
  const platform = desc.devices.filter((d) => d.bus === "platform");
  if (platform.length > 0) {
    out.push("");
    out.push("Platform devices:");
    for (const d of platform) {
      const dev = m.device(d.name);
      out.push(`  ${d.name.padEnd(10)} ${dev?.registered ? deviceTail(m, dev) : "not present"}`);
    }
  }
  const absent = desc.devices.filter((d) => d.bus === "pci" && !m.device(d.name)?.registered);
  if (absent.length > 0) {
    out.push("");
    out.push(
      `Not plugged in (hot_add them): ${absent.map((d) => `${d.name} below ${d.bus === "pci" ? d.parent : "?"}`).join(", ")}`,
    );
  }
  out.push("");
  out.push("IOMMU groups:");
  for (const g of m.core.groups()) {
    const members = g.devices.map((x) => describedName(x.dev)).join(", ");
    const owner =
      g.ownerCnt === 0
        ? "free"
        : g.owner === null
          ? `${g.ownerCnt} kernel DMA user(s)`
          : `owned by ${ownerLabel(g.owner)}`;
    const cur =
      g.domain === null ? "none" : domainText(g.domain, g.defaultDomain, g.blockingDomain);
    out.push(`  group ${String(g.id).padEnd(3)} ${members}`);
    out.push(`            domain ${cur}; ${owner}`);
    const pasids = g.pasidArray.entries();
    if (pasids.length > 0) {
      out.push(
        `            PASIDs: ${pasids.map(([p, e]) => `${p} → domain ${e.kind === "domain" ? e.domain.id : e.handle.domain?.id}`).join(", ")}`,
      );
    }
  }
  const warns = m.ctx.warnings.list();
  out.push("");
  out.push(
    warns.length === 0
      ? "No kernel warnings."
      : `Kernel warnings: ${warns.map((w) => w.site).join(", ")}`,
  );
  for (const l of m.bootLog) out.push(`Boot: ${l}`);
  return out.join("\n");
}

function domainText(d: IommuDomain, def: IommuDomain | null, blocking: IommuDomain | null): string {
  const role = d === def ? ", default" : d === blocking ? ", blocking" : "";
  return `${d.id} (${domainTypeName(d.type)}${role})`;
}

const KIND_TEXT: Readonly<Record<string, string>> = {
  "root-port": "root port",
  "upstream-port": "switch upstream port",
  "downstream-port": "switch downstream port",
  "pcie-to-pci-bridge": "PCIe-to-PCI bridge",
  "pci-bridge": "PCI-to-PCI bridge",
  endpoint: "endpoint",
  "legacy-endpoint": "legacy endpoint",
  "rc-endpoint": "integrated endpoint",
  "pci-endpoint": "conventional PCI device",
};

function walkBus(m: Machine, bus: PciBus, depth: number, out: string[]): void {
  for (const fn of bus.functions()) {
    const dev = m.pci.pciDev(fn.name);
    const label = `${"  ".repeat(depth)}${pciName(fn).slice(5)} ${fn.name}`;
    out.push(
      `${label.padEnd(34)} ${KIND_TEXT[fn.kind] ?? fn.kind}${capsText(m, fn)}${dev ? `  ${deviceTail(m, dev)}` : ""}`,
    );
    if (fn instanceof PciBridge) walkBus(m, fn.secondary, depth + 1, out);
  }
}

function capsText(m: Machine, fn: PciFunction): string {
  const d = m.description.devices.find((x) => x.name === fn.name);
  const b = m.description.pci.find((x) => x.name === fn.name);
  const caps: string[] = [];
  if (d?.bus === "pci") {
    if (d.pasidBits > 0) caps.push(`PASID:${d.pasidBits}`);
    if (d.ats) caps.push("ATS");
    if (d.pri) caps.push("PRI");
    if (d.acs) caps.push("ACS");
    if (d.part) caps.push(d.part);
  }
  if (b?.acs) caps.push("ACS");
  if (b?.externalFacing) caps.push("external-facing");
  return caps.length > 0 ? ` [${caps.join(" ")}]` : "";
}

function deviceTail(m: Machine, dev: Device): string {
  const g = m.core.groupOf(dev);
  const parts = [g === null ? "no group" : `group ${g.id}`];
  if (dev.driver) parts.push(`driver ${dev.driver.name}`);
  if (dev.iommu?.requireDirect) parts.push("direct-mapped region");
  const engine = m.endpoints.model(describedName(dev));
  if (engine instanceof DsaDevice) parts.push("DSA engine");
  else if (engine instanceof NicDevice) parts.push("NIC engine");
  else if (engine) parts.push("test DMA engine");
  return parts.join(", ");
}
