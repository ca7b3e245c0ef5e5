// Readable text reports of a machine: what it is (memory and policy, IOMMU instances, the PCI
// tree with each function's group and driver, platform devices, every group with its domain,
// owners and PASID table) and what it did (domains and their users, PASIDs, DMA API counters,
// IOMMU caches, queues and faults, the isolation oracle). The demo and `inspect` print them; they
// use only the layers' own views.

import { formatSize, hex } from "../base/bits.js";
import type { Json } from "../base/json.js";
import type { Device } from "../bus/device.js";
import { pciName } from "../bus/pci.js";
import { DDTP_MODE_NAMES } from "../drivers/riscv/iommu-bits.js";
import { DsaDevice } from "../hw/endpoints/dsa.js";
import { NicDevice } from "../hw/endpoints/nic.js";
import { PciBridge, type PciBus, type PciFunction } from "../hw/pci/topology.js";
import { domainTypeName } from "../iommu/constants.js";
import type { IommuDomain } from "../iommu/domain.js";
import { ownerLabel, pasidArrayEntryToDomain } from "../iommu/group.js";
import { describedName, type Machine } from "./machine.js";
import type { CacheStats, MachineStatistics } from "./statistics.js";
import { ownershipText, plural } from "./text.js";

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
    const owner = ownershipText(g.ownerCnt, g.owner === null ? null : ownerLabel(g.owner));
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

// ---------------------------------------------------------------- what the machine did

/** A byte count with one decimal in the largest binary unit that fits. */
function bytesText(b: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = Number(b);
  let u = 0;
  while (u < units.length - 1 && v >= 1024) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** A cache's hit rate with its counts, e.g. "91.7% hits (11 hits, 1 miss)". */
function cacheText(c: CacheStats | null): string {
  if (c === null) return "not modelled";
  return c.hits + c.misses === 0
    ? "no lookups"
    : `${rate(c.hitRate)} (${plural(c.hits, "hit")}, ${plural(c.misses, "miss")})`;
}

/** Plain-language percentage of a hit rate. */
function rate(r: number | null): string {
  return r === null ? "no lookups" : `${(r * 100).toFixed(1)}% hits`;
}

function counts(c: Readonly<Record<string, number>>): string {
  const e = Object.entries(c);
  return e.length === 0 ? "none" : e.map(([k, n]) => `${k} ×${n}`).join(", ");
}

/** The domains in use and who uses them: each group's RID domain and every PASID entry. */
function domainUsers(m: Machine): Map<IommuDomain, string[]> {
  const users = new Map<IommuDomain, string[]>();
  const add = (d: IommuDomain, who: string) => {
    const l = users.get(d);
    if (l) l.push(who);
    else users.set(d, [who]);
  };
  for (const g of m.core.groups()) {
    const members = g.devices.map((x) => describedName(x.dev)).join(", ");
    if (g.domain !== null) {
      const role =
        g.domain === g.defaultDomain ? "default" : g.domain === g.blockingDomain ? "blocking" : "";
      add(g.domain, `group ${g.id} (${members})${role ? ` as ${role}` : ""}`);
    }
    for (const [pasid, e] of g.pasidArray.entries()) {
      const d = pasidArrayEntryToDomain(e);
      if (pasid !== 0) add(d, `PASID ${pasid} of group ${g.id}`);
    }
  }
  return users;
}

function domainIommu(d: IommuDomain): string {
  const v = d.toJSON() as { iommu?: string; owner?: string | null };
  return v.iommu ?? v.owner ?? "core";
}

/**
 * What the machine has done, after the topology: domains and their users, PASID tables, DMA API
 * counters, per IOMMU its caches, queues, faults and page requests, and the isolation oracle's
 * verdict.
 */
export function activityReport(m: Machine, stats: MachineStatistics): string {
  const out: string[] = [];
  out.push("Domains in use:");
  const quiet: string[] = [];
  for (const [d, who] of domainUsers(m)) {
    const v = d.toJSON() as { mappings?: number; mapped_pages?: number; mm?: number | null };
    const maps = v.mappings ?? v.mapped_pages;
    // Default DMA domains of groups that mapped nothing (bridges, idle devices): one line.
    if (maps === 0 && who.length === 1 && who[0]!.endsWith(" as default")) {
      quiet.push(who[0]!.replace(/^group \d+ \((.*)\) as default$/, "$1"));
      continue;
    }
    const extra = [
      maps === undefined ? "" : `${maps} mapping${maps === 1 ? "" : "s"}`,
      v.mm === null || v.mm === undefined ? "" : `mm ${v.mm}`,
    ].filter((x) => x !== "");
    out.push(
      `  domain ${String(d.id).padEnd(3)} ${domainTypeName(d.type).padEnd(10)} ${domainIommu(d).padEnd(8)} ${who.join("; ")}${extra.length ? ` [${extra.join(", ")}]` : ""}`,
    );
  }
  if (quiet.length > 0) {
    out.push(`  and the default domains of ${quiet.join("; ")}: nothing mapped`);
  }
  out.push("");
  out.push("PASIDs:");
  const view = m.core.toJSON() as {
    global_pasids?: number[];
    sva_mms?: { mm: number; pasid: number }[];
  };
  const global = view.global_pasids ?? [];
  out.push(`  global allocator: ${global.length === 0 ? "none in use" : global.join(", ")}`);
  for (const g of m.core.groups()) {
    const entries = g.pasidArray.entries().filter(([p]) => p !== 0);
    if (entries.length === 0) continue;
    const members = g.devices.map((x) => describedName(x.dev)).join(", ");
    const list = entries.map(([p, e]) => {
      const d = pasidArrayEntryToDomain(e);
      return `${p} → domain ${d.id} (${domainTypeName(d.type)})`;
    });
    out.push(`  group ${g.id} (${members}): ${list.join(", ")}`);
  }
  for (const s of view.sva_mms ?? []) {
    const owner = m.processes.toJSON() as { pid: number; comm: string; mm: number | null }[];
    const p = owner.find((x) => x.mm === s.mm);
    out.push(`  mm ${s.mm}${p ? ` (pid ${p.pid} ${p.comm})` : " (no task)"}: PASID ${s.pasid}`);
  }
  out.push("");
  const d = stats.dma;
  out.push("DMA API:");
  out.push(
    `  ${d.maps} maps (${bytesText(d.bytesMapped)}), ${d.unmaps} unmaps (${bytesText(d.bytesUnmapped)}), ${d.mappingErrors} mapping errors`,
  );
  out.push(
    `  strict IOTLB syncs: ${d.strictSyncs}; lazily queued IOVAs: ${d.lazyQueued}; flush-queue flushes: ${d.flushes.full + d.flushes.timeout} (${d.flushes.timeout} by timer, ${d.flushes.full} full)`,
  );
  for (const i of stats.iommus) {
    out.push("");
    out.push(`${i.name} (${i.driver}):`);
    if (i.iotlb !== null) {
      out.push(
        `  IOTLB ${cacheText(i.iotlb)}, ${i.iotlb.entries} of ${i.iotlb.capacity} entries in use`,
        `  DDT cache ${cacheText(i.ddtCache)}; PDT cache ${cacheText(i.pdtCache)}`,
      );
    }
    for (const a of i.atcs) {
      out.push(
        `  ${a.device}'s ATC (ATS): ${rate(a.hitRate)} (${plural(a.hits, "hit")}, ${plural(a.misses, "miss")}, ${a.invalidated} invalidated)`,
      );
    }
    if (i.queues !== null) {
      const q = i.queues;
      out.push(
        `  queues: command ${q.cq.records} executed (head ${q.cq.head}, tail ${q.cq.tail}); fault ${q.fq.records} records (head ${q.fq.head}, tail ${q.fq.tail}); page request ${q.pq.records} records (head ${q.pq.head}, tail ${q.pq.tail})`,
      );
    }
    out.push(`  faults: ${i.faults === 0 ? "none" : `${i.faults} (${counts(i.faultsByCause)})`}`);
    out.push(`  page requests: ${i.pageRequests}; responses: ${counts(i.pageResponses)}`);
  }
  out.push("");
  const oracle = m.isolationOracle;
  out.push("Isolation oracle:");
  if (oracle === null) {
    out.push("  not attached");
  } else {
    out.push(`  ${oracle.verdict().summary}`);
    for (const f of oracle.findings().slice(0, 5)) out.push(`  - ${f.detail}`);
    if (oracle.findings().length > 5) out.push(`  … ${oracle.findings().length - 5} more`);
  }
  return out.join("\n");
}

// ---------------------------------------------------------------- the same, as JSON

/** The PCI hierarchy per host bridge: every function with its group, driver and device model. */
export function topologyJSON(m: Machine): Json {
  const fns = (bus: PciBus): Json[] =>
    bus.functions().flatMap((fn) => {
      const dev = m.pci.pciDev(fn.name);
      const g = dev ? m.core.groupOf(dev) : null;
      const self: Json = {
        name: fn.name,
        bdf: pciName(fn),
        kind: fn.kind,
        group: g?.id ?? null,
        driver: dev?.driver?.name ?? null,
        engine: m.endpoints.model(fn.name) === undefined ? null : engineKind(m, fn.name),
      };
      return fn instanceof PciBridge ? [self, ...fns(fn.secondary)] : [self];
    });
  return m.pci.hosts.map(({ host, iommu }) => ({
    segment: host.segment,
    iommu,
    translated: host.translationAgent !== null,
    functions: fns(host.rootBus),
  }));
}

function engineKind(m: Machine, name: string): string {
  const e = m.endpoints.model(name);
  return e instanceof DsaDevice ? "dsa" : e instanceof NicDevice ? "nic" : "test";
}

/** The domains in use with their users, and the PASID tables, as JSON. */
export function activityJSON(m: Machine): Json {
  const view = m.core.toJSON() as { global_pasids?: Json; sva_mms?: Json };
  return {
    domains: [...domainUsers(m)].map(([d, who]) => ({
      id: d.id,
      type: domainTypeName(d.type),
      iommu: domainIommu(d),
      users: who,
    })),
    pasids: {
      global: view.global_pasids ?? [],
      groups: m.core.groups().flatMap((g) => {
        const entries = g.pasidArray.entries().filter(([p]) => p !== 0);
        return entries.length === 0
          ? []
          : [
              {
                group: g.id,
                devices: g.devices.map((x) => describedName(x.dev)),
                entries: entries.map(([p, e]) => {
                  const d = pasidArrayEntryToDomain(e);
                  return { pasid: p, domain: d.id, type: domainTypeName(d.type) };
                }),
              },
            ];
      }),
      mms: view.sva_mms ?? [],
    },
  };
}
