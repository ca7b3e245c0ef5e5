// A group's reserved regions (`iommu_get_group_resv_regions`, sysfs `reserved_regions`): the
// members' regions merged the way `iommu_insert_resv_region` does — sorted by start (then type),
// overlapping or adjacent regions of the same type fused into one.

import { type IommuResvRegion, resvTypeName } from "../bus/firmware.js";
import type { IommuGroup } from "./group.js";
import type { CoreState } from "./state.js";

interface Mutable {
  start: bigint;
  length: bigint;
  prot: number;
  type: IommuResvRegion["type"];
}

/** `iommu_insert_resv_region`: inserts a copy of `r` and merges same-type neighbours. */
function insertResvRegion(r: IommuResvRegion, regions: Mutable[]): Mutable[] {
  const nr: Mutable = { start: r.start, length: r.length, prot: r.prot, type: r.type };
  let at = regions.findIndex(
    (it) => nr.start < it.start || (nr.start === it.start && nr.type <= it.type),
  );
  if (at < 0) at = regions.length;
  const list = [...regions.slice(0, at), nr, ...regions.slice(at)];
  const stack: Mutable[] = [];
  for (const it of list) {
    if (it.type !== r.type) {
      stack.push(it);
      continue;
    }
    let top: Mutable | undefined;
    for (let i = stack.length - 1; i >= 0; i--) {
      if (stack[i]!.type === it.type) {
        top = stack[i];
        break;
      }
    }
    if (top === undefined) {
      stack.push(it);
      continue;
    }
    const topEnd = top.start + top.length - 1n;
    const itEnd = it.start + it.length - 1n;
    if (it.start > topEnd + 1n) stack.push(it);
    else top.length = (topEnd > itEnd ? topEnd : itEnd) - top.start + 1n;
  }
  return stack;
}

/** `iommu_get_group_resv_regions`. */
export function iommuGetGroupResvRegions(s: CoreState, group: IommuGroup): IommuResvRegion[] {
  let out: Mutable[] = [];
  for (const gdev of group.devices) {
    // Non-API groups still expose reserved_regions in sysfs: stop at a device without ops.
    if (!s.devHasIommu(gdev.dev)) break;
    for (const r of s.devIommuOps(gdev.dev).getResvRegions?.(gdev.dev) ?? []) {
      out = insertResvRegion(r, out);
    }
  }
  return out.map((r) => ({ ...r }));
}

/** `iommu_group_show_resv_regions`: the sysfs file's lines. */
export function iommuGroupShowResvRegions(s: CoreState, group: IommuGroup): string {
  return iommuGetGroupResvRegions(s, group)
    .map(
      (r) =>
        `0x${r.start.toString(16).padStart(16, "0")} 0x${(r.start + r.length - 1n).toString(16).padStart(16, "0")} ${resvTypeName(r.type)}\n`,
    )
    .join("");
}
