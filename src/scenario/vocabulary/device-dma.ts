// Devices doing DMA: raw reads and writes a device model issues at a device address, with or
// without a PASID, as Untranslated requests (the IOMMU translates them) or through the device's
// ATC (ATS Translation Requests first). Only machines whose devices sit behind a RISC-V IOMMU
// (or none) have device models: the mock driver has no hardware to translate through.

import { ok } from "../../base/result.js";
import type { Device } from "../../bus/device.js";
import { TestDevice } from "../../hw/endpoints/test-device.js";
import { DmaAttrs, type DmaStatus } from "../../hw/pci/io-bridge.js";
import { FAULT_CAUSES } from "../../hw/riscv-iommu/faults.js";
import { describedName, type Machine } from "../../machine/machine.js";
import { DEV } from "./kinds.js";
import {
  type Args,
  BOOL,
  BYTES,
  Bytes,
  type Failure,
  type FunctionSpec,
  failure,
  int,
  param,
  returnsOrFails,
  returnsValue,
  U32 as U32_VALUE,
  U64,
  VOID,
} from "./types.js";

/** Device DMA needs device models, which only machines with RISC-V IOMMUs have. */
export const DMA_DRIVERS = ["riscv"] as const;

/** Why a device access failed: the IOMMU's fault code, or how the fabric or device refused it. */
export const DMA_FAULTS = {
  what: "a DMA abort: the IOMMU fault cause, or why the fabric or device refused it",
  codes: [
    "abort",
    ...Object.keys(FAULT_CAUSES),
    "bus-master-disabled",
    "acs-translation-blocking",
    "acs-egress-control",
    "tlp-prefix-blocked",
    "unsupported-request",
    "not-memory",
    "no-device-model",
    "refused",
    "ats-page-fault",
    "ats-UR",
    "ats-CA",
  ],
} as const;

const PASID_PARAM = param(int(0, 0xf_ffff, "a 20-bit PASID"), {
  optional: true,
  doc: "a PASID TLP prefix with this PASID (default none)",
});
const PRIV = param(BOOL, { optional: true, doc: "Privileged Mode Requested (with a PASID)" });
const ATS = param(BOOL, {
  optional: true,
  doc: "translate through the device's ATC (ATS Translation Requests on a miss), then Translated requests",
});

/** The failure of an Untranslated (or Translated) request the bridge aborted. */
function bridgeFailure(st: DmaStatus): Failure {
  const code = st.fault?.code ?? st.reason ?? "unsupported-request";
  return failure(
    code,
    {
      code,
      ...(st.fault ? { cause: st.fault.cause } : {}),
      completion: st.completion,
      reason: st.reason,
      address: `0x${st.address.toString(16)}`,
      done: st.done,
    },
    ["abort"],
  );
}

const BAR = param(int(0, 5, "a BAR number 0..5"), { optional: true, doc: "default 0" });

/** The model of a register access's device and the register's address: BAR `bar` + `offset`. */
function registerOf(m: Machine, a: Args) {
  const model = m.endpoints.engineOf(describedName(a.dev as Device));
  const pa = model.fn.barAddress((a.bar as number | undefined) ?? 0) + BigInt(a.offset as number);
  return { model, pa };
}

interface Access {
  readonly write: boolean;
  readonly addr: bigint;
  readonly buf: Uint8Array;
  readonly pasid: number | undefined;
  readonly priv: boolean;
  readonly ats: boolean;
}

/** One device access through the device's model; the bytes read, or the failure. */
function deviceAccess(m: Machine, dev: Device, x: Access): Failure | null {
  const model = m.endpoints.engineOf(describedName(dev));
  const opts = {
    ...(x.pasid === undefined ? {} : { pasid: x.pasid }),
    privileged: x.priv,
    ats: x.ats,
  };
  if (model instanceof TestDevice) {
    const r = x.write ? model.write(x.addr, x.buf, opts) : model.read(x.addr, x.buf.length, opts);
    if (!x.write && r.ok) x.buf.set(r.data);
    if (r.ok) return null;
    if (r.result.startsWith("refused: ")) {
      return failure("refused", { code: "refused", why: r.result.slice(9) }, ["abort"]);
    }
    return x.ats ? atsFailure(model.dma, model.dma.status) : bridgeFailure(model.dma.status);
  }
  // Engines (DSA, NIC): the raw request at the IO bridge, or through the ATC with ats.
  const page = Number(x.addr >> 12n);
  const offset = Number(x.addr & 0xfffn);
  if (x.ats) {
    const dma = model.dma;
    const pv = x.pasid !== undefined;
    const done = dma.access(
      x.write,
      pv,
      x.pasid ?? 0,
      x.priv,
      page,
      offset,
      x.buf,
      0,
      x.buf.length,
    );
    return done ? null : atsFailure(dma, dma.status);
  }
  const st = model.dma.status;
  const attrs = DmaAttrs.of({
    ...(x.pasid === undefined ? {} : { pasid: x.pasid }),
    privileged: x.priv,
  });
  model.bridge.transferPages(x.write, model.fn, attrs, page, offset, x.buf, 0, x.buf.length, st);
  return st.ok ? null : bridgeFailure(st);
}

/** The failure of an access through the ATC: the ATS completion's answer, or the request's. */
function atsFailure(
  dma: { faultDetail: string; faultKind: string; faultAddress: bigint },
  st: DmaStatus,
): Failure {
  const d = dma.faultDetail;
  if (!d.startsWith("ats ")) return bridgeFailure(st);
  const code = d.startsWith("ats success") ? "ats-page-fault" : `ats-${d.slice(4)}`;
  return failure(code, { code, detail: d, address: `0x${dma.faultAddress.toString(16)}` }, [
    "abort",
  ]);
}

export const DEVICE_DMA: readonly FunctionSpec<Machine>[] = [
  {
    name: "device_dma_read",
    area: "device",
    params: {
      dev: DEV,
      addr: param(U64, { doc: "device address (IOVA, or a process VA with its PASID)" }),
      len: param(int(1, 1 << 24, "a length in bytes")),
      pasid: PASID_PARAM,
      priv: PRIV,
      ats: ATS,
    },
    returns: returnsOrFails(BYTES, DMA_FAULTS),
    drivers: DMA_DRIVERS,
    ts: "machine.endpoints.engineOf(dev).read(addr, len, {pasid, privileged, ats})",
    doc: "The device reads memory at a device address: routed by the PCIe fabric, translated by its IOMMU (the domain at its RID or PASID), read from RAM. Fails with the IOMMU's fault cause (read_page_fault, pdt_entry_not_valid, …) or how the fabric or device refused it; every code also matches `abort`.",
    call: (m, a) => {
      const buf = new Uint8Array(a.len as number);
      const f = deviceAccess(m, a.dev as Device, {
        write: false,
        addr: a.addr as bigint,
        buf,
        pasid: a.pasid as number | undefined,
        priv: (a.priv as boolean | undefined) ?? false,
        ats: (a.ats as boolean | undefined) ?? false,
      });
      return f ?? ok(new Bytes(buf));
    },
  },
  {
    name: "device_dma_write",
    area: "device",
    params: {
      dev: DEV,
      addr: param(U64, { doc: "device address" }),
      data: param(BYTES),
      pasid: PASID_PARAM,
      priv: PRIV,
      ats: ATS,
    },
    returns: returnsOrFails("void", DMA_FAULTS),
    drivers: DMA_DRIVERS,
    ts: "machine.endpoints.engineOf(dev).write(addr, data, {pasid, privileged, ats})",
    doc: "The device writes memory at a device address; pages before an aborting page have landed. Fails like device_dma_read (a posted write's abort is what the IOMMU and the bridge saw).",
    call: (m, a) => {
      const f = deviceAccess(m, a.dev as Device, {
        write: true,
        addr: a.addr as bigint,
        buf: (a.data as Bytes).data,
        pasid: a.pasid as number | undefined,
        priv: (a.priv as boolean | undefined) ?? false,
        ats: (a.ats as boolean | undefined) ?? false,
      });
      return f ?? ok(undefined);
    },
  },
  {
    name: "iowrite32",
    area: "device",
    params: {
      dev: DEV,
      bar: BAR,
      offset: param(int(0, 0xffff_fffc, "a register offset"), { doc: "bytes into the BAR" }),
      value: param(U32_VALUE),
    },
    returns: VOID,
    drivers: DMA_DRIVERS,
    ts: "bridge.mmioWrite(fn.barAddress(bar) + offset, 4, value)",
    doc: "The CPU writes a 32-bit device register (pci_iomap'd BAR, iowrite32): a memory write routed down the PCI hierarchy to the device model.",
    call: (m, a) => {
      const { model, pa } = registerOf(m, a);
      model.bridge.mmioWrite(pa, 4, BigInt(a.value as number));
    },
  },
  {
    name: "ioread32",
    area: "device",
    params: {
      dev: DEV,
      bar: BAR,
      offset: param(int(0, 0xffff_fffc, "a register offset")),
    },
    returns: returnsValue(U32_VALUE),
    drivers: DMA_DRIVERS,
    ts: "bridge.mmioRead(fn.barAddress(bar) + offset, 4)",
    doc: "The CPU reads a 32-bit device register (ioread32).",
    call: (m, a) => {
      const { model, pa } = registerOf(m, a);
      return Number(model.bridge.mmioRead(pa, 4));
    },
  },
];
