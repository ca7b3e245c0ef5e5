// Historical APIs as the core models them: the I/O ASID allocator (drivers/iommu/ioasid.c,
// ~v5.5–v6.3, core §5.3), seed 002's PASID consumers on top of it (Lu Baolu's 2018 RFC, never
// merged; `pasid` is the consumer, as in its `iommu_pasid_*(pasid, …)` calls) and seed 004's
// typed DMA-owner interface (the Dec 2021 series, before v5.19 merged the modern one).

import type { Device } from "../../bus/device.js";
import type { IommuDmaOwner } from "../../iommu/dma-owner-compat.js";
import type { IoasidSet } from "../../iommu/ioasid.js";
import type { IommuPasidConsumer } from "../../iommu/pasid-consumer.js";
import type { Machine } from "../../machine/machine.js";
import { DEV, DMA_OWNER_TYPE } from "./kinds.js";
import {
  BOOL,
  type FunctionSpec,
  JSON_VALUE,
  object,
  param,
  returnsResult,
  returnsValue,
  TEXT,
  U32,
  VOID,
} from "./types.js";

const CONSUMER = param(object("pasid_consumer"), {
  doc: "the PASID consumer (from iommu_pasid_init)",
});

const IOASID = param(U32, { doc: "ioasid_t" });
const SET = param(object("ioasid_set"), {
  nullable: true,
  doc: "struct ioasid_set * (a new name creates one; null: any)",
});

export const SEEDS: readonly FunctionSpec<Machine>[] = [
  {
    name: "ioasid_alloc",
    area: "seeds",
    params: {
      set: SET,
      min: param(U32),
      max: param(U32),
      private: param(TEXT, { optional: true }),
    },
    returns: returnsValue(U32),
    ts: "core.ioasid.alloc(set, min, max, private)",
    doc: "§5.3: the lowest free IOASID in [min, max] tagged with the set, refcount 1; INVALID_IOASID (0xffffffff) when none is free.",
    call: (m, a) =>
      m.core.ioasid.alloc(
        a.set as IoasidSet | null,
        a.min as number,
        a.max as number,
        a.private ?? null,
      ),
  },
  {
    name: "ioasid_get",
    area: "seeds",
    params: { ioasid: IOASID },
    returns: VOID,
    ts: "core.ioasid.get(ioasid)",
    doc: "§5.3: takes a reference (WARNs if the id is unknown).",
    call: (m, a) => m.core.ioasid.get(a.ioasid as number),
  },
  {
    name: "ioasid_put",
    area: "seeds",
    params: { ioasid: IOASID },
    returns: returnsValue(BOOL),
    ts: "core.ioasid.put(ioasid)",
    doc: "§5.3: drops a reference; true when it freed the id.",
    call: (m, a) => m.core.ioasid.put(a.ioasid as number),
  },
  {
    name: "ioasid_free",
    area: "seeds",
    params: { ioasid: IOASID },
    returns: VOID,
    ts: "core.ioasid.free(ioasid)",
    doc: "§5.3: the earlier plain free.",
    call: (m, a) => m.core.ioasid.free(a.ioasid as number),
  },
  {
    name: "ioasid_find",
    area: "seeds",
    params: { set: SET, ioasid: IOASID },
    returns: returnsResult(JSON_VALUE),
    ts: "core.ioasid.find(set, ioasid)",
    doc: "§5.3: the private data. ENOENT if not allocated, EACCES if another set's.",
    call: (m, a) => m.core.ioasid.find(a.set as IoasidSet | null, a.ioasid as number),
  },
  {
    name: "ioasid_set_data",
    area: "seeds",
    params: { ioasid: IOASID, data: param(TEXT, { nullable: true }) },
    returns: returnsResult("void"),
    ts: "core.ioasid.setData(ioasid, data)",
    doc: "§5.3: replaces the private data. ENOENT if not allocated.",
    call: (m, a) => m.core.ioasid.setData(a.ioasid as number, a.data),
  },
  {
    name: "iommu_device_set_dma_owner",
    area: "seeds",
    params: {
      dev: DEV,
      owner: param(DMA_OWNER_TYPE),
      owner_cookie: param(object("owner"), { nullable: true, optional: true }),
    },
    returns: returnsResult("void"),
    ts: "core.dmaOwnerCompat.deviceSetDmaOwner(dev, owner, owner_cookie)",
    doc: "Seed 004: claims the group with a typed owner; the same type and cookie count up, another is EBUSY; USER needs a cookie (EINVAL, WARN).",
    call: (m, a) =>
      m.core.dmaOwnerCompat.deviceSetDmaOwner(
        a.dev as Device,
        a.owner as IommuDmaOwner,
        (a.owner_cookie as string | null | undefined) ?? null,
      ),
  },
  {
    name: "iommu_pasid_init",
    area: "seeds",
    params: { dev: DEV },
    returns: returnsResult(object("pasid_consumer")),
    ts: "core.pasidInit(dev)",
    doc: "Seed 002: a PASID consumer for the device, limited to the range its IOMMU driver imposes. ENODEV without an IOMMU.",
    call: (m, a) => m.core.pasidInit(a.dev as Device),
  },
  {
    name: "iommu_pasid_exit",
    area: "seeds",
    params: { pasid: CONSUMER },
    returns: VOID,
    ts: "core.pasidExit(pasid)",
    doc: "Seed 002: the consumer stops; its PASIDs return to the allocator.",
    call: (m, a) => m.core.pasidExit(a.pasid as IommuPasidConsumer),
  },
  {
    name: "iommu_pasid_alloc",
    area: "seeds",
    params: {
      pasid: CONSUMER,
      min: param(U32),
      max: param(U32),
      private: param(TEXT, { optional: true, doc: "data attached to the PASID" }),
    },
    returns: returnsResult(U32),
    ts: "core.pasidAlloc(pasid, min, max, private)",
    doc: "Seed 002: a PASID in [min, max] within the consumer's range. EINVAL for an empty range, ENOSPC when none is free.",
    call: (m, a) =>
      m.core.pasidAlloc(
        a.pasid as IommuPasidConsumer,
        a.min as number,
        a.max as number,
        a.private ?? null,
      ),
  },
  {
    name: "iommu_pasid_free",
    area: "seeds",
    params: { pasid: CONSUMER, ioasid: param(U32) },
    returns: VOID,
    ts: "core.pasidFree(pasid, ioasid)",
    doc: "Seed 002: returns a PASID; WARNs if the consumer does not hold it.",
    call: (m, a) => m.core.pasidFree(a.pasid as IommuPasidConsumer, a.ioasid as number),
  },
  {
    name: "iommu_pasid_find",
    area: "seeds",
    params: { pasid: CONSUMER, ioasid: param(U32) },
    returns: returnsResult(JSON_VALUE),
    ts: "core.pasidFind(pasid, ioasid)",
    doc: "Seed 002: the private data of one of the consumer's PASIDs. ENOENT if not allocated, EACCES if another consumer's.",
    call: (m, a) => m.core.pasidFind(a.pasid as IommuPasidConsumer, a.ioasid as number),
  },
];
