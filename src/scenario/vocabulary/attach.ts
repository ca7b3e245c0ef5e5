// Attaching domains to devices and groups (core §3.3–§3.4), with and without attach handles.

import type { Device } from "../../bus/device.js";
import type { IommuAttachHandle, IommuDomain } from "../../iommu/domain.js";
import type { IommuGroup } from "../../iommu/group.js";
import type { Machine } from "../../machine/machine.js";
import { DEV, DOMAIN, GROUP, HANDLE } from "./kinds.js";
import { type FunctionSpec, object, param, returnsResult, returnsValue, VOID } from "./types.js";

const IGNORED_DOMAIN = param(object("domain"), {
  nullable: true,
  doc: "struct iommu_domain *domain (ignored by the kernel)",
});

export const ATTACH: readonly FunctionSpec<Machine>[] = [
  {
    name: "iommu_attach_device",
    area: "attach",
    params: { domain: DOMAIN, dev: DEV },
    returns: returnsResult("void"),
    ts: "core.attachDevice(domain, dev)",
    doc: "Attaches a domain to a device alone in its group. ENODEV without a group, EINVAL if the group holds ≠ 1 device or the domain is incompatible, EBUSY if the group is on a non-core domain.",
    call: (m, a) => m.core.attachDevice(a.domain as IommuDomain, a.dev as Device),
  },
  {
    name: "iommu_detach_device",
    area: "attach",
    params: { domain: DOMAIN, dev: DEV },
    returns: VOID,
    ts: "core.detachDevice(domain, dev)",
    doc: "Back to the core domain (blocking if owned, else default). WARNs and does nothing if the domain is not attached or the group holds ≠ 1 device.",
    call: (m, a) => m.core.detachDevice(a.domain as IommuDomain, a.dev as Device),
  },
  {
    name: "iommu_attach_group",
    area: "attach",
    params: { domain: DOMAIN, group: GROUP },
    returns: returnsResult("void"),
    ts: "core.attachGroup(domain, group)",
    doc: "Attaches a domain to every device of a group. EBUSY if the group is on a non-core domain, EINVAL if incompatible.",
    call: (m, a) => m.core.attachGroup(a.domain as IommuDomain, a.group as IommuGroup),
  },
  {
    name: "iommu_detach_group",
    area: "attach",
    params: { domain: IGNORED_DOMAIN, group: GROUP },
    returns: VOID,
    ts: "core.detachGroup(domain, group)",
    doc: "Back to the core domain; the domain argument is ignored.",
    call: (m, a) => m.core.detachGroup(a.domain as IommuDomain | null, a.group as IommuGroup),
  },
  {
    name: "iommu_get_domain_for_dev",
    area: "attach",
    params: { dev: DEV },
    returns: returnsValue(object("domain")),
    ts: "core.getDomainForDev(dev)",
    doc: "The domain currently attached to the device's group, or null.",
    call: (m, a) => m.core.getDomainForDev(a.dev as Device),
  },
  {
    name: "iommu_deferred_attach",
    area: "attach",
    params: { dev: DEV, domain: DOMAIN },
    returns: returnsResult("void"),
    ts: "core.deferredAttach(dev, domain)",
    doc: "Performs an attach the driver deferred until first DMA-API use.",
    call: (m, a) => m.core.deferredAttach(a.dev as Device, a.domain as IommuDomain),
  },
  {
    name: "iommu_attach_group_handle",
    area: "attach",
    params: { domain: DOMAIN, group: GROUP, handle: HANDLE },
    returns: returnsResult("void"),
    ts: "core.attachGroupHandle(domain, group, handle)",
    doc: "Attaches a domain to a group and stores the handle at PASID 0. EINVAL for a null handle, EBUSY if slot 0 is taken or the group is busy.",
    call: (m, a) =>
      m.core.attachGroupHandle(
        a.domain as IommuDomain,
        a.group as IommuGroup,
        a.handle as IommuAttachHandle | null,
      ),
  },
  {
    name: "iommu_detach_group_handle",
    area: "attach",
    params: { domain: IGNORED_DOMAIN, group: GROUP },
    returns: VOID,
    ts: "core.detachGroupHandle(domain, group)",
    doc: "Back to the core domain; erases the handle at PASID 0.",
    call: (m, a) => m.core.detachGroupHandle(a.domain as IommuDomain | null, a.group as IommuGroup),
  },
  {
    name: "iommu_replace_group_handle",
    area: "attach",
    params: {
      group: GROUP,
      new_domain: param(object("domain"), {
        nullable: true,
        doc: "struct iommu_domain *new_domain",
      }),
      handle: HANDLE,
    },
    returns: returnsResult("void"),
    ts: "core.replaceGroupHandle(group, new_domain, handle)",
    doc: "Switches the group to another domain without the EBUSY check (iommufd). EINVAL for a null domain or handle.",
    call: (m, a) =>
      m.core.replaceGroupHandle(
        a.group as IommuGroup,
        a.new_domain as IommuDomain | null,
        a.handle as IommuAttachHandle | null,
      ),
  },
];
