// What `expect:` can check: a device's current domain, a group's owners and PASID table, a
// domain's type and users, the kernel WARNs so far, the invariants, the whole machine view.

import { SimError } from "../../base/errors.js";
import type { Device } from "../../bus/device.js";
import { devIsPci } from "../../bus/pci-dev.js";
import { NicDevice } from "../../hw/endpoints/nic.js";
import type { PciFunction } from "../../hw/pci/topology.js";
import { domainTypeName } from "../../iommu/constants.js";
import type { IommuDomain } from "../../iommu/domain.js";
import { type IommuGroup, ownerLabel } from "../../iommu/group.js";
import { IommuFaultParam } from "../../iommu/iopf-queue.js";
import { describedName, type Machine } from "../../machine/machine.js";
import { driverState, receivedFrames } from "./drivers.js";
import { CPU_SUBJECTS } from "./expect-cpu.js";
import { IOMMU_SUBJECTS } from "./expect-iommu.js";
import { DEV, GROUP } from "./kinds.js";
import {
  BOOL,
  Bytes,
  COUNT,
  enumOf,
  int,
  JSON_VALUE,
  object,
  type PropSpec,
  param,
  type SubjectSpec,
  TEXT,
  VIEW,
} from "./types.js";

const group = (m: Machine, dev: unknown): IommuGroup | null => m.core.groupOf(dev as Device);

/** `default` and `blocking` name the subject group's core domains. */
function coreWords(
  toGroup: (m: Machine, s: unknown) => IommuGroup | null,
): NonNullable<PropSpec<Machine>["words"]> {
  return {
    default: (m, s) => toGroup(m, s)?.defaultDomain ?? null,
    blocking: (m, s) => toGroup(m, s)?.blockingDomain ?? null,
  };
}

const asGroup = (_m: Machine, s: unknown) => s as IommuGroup;

/** The PCI function behind a device, or null for platform devices. */
function pciFunction(dev: unknown): PciFunction | null {
  const d = dev as Device;
  return devIsPci(d) ? d.fn : null;
}

/** The PASID table as {pasid: {kind, domain, handle}} with live objects (compare with $names). */
function pasidTable(g: IommuGroup | null): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [pasid, e] of g?.pasidArray.entries() ?? []) {
    out[String(pasid)] =
      e.kind === "domain"
        ? { kind: "domain", domain: e.domain, handle: null }
        : { kind: "handle", domain: e.handle.domain, handle: e.handle };
  }
  return out;
}

export const SUBJECTS: readonly SubjectSpec<Machine>[] = [
  {
    name: "dev",
    doc: "a device",
    arg: DEV,
    props: {
      domain: {
        type: object("domain"),
        doc: "the domain attached to its group (iommu_get_domain_for_dev); default/blocking name the group's core domains",
        words: coreWords(group),
        get: (m, s) => m.core.getDomainForDev(s as Device),
      },
      programmed_domain: {
        type: object("domain"),
        doc: "what the IOMMU driver last programmed for its RID traffic (the hardware's view), or null",
        words: coreWords(group),
        get: (m, s) => m.programmedDomain(s as Device),
      },
      programmed_pasids: {
        type: JSON_VALUE,
        doc: "the PASIDs the driver has programmed with a domain, ascending (exact list)",
        get: (m, s) => m.programmedPasids(s as Device),
      },
      programmed_pasid_domains: {
        type: JSON_VALUE,
        doc: "PASID → the domain the driver programmed there (partial map; null = blocked)",
        get: (m, s) =>
          Object.fromEntries(
            m
              .programmedPasids(s as Device)
              .map((p) => [String(p), m.programmedPasidDomain(s as Device, p)]),
          ),
      },
      group: {
        type: object("group"),
        doc: "its IOMMU group (a $name, or a partial view like {id: 3})",
        get: (m, s) => group(m, s),
      },
      driver: {
        type: TEXT,
        doc: "the bound driver's name, or null",
        get: (_m, s) => (s as Device).driver?.name ?? null,
      },
      present: {
        type: BOOL,
        doc: "registered on its bus",
        get: (_m, s) => (s as Device).registered,
      },
      max_pasids: {
        type: int(0, 0xffff_ffff),
        doc: "dev->iommu->max_pasids (0 without an IOMMU)",
        get: (_m, s) => (s as Device).iommu?.maxPasids ?? 0,
      },
      require_direct: {
        type: BOOL,
        doc: "firmware asked for a 1:1 mapping (blocking domains are refused)",
        get: (_m, s) => (s as Device).iommu?.requireDirect ?? false,
      },
      attach_deferred: {
        type: BOOL,
        doc: "dev->iommu->attach_deferred: the default-domain attach waits for iommu_deferred_attach",
        get: (_m, s) => (s as Device).iommu?.attachDeferred ?? false,
      },
      iommu: {
        type: TEXT,
        doc: "the IOMMU instance that claimed it, or null",
        get: (_m, s) => (s as Device).iommu?.iommuDev?.name ?? null,
      },
      view: VIEW,
      dma: {
        type: JSON_VALUE,
        doc: "its DMA API state: {device, ops (dma-iommu or dma-direct), dma_mask, coherent_dma_mask, dma_parms, domain, domain_type, mode (strict or lazy), pci_32bit_workaround}",
        get: (m, s) => m.dma.deviceView(s as Device),
      },
      iopf: {
        type: JSON_VALUE,
        doc: "its IOPF state (dev->iommu->fault_param): {device, queue, users, partial: [{flags, pasid, grpid, perm, addr}], pending_groups}, or null off any IOPF queue",
        get: (_m, s) => {
          const p = (s as Device).iommu?.faultParam;
          return p instanceof IommuFaultParam ? p.toJSON() : null;
        },
      },
      engine: {
        type: JSON_VALUE,
        doc: "the view of its device model (DMA engine: test, dsa, nic), or null (none, or behind a mock IOMMU)",
        get: (m, s) => m.endpoints.model(describedName(s as Device))?.toJSON() ?? null,
      },
      wire: {
        type: JSON_VALUE,
        doc: "a NIC's frames sent onto the wire (not looped back), oldest first, as hex bytes (exact list)",
        get: (m, s) => {
          const e = m.endpoints.model(describedName(s as Device));
          return e instanceof NicDevice ? e.transmitted.map((f) => new Bytes(f)) : [];
        },
      },
      driver_state: {
        type: JSON_VALUE,
        doc: "what its device driver holds for it: idxd's device ({state, pasid, pasid_domain, wqs: [{…, users}], …}), the NIC adapter ({up, tx, rx, stats, …}) or the vfio device ({group, cdev_open, iommufd}); null for a name-only driver or none",
        get: (m, s) => driverState(m, s as Device),
      },
      rx_frames: {
        type: JSON_VALUE,
        doc: "frames the NIC driver handed up to the stack, oldest first, as hex bytes (exact list)",
        get: (m, s) => receivedFrames(m, s as Device).map((f) => new Bytes(f)),
      },
      pasid_enabled: {
        type: BOOL,
        doc: "PASID Enable in its PASID capability (what the IOMMU driver turned on)",
        get: (_m, s) => pciFunction(s)?.pasidEnabled ?? false,
      },
      ats_enabled: {
        type: BOOL,
        doc: "ATS Enable in its ATS capability",
        get: (_m, s) => pciFunction(s)?.atsEnabled ?? false,
      },
      pri_enabled: {
        type: BOOL,
        doc: "PRI Enable in its Page Request capability",
        get: (_m, s) => pciFunction(s)?.priEnabled ?? false,
      },
    },
  },
  {
    name: "group",
    doc: "an IOMMU group (a device's name means its group)",
    arg: GROUP,
    props: {
      id: { type: int(0, 0x7fff_ffff), doc: "group id", get: (_m, s) => (s as IommuGroup).id },
      devices: {
        type: JSON_VALUE,
        doc: "member devices in probe order, by their description names",
        get: (_m, s) => (s as IommuGroup).devices.map((g) => describedName(g.dev)),
      },
      domain: {
        type: object("domain"),
        doc: "group->domain; default/blocking name the group's core domains",
        words: coreWords(asGroup),
        get: (_m, s) => (s as IommuGroup).domain,
      },
      default_domain: {
        type: object("domain"),
        doc: "group->default_domain",
        get: (_m, s) => (s as IommuGroup).defaultDomain,
      },
      blocking_domain: {
        type: object("domain"),
        doc: "group->blocking_domain (created on first use)",
        get: (_m, s) => (s as IommuGroup).blockingDomain,
      },
      default_domain_type: {
        type: TEXT,
        doc: "type of the default domain (DMA, DMA_FQ, IDENTITY, BLOCKED, …), or null",
        get: (_m, s) => {
          const d = (s as IommuGroup).defaultDomain;
          return d ? domainTypeName(d.type) : null;
        },
      },
      owner_cnt: {
        type: COUNT,
        doc: "DMA-ownership count",
        get: (_m, s) => (s as IommuGroup).ownerCnt,
      },
      owner: {
        type: object("owner"),
        doc: "the owner cookie, or null (kernel users or free)",
        get: (_m, s) => (s as IommuGroup).owner,
      },
      dma_owner: {
        type: JSON_VALUE,
        doc: "seed 004's typed owner of the group (iommu_device_set_dma_owner): {owner: DMA_OWNER_NONE | DMA_OWNER_DMA_API | DMA_OWNER_PRIVATE_DOMAIN | DMA_OWNER_PRIVATE_DOMAIN_USER, cookie, refcount}",
        get: (m, s) => {
          const st = m.core.dmaOwnerCompat.groupState(s as IommuGroup);
          return {
            owner: st.owner,
            cookie: st.cookie === null ? null : ownerLabel(st.cookie),
            refcount: st.refcount,
          };
        },
      },
      pasids: {
        type: JSON_VALUE,
        doc: "the PASIDs with an entry in pasid_array, ascending (exact list)",
        get: (_m, s) => (s as IommuGroup).pasidArray.entries().map(([p]) => p),
      },
      pasid_array: {
        type: JSON_VALUE,
        doc: "PASID → {kind, domain, handle} (partial map: compare entries with $names, null for an empty slot)",
        get: (_m, s) => pasidTable(s as IommuGroup),
      },
      view: VIEW,
    },
  },
  {
    name: "domain",
    doc: "a domain bound with as:",
    arg: param(object("domain")),
    props: {
      type: {
        type: TEXT,
        doc: "BLOCKED, IDENTITY, UNMANAGED, DMA, DMA_FQ, SVA, …",
        get: (_m, s) => domainTypeName((s as IommuDomain).type),
      },
      users: {
        type: COUNT,
        doc: "SVA users",
        get: (_m, s) => (s as IommuDomain).users,
      },
      freed: { type: BOOL, doc: "iommu_domain_free ran", get: (_m, s) => (s as IommuDomain).freed },
      view: VIEW,
    },
  },
  ...CPU_SUBJECTS,
  ...IOMMU_SUBJECTS,
  {
    name: "warnings",
    doc: "how many kernel WARNs the run has raised so far",
    self: { type: COUNT, doc: "count", get: (m) => m.ctx.warnings.count },
  },
  {
    name: "warning_sites",
    doc: "the kernel functions that WARNed so far, in order",
    self: { type: JSON_VALUE, doc: "sites", get: (m) => m.ctx.warnings.list().map((w) => w.site) },
  },
  {
    name: "invariants",
    doc: "`clean` when every machine invariant holds",
    self: {
      type: enumOf(["clean"]),
      doc: "clean, or the list of violations",
      get: (m) => {
        const broken = m.checkInvariants();
        return broken.length === 0 ? "clean" : broken;
      },
    },
  },
  {
    name: "isolation",
    doc: "the isolation oracle's view (attach_isolation_oracle first), compared partially: {verdict: {isolated, findings, p2p_bypasses, summary}, stats, counts: {by_kind, by_category, by_device}, findings: [{kind, category, device, pasid, access, iova, pa, expected, detail, …}]}",
    self: {
      type: JSON_VALUE,
      doc: "view",
      get: (m) => {
        const o = m.isolationOracle;
        if (o === null)
          throw new SimError("the isolation oracle is not attached (attach_isolation_oracle)");
        return o.toJSON();
      },
    },
  },
  {
    name: "machine",
    doc: "the machine's JSON view, compared partially",
    self: { type: JSON_VALUE, doc: "view", get: (m) => m.toJSON() },
  },
];
