import { describe, expect, it } from "vitest";
import { unwrap } from "../../src/base/result.js";
import { DsaDevice } from "../../src/hw/endpoints/dsa.js";
import { NicDevice } from "../../src/hw/endpoints/nic.js";
import { TestDevice } from "../../src/hw/endpoints/test-device.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/iommu/constants.js";
import { buildMachine } from "../../src/machine/build.js";
import type { InputErrors } from "../../src/machine/input/diagnostics.js";
import { machineDescription, parseMachineDescription } from "../../src/machine/load.js";
import type { Machine } from "../../src/machine/machine.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/flags.js";
import { vmMmap } from "../../src/mm/mmap.js";

function testDevice(m: Machine, name: string): TestDevice {
  const d = m.endpoints.model(name);
  if (!(d instanceof TestDevice)) throw new Error(`${name} is not a test device`);
  return d;
}

function faultLog(m: Machine, iommu: string) {
  return m.iommu(iommu)!.riscv!.iommu.faultLog;
}

describe("machine endpoints", () => {
  it("the default machine runs RISC-V IOMMUs with a DMA engine behind every device", () => {
    const m = buildMachine("default");
    expect(m.iommus().map((i) => [i.name, i.description.driver])).toEqual([
      ["iommu0", "riscv"],
      ["iommu1", "riscv"],
    ]);
    expect(m.endpoints.models().map((e) => e.name)).toEqual([
      "dsa0",
      "nic0",
      "legacy0",
      "legacy1",
      "acc0",
      "gpu0",
    ]);
    expect(m.endpoints.model("dsa0")).toBeInstanceOf(DsaDevice);
    expect(m.endpoints.model("nic0")).toBeInstanceOf(NicDevice);
    expect(m.endpoints.model("acc0")).toBeInstanceOf(TestDevice);
    // Every host bridge is translated by its IOMMU's hardware.
    expect(m.endpoints.bridges.map((b) => b.host.translationAgent)).toEqual([
      m.iommu("iommu0")!.riscv!.hardware,
      m.iommu("iommu1")!.riscv!.hardware,
    ]);
    const view = m.toJSON() as { endpoints: { name: string; kind: string }[] };
    expect(view.endpoints.map((e) => [e.name, e.kind])).toEqual([
      ["dsa0", "dsa"],
      ["nic0", "nic"],
      ["legacy0", "test-device"],
      ["legacy1", "test-device"],
      ["acc0", "test-device"],
      ["gpu0", "test-device"],
    ]);
    // Groups and devices as before: two devices behind the conventional bridge share a group.
    expect(m.core.groupOf(m.device("legacy0")!)).toBe(m.core.groupOf(m.device("legacy1")!));
    expect(m.device("acc0")!.iommu?.maxPasids).toBe(256);
  });

  it("device DMA is translated by the IOMMU: faults are recorded, mappings are honoured (segment 0001 too)", () => {
    const m = buildMachine("default");
    const acc = testDevice(m, "acc0");
    const miss = acc.read(0x10_0000n, 4);
    expect(miss.result).toBe("CA translation-fault read_page_fault");
    m.settle();
    const log = faultLog(m, "iommu1");
    expect(log.map((f) => [f.record.cause, f.device, f.record.iotval])).toEqual([
      [13, "0001:03:00.0", 0x10_0000n],
    ]);
    // The device_id the IOMMU saw carries the segment, as the firmware's iommu-map says.
    expect(log[0]!.record.did).toBe(0x1_0000 | m.endpoints.bridgeOf("acc0")!.requesterId(acc.fn));
    const domain = m.core.getDomainForDev(m.device("acc0")!)!;
    expect(m.core.map(domain, 0x10_0000n, 0x8010_0000n, 0x1000n, IOMMU_READ | IOMMU_WRITE)).toEqual(
      { ok: true, value: undefined },
    );
    m.memory.writeBytes(0x8010_0000n, new Uint8Array([1, 2, 3, 4]));
    expect([...acc.read(0x10_0000n, 4).data]).toEqual([1, 2, 3, 4]);
    expect(acc.write(0x10_0002n, new Uint8Array([9])).ok).toBe(true);
    expect([...m.memory.readBytes(0x8010_0000n, 4)]).toEqual([1, 2, 9, 4]);
  });

  it("without an IOMMU device addresses are physical", () => {
    const m = buildMachine(
      machineDescription({
        name: "bare",
        pci: { rp0: { type: "root_port", acs: true } },
        devices: { d0: { parent: "rp0", endpoint: "test" } },
      }),
    );
    expect(m.endpoints.bridges[0]!.host.translationAgent).toBeNull();
    m.memory.writeBytes(0x8000_2000n, new Uint8Array([7, 7]));
    expect([...testDevice(m, "d0").read(0x8000_2000n, 2).data]).toEqual([7, 7]);
    // Next to IOMMUs, a port whose device has `iommu: null` gets a host bridge of its own.
    const mixed = buildMachine(
      machineDescription({
        extends: "default",
        pci: { rp9: { type: "root_port", slot: 9, acs: true } },
        devices: { bare0: { parent: "rp9", iommu: null, endpoint: "test" } },
      }),
    );
    expect(mixed.pci.hosts.map((h) => h.iommu)).toEqual(["iommu0", "iommu1", null]);
    expect(mixed.core.groupOf(mixed.device("bare0")!)).toBeNull();
    mixed.memory.writeBytes(0x8000_3000n, new Uint8Array([9]));
    expect([...testDevice(mixed, "bare0").read(0x8000_3000n, 1).data]).toEqual([9]);
  });

  it("devices behind a mock IOMMU have no DMA engine, and say why", () => {
    const m = buildMachine("default", { driver: "mock" });
    expect(m.endpoints.models()).toEqual([]);
    expect(m.endpoints.bridges.every((b) => b.host.translationAgent === null)).toBe(true);
    expect(() => m.endpoints.engineOf("acc0")).toThrow(
      "device acc0 sits behind a mock IOMMU, which has no hardware to translate DMA (use the riscv driver)",
    );
    expect(() => m.endpoints.engineOf("tb0")).toThrow("device tb0 is not plugged in");
    const none = buildMachine(
      machineDescription({ extends: "single-mock", devices: { dev0: { endpoint: "none" } } }),
      { driver: "riscv" },
    );
    expect(() => none.endpoints.engineOf("dev0")).toThrow(
      "device dev0 has no DMA engine (endpoint: none)",
    );
  });

  it("hot plug brings a fresh model in and takes it out after the OS let go of the device", () => {
    const m = buildMachine("default");
    expect(m.endpoints.model("tb0")).toBeUndefined();
    m.hotAdd("tb0");
    const first = testDevice(m, "tb0");
    expect(first.attached).toBe(true);
    // An untrusted device is never given ATS (pci_ats_supported): it cannot cache translations.
    expect(first.fn.atsEnabled).toBe(false);
    m.hotRemove("tb0");
    expect(first.attached).toBe(false);
    expect(m.endpoints.model("tb0")).toBeUndefined();
    expect(m.iommu("iommu0")!.riscv!.iommu.syncTimeouts).toBe(0);
    m.hotAdd("tb0");
    expect(testDevice(m, "tb0")).not.toBe(first);
    expect(testDevice(m, "tb0").read(0x1000n, 1).result).toBe(
      "CA translation-fault read_page_fault",
    );
  });

  it("hot plug behind a RISC-V IOMMU off segment 0000: the firmware's iommu-map base reaches the late device", () => {
    const desc = machineDescription({
      extends: "default",
      pci: { rp9: { type: "root_port", slot: 9, acs: true } },
      devices: {
        late: {
          parent: "rp9",
          iommu: "iommu1",
          present: false,
          endpoint: "test",
          reserved_regions: [{ type: "direct", start: "0xb0000000", size: "64K" }],
        },
      },
    });
    const m = buildMachine(desc);
    m.hotAdd("late");
    const late = testDevice(m, "late");
    const dev = m.device("late")!;
    const rid = m.endpoints.bridgeOf("late")!.requesterId(late.fn);
    // The fwspec carries (segment << 16) | RID, what the root complex tags the DMA with.
    expect(rid >>> 16).toBe(1);
    expect(dev.iommu!.fwspec!.ids).toEqual([rid]);
    // The firmware's reserved region came with the device: a 1:1 mapping, require_direct.
    expect(dev.iommu!.requireDirect).toBe(true);
    const domain = m.core.getDomainForDev(dev)!;
    expect(m.core.iovaToPhys(domain, 0xb000_8000n)).toBe(0xb000_8000n);
    // Its DMA finds its device context: a DMA-API mapping is honoured, an unmapped IOVA faults.
    const frame = m.frames.alloc();
    m.memory.writeBytes(BigInt(frame) << 12n, new Uint8Array([4, 2]));
    const iova = m.dma.mapSingle(dev, BigInt(frame) << 12n, 0x1000n, 1);
    expect([...late.read(iova, 2).data]).toEqual([4, 2]);
    expect(late.read(0x7000_0000n, 1).result).toBe("CA translation-fault read_page_fault");
    m.settle();
    expect(faultLog(m, "iommu1").map((f) => f.record.did)).toEqual([rid]);
    // The mock driver has no DMA hardware: the same machine boots without models.
    expect(buildMachine(desc, { driver: "mock" }).bootLog).toEqual([]);
  });

  it("device models sit on PCI functions only", () => {
    try {
      parseMachineDescription(
        "iommus: {io: {driver: mock}}\ndevices:\n  p0: {bus: platform, endpoint: test}\n",
        "p.yaml",
      );
      expect.fail("accepted");
    } catch (e) {
      expect((e as InputErrors).errors.map((x) => x.format())).toEqual([
        "p.yaml:3:33: devices.p0.endpoint: device models sit on PCI functions (their DMA goes through a PCI IO bridge); a platform device has none",
      ]);
    }
  });
});

describe("the machine's CPU side", () => {
  it("processes share the machine's memory and frames; init_mm comes on first use", () => {
    const m = buildMachine("default");
    const p = unwrap(m.processes.spawn("app"));
    const mm = p.mm!;
    const A = 0x4000_0000n;
    expect(
      unwrap(
        vmMmap(mm, A, 0x2000n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
      ),
    ).toBe(A);
    expect(m.cpu.store(mm, A + 8n, new Uint8Array([5, 6])).ok).toBe(true);
    const pa = mm.pgtable.iovaToPhys(A + 8n);
    expect(pa).toBeGreaterThan(0n);
    expect([...m.memory.readBytes(pa, 2)]).toEqual([5, 6]);
    const view = m.toJSON() as {
      processes: { pid: number; comm: string; mm: number }[];
      mms: { id: number; pid: number | null; init_mm: boolean }[];
    };
    expect(view.processes).toMatchObject([{ pid: 1, comm: "app", mm: mm.id }]);
    expect(view.mms).toMatchObject([{ id: mm.id, pid: 1, init_mm: false }]);
    expect(m.core.initMm).toBeNull();
    const init = m.initMm();
    expect(m.initMm()).toBe(init);
    expect(m.core.initMm).toBe(init);
    expect((m.toJSON() as { mms: { init_mm: boolean }[] }).mms.map((x) => x.init_mm)).toEqual([
      false,
      true,
    ]);
  });
});
