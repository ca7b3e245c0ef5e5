import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { OK, unwrap } from "../../../src/base/result.js";
import { pciAtsEnabled, pciDevId, pciPriEnabled } from "../../../src/bus/pci.js";
import type { PciDev } from "../../../src/bus/pci-dev.js";
import type { RiscvIommuInfo } from "../../../src/drivers/riscv/context.js";
import { pageRequestEvent } from "../../../src/drivers/riscv/fault.js";
import type { RiscvSvaDomain } from "../../../src/drivers/riscv/sva.js";
import type { PageRequestMessage } from "../../../src/hw/pci/translation-agent.js";
import { IOMMU_DOMAIN_SVA } from "../../../src/iommu/constants.js";
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
} from "../../../src/iommu/fault.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_POPULATE,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../../src/mm/flags.js";
import { mmAlloc } from "../../../src/mm/fork.js";
import { MmSubsystem } from "../../../src/mm/mm-types.js";
import { vmMmap, vmMunmap } from "../../../src/mm/mmap.js";
import { AutoPort, type Bed, bed, commandsOf, dma } from "./setup.js";

const A = 0x4000_0000n;
const PASID = 1;

/** A PCIe endpoint with ATS, PRI and PASID behind iommu0, bound to a process at PASID 1. */
function dsa(specs: Parameters<typeof bed>[0] = [{ name: "iommu0" }]) {
  const b: Bed = bed(specs);
  // Driver-level tests: page requests stay in the driver's list instead of reaching the core.
  b.driver.reportDeviceFault = null;
  const pdev = b.pciHost((h) => {
    h.addRootPort({ acs: true }).addEndpoint({
      name: "dsa0",
      bars: [0x10000],
      ats: true,
      pri: true,
      pasid: 20,
    });
  })("dsa0");
  const rid = pciDevId(pdev.fn);
  const port = new AutoPort(b.io.hardware);
  b.io.hardware.connectPort(rid, port);
  const sys = new MmSubsystem(b.ctx, b.memory, b.frames);
  const mm = unwrap(mmAlloc(sys));
  unwrap(
    vmMmap(
      mm,
      A,
      0x4000n,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_POPULATE,
    ),
  );
  return {
    ...b,
    pdev,
    rid,
    port,
    sys,
    mm,
    hw: b.io.hardware,
    info: () => pdev.iommu!.priv as RiscvIommuInfo,
  };
}

function bind(b: ReturnType<typeof dsa>, dev: PciDev = b.pdev): RiscvSvaDomain {
  const ops = b.driver.ops;
  const dom = unwrap(ops.domainAllocSva!(dev, b.mm)) as RiscvSvaDomain;
  b.core.s.domainInit(dom, IOMMU_DOMAIN_SVA, ops, dev);
  expect(b.core.attachDevicePasid(dom, dev, PASID)).toEqual(OK);
  return dom;
}

function request(rid: number, o: Partial<PageRequestMessage> = {}): PageRequestMessage {
  return {
    deviceId: rid,
    pasidValid: true,
    pasid: PASID,
    privileged: false,
    execute: false,
    read: true,
    write: true,
    last: true,
    prgIndex: 7,
    page: Number(A >> 12n),
    ...o,
  };
}

describe("ATS and PRI", () => {
  it("PASID is enabled at probe; a DMA domain enables ATS; an SVA domain adds PRI (EN_PRI, PRPR)", () => {
    const b = dsa();
    const info = b.info();
    expect(info.pasidEnabled).toBe(true);
    expect(info.atsEnabled && pciAtsEnabled(b.pdev.fn)).toBe(true);
    expect(info.priEnabled || pciPriEnabled(b.pdev.fn)).toBe(false);
    bind(b);
    expect(info.priEnabled && pciPriEnabled(b.pdev.fn)).toBe(true);
    const tc = (info.toJSON() as { contexts: Array<{ tc: Record<string, boolean> }> }).contexts[0]!
      .tc;
    expect(tc).toMatchObject({ V: true, EN_ATS: true, EN_PRI: true, PRPR: true, PDTV: true });
  });

  it("a page request goes PQ → interrupt thread → IOPF event; page_response sends ATS.PRGR to the device", () => {
    const b = dsa();
    bind(b);
    b.hw.pageRequest(request(b.rid, { prgIndex: 7, execute: true }));
    expect(b.driver.pageRequests).toEqual([]);
    b.ctx.scheduler.settle();
    expect(b.driver.pageRequests.length).toBe(1);
    const p = b.driver.pageRequests[0]!;
    expect(p.dev).toBe(b.pdev);
    expect(p.fault.prm).toEqual({
      flags:
        IOMMU_FAULT_PAGE_REQUEST_PASID_VALID |
        IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE |
        IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
      pasid: PASID,
      grpid: 7,
      perm: IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_WRITE | IOMMU_FAULT_PERM_EXEC,
      addr: A,
      privateData: [0n, 0n],
    });
    const cmds = commandsOf(b.ctx, () =>
      b.driver.ops.pageResponse!(b.pdev, p.fault, {
        pasid: PASID,
        grpid: 7,
        code: IOMMU_PAGE_RESP_SUCCESS,
      }),
    );
    expect(cmds).toEqual([
      `ATS.PRGR DID=${b.rid} PID=${PASID} PRGI=7 code=0`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    expect(b.port.responses).toEqual([
      { deviceId: b.rid, pasidValid: true, pasid: PASID, prgIndex: 7, responseCode: 0 },
    ]);
    b.driver.ops.pageResponse!(b.pdev, p.fault, {
      pasid: PASID,
      grpid: 7,
      code: IOMMU_PAGE_RESP_INVALID,
    });
    expect(b.port.responses[1]!.responseCode).toBe(1);
    // Both are in the instance's page-response log and its JSON view, like the mock's.
    const sent = { dev: b.pdev.name, did: b.rid, pasid: PASID, withPasid: true, grpid: 7 };
    expect(b.io.iommu.pageResponses).toEqual([
      { ...sent, code: IOMMU_PAGE_RESP_SUCCESS },
      { ...sent, code: IOMMU_PAGE_RESP_INVALID },
    ]);
    const view = b.io.iommu.toJSON() as { driver_state: { page_responses: unknown } };
    const json = { dev: b.pdev.name, did: `0x${b.rid.toString(16)}`, pasid: PASID, grpid: 7 };
    expect(view.driver_state.page_responses).toEqual([
      { ...json, with_pasid: true, code: "SUCCESS" },
      { ...json, with_pasid: true, code: "INVALID" },
    ]);
  });

  it("a response to a request that did not ask for its PASID back is logged without it", () => {
    const b = dsa();
    bind(b);
    b.hw.pageRequest(request(b.rid, { prgIndex: 3 }));
    b.ctx.scheduler.settle();
    const p = b.driver.pageRequests[0]!;
    const fault = {
      ...p.fault,
      prm: { ...p.fault.prm, flags: p.fault.prm.flags & ~IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID },
    };
    b.driver.ops.pageResponse!(b.pdev, fault, {
      pasid: PASID,
      grpid: 3,
      code: IOMMU_PAGE_RESP_FAILURE,
    });
    expect(b.port.responses).toEqual([
      { deviceId: b.rid, pasidValid: false, pasid: 0, prgIndex: 3, responseCode: 0xf },
    ]);
    expect(b.io.iommu.pageResponses).toEqual([
      {
        dev: b.pdev.name,
        did: b.rid,
        pasid: PASID,
        withPasid: false,
        grpid: 3,
        code: IOMMU_PAGE_RESP_FAILURE,
      },
    ]);
  });

  it("an installed IOPF entry point receives the events instead of the driver's list", () => {
    const b = dsa();
    bind(b);
    const got: number[] = [];
    b.driver.reportDeviceFault = (dev, evt) => {
      got.push(evt.prm.grpid);
      expect(dev).toBe(b.pdev);
      return OK;
    };
    b.hw.pageRequest(request(b.rid, { prgIndex: 3 }));
    b.io.iommu.processPageRequestQueue();
    expect(got).toEqual([3]);
    expect(b.driver.pageRequests).toEqual([]);
  });

  it("Stop Markers are discarded; after a PQ overflow partial groups are dropped", () => {
    const b = dsa([{ name: "iommu0", options: { pqEntries: 4 } }]);
    bind(b);
    b.hw.pageRequest(request(b.rid, { read: false, write: false, last: true }));
    b.io.iommu.processPageRequestQueue();
    expect(b.driver.stopMarkers).toBe(1);
    expect(b.driver.pageRequests).toEqual([]);
    // Four requests of an unfinished group into a four-entry queue: the last one overflows.
    for (let i = 0; i < 4; i++)
      b.hw.pageRequest(request(b.rid, { last: false, page: Number(A >> 12n) + i }));
    b.io.iommu.processPageRequestQueue();
    expect(b.io.iommu.queueErrors.pq).toBe(1);
    expect(b.driver.pageRequests).toEqual([]);
    // Reporting resumes.
    b.hw.pageRequest(request(b.rid));
    b.io.iommu.processPageRequestQueue();
    expect(b.driver.pageRequests.length).toBe(1);
  });

  it("unbinding drains the PQ first, then turns PRI off (ATS stays for the DMA domain)", () => {
    const b = dsa();
    const dom = bind(b);
    b.hw.pageRequest(request(b.rid));
    b.core.detachDevicePasid(dom, b.pdev, PASID);
    expect(b.driver.pageRequests.length).toBe(1);
    expect(b.info().priEnabled || pciPriEnabled(b.pdev.fn)).toBe(false);
    expect(b.info().atsEnabled).toBe(true);
  });

  it("invalidations reach the device ATC: IOTINVAL, then ATS.INVAL, then IOFENCE.C waits for the completion", () => {
    const b = dsa();
    const dom = bind(b);
    expect(dma(b.hw, b.rid, A + 0x1000n, { pasid: PASID }).ok).toBe(true);
    const cmds = commandsOf(b.ctx, () => unwrap(vmMunmap(b.mm, A + 0x1000n, 0x1000n)));
    expect(cmds).toEqual([
      `IOTINVAL.VMA AV=1 PSCV=1 GV=0 PSCID=${dom.pscid} ADDR=0x40001000`,
      `ATS.INVAL DID=${b.rid} PID=${PASID} G=0 S=0 ADDR=0x40001000`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    expect(b.port.invalidations.at(-1)).toMatchObject({ pasidValid: true, pasid: PASID, s: false });
    expect(b.io.iommu.syncTimeouts).toBe(0);
  });

  it("a device that never completes an ATS invalidation is a command timeout", () => {
    const b = dsa();
    bind(b);
    b.hw.disconnectPort(b.rid);
    unwrap(vmMunmap(b.mm, A, 0x1000n));
    expect(b.io.iommu.syncTimeouts).toBe(1);
    expect(b.core.logs().some((l) => l.message.includes("command execution timeout"))).toBe(true);
  });

  it("an IOMMU without ATS has no PQ and never enables ATS on the device", () => {
    const b = dsa([{ name: "iommu0", capabilities: { ATS: false, T2GPA: false } }]);
    expect(b.io.iommu.priq).toBeNull();
    expect(b.info().atsCapable).toBe(false);
    expect(pciAtsEnabled(b.pdev.fn)).toBe(false);
  });
});

describe("page request decoding", () => {
  test.prop([
    fc.record({
      pv: fc.boolean(),
      pid: fc.integer({ min: 0, max: 0xf_ffff }),
      priv: fc.boolean(),
      exec: fc.boolean(),
      r: fc.boolean(),
      w: fc.boolean(),
      last: fc.boolean(),
      prgi: fc.integer({ min: 0, max: 0x1ff }),
      page: fc.integer({ min: 0, max: 2 ** 52 - 1 }),
      did: fc.integer({ min: 0, max: 0xff_ffff }),
    }),
    fc.boolean(),
  ])("builds the iommu_fault of every Page Request; Stop Markers give none", (rec, needsPasid) => {
    const evt = pageRequestEvent(rec, needsPasid);
    if (rec.pv && rec.last && !rec.r && !rec.w) {
      expect(evt).toBeNull();
      return;
    }
    expect(evt).not.toBeNull();
    const prm = evt!.prm;
    expect((prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0).toBe(rec.pv);
    expect((prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) !== 0).toBe(rec.last);
    expect((prm.flags & IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID) !== 0).toBe(rec.pv && needsPasid);
    expect(prm.pasid).toBe(rec.pv ? rec.pid : 0);
    expect(prm.grpid).toBe(rec.prgi);
    expect(prm.addr).toBe(BigInt(rec.page) << 12n);
    expect((prm.perm & IOMMU_FAULT_PERM_READ) !== 0).toBe(rec.r);
    expect((prm.perm & IOMMU_FAULT_PERM_WRITE) !== 0).toBe(rec.w);
    expect((prm.perm & IOMMU_FAULT_PERM_EXEC) !== 0).toBe(rec.exec);
    expect((prm.perm & IOMMU_FAULT_PERM_PRIV) !== 0).toBe(rec.priv);
  });
});
