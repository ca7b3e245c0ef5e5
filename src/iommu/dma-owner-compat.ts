// Seed 004 ("[PATCH v3 01/18] iommu: Add device dma ownership set/release interfaces", Dec 2021;
// core §4.4): the pre-merge DMA-ownership design, as a thin layer over the merged (v5.19+)
// calls. A group has one owner type, a cookie and a reference count; "none" is refcount 0 (the
// thread's conclusion: NONE is just a parking state). Setting the same type and cookie counts
// up; any other type or cookie is refused with EBUSY. The first PRIVATE_DOMAIN_USER claim
// detaches the default domain (all DMA blocked until user space attaches a domain of its own)
// and the last USER release re-attaches it.
//
// Mapping onto the modern calls, made only on the 0→1 and 1→0 transitions (so the modern
// owner_cnt counts a compat owner once):
// - DMA_OWNER_DMA_API            → iommu_device_use_default_domain / _unuse_
// - DMA_OWNER_PRIVATE_DOMAIN     → the same (a kernel driver that will attach a private domain to
//                                  its singleton group; the default domain stays until it does)
// - DMA_OWNER_PRIVATE_DOMAIN_USER → iommu_device_claim_dma_owner(cookie) / _release_dma_owner
// A modern EPERM (the group is used by modern callers) reads as the thread's EBUSY.

import type { Json } from "../base/json.js";
import { err, OK, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import { type DmaOwnerCookie, type IommuGroup, ownerLabel } from "./group.js";
import {
  iommuDeviceClaimDmaOwner,
  iommuDeviceReleaseDmaOwner,
  iommuDeviceUnuseDefaultDomain,
  iommuDeviceUseDefaultDomain,
} from "./ownership.js";
import type { CoreState } from "./state.js";

/** `enum iommu_dma_owner` of the v2/v3 series. */
export type IommuDmaOwner =
  | "DMA_OWNER_DMA_API"
  | "DMA_OWNER_PRIVATE_DOMAIN"
  | "DMA_OWNER_PRIVATE_DOMAIN_USER";

/** A group's compat owner state; `DMA_OWNER_NONE` is refcount 0. */
export interface DmaOwnerCompatState {
  readonly owner: IommuDmaOwner | "DMA_OWNER_NONE";
  readonly cookie: DmaOwnerCookie | null;
  readonly refcount: number;
}

interface Owned {
  owner: IommuDmaOwner;
  cookie: DmaOwnerCookie | null;
  refcount: number;
}

const NONE: DmaOwnerCompatState = { owner: "DMA_OWNER_NONE", cookie: null, refcount: 0 };

export class DmaOwnerCompat {
  readonly #owned = new Map<IommuGroup, Owned>();

  constructor(private readonly s: CoreState) {}

  /**
   * `iommu_device_set_dma_owner(dev, owner, owner_cookie)`. A device without a group needs no
   * ownership (0). USER needs a cookie (EINVAL, WARN).
   */
  deviceSetDmaOwner(dev: Device, owner: IommuDmaOwner, cookie: DmaOwnerCookie | null): Result {
    const s = this.s;
    const group = s.groupOf(dev);
    if (group === null) return OK;
    if (
      s.warnOn(
        owner === "DMA_OWNER_PRIVATE_DOMAIN_USER" && cookie === null,
        "iommu_device_set_dma_owner",
        "user owner without a cookie",
      )
    ) {
      return err("EINVAL");
    }
    const cur = this.#owned.get(group);
    if (cur !== undefined) {
      if (cur.owner !== owner || cur.cookie !== cookie) return err("EBUSY");
      cur.refcount++;
      return OK;
    }
    const r =
      owner === "DMA_OWNER_PRIVATE_DOMAIN_USER"
        ? iommuDeviceClaimDmaOwner(s, dev, cookie)
        : iommuDeviceUseDefaultDomain(s, dev);
    if (!r.ok) return r.errno === "EPERM" ? err("EBUSY") : r;
    this.#owned.set(group, { owner, cookie, refcount: 1 });
    return OK;
  }

  /**
   * `iommu_device_release_dma_owner(dev, owner)` of the series: WARNs and does nothing when the
   * group is not owned with that type; the last reference returns it to DMA_OWNER_NONE.
   */
  deviceReleaseDmaOwner(dev: Device, owner: IommuDmaOwner): void {
    const s = this.s;
    const group = s.groupOf(dev);
    if (group === null) return;
    const cur = this.#owned.get(group);
    if (
      s.warnOn(
        cur === undefined || cur.owner !== owner,
        "iommu_device_release_dma_owner",
        `group ${group.id} is not owned as ${owner}`,
      )
    ) {
      return;
    }
    if (--cur!.refcount > 0) return;
    this.#owned.delete(group);
    if (owner === "DMA_OWNER_PRIVATE_DOMAIN_USER") iommuDeviceReleaseDmaOwner(s, dev);
    else iommuDeviceUnuseDefaultDomain(s, dev);
  }

  /** The group's compat owner state (`group->dma_owner`, `owner_cookie`, `owner_cnt`). */
  groupState(group: IommuGroup): DmaOwnerCompatState {
    const cur = this.#owned.get(group);
    return cur ? { owner: cur.owner, cookie: cur.cookie, refcount: cur.refcount } : NONE;
  }

  /** Forgets groups that were released (their devices all left). */
  prune(): void {
    for (const g of [...this.#owned.keys()]) if (g.released) this.#owned.delete(g);
  }

  toJSON(): Json {
    this.prune();
    return [...this.#owned]
      .sort((a, b) => a[0].id - b[0].id)
      .map(([g, o]) => ({
        group: g.id,
        owner: o.owner,
        cookie: ownerLabel(o.cookie),
        refcount: o.refcount,
      }));
  }
}
