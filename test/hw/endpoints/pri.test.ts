// A function's Page Request Interface against the RISC-V IOMMU's page-request queue: enable and
// Response Failure gating, the outstanding-request allocation, PRG index allocation, unexpected
// responses, and Stop Markers.

import { describe, expect, it } from "vitest";
import type { PrgOutcome } from "../../../src/hw/endpoints/pri.js";
import { TestDevice } from "../../../src/hw/endpoints/test-device.js";
import { PCI_PRI_STATUS, PCI_PRI_STATUS_UPRGI } from "../../../src/hw/pci/regs.js";
import {
  cmd,
  dcPasid,
  did,
  enablePasid,
  enablePri,
  machine,
  pageRequests,
  submit,
} from "./fixture.js";

function rig() {
  const m = machine((h) => {
    h.addRootPort().addEndpoint({ name: "t0", ats: true, pri: { capacity: 8 }, pasid: true });
  });
  const dev = new TestDevice(m.bridge, m.host.function("t0"));
  enablePasid(dev.fn);
  const id = did(m, dev.fn);
  dcPasid(m, id, { ats: true, pri: true });
  const outcomes: Array<[number, PrgOutcome]> = [];
  const ask = (page: number, pasid = 1) =>
    dev.pri!.request({
      pasidValid: true,
      pasid,
      privileged: false,
      page,
      read: true,
      write: false,
      execute: false,
      done: (o) => outcomes.push([page, o]),
    });
  const respond = (prgi: number, code: number) =>
    submit(m.r, m.q, cmd.ats_prgr(id, prgi, code, 1), cmd.fence());
  return { m, dev, id, outcomes, ask, respond };
}

describe("the Page Request Interface", () => {
  it("sends nothing while PRI is disabled", () => {
    const { m, ask } = rig();
    expect(ask(0x100)).toBe("unavailable");
    expect(pageRequests(m)).toEqual([]);
  });

  it("keeps to the outstanding allocation: extra requests wait for a response", () => {
    const { m, dev, outcomes, ask, respond } = rig();
    enablePri(dev.fn, 1);
    expect(ask(0x100)).toBe("sent");
    expect(ask(0x200)).toBe("queued");
    expect(pageRequests(m).map((p) => [p.prgi, p.addr])).toEqual([[0, 0x100_000n]]);
    respond(0, 0);
    expect(outcomes).toEqual([[0x100, "success"]]);
    // The waiting request went out with the freed index.
    expect(pageRequests(m).map((p) => [p.prgi, p.addr])).toEqual([
      [0, 0x100_000n],
      [0, 0x200_000n],
    ]);
    expect(dev.fn.priOutstanding).toBe(1);
  });

  it("gives outstanding groups distinct indices, lowest free first", () => {
    const { m, dev, ask, respond } = rig();
    enablePri(dev.fn, 4);
    for (const p of [1, 2, 3]) ask(p);
    respond(1, 1);
    ask(4);
    expect(pageRequests(m).map((p) => p.prgi)).toEqual([0, 1, 2, 1]);
  });

  it("a response for a group that is not outstanding sets Unexpected PRG Index", () => {
    const { dev, outcomes, respond } = rig();
    enablePri(dev.fn);
    respond(7, 0);
    const sta = dev.fn.config.read(dev.fn.caps.pri + PCI_PRI_STATUS, 2);
    expect(sta & PCI_PRI_STATUS_UPRGI).toBe(PCI_PRI_STATUS_UPRGI);
    expect(outcomes).toEqual([]);
  });

  it("a Response Failure fails every outstanding group; later responses are ignored", () => {
    const { dev, outcomes, ask, respond } = rig();
    enablePri(dev.fn, 2);
    for (const p of [0x10, 0x20, 0x30]) ask(p); // 0x30 waits for the allocation
    respond(1, 0xf);
    expect(outcomes).toEqual([
      [0x20, "failure"],
      [0x10, "failure"],
      [0x30, "failure"],
    ]);
    expect(dev.pri!.usable).toBe(false);
    respond(0, 0); // the function ignores it: group 0 is only retired
    expect(outcomes).toHaveLength(3);
    expect(dev.pri!.outstanding).toBe(0);
  });

  it("no Stop Marker once a Response Failure has disabled PRI", () => {
    const { m, dev, ask, respond } = rig();
    enablePri(dev.fn);
    ask(0x10, 1);
    ask(0x20, 2);
    respond(1, 0xf);
    const before = pageRequests(m).length;
    expect(dev.pri!.stopPasid(1)).toBe(false);
    expect(pageRequests(m)).toHaveLength(before);
    expect(dev.pri!.stopMarkers).toBe(0);
  });

  it("a Stop Marker follows only when the PASID has requests outstanding", () => {
    const { m, dev, outcomes, ask, respond } = rig();
    enablePri(dev.fn);
    expect(dev.pri!.stopPasid(1)).toBe(false);
    ask(0x10, 1);
    ask(0x20, 2);
    expect(dev.pri!.stopPasid(1)).toBe(true);
    const recs = pageRequests(m);
    expect(recs.at(-1)).toMatchObject({ pid: 1, r: false, w: false, l: true });
    respond(0, 0); // the abandoned group is retired, its waiter not called
    expect(outcomes).toEqual([]);
    expect(dev.pri!.outstanding).toBe(1);
  });
});
