// A driver for the e1000-like NIC that uses nothing but the DMA API (e1000_main.c, reduced):
//   probe:  pci_enable_device_mem, pci_set_master, the BAR, dma_set_mask_and_coherent (64 bits,
//           else 32: "No usable DMA config, aborting"), the device reset (CTRL.RST), then what
//           e1000_open does: both rings from dma_alloc_coherent, TX and RX ring registers, every
//           RX descriptor but one given a buffer mapped with dma_map_single(FROM_DEVICE), RDT,
//           RCTL.EN and TCTL.EN, interrupts unmasked;
//   xmit:   the frame's buffer mapped with dma_map_single(TO_DEVICE), one descriptor with
//           EOP | IFCS | RS, TDT advanced (NETDEV_TX_BUSY when the ring is full, the frame
//           dropped when the mapping fails);
//   poll:   the NAPI poll the machine calls (nothing happens behind its back): ICR read, TX
//           descriptors the device wrote back (DD) unmapped and their buffers freed, received
//           descriptors unmapped, their data read by the CPU and handed up, the ring refilled
//           with freshly mapped buffers and RDT advanced;
//   remove: receive and transmit off, reset, every buffer unmapped and freed, the rings freed
//           with dma_free_coherent, pci_disable_device (also on every probe failure after the
//           enable).
// Whatever the group's default domain is — DMA (strict), DMA-FQ (lazy) or identity — the driver
// is the same; the DMA API decides what a DMA address is and when an unmapped one stops working.

import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { err, OK, type Result } from "../../base/result.js";
import type { BusType, Device, DeviceDriver } from "../../bus/device.js";
import {
  PCI_VENDOR_ID_INTEL,
  type PciDeviceId,
  pciDisableDevice,
  pciEnableDeviceMem,
  pciMatchId,
  pciSetMaster,
} from "../../bus/pci.js";
import { devIsPci, type PciDev } from "../../bus/pci-dev.js";
import {
  DMA_BIT_MASK,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaDataDirection,
} from "../../dma/constants.js";
import type { DmaApi } from "../../dma/mapping.js";
import {
  CTRL_RST,
  ICR_RXO,
  ICR_RXT0,
  ICR_TXDW,
  NIC_REG,
  RCTL_BSIZE_SHIFT,
  RCTL_EN,
  RCTL_LBM_MAC,
  RXD_STAT_DD,
  RXD_STAT_EOP,
  TCTL_EN,
  TXD_CMD_EOP,
  TXD_CMD_RS,
  TXD_STAT_DD,
} from "../../hw/endpoints/nic.js";
import type { FrameAllocator, PhysicalMemory } from "../../hw/memory.js";
import type { IoBridge } from "../../hw/pci/io-bridge.js";
import { E1000_DESC_BYTES, type E1000Buffer, E1000Ring } from "./e1000-ring.js";

/** `E1000_TXD_CMD_IFCS`: insert the frame check sequence. */
const TXD_CMD_IFCS = 0x02;
/** 82540EM, the ID the NIC-like function reports. */
const PCI_DEVICE_ID_82540EM = 0x100e;
const MAX_FRAME = 16384;

/** What the driver reaches in the machine. */
export interface NicEnv {
  readonly dma: DmaApi;
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  /** The root complexes' IO bridges: CPU MMIO to a function goes through its host's bridge. */
  readonly bridges: readonly IoBridge[];
}

export interface NicOptions {
  /** TX descriptors (a multiple of 8, default 64). */
  readonly txDescs?: number;
  /** RX descriptors (a multiple of 8, default 64). */
  readonly rxDescs?: number;
  /** RX buffer size: 2048 (default), 1024, 512 or 256 bytes (RCTL.BSIZE). */
  readonly rxBufferSize?: 2048 | 1024 | 512 | 256;
  /** MAC loopback (RCTL.LBM = 01): transmitted frames come back in. */
  readonly loopback?: boolean;
  /** NAPI weight: frames a poll hands up at most (default 64). */
  readonly napiWeight?: number;
}

export type XmitResult = "NETDEV_TX_OK" | "NETDEV_TX_BUSY";

/** Counters of the interface (`struct net_device_stats` and a few driver ones). */
export class NicStats {
  txPackets = 0;
  txBytes = 0;
  txDropped = 0;
  txBusy = 0;
  rxPackets = 0;
  rxBytes = 0;
  /** RX buffers that could not be allocated or mapped (`alloc_rx_buff_failed`). */
  rxBufferFailed = 0;

  toJSON(): Json {
    return {
      tx_packets: this.txPackets,
      tx_bytes: this.txBytes,
      tx_dropped: this.txDropped,
      tx_busy: this.txBusy,
      rx_packets: this.rxPackets,
      rx_bytes: this.rxBytes,
      alloc_rx_buff_failed: this.rxBufferFailed,
    };
  }
}

/** `struct e1000_adapter`: one bound NIC. */
export class NicAdapter {
  readonly stats = new NicStats();
  /** Frames handed up to the stack (netif_receive_skb), oldest first. */
  readonly received: Uint8Array[] = [];
  readonly logs: { level: string; message: string }[] = [];
  tx: E1000Ring | null = null;
  rx: E1000Ring | null = null;
  /** ICR bits seen by the last poll. */
  lastIcr = 0;
  readonly #env: NicEnv;
  readonly #bridge: IoBridge;
  readonly #hwAddr: bigint;
  readonly #rxBufferSize: number;
  /** The RX frame being assembled across descriptors. */
  #rxParts: Uint8Array[] = [];

  constructor(
    env: NicEnv,
    readonly pdev: PciDev,
    bridge: IoBridge,
    readonly options: NicOptions,
  ) {
    this.#env = env;
    this.#bridge = bridge;
    this.#hwAddr = pdev.fn.barAddress(0);
    this.#rxBufferSize = options.rxBufferSize ?? 2048;
  }

  get name(): string {
    return this.pdev.name;
  }

  /** The buffer size RCTL.BSIZE selects. */
  get rxBufferSize(): number {
    return this.#rxBufferSize;
  }

  er32(reg: number): number {
    return Number(this.#bridge.mmioRead(this.#hwAddr + BigInt(reg), 4));
  }

  ew32(reg: number, v: number): void {
    this.#bridge.mmioWrite(this.#hwAddr + BigInt(reg), 4, BigInt(v >>> 0));
  }

  log(level: string, message: string): void {
    this.logs.push({ level, message });
    this.pdev.fn.host.ctx.trace.emit("driver:log", this.name, {
      driver: "e1000",
      level,
      device: this.name,
      message,
    });
  }

  /** `e1000_open`: rings, buffers, receive and transmit on. ENOMEM without ring memory. */
  open(): Result {
    const env = this.#env;
    const txCount = this.options.txDescs ?? 64;
    const rxCount = this.options.rxDescs ?? 64;
    for (const n of [txCount, rxCount]) {
      if (!Number.isInteger(n) || n < 8 || n % 8 !== 0 || n > 4096) {
        throw new SimError(`${this.name}: ${n} descriptors (a multiple of 8, up to 4096)`);
      }
    }
    // e1000_setup_tx_resources / e1000_setup_rx_resources: rings rounded up to 4 KiB.
    const txDesc = env.dma.allocCoherent(this.pdev, ringBytes(txCount));
    if (txDesc === null) {
      this.log("err", "Unable to allocate memory for the Tx descriptor ring");
      return err("ENOMEM");
    }
    const rxDesc = env.dma.allocCoherent(this.pdev, ringBytes(rxCount));
    if (rxDesc === null) {
      env.dma.freeCoherent(this.pdev, txDesc.size, txDesc, txDesc.dmaHandle);
      this.log("err", "Unable to allocate memory for the Rx descriptor ring");
      return err("ENOMEM");
    }
    this.tx = new E1000Ring(env.memory, txDesc, txCount);
    this.rx = new E1000Ring(env.memory, rxDesc, rxCount);
    // e1000_configure_tx
    this.ew32(NIC_REG.TDBAL, Number(txDesc.dmaHandle & 0xffff_ffffn));
    this.ew32(NIC_REG.TDBAH, Number(txDesc.dmaHandle >> 32n));
    this.ew32(NIC_REG.TDLEN, txCount * E1000_DESC_BYTES);
    this.ew32(NIC_REG.TDH, 0);
    this.ew32(NIC_REG.TDT, 0);
    // e1000_configure_rx: receives off while the ring is set up.
    this.ew32(NIC_REG.RCTL, 0);
    this.ew32(NIC_REG.RDBAL, Number(rxDesc.dmaHandle & 0xffff_ffffn));
    this.ew32(NIC_REG.RDBAH, Number(rxDesc.dmaHandle >> 32n));
    this.ew32(NIC_REG.RDLEN, rxCount * E1000_DESC_BYTES);
    this.ew32(NIC_REG.RDH, 0);
    this.ew32(NIC_REG.RDT, 0);
    this.ew32(NIC_REG.RCTL, this.#rctl());
    this.#allocRxBuffers(this.rx.unused);
    this.ew32(NIC_REG.TCTL, TCTL_EN);
    // e1000_irq_enable
    this.ew32(NIC_REG.IMS, ICR_TXDW | ICR_RXT0 | ICR_RXO);
    return OK;
  }

  /** `e1000_xmit_frame`. */
  xmit(frame: Uint8Array): XmitResult {
    const tx = this.tx;
    if (tx === null) throw new SimError(`${this.name} is down`);
    if (frame.length === 0 || frame.length > MAX_FRAME) {
      throw new SimError(`${this.name}: a frame of ${frame.length} bytes`);
    }
    if (tx.unused < 1) {
      // netif_stop_queue: the stack will retry after a poll freed descriptors.
      this.stats.txBusy++;
      return "NETDEV_TX_BUSY";
    }
    const buf = this.#allocBuffer(frame.length);
    if (buf === null) {
      this.stats.txDropped++;
      return "NETDEV_TX_OK";
    }
    const pa = BigInt(buf.ppn) << 12n;
    this.#env.memory.writeBytes(pa, frame);
    const dma = this.#map(buf.ppn, buf.pages, pa, frame.length, DMA_TO_DEVICE);
    if (dma === null) {
      // dma_error: the skb is freed, the frame counted as dropped, NETDEV_TX_OK all the same.
      this.#env.frames.free(buf.ppn, buf.pages);
      this.stats.txDropped++;
      return "NETDEV_TX_OK";
    }
    const i = tx.nextToUse;
    tx.buffers[i] = dma;
    tx.write(i, dma.dma, frame.length, TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS);
    tx.nextToUse = tx.next(i);
    this.ew32(NIC_REG.TDT, tx.nextToUse);
    return "NETDEV_TX_OK";
  }

  /**
   * The interrupt and NAPI poll (`e1000_intr` + `e1000_clean`): reads ICR, cleans the TX ring,
   * receives up to the NAPI weight of frames and refills the RX ring. Returns the descriptors
   * cleaned and the frames received.
   */
  poll(): { tx: number; rx: number } {
    if (this.tx === null || this.rx === null) throw new SimError(`${this.name} is down`);
    this.lastIcr = this.er32(NIC_REG.ICR);
    const tx = this.#cleanTx();
    const rx = this.#cleanRx(this.options.napiWeight ?? 64);
    return { tx, rx };
  }

  /** `e1000_down` + freeing the resources: nothing stays mapped. */
  close(): void {
    if (this.tx === null || this.rx === null) return;
    this.ew32(NIC_REG.RCTL, this.er32(NIC_REG.RCTL) & ~RCTL_EN);
    this.ew32(NIC_REG.TCTL, this.er32(NIC_REG.TCTL) & ~TCTL_EN);
    this.ew32(NIC_REG.CTRL, CTRL_RST);
    for (const [ring, dir] of [
      [this.tx, DMA_TO_DEVICE],
      [this.rx, DMA_FROM_DEVICE],
    ] as const) {
      ring.buffers.forEach((b, i) => {
        if (b !== null) this.#unmapAndFree(b, dir);
        ring.buffers[i] = null;
      });
      this.#env.dma.freeCoherent(this.pdev, ring.desc.size, ring.desc, ring.desc.dmaHandle);
    }
    this.tx = null;
    this.rx = null;
    this.#rxParts = [];
  }

  /** DMA addresses mapped for the device now: rings and buffers (views and isolation checks). */
  mappedBuffers(): { dma: bigint; length: number; ppn: number; pages: number }[] {
    const out: { dma: bigint; length: number; ppn: number; pages: number }[] = [];
    for (const ring of [this.tx, this.rx]) {
      if (ring === null) continue;
      out.push({
        dma: ring.desc.dmaHandle,
        length: Number(ring.desc.size),
        ppn: ring.desc.pages[0]!,
        pages: ring.desc.pages.length,
      });
      for (const b of ring.buffers) if (b !== null) out.push({ ...b });
    }
    return out;
  }

  toJSON(): Json {
    const ring = (r: E1000Ring | null): Json =>
      r === null
        ? null
        : {
            base: `0x${r.desc.dmaHandle.toString(16)}`,
            count: r.count,
            next_to_use: r.nextToUse,
            next_to_clean: r.nextToClean,
            buffers: r.buffers.filter((b) => b !== null).length,
          };
    return {
      device: this.name,
      up: this.tx !== null,
      tx: ring(this.tx),
      rx: ring(this.rx),
      rx_buffer_size: this.#rxBufferSize,
      stats: this.stats.toJSON(),
      logs: this.logs.map((l) => ({ level: l.level, message: l.message })),
    };
  }

  #rctl(): number {
    const bsize = { 2048: 0, 1024: 1, 512: 2, 256: 3 }[this.#rxBufferSize];
    if (bsize === undefined) throw new SimError(`RX buffer size ${this.#rxBufferSize}`);
    return RCTL_EN | (bsize << RCTL_BSIZE_SHIFT) | (this.options.loopback ? RCTL_LBM_MAC : 0);
  }

  /** Pages for `length` bytes of skb data (the stack's allocation), or null. */
  #allocBuffer(length: number): { ppn: number; pages: number } | null {
    const pages = Math.ceil(length / 4096);
    const ppn = pages === 1 ? this.#env.frames.alloc() : this.#env.frames.allocContiguous(pages);
    return ppn < 0 ? null : { ppn, pages };
  }

  /** dma_map_single; null on a mapping error. */
  #map(
    ppn: number,
    pages: number,
    pa: bigint,
    length: number,
    dir: DmaDataDirection,
  ): E1000Buffer | null {
    const dma = this.#env.dma;
    const addr = dma.mapSingle(this.pdev, pa, BigInt(length), dir);
    if (!dma.mappingError(this.pdev, addr).ok) return null;
    return { dma: addr, length, ppn, pages };
  }

  #unmapAndFree(b: E1000Buffer, dir: DmaDataDirection): void {
    this.#env.dma.unmapSingle(this.pdev, b.dma, BigInt(b.length), dir);
    this.#env.frames.free(b.ppn, b.pages);
  }

  /** `e1000_alloc_rx_buffers`: up to `count` descriptors get a mapped buffer; then RDT. */
  #allocRxBuffers(count: number): void {
    const rx = this.rx!;
    let i = rx.nextToUse;
    for (let n = 0; n < count; n++) {
      const buf = this.#allocBuffer(this.#rxBufferSize);
      const mapped =
        buf === null
          ? null
          : this.#map(
              buf.ppn,
              buf.pages,
              BigInt(buf.ppn) << 12n,
              this.#rxBufferSize,
              DMA_FROM_DEVICE,
            );
      if (mapped === null) {
        if (buf !== null) this.#env.frames.free(buf.ppn, buf.pages);
        this.stats.rxBufferFailed++;
        break;
      }
      rx.buffers[i] = mapped;
      rx.write(i, mapped.dma, 0, 0);
      i = rx.next(i);
    }
    if (rx.nextToUse !== i) {
      rx.nextToUse = i;
      // The hardware owns descriptors up to RDT - 1.
      this.ew32(NIC_REG.RDT, i);
    }
  }

  /** `e1000_clean_tx_irq`. */
  #cleanTx(): number {
    const tx = this.tx!;
    let cleaned = 0;
    let i = tx.nextToClean;
    while (i !== tx.nextToUse) {
      const d = tx.read(i);
      if ((d[12]! & TXD_STAT_DD) === 0) break;
      const b = tx.buffers[i]!;
      this.stats.txPackets++;
      this.stats.txBytes += b.length;
      this.#unmapAndFree(b, DMA_TO_DEVICE);
      tx.buffers[i] = null;
      tx.clear(i);
      i = tx.next(i);
      cleaned++;
    }
    tx.nextToClean = i;
    return cleaned;
  }

  /** `e1000_clean_rx_irq`: up to `budget` frames, then the ring is refilled. */
  #cleanRx(budget: number): number {
    const rx = this.rx!;
    const memory = this.#env.memory;
    let frames = 0;
    let cleaned = 0;
    let i = rx.nextToClean;
    while (frames < budget && rx.buffers[i] !== null) {
      const d = rx.read(i);
      const status = d[12]!;
      if ((status & RXD_STAT_DD) === 0) break;
      const b = rx.buffers[i]!;
      const length = d[8]! | (d[9]! << 8);
      // The buffer goes back to the CPU before it reads the data.
      this.#env.dma.unmapSingle(this.pdev, b.dma, BigInt(b.length), DMA_FROM_DEVICE);
      this.#rxParts.push(memory.readBytes(BigInt(b.ppn) << 12n, length));
      this.#env.frames.free(b.ppn, b.pages);
      rx.buffers[i] = null;
      rx.clear(i);
      if (status & RXD_STAT_EOP) {
        const frame = concat(this.#rxParts);
        this.#rxParts = [];
        this.received.push(frame);
        this.stats.rxPackets++;
        this.stats.rxBytes += frame.length;
        frames++;
      }
      i = rx.next(i);
      cleaned++;
    }
    rx.nextToClean = i;
    if (cleaned > 0) this.#allocRxBuffers(rx.unused);
    return frames;
  }
}

const E1000_PCI_TBL: readonly PciDeviceId[] = [
  { vendor: PCI_VENDOR_ID_INTEL, device: PCI_DEVICE_ID_82540EM },
];

export class NicDriver implements DeviceDriver {
  readonly name = "e1000";
  readonly driverManagedDma = false;
  readonly #adapters = new Map<Device, NicAdapter>();

  constructor(
    readonly env: NicEnv,
    readonly bus: BusType,
    readonly options: NicOptions = {},
  ) {
    if (bus.name !== "pci") throw new SimError("e1000 is a PCI driver");
  }

  /** The PCI ID table (e1000_pci_tbl, reduced to the part the NIC-like function is). */
  match(dev: Device): boolean {
    return devIsPci(dev) && pciMatchId(E1000_PCI_TBL, dev.fn) !== null;
  }

  probe(dev: Device): Result {
    if (!devIsPci(dev)) return err("ENODEV");
    const enabled = pciEnableDeviceMem(dev);
    if (!enabled.ok) return enabled;
    pciSetMaster(dev);
    // The register BAR (pci_ioremap_bar fails → -EIO in e1000_probe).
    const bridge = this.env.bridges.find((b) => b.host === dev.fn.host);
    if (bridge === undefined) {
      pciDisableDevice(dev);
      return err("EIO");
    }
    const dma = this.env.dma;
    if (!dma.setMaskAndCoherent(dev, DMA_BIT_MASK(64)).ok) {
      const r = dma.setMaskAndCoherent(dev, DMA_BIT_MASK(32));
      if (!r.ok) {
        pciDisableDevice(dev);
        return r;
      }
    }
    const adapter = new NicAdapter(this.env, dev, bridge, this.options);
    // e1000_reset_hw
    adapter.ew32(NIC_REG.CTRL, CTRL_RST);
    const up = adapter.open();
    if (!up.ok) {
      pciDisableDevice(dev);
      return up;
    }
    this.#adapters.set(dev, adapter);
    return OK;
  }

  remove(dev: Device): void {
    const adapter = this.#adapters.get(dev);
    if (adapter === undefined) return;
    adapter.close();
    pciDisableDevice(adapter.pdev);
    this.#adapters.delete(dev);
  }

  /** The adapter of a bound device (`netdev_priv(pci_get_drvdata(pdev))`). */
  adapterOf(dev: Device): NicAdapter | undefined {
    return this.#adapters.get(dev);
  }

  toJSON(): Json {
    return { driver: this.name, adapters: [...this.#adapters.values()].map((a) => a.toJSON()) };
  }
}

function ringBytes(count: number): bigint {
  return BigInt(Math.ceil((count * E1000_DESC_BYTES) / 4096) * 4096);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
