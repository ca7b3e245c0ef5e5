// The IO bridge itself (src/hw/pci/io-bridge.ts; tested here, beside the device models it
// carries): attaching models, connecting their ports to a translation agent attached later,
// detaching, DMA aliases, the bigint convenience API, CPU MMIO misuse and the views.

import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { TestDevice } from "../../../src/hw/endpoints/test-device.js";
import { PciHost } from "../../../src/hw/pci/host.js";
import { DmaAttrs, DmaStatus, IoBridge } from "../../../src/hw/pci/io-bridge.js";
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
      translation_agent: true,
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

  // Every way a page and a device buffer exchange bytes (byte loops, 32-bit words, whole pages,
  // whole buffers, views of parts), at any alignment, with buffers that are views of a larger
  // ArrayBuffer: exactly the bytes asked for move, nothing around them changes.
  const spanArb = fc.record({
    write: fc.boolean(),
    fresh: fc.boolean(),
    at: fc.oneof(fc.constantFrom(0, 4, 0xff8, 0xffc), fc.nat({ max: 0x1fff })),
    length: fc.oneof(
      fc.nat({ max: 20 }),
      fc.nat({ max: 140 }).map((n) => n & ~3),
      fc.nat({ max: 140 }),
      fc.constant(4096),
      fc.nat({ max: 9000 }),
    ),
    bufOffset: fc.oneof(fc.constantFrom(0, 4), fc.nat({ max: 9 })),
    slack: fc.oneof(fc.constant(0), fc.nat({ max: 9 })),
    viewOffset: fc.nat({ max: 9 }),
    seed: fc.nat(),
  });
  test.prop([spanArb])("copies exactly the span between memory and the buffer", (c) => {
    const m = machine((h) => {
      h.addRootPort().addEndpoint({ name: "t0" });
    });
    bareMode(m);
    const fn = m.host.function("t0");
    const base = RAM_BASE + (32n << 20n);
    const around = 8;
    const region = 2 * around + 0x2000 + 9000; // any `at` and `length`
    const noise = (n: number, salt: number) =>
      Uint8Array.from({ length: n }, (_, i) => (Math.imul(i + salt, 0x9e37_79b1) >>> 24) & 0xff);
    const before = c.fresh ? new Uint8Array(region) : noise(region, c.seed);
    if (!c.fresh) m.r.mem.writeBytes(base, before);
    const backing = new ArrayBuffer(c.viewOffset + c.bufOffset + c.length + c.slack);
    const buf = new Uint8Array(backing, c.viewOffset, c.bufOffset + c.length + c.slack);
    const data = noise(buf.length, c.seed + 1);
    buf.set(data);
    const address = base + BigInt(around + c.at);
    const st = new DmaStatus();
    const attrs = new DmaAttrs();
    const pageNo = Number(address >> 12n);
    const offset = Number(address & 0xfffn);
    if (c.write) m.bridge.writePages(fn, attrs, pageNo, offset, buf, c.bufOffset, c.length, st);
    else m.bridge.readPages(fn, attrs, pageNo, offset, buf, c.bufOffset, c.length, st);
    expect(st.toJSON()).toEqual({ ok: true, done: c.length });
    const memory = m.r.mem.readBytes(base, region);
    const span = (x: Uint8Array, from: number) => x.subarray(from, from + c.length);
    if (c.write) {
      const want = before.slice();
      want.set(span(data, c.bufOffset), around + c.at);
      expect(memory).toEqual(want);
    } else {
      const want = data.slice();
      want.set(span(before, around + c.at), c.bufOffset);
      expect(buf).toEqual(want);
      expect(memory).toEqual(before);
    }
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

  it("CPU MMIO loads and stores 1, 2, 4 and 8 bytes little-endian; unclaimed loads are all ones", () => {
    const m = machine((h) => {
      h.addRootPort().addEndpoint({ name: "t0", bars: [0x2000] });
    });
    const dev = new TestDevice(m.bridge, m.host.function("t0"));
    const bar = dev.fn.barAddress(0);
    const mem = dev.barMemory(0);
    m.bridge.mmioWrite(bar + 0x1000n, 8, 0x8877_6655_4433_2211n);
    expect([...mem.subarray(0x1000, 0x1008)]).toEqual([
      0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
    ]);
    m.bridge.mmioWrite(bar + 0x1001n, 1, 0x1abn); // only the low byte lands
    m.bridge.mmioWrite(bar + 0x1002n, 2, -2n); // two's complement: fe ff
    expect([...mem.subarray(0x1000, 0x1005)]).toEqual([0x11, 0xab, 0xfe, 0xff, 0x55]);
    m.bridge.mmioWrite(bar + 0x1004n, 4, 0x1_ffff_fffen);
    expect(m.bridge.mmioRead(bar + 0x1000n, 8)).toBe(0xffff_fffe_fffe_ab11n);
    expect(m.bridge.mmioRead(bar + 0x1004n, 4)).toBe(0xffff_fffen);
    expect(m.bridge.mmioRead(bar + 0x1002n, 2)).toBe(0xfffen);
    expect(m.bridge.mmioRead(bar + 0x1001n, 1)).toBe(0xabn);
    m.bridge.mmioWrite(bar + 0x1008n, 8, -1n);
    expect(m.bridge.mmioRead(bar + 0x1008n, 8)).toBe((1n << 64n) - 1n);
    const none = 0x10_0000n; // no BAR there
    expect([1, 2, 4, 8].map((n) => m.bridge.mmioRead(none, n as 1 | 2 | 4 | 8))).toEqual([
      0xffn,
      0xffffn,
      0xffff_ffffn,
      (1n << 64n) - 1n,
    ]);
    expect(m.bridge.mmioRead(1n << 32n, 4)).toBe(0xffff_ffffn);
  });
});
