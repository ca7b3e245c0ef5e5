// The IO bridge's DMA observer hook the oracle sits on: one event per page of inbound DMA and per
// ATS Translation Request, saying who sent what, for which untranslated page (also for the
// Translated requests a device makes from its ATC), and what it reached or why it failed.

import { describe, expect, it } from "vitest";
import { DMA_BIDIRECTIONAL } from "../../src/dma/constants.js";
import type { TestDevice } from "../../src/hw/endpoints/test-device.js";
import type { DmaPageEvent, IoBridge } from "../../src/hw/pci/io-bridge.js";
import { PCI_COMMAND, PCI_COMMAND_MASTER } from "../../src/hw/pci/regs.js";
import { buildMachine } from "../../src/machine/build.js";
import type { Machine } from "../../src/machine/machine.js";

type Seen = Omit<DmaPageEvent, "fn" | "peer" | "fault"> & {
  fn: string;
  peer: string | null;
  fault: string | null;
};

/** Records a copy of every event of `bridge`; the events are one reused object. */
function record(bridge: IoBridge) {
  const seen: Seen[] = [];
  const objects = new Set<DmaPageEvent>();
  bridge.observer = {
    observeDma(ev) {
      objects.add(ev);
      seen.push({
        fn: ev.fn!.name,
        kind: ev.kind,
        write: ev.write,
        pasidValid: ev.pasidValid,
        pasid: ev.pasid,
        privileged: ev.privileged,
        deviceId: ev.deviceId,
        page: ev.page,
        iovaPage: ev.iovaPage,
        fromAtc: ev.fromAtc,
        routedToPeer: ev.routedToPeer,
        ppn: ev.ppn,
        peer: ev.peer?.name ?? null,
        ok: ev.ok,
        fault: ev.fault?.code ?? null,
        reason: ev.reason,
      });
    },
  };
  return { seen, objects };
}

function rig() {
  const m: Machine = buildMachine("default", { driver: "riscv" });
  const dev = m.device("acc0")!;
  const acc = m.endpoints.engineOf("acc0");
  const bridge = m.endpoints.bridgeOf("acc0")!;
  const pa = BigInt(m.frames.alloc()) << 12n;
  const iova = m.dma.mapSingle(dev, pa, 0x2000n, DMA_BIDIRECTIONAL);
  const id = bridge.requesterId(acc.fn);
  return { m, acc, bridge, pa, iova, id };
}

const BASE = {
  fn: "acc0",
  pasidValid: false,
  pasid: 0,
  privileged: false,
  fromAtc: false,
  routedToPeer: false,
  peer: null,
  fault: null,
  reason: null,
};

describe("IoBridge.observer", () => {
  it("an Untranslated read over two pages: one event per page with the physical page reached", () => {
    const { m, bridge, pa, iova, id } = rig();
    const { seen, objects } = record(bridge);
    const t = m.endpoints.model("acc0") as TestDevice;
    expect(t.read(iova + 0xff0n, 0x20).ok).toBe(true);
    const page = Number(iova >> 12n);
    const ppn = Number(pa >> 12n);
    expect(seen).toEqual([
      {
        ...BASE,
        kind: "untranslated",
        write: false,
        deviceId: id,
        page,
        iovaPage: page,
        ppn,
        ok: true,
      },
      {
        ...BASE,
        kind: "untranslated",
        write: false,
        deviceId: id,
        page: page + 1,
        iovaPage: page + 1,
        ppn: ppn + 1,
        ok: true,
      },
    ]);
    expect(objects.size).toBe(1);
  });

  it("through the ATC: the ATS Translation Request, then a Translated request standing for its IOVA page", () => {
    const { m, bridge, pa, iova, id } = rig();
    const { seen } = record(bridge);
    const t = m.endpoints.model("acc0") as TestDevice;
    expect(t.write(iova, new Uint8Array(4), { ats: true }).ok).toBe(true);
    const page = Number(iova >> 12n);
    const ppn = Number(pa >> 12n);
    expect(seen).toEqual([
      {
        ...BASE,
        kind: "ats-translation",
        write: true,
        deviceId: id,
        page,
        iovaPage: page,
        ppn,
        ok: true,
      },
      {
        ...BASE,
        kind: "translated",
        write: true,
        deviceId: id,
        page: ppn,
        iovaPage: page,
        fromAtc: true,
        ppn,
        ok: true,
      },
    ]);
  });

  it("a translation fault, a Translated request of the device's own, a request stopped in the fabric", () => {
    const { m, bridge, pa, id } = rig();
    const { seen } = record(bridge);
    const t = m.endpoints.model("acc0") as TestDevice;
    expect(t.read(0x1000n, 4).ok).toBe(false);
    expect(t.read(pa, 4, { translated: true }).ok).toBe(true);
    const fn = t.fn;
    fn.config.write(PCI_COMMAND, 2, fn.config.peek(PCI_COMMAND, 2) & ~PCI_COMMAND_MASTER);
    expect(t.read(0x1000n, 4).ok).toBe(false);
    const ppn = Number(pa >> 12n);
    expect(seen).toEqual([
      {
        ...BASE,
        kind: "untranslated",
        write: false,
        deviceId: id,
        page: 1,
        iovaPage: 1,
        ppn: -1,
        ok: false,
        fault: "read_page_fault",
        reason: "translation-fault",
      },
      {
        ...BASE,
        kind: "translated",
        write: false,
        deviceId: id,
        page: ppn,
        iovaPage: -1,
        ppn,
        ok: true,
      },
      {
        ...BASE,
        kind: "untranslated",
        write: false,
        deviceId: -1,
        page: 1,
        iovaPage: 1,
        ppn: -1,
        ok: false,
        reason: "bus-master-disabled",
      },
    ]);
  });

  it("nothing is told without an observer", () => {
    const { m, bridge, iova } = rig();
    const { seen } = record(bridge);
    bridge.observer = null;
    const t = m.endpoints.model("acc0") as TestDevice;
    expect(t.read(iova, 4, { ats: true }).ok).toBe(true);
    expect(seen).toEqual([]);
  });
});
