// Conformance: "Fault/Event-Queue (FQ)", `fqcsr`, `ipsr`, `icvec`, `msi_cfg_tbl` and interrupt
// delivery (WSI level semantics, MSI edge semantics with masking, MSI write faults).

import { describe, expect, it } from "vitest";
import type { InterruptSink } from "../../../../src/hw/riscv-iommu/interrupts.js";
import { dma, enableQueues, faultAt, R, RAM_BASE, rig, takeFaults, translate } from "../fixture.js";

const FQCSR = { fqen: 1, fie: 2, fqmf: 1 << 8, fqof: 1 << 9, fqon: 1 << 16 };

/** Every request while Off is a fault (cause 256): an easy fault source. */
function fault(r: ReturnType<typeof rig>, did = 1): void {
  translate(r, dma(did, 0x1000n));
}

class Sink implements InterruptSink {
  readonly wires: Array<[number, boolean]> = [];
  readonly messages: Array<[bigint, number, number]> = [];
  accept = true;
  setWire(vector: number, asserted: boolean): void {
    this.wires.push([vector, asserted]);
  }
  message(address: bigint, data: number, vector: number): boolean {
    this.messages.push([address, data, vector]);
    return this.accept;
  }
}

describe("fault queue", () => {
  it("writes records at fqt and advances it; software consumes from fqh", () => {
    const r = rig();
    const q = enableQueues(r, { fq: 2 });
    fault(r, 1);
    fault(r, 2);
    expect(r.iommu.read32(R.fqt)).toBe(2);
    expect([faultAt(r, q, 0).did, faultAt(r, q, 1).did]).toEqual([1, 2]);
    expect(takeFaults(r, q).map((f) => f.cause)).toEqual([256, 256]);
    expect(r.iommu.read32(R.fqh)).toBe(2);
    fault(r, 3);
    fault(r, 4); // wraps around
    expect(r.iommu.read32(R.fqt)).toBe(0);
    expect(takeFaults(r, q).map((f) => f.did)).toEqual([3, 4]);
  });

  it("overflow: the record that finds the queue full is dropped, fqof set, later ones dropped", () => {
    const r = rig({ IGS: "WSI" }); // (with MSI, the unprogrammed msi_addr would add cause 273)
    const q = enableQueues(r, { fq: 2 }); // 4 entries: 3 usable
    r.iommu.write32(R.fqcsr, FQCSR.fqen | FQCSR.fie);
    for (let did = 1; did <= 5; did++) fault(r, did);
    expect(r.iommu.read32(R.fqt)).toBe(3);
    expect(r.iommu.read32(R.fqcsr) & FQCSR.fqof).toBe(FQCSR.fqof);
    expect(takeFaults(r, q).map((f) => f.did)).toEqual([1, 2, 3]);
    fault(r, 6); // room now, but fqof still set
    expect(r.iommu.read32(R.fqt)).toBe(3);
    r.iommu.write32(R.fqcsr, FQCSR.fqen | FQCSR.fie | FQCSR.fqof);
    fault(r, 7);
    expect(takeFaults(r, q).map((f) => f.did)).toEqual([7]);
  });

  it("memory fault: fqmf set, record dropped, nothing recorded until cleared", () => {
    const r = rig();
    r.iommu.write64(R.fqb, (0x10n << 10n) | 3n); // not RAM
    r.iommu.write32(R.fqcsr, FQCSR.fqen);
    fault(r);
    expect(r.iommu.read32(R.fqcsr) & FQCSR.fqmf).toBe(FQCSR.fqmf);
    expect(r.iommu.read32(R.fqt)).toBe(0);
    const page = r.page();
    r.iommu.write32(R.fqcsr, 0);
    r.iommu.write64(R.fqb, ((page >> 12n) << 10n) | 3n);
    r.iommu.write32(R.fqcsr, FQCSR.fqen); // enabling clears fqmf and fqt
    expect(r.iommu.read32(R.fqcsr)).toBe(FQCSR.fqen | FQCSR.fqon);
    fault(r);
    expect(r.iommu.read32(R.fqt)).toBe(1);
  });

  it("records are dropped while the queue is off", () => {
    const r = rig();
    fault(r);
    const q = enableQueues(r);
    expect(takeFaults(r, q)).toEqual([]);
  });

  it("ipsr.fip: set by a new record with fie, RW1C, set again while an error persists", () => {
    const r = rig({ IGS: "WSI" });
    const q = enableQueues(r, { fq: 1 }); // 2 entries: 1 usable
    fault(r);
    expect(r.iommu.read32(R.ipsr) & 2).toBe(0); // fie=0
    takeFaults(r, q);
    r.iommu.write32(R.fqcsr, FQCSR.fqen | FQCSR.fie);
    fault(r);
    expect(r.iommu.read32(R.ipsr) & 2).toBe(2);
    r.iommu.write32(R.ipsr, 2);
    expect(r.iommu.read32(R.ipsr) & 2).toBe(0);
    fault(r); // full → fqof
    expect(r.iommu.read32(R.ipsr) & 2).toBe(2);
    r.iommu.write32(R.ipsr, 2);
    expect(r.iommu.read32(R.ipsr) & 2).toBe(2); // fqof still 1
    r.iommu.write32(R.fqcsr, FQCSR.fqen | FQCSR.fie | FQCSR.fqof);
    r.iommu.write32(R.ipsr, 2);
    expect(r.iommu.read32(R.ipsr)).toBe(0);
  });
});

describe("interrupt delivery", () => {
  it("WSI: the wire of the cause's vector follows ipsr (level)", () => {
    const r = rig({ IGS: "WSI" });
    const sink = new Sink();
    r.iommu.interruptSink = sink;
    enableQueues(r);
    r.iommu.write64(R.icvec, 0x0050n); // fiv = 5
    r.iommu.write32(R.fqcsr, FQCSR.fqen | FQCSR.fie);
    fault(r);
    fault(r);
    expect(sink.wires).toEqual([[5, true]]);
    r.iommu.write32(R.ipsr, 2);
    expect(sink.wires).toEqual([
      [5, true],
      [5, false],
    ]);
    expect(sink.messages).toEqual([]);
  });

  it("MSI: one message per 0→1 edge of an ipsr bit, to msi_addr with msi_data of its vector", () => {
    const r = rig({ IGS: "MSI" });
    const sink = new Sink();
    r.iommu.interruptSink = sink;
    enableQueues(r);
    r.iommu.write64(R.icvec, 0x0030n); // fiv = 3
    r.iommu.write64(R.msi_cfg_tbl + 3 * 16, 0x2800_0000n);
    r.iommu.write32(R.msi_cfg_tbl + 3 * 16 + 8, 0x41);
    r.iommu.write32(R.fqcsr, FQCSR.fqen | FQCSR.fie);
    fault(r);
    fault(r); // fip already 1: no new edge
    expect(sink.messages).toEqual([[0x2800_0000n, 0x41, 3]]);
    r.iommu.write32(R.ipsr, 2);
    fault(r);
    expect(sink.messages).toHaveLength(2);
  });

  it("MSI: a masked vector holds its message until unmasked", () => {
    const r = rig({ IGS: "MSI" });
    const sink = new Sink();
    r.iommu.interruptSink = sink;
    enableQueues(r);
    r.iommu.write64(R.msi_cfg_tbl, 0x2800_0000n);
    r.iommu.write32(R.msi_cfg_tbl + 12, 1); // M=1
    r.iommu.write32(R.fqcsr, FQCSR.fqen | FQCSR.fie);
    fault(r);
    expect(sink.messages).toEqual([]);
    r.iommu.write32(R.msi_cfg_tbl + 12, 0);
    expect(sink.messages).toEqual([[0x2800_0000n, 0, 0]]);
  });

  it("MSI: without an interrupt controller at the address, the message is a memory write", () => {
    const r = rig({ IGS: "MSI" });
    enableQueues(r);
    const target = RAM_BASE + 0x3f_0000n;
    r.iommu.write64(R.msi_cfg_tbl, target);
    r.iommu.write32(R.msi_cfg_tbl + 8, 0x1234_5678);
    r.iommu.write32(R.fqcsr, FQCSR.fqen | FQCSR.fie);
    fault(r);
    expect(r.mem.read32(target)).toBe(0x1234_5678);
  });

  it("MSI write access fault: cause 273, TTYP 0, iotval = msi_addr", () => {
    const r = rig({ IGS: "MSI" });
    const q = enableQueues(r);
    r.iommu.write64(R.icvec, 0x0010n); // fiv = 1, civ = 0
    r.iommu.write64(R.msi_cfg_tbl + 16, 0x1000_0040n); // not RAM
    r.iommu.write32(R.fqcsr, FQCSR.fqen | FQCSR.fie);
    fault(r, 9);
    const [f256, f273] = takeFaults(r, q);
    expect(f256?.cause).toBe(256);
    expect(f273).toEqual({
      cause: 273,
      pid: 0,
      pv: false,
      priv: false,
      ttyp: 0,
      did: 0,
      reserved: 0n,
      iotval: 0x1000_0040n,
      iotval2: 0n,
    });
  });

  it("BOTH: fctl.WSI selects wires or messages", () => {
    const r = rig({ IGS: "BOTH" });
    const sink = new Sink();
    r.iommu.interruptSink = sink;
    r.iommu.write32(R.fctl, 2);
    enableQueues(r);
    r.iommu.write32(R.fqcsr, FQCSR.fqen | FQCSR.fie);
    fault(r);
    expect(sink.wires).toEqual([[0, true]]);
    expect(sink.messages).toEqual([]);
  });
});
