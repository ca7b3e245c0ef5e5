// Invariants of the IOMMU core (core §1.10 and more) over a whole IommuCore at any moment.
// `checkCore` returns every violation it finds as a value; it never throws and never changes
// the state it looks at. Driver views (what a driver says it programmed) let it compare the
// core's bookkeeping with the "hardware". SVA bonds and domains (#6, #7), the mms' PASIDs and
// the I/O page fault groups (#8) are checked from the core's own lists.

import type { Json } from "../base/json.js";
import type { Device } from "../bus/device.js";
import { IOMMU_DOMAIN_SVA, IOMMU_NO_PASID } from "../iommu/constants.js";
import type { IommuCore } from "../iommu/core.js";
import type { IommuDomain } from "../iommu/domain.js";
import { type IommuGroup, pasidArrayEntryToDomain } from "../iommu/group.js";
import { IommuFaultParam } from "../iommu/iopf-queue.js";
import type { IommuOps } from "../iommu/ops.js";
import { IommuSva, iommuMmOf } from "../iommu/sva.js";

/** What a driver programmed, as it reports it (the mock driver implements this). */
export interface IommuProgrammingView {
  /** The ops of the driver: devices whose instance uses these ops are checked against it. */
  readonly ops: IommuOps;
  /** The domain last programmed for the device's RID traffic (undefined: never). */
  ridDomain(dev: Device): IommuDomain | undefined;
  /** The domain programmed at (dev, pasid) (undefined: none / blocked). */
  pasidDomain(dev: Device, pasid: number): IommuDomain | undefined;
  /** PASIDs programmed with a non-blocked domain, ascending. */
  programmedPasids(dev: Device): number[];
}

export interface Violation {
  /** Short name of the invariant ("1.10.3", "group-membership", …). */
  readonly invariant: string;
  readonly message: string;
  readonly group?: number;
  readonly device?: string;
}

export interface CheckOptions {
  /** Driver views to compare programming state with (drivers without one are not compared). */
  readonly drivers?: readonly IommuProgrammingView[];
}

export function violationsJSON(v: readonly Violation[]): Json {
  return v.map((x) => ({ ...x }));
}

/** Every invariant violation of `core` now. */
export function checkCore(core: IommuCore, opts: CheckOptions = {}): Violation[] {
  const out: Violation[] = [];
  const s = core.s;
  const add = (
    invariant: string,
    message: string,
    where: { group?: number; device?: string } = {},
  ) => out.push({ invariant, message, ...where });

  const groups = core.groups();
  const domains = new Set(core.domains());
  const liveDomain = (d: IommuDomain | null, what: string, g: IommuGroup): void => {
    if (d === null) return;
    if (d.freed || !domains.has(d)) {
      add("domain-live", `${what} ${d.id} is freed or unknown to the core`, { group: g.id });
    }
  };

  // IDs: the group IDA holds exactly the live groups.
  const idaIds = [...s.groupIda.ids()];
  const groupIds = groups.map((g) => g.id);
  if (idaIds.join(",") !== groupIds.join(",")) {
    add("group-ids", `group IDA holds [${idaIds}] but live groups are [${groupIds}]`);
  }

  for (const g of groups) {
    const where = { group: g.id };
    if (g.released) add("group-live", "released group still listed", where);
    if (g.refs < g.devices.length) {
      add("group-refs", `${g.refs} references for ${g.devices.length} devices`, where);
    }
    // Membership consistency.
    const names = new Set<string>();
    for (const gd of g.devices) {
      if (gd.dev.iommuGroup !== g) {
        add(
          "group-membership",
          `${gd.dev.name} is listed but its iommu_group is ${gd.dev.iommuGroup?.id ?? "null"}`,
          where,
        );
      }
      if (names.has(gd.name)) add("group-membership", `two devices linked as ${gd.name}`, where);
      names.add(gd.name);
    }
    liveDomain(g.domain, "domain", g);
    liveDomain(g.defaultDomain, "default_domain", g);
    liveDomain(g.blockingDomain, "blocking_domain", g);

    // §1.10 #2: a default domain implies a current domain; so do members, once the group's
    // default-domain set-up is no longer deferred by a bus probe.
    if (g.defaultDomain !== null && g.domain === null) {
      add("1.10.2", "default_domain set but domain is NULL", where);
    } else if (g.domain === null && g.devices.length > 0 && !g.onProbeList) {
      add("1.10.2", "group has devices but no domain and no deferred set-up", where);
    }
    // §1.10 #3.
    if (g.ownerCnt === 0 && g.owner !== null) add("1.10.3", "owner set with owner_cnt 0", where);
    // Refined: a driver whose static default domain is its blocked domain (the selftest mock)
    // legitimately keeps an owned group on "the default domain" — it is the blocking domain.
    if (g.owner !== null && g.domain === g.defaultDomain && g.defaultDomain !== g.blockingDomain) {
      add("1.10.3", "owned group is on its default domain", where);
    }
    if (g.owner !== null && g.blockingDomain === null) {
      add("owner-blocking", "owned group has no blocking domain", where);
    }
    // §1.10 #4: an empty group is unowned, on no domain, with its domains freed.
    if (g.devices.length === 0) {
      if (g.ownerCnt !== 0) add("1.10.4", `empty group with owner_cnt ${g.ownerCnt}`, where);
      if (g.domain !== null || g.defaultDomain !== null || g.blockingDomain !== null) {
        add("1.10.4", "empty group still has domains", where);
      }
    }
    // No reservation outlives the call that made it.
    const res = g.pasidArray.reservations();
    if (res.length > 0) add("pasid-reserved", `stale pasid_array reservations [${res}]`, where);

    // pasid_array entries.
    for (const [pasid, e] of g.pasidArray.entries()) {
      if (e.kind === "handle" && e.handle.domain === null) {
        add("pasid-array", `handle at PASID ${pasid} has no domain`, where);
        continue;
      }
      const d = pasidArrayEntryToDomain(e);
      liveDomain(d, `PASID ${pasid} domain`, g);
      if (pasid === IOMMU_NO_PASID) {
        if (e.kind !== "handle") add("pasid-array", "slot 0 holds a domain-tagged entry", where);
        else if (g.domain !== d) {
          add(
            "pasid-array",
            `group handle domain ${d.id} is not the group domain ${g.domain?.id ?? "null"}`,
            where,
          );
        }
      }
    }

    for (const gd of g.devices) checkDevice(core, g, gd.dev, opts, add);
  }

  // Devices that think they are in a group must be listed by it (§1.10 #1).
  for (const bus of s.model.buses()) {
    for (const dev of bus.devices()) {
      const link = dev.iommuGroup;
      if (link === null) continue;
      const g = core.groupById(link.id);
      if (g === null || g !== link || !g.hasDevice(dev)) {
        add("1.10.1", `${dev.name} points at group ${link.id} which does not list it`, {
          device: dev.name,
        });
      }
      if (dev.iommu === null || dev.iommu.iommuDev === null) {
        add("1.10.1", `${dev.name} is in a group but was not probed`, { device: dev.name });
      }
    }
  }

  checkSva(core, add);
  checkIopf(core, add);

  // Instances: devices only reference registered instances.
  for (const bus of s.model.buses()) {
    for (const dev of bus.devices()) {
      const inst = dev.iommu?.iommuDev ?? null;
      if (inst !== null && !s.iommus.includes(inst as never)) {
        add("instance", `${dev.name} uses unregistered IOMMU ${inst.name}`, { device: dev.name });
      }
    }
  }
  return out;
}

function checkDevice(
  core: IommuCore,
  g: IommuGroup,
  dev: Device,
  opts: CheckOptions,
  add: (inv: string, msg: string, where?: { group?: number; device?: string }) => void,
): void {
  const where = { group: g.id, device: dev.name };
  const di = dev.iommu;
  if (di === null || di.iommuDev === null) return;
  const ops = core.s.devIommuOps(dev);
  // The group's domain must be one this device's driver can take.
  if (
    g.domain !== null &&
    g.domain.owner !== ops &&
    g.domain !== ops.blockedDomain &&
    g.domain !== ops.identityDomain &&
    g.domain !== ops.defaultDomain
  ) {
    add(
      "domain-compatible",
      `domain ${g.domain.id} is not compatible with ${dev.name}'s IOMMU`,
      where,
    );
  }
  const view = opts.drivers?.find((v) => v.ops === ops);
  if (!view) return;
  // RID programming follows group.domain unless the attach is still deferred.
  if (!di.attachDeferred && g.domain !== null) {
    const rid = view.ridDomain(dev);
    if (rid !== g.domain) {
      add(
        "rid-programming",
        `${dev.name} programmed with ${rid?.id ?? "nothing"} but group domain is ${g.domain.id}`,
        where,
      );
    }
  }
  // §1.10 #5: every PASID entry is programmed on the PASID-capable devices the core programmed
  // it on (members present at attach time); a later joiner is programmed with nothing there.
  const programmed = view.programmedPasids(dev);
  const expected = g.pasidArray
    .entries()
    .filter(([p]) => p !== IOMMU_NO_PASID)
    .map(([p, e]) => [p, pasidArrayEntryToDomain(e)] as const);
  if (di.maxPasids === 0) {
    if (programmed.length > 0) {
      add(
        "1.10.5",
        `${dev.name} has no PASID support but PASIDs [${programmed}] are programmed`,
        where,
      );
    }
    return;
  }
  for (const [p, d] of expected) {
    const got = view.pasidDomain(dev, p);
    const want = g.pasidProgrammed.get(p)?.has(dev) ? d : undefined;
    if (got !== want) {
      add(
        "1.10.5",
        `${dev.name} PASID ${p}: programmed ${got?.id ?? "nothing"}, expected ${want?.id ?? "nothing"} (pasid_array says ${d.id})`,
        where,
      );
    }
  }
  const keys = new Set(expected.map(([p]) => p));
  for (const p of programmed) {
    if (!keys.has(p))
      add("1.10.5", `${dev.name} PASID ${p} programmed but not in pasid_array`, where);
  }
}

type Add = (inv: string, msg: string, where?: { group?: number; device?: string }) => void;

/**
 * SVA (§1.10 #6, #7): every mm with `iommu_mm` is alive and owns an allocated PASID of its own;
 * an SVA domain is on its mm's list iff it has users; a bond in a pasid_array sits at its mm's
 * PASID, in its device's group, with users; a domain's users count the slots that hold it.
 */
function checkSva(core: IommuCore, add: Add): void {
  const s = core.s;
  const listed = new Set<IommuDomain>();
  const owners = new Map<number, number>();
  for (const mm of s.sva.mms) {
    const data = iommuMmOf(mm);
    if (data === null) {
      add("1.10.6", `mm ${mm.id} is listed for SVA without iommu_mm`);
      continue;
    }
    if (mm.state === "freed")
      add("pasid-lifetime", `mm ${mm.id} was freed but keeps PASID ${data.pasid}`);
    if (!s.globalPasidIda.has(data.pasid)) {
      add("pasid-lifetime", `PASID ${data.pasid} of mm ${mm.id} is not allocated`);
    }
    const other = owners.get(data.pasid);
    if (other !== undefined)
      add("pasid-lifetime", `mms ${other} and ${mm.id} share PASID ${data.pasid}`);
    owners.set(data.pasid, mm.id);
    for (const d of data.svaDomains) {
      listed.add(d);
      if (d.freed || d.type !== IOMMU_DOMAIN_SVA || d.mm !== mm || d.users <= 0) {
        add(
          "1.10.6",
          `mm ${mm.id} lists domain ${d.id} (freed ${d.freed}, users ${d.users}, mm ${d.mm?.id ?? null})`,
        );
      }
    }
  }
  const slots = new Map<IommuDomain, number>();
  for (const g of core.groups()) {
    for (const [pasid, e] of g.pasidArray.entries()) {
      if (e.kind !== "handle" || !(e.handle instanceof IommuSva)) continue;
      const bond = e.handle;
      const d = bond.domain;
      const where = { group: g.id };
      if (d === null || d.type !== IOMMU_DOMAIN_SVA || d.mm === null) {
        add("1.10.7", `bond ${bond.label} at PASID ${pasid} has no SVA domain`, where);
        continue;
      }
      slots.set(d, (slots.get(d) ?? 0) + 1);
      if (bond.users < 1)
        add("1.10.7", `bond ${bond.label} is attached with ${bond.users} users`, where);
      if (bond.dev === null || !g.hasDevice(bond.dev)) {
        add(
          "1.10.7",
          `bond ${bond.label} at PASID ${pasid} is not of a device of the group`,
          where,
        );
      }
      const mmPasid = iommuMmOf(d.mm)?.pasid;
      if (mmPasid !== pasid) {
        add("1.10.7", `bond ${bond.label} sits at PASID ${pasid}, its mm has ${mmPasid}`, where);
      }
    }
  }
  for (const d of core.domains()) {
    if (d.type !== IOMMU_DOMAIN_SVA || d.cookieType !== "SVA") continue;
    if (d.users > 0 !== listed.has(d)) {
      add(
        "1.10.6",
        `SVA domain ${d.id} has ${d.users} users and is ${listed.has(d) ? "" : "not "}listed`,
      );
    }
    if ((slots.get(d) ?? 0) !== d.users) {
      add("1.10.7", `SVA domain ${d.id} has ${d.users} users but ${slots.get(d) ?? 0} attachments`);
    }
  }
}

/**
 * IOPF (§1.10 #8): a live group is pending iff no response was sent; never more than one; a
 * pending group is on its device's list; a device's fault param is on its (live) queue.
 */
function checkIopf(core: IommuCore, add: Add): void {
  const s = core.s;
  for (const g of s.iopf.groups.values()) {
    const where = { device: g.dev.name };
    if (g.freed) add("1.10.8", `freed iopf group ${g.id} is still tracked`, where);
    if (g.responses > 1) add("1.10.8", `iopf group ${g.id} got ${g.responses} responses`, where);
    if (g.pending !== (g.responses === 0)) {
      add(
        "1.10.8",
        `iopf group ${g.id}: pending ${g.pending} after ${g.responses} responses`,
        where,
      );
    }
    if (g.pending !== g.faultParam.faults.includes(g)) {
      add(
        "1.10.8",
        `iopf group ${g.id}: pending ${g.pending} disagrees with the pending list`,
        where,
      );
    }
  }
  for (const bus of s.model.buses()) {
    for (const dev of bus.devices()) {
      const p = dev.iommu?.faultParam ?? null;
      if (p === null) continue;
      const where = { device: dev.name };
      if (!(p instanceof IommuFaultParam) || p.dev !== dev) {
        add("iopf-param", `${dev.name} has a foreign fault param`, where);
        continue;
      }
      if (p.queue.freed || !p.queue.devices.includes(p)) {
        add("iopf-param", `${dev.name}'s fault param is not on its queue`, where);
      }
      for (const g of p.faults) {
        if (g.freed || !g.pending || s.iopf.groups.get(g.id) !== g) {
          add("1.10.8", `${dev.name} lists iopf group ${g.id} as pending wrongly`, where);
        }
      }
    }
  }
}
