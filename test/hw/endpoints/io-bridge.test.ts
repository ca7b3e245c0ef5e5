// The IO bridge itself (src/hw/pci/io-bridge.ts; tested here, beside the device models it
// carries): attaching models, connecting their ports to a translation agent attached later,
// detaching, DMA aliases, the bigint convenience API, CPU MMIO misuse and the views.

import { describe, expect, it } from "vitest";
import { TestDevice } from "../../../src/hw/endpoints/test-device.js";
import { PciHost } from "../../../src/hw/pci/host.js";
import { IoBridge } from "../../../src/hw/pci/io-bridge.js";
import { pciDevfn } from "../../../src/hw/pci/regs.js";
import {
  bareMode,
  cmd,
  dcPaging,
  did,
  enableAts,
  faults,
  machine,
  map,
  page,
  pageTable,
  RAM_BASE,
  submit,
} from "./fixture.js";

describe("attaching device models", () => {
  it("is refused before enumeration, on bridges, and twice on one function", () => {
    const m = machine((h) => {
      h.addRootPort({ name: "rp" }).addEndpoint({ name: "t0" });
    });
    const dev = new TestDevice(m.bridge, m.host.function("t0"));
    expect(() => new TestDevice(m.bridge, m.host.function("t0"))).toThrow(
      /already has the device model t0/,
    );
    expect(() => new TestDevice(m.bridge, m.host.function("rp"))).toThrow(/is a bridge/);
    const early = new PciHost(m.r.ctx, { name: "pci1", segment: 1 });
    early.addRootPort().addEndpoint({ name: "e0" });
    expect(() => new TestDevice(new IoBridge(early, m.r.mem), early.function("e0"))).toThrow(
      /after pci1 is enumerated/,
    );
    expect(() => m.bridge.attach(early.function("e0"), dev)).toThrow(/not a function of pci0/);
  });

  it("connects ports to a translation agent attached later, so invalidations reach the ATC", () => {
    const m = machine(
      (h) => {
        h.addRootPort().addEndpoint({ name: "t0", ats: true });
      },
      { iommu: false },
    );
    const dev = new TestDevice(m.bridge, m.host.function("t0"));
    m.host.setTranslationAgent(m.r.iommu);
    enableAts(dev.fn);
    const pt = pageTable(m);
    map(pt, 0x4000_0000n, page(m));
    const id = did(m, dev.fn);
    dcPaging(m, id, pt, { ats: true });
    expect(dev.read(0x4000_0000n, 4, { ats: true }).ok).toBe(true);
    expect(dev.atc!.size).toBe(1);
    submit(m.r, m.q, cmd.ats_inval(id, { addrPage: 0x4_0000 }), cmd.fence());
    expect(dev.atc!.size).toBe(0);
    expect(m.bridge.toJSON()).toEqual({
      host: "pci0",
      translationAgent: true,
      models: [{ function: "t0", model: "t0", port: "0000:01:00.0" }],
    });
  });

  it("detaching unplugs the model and its port; another model may take the function", () => {
    const m = machine((h) => {
      h.addRootPort().addEndpoint({ name: "t0", bars: [0x1000] });
    });
    const dev = new TestDevice(m.bridge, m.host.function("t0"));
    dev.detach();
    expect(dev.attached).toBe(false);
    expect(m.bridge.model(dev.fn)).toBeUndefined();
    expect(m.bridge.mmioRead(dev.fn.barAddress(0), 4)).toBe(0xffff_ffffn);
    const again = new TestDevice(m.bridge, dev.fn, { name: "again" });
    expect(m.bridge.model(dev.fn)).toBe(again);
  });
});

describe("requests", () => {
  it("a DMA alias tags the request with another requester ID", () => {
    const m = machine((h) => {
      h.addRcEndpoint({ name: "t0", dmaAliases: [pciDevfn(5, 0)] });
    });
    const dev = new TestDevice(m.bridge, m.host.function("t0"));
    const alias = m.bridge.requesterId(dev.fn, pciDevfn(5, 0));
    expect(alias).not.toBe(did(m, dev.fn));
    const pt = pageTable(m);
    const frame = page(m);
    map(pt, 0x4000_0000n, frame);
    dcPaging(m, alias, pt);
    expect(dev.read(0x4000_0000n, 4).result).toBe("CA translation-fault ddt_entry_not_valid");
    expect(dev.write(0x4000_0000n, Uint8Array.of(1), { sourceDevfn: pciDevfn(5, 0) }).ok).toBe(
      true,
    );
    expect(m.r.mem.read8(frame)).toBe(1);
    expect(faults(m).map((f) => f.did)).toEqual([did(m, dev.fn)]);
  });

  it("the bigint API reads and writes, with a status that has a JSON view", () => {
    const m = machine((h) => {
      h.addRootPort().addEndpoint({ name: "t0" });
    });
    bareMode(m);
    const fn = m.host.function("t0");
    const st = m.bridge.write(fn, {}, RAM_BASE + 0xffen, Uint8Array.of(1, 2, 3, 4));
    expect(st.toJSON()).toEqual({ ok: true, done: 4 });
    expect(m.bridge.read(fn, {}, RAM_BASE + 0xffen, 4).data).toEqual(Uint8Array.of(1, 2, 3, 4));
    const bad = m.bridge.read(fn, {}, 0x2_0000_0000n, 4).status;
    expect(bad.toJSON()).toEqual({
      ok: false,
      done: 0,
      completion: "UR",
      reason: "not-memory",
      fault: null,
      address: "0x200000000",
    });
    expect(() => m.bridge.read(fn, { pasid: 1 << 20 }, 0n, 1)).toThrow(/PASID/);
    expect(() => m.bridge.read(fn, {}, 1n << 64n, 1)).toThrow(/64-bit/);
  });

  it("CPU MMIO: ENQCMD needs 64 aligned bytes and a 20-bit PASID; BAR overruns are misuse", () => {
    const m = machine((h) => {
      h.addRootPort().addEndpoint({ name: "t0", bars: [0x1000] });
    });
    const dev = new TestDevice(m.bridge, m.host.function("t0"));
    const bar = dev.fn.barAddress(0);
    expect(() => m.bridge.mmioEnqueue(bar, new Uint8Array(32), 1)).toThrow(/64 bytes/);
    expect(() => m.bridge.mmioEnqueue(bar + 8n, new Uint8Array(64), 1)).toThrow(/aligned/);
    expect(() => m.bridge.mmioEnqueue(bar, new Uint8Array(64), -1)).toThrow(/PASID/);
    // The test device takes no Deferrable Memory Writes: the CPU sees Retry.
    expect(m.bridge.mmioEnqueue(bar, new Uint8Array(64), 1)).toBe(false);
    expect(() => m.bridge.mmioRead(bar + 0xffcn, 8)).toThrow(/crosses the end of a BAR/);
  });
});
