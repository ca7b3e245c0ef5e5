// Domains and default domains (core §2.4–§2.6, §3.1): allocation, free, the default domain and
// the sysfs default-domain type.

import type { Device } from "../../bus/device.js";
import type { IommuDomain } from "../../iommu/domain.js";
import type { IommuGroup } from "../../iommu/group.js";
import type { Machine } from "../../machine/machine.js";
import { DEV, DOMAIN, DOMAIN_TYPE, GROUP, HWPT_ALLOC_FLAGS } from "./kinds.js";
import {
  BOOL,
  type FunctionSpec,
  object,
  param,
  returnsResult,
  returnsValue,
  TEXT,
  VOID,
} from "./types.js";

export const DOMAINS: readonly FunctionSpec<Machine>[] = [
  {
    name: "iommu_paging_domain_alloc",
    area: "domains",
    params: { dev: DEV },
    returns: returnsResult(object("domain")),
    ts: "core.pagingDomainAlloc(dev)",
    doc: "A paging (UNMANAGED) domain for the device's IOMMU instance. ENODEV without an IOMMU, EOPNOTSUPP without an allocator, ENOMEM if the driver returns NULL.",
    call: (m, a) => m.core.pagingDomainAlloc(a.dev as Device),
  },
  {
    name: "iommu_paging_domain_alloc_flags",
    area: "domains",
    params: { dev: DEV, flags: param(HWPT_ALLOC_FLAGS, { doc: "IOMMU_HWPT_ALLOC_* flags" }) },
    returns: returnsResult(object("domain")),
    ts: "core.pagingDomainAllocFlags(dev, flags)",
    doc: "Like iommu_paging_domain_alloc with iommufd allocation flags (the driver may refuse them: EOPNOTSUPP).",
    call: (m, a) => m.core.pagingDomainAllocFlags(a.dev as Device, a.flags as number),
  },
  {
    name: "__iommu_alloc_identity_domain",
    area: "domains",
    params: { dev: DEV },
    returns: returnsResult(object("domain")),
    ts: "core.allocIdentityDomain(dev)",
    doc: "The driver's static identity domain, else domain_alloc_identity, else EOPNOTSUPP (internal).",
    call: (m, a) => m.core.allocIdentityDomain(a.dev as Device),
  },
  {
    name: "__iommu_group_alloc_blocking_domain",
    area: "domains",
    params: { group: GROUP },
    returns: returnsResult("void"),
    ts: "core.groupAllocBlockingDomain(group)",
    doc: "Creates the group's blocking domain if it has none (internal; DMA ownership uses it).",
    call: (m, a) => m.core.groupAllocBlockingDomain(a.group as IommuGroup),
  },
  {
    name: "iommu_domain_free",
    area: "domains",
    params: { domain: DOMAIN },
    returns: VOID,
    ts: "core.domainFree(domain)",
    doc: "Frees a domain that is attached nowhere (the one free path for every type).",
    call: (m, a) => m.core.domainFree(a.domain as IommuDomain),
  },
  {
    name: "iommu_group_default_domain",
    area: "domains",
    params: { group: GROUP },
    returns: returnsValue(object("domain")),
    ts: "core.groupDefaultDomain(group)",
    doc: "The group's default domain, or null.",
    call: (m, a) => m.core.groupDefaultDomain(a.group as IommuGroup),
  },
  {
    name: "iommu_get_dma_domain",
    area: "domains",
    params: { dev: DEV },
    returns: returnsValue(object("domain")),
    ts: "core.getDmaDomain(dev)",
    doc: "The default domain of the device's group.",
    call: (m, a) => m.core.getDmaDomain(a.dev as Device),
  },
  {
    name: "iommu_setup_default_domain",
    area: "domains",
    params: { group: GROUP, target_type: param(DOMAIN_TYPE, { doc: "0 = automatic" }) },
    returns: returnsResult("void"),
    ts: "core.setupDefaultDomain(group, target_type)",
    doc: "Chooses, allocates and attaches the group's default domain (internal; probe and sysfs use it). EINVAL when device requirements conflict.",
    call: (m, a) => m.core.setupDefaultDomain(a.group as IommuGroup, a.target_type as number),
  },
  {
    name: "iommu_group_store_type",
    area: "domains",
    params: {
      group: GROUP,
      buf: param(TEXT, { doc: 'what is written to sysfs "type": identity, DMA, DMA-FQ or auto' }),
      cap_sys_admin: param(BOOL, {
        optional: true,
        doc: "the writer has CAP_SYS_ADMIN (default true)",
      }),
      cap_sys_rawio: param(BOOL, {
        optional: true,
        doc: "the writer has CAP_SYS_RAWIO (default true)",
      }),
    },
    returns: returnsResult("void"),
    ts: "core.groupStoreType(group, buf, caps)",
    doc: "A write to /sys/kernel/iommu_groups/<id>/type. EACCES without both capabilities, EINVAL for an unknown type or no default domain, EPERM while the group is in use.",
    call: (m, a) =>
      m.core.groupStoreType(a.group as IommuGroup, a.buf as string, {
        sysAdmin: (a.cap_sys_admin as boolean | undefined) ?? true,
        sysRawio: (a.cap_sys_rawio as boolean | undefined) ?? true,
      }),
  },
  {
    name: "iommu_group_show_type",
    area: "domains",
    params: { group: GROUP },
    returns: returnsValue(TEXT),
    ts: "core.groupShowType(group)",
    doc: 'A read of sysfs "type": identity, DMA, DMA-FQ, blocked, unmanaged or unknown.',
    call: (m, a) => m.core.groupShowType(a.group as IommuGroup),
  },
];
