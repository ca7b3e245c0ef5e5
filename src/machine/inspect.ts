// `iommu-sim inspect`: the state of a machine at one moment, read from the layers themselves —
// groups and their domains and owners, every live domain, the PASID tables (the core's and what
// each IOMMU driver programmed), one domain's page table as ranges read from its real tables,
// each RISC-V IOMMU's IOTLB, DDT and PDT caches and its three queues (registers and the latest
// records, decoded from queue memory), and the processes with their address spaces.

import { formatSize, hex } from "../base/bits.js";
import { InputError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";
import { MockPagingDomain } from "../drivers/mock/mock-domain.js";
import { RiscvPagingDomain } from "../drivers/riscv/domain.js";
import {
  decodeFaultRecord,
  decodePageRequest,
  FAULT_CAUSE_NAMES,
} from "../drivers/riscv/iommu-bits.js";
import type { Mapping } from "../hw/pgtable/page-table.js";
import {
  domainTypeName,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_READ,
  IOMMU_WRITE,
} from "../iommu/constants.js";
import type { IommuDomain } from "../iommu/domain.js";
import { ownerLabel, pasidArrayEntryToDomain } from "../iommu/group.js";
import { describedName, type Machine, type MachineIommu } from "./machine.js";
import { ownershipText, plural } from "./text.js";

export interface InspectOptions {
  /** Also show this domain's page table. */
  readonly domain?: number;
  /** Latest records shown per hardware queue (default 8). */
  readonly records?: number;
}

/**
 * A stretch of a page table: contiguous IOVAs with the same permissions and leaf size. `pa` is
 * where it starts when the physical pages are contiguous too, else null (`leafPas` has each).
 */
export interface MappingRange {
  readonly start: bigint;
  /** Exclusive. */
  readonly end: bigint;
  readonly pa: bigint | null;
  readonly leafPas: readonly bigint[];
  /** `rwxugad` with `-` for clear bits (RISC-V PTEs), or `rw` (mock prot). */
  readonly perm: string;
  readonly leafSize: bigint;
}

export interface DomainTable {
  readonly domain: number;
  readonly type: string;
  /** Where the mappings were read: the driver's page table, the bound mm's, or none. */
  readonly source: string;
  readonly ranges: readonly MappingRange[];
}

/** The live domain with `id`, or an input error naming the live ones. */
export function domainById(m: Machine, id: number): IommuDomain {
  const live = m.core.domains();
  const d = live.find((x) => x.id === id);
  if (d === undefined) {
    throw new InputError(
      `--domain: no live domain ${id}; the live domains are ${live.map((x) => x.id).join(", ")}`,
    );
  }
  return d;
}

const PTE_BITS = "rwxugad";

function ptePerm(perm: number): string {
  // PTE bits 1..7: R W X U G A D.
  return [...PTE_BITS].map((c, i) => ((perm >>> (i + 1)) & 1 ? c : "-")).join("");
}

function mockPerm(prot: number): string {
  return `${prot & IOMMU_READ ? "r" : "-"}${prot & IOMMU_WRITE ? "w" : "-"}`;
}

/** Merges leaves that continue each other in IOVA with the same permissions and size. */
function ranges(
  leaves: readonly { va: bigint; pa: bigint; size: bigint; perm: string }[],
): MappingRange[] {
  const out: MappingRange[] = [];
  const sorted = [...leaves].sort((a, b) => (a.va < b.va ? -1 : a.va > b.va ? 1 : 0));
  for (const l of sorted) {
    const last = out[out.length - 1];
    if (
      last !== undefined &&
      last.end === l.va &&
      last.perm === l.perm &&
      last.leafSize === l.size
    ) {
      const contiguous = last.pa !== null && last.pa + (last.end - last.start) === l.pa;
      out[out.length - 1] = {
        ...last,
        end: l.va + l.size,
        pa: contiguous ? last.pa : null,
        leafPas: [...last.leafPas, l.pa],
      };
    } else {
      out.push({
        start: l.va,
        end: l.va + l.size,
        pa: l.pa,
        leafPas: [l.pa],
        perm: l.perm,
        leafSize: l.size,
      });
    }
  }
  return out;
}

/** The domain's mappings, read from the tables the hardware walks (or the mock's records). */
export function domainTable(m: Machine, id: number): DomainTable {
  const d = domainById(m, id);
  const type = domainTypeName(d.type);
  const fromPt = (leaves: Mapping[], source: string): DomainTable => ({
    domain: id,
    type,
    source,
    ranges: ranges(
      leaves.map((x) => ({ va: x.va, pa: x.pa, size: x.size, perm: ptePerm(x.perm) })),
    ),
  });
  if (d instanceof RiscvPagingDomain)
    return fromPt(d.pgtable.mappings(), "the domain's page table");
  if (d.mm !== null) {
    const mm = d.mm;
    return mm.state === "freed"
      ? { domain: id, type, source: `mm ${mm.id} (freed)`, ranges: [] }
      : fromPt(mm.pgtable.mappings(), `the page table of mm ${mm.id} (SVA)`);
  }
  if (d instanceof MockPagingDomain) {
    return {
      domain: id,
      type,
      source: "the mock driver's mappings",
      ranges: ranges(
        d
          .mappings()
          .map((x) => ({ va: x.iova, pa: x.paddr, size: x.size, perm: mockPerm(x.prot) })),
      ),
    };
  }
  const source =
    d.type === IOMMU_DOMAIN_IDENTITY
      ? "identity: every address is its own physical address"
      : d.type === IOMMU_DOMAIN_BLOCKED
        ? "blocked: nothing is reachable"
        : "no page table";
  return { domain: id, type, source, ranges: [] };
}

function rangeJSON(r: MappingRange): Json {
  return {
    iova: jsonAddr(r.start),
    end: jsonAddr(r.end),
    size: jsonAddr(r.end - r.start),
    perm: r.perm,
    leaf_size: jsonAddr(r.leafSize),
    pa: r.pa === null ? null : jsonAddr(r.pa),
    ...(r.pa === null ? { leaf_pas: r.leafPas.map(jsonAddr) } : {}),
  };
}

// ---------------------------------------------------------------- hardware queues

const CQ_NAMES: Readonly<Record<string, string>> = {
  "1.0": "IOTINVAL.VMA",
  "1.1": "IOTINVAL.GVMA",
  "2.0": "IOFENCE.C",
  "3.0": "IODIR.INVAL_DDT",
  "3.1": "IODIR.INVAL_PDT",
  "4.0": "ATS.INVAL",
  "4.1": "ATS.PRGR",
};

interface QueueView {
  readonly name: "cq" | "fq" | "pq";
  readonly base: bigint;
  readonly entries: number;
  readonly head: number;
  readonly tail: number;
  /** Records the queue has carried. */
  readonly count: number;
  /** The latest records (newest last), decoded from queue memory. */
  readonly records: readonly Json[];
}

function queues(m: Machine, i: MachineIommu, keep: number): QueueView[] {
  const hw = i.riscv?.hardware.toJSON() as
    | { queues: Record<string, Record<string, unknown>> }
    | undefined;
  if (hw === undefined) return [];
  const out: QueueView[] = [];
  for (const [name, size, countKey] of [
    ["cq", 16, "executed"],
    ["fq", 32, "queued"],
    ["pq", 16, "queued"],
  ] as const) {
    const q = hw.queues[name]!;
    const b = q[`${name}b`] as { PPN: string; LOG2SZ: number };
    const base = BigInt(b.PPN) << 12n;
    const entries = 2 ** b.LOG2SZ;
    // The producer's index: the CQ's tail is software's, the FQ's and PQ's the hardware's.
    const head = q[`${name}h`] as number;
    const tail = q[`${name}t`] as number;
    const count = (q[countKey] as number | undefined) ?? 0;
    const newest = name === "cq" ? head : tail;
    const n = Math.min(keep, count, entries);
    const records: Json[] = [];
    for (let k = n; k >= 1; k--) {
      const idx = (newest - k + entries) % entries;
      const bytes = m.memory.readBytes(base + BigInt(idx * size), size);
      const w = new Uint32Array(bytes.buffer, bytes.byteOffset, size / 4);
      records.push(recordView(name, w, idx));
    }
    out.push({ name, base, entries, head, tail, count, records });
  }
  return out;
}

function recordView(queue: "cq" | "fq" | "pq", w: Uint32Array, index: number): Json {
  if (queue === "fq") {
    const r = decodeFaultRecord(w, 0);
    return {
      index,
      cause: FAULT_CAUSE_NAMES[r.cause] ?? r.cause,
      device_id: hex(r.did),
      pasid: r.pv ? r.pid : null,
      priv: r.priv,
      ttyp: r.ttyp,
      iotval: jsonAddr(r.iotval),
    };
  }
  if (queue === "pq") {
    const r = decodePageRequest(w, 0);
    return {
      index,
      device_id: hex(r.did),
      pasid: r.pv ? r.pid : null,
      addr: jsonAddr(BigInt(r.page) << 12n),
      access: `${r.r ? "r" : "-"}${r.w ? "w" : "-"}`,
      prgi: r.prgi,
      last: r.last,
    };
  }
  const op = `${w[0]! & 0x7f}.${(w[0]! >>> 7) & 7}`;
  return {
    index,
    command: CQ_NAMES[op] ?? `opcode ${op}`,
    raw: [...w].map((x) => x.toString(16).padStart(8, "0")).join(" "),
  };
}

// ---------------------------------------------------------------- the whole view

function groupsJSON(m: Machine): Json {
  return m.core.groups().map((g) => ({
    id: g.id,
    devices: g.devices.map((x) => describedName(x.dev)),
    domain: g.domain?.id ?? null,
    domain_type: g.domain ? domainTypeName(g.domain.type) : null,
    role:
      g.domain === null
        ? null
        : g.domain === g.defaultDomain
          ? "default"
          : g.domain === g.blockingDomain
            ? "blocking"
            : "attached",
    default_domain: g.defaultDomain?.id ?? null,
    owner_cnt: g.ownerCnt,
    owner: g.owner === null ? null : ownerLabel(g.owner),
    pasids: g.pasidArray.entries().map(([p, e]) => ({
      pasid: p,
      domain: pasidArrayEntryToDomain(e).id,
      handle: e.kind === "handle",
    })),
  }));
}

function programmedJSON(m: Machine): Json {
  return m.presentDevices().flatMap((n) => {
    const dev = m.device(n)!;
    const pasids = m.programmedPasids(dev);
    const rid = m.programmedDomain(dev);
    return rid === null && pasids.length === 0
      ? []
      : [
          {
            device: n,
            rid_domain: rid?.id ?? null,
            pasids: pasids.map((p) => ({
              pasid: p,
              domain: m.programmedPasidDomain(dev, p)?.id ?? null,
            })),
          },
        ];
  });
}

/** Everything `inspect` shows, as JSON. */
export function inspectJSON(m: Machine, opts: InspectOptions = {}): Json {
  const keep = opts.records ?? 8;
  const core = m.core.toJSON() as { global_pasids?: Json; sva_mms?: Json };
  return {
    machine: m.name,
    clock_ns: m.ctx.clock.now,
    groups: groupsJSON(m),
    domains: m.core.domains().map((d) => d.toJSON()),
    pasids: {
      global: core.global_pasids ?? [],
      mms: core.sva_mms ?? [],
      programmed: programmedJSON(m),
    },
    ...(opts.domain === undefined
      ? {}
      : {
          page_table: (() => {
            const t = domainTable(m, opts.domain);
            return {
              domain: t.domain,
              type: t.type,
              source: t.source,
              ranges: t.ranges.map(rangeJSON),
            };
          })(),
        }),
    iommus: m.iommus().map((i) => {
      const hw = i.riscv?.hardware.toJSON() as
        | { caches: Record<string, { entries: Json }> }
        | undefined;
      return {
        name: i.name,
        driver: i.description.driver,
        iotlb: hw?.caches.iotlb?.entries ?? null,
        ddt_cache: hw?.caches.ddt?.entries ?? null,
        pdt_cache: hw?.caches.pdt?.entries ?? null,
        queues: queues(m, i, keep).map((q) => ({
          queue: q.name,
          base: jsonAddr(q.base),
          entries: q.entries,
          head: q.head,
          tail: q.tail,
          count: q.count,
          records: [...q.records],
        })),
      };
    }),
    processes: m.processes.toJSON(),
    mms: m.mm.liveMms().map((mm) => mm.toJSON()),
  };
}

/** The same as text. */
export function formatInspect(m: Machine, opts: InspectOptions = {}): string {
  const v = inspectJSON(m, opts) as Record<string, Json>;
  const out: string[] = [];
  out.push(`Virtual clock: ${m.ctx.clock.now} ns`);
  out.push("");
  out.push("Groups:");
  for (const g of v.groups as Record<string, Json>[]) {
    const owner = ownershipText(g.owner_cnt as number, g.owner as string | null);
    const pasids = (g.pasids as { pasid: number; domain: number }[])
      .map((p) => `${p.pasid}→${p.domain}`)
      .join(" ");
    out.push(
      `  group ${String(g.id).padEnd(3)} ${(g.devices as string[]).join(", ").padEnd(26)} domain ${g.domain} ${g.domain_type} (${g.role}); ${owner}${pasids ? `; PASIDs ${pasids}` : ""}`,
    );
  }
  out.push("");
  out.push("Domains:");
  for (const d of v.domains as Record<string, Json>[]) {
    const extra = [
      d.iommu ? `${d.iommu}` : d.owner ? `${d.owner}` : "",
      d.pscid !== undefined ? `PSCID ${d.pscid}` : "",
      d.mode ? `${d.mode}` : "",
      typeof d.mappings === "number" ? plural(d.mappings, "mapping") : "",
      typeof d.mapped_pages === "number" ? `${plural(d.mapped_pages, "page")} mapped` : "",
      d.mm !== null && d.mm !== undefined ? `mm ${d.mm}` : "",
      typeof d.users === "number" && d.users > 0 ? plural(d.users, "user") : "",
      d.freed ? "freed" : "",
    ].filter((x) => x !== "");
    if (extra.length === 0 && d.type === "IDENTITY") extra.push("IOVA = physical address");
    if (extra.length === 0 && d.type === "BLOCKED") extra.push("no DMA gets through");
    out.push(`  domain ${String(d.id).padEnd(3)} ${String(d.type).padEnd(10)} ${extra.join(", ")}`);
  }
  out.push("");
  const p = v.pasids as Record<string, Json>;
  out.push("PASIDs:");
  out.push(`  global allocator: ${(p.global as number[]).join(", ") || "none in use"}`);
  for (const mm of p.mms as { mm: number; pasid: number }[])
    out.push(`  mm ${mm.mm}: PASID ${mm.pasid}`);
  for (const d of p.programmed as {
    device: string;
    rid_domain: number | null;
    pasids: { pasid: number; domain: number | null }[];
  }[]) {
    out.push(
      `  ${d.device} as programmed: RID → domain ${d.rid_domain ?? "none"}${d.pasids.length ? `; ${d.pasids.map((x) => `PASID ${x.pasid} → domain ${x.domain}`).join(", ")}` : ""}`,
    );
  }
  if (opts.domain !== undefined) {
    const t = domainTable(m, opts.domain);
    out.push("");
    out.push(
      `Domain ${t.domain} (${t.type}): ${t.source}${t.ranges.length > 0 ? ` — IOVA range, permissions (${t.ranges[0]!.perm.length === 2 ? "rw" : "rwxugad"}), size → physical` : ""}`,
    );
    if (t.ranges.length === 0) out.push("  nothing mapped");
    for (const r of t.ranges) {
      const n = r.leafPas.length;
      const pa =
        r.pa !== null
          ? hex(r.pa, 12)
          : `${n} scattered pages ${hex(r.leafPas[0]!)} … ${hex(r.leafPas[n - 1]!)}`;
      out.push(
        `  ${hex(r.start, 12)}-${hex(r.end, 12)} ${r.perm}  ${formatSize(r.end - r.start).padEnd(8)} → ${pa}${n > 1 ? ` (${n} × ${formatSize(r.leafSize)})` : ""}`,
      );
    }
  }
  for (const i of v.iommus as Record<string, Json>[]) {
    out.push("");
    out.push(`${i.name} (${i.driver}):`);
    if (i.iotlb === null) {
      out.push("  no hardware (the mock driver has no caches or queues)");
      continue;
    }
    const cacheLines = (
      label: string,
      entries: Json[],
      show: (e: Record<string, Json>) => string,
    ) => {
      out.push(`  ${label}: ${entries.length} entr${entries.length === 1 ? "y" : "ies"}`);
      for (const e of entries.slice(0, 16)) out.push(`    ${show(e as Record<string, Json>)}`);
      if (entries.length > 16) out.push(`    … ${entries.length - 16} more`);
    };
    cacheLines(
      "IOTLB",
      i.iotlb as Json[],
      (e) =>
        `PSCID ${e.pscid}${e.gscid === null ? "" : ` GSCID ${e.gscid}`} ${e.iova} +${e.size} → ${e.pa} ${e.s1_perm}${e.global ? " G" : ""}`,
    );
    // Device and process contexts name their tables by PPN; shown as addresses like the rest.
    cacheLines("DDT cache", i.ddt_cache as Json[], (e) => {
      const fsc = e.fsc as Record<string, Record<string, Json>>;
      const pscid = (e.ta as Record<string, Json>).PSCID;
      const what = fsc.pdtp
        ? `process directory ${fsc.pdtp.MODE} at ${ppnAddress(fsc.pdtp.PPN)}`
        : fsc.iosatp
          ? `${fsc.iosatp.MODE} page table at ${ppnAddress(fsc.iosatp.PPN)}, PSCID ${pscid}`
          : "no first stage (Bare)";
      return `device_id ${hex(e.device_id as number)}: ${what}`;
    });
    cacheLines("PDT cache", i.pdt_cache as Json[], (e) => {
      const fsc = e.fsc as Record<string, Json>;
      const ta = e.ta as Record<string, Json>;
      return `device_id ${hex(e.device_id as number)} PASID ${e.process_id}: ${fsc.MODE} page table at ${ppnAddress(fsc.PPN)}, PSCID ${ta.PSCID}${ta.ENS ? ", supervisor" : ""}`;
    });
    for (const q of i.queues as Record<string, Json>[]) {
      const label = { cq: "command queue", fq: "fault queue", pq: "page-request queue" }[
        q.queue as string
      ];
      const shown = (q.records as Json[]).length;
      out.push(
        `  ${label}: ${q.entries} entries at ${q.base}; head ${q.head}, tail ${q.tail}; ${plural(q.count as number, "record")} so far${shown === 0 ? "" : shown === 1 ? ", the latest:" : `, the latest ${shown}:`}`,
      );
      for (const r of q.records as Record<string, Json>[]) {
        const { index, ...rest } = r;
        out.push(
          `    [${index}] ${Object.entries(rest)
            .map(([k, x]) => (k === "command" ? x : `${k}=${x}`))
            .join(" ")}`,
        );
      }
    }
  }
  out.push("");
  out.push("Processes:");
  const procs = v.processes as Record<string, Json>[];
  if (procs.length === 0) out.push("  none");
  for (const pr of procs) {
    const files = (pr.files as { fd: number; name: string }[]).map((f) => `fd ${f.fd} ${f.name}`);
    out.push(
      `  pid ${pr.pid} ${pr.comm} (${pr.state}), mm ${pr.mm ?? "none"}; ${files.length > 0 ? `open files: ${files.join(", ")}` : "no open files"}`,
    );
  }
  out.push("");
  out.push("Address spaces:");
  if ((v.mms as Json[]).length === 0) out.push("  none");
  const pasidOf = new Map((p.mms as { mm: number; pasid: number }[]).map((x) => [x.mm, x.pasid]));
  for (const mm of v.mms as Record<string, Json>[]) {
    const vmas = (mm.vmas as Record<string, Json>[] | undefined) ?? [];
    const rss = (mm.rss as { total?: number } | null)?.total ?? 0;
    const pasid = pasidOf.get(mm.id as number);
    out.push(
      `  mm ${mm.id}${mm.pid === null ? "" : ` of pid ${mm.pid}`} (${mm.state}, mm_users ${mm.users}, mm_count ${mm.count}, ${mm.mode}, pgd ${mm.pgd}): ${plural(vmas.length, "VMA")}, ${plural(rss, "page")} resident${pasid === undefined ? "" : `, PASID ${pasid}`}`,
    );
    for (const a of vmas.slice(0, 8)) out.push(`    ${a.start}-${a.end} ${a.perms}`);
  }
  return `${out.join("\n")}\n`;
}

function ppnAddress(ppn: Json | undefined): string {
  return hex(BigInt(ppn as string) << 12n);
}
