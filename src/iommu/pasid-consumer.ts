// Seed 002 (Lu Baolu, "[RFC PATCH 1/5] iommu: Add APIs for IOMMU PASID management", 2018): a
// PASID *consumer* API on top of the I/O ASID allocator. A consumer is created for a device;
// its IOMMU driver may impose the hardware's PASID range through an ops callback (resolved
// through the device's own instance, as seed 000 asks of every allocation). Each consumer is
// its own ioasid_set, so lookups only see the consumer's PASIDs. Never merged; argument shapes
// follow the cover letter (its types are unverified, core §11).

import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import { err, ok, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import { INVALID_IOASID, IOMMU_FIRST_GLOBAL_PASID } from "./constants.js";
import { type IoasidAllocator, IoasidSet } from "./ioasid.js";
import type { CoreState } from "./state.js";

/** `struct iommu_pasid`: one PASID consumer. */
export class IommuPasidConsumer {
  readonly set: IoasidSet;
  /** PASIDs this consumer holds. */
  readonly ids = new Set<number>();
  exited = false;

  constructor(
    readonly name: string,
    /** The vendor range (inclusive). */
    readonly min: number,
    readonly max: number,
  ) {
    this.set = new IoasidSet(name);
  }

  toJSON(): Json {
    return {
      name: this.name,
      min: this.min,
      max: this.max,
      exited: this.exited,
      pasids: [...this.ids].sort((a, b) => a - b),
    };
  }
}

function live(c: IommuPasidConsumer, what: string): void {
  if (c.exited) throw new SimError(`${what}: PASID consumer ${c.name} has exited`);
}

/** `iommu_pasid_init(dev)`: a consumer limited to the driver's `pasid_range` (ENODEV: no IOMMU). */
export function iommuPasidInit(
  s: CoreState,
  dev: Device,
  name = dev.name,
): Result<IommuPasidConsumer> {
  if (!s.devHasIommu(dev)) return err("ENODEV");
  const range = s.devIommuOps(dev).pasidRange?.(dev) ?? {
    min: IOMMU_FIRST_GLOBAL_PASID,
    max: INVALID_IOASID - 1,
  };
  if (range.min > range.max) return err("EINVAL");
  return ok(new IommuPasidConsumer(name, range.min, range.max));
}

/** `iommu_pasid_exit(pasid)`: the consumer stops; its PASIDs return to the allocator. */
export function iommuPasidExit(ioasid: IoasidAllocator, c: IommuPasidConsumer): void {
  live(c, "iommu_pasid_exit");
  for (const id of [...c.ids].sort((a, b) => a - b)) ioasid.put(id);
  c.ids.clear();
  c.exited = true;
}

/**
 * `iommu_pasid_alloc(pasid, min, max, private, *ioasid)`: a PASID in [min, max] ∩ the vendor
 * range with `private` attached. EINVAL for an empty range, ENOSPC when none is free.
 */
export function iommuPasidAlloc(
  ioasid: IoasidAllocator,
  c: IommuPasidConsumer,
  min: number,
  max: number,
  priv: unknown,
): Result<number> {
  live(c, "iommu_pasid_alloc");
  const lo = Math.max(min, c.min);
  const hi = Math.min(max, c.max);
  if (lo > hi) return err("EINVAL");
  const id = ioasid.alloc(c.set, lo, hi, priv);
  if (id === INVALID_IOASID) return err("ENOSPC");
  c.ids.add(id);
  return ok(id);
}

/** `iommu_pasid_free(pasid, ioasid)`: freeing a PASID the consumer does not hold WARNs. */
export function iommuPasidFree(
  s: CoreState,
  ioasid: IoasidAllocator,
  c: IommuPasidConsumer,
  id: number,
): void {
  live(c, "iommu_pasid_free");
  if (s.warnOn(!c.ids.has(id), "iommu_pasid_free", `PASID ${id} is not held by ${c.name}`)) return;
  ioasid.put(id);
  c.ids.delete(id);
}

/**
 * `iommu_pasid_for_each(pasid, func, data)`: calls `fn(ioasid, private, data)` for each of the
 * consumer's PASIDs in ascending order; the first non-zero return stops the walk and is
 * returned.
 */
export function iommuPasidForEach<D>(
  ioasid: IoasidAllocator,
  c: IommuPasidConsumer,
  fn: (id: number, priv: unknown, data: D) => number,
  data: D,
): number {
  live(c, "iommu_pasid_for_each");
  for (const id of [...c.ids].sort((a, b) => a - b)) {
    const priv = ioasid.find(c.set, id);
    const r = fn(id, priv.ok ? priv.value : null, data);
    if (r !== 0) return r;
  }
  return 0;
}

/** `iommu_pasid_find(pasid, ioasid)`: the private data; ENOENT / EACCES from `ioasid_find`. */
export function iommuPasidFind(
  ioasid: IoasidAllocator,
  c: IommuPasidConsumer,
  id: number,
): Result<unknown> {
  live(c, "iommu_pasid_find");
  return ioasid.find(c.set, id);
}
