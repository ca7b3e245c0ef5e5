// What the driver does with the records its queue threads consume.
//
// Fault queue: each record is decoded, attributed to the device owning its device_id and to the
// domain that device's RID (or the record's PASID) translates through, reported with
// `report_iommu_fault` when it is a read/write/execute transaction (the legacy per-domain
// handler and the `io_page_fault` tracepoint), and kept in the instance's fault log. The kernel
// driver logs faults rate-limited (dev_warn_ratelimited), in its words: so does this one.
//
// Page-request queue: Stop Markers are discarded (core §7.5: no response is expected); a Page
// Request becomes an I/O page fault event (`struct iommu_fault`: PASID_VALID, LAST_PAGE,
// RESPONSE_NEEDS_PASID, grpid, perm, addr) for the device, delivered to the IOPF entry point
// installed in the driver, or held in the driver's list of pending requests. A request from an
// unknown device_id that ends a group is answered Invalid Request at once. `page_response`
// becomes ATS.PRGR + IOFENCE.C. Every response sent is logged on the instance
// (`pageResponses`, in its JSON view as `page_responses`).

import { hex } from "../../base/bits.js";
import { formatResult } from "../../base/result.js";
import type { Device } from "../../bus/device.js";
import { IOMMU_FAULT_READ, IOMMU_FAULT_WRITE } from "../../iommu/constants.js";
import type { IommuDomain } from "../../iommu/domain.js";
import {
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  type IommuFault,
  type IommuPageResponse,
  type IommuPageResponseCode,
} from "../../iommu/fault.js";
import type { RiscvIommuInfo } from "./context.js";
import type { RiscvIommuDevice } from "./iommu.js";
import {
  type FaultRecord,
  type PageRequestRecord,
  PRG_RESPONSE,
  RiscvIommuCommand,
  ttypIsTransaction,
  ttypIsWrite,
} from "./iommu-bits.js";

/** The static domains a RID or PASID may be on, to name them in reports. */
export interface StaticDomains {
  readonly identity: IommuDomain;
  readonly blocked: IommuDomain;
}

/** dev_warn_ratelimited's default burst and interval. */
const RATELIMIT_BURST = 10;
const RATELIMIT_INTERVAL_NS = 5_000_000_000;

/** The per-instance state of the fault-report rate limit. */
export class Ratelimit {
  #start = -1;
  #printed = 0;
  suppressed = 0;

  allow(now: number): boolean {
    if (this.#start < 0 || now - this.#start >= RATELIMIT_INTERVAL_NS) {
      this.#start = now;
      this.#printed = 0;
    }
    if (this.#printed < RATELIMIT_BURST) {
      this.#printed++;
      return true;
    }
    this.suppressed++;
    return false;
  }
}

export function infoOf(dev: Device | null): RiscvIommuInfo | null {
  return (dev?.iommu?.priv as RiscvIommuInfo | undefined) ?? null;
}

/** riscv_iommu_fault: attribute, report, log. */
export function handleFaultRecord(
  iommu: RiscvIommuDevice,
  rec: FaultRecord,
  statics: StaticDomains,
  limit: Ratelimit,
): void {
  const dev = iommu.deviceOf(rec.did);
  const info = infoOf(dev);
  let domain: IommuDomain | null = null;
  let reported: string;
  if (dev === null || info === null || info.iommu !== iommu) {
    reported = "unknown device_id";
  } else {
    const target = rec.pv ? info.pasids.get(rec.pid) : info.ridTarget;
    domain =
      target === undefined
        ? null
        : target === "identity"
          ? statics.identity
          : target === "blocked"
            ? statics.blocked
            : target;
    if (domain === null) {
      reported = "no domain at the PASID";
    } else if (!ttypIsTransaction(rec.ttyp)) {
      reported = "not a transaction";
    } else {
      const flags = ttypIsWrite(rec.ttyp) ? IOMMU_FAULT_WRITE : IOMMU_FAULT_READ;
      reported = formatResult(iommu.core.reportIommuFault(domain, dev, rec.iotval, flags));
    }
  }
  iommu.logFault({ record: rec, device: dev?.name ?? null, domain: domain?.id ?? null, reported });
  if (rec.cause !== 0 && limit.allow(iommu.ctx.clock.now)) {
    iommu.log(
      "warn",
      `Fault ${rec.cause} devid: ${hex(rec.did)} iotval: ${rec.iotval.toString(16)} iotval2: ${rec.iotval2.toString(16)}`,
    );
  }
}

/** A page request waiting for the IOPF path (the driver's queue when no entry point is set). */
export interface PendingPageRequest {
  readonly iommu: string;
  readonly dev: Device;
  readonly fault: IommuFault;
}

/** The I/O page fault event of a Page Request record, or null for a Stop Marker. */
export function pageRequestEvent(rec: PageRequestRecord, needsPasid: boolean): IommuFault | null {
  if (rec.pv && rec.last && !rec.r && !rec.w) return null;
  let flags = 0;
  if (rec.pv) flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
  if (rec.last) flags |= IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
  if (rec.pv && needsPasid) flags |= IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID;
  let perm = 0;
  if (rec.r) perm |= IOMMU_FAULT_PERM_READ;
  if (rec.w) perm |= IOMMU_FAULT_PERM_WRITE;
  if (rec.exec) perm |= IOMMU_FAULT_PERM_EXEC;
  if (rec.priv) perm |= IOMMU_FAULT_PERM_PRIV;
  return {
    type: IOMMU_FAULT_PAGE_REQ,
    prm: {
      flags,
      pasid: rec.pv ? rec.pid : 0,
      grpid: rec.prgi,
      perm,
      addr: BigInt(rec.page) << 12n,
      privateData: [0n, 0n],
    },
  };
}

/** The PCIe response code of an `iommu_page_response` code. */
export function prgResponseCode(code: number): number {
  if (code === IOMMU_PAGE_RESP_INVALID) return PRG_RESPONSE.INVALID_REQUEST;
  if (code === IOMMU_PAGE_RESP_FAILURE) return PRG_RESPONSE.FAILURE;
  return PRG_RESPONSE.SUCCESS;
}

/**
 * ATS.PRGR to `did` for PRG `grpid` with the response `code`, carrying `pasid` when `withPasid`,
 * then IOFENCE.C (riscv page_response); logged in the instance's `pageResponses` with `dev`.
 */
export function sendPrgResponse(
  iommu: RiscvIommuDevice,
  dev: Device | null,
  did: number,
  pasid: number,
  withPasid: boolean,
  grpid: number,
  code: IommuPageResponseCode,
): void {
  const cmd = new RiscvIommuCommand();
  iommu.cmdSend(cmd.atsPrgr(did, withPasid ? pasid : -1, grpid, prgResponseCode(code)));
  iommu.cmdSync();
  iommu.pageResponses.push({ dev: dev?.name ?? null, did, pasid, withPasid, grpid, code });
}

/** `ops->page_response(dev, evt, msg)`. */
export function pageResponse(
  dev: Device,
  info: RiscvIommuInfo,
  evt: IommuFault,
  msg: IommuPageResponse,
): void {
  const withPasid = (evt.prm.flags & IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID) !== 0;
  sendPrgResponse(info.iommu, dev, info.requesterId, msg.pasid, withPasid, msg.grpid, msg.code);
}
