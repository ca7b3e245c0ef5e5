// The device-facing side of an IOMMU: what an IO bridge / root port presents to it (DMA requests,
// PCIe ATS Translation Requests, Page Request and Invalidation Completion messages) and what it
// sends back to endpoints (ATS Invalidation Requests, Page Request Group Responses). Nothing here
// is specific to one IOMMU: endpoints talk to this interface, and the RISC-V IOMMU implements it.
//
// Requests and responses of the hot path are caller-owned, reusable objects carrying page
// numbers and offsets as plain numbers: translating allocates nothing.

import { PAGE_SHIFT } from "../../base/bits.js";
import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";

export type AccessType = "read" | "write" | "execute";

/**
 * Why an IOMMU refused a request: a string code and the IOMMU architecture's cause number (the
 * RISC-V IOMMU's fault union is one such type).
 */
export interface TranslationFault {
  readonly code: string;
  readonly cause: number;
}

/** A memory request from a device: an Untranslated or a Translated (ATS) read/write/execute. */
export class DmaRequest {
  /** Requester ID, with the PCIe segment in bits 23:16. */
  deviceId = 0;
  pasidValid = false;
  /** The PASID (`process_id`), meaningful when `pasidValid`. */
  pasid = 0;
  /** Privileged Mode Requested (only with a PASID: requests without one are User). */
  privileged = false;
  /** A Translated request (address from the device's ATC) rather than an Untranslated one. */
  translated = false;
  /** Read, write (including AMO) or read-for-execute. */
  access: AccessType = "read";
  /** Address bits 63:12 (a page number below 2^52). */
  iovaPage = 0;
  /** Address bits 11:0. */
  iovaOffset = 0;

  /** Sets the address from a bigint (convenience off the hot path). */
  setIova(iova: bigint): this {
    if (iova < 0n || iova >= 1n << 64n) throw new SimError(`IOVA ${iova} is not a 64-bit value`);
    this.iovaPage = Number(iova >> BigInt(PAGE_SHIFT));
    this.iovaOffset = Number(iova & 0xfffn);
    return this;
  }
}

/** The IOMMU's answer to a DmaRequest. */
export class DmaResponse {
  /** The translation failed: the bridge aborts the transaction. */
  fault: TranslationFault | null = null;
  /** Physical page of the accessed address. */
  ppn = 0;
  /** Offset within the page (the request's). */
  offset = 0;
  /** log2 of the size of the translation that covered the access (12 for a 4 KiB page). */
  pageShift = 12;
  /** Page-based memory type from the page tables (0 PMA, 1 NC, 2 IO). */
  pbmt = 0;

  get ok(): boolean {
    return this.fault === null;
  }

  /** The physical address (bigint; off the hot path). */
  get paddr(): bigint {
    return (BigInt(this.ppn) << BigInt(PAGE_SHIFT)) | BigInt(this.offset);
  }

  toJSON(): Json {
    return this.fault
      ? { fault: this.fault.code, cause: this.fault.cause }
      : { paddr: `0x${this.paddr.toString(16)}`, page_shift: this.pageShift, pbmt: this.pbmt };
  }
}

/** A PCIe ATS Translation Request. */
export class AtsRequest {
  deviceId = 0;
  pasidValid = false;
  pasid = 0;
  /** Privileged Mode Requested (with a PASID only). */
  privileged = false;
  /** Execute Requested (with a PASID only). */
  executeRequested = false;
  /** No Write: only read permission is asked for. */
  noWrite = false;
  /** Untranslated address bits 63:12. */
  iovaPage = 0;

  setIova(iova: bigint): this {
    if (iova < 0n || iova >= 1n << 64n) throw new SimError(`IOVA ${iova} is not a 64-bit value`);
    this.iovaPage = Number(iova >> BigInt(PAGE_SHIFT));
    return this;
  }
}

export type AtsStatus = "success" | "UR" | "CA";

/** A Translation Completion. With status UR or CA the other fields are meaningless. */
export class AtsCompletion {
  status: AtsStatus = "success";
  /** Translated address bits 63:12 of the start of the translated range. */
  ppn = 0;
  /** log2 of the range size in bytes; above 12 the S bit is set in the completion. */
  sizeShift = 12;
  r = false;
  w = false;
  x = false;
  /** Priv: the permissions are those of privileged mode. */
  priv = false;
  /** Untranslated access only. */
  u = false;
  /** No-snoop. */
  n = false;
  global = false;
  /** Address-type attribute; 000b by default. */
  ama = 0;
  /** The fault behind a UR/CA, or behind a success without permissions (not logged). */
  fault: TranslationFault | null = null;

  /** Translated address field with the PCIe size encoding (S bit and trailing ones). */
  get translatedAddress(): bigint {
    return encodeSizedAddress(this.ppn, this.sizeShift);
  }

  toJSON(): Json {
    if (this.status !== "success") {
      return { status: this.status, fault: this.fault?.code ?? null };
    }
    return {
      status: this.status,
      translated_address: `0x${this.translatedAddress.toString(16)}`,
      size_shift: this.sizeShift,
      r: this.r,
      w: this.w,
      x: this.x,
      priv: this.priv,
      u: this.u,
      n: this.n,
      global: this.global,
      fault: this.fault?.code ?? null,
    };
  }
}

/**
 * The NAPOT page-number-with-size encoding shared by ATS completions and invalidations,
 * `tr_response` and ranged IOTINVAL: for a range of 2^shift bytes (shift > 12) the page-number
 * bits below log2(pages) - 1 are ones and bit log2(pages) - 1 is zero. A 4 KiB range is the page
 * number itself (and the S bit is 0).
 */
export function encodeNapotPage(ppn: number, shift: number): number {
  if (shift <= PAGE_SHIFT) return ppn;
  const span = 2 ** (shift - PAGE_SHIFT);
  return ppn - (ppn % span) + (span / 2 - 1);
}

/** The 64-bit Translated Address field of a completion: address bits 63:12 and S at bit 11. */
export function encodeSizedAddress(ppn: number, shift: number): bigint {
  const field = BigInt(encodeNapotPage(ppn, shift)) << BigInt(PAGE_SHIFT);
  return shift > PAGE_SHIFT ? field | 0x800n : field;
}

/**
 * Decodes a page-granular NAPOT field (bit 0 = address bit 12): with `s` the trailing ones give
 * the size. Returns the first page and the log2 number of pages.
 */
export function decodeNapotPages(
  page: number,
  s: boolean,
  maxBits = 52,
): { first: number; log2Pages: number } {
  if (!s) return { first: page, log2Pages: 0 };
  const log2Pages = napotLog2Pages(page, maxBits);
  return { first: page - (page % 2 ** log2Pages), log2Pages };
}

/**
 * The log2 number of pages of a NAPOT field with S set (at least 1): the trailing ones plus one.
 * The first page is `page` rounded down to that many pages. For hot paths: allocates nothing.
 */
export function napotLog2Pages(page: number, maxBits = 52): number {
  let x = 0;
  let p = page;
  while (x < maxBits && p % 2 === 1) {
    p = Math.floor(p / 2);
    x++;
  }
  return x + 1;
}

/** A PCIe Page Request message (or a Stop Marker: PASID, L=1, R=W=0). */
export interface PageRequestMessage {
  readonly deviceId: number;
  readonly pasidValid: boolean;
  readonly pasid: number;
  readonly privileged: boolean;
  readonly execute: boolean;
  readonly read: boolean;
  readonly write: boolean;
  /** Last Request in PRG. */
  readonly last: boolean;
  /** Page Request Group Index (9 bits). */
  readonly prgIndex: number;
  /** Page address bits 63:12. */
  readonly page: number;
}

/** PRG response codes of PCIe. */
export const PRG_RESPONSE_CODE = {
  success: 0b0000,
  invalid_request: 0b0001,
  response_failure: 0b1111,
} as const;

/** A Page Request Group Response message to an endpoint. */
export interface PrgResponse {
  readonly deviceId: number;
  readonly pasidValid: boolean;
  readonly pasid: number;
  readonly prgIndex: number;
  readonly responseCode: number;
}

/** An ATS Invalidation Request message to an endpoint. */
export interface InvalidationRequest {
  readonly deviceId: number;
  readonly pasidValid: boolean;
  readonly pasid: number;
  /** Global Invalidate. */
  readonly global: boolean;
  /** Size bit: the page number carries a NAPOT size (see decodeNapotPages). */
  readonly s: boolean;
  /** Untranslated address bits 63:12. */
  readonly page: number;
  /** Invalidation tag (0..31) the completion must echo. */
  readonly itag: number;
}

/** What an endpoint exposes to receive messages from the IOMMU. */
export interface EndpointPort {
  invalidationRequest(msg: InvalidationRequest): void;
  prgResponse(msg: PrgResponse): void;
}

/** What an IOMMU exposes to the IO bridge and to endpoints. */
export interface TranslationAgent {
  translate(req: DmaRequest, out: DmaResponse): void;
  atsTranslate(req: AtsRequest, out: AtsCompletion): void;
  pageRequest(msg: PageRequestMessage): void;
  /** An Invalidation Completion message: each set bit of `itagVector` completes that ITag. */
  invalidationCompletion(deviceId: number, itagVector: number): void;
  /** Connects the endpoint that receives messages addressed to `deviceId`. */
  connectPort(deviceId: number, port: EndpointPort): void;
  disconnectPort(deviceId: number): void;
}
