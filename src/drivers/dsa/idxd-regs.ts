// The idxd driver's view of one DSA-like function: its two BARs reached through the root
// complex (CPU MMIO over the host's IO bridge, like ioread32/iowrite32 on a pci_iomap'ed BAR),
// and the command interface (idxd_cmd_exec: write CMD, wait until CMDSTS is no longer active).
//
// Waiting: the kernel sleeps until the command-completion interrupt. Here nothing runs behind
// the caller's back, so "waiting" is letting the machine run its deferred work (the device's
// engine, the IOMMU's interrupt threads, IOPF work) until CMDSTS says the command finished.

import { hex } from "../../base/bits.js";
import type { SimContext } from "../../base/context.js";
import {
  CMD_INT_REQ,
  CMDSTS_ACTIVE,
  DSA_CMD,
  DSA_MMIO_BAR,
  DSA_PORTAL_BAR,
  DSA_PORTAL_STRIDE,
  DSA_REG,
} from "../../hw/endpoints/dsa-regs.js";
import type { IoBridge } from "../../hw/pci/io-bridge.js";
import type { PciFunction } from "../../hw/pci/topology.js";

const CMD_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(DSA_CMD).map(([name, code]) => [code, name]),
);

/** `enum idxd_portal_prot`: each WQ has four portal pages; the driver submits through the limited one. */
export const IDXD_PORTAL_UNLIMITED = 0;
export const IDXD_PORTAL_LIMITED = 1;

export class IdxdRegs {
  readonly #bridge: IoBridge;
  readonly #ctx: SimContext;
  readonly #name: string;
  readonly regBase: bigint;
  readonly portalBase: bigint;

  constructor(ctx: SimContext, bridge: IoBridge, fn: PciFunction, name: string) {
    this.#ctx = ctx;
    this.#bridge = bridge;
    this.#name = name;
    // pci_resource_start of the register and portal BARs (pcim_iomap).
    this.regBase = fn.barAddress(DSA_MMIO_BAR);
    this.portalBase = fn.barAddress(DSA_PORTAL_BAR);
  }

  readl(off: number): number {
    return Number(this.#bridge.mmioRead(this.regBase + BigInt(off), 4));
  }

  writel(off: number, v: number): void {
    this.#bridge.mmioWrite(this.regBase + BigInt(off), 4, BigInt(v >>> 0));
  }

  /** `idxd_get_wq_portal_full_offset(wq, prot)` from the portal BAR's start. */
  portal(wq: number, prot = IDXD_PORTAL_UNLIMITED): bigint {
    return this.portalBase + BigInt(wq * DSA_PORTAL_STRIDE + prot * 0x1000);
  }

  /** `iosubmit_cmds512`: one MOVDIR64B of a 64-byte descriptor (a posted write). */
  movdir64b(portal: bigint, desc: Uint8Array): void {
    this.#bridge.mmioWriteBlock(portal, desc);
  }

  /** ENQCMD / ENQCMDS: true when the WQ accepted the descriptor, false on Retry. */
  enqcmd(portal: bigint, desc: Uint8Array, pasid: number, priv: boolean): boolean {
    return this.#bridge.mmioEnqueue(portal, desc, pasid, priv);
  }

  /**
   * `idxd_cmd_exec`: writes CMD with the completion-interrupt request, lets the machine run
   * until the command is no longer active, and returns CMDSTS's error code (CMDSTS_ACTIVE when
   * the device never finished it: the kernel would wait forever).
   */
  exec(cmd: number, operand = 0): number {
    this.writel(DSA_REG.CMD, ((cmd << 20) | (operand & 0xf_ffff) | CMD_INT_REQ) >>> 0);
    let sts = this.readl(DSA_REG.CMDSTS);
    if ((sts & CMDSTS_ACTIVE) !== 0) {
      this.#ctx.scheduler.settle();
      sts = this.readl(DSA_REG.CMDSTS);
    }
    const status = (sts & CMDSTS_ACTIVE) !== 0 ? CMDSTS_ACTIVE : sts & 0xff;
    this.#ctx.trace.emit("driver:idxd_cmd", this.#name, {
      device: this.#name,
      cmd: CMD_NAMES[cmd] ?? hex(cmd),
      operand,
      status,
    });
    return status;
  }
}
