// Kernel DMA through a kernel WQ (drivers/dma/idxd/submit.c and dma.c): descriptor slots with
// their completion records in DMA-API memory, submission (MOVDIR64B to a dedicated WQ, ENQCMDS
// with the system PASID to a shared one), waiting for the completion record, and a dmaengine
// client's memcpy whose buffers are mapped with dma_map_single.

import { err, ok, type Result } from "../../base/result.js";
import { DMA_FROM_DEVICE, DMA_TO_DEVICE } from "../../dma/constants.js";
import { CR_SIZE, DSA_OPCODE, IDXD_OP_FLAG } from "../../hw/endpoints/dsa-regs.js";
import { type DsaCompletionRecord, decodeCompletionRecord, dsaHwDesc } from "./dsa-desc.js";
import type { IdxdDevice, IdxdWq } from "./idxd-device.js";

/** `IDXD_ENQCMDS_RETRIES`: how often a Retry answer is retried before -EAGAIN. */
const IDXD_ENQCMDS_RETRIES = 32;

/** What a kernel descriptor does (addresses are device addresses: IOVAs, or KVAs in supervisor mode). */
export interface IdxdKernelOp {
  readonly opcode: number;
  readonly src?: bigint;
  readonly dst?: bigint;
  readonly size: number;
  /** Extra `IDXD_OP_FLAG_*` on top of CRAV | RCR | RCI. */
  readonly flags?: number;
}

/** The first kernel WQ that is enabled, or null. */
export function idxdKernelWq(idxd: IdxdDevice): IdxdWq | null {
  return idxd.wqs.find((w) => w.type === "kernel" && w.enabled) ?? null;
}

/**
 * Builds, submits and waits for one descriptor on `wq` (`idxd_alloc_desc`, `idxd_submit_desc`,
 * then the completion interrupt's record check). Returns the completion record; EAGAIN when no
 * slot is free or a shared WQ keeps answering Retry, ENXIO when the WQ is not a kernel WQ that is
 * enabled, ETIMEDOUT when the descriptor never completed.
 */
export function idxdSubmitAndWait(wq: IdxdWq, op: IdxdKernelOp): Result<DsaCompletionRecord> {
  const idxd = wq.idxd;
  if (wq.type !== "kernel" || !wq.enabled || wq.compls === null) return err("ENXIO");
  const slot = wq.slots.indexOf(0);
  if (slot < 0) return err("EAGAIN");
  wq.slots[slot] = 1;
  const memory = idxd.env.memory;
  const compls = wq.compls;
  const record = compls.phys(BigInt(slot * CR_SIZE));
  // The record is cleared before submission: a zero status means "not completed yet".
  memory.writeBytes(record, new Uint8Array(CR_SIZE));
  const hw = dsaHwDesc({
    opcode: op.opcode,
    flags: IDXD_OP_FLAG.CRAV | IDXD_OP_FLAG.RCR | IDXD_OP_FLAG.RCI | (op.flags ?? 0),
    pasid: idxd.pasidEnabled ? idxd.pasid : 0,
    priv: idxd.supervisorSva !== null,
    completionAddr: wq.complsAddr(slot),
    src: op.src ?? 0n,
    dst: op.dst ?? 0n,
    size: op.size,
  });
  const regs = idxd.regs;
  if (wq.mode === "dedicated") {
    regs.movdir64b(wq.portal, hw);
  } else {
    let accepted = false;
    for (let i = 0; i < IDXD_ENQCMDS_RETRIES && !accepted; i++) {
      accepted = regs.enqcmd(wq.portal, hw, idxd.pasid, idxd.supervisorSva !== null);
    }
    if (!accepted) {
      wq.slots[slot] = 0;
      return err("EAGAIN");
    }
  }
  // Sleep until the completion interrupt: the machine runs the device (and whatever it needs).
  idxd.ctx.scheduler.settle();
  const cr = decodeCompletionRecord(memory.readBytes(record, CR_SIZE));
  if (cr.status === 0) {
    idxd.log("err", `wq${wq.id}: descriptor in slot ${slot} did not complete`);
    return err("ETIMEDOUT");
  }
  wq.slots[slot] = 0;
  return ok(cr);
}

/**
 * A dmaengine client's memcpy (dmatest-like) between two kernel buffers given by physical
 * address: `dma_map_single` both (source TO_DEVICE, destination FROM_DEVICE), a memmove
 * descriptor with the IOVAs on the kernel WQ, wait, unmap. ENOMEM when a mapping fails, EINVAL
 * when the length is 0 or above the device's maximum transfer (prep returns NULL), plus the
 * errors of idxdSubmitAndWait.
 */
export function idxdDmaMemcpy(
  idxd: IdxdDevice,
  dst: bigint,
  src: bigint,
  len: number,
): Result<DsaCompletionRecord> {
  const wq = idxdKernelWq(idxd);
  if (wq === null) return err("ENXIO");
  if (!Number.isInteger(len) || len <= 0 || len > 2 ** idxd.maxXferShift) return err("EINVAL");
  const dma = idxd.env.dma;
  const dev = idxd.pdev;
  const size = BigInt(len);
  const srcDma = dma.mapSingle(dev, src, size, DMA_TO_DEVICE);
  if (!dma.mappingError(dev, srcDma).ok) return err("ENOMEM");
  const dstDma = dma.mapSingle(dev, dst, size, DMA_FROM_DEVICE);
  if (!dma.mappingError(dev, dstDma).ok) {
    dma.unmapSingle(dev, srcDma, size, DMA_TO_DEVICE);
    return err("ENOMEM");
  }
  const r = idxdSubmitAndWait(wq, {
    opcode: DSA_OPCODE.MEMMOVE,
    src: srcDma,
    dst: dstDma,
    size: len,
  });
  dma.unmapSingle(dev, dstDma, size, DMA_FROM_DEVICE);
  dma.unmapSingle(dev, srcDma, size, DMA_TO_DEVICE);
  return r;
}
