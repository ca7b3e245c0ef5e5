// The IOMMU object itself: trace events, JSON views, misuse errors, determinism.

import { describe, expect, it } from "vitest";
import type { Json } from "../../../src/base/json.js";
import type { TraceRecord } from "../../../src/base/trace.js";
import { DmaRequest, DmaResponse } from "../../../src/hw/pci/translation-agent.js";
import {
  atp,
  cmd,
  Ddt,
  dma,
  enableQueues,
  R,
  RawPt,
  RecordingPort,
  rig,
  submit,
  TC,
  translate,
  URW,
} from "./fixture.js";

/** A small scenario touching every event kind; returns the trace. */
function scenario(): TraceRecord[] {
  const r = rig({ IGS: "WSI" });
  const rec = r.ctx.trace.record();
  const q = enableQueues(r);
  r.iommu.write32(R.fqcsr, 3);
  const ddt = new Ddt(r, 1);
  ddt.install();
  const pt = new RawPt(r, 3);
  pt.map(0x1000n, r.page(), URW);
  ddt.writeDc(2, { tc: TC.V | TC.EN_ATS | TC.EN_PRI, fsc: atp(8, pt.rootPpn), ta: 4n << 12n });
  r.iommu.connectPort(2, new RecordingPort());
  translate(r, dma(2, 0x1000n)); // miss + walk
  translate(r, dma(2, 0x1000n)); // hit
  translate(r, dma(2, 0x9000n)); // page fault → fault record → interrupt
  submit(r, q, cmd.vma({ pscv: true, pscid: 4 }), cmd.ats_inval(2));
  r.iommu.write32(R.pqcsr, 0);
  r.iommu.pageRequest({
    deviceId: 2,
    pasidValid: false,
    pasid: 0,
    privileged: false,
    execute: false,
    read: true,
    write: true,
    last: true,
    prgIndex: 9,
    page: 0x1,
  });
  return rec.stop();
}

describe("trace events", () => {
  it("covers translate, IOTLB hit/miss, walk, fault record, command, ATS, page request/response, interrupt", () => {
    const events = scenario().map((t) => t.event);
    for (const e of [
      "riscv_iommu:translate",
      "riscv_iommu:iotlb_miss",
      "riscv_iommu:walk",
      "riscv_iommu:iotlb_hit",
      "riscv_iommu:fault_record",
      "riscv_iommu:interrupt",
      "riscv_iommu:command",
      "riscv_iommu:ats_inval",
      "riscv_iommu:page_request",
      "riscv_iommu:page_response",
    ]) {
      expect(events).toContain(e);
    }
    const trace = scenario();
    const walk = trace.find((t) => t.event === "riscv_iommu:walk")!;
    expect(walk.fields).toEqual({ stage: "first", levels: 3, ptes_read: 3, result: "ok" });
    const fault = trace.find((t) => t.event === "riscv_iommu:fault_record")!;
    expect(fault.fields).toMatchObject({ cause: 13, ttyp: 2, did: 2, iotval: 0x9000n });
    const prq = trace.find((t) => t.event === "riscv_iommu:page_request")!;
    expect(prq.fields).toMatchObject({ did: 2, prgi: 9, result: "off" });
    expect(trace.every((t) => t.track === "iommu0")).toBe(true);
  });

  it("is deterministic: the same scenario gives the same trace", () => {
    const strip = (t: TraceRecord[]) =>
      t.map(({ seq, ts, event, fields }) => ({ seq, ts, event, fields }));
    expect(strip(scenario())).toEqual(strip(scenario()));
  });

  it("describes each command with its operands, only while someone listens", () => {
    const r = rig({ NL: true, S: true });
    const q = enableQueues(r);
    const commands: Array<[bigint, bigint]> = [
      cmd.vma({ av: true, pscv: true, pscid: 4, addrPage: 0x5 }),
      cmd.gvma({ gv: true, gscid: 3, av: true, s: true, addrPage: 0x1ff }),
      cmd.vma({ gv: true, gscid: 2, nl: true }),
      cmd.fence({ pr: true, pw: true }),
      cmd.inval_ddt(2),
      cmd.inval_pdt(2, 5),
      cmd.ats_prgr(0x10, 7, 1, 9),
      [7n, 0x1234n],
    ];
    // Without a listener the queue runs the same commands to the same stop.
    submit(r, q, ...commands);
    expect([r.iommu.read32(R.cqh), r.iommu.read32(R.cqcsr) & 0x400]).toEqual([7, 0x400]);
    const r2 = rig({ NL: true, S: true });
    const q2 = enableQueues(r2);
    const rec = r2.ctx.trace.record();
    submit(r2, q2, ...commands);
    expect([r2.iommu.read32(R.cqh), r2.iommu.read32(R.cqcsr) & 0x400]).toEqual([7, 0x400]);
    const lines = rec
      .stop()
      .filter((t) => t.event === "riscv_iommu:command")
      .map((t) => t.fields);
    expect(lines).toEqual([
      {
        opcode: "IOTINVAL.VMA",
        fields: "AV=1 PSCV=1 GV=0 PSCID=4 ADDR=0x5000",
        result: "dropped=0",
      },
      {
        opcode: "IOTINVAL.GVMA",
        fields: "AV=1 GV=1 GSCID=3 ADDR=0x0 size=0x400000",
        result: "dropped=0",
      },
      { opcode: "IOTINVAL.VMA", fields: "AV=0 PSCV=0 GV=1 GSCID=2 NL=1", result: "dropped=0" },
      { opcode: "IOFENCE.C", fields: "AV=0 WSI=0 PR=1 PW=1", result: "done" },
      { opcode: "IODIR.INVAL_DDT", fields: "DV=1 DID=2", result: "dropped=0" },
      { opcode: "IODIR.INVAL_PDT", fields: "DID=2 PID=5", result: "dropped=0" },
      { opcode: "ATS.PRGR", fields: "DID=16 PID=9 PRGI=7 code=1", result: "sent" },
      {
        opcode: "illegal",
        fields: "opcode 7 cmd=0x0000000000000007_0x0000000000001234",
        result: "cmd_ill",
      },
    ]);
  });

  it("costs nothing and emits nothing when nobody listens", () => {
    const r = rig();
    expect(r.ctx.trace.enabled).toBe(false);
    r.iommu.write64(R.ddtp, 1n);
    expect(translate(r, dma(1, 0x1000n)).ok).toBe(true);
  });
});

describe("JSON views", () => {
  it("decode registers, caches and queues", () => {
    const r = rig();
    const q = enableQueues(r);
    const ddt = new Ddt(r, 1);
    ddt.install();
    const pt = new RawPt(r, 3);
    const pa = r.page();
    pt.map(0x1000n, pa, URW);
    ddt.writeDc(2, { tc: TC.V, fsc: atp(8, pt.rootPpn), ta: 4n << 12n });
    translate(r, dma(2, 0x1000n));
    const v = r.iommu.toJSON();
    expect(at(v, "registers", "ddtp")).toEqual({
      iommu_mode: "1LVL",
      busy: false,
      PPN: `0x${(ddt.root >> 12n).toString(16)}`,
    });
    expect(at(v, "queues", "cq", "cqcsr")).toMatchObject({
      cqen: true,
      cqon: true,
      cmd_ill: false,
    });
    expect(at(v, "queues", "fq", "fqb")).toEqual({
      PPN: `0x${(q.fq >> 12n).toString(16)}`,
      LOG2SZ: 6,
    });
    expect(at(v, "caches", "iotlb", "entries")).toEqual([
      {
        gscid: null,
        pscid: 4,
        global: false,
        iova: "0x1000",
        size: "0x1000",
        s1_leaf_size: "0x1000",
        pa: `0x${pa.toString(16)}`,
        gpa: null,
        g_leaf_size: null,
        s1_perm: "DA-U-WR",
        g_perm: null,
        pbmt: 0,
      },
    ]);
    expect(at(v, "caches", "ddt", "entries", "0", "fsc")).toEqual({
      iosatp: { MODE: "Sv39", PPN: `0x${pt.rootPpn.toString(16)}` },
    });
    expect(at(v, "caches", "iotlb")).toMatchObject({ hits: 0, misses: 1 });
    expect(JSON.parse(JSON.stringify(v))).toEqual(v);
  });
});

describe("misuse", () => {
  it("refuses device IDs and PASIDs out of range, and a second port for one device", () => {
    const r = rig();
    const out = new DmaResponse();
    const bad = new DmaRequest();
    bad.deviceId = 1 << 24;
    expect(() => r.iommu.translate(bad, out)).toThrow(/24-bit/);
    const badPasid = dma(1, 0n, "read", { pasid: 1 << 20 });
    expect(() => r.iommu.translate(badPasid, out)).toThrow(/20-bit/);
    r.iommu.connectPort(5, new RecordingPort());
    expect(() => r.iommu.connectPort(5, new RecordingPort())).toThrow(/already/);
    expect(() => new DmaRequest().setIova(-1n)).toThrow(/64-bit/);
    const badPage = dma(1, 0n);
    badPage.iovaPage = 2 ** 52;
    expect(() => r.iommu.translate(badPage, out)).toThrow(/page number/);
    const badOffset = dma(1, 0n);
    badOffset.iovaOffset = 4096;
    expect(() => r.iommu.translate(badOffset, out)).toThrow(/within a page/);
  });

  it("refuses big-endian page tables (the walker is little-endian)", () => {
    const r = rig({ END: true });
    r.iommu.write32(R.fctl, 1);
    enableQueues(r);
    r.iommu.write64(R.ddtp, (BigInt(r.frames.alloc()) << 10n) | 2n);
    const root = (r.iommu.read64(R.ddtp) >> 10n) << 12n;
    r.mem.write64(root + 2n * 32n, bswap64(TC.V | TC.SBE));
    r.mem.write64(root + 2n * 32n + 24n, bswap64(atp(8, 0x80000n)));
    expect(() => translate(r, dma(2, 0x1000n))).toThrow(/big-endian/);
  });
});

describe("big-endian data structures (END=1, fctl.BE=1)", () => {
  it("reads DCs and commands and writes fault records with swapped bytes", () => {
    const r = rig({ END: true, IGS: "WSI" });
    r.iommu.write32(R.fctl, 1);
    const q = enableQueues(r);
    const root = r.page();
    r.iommu.write64(R.ddtp, ((root >> 12n) << 10n) | 2n);
    r.mem.write64(root + 3n * 32n, bswap64(TC.V)); // DC of device 3, Bare stages
    expect(translate(r, dma(3, 0x5000n)).paddr).toBe(0x5000n);
    translate(r, dma(4, 0x6000n)); // DC not valid → record
    const hdr = bswap64(r.mem.read64(q.fq));
    expect([hdr & 0xfffn, hdr >> 40n]).toEqual([258n, 4n]);
    expect(bswap64(r.mem.read64(q.fq + 16n))).toBe(0x6000n);
    // IOFENCE.C with AV: the command is read big-endian and DATA is stored big-endian.
    const flag = r.page();
    const [d0, d1] = cmd.fence({ av: true, data: 0x1122_3344, addr: flag });
    r.mem.write64(q.cq, bswap64(d0));
    r.mem.write64(q.cq + 8n, bswap64(d1));
    r.iommu.write32(R.cqt, 1);
    expect(r.mem.read32(flag)).toBe(0x4433_2211);
  });
});

function bswap64(x: bigint): bigint {
  let out = 0n;
  for (let i = 0n; i < 8n; i++) out |= ((x >> (8n * i)) & 0xffn) << (8n * (7n - i));
  return out;
}

/** The JSON value at a path of keys (array indices as strings). */
function at(v: Json, ...path: string[]): Json {
  let x: Json = v;
  for (const k of path) x = (x as { [k: string]: Json })[k] ?? null;
  return x;
}
