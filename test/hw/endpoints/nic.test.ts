// The NIC-like device end to end: software programs the rings through CPU MMIO, descriptors
// and buffers live at IOVAs of the device's (DMA API) domain, and every access is DMA through the
// IO bridge and the IOMMU. TX with gather and write-back, RX with write-back and large frames,
// loopback, a peer NIC, FIFO overflow, and rings halted by faults.

import { describe, expect, it } from "vitest";
import {
  ICR_RXO,
  ICR_RXT0,
  ICR_TXDW,
  NIC_REG,
  NicDevice,
  type NicOptions,
  nicFunctionOptions,
  RCTL_BSIZE_SHIFT,
  RCTL_EN,
  RCTL_LBM_MAC,
  RXD_STAT_DD,
  RXD_STAT_EOP,
  STATUS_RXERR,
  STATUS_TXERR,
  TCTL_EN,
  TXD_CMD_EOP,
  TXD_CMD_RS,
  TXD_STAT_DD,
} from "../../../src/hw/endpoints/nic.js";
import type { PageTable } from "../../../src/hw/pgtable/page-table.js";
import { dcPaging, did, faults, type Machine, machine, map, page, pageTable } from "./fixture.js";

const TX_RING = 0x10_0000n;
const RX_RING = 0x10_1000n;
const BUFS = 0x20_0000n;

interface Nic {
  m: Machine;
  nic: NicDevice;
  pt: PageTable;
  /** Physical page of each mapped IOVA page. */
  pa: Map<bigint, bigint>;
}

function frame(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 3 + seed) & 0xff);
}

function setup(names = ["nic0"], opts: NicOptions = {}): { m: Machine; nics: Nic[] } {
  const m = machine((h) => {
    for (const name of names) h.addRootPort().addEndpoint(nicFunctionOptions({ name }));
  });
  const nics = names.map((name) => {
    const nic = new NicDevice(m.bridge, m.host.function(name), opts);
    const pt = pageTable(m);
    const pa = new Map<bigint, bigint>();
    for (const va of [
      TX_RING,
      RX_RING,
      ...Array.from({ length: 8 }, (_, i) => BUFS + BigInt(i) * 4096n),
    ]) {
      const p = page(m);
      map(pt, va, p);
      pa.set(va, p);
    }
    dcPaging(m, did(m, nic.fn), pt, { pscid: 1 + names.indexOf(name) });
    return { m, nic, pt, pa };
  });
  return { m, nics };
}

function w32(n: Nic, off: number, v: number): void {
  n.m.bridge.mmioWrite(n.nic.registerAddress(off), 4, BigInt(v >>> 0));
}

function r32(n: Nic, off: number): number {
  return Number(n.m.bridge.mmioRead(n.nic.registerAddress(off), 4));
}

/** Reads or writes bytes at an IOVA through the test's own page map (as the CPU would). */
function mem(n: Nic, va: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    const a = va + BigInt(i);
    out[i] = n.m.r.mem.read8(n.pa.get(a & ~0xfffn)! + (a & 0xfffn));
  }
  return out;
}

function poke(n: Nic, va: bigint, data: Uint8Array): void {
  for (let i = 0; i < data.length; i++) {
    const a = va + BigInt(i);
    n.m.r.mem.write8(n.pa.get(a & ~0xfffn)! + (a & 0xfffn), data[i]!);
  }
}

function txDesc(n: Nic, i: number, buf: bigint, len: number, cmd: number): void {
  const d = new Uint8Array(16);
  const dv = new DataView(d.buffer);
  dv.setBigUint64(0, buf, true);
  dv.setUint16(8, len, true);
  d[11] = cmd;
  poke(n, TX_RING + BigInt(16 * i), d);
}

function rxDesc(n: Nic, i: number, buf: bigint): void {
  const d = new Uint8Array(16);
  new DataView(d.buffer).setBigUint64(0, buf, true);
  poke(n, RX_RING + BigInt(16 * i), d);
}

function rings(n: Nic, o: { rctl?: number; rxTail?: number } = {}): void {
  w32(n, NIC_REG.TDBAL, Number(TX_RING));
  w32(n, NIC_REG.TDBAH, 0);
  w32(n, NIC_REG.TDLEN, 8 * 16 * 2); // 16 descriptors (a multiple of 128 bytes)
  w32(n, NIC_REG.RDBAL, Number(RX_RING));
  w32(n, NIC_REG.RDLEN, 8 * 16);
  for (let i = 0; i < 8; i++) rxDesc(n, i, BUFS + BigInt(i) * 2048n);
  w32(n, NIC_REG.TCTL, TCTL_EN);
  w32(n, NIC_REG.RCTL, RCTL_EN | (o.rctl ?? 0));
  w32(n, NIC_REG.RDT, o.rxTail ?? 7);
}

describe("ring registers", () => {
  it("read back as written, for RX and TX alike: BAL 16-byte aligned, LEN in 128-byte units, H and T modulo the ring size; the gaps read 0", () => {
    const [n] = setup().nics;
    const regs = {
      rx: [NIC_REG.RDBAL, NIC_REG.RDBAH, NIC_REG.RDLEN, NIC_REG.RDH, NIC_REG.RDT],
      tx: [NIC_REG.TDBAL, NIC_REG.TDBAH, NIC_REG.TDLEN, NIC_REG.TDH, NIC_REG.TDT],
    };
    for (const [ring, [bal, bah, len, h, t]] of Object.entries(regs)) {
      const salt = ring === "rx" ? 1 : 2;
      w32(n!, bal!, 0x1234_5678 + salt);
      w32(n!, bah!, 0xabc + salt);
      w32(n!, len!, 0x1_01ff); // 0x10180: 4120 descriptors of 16 bytes
      w32(n!, h!, 0x1_0000 + 4120 + salt); // bits 15:0 modulo 4120
      w32(n!, t!, 5 + salt);
      w32(n!, bal! + 0xc, 0xffff_ffff); // no register there
      expect([bal, bah, len, h, t, bal! + 0xc].map((r) => r32(n!, r!))).toEqual([
        0x1234_5670,
        0xabc + salt,
        0x1_0180,
        salt,
        5 + salt,
        0,
      ]);
    }
  });
});

describe("TX", () => {
  it("gathers buffers up to EOP, writes DD back for RS, advances TDH", () => {
    const { nics } = setup();
    const n = nics[0]!;
    rings(n);
    const a = frame(100, 1);
    const b = frame(60, 2);
    const c = frame(1500, 3);
    poke(n, BUFS, a);
    poke(n, BUFS + 0x100n, b);
    poke(n, BUFS + 0x1f00n, c); // crosses a page
    txDesc(n, 0, BUFS, 100, 0);
    txDesc(n, 1, BUFS + 0x100n, 60, TXD_CMD_EOP | TXD_CMD_RS);
    txDesc(n, 2, BUFS + 0x1f00n, 1500, TXD_CMD_EOP);
    w32(n, NIC_REG.TDT, 3);
    expect(n.nic.transmitted).toEqual([]);
    n.nic.run();
    expect(n.nic.transmitted).toEqual([Uint8Array.from([...a, ...b]), c]);
    expect(mem(n, TX_RING + 12n, 1)[0]).toBe(0); // no RS: no write-back
    expect(mem(n, TX_RING + 16n + 12n, 1)[0]).toBe(TXD_STAT_DD);
    expect(mem(n, TX_RING + 32n + 12n, 1)[0]).toBe(0);
    expect(r32(n, NIC_REG.TDH)).toBe(3);
    expect(r32(n, NIC_REG.GPTC)).toBe(2);
    expect(r32(n, NIC_REG.ICR) & ICR_TXDW).toBe(ICR_TXDW);
    expect(r32(n, NIC_REG.ICR)).toBe(0); // reading ICR cleared it
  });

  it("an unmapped buffer halts TX with a fault the IOMMU logged", () => {
    const { m, nics } = setup();
    const n = nics[0]!;
    rings(n);
    txDesc(n, 0, 0x900_0000n, 64, TXD_CMD_EOP);
    txDesc(n, 1, BUFS, 64, TXD_CMD_EOP);
    w32(n, NIC_REG.TDT, 2);
    n.nic.run();
    expect(r32(n, NIC_REG.STATUS) & STATUS_TXERR).not.toBe(0);
    expect(n.nic.lastError).toMatchObject({
      ring: "tx",
      index: 0,
      what: "buffer",
      address: 0x900_0000n,
      detail: "CA translation-fault read_page_fault",
    });
    expect(r32(n, NIC_REG.TDH)).toBe(0);
    expect(n.nic.transmitted).toEqual([]);
    expect(faults(m).map((f) => [f.cause, f.did, f.iotval])).toEqual([
      [13, did(m, n.nic.fn), 0x900_0000n],
    ]);
  });
});

describe("RX", () => {
  it("writes frames into the next buffers and writes the descriptors back", () => {
    const { nics } = setup();
    const n = nics[0]!;
    rings(n);
    n.nic.receive(frame(300, 7));
    n.nic.receive(frame(64, 8));
    n.nic.run();
    expect(mem(n, BUFS, 300)).toEqual(frame(300, 7));
    expect(mem(n, BUFS + 2048n, 64)).toEqual(frame(64, 8));
    const d0 = mem(n, RX_RING, 16);
    expect(d0[8]! | (d0[9]! << 8)).toBe(300);
    expect(d0[12]).toBe(RXD_STAT_DD | RXD_STAT_EOP);
    expect(r32(n, NIC_REG.RDH)).toBe(2);
    expect(r32(n, NIC_REG.GPRC)).toBe(2);
    expect(r32(n, NIC_REG.ICR) & ICR_RXT0).toBe(ICR_RXT0);
  });

  it("spreads a frame larger than the buffer size over descriptors, EOP on the last", () => {
    const { nics } = setup();
    const n = nics[0]!;
    rings(n, { rctl: 3 << RCTL_BSIZE_SHIFT }); // 256-byte buffers
    n.nic.receive(frame(600, 1));
    n.nic.run();
    const status = [0, 1, 2].map((i) => mem(n, RX_RING + BigInt(16 * i) + 8n, 5));
    expect(status.map((d) => [d[0]! | (d[1]! << 8), d[4]])).toEqual([
      [256, RXD_STAT_DD],
      [256, RXD_STAT_DD],
      [88, RXD_STAT_DD | RXD_STAT_EOP],
    ]);
    expect(mem(n, BUFS + 2048n, 256)).toEqual(frame(600, 1).subarray(256, 512));
  });

  it("waits for descriptors: a frame is delivered when software advances RDT", () => {
    const { nics } = setup();
    const n = nics[0]!;
    rings(n, { rxTail: 0 });
    n.nic.receive(frame(10, 1));
    n.nic.run();
    expect(n.nic.rxPending).toBe(1);
    w32(n, NIC_REG.RDT, 1);
    n.nic.run();
    expect(n.nic.rxPending).toBe(0);
    expect(mem(n, BUFS, 10)).toEqual(frame(10, 1));
  });

  it("drops frames beyond the FIFO and counts them", () => {
    const { nics } = setup(["nic0"], { rxFifoFrames: 2 });
    const n = nics[0]!;
    expect(n.nic.receive(frame(10, 1))).toBe(true);
    expect(n.nic.receive(frame(10, 2))).toBe(true);
    expect(n.nic.receive(frame(10, 3))).toBe(false);
    expect(r32(n, NIC_REG.MPC)).toBe(1);
    expect(r32(n, NIC_REG.ICR) & ICR_RXO).toBe(ICR_RXO);
    rings(n);
    n.nic.run();
    expect(r32(n, NIC_REG.GPRC)).toBe(2);
  });

  it("an unmapped buffer halts RX; the frame stays queued", () => {
    const { nics } = setup();
    const n = nics[0]!;
    rings(n);
    rxDesc(n, 0, 0x900_0000n);
    n.nic.receive(frame(10, 1));
    n.nic.run();
    expect(r32(n, NIC_REG.STATUS) & STATUS_RXERR).not.toBe(0);
    expect(n.nic.lastError).toMatchObject({ ring: "rx", what: "buffer", address: 0x900_0000n });
    expect(n.nic.rxPending).toBe(1);
    // Software fixes the descriptor and re-enables the receiver.
    rxDesc(n, 0, BUFS);
    w32(n, NIC_REG.RCTL, RCTL_EN);
    n.nic.run();
    expect(mem(n, BUFS, 10)).toEqual(frame(10, 1));
  });
});

describe("links", () => {
  it("MAC loopback sends transmitted frames to its own receiver", () => {
    const { nics } = setup();
    const n = nics[0]!;
    rings(n, { rctl: RCTL_LBM_MAC });
    poke(n, BUFS + 0x3000n, frame(42, 5));
    txDesc(n, 0, BUFS + 0x3000n, 42, TXD_CMD_EOP);
    w32(n, NIC_REG.TDT, 1);
    n.nic.run();
    expect(mem(n, BUFS, 42)).toEqual(frame(42, 5));
    expect(n.nic.transmitted).toEqual([]);
  });

  it("a connected peer receives the frames, through its own domain", () => {
    const { m, nics } = setup(["a", "b"]);
    const [a, b] = [nics[0]!, nics[1]!];
    a.nic.connect(b.nic);
    rings(a);
    rings(b);
    poke(a, BUFS + 0x3000n, frame(80, 9));
    txDesc(a, 0, BUFS + 0x3000n, 80, TXD_CMD_EOP);
    w32(a, NIC_REG.TDT, 1);
    m.r.ctx.scheduler.settle();
    expect(mem(b, BUFS, 80)).toEqual(frame(80, 9));
    expect(r32(b, NIC_REG.GPRC)).toBe(1);
  });
});

describe("view and traces", () => {
  it("every DMA is without a PASID; packets are traced; the view shows the rings", () => {
    const { m, nics } = setup();
    const n = nics[0]!;
    rings(n);
    const rec = m.r.ctx.trace.record();
    n.nic.receive(frame(10, 1));
    n.nic.run();
    const events = rec.stop();
    const dma = events.filter((e) => e.event === "device:dma");
    expect(dma.length).toBe(3); // descriptor read, buffer write, write-back
    expect(dma.every((e) => (e.fields as { pasid: number | null }).pasid === null)).toBe(true);
    expect(events.filter((e) => e.event === "device:packet").map((e) => e.fields)).toEqual([
      { dir: "rx", ring_index: 0, len: 10, result: "ok" },
    ]);
    const v = n.nic.toJSON() as { [k: string]: unknown };
    expect(v).toMatchObject({
      kind: "nic",
      rx: { base: "0x101000", count: 8, head: 1, tail: 7 },
      counters: { received: 1 },
      last_error: null,
    });
    expect(JSON.parse(JSON.stringify(v))).toEqual(v);
  });
});
