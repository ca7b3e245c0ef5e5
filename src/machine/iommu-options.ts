// Driver-specific options of an IOMMU instance (`iommus.<name>.options`), one reader per
// driver. The mock driver's options choose which kernel-driver shape it takes (static domains,
// def_domain_type, group strategy, allocators) and arm fault injection at boot.

import { type Errno, errnoNames } from "../base/errno.js";
import { MOCK_OPS, type MockOp } from "../drivers/mock/fault-inject.js";
import { DEFAULT_CAPABILITIES, type IommuCapabilities } from "../hw/riscv-iommu/capabilities.js";
import { Diagnostics } from "./input/diagnostics.js";
import type { InputNode } from "./input/node.js";
import {
  boolean,
  checkKeys,
  integer,
  listOf,
  name,
  oneOf,
  optional,
  type Reader,
  refine,
  required,
  struct,
  u64,
} from "./input/schema.js";

export const IOMMU_CAP_NAMES = [
  "cache_coherency",
  "noexec",
  "pre_boot_protection",
  "enforce_cache_coherency",
  "deferred_flush",
  "dirty_tracking",
] as const;
export type IommuCapName = (typeof IOMMU_CAP_NAMES)[number];

/** A fault-injection rule: fail the `nth` matching call of `op` (and `times - 1` after it). */
export interface FaultRuleDescription {
  readonly op: MockOp;
  readonly nth: number;
  readonly errno: Errno;
  readonly times: number;
  /** Only calls for this device count. */
  readonly dev: string | undefined;
  /** Only calls for this PASID count (set_dev_pasid). */
  readonly pasid: number | undefined;
  /** map_pages: 4 KiB pages mapped before the failure. */
  readonly partialPages: number;
}

type StaticChoice = "blocked" | "identity" | "none";

export interface MockIommuOptions {
  /** Legacy static `ops.default_domain` (the iommufd selftest mock uses "blocked"). */
  readonly defaultDomain: StaticChoice;
  readonly releaseDomain: StaticChoice;
  /** Static `ops.blocked_domain`. */
  readonly staticBlocked: boolean;
  /** Static `ops.identity_domain`. */
  readonly staticIdentity: boolean;
  /** `domain_alloc_identity` (v6.16). */
  readonly allocIdentity: boolean;
  /** `def_domain_type` answer for every device ("none": the op is absent). */
  readonly defDomainType: "none" | "identity" | "dma";
  /** `device_group`: `generic_device_group` or `generic_single_device_group`. */
  readonly deviceGroup: "generic" | "single";
  /** Which paging allocators the driver implements. */
  readonly pagingOp: "flags" | "paging" | "both" | "none";
  readonly capabilities: readonly IommuCapName[];
  readonly attachDeferred: boolean;
  /** The selftest mock's PASID-1024 fake error on replace. */
  readonly pasid1024Quirk: boolean;
  /** Paging-domain aperture (inclusive); undefined = the mock's [1 << 24, 2^31 - 1]. */
  readonly aperture: { readonly start: bigint; readonly last: bigint } | undefined;
  /** The PASID range the driver imposes on PASID consumers (seed 002); undefined = no op. */
  readonly pasidRange: { readonly min: number; readonly max: number } | undefined;
  /** `domain_alloc_sva`. */
  readonly sva: boolean;
  /** The historical supervisor SVA op (seed 003). */
  readonly svaSupervisor: boolean;
  /** `page_response` (needed to put devices on an IOPF queue). */
  readonly pageResponse: boolean;
  /** The `mock-iopfq` IOPF queue allocated at init. */
  readonly iopfQueue: boolean;
  readonly faultInjection: readonly FaultRuleDescription[];
}

const staticChoice = oneOf(["blocked", "identity", "none"] as const);

const faultRuleFields = struct({
  op: required(oneOf(MOCK_OPS)),
  errno: required(oneOf(errnoNames())),
  nth: optional(integer({ min: 1, max: 1_000_000 }), 1),
  times: optional(integer({ min: 1, max: 1_000_000 }), 1),
  dev: optional(name()),
  pasid: optional(integer({ min: 0, max: 0xffff_ffff })),
  partial_pages: optional(integer({ min: 0, max: 1 << 30 }), 0),
});

export const readFaultRule: Reader<FaultRuleDescription> = (node, path, d) => {
  const f = faultRuleFields(node, path, d);
  if (!f) return undefined;
  return {
    op: f.op,
    errno: f.errno,
    nth: f.nth,
    times: f.times,
    dev: f.dev,
    pasid: f.pasid,
    partialPages: f.partial_pages,
  };
};

const readMockFields = struct({
  default_domain: optional(staticChoice, "none" as StaticChoice),
  release_domain: optional(staticChoice, "none" as StaticChoice),
  static_blocked: optional(boolean(), true),
  static_identity: optional(boolean(), true),
  alloc_identity: optional(boolean(), false),
  def_domain_type: optional(oneOf(["none", "identity", "dma"] as const), "none" as const),
  device_group: optional(oneOf(["generic", "single"] as const), "generic" as const),
  paging_op: optional(oneOf(["flags", "paging", "both", "none"] as const), "flags" as const),
  capabilities: optional(listOf(oneOf(IOMMU_CAP_NAMES)), ["cache_coherency"] as IommuCapName[]),
  attach_deferred: optional(boolean(), false),
  pasid_1024_quirk: optional(boolean(), true),
  aperture: optional(
    refine(struct({ start: required(u64()), last: required(u64()) }), (a) =>
      a.start > a.last ? "aperture start is above its last address" : undefined,
    ),
  ),
  fault_injection: optional(listOf(readFaultRule), []),
  sva: optional(boolean(), true),
  sva_supervisor: optional(boolean(), false),
  page_response: optional(boolean(), true),
  iopf_queue: optional(boolean(), true),
  pasid_range: optional(
    refine(
      struct({
        min: required(integer({ min: 0, max: 0xffff_fffe })),
        max: required(integer({ min: 0, max: 0xffff_fffe })),
      }),
      (r) => (r.min > r.max ? "pasid_range min is above max" : undefined),
    ),
  ),
});

function readMockOptions(
  node: InputNode,
  path: string,
  d: Diagnostics,
): MockIommuOptions | undefined {
  const f = readMockFields(node, path, d);
  if (!f) return undefined;
  const opts: MockIommuOptions = {
    defaultDomain: f.default_domain,
    releaseDomain: f.release_domain,
    staticBlocked: f.static_blocked,
    staticIdentity: f.static_identity,
    allocIdentity: f.alloc_identity,
    defDomainType: f.def_domain_type,
    deviceGroup: f.device_group,
    pagingOp: f.paging_op,
    capabilities: f.capabilities,
    attachDeferred: f.attach_deferred,
    pasid1024Quirk: f.pasid_1024_quirk,
    aperture: f.aperture,
    faultInjection: f.fault_injection,
    pasidRange: f.pasid_range,
    sva: f.sva,
    svaSupervisor: f.sva_supervisor,
    pageResponse: f.page_response,
    iopfQueue: f.iopf_queue,
  };
  // A static default/release domain must be one of the static domains the driver has.
  for (const [field, choice] of [
    ["default_domain", opts.defaultDomain],
    ["release_domain", opts.releaseDomain],
  ] as const) {
    if (
      (choice === "blocked" && !opts.staticBlocked) ||
      (choice === "identity" && !opts.staticIdentity)
    ) {
      d.error(node.loc, `${path}.${field}`, `"${choice}" needs static_${choice}: true`);
      return undefined;
    }
  }
  return opts;
}

// ---- the RISC-V IOMMU driver ----

/** Options of a RISC-V IOMMU: its hardware capabilities and the platform/driver parameters. */
export interface RiscvIommuOptionsDescription {
  /** Capability bits and fields overriding the defaults (hw/riscv-iommu DEFAULT_CAPABILITIES). */
  readonly capabilities: Readonly<Partial<IommuCapabilities>>;
  readonly irqs: number | undefined;
  readonly msi: boolean | undefined;
  readonly ddtMode: "1LVL" | "2LVL" | "3LVL" | undefined;
  readonly pscidBits: number | undefined;
}

/** Capability names and what values each takes. */
function readCapabilities(): Reader<Partial<IommuCapabilities>> {
  const names = Object.keys(DEFAULT_CAPABILITIES) as (keyof IommuCapabilities)[];
  return (node, path, d) => {
    if (node.kind !== "map") {
      d.error(node.loc, path, "expected a map of capability names to values");
      return undefined;
    }
    const out: Record<string, unknown> = {};
    let good = checkKeys(node, path, names, d);
    for (const e of node.entries) {
      const k = e.key as keyof IommuCapabilities;
      if (!names.includes(k)) continue;
      const p = `${path}.${e.key}`;
      const v =
        k === "IGS"
          ? oneOf(["MSI", "WSI", "BOTH"] as const)(e.value, p, d)
          : k === "version"
            ? integer({ min: 0, max: 0xff })(e.value, p, d)
            : k === "PAS"
              ? integer({ min: 32, max: 56 })(e.value, p, d)
              : boolean()(e.value, p, d);
      if (v === undefined) good = false;
      else out[k] = v;
    }
    return good ? (out as Partial<IommuCapabilities>) : undefined;
  };
}

const riscvFields = struct({
  capabilities: optional(readCapabilities(), {}),
  irqs: optional(integer({ min: 1, max: 4 })),
  msi: optional(boolean()),
  ddt_mode: optional(oneOf(["1LVL", "2LVL", "3LVL"] as const)),
  pscid_bits: optional(integer({ min: 1, max: 20 })),
});

function readRiscvOptions(
  node: InputNode,
  path: string,
  d: Diagnostics,
): RiscvIommuOptionsDescription | undefined {
  const f = riscvFields(node, path, d);
  if (!f) return undefined;
  return {
    capabilities: f.capabilities,
    irqs: f.irqs,
    msi: f.msi,
    ddtMode: f.ddt_mode,
    pscidBits: f.pscid_bits,
  };
}

/** Validated options, by driver. */
export type IommuDriverOptions =
  | { readonly driver: "mock"; readonly mock: MockIommuOptions }
  | { readonly driver: "riscv"; readonly riscv: RiscvIommuOptionsDescription };

/** Drivers a machine can use today, with their options readers. */
export const AVAILABLE_IOMMU_DRIVERS: readonly string[] = ["mock", "riscv"];

/**
 * Reads the options of an instance using `driver` (absent options = the driver's defaults);
 * undefined after reporting when they are invalid or the driver is not available yet.
 */
export function readIommuOptions(
  driver: string,
  node: InputNode | undefined,
  path: string,
  d: Diagnostics,
  driverLoc: InputNode["loc"],
): IommuDriverOptions | undefined {
  if (driver === "mock") {
    const mock = node === undefined ? defaultMockOptions() : readMockOptions(node, path, d);
    return mock && { driver: "mock", mock };
  }
  if (driver === "riscv") {
    const riscv = readRiscvOptions(node ?? { kind: "map", loc: driverLoc, entries: [] }, path, d);
    return riscv && { driver: "riscv", riscv };
  }
  d.error(
    driverLoc,
    path.replace(/\.options$/, ".driver"),
    `the ${driver} driver is not available yet (available: ${AVAILABLE_IOMMU_DRIVERS.join(", ")})`,
  );
  return undefined;
}

/** The mock driver's options when the description gives none. */
export function defaultMockOptions(): MockIommuOptions {
  return readMockOptions({ kind: "map", loc: {}, entries: [] }, "", new Diagnostics())!;
}

/** Field names of the drivers' options (docs/machine-description.md must cover them). */
export const DRIVER_OPTION_FIELDS: Readonly<Record<string, readonly string[]>> = {
  "options (mock)": readMockFields.fields,
  "fault_injection[]": faultRuleFields.fields,
  "options (riscv)": riscvFields.fields,
  "options.capabilities (riscv)": Object.keys(DEFAULT_CAPABILITIES),
};
