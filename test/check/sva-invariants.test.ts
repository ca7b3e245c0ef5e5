// The SVA and IOPF invariants of checkCore (§1.10 #6–#8, PASID lifetime, fault params): each
// corruption of a healthy state is reported under its invariant.

import { describe, expect, it } from "vitest";
import { OK, unwrap } from "../../src/base/result.js";
import { checkCore } from "../../src/check/invariants.js";
import { IommuAttachHandle, type IopfGroup } from "../../src/iommu/domain.js";
import { IOMMU_FAULT_PERM_READ } from "../../src/iommu/fault.js";
import type { IopfGroupRecord } from "../../src/iommu/iopf-queue.js";
import { type IommuMmData, iommuMmOf } from "../../src/iommu/sva.js";
import { svaBed } from "../iommu/sva-setup.js";

/** Two devices sharing one mm's SVA domain, and a device with a group awaiting its answer. */
function healthy() {
  const b = svaBed();
  const a = b.pdev("a");
  const c = b.pdev("c");
  const k = b.pdev("k");
  const p = b.spawn();
  const ba = unwrap(b.core.svaBindDevice(a, p.mm!));
  const bc = unwrap(b.core.svaBindDevice(c, p.mm!));
  const held: IopfGroup[] = [];
  const keeper = unwrap(b.core.pagingDomainAlloc(k));
  keeper.iopfHandler = (g) => {
    held.push(g);
    return OK;
  };
  expect(b.core.attachDevicePasid(keeper, k, 900, new IommuAttachHandle("keeper"))).toEqual(OK);
  expect(
    b.mock.triggerIopf(k, { pasid: 900, grpid: 1, perm: IOMMU_FAULT_PERM_READ, addr: 0n }),
  ).toEqual(OK);
  const data = iommuMmOf(p.mm!) as IommuMmData;
  const check = () => checkCore(b.core, { drivers: [b.mock] }).map((v) => v.invariant);
  return { ...b, a, c, k, p, ba, bc, held, data, check, group: held[0] as IopfGroupRecord };
}

describe("checkCore: SVA and IOPF", () => {
  it("finds nothing wrong in a healthy state", () => {
    expect(healthy().check()).toEqual([]);
  });

  it("§1.10.6: an SVA domain with users must be on its mm's list, and only such domains", () => {
    const h = healthy();
    const dom = h.ba.domain!;
    h.data.svaDomains.splice(0, 1);
    expect(h.check()).toEqual(["1.10.6"]);
    h.data.svaDomains.push(dom);
    dom.users = 0;
    expect(h.check()).toContain("1.10.6");
  });

  it("§1.10.7: bonds count their binds, sit at their mm's PASID, and domains count their slots", () => {
    const h = healthy();
    h.ba.users = 0;
    expect(h.check()).toEqual(["1.10.7"]);
    h.ba.users = 1;
    h.ba.domain!.users = 3;
    expect(h.check()).toEqual(["1.10.7"]);
    h.ba.domain!.users = 2;
    h.ba.dev = h.k;
    expect(h.check()).toEqual(["1.10.7"]);
  });

  it("an mm's PASID is allocated, its own, and not outliving the mm", () => {
    const h = healthy();
    h.core.s.globalPasidIda.free(h.data.pasid);
    expect(h.check()).toEqual(["pasid-lifetime"]);
    h.core.s.globalPasidIda.allocExact(h.data.pasid);
    const q = h.spawn("q");
    unwrap(h.core.svaBindDevice(h.k, q.mm!));
    (q.mm!.iommuMm as { pasid: number }).pasid = h.data.pasid;
    expect(h.check()).toContain("pasid-lifetime");
  });

  it("§1.10.8: a pending group owes exactly one response and sits on its device's pending list", () => {
    const h = healthy();
    h.group.responses = 1;
    expect(h.check()).toEqual(["1.10.8"]);
    h.group.responses = 0;
    h.group.faultParam.faults.splice(0, 1);
    expect(h.check()).toEqual(["1.10.8"]);
    h.group.faultParam.faults.push(h.group);
    h.core.iopfGroupResponse(h.group, 0);
    expect(h.check()).toEqual([]);
    h.group.responses = 2;
    expect(h.check()).toEqual(["1.10.8"]);
  });

  it("a device's fault param must be on its queue", () => {
    const h = healthy();
    const q = h.mock.iopfQueue!;
    q.devices.splice(0, q.devices.length);
    expect(new Set(h.check())).toEqual(new Set(["iopf-param"]));
  });
});
