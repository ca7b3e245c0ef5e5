// Conformance: "Command-Queue (CQ)" — command processing, IOTINVAL/IODIR invalidation scope and
// the staleness of cached entries until invalidated, IOFENCE.C, ATS.INVAL/ATS.PRGR with ITags,
// timeouts, illegal commands and memory faults; `cqcsr` and `ipsr.cip`.

import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import type { IommuConfig } from "../../../../src/hw/riscv-iommu/capabilities.js";
import {
  atp,
  cmd,
  Ddt,
  dma,
  enableQueues,
  identityGStage,
  iohgatp,
  P,
  Pdt,
  pcTa,
  R,
  RawPt,
  RecordingPort,
  rig,
  submit,
  TC,
  takeFaults,
  translate,
  URW,
} from "../fixture.js";

const V = TC.V;
const CQCSR = {
  cqen: 1,
  cie: 2,
  cqmf: 1 << 8,
  cmd_to: 1 << 9,
  cmd_ill: 1 << 10,
  fence_w_ip: 1 << 11,
  cqon: 1 << 16,
};

function setup(config: Omit<IommuConfig, "capabilities"> = {}, caps = {}) {
  const r = rig(caps, config);
  const q = enableQueues(r);
  const ddt = new Ddt(r, 2);
  ddt.install();
  return { r, q, ddt };
}

const SMALL = { iotlbEntries: 2, ddtCacheEntries: 2, pdtCacheEntries: 2 };

describe("cached entries stay until invalidated", () => {
  for (const config of [{}, SMALL]) {
    const label = config === SMALL ? " (2-entry caches)" : "";

    it(`IOTLB: an unmapped page still translates until IOTINVAL.VMA${label}`, () => {
      const { r, q, ddt } = setup(config);
      const pt = new RawPt(r, 3);
      const pa = r.page();
      const pte = pt.map(0x1000n, pa, URW);
      ddt.writeDc(1, { tc: V, fsc: atp(8, pt.rootPpn), ta: 5n << 12n });
      expect(translate(r, dma(1, 0x1000n)).paddr).toBe(pa);
      r.mem.write64(pte, 0n); // software forgets to invalidate
      expect(translate(r, dma(1, 0x1000n)).paddr).toBe(pa);
      // An IOTINVAL for another PSCID or address does not help.
      submit(r, q, cmd.vma({ pscv: true, pscid: 6 }), cmd.vma({ av: true, addrPage: 2 }));
      expect(translate(r, dma(1, 0x1000n)).paddr).toBe(pa);
      submit(r, q, cmd.vma({ av: true, pscv: true, pscid: 5, addrPage: 1 }));
      expect(translate(r, dma(1, 0x1000n)).fault?.cause).toBe(13);
      expect(takeFaults(r, q).map((f) => f.cause)).toEqual([13]);
    });

    it(`IOTLB: a G-stage remap is seen only after IOTINVAL.GVMA${label}`, () => {
      const { r, q, ddt } = setup(config);
      const g = new RawPt(r, 3, true);
      const [a, b] = [r.page(), r.page()];
      const pte = g.map(0x2000n, a, URW);
      ddt.writeDc(1, { tc: V, iohgatp: iohgatp(8, 9, g.rootPpn) });
      expect(translate(r, dma(1, 0x2000n)).paddr).toBe(a);
      r.mem.write64(pte, ((b >> 12n) << 10n) | URW | P.V);
      submit(r, q, cmd.vma({ gv: true, gscid: 9 })); // first-stage fence: not enough
      expect(translate(r, dma(1, 0x2000n)).paddr).toBe(a);
      submit(r, q, cmd.gvma({ gv: true, gscid: 8 })); // another VM
      expect(translate(r, dma(1, 0x2000n)).paddr).toBe(a);
      submit(r, q, cmd.gvma({ gv: true, gscid: 9, av: true, addrPage: 2 }));
      expect(translate(r, dma(1, 0x2000n)).paddr).toBe(b);
    });

    it(`DDT cache: a changed DC is used only after IODIR.INVAL_DDT${label}`, () => {
      const { r, q, ddt } = setup(config);
      ddt.writeDc(3, { tc: V });
      expect(translate(r, dma(3, 0x5000n)).ok).toBe(true);
      ddt.writeDc(3, { tc: 0n }); // DC made invalid without invalidation
      expect(translate(r, dma(3, 0x5000n)).ok).toBe(true);
      submit(r, q, cmd.inval_ddt(4));
      expect(translate(r, dma(3, 0x5000n)).ok).toBe(true);
      submit(r, q, cmd.inval_ddt(3));
      expect(translate(r, dma(3, 0x5000n)).fault?.cause).toBe(258);
      ddt.writeDc(3, { tc: V });
      expect(translate(r, dma(3, 0x5000n)).ok).toBe(true);
      ddt.writeDc(3, { tc: 0n });
      submit(r, q, cmd.inval_ddt()); // DV=0: everything
      expect(translate(r, dma(3, 0x5000n)).fault?.cause).toBe(258);
    });

    it(`PDT cache: a changed PC is used only after IODIR.INVAL_PDT${label}`, () => {
      const { r, q, ddt } = setup(config);
      const pdt = new Pdt(r, 1);
      ddt.writeDc(3, { tc: V | TC.PDTV, fsc: atp(1, pdt.root >> 12n) });
      pdt.writePc(4, pcTa({}), 0n);
      expect(translate(r, dma(3, 0x5000n, "read", { pasid: 4 })).ok).toBe(true);
      pdt.writePc(4, pcTa({ v: false }), 0n);
      expect(translate(r, dma(3, 0x5000n, "read", { pasid: 4 })).ok).toBe(true);
      submit(r, q, cmd.inval_pdt(3, 5), cmd.inval_pdt(2, 4));
      expect(translate(r, dma(3, 0x5000n, "read", { pasid: 4 })).ok).toBe(true);
      submit(r, q, cmd.inval_pdt(3, 4));
      expect(translate(r, dma(3, 0x5000n, "read", { pasid: 4 })).fault?.cause).toBe(266);
      // IODIR.INVAL_DDT with DV=1 drops the device's PCs too.
      pdt.writePc(4, pcTa({}), 0n);
      expect(translate(r, dma(3, 0x5000n, "read", { pasid: 4 })).ok).toBe(true);
      pdt.writePc(4, pcTa({ v: false }), 0n);
      submit(r, q, cmd.inval_ddt(3));
      expect(translate(r, dma(3, 0x5000n, "read", { pasid: 4 })).fault?.cause).toBe(266);
    });
  }

  it("IOTLB: a first-stage leaf with G=1 caches a global entry, which IOTINVAL.VMA with PSCV keeps", () => {
    const { r, q, ddt } = setup();
    const pt = new RawPt(r, 3);
    const pa = r.page();
    const pte = pt.map(0x1000n, pa, URW | P.G);
    ddt.writeDc(1, { tc: V, fsc: atp(8, pt.rootPpn), ta: 5n << 12n });
    expect(translate(r, dma(1, 0x1000n)).paddr).toBe(pa);
    r.mem.write64(pte, 0n);
    submit(r, q, cmd.vma({ pscv: true, pscid: 5 })); // "except for global mappings"
    expect(translate(r, dma(1, 0x1000n)).paddr).toBe(pa);
    submit(r, q, cmd.vma({}));
    expect(translate(r, dma(1, 0x1000n)).fault?.cause).toBe(13);
  });

  it("IOTINVAL.VMA with an address drops every entry built from that first-stage leaf", () => {
    // A 2 MiB first-stage leaf over 4 KiB G-stage leaves caches one 4 KiB entry per page; all of
    // them "contain the first-stage leaf PTE corresponding to the IOVA in ADDR".
    const { r, q, ddt } = setup();
    const g = identityGStage(r);
    const [gpaA, gpaB] = [0x1000_0000n, 0x1020_0000n];
    const spa = [r.page(), r.page(), r.page(), r.page()];
    g.map(gpaA, spa[0]!, URW);
    g.map(gpaA + 0x1000n, spa[1]!, URW);
    g.map(gpaB, spa[2]!, URW);
    g.map(gpaB + 0x1000n, spa[3]!, URW);
    const pt = new RawPt(r, 3);
    const iova = 0x4000_0000n;
    const leaf = pt.map(iova, gpaA, URW, 1);
    ddt.writeDc(1, {
      tc: V,
      iohgatp: iohgatp(8, 9, g.rootPpn),
      fsc: atp(8, pt.rootPpn),
      ta: 5n << 12n,
    });
    expect(translate(r, dma(1, iova)).paddr).toBe(spa[0]);
    expect(translate(r, dma(1, iova + 0x1000n)).paddr).toBe(spa[1]);
    r.mem.write64(leaf, ((gpaB >> 12n) << 10n) | URW | P.V);
    submit(
      r,
      q,
      cmd.vma({ gv: true, gscid: 9, av: true, pscv: true, pscid: 5, addrPage: 0x4_0000 }),
    );
    expect(translate(r, dma(1, iova + 0x1000n)).paddr).toBe(spa[3]);
    expect(translate(r, dma(1, iova)).paddr).toBe(spa[2]);
  });

  it("IOTINVAL does not touch directory caches, IODIR does not touch the IOTLB", () => {
    const { r, q, ddt } = setup();
    const pt = new RawPt(r, 3);
    pt.map(0x1000n, r.page(), URW);
    ddt.writeDc(1, { tc: V, fsc: atp(8, pt.rootPpn) });
    translate(r, dma(1, 0x1000n));
    submit(r, q, cmd.vma(), cmd.gvma());
    expect(r.iommu.ioatc.deviceContexts()).toHaveLength(1);
    translate(r, dma(1, 0x1000n));
    submit(r, q, cmd.inval_ddt());
    expect(r.iommu.ioatc.iotlbEntries()).toHaveLength(1);
    expect(r.iommu.ioatc.deviceContexts()).toHaveLength(0);
  });
});

// ---- invalidation scope through the whole IOMMU ----

interface Ctx {
  did: number;
  gscid: number | null;
  pscid: number | null;
}

/** Devices covering host/VM × first stage Bare/not, with PSCIDs and GSCIDs that collide. */
const CONTEXTS: Ctx[] = [
  { did: 1, gscid: null, pscid: 1 },
  { did: 2, gscid: null, pscid: 2 },
  { did: 3, gscid: 1, pscid: 1 },
  { did: 4, gscid: 1, pscid: null },
  { did: 5, gscid: 2, pscid: 1 },
];

function buildMachine(config: Omit<IommuConfig, "capabilities">) {
  const { r, q, ddt } = setup(config);
  const g = identityGStage(r);
  const pts = new Map<number, RawPt>();
  for (const c of CONTEXTS) {
    let fsc = 0n;
    if (c.pscid !== null) {
      const pt = new RawPt(r, 3);
      pts.set(c.did, pt);
      fsc = atp(8, pt.rootPpn);
    }
    ddt.writeDc(c.did, {
      tc: V,
      fsc,
      ta: BigInt(c.pscid ?? 0) << 12n,
      iohgatp: c.gscid === null ? 0n : iohgatp(8, c.gscid, g.rootPpn),
    });
  }
  return { r, q, pts };
}

const mapArb = fc.record({
  ctx: fc.integer({ min: 0, max: CONTEXTS.length - 1 }),
  page: fc.integer({ min: 0, max: 15 }),
  global: fc.boolean(),
});

const cmdArb = fc.record({
  gvma: fc.boolean(),
  gv: fc.boolean(),
  av: fc.boolean(),
  pscv: fc.boolean(),
  gscid: fc.integer({ min: 1, max: 2 }),
  pscid: fc.integer({ min: 1, max: 2 }),
  page: fc.integer({ min: 0, max: 15 }),
});

const BASE = 0x8100_0000n; // inside guest RAM (identity G-stage)

describe("invalidation scope end to end (property)", () => {
  for (const config of [{}, SMALL]) {
    test.prop([fc.array(mapArb, { minLength: 1, maxLength: 12 }), cmdArb])(
      `after translations and one IOTINVAL, exactly the spec's entries are gone${config === SMALL ? " (2-entry caches)" : ""}`,
      (maps, c) => {
        const { r, q, pts } = buildMachine(config);
        for (const m of maps) {
          const ctx = CONTEXTS[m.ctx]!;
          const va = BASE + BigInt(m.page) * 0x1000n;
          const pt = pts.get(ctx.did);
          pt?.map(va, r.page(), URW | (m.global ? P.G : 0n));
          expect(translate(r, dma(ctx.did, va)).ok).toBe(true);
        }
        const before = r.iommu.ioatc.iotlbEntries().map((e) => e.toJSON());
        const beforeRaw = r.iommu.ioatc.iotlbEntries().map((e) => ({ ...e }));
        const addrPage = Number(BASE >> 12n) + c.page;
        submit(
          r,
          q,
          c.gvma
            ? cmd.gvma({ gv: c.gv, av: c.av, gscid: c.gscid, addrPage })
            : cmd.vma({
                gv: c.gv,
                av: c.av,
                pscv: c.pscv,
                gscid: c.gscid,
                pscid: c.pscid,
                addrPage,
              }),
        );
        const survives = beforeRaw.map((e) => {
          if (c.gvma) {
            if (!e.hasGStage) return true;
            if (!c.gv) return false;
            if (e.gscid !== c.gscid) return true;
            const leaf = e.gpaBase - (e.gpaBase % 2 ** e.gLog2Pages);
            return c.av && !(addrPage >= leaf && addrPage < leaf + 2 ** e.gLog2Pages);
          }
          if (!e.hasFirstStage) return true;
          if (c.gv ? e.gscid !== c.gscid : e.gscid !== -1) return true;
          if (c.pscv && (e.pscid !== c.pscid || e.global)) return true;
          return c.av && e.vpnBase !== addrPage;
        });
        const expected = before.filter((_, i) => survives[i]);
        expect(r.iommu.ioatc.iotlbEntries().map((e) => e.toJSON())).toEqual(expected);
        expect(r.iommu.read32(R.cqcsr) & CQCSR.cmd_ill).toBe(0);
      },
    );
  }
});

// ---- IOFENCE.C ----

describe("IOFENCE.C", () => {
  it("AV=1 writes DATA to ADDR when it completes", () => {
    const { r, q } = setup();
    const flag = r.page() + 0x40n;
    submit(r, q, cmd.fence({ av: true, data: 0xcafe_f00d, addr: flag, pr: true, pw: true }));
    expect(r.mem.read32(flag)).toBe(0xcafe_f00d);
    expect(r.iommu.read32(R.cqh)).toBe(1);
  });

  it("with fctl.BE=1 commands are read big-endian and DATA is written big-endian", () => {
    const r = rig({ END: true });
    r.iommu.write32(R.fctl, 1);
    const q = enableQueues(r);
    const flag = r.page() + 0x40n;
    const swap64 = (x: bigint) => {
      let y = 0n;
      for (let i = 0n; i < 8n; i++) y |= ((x >> (8n * i)) & 0xffn) << (8n * (7n - i));
      return y;
    };
    const commands = [
      cmd.vma({ av: true, pscv: true, pscid: 5, addrPage: 0x4_5678_9abc }),
      cmd.fence({ av: true, data: 0xcafe_f00d, addr: flag }),
    ];
    commands.forEach(([d0, d1], i) => {
      r.mem.write64(q.cq + BigInt(i) * 16n, swap64(d0));
      r.mem.write64(q.cq + BigInt(i) * 16n + 8n, swap64(d1));
    });
    const rec = r.ctx.trace.record();
    r.iommu.write32(R.cqt, 2);
    expect(r.iommu.read32(R.cqh)).toBe(2);
    expect(r.mem.read32(flag)).toBe(0x0df0_feca);
    expect(rec.stop().map((t) => t.fields)).toEqual([
      {
        opcode: "IOTINVAL.VMA",
        fields: "AV=1 PSCV=1 GV=0 PSCID=5 ADDR=0x456789abc000",
        result: "dropped=0",
      },
      { opcode: "IOFENCE.C", fields: "AV=1 WSI=0 PR=0 PW=0", result: "done" },
    ]);
  });

  it("AV=1 to an address outside RAM: cqmf, cqh stays on the fence, cip with cie", () => {
    const { r, q } = setup();
    r.iommu.write32(R.cqcsr, CQCSR.cqen | CQCSR.cie);
    submit(r, q, cmd.fence({ av: true, data: 1, addr: 0x1000n }), cmd.inval_ddt());
    expect(r.iommu.read32(R.cqcsr) & CQCSR.cqmf).toBe(CQCSR.cqmf);
    expect(r.iommu.read32(R.cqh)).toBe(0);
    expect(r.iommu.read32(R.ipsr) & 1).toBe(1);
  });

  it("WSI=1 sets fence_w_ip (and cip with cie) when wire-signaled interrupts are on", () => {
    const { r, q } = setup({}, { IGS: "WSI" });
    r.iommu.write32(R.cqcsr, CQCSR.cqen | CQCSR.cie);
    submit(r, q, cmd.fence({ wsi: true }), cmd.inval_ddt());
    expect(r.iommu.read32(R.cqcsr) & CQCSR.fence_w_ip).toBe(CQCSR.fence_w_ip);
    expect(r.iommu.read32(R.cqh)).toBe(2); // processing does not stop
    expect(r.iommu.read32(R.ipsr) & 1).toBe(1);
    r.iommu.write32(R.cqcsr, CQCSR.cqen | CQCSR.cie | CQCSR.fence_w_ip);
    expect(r.iommu.read32(R.cqcsr) & CQCSR.fence_w_ip).toBe(0);
  });

  it("WSI=1 is illegal when fctl.WSI is 0", () => {
    const { r, q } = setup({}, { IGS: "MSI" });
    submit(r, q, cmd.fence({ wsi: true }));
    expect(r.iommu.read32(R.cqcsr) & CQCSR.cmd_ill).toBe(CQCSR.cmd_ill);
  });
});

// ---- illegal commands, memory faults ----

describe("illegal commands (cmd_ill) and queue memory faults (cqmf)", () => {
  const illegal: Array<[string, [bigint, bigint], object?]> = [
    ["opcode 0", [0n, 0n]],
    ["reserved opcode 5", [5n, 0n]],
    ["custom opcode 64", [64n, 0n]],
    ["IOTINVAL func3 2", [1n | (2n << 7n), 0n]],
    ["IOTINVAL reserved bit 11", [cmd.vma()[0] | (1n << 11n), 0n]],
    ["IOTINVAL reserved bit 40", [cmd.vma()[0] | (1n << 40n), 0n]],
    ["IOTINVAL reserved bit 62", [cmd.vma()[0] | (1n << 62n), 0n]],
    ["IOTINVAL dword1 reserved bit 0", [cmd.vma()[0], 1n]],
    ["IOTINVAL dword1 reserved bit 63", [cmd.vma()[0], 1n << 63n]],
    ["IOTINVAL.GVMA with PSCV", cmd.gvma({ pscv: true })],
    ["IOTINVAL NL without the extension", cmd.vma({ av: true, nl: true })],
    ["IOTINVAL S without the extension", cmd.vma({ av: true, s: true })],
    ["IOFENCE func3 1", [2n | (1n << 7n), 0n]],
    ["IOFENCE reserved bit 20", [2n | (1n << 20n), 0n]],
    ["IOFENCE dword1 bit 62", [2n, 1n << 62n]],
    ["IODIR func3 2", [3n | (2n << 7n), 0n]],
    ["IODIR.INVAL_DDT with PID", [cmd.inval_ddt()[0] | (5n << 12n), 0n]],
    ["IODIR.INVAL_PDT with DV=0", [3n | (1n << 7n), 0n]],
    ["IODIR reserved bit 32", [cmd.inval_ddt()[0] | (1n << 32n), 0n]],
    // "the value of the DID operand must not be wider than that supported by the ddtp.iommu_mode"
    // (2LVL, base format: 16 bits); "the PID operand of IODIR.INVAL_PDT must not be wider than the
    // width supported by the IOMMU".
    ["IODIR.INVAL_DDT with a DID wider than the DDT", cmd.inval_ddt(0x1_0000)],
    ["IODIR.INVAL_PDT with a DID wider than the DDT", cmd.inval_pdt(0x1_0000, 1)],
    ["IODIR.INVAL_PDT with a PID wider than PD17", cmd.inval_pdt(1, 0x2_0000), { PD20: false }],
    [
      "IODIR.INVAL_PDT with a PID wider than PD8",
      cmd.inval_pdt(1, 0x100),
      { PD20: false, PD17: false },
    ],
    ["IODIR dword1 set", [cmd.inval_ddt()[0], 1n]],
    ["ATS func3 2", [4n | (2n << 7n), 0n]],
    ["ATS reserved bit 34", [cmd.ats_prgr(1, 0, 0)[0] | (1n << 34n), 0n]],
    ["ATS without capabilities.ATS", cmd.ats_prgr(1, 0, 0), { ATS: false, T2GPA: false }],
  ];

  for (const [name, c, caps] of illegal) {
    it(name, () => {
      const { r, q } = setup({}, caps ?? {});
      r.iommu.write32(R.cqcsr, CQCSR.cqen | CQCSR.cie);
      const flag = r.page();
      submit(r, q, cmd.inval_ddt(), c, cmd.fence({ av: true, data: 7, addr: flag }));
      expect(r.iommu.read32(R.cqcsr) & CQCSR.cmd_ill).toBe(CQCSR.cmd_ill);
      expect(r.iommu.read32(R.cqh)).toBe(1); // on the illegal command
      expect(r.mem.read32(flag)).toBe(0); // nothing after it ran
      expect(r.iommu.read32(R.ipsr) & 1).toBe(1);
    });
  }

  it("IODIR operands as wide as the DDT and the PDT modes allow are legal", () => {
    for (const [levels, did] of [
      [1, 0x7f],
      [2, 0xffff],
      [3, 0xff_ffff],
    ] as const) {
      const r = rig({ PD20: false });
      const q = enableQueues(r);
      new Ddt(r, levels).install();
      submit(r, q, cmd.inval_ddt(did), cmd.inval_pdt(did, 0x1_ffff));
      expect(r.iommu.read32(R.cqcsr) & CQCSR.cmd_ill).toBe(0);
      expect(r.iommu.read32(R.cqh)).toBe(2);
    }
  });

  it("clearing cmd_ill resumes at cqh (software fixes the command first)", () => {
    const { r, q } = setup();
    const flag = r.page();
    submit(r, q, [5n, 0n], cmd.fence({ av: true, data: 9, addr: flag }));
    expect(r.iommu.read32(R.cqh)).toBe(0);
    const [d0, d1] = cmd.inval_ddt();
    r.mem.write64(q.cq, d0);
    r.mem.write64(q.cq + 8n, d1);
    r.iommu.write32(R.cqcsr, CQCSR.cqen | CQCSR.cmd_ill);
    expect(r.iommu.read32(R.cqh)).toBe(2);
    expect(r.mem.read32(flag)).toBe(9);
  });

  it("the NL and S operands are accepted with their extensions; S gives a NAPOT range", () => {
    const { r, q, ddt } = setup({}, { NL: true, S: true });
    const pt = new RawPt(r, 3);
    ddt.writeDc(1, { tc: V, fsc: atp(8, pt.rootPpn), ta: 1n << 12n });
    for (let i = 0n; i < 4n; i++) {
      pt.map(0x10_0000n + i * 0x1000n, r.page(), URW);
      translate(r, dma(1, 0x10_0000n + i * 0x1000n));
    }
    // ADDR = page 0x100 | 0b0: first zero at bit 0 → 8 KiB: pages 0x100 and 0x101.
    submit(r, q, cmd.vma({ av: true, s: true, nl: true, addrPage: 0x100 }));
    expect(r.iommu.read32(R.cqcsr) & CQCSR.cmd_ill).toBe(0);
    expect(
      r.iommu.ioatc
        .iotlbEntries()
        .map((e) => e.vpnBase)
        .sort(),
    ).toEqual([0x102, 0x103]);
  });

  it("a command fetch outside RAM sets cqmf and stalls until cleared", () => {
    const r = rig();
    r.iommu.write64(R.cqb, (0x10n << 10n) | 1n);
    r.iommu.write32(R.cqcsr, CQCSR.cqen);
    r.iommu.write32(R.cqt, 1);
    expect(r.iommu.read32(R.cqcsr) & CQCSR.cqmf).toBe(CQCSR.cqmf);
    expect(r.iommu.read32(R.cqh)).toBe(0);
    r.iommu.write32(R.cqcsr, CQCSR.cqen | CQCSR.cqmf); // clears, retries, faults again
    expect(r.iommu.read32(R.cqcsr) & CQCSR.cqmf).toBe(CQCSR.cqmf);
  });

  it("a command fetch from a poisoned page sets cqmf, and runs once the page is healed", () => {
    const { r, q } = setup();
    r.iommu.setPoisoned(Number(q.cq >> 12n), true);
    submit(r, q, cmd.inval_ddt());
    expect([r.iommu.read32(R.cqh), r.iommu.read32(R.cqcsr) & CQCSR.cqmf]).toEqual([0, CQCSR.cqmf]);
    r.iommu.setPoisoned(Number(q.cq >> 12n), false);
    r.iommu.write32(R.cqcsr, CQCSR.cqen | CQCSR.cqmf);
    expect([r.iommu.read32(R.cqh), r.iommu.read32(R.cqcsr) & CQCSR.cqmf]).toEqual([1, 0]);
  });

  it("re-enabling the queue resets cqh and the error bits", () => {
    const { r, q } = setup();
    submit(r, q, [5n, 0n]);
    r.iommu.write32(R.cqcsr, 0);
    expect(r.iommu.read32(R.cqcsr) & CQCSR.cqon).toBe(0);
    r.iommu.write32(R.cqt, 0);
    r.iommu.write32(R.cqcsr, CQCSR.cqen);
    expect(r.iommu.read32(R.cqcsr)).toBe(CQCSR.cqen | CQCSR.cqon);
    expect(r.iommu.read32(R.cqh)).toBe(0);
  });

  it("commands are not processed while the queue is off", () => {
    const { r, q } = setup();
    r.iommu.write32(R.cqcsr, 0);
    const flag = r.page();
    const t = r.iommu.read32(R.cqt);
    const [d0, d1] = cmd.fence({ av: true, data: 3, addr: flag });
    r.mem.write64(q.cq + BigInt(t) * 16n, d0);
    r.mem.write64(q.cq + BigInt(t) * 16n + 8n, d1);
    r.iommu.write32(R.cqt, t + 1);
    expect(r.mem.read32(flag)).toBe(0);
  });
});

// ---- ATS commands ----

function atsSetup() {
  const s = setup({ atsInvalidationTimeoutNs: 1000 });
  s.ddt.writeDc(0x0300, { tc: V | TC.EN_ATS });
  const port = new RecordingPort();
  s.r.iommu.connectPort(0x0300, port);
  return { ...s, port };
}

describe("ATS.INVAL and ATS.PRGR", () => {
  it("sends an Invalidation Request with the payload fields and an ITag", () => {
    const { r, q, port } = atsSetup();
    submit(
      r,
      q,
      cmd.ats_inval(0x0300, { pid: 0x77, g: true, s: true, addrPage: 0x12_3457 }),
      cmd.ats_inval(0x0300),
    );
    expect(port.invalidations).toEqual([
      {
        deviceId: 0x300,
        pasidValid: true,
        pasid: 0x77,
        global: true,
        s: true,
        page: 0x12_3457,
        itag: 0,
      },
      { deviceId: 0x300, pasidValid: false, pasid: 0, global: false, s: false, page: 0, itag: 1 },
    ]);
    expect(r.iommu.read32(R.cqh)).toBe(2); // the queue moves on while completions are awaited
  });

  it("IOFENCE.C waits for the completions, then completes", () => {
    const { r, q, port } = atsSetup();
    const flag = r.page();
    submit(
      r,
      q,
      cmd.ats_inval(0x0300),
      cmd.ats_inval(0x0300),
      cmd.fence({ av: true, data: 1, addr: flag }),
    );
    expect(r.iommu.read32(R.cqh)).toBe(2);
    r.iommu.invalidationCompletion(0x0300, 1 << port.invalidations[0]!.itag);
    expect(r.iommu.read32(R.cqh)).toBe(2);
    expect(r.mem.read32(flag)).toBe(0);
    r.iommu.invalidationCompletion(0x0300, 1 << port.invalidations[1]!.itag);
    expect(r.iommu.read32(R.cqh)).toBe(3);
    expect(r.mem.read32(flag)).toBe(1);
  });

  it("a device that completes at once does not hold the fence", () => {
    const { r, q, port } = atsSetup();
    port.autoComplete = (m) => r.iommu.invalidationCompletion(m.deviceId, 1 << m.itag);
    const flag = r.page();
    submit(r, q, cmd.ats_inval(0x0300), cmd.fence({ av: true, data: 5, addr: flag }));
    expect(r.mem.read32(flag)).toBe(5);
  });

  it("a missing completion times out: cmd_to on the fence; clearing it completes the fence", () => {
    const { r, q } = atsSetup();
    r.iommu.write32(R.cqcsr, CQCSR.cqen | CQCSR.cie);
    const flag = r.page();
    submit(r, q, cmd.ats_inval(0x0300), cmd.fence({ av: true, data: 2, addr: flag }));
    r.ctx.clock.advance(999);
    expect(r.iommu.read32(R.cqcsr) & CQCSR.cmd_to).toBe(0);
    r.ctx.clock.advance(1);
    expect(r.iommu.read32(R.cqcsr) & CQCSR.cmd_to).toBe(CQCSR.cmd_to);
    expect(r.iommu.read32(R.cqh)).toBe(1);
    expect(r.mem.read32(flag)).toBe(0);
    expect(r.iommu.read32(R.ipsr) & 1).toBe(1);
    r.iommu.write32(R.cqcsr, CQCSR.cqen | CQCSR.cie | CQCSR.cmd_to);
    expect(r.iommu.read32(R.cqh)).toBe(2);
    expect(r.mem.read32(flag)).toBe(2);
  });

  it("a timeout is reported by the next IOFENCE.C even if it comes later", () => {
    const { r, q } = atsSetup();
    submit(r, q, cmd.ats_inval(0x0300));
    r.ctx.clock.advance(5000);
    expect(r.iommu.read32(R.cqcsr) & CQCSR.cmd_to).toBe(0);
    submit(r, q, cmd.fence());
    expect(r.iommu.read32(R.cqcsr) & CQCSR.cmd_to).toBe(CQCSR.cmd_to);
    expect(r.iommu.read32(R.cqh)).toBe(1);
  });

  it("at most 32 invalidations per device are outstanding; the 33rd waits for an ITag", () => {
    const { r, q, port } = atsSetup();
    const cmds = Array.from({ length: 33 }, () => cmd.ats_inval(0x0300));
    submit(r, q, ...cmds);
    expect(port.invalidations).toHaveLength(32);
    expect(new Set(port.invalidations.map((m) => m.itag)).size).toBe(32);
    expect(r.iommu.read32(R.cqh)).toBe(32);
    r.iommu.invalidationCompletion(0x0300, 1 << 7);
    expect(port.invalidations).toHaveLength(33);
    expect(port.invalidations[32]!.itag).toBe(7);
    expect(r.iommu.read32(R.cqh)).toBe(33);
  });

  it("a completion from a device without EN_ATS is refused (cause 260, TTYP 9) and ignored", () => {
    const { r, q, ddt, port } = atsSetup();
    ddt.writeDc(0x0301, { tc: V });
    submit(r, q, cmd.ats_inval(0x0300), cmd.fence());
    r.iommu.invalidationCompletion(0x0301, 1 << port.invalidations[0]!.itag);
    expect(r.iommu.read32(R.cqh)).toBe(1);
    expect(takeFaults(r, q)).toEqual([
      {
        cause: 260,
        pid: 0,
        pv: false,
        priv: false,
        ttyp: 9,
        did: 0x301,
        reserved: 0n,
        iotval: 2n,
        iotval2: 0n,
      },
    ]);
  });

  it("ATS.PRGR sends a Page Request Group Response; DSV selects the segment", () => {
    const { r, q, port } = atsSetup();
    const other = new RecordingPort();
    r.iommu.connectPort(0x02_0300, other);
    submit(r, q, cmd.ats_prgr(0x0300, 0x1a5, 0b1111, 0x99), cmd.ats_prgr(0x0300, 3, 0), [
      cmd.ats_prgr(0x0300, 4, 1)[0] | (1n << 33n) | (2n << 56n),
      cmd.ats_prgr(0x0300, 4, 1)[1],
    ]);
    expect(port.responses).toEqual([
      { deviceId: 0x300, pasidValid: true, pasid: 0x99, prgIndex: 0x1a5, responseCode: 0b1111 },
      { deviceId: 0x300, pasidValid: false, pasid: 0, prgIndex: 3, responseCode: 0 },
    ]);
    expect(other.responses).toEqual([
      { deviceId: 0x2_0300, pasidValid: false, pasid: 0, prgIndex: 4, responseCode: 1 },
    ]);
  });
});
