// Fault injection for the mock IOMMU driver: make the n-th call of a chosen driver op fail with
// a chosen errno, so every rollback path of the core runs (like the kernel's fail_nth, which
// iommufd's selftests drive through `iommufd_should_fail()`).

import type { Errno } from "../../base/errno.js";
import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import type { Device } from "../../bus/device.js";
import type { IommuDomain } from "../../iommu/domain.js";

/** Driver ops that can be made to fail. `alloc` counts every domain allocation. */
export const MOCK_OPS = [
  "probe_device",
  "device_group",
  "domain_alloc_paging",
  "domain_alloc_identity",
  "domain_alloc_sva",
  "alloc",
  "attach_dev",
  "set_dev_pasid",
  "map_pages",
  "iotlb_sync_map",
] as const;
export type MockOp = (typeof MOCK_OPS)[number];

/** What the op was called with, for rule filters and the log. */
export interface MockCallInfo {
  readonly dev?: Device | null;
  readonly domain?: IommuDomain | null;
  readonly pasid?: number;
}

export interface MockFaultRule {
  readonly op: MockOp;
  /** Fail the n-th matching call counted from when the rule was armed (1 = the next one). */
  readonly nth: number;
  readonly errno: Errno;
  /** How many consecutive matching calls fail from the n-th on (default 1). */
  readonly times?: number;
  /** Only calls this accepts count. */
  readonly filter?: (info: MockCallInfo) => boolean;
  /** `map_pages` only: how many 4 KiB pages are mapped before the failure (default 0). */
  readonly partialPages?: number;
}

interface ArmedRule {
  readonly rule: MockFaultRule;
  seen: number;
  failed: number;
}

/** A failure that was injected. */
export interface InjectedFault {
  readonly op: MockOp;
  readonly errno: Errno;
  readonly call: number;
  readonly dev: string | null;
  readonly pasid: number | null;
}

export class MockFaultInjector {
  readonly #rules: ArmedRule[] = [];
  readonly #calls = new Map<MockOp, number>();
  readonly #injected: InjectedFault[] = [];

  /** Arms a rule; several rules may be armed at once (the first that fires wins). */
  arm(rule: MockFaultRule): void {
    if (!MOCK_OPS.includes(rule.op))
      throw new SimError(`mock fault injection: unknown op ${rule.op}`);
    if (!Number.isInteger(rule.nth) || rule.nth < 1) {
      throw new SimError(`mock fault injection: nth must be >= 1, got ${rule.nth}`);
    }
    this.#rules.push({ rule, seen: 0, failed: 0 });
  }

  disarmAll(): void {
    this.#rules.length = 0;
  }

  /** Rules still able to fire. */
  get armed(): number {
    return this.#rules.length;
  }

  /**
   * Called by the driver at the top of `op`: the errno to fail with, or null. The rule that
   * fires is returned too (for `partialPages`).
   */
  check(op: MockOp, info: MockCallInfo = {}): { errno: Errno; rule: MockFaultRule } | null {
    const n = (this.#calls.get(op) ?? 0) + 1;
    this.#calls.set(op, n);
    for (let i = 0; i < this.#rules.length; i++) {
      const armed = this.#rules[i]!;
      const r = armed.rule;
      if (r.op !== op) continue;
      if (r.filter && !r.filter(info)) continue;
      armed.seen++;
      if (armed.seen < r.nth) continue;
      armed.failed++;
      if (armed.failed >= (r.times ?? 1)) this.#rules.splice(i, 1);
      this.#injected.push({
        op,
        errno: r.errno,
        call: n,
        dev: info.dev?.name ?? null,
        pasid: info.pasid ?? null,
      });
      return { errno: r.errno, rule: r };
    }
    return null;
  }

  /** Calls made to `op` so far (failed ones included). */
  calls(op: MockOp): number {
    return this.#calls.get(op) ?? 0;
  }

  injected(): readonly InjectedFault[] {
    return this.#injected;
  }

  toJSON(): Json {
    return {
      armed: this.#rules.map((a) => ({
        op: a.rule.op,
        nth: a.rule.nth,
        errno: a.rule.errno,
        seen: a.seen,
      })),
      injected: this.#injected.map((f) => ({ ...f })),
    };
  }
}
