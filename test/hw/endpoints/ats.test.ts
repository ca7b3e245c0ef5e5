// ATS end to end: the device's ATC is filled by Translation Requests, Translated requests pass
// the IOMMU without an IOTLB lookup, stale entries stay in use until the IOMMU's ATS.INVAL
// reaches the device, which then completes the invalidation with its ITag. Plus the ATC's own
// rules (PASID/global invalidation semantics, LRU capacity) against a reference model.

import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { Atc, type AtcEntry } from "../../../src/hw/endpoints/atc.js";
import { TestDevice } from "../../../src/hw/endpoints/test-device.js";
import { PCI_ACS_CTRL, PCI_ACS_TB } from "../../../src/hw/pci/regs.js";
import { AtsCompletion, type InvalidationRequest } from "../../../src/hw/pci/translation-agent.js";
import {
  cmd,
  dcPaging,
  dcPasid,
  did,
  enableAts,
  enablePasid,
  faults,
  type Machine,
  machine,
  map,
  page,
  pageTable,
  processContext,
  R,
  submit,
} from "./fixture.js";

const IOVA = 0x4000_0000n;
const DATA = Uint8Array.of(9, 8, 7, 6);

function atsDevice(o: { atcEntries?: number; acs?: boolean } = {}) {
  const m = machine((h) => {
    h.addRootPort({ acs: o.acs ?? false }).addEndpoint({
      name: "t0",
      ats: { globalInvalidate: true },
      pasid: true,
    });
  });
  const dev = new TestDevice(m.bridge, m.host.function("t0"), {
    ...(o.atcEntries ? { atcEntries: o.atcEntries } : {}),
  });
  enableAts(dev.fn);
  return { m, dev, id: did(m, dev.fn) };
}

function stats(m: Machine) {
  const s = m.r.iommu.ioatc.stats;
  return { hits: s.iotlbHits, misses: s.iotlbMisses };
}

describe("ATS through the device's ATC", () => {
  it("a Translation Request fills the ATC; Translated requests then bypass the IOTLB", () => {
    const { m, dev, id } = atsDevice();
    const pt = pageTable(m);
    const frame = page(m);
    map(pt, IOVA, frame);
    dcPaging(m, id, pt, { ats: true });
    expect(dev.write(IOVA + 0x10n, DATA, { ats: true }).ok).toBe(true);
    expect(m.r.mem.readBytes(frame + 0x10n, 4)).toEqual(DATA);
    expect(dev.atc!.entries().map((e) => e.toJSON())).toEqual([
      {
        pasid: null,
        priv: false,
        global: false,
        iova: `0x${IOVA.toString(16)}`,
        pa: `0x${frame.toString(16)}`,
        size: 4096,
        r: true,
        w: true,
        x: false,
        u: false,
      },
    ]);
    const before = stats(m);
    const hitsBefore = dev.atc!.hits;
    expect(dev.read(IOVA + 0x10n, 4, { ats: true }).data).toEqual(DATA);
    expect(dev.atc!.hits).toBe(hitsBefore + 1);
    expect(stats(m)).toEqual(before);
  });

  it("a stale entry is used until ATS.INVAL reaches the device; the fence then completes", () => {
    const { m, dev, id } = atsDevice();
    const pt = pageTable(m);
    const [oldFrame, newFrame] = [page(m), page(m)];
    map(pt, IOVA, oldFrame);
    dcPaging(m, id, pt, { ats: true });
    expect(dev.write(IOVA, Uint8Array.of(5), { ats: true }).ok).toBe(true);
    // Software remaps the page and flushes the IOTLB only.
    pt.unmap(IOVA, 4096n);
    map(pt, IOVA, newFrame);
    submit(m.r, m.q, cmd.vma(), cmd.fence());
    expect(dev.write(IOVA, DATA, { ats: true }).ok).toBe(true);
    expect(m.r.mem.readBytes(oldFrame, 4)).toEqual(DATA); // the hardware truth: stale
    const rec = m.r.ctx.trace.record();
    submit(m.r, m.q, cmd.ats_inval(id & 0xffff, { addrPage: Number(IOVA >> 12n) }), cmd.fence());
    const events = rec.stop();
    const sent = events.find((e) => e.event === "riscv_iommu:ats_inval")!;
    const got = events.find((e) => e.event === "device:atc_inval")!;
    expect(got.fields).toMatchObject({ rid: id, pasid: null, iova: IOVA, dropped: 1 });
    expect((got.fields as { itag: number }).itag).toBe((sent.fields as { itag: number }).itag);
    // The Invalidation Completion let IOFENCE.C complete: the queue is empty, no timeout.
    expect(m.r.iommu.read32(R.cqh)).toBe(m.r.iommu.read32(R.cqt));
    expect(m.r.iommu.read32(R.cqcsr) & (1 << 9)).toBe(0);
    expect(dev.atc!.size).toBe(0);
    expect(dev.write(IOVA, Uint8Array.of(1, 1, 1, 1), { ats: true }).ok).toBe(true);
    expect(m.r.mem.readBytes(newFrame, 4)).toEqual(Uint8Array.of(1, 1, 1, 1));
  });

  it("an unmapped page is a page fault the device sees in the completion, with no fault record", () => {
    const { m, dev, id } = atsDevice();
    dcPaging(m, id, pageTable(m), { ats: true });
    const r = dev.read(IOVA, 4, { ats: true });
    expect(r).toMatchObject({ ok: false, result: "page-fault: ats success r=0 w=0" });
    expect(r.faultAddress).toBe(IOVA);
    expect(faults(m)).toEqual([]);
    expect(dev.atc!.size).toBe(0);
  });

  it("a read-only page grants R only: a write asks again and page-faults", () => {
    const { m, dev, id } = atsDevice();
    const pt = pageTable(m);
    map(pt, IOVA, page(m), 0x02 | 0x40 | 0x10);
    dcPaging(m, id, pt, { ats: true });
    expect(dev.read(IOVA, 4, { ats: true }).ok).toBe(true);
    expect(dev.write(IOVA, DATA, { ats: true }).result).toBe("page-fault: ats success r=1 w=0");
  });

  it("ATS disabled in the device context: the Translation Request gets UR and is logged", () => {
    const { m, dev, id } = atsDevice();
    dcPaging(m, id, pageTable(m));
    expect(dev.read(IOVA, 4, { ats: true }).result).toBe("abort: ats UR");
    expect(faults(m).map((f) => [f.cause, f.ttyp])).toEqual([[260, 8]]);
  });

  it("ACS Translation Blocking stops the Translated request that follows", () => {
    const { m, dev, id } = atsDevice({ acs: true });
    const rp = m.host.functions().find((f) => f.kind === "root-port")!;
    rp.config.write(rp.caps.acs + PCI_ACS_CTRL, 2, PCI_ACS_TB);
    const pt = pageTable(m);
    map(pt, IOVA, page(m));
    dcPaging(m, id, pt, { ats: true });
    expect(dev.read(IOVA, 4, { ats: true }).result).toBe("abort: UR acs-translation-blocking");
  });

  it("per-PASID entries; an invalidation without a PASID drops every PASID's entries in its range only", () => {
    const { m, dev, id } = atsDevice();
    enablePasid(dev.fn);
    const pdt = dcPasid(m, id, { ats: true });
    for (const pasid of [1, 2]) {
      const pt = pageTable(m);
      map(pt, IOVA, page(m));
      processContext(pdt, pasid, pt);
      expect(dev.read(IOVA, 4, { ats: true, pasid }).ok).toBe(true);
    }
    expect(
      dev
        .atc!.entries()
        .map((e) => e.pasid)
        .sort(),
    ).toEqual([1, 2]);
    submit(m.r, m.q, cmd.ats_inval(id, { pid: 2, addrPage: Number(IOVA >> 12n) }), cmd.fence());
    expect(dev.atc!.entries().map((e) => e.pasid)).toEqual([1]);
    // Outside its range an invalidation without a PASID leaves PASID entries alone…
    submit(m.r, m.q, cmd.ats_inval(id, { addrPage: 0x7777 }), cmd.fence());
    expect(dev.atc!.entries().map((e) => e.pasid)).toEqual([1]);
    // …and inside it drops them, whatever their PASID.
    submit(m.r, m.q, cmd.ats_inval(id, { addrPage: Number(IOVA >> 12n) }), cmd.fence());
    expect(dev.atc!.size).toBe(0);
  });

  it("a function without ATS sends no Invalidation Completion: the fence waits for the timeout", () => {
    const m = machine((h) => {
      h.addRootPort({ acs: false }).addEndpoint({ name: "t0" });
    });
    const dev = new TestDevice(m.bridge, m.host.function("t0"));
    const id = did(m, dev.fn);
    // EN_ATS set by mistake: the IOMMU would accept a completion if one came.
    dcPaging(m, id, pageTable(m), { ats: true });
    const rec = m.r.ctx.trace.record();
    submit(m.r, m.q, cmd.ats_inval(id, { addrPage: Number(IOVA >> 12n) }), cmd.fence());
    expect(rec.stop().some((e) => e.event === "device:atc_inval")).toBe(false);
    expect(m.r.iommu.read32(R.cqh)).not.toBe(m.r.iommu.read32(R.cqt));
    expect(faults(m)).toEqual([]);
  });

  it("clearing ATS Enable empties the ATC", () => {
    const { m, dev, id } = atsDevice();
    const pt = pageTable(m);
    map(pt, IOVA, page(m));
    dcPaging(m, id, pt, { ats: true });
    dev.read(IOVA, 4, { ats: true });
    expect(dev.atc!.size).toBe(1);
    enableAts(dev.fn, false);
    expect(dev.atc!.size).toBe(0);
  });

  it("the least recently used entry is replaced when the ATC is full", () => {
    const { m, dev, id } = atsDevice({ atcEntries: 2 });
    const pt = pageTable(m);
    for (let i = 0n; i < 3n; i++) map(pt, IOVA + i * 4096n, page(m));
    dcPaging(m, id, pt, { ats: true });
    dev.read(IOVA, 4, { ats: true });
    dev.read(IOVA + 4096n, 4, { ats: true });
    dev.read(IOVA, 4, { ats: true }); // page 0 is now the most recent
    dev.read(IOVA + 8192n, 4, { ats: true });
    expect(dev.atc!.evictions).toBe(1);
    expect(dev.atc!.entries().map((e) => e.vpn - Number(IOVA >> 12n))).toEqual([2, 0]);
  });
});

// ---- the ATC against a reference model ----

interface ModelEntry {
  pasid: number | null;
  global: boolean;
  vpn: number;
  pages: number;
}

function completion(ppn: number, log2Pages: number, global: boolean): AtsCompletion {
  const c = new AtsCompletion();
  c.status = "success";
  c.ppn = ppn;
  c.sizeShift = 12 + log2Pages;
  c.r = c.w = true;
  c.global = global;
  return c;
}

/** PCIe Base 6.2 §10.3.8, written out plainly. */
function modelDrops(e: ModelEntry, msg: InvalidationRequest, giSupported: boolean): boolean {
  let first = msg.page;
  let pages = 1;
  if (msg.s) {
    let x = 0;
    let p = msg.page;
    while (p % 2 === 1) {
      p = Math.floor(p / 2);
      x++;
    }
    pages = 2 ** (x + 1);
    first = msg.page - (msg.page % pages);
  }
  const overlaps = e.vpn < first + pages && first < e.vpn + e.pages;
  if (!msg.pasidValid) return overlaps;
  if (e.pasid === null) return false;
  if (!overlaps) return false;
  return (msg.global && giSupported) || e.global || e.pasid === msg.pasid;
}

describe("ATC invalidation rules", () => {
  test.prop([
    fc.array(
      fc.record({
        pasid: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }),
        global: fc.boolean(),
        slot: fc.integer({ min: 0, max: 15 }),
        log2Pages: fc.integer({ min: 0, max: 2 }),
      }),
      { maxLength: 12 },
    ),
    fc.record({
      pasid: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }),
      global: fc.boolean(),
      s: fc.boolean(),
      page: fc.integer({ min: 0, max: 63 }),
    }),
    fc.boolean(),
  ])("drop exactly what §10.3.8 says", (fills, inv, giSupported) => {
    const atc = new Atc(64);
    const model: ModelEntry[] = [];
    for (const f of fills) {
      const vpn = f.slot * 4;
      const pv = f.pasid !== null;
      // Overlapping fills of the same requester replace each other (one entry per range).
      const pages = 2 ** f.log2Pages;
      const base = vpn - (vpn % pages);
      for (let i = model.length - 1; i >= 0; i--) {
        const e = model[i]!;
        if (e.pasid === f.pasid && e.vpn < base + pages && base < e.vpn + e.pages)
          model.splice(i, 1);
      }
      atc.fill(pv, f.pasid ?? 0, false, vpn, completion(1000 + vpn, f.log2Pages, f.global));
      model.push({ pasid: f.pasid, global: pv && f.global, vpn: base, pages });
    }
    const msg: InvalidationRequest = {
      deviceId: 1,
      pasidValid: inv.pasid !== null,
      pasid: inv.pasid ?? 0,
      global: inv.global,
      s: inv.s,
      page: inv.page,
      itag: 0,
    };
    const kept = model.filter((e) => !modelDrops(e, msg, giSupported));
    const dropped = atc.invalidate(msg, giSupported);
    expect(dropped).toBe(model.length - kept.length);
    const key = (pasid: number | null, vpn: number) => `${pasid}:${vpn}`;
    expect(
      atc
        .entries()
        .map((e) => key(e.pasidValid ? e.pasid : null, e.vpn))
        .sort(),
    ).toEqual(kept.map((e) => key(e.pasid, e.vpn)).sort());
    // Lookups find an entry holding the page: for each survivor's last page (its own, or a
    // global one), and never one whose range ends before the page asked for.
    const holds = (x: AtcEntry | null, page: number) =>
      x !== null && x.vpn <= page && page < x.vpn + 2 ** x.log2Pages;
    for (const e of kept) {
      const pv = e.pasid !== null;
      const last = e.vpn + e.pages - 1;
      expect(holds(atc.lookup(pv, e.pasid ?? 0, false, last), last)).toBe(true);
      const next = atc.lookup(pv, e.pasid ?? 0, false, last + 1);
      if (next !== null) expect(holds(next, last + 1)).toBe(true);
    }
  });

  it("a global entry serves every PASID, an entry without PASID only requests without one", () => {
    const atc = new Atc(4);
    atc.fill(true, 1, false, 10, completion(500, 0, true));
    atc.fill(false, 0, false, 20, completion(600, 0, false));
    expect(atc.lookup(true, 9, false, 10)?.ppn).toBe(500);
    expect(atc.lookup(false, 0, false, 10)).toBeNull();
    expect(atc.lookup(true, 1, false, 20)).toBeNull();
    expect(atc.lookup(true, 1, true, 10)).toBeNull(); // privileged is a different requester
    expect(atc.lookup(false, 0, false, 20)?.ppn).toBe(600);
  });

  it("does not cache completions that grant nothing", () => {
    const atc = new Atc(4);
    const c = completion(1, 0, false);
    c.r = c.w = false;
    expect(atc.fill(false, 0, false, 1, c)).toBeNull();
    expect(atc.size).toBe(0);
  });
});
