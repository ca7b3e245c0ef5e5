// Mapping in paging domains (core §3.5).

import { type Errno, errnoNames } from "../../base/errno.js";
import { err, OK } from "../../base/result.js";
import type { Device } from "../../bus/device.js";
import type { IommuDomain } from "../../iommu/domain.js";
import type { Machine } from "../../machine/machine.js";
import { DEV, DOMAIN, PROT } from "./kinds.js";
import {
  enumOf,
  type FunctionSpec,
  param,
  returnsResult,
  returnsValue,
  TEXT,
  U32,
  U64,
  VOID,
} from "./types.js";

export const MAP: readonly FunctionSpec<Machine>[] = [
  {
    name: "iommu_map",
    area: "map",
    params: {
      domain: DOMAIN,
      iova: param(U64),
      paddr: param(U64),
      size: param(U64),
      prot: param(PROT, { doc: "IOMMU_READ, IOMMU_WRITE, …" }),
      gfp: param(enumOf(["GFP_KERNEL", "GFP_ATOMIC"]), { optional: true, doc: "not modelled" }),
    },
    returns: returnsResult("void"),
    ts: "core.map(domain, iova, paddr, size, prot)",
    doc: "Maps a range with the largest page sizes that fit. EINVAL if the domain is not paging or the range is misaligned; a driver failure unmaps what was mapped.",
    call: (m, a) =>
      m.core.map(
        a.domain as IommuDomain,
        a.iova as bigint,
        a.paddr as bigint,
        a.size as bigint,
        a.prot as number,
      ),
  },
  {
    name: "iommu_unmap",
    area: "map",
    params: { domain: DOMAIN, iova: param(U64), size: param(U64) },
    returns: returnsValue(U64),
    ts: "core.unmap(domain, iova, size)",
    doc: "Unmaps a range; returns the bytes unmapped (0 if not paging, misaligned, or a hole).",
    call: (m, a) => m.core.unmap(a.domain as IommuDomain, a.iova as bigint, a.size as bigint),
  },
  {
    name: "iommu_iova_to_phys",
    area: "map",
    params: { domain: DOMAIN, iova: param(U64) },
    returns: returnsValue(U64),
    ts: "core.iovaToPhys(domain, iova)",
    doc: "The physical address an IOVA maps to (0 if unmapped; IDENTITY → iova; BLOCKED → 0).",
    call: (m, a) => m.core.iovaToPhys(a.domain as IommuDomain, a.iova as bigint),
  },
  {
    name: "iommu_set_fault_handler",
    area: "map",
    params: {
      domain: DOMAIN,
      handler: param(enumOf(["handled", ...errnoNames()]), {
        doc: "what the handler returns: handled (0) or an errno name",
      }),
      token: param(TEXT, { optional: true, doc: "void *token passed back to the handler" }),
    },
    returns: VOID,
    ts: "core.setFaultHandler(domain, handler, token)",
    doc: "Installs a legacy per-domain fault handler (WARNs and does nothing if the domain's cookie is taken).",
    call: (m, a) => {
      const ret = a.handler as string;
      m.core.setFaultHandler(
        a.domain as IommuDomain,
        () => (ret === "handled" ? OK : err(ret as Errno)),
        a.token ?? null,
      );
    },
  },
  {
    name: "report_iommu_fault",
    area: "map",
    params: { domain: DOMAIN, dev: DEV, iova: param(U64), flags: param(U32) },
    returns: returnsResult("void"),
    ts: "core.reportIommuFault(domain, dev, iova, flags)",
    doc: "Calls the domain's legacy fault handler and returns its result; ENOSYS without one. Always traces io_page_fault.",
    call: (m, a) =>
      m.core.reportIommuFault(
        a.domain as IommuDomain,
        a.dev as Device,
        a.iova as bigint,
        a.flags as number,
      ),
  },
];
