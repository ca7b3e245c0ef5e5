// APIs from the seed review threads that never merged, as the core models them: seed 002's PASID
// consumers over the I/O ASID allocator (Lu Baolu's 2018 RFC; argument shapes from its cover
// letter). `pasid` is the consumer, as in the RFC's `iommu_pasid_*(pasid, …)` calls.

import type { Device } from "../../bus/device.js";
import type { IommuPasidConsumer } from "../../iommu/pasid-consumer.js";
import type { Machine } from "../../machine/machine.js";
import { DEV } from "./kinds.js";
import {
  type FunctionSpec,
  JSON_VALUE,
  object,
  param,
  returnsResult,
  TEXT,
  U32,
  VOID,
} from "./types.js";

const CONSUMER = param(object("pasid_consumer"), {
  doc: "the PASID consumer (from iommu_pasid_init)",
});

export const SEEDS: readonly FunctionSpec<Machine>[] = [
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
