// Property tests: random call sequences (probe/release, driver bind/unbind, use/unuse,
// claim/release, attach/detach, group handles, PASID attach/replace/detach, map/unmap, sysfs type
// changes, driver failures injected into the very call that is made) keep every invariant after
// every step, and DMA ownership agrees with a small reference model of §4.2/§4.3.

import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import type { Errno } from "../../src/base/errno.js";
import { type Result, unwrap } from "../../src/base/result.js";
import { Device, type DeviceDriver } from "../../src/bus/device.js";
import { checkCore } from "../../src/check/invariants.js";
import type { MockPagingDomain } from "../../src/drivers/mock/mock-domain.js";
import { MockIommuDriver } from "../../src/drivers/mock/mock-iommu.js";
import { IOMMU_READ } from "../../src/iommu/constants.js";
import { IommuAttachHandle, type IommuDomain } from "../../src/iommu/domain.js";
import type { DmaOwnerCookie, IommuGroup } from "../../src/iommu/group.js";
import { bed, platformFw } from "./setup.js";

const SLOTS = 6;
const COOKIES = ["vfio", "ictx"] as const;

/** A driver failure injected into the call: the `nth` matching driver call fails. */
type Fail = { readonly e: "EIO" | "ENOMEM"; readonly nth: number } | null;
type Op =
  | { k: "add"; s: number; fail: Fail }
  | { k: "remove"; s: number }
  | { k: "bind"; s: number }
  | { k: "unbind"; s: number }
  | { k: "use"; s: number }
  | { k: "unuse"; s: number }
  | { k: "claimGroup"; s: number; c: number | null; fail: Fail }
  | { k: "claimDevice"; s: number; c: number | null; fail: Fail }
  | { k: "releaseGroup"; s: number }
  | { k: "releaseDevice"; s: number }
  | { k: "attach"; s: number; d: number; fail: Fail }
  | { k: "detach"; s: number }
  | { k: "attachHandle"; s: number; d: number; fail: Fail }
  | { k: "replaceHandle"; s: number; d: number; fail: Fail }
  | { k: "detachHandle"; s: number }
  | { k: "attachPasid"; s: number; p: number; d: number; handle: boolean; fail: Fail }
  | { k: "replacePasid"; s: number; p: number; d: number; fail: Fail }
  | { k: "detachPasid"; s: number; p: number }
  | { k: "map"; s: number; d: number; page: number; n: number; fail: Fail }
  | { k: "unmap"; s: number; d: number; page: number; n: number }
  | { k: "storeType"; s: number; t: "identity" | "DMA" | "DMA-FQ" | "auto" };

const slot = fc.nat({ max: SLOTS - 1 });
const dom = fc.nat({ max: 1 });
const pasid = fc.constantFrom(1, 2, 3, 70);
/** A driver failure injected into the call, one call in six. */
const fail: fc.Arbitrary<Fail> = fc.oneof(
  { arbitrary: fc.constant(null), weight: 5 },
  {
    arbitrary: fc.record({
      e: fc.constantFrom<"EIO" | "ENOMEM">("EIO", "ENOMEM"),
      nth: fc.integer({ min: 1, max: 2 }),
    }),
    weight: 1,
  },
);
const cookie = fc.option(fc.nat({ max: 1 }), { nil: null, freq: 8 });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ k: fc.constant("add" as const), s: slot, fail }), weight: 2 },
  fc.record({ k: fc.constant("remove" as const), s: slot }),
  fc.record({ k: fc.constant("bind" as const), s: slot }),
  fc.record({ k: fc.constant("unbind" as const), s: slot }),
  fc.record({ k: fc.constant("use" as const), s: slot }),
  fc.record({ k: fc.constant("unuse" as const), s: slot }),
  fc.record({ k: fc.constant("claimGroup" as const), s: slot, c: cookie, fail }),
  fc.record({ k: fc.constant("claimDevice" as const), s: slot, c: cookie, fail }),
  fc.record({ k: fc.constant("releaseGroup" as const), s: slot }),
  fc.record({ k: fc.constant("releaseDevice" as const), s: slot }),
  fc.record({ k: fc.constant("attach" as const), s: slot, d: dom, fail }),
  fc.record({ k: fc.constant("detach" as const), s: slot }),
  fc.record({ k: fc.constant("attachHandle" as const), s: slot, d: dom, fail }),
  fc.record({ k: fc.constant("replaceHandle" as const), s: slot, d: dom, fail }),
  fc.record({ k: fc.constant("detachHandle" as const), s: slot }),
  {
    arbitrary: fc.record({
      k: fc.constant("attachPasid" as const),
      s: slot,
      p: pasid,
      d: dom,
      handle: fc.boolean(),
      fail,
    }),
    weight: 2,
  },
  fc.record({ k: fc.constant("replacePasid" as const), s: slot, p: pasid, d: dom, fail }),
  fc.record({ k: fc.constant("detachPasid" as const), s: slot, p: pasid }),
  fc.record({
    k: fc.constant("map" as const),
    s: slot,
    d: dom,
    page: fc.nat({ max: 1023 }),
    n: fc.integer({ min: 1, max: 600 }),
    fail,
  }),
  fc.record({
    k: fc.constant("unmap" as const),
    s: slot,
    d: dom,
    page: fc.nat({ max: 1023 }),
    n: fc.integer({ min: 1, max: 600 }),
  }),
  fc.record({
    k: fc.constant("storeType" as const),
    s: slot,
    t: fc.constantFrom("identity", "DMA", "DMA-FQ", "auto"),
  }),
);

/** §4.2 as a pure function: a group's (owner_cnt, owner) and the predicted result of each call. */
interface OwnerState {
  cnt: number;
  owner: DmaOwnerCookie | null;
}
interface Observed {
  /** group.domain is NULL or the default domain. */
  readonly onDefault: boolean;
  readonly pasidEmpty: boolean;
}
type Prediction = { errno: Errno | null; next: OwnerState; warn?: boolean };

const model = {
  use(st: OwnerState, o: Observed): Prediction {
    if (st.cnt > 0 && (!o.onDefault || st.owner !== null || !o.pasidEmpty))
      return { errno: "EBUSY", next: st };
    return { errno: null, next: { cnt: st.cnt + 1, owner: st.owner } };
  },
  unuse(st: OwnerState, o: Observed): Prediction {
    if (st.cnt === 0 || !o.pasidEmpty) return { errno: null, next: st, warn: true };
    return { errno: null, next: { cnt: st.cnt - 1, owner: st.owner } };
  },
  take(st: OwnerState, o: Observed, c: DmaOwnerCookie): Prediction {
    if (!o.onDefault || !o.pasidEmpty) return { errno: "EBUSY", next: st };
    return { errno: null, next: { cnt: 1, owner: c } };
  },
  claimGroup(st: OwnerState, o: Observed, c: DmaOwnerCookie | null): Prediction {
    if (c === null) return { errno: "EINVAL", next: st, warn: true };
    if (st.cnt > 0) return { errno: "EPERM", next: st };
    return model.take(st, o, c);
  },
  claimDevice(st: OwnerState, o: Observed, c: DmaOwnerCookie | null): Prediction {
    if (c === null) return { errno: "EINVAL", next: st, warn: true };
    if (st.cnt > 0) {
      if (st.owner !== c) return { errno: "EPERM", next: st };
      return { errno: null, next: { cnt: st.cnt + 1, owner: c } };
    }
    return model.take(st, o, c);
  },
  releaseFull(st: OwnerState, o: Observed): Prediction {
    if (st.cnt === 0 || st.owner === null || !o.pasidEmpty)
      return { errno: null, next: st, warn: true };
    return { errno: null, next: { cnt: 0, owner: null } };
  },
  releaseDevice(st: OwnerState, o: Observed): Prediction {
    if (st.cnt > 1) return { errno: null, next: { cnt: st.cnt - 1, owner: st.owner } };
    return model.releaseFull(st, o);
  },
};

function machine() {
  const b = bed();
  const hwA = new Device("iommuA", b.platform);
  const hwB = new Device("iommuB", b.platform);
  b.model.deviceAdd(hwA);
  b.model.deviceAdd(hwB);
  // A: one shared group, static blocked and identity domains, 4 KiB + 2 MiB pages.
  const drvA = new MockIommuDriver(b.core, {
    name: "A",
    claimBus: "platform",
    deviceGroup: "single",
    defaultDomain: "none",
    staticIdentity: true,
    pgsizeBitmap: (1n << 12n) | (1n << 21n),
    pasid1024Quirk: false,
  });
  // B: a group per device, no static blocked domain (blocking = empty paging domain).
  const drvB = new MockIommuDriver(b.core, {
    name: "B",
    claimBus: "platform",
    defaultDomain: "none",
    staticBlocked: false,
    allocIdentity: true,
  });
  unwrap(drvA.registerInstance("iommuA", hwA));
  unwrap(drvB.registerInstance("iommuB", hwB));
  const devs = Array.from(
    { length: SLOTS },
    (_, i) =>
      new Device(
        `s${i}`,
        b.platform,
        platformFw(`s${i}`, i < 3 ? hwA : hwB, i % 2 === 0 ? { pasidBits: 6 } : {}),
      ),
  );
  const nic: DeviceDriver = { name: "nic", bus: b.platform };
  b.model.driverRegister(nic);
  return { ...b, drvA, drvB, devs, nic };
}

function run(ops: readonly Op[]): void {
  const m = machine();
  const pools = new Map<MockIommuDriver, IommuDomain[]>([
    [m.drvA, []],
    [m.drvB, []],
  ]);
  const owners = new Map<IommuGroup, OwnerState>();
  const drvOf = (s: number) => (s < 3 ? m.drvA : m.drvB);
  /** Successful direct `use` calls per slot not yet matched by an `unuse`. */
  const uses = new Array<number>(SLOTS).fill(0);

  /** Pool domain `d` of the slot's driver, allocated on first use (outside any fault window). */
  const poolDomain = (s: number, d: number): IommuDomain | null => {
    const dev = m.devs[s]!;
    const pool = pools.get(drvOf(s))!;
    while (pool.length <= d) {
      const r = m.core.pagingDomainAlloc(dev);
      if (!r.ok) return null;
      pool.push(r.value);
    }
    return pool[d]!;
  };
  const armFor = (
    drv: MockIommuDriver,
    op: "attach_dev" | "set_dev_pasid" | "alloc" | "map_pages",
    f: Fail,
    target: IommuDomain | Device | null,
  ) => {
    if (f === null) return;
    drv.faults.arm({
      op,
      nth: f.nth,
      errno: f.e,
      ...(op === "map_pages" ? { partialPages: 1 } : {}),
      ...(target === null ? {} : { filter: (i) => i.domain === target || i.dev === target }),
    });
  };
  const ownerOf = (g: IommuGroup): OwnerState => {
    let st = owners.get(g);
    if (!st) {
      st = { cnt: 0, owner: null };
      owners.set(g, st);
    }
    return st;
  };
  const observed = (g: IommuGroup): Observed => ({
    onDefault: g.domain === null || g.domain === g.defaultDomain,
    pasidEmpty: g.pasidArray.isEmpty(),
  });
  /** Compare a real ownership call with the model. `injected` errnos must leave the state alone. */
  const ownership = (
    g: IommuGroup,
    p: Prediction,
    call: () => Result | undefined,
    injected: Fail,
  ) => {
    const warnsBefore = m.ctx.warnings.count;
    const r = call();
    const errno = r === undefined || r.ok ? null : r.errno;
    const st = ownerOf(g);
    if (errno !== null && errno === injected?.e && p.errno === null) {
      // A driver failure: the state must not have moved.
      expect([g.ownerCnt, g.owner]).toEqual([st.cnt, st.owner]);
      return;
    }
    expect(errno).toBe(p.errno);
    expect(m.ctx.warnings.count > warnsBefore).toBe(p.warn === true);
    owners.set(g, p.next);
    expect([g.ownerCnt, g.owner]).toEqual([p.next.cnt, p.next.owner]);
  };

  // Every device starts present; the sequence may remove and re-add them.
  for (const d of m.devs) m.model.deviceAdd(d);
  for (const op of ops) {
    const dev = m.devs[op.s]!;
    const drv = drvOf(op.s);
    const g = dev.registered ? m.core.groupOf(dev) : null;
    try {
      step(op);
    } finally {
      m.drvA.faults.disarmAll();
      m.drvB.faults.disarmAll();
    }
    // Groups that were released take their model state with them.
    for (const gr of [...owners.keys()]) if (gr.released) owners.delete(gr);
    const v = checkCore(m.core, { drivers: [m.drvA, m.drvB] });
    if (v.length > 0) throw new Error(`after ${JSON.stringify(op)}: ${JSON.stringify(v)}`);

    function step(o: Op): void {
      switch (o.k) {
        case "add": {
          if (dev.registered) return;
          armFor(drv, "attach_dev", o.fail, dev);
          m.model.deviceAdd(dev);
          return;
        }
        case "remove": {
          if (!dev.registered || dev.driver !== null) return;
          if (g !== null && g.devices.length === 1 && (g.ownerCnt !== 0 || !g.pasidArray.isEmpty()))
            return;
          m.model.deviceDel(dev);
          return;
        }
        case "bind":
        case "use": {
          if (g === null || (o.k === "bind" && dev.driver !== null)) return;
          const p = model.use(ownerOf(g), observed(g));
          ownership(
            g,
            p,
            () =>
              o.k === "bind"
                ? m.model.deviceDriverAttach(m.nic, dev)
                : m.core.deviceUseDefaultDomain(dev),
            null,
          );
          if (o.k === "use" && p.errno === null) uses[o.s]!++;
          return;
        }
        case "unbind":
        case "unuse": {
          if (g === null || (o.k === "unbind" && dev.driver === null)) return;
          // An unuse without a matching use is caller misuse (it can orphan a user owner).
          if (o.k === "unuse" && uses[o.s] === 0) return;
          const p = model.unuse(ownerOf(g), observed(g));
          ownership(
            g,
            p,
            () => {
              if (o.k === "unbind") m.model.deviceReleaseDriver(dev);
              else m.core.deviceUnuseDefaultDomain(dev);
              return undefined;
            },
            null,
          );
          if (o.k === "unuse") uses[o.s]!--;
          return;
        }
        case "claimGroup":
        case "claimDevice": {
          if (g === null) return;
          const c = o.c === null ? null : COOKIES[o.c]!;
          const st = ownerOf(g);
          const p =
            o.k === "claimGroup"
              ? model.claimGroup(st, observed(g), c)
              : model.claimDevice(st, observed(g), c);
          // A failure can only hit the blocking domain's allocation or attach.
          armFor(
            drv,
            drv === m.drvB ? "alloc" : "attach_dev",
            o.fail,
            drv === m.drvB ? null : drv.blockedDomain,
          );
          ownership(
            g,
            p,
            () =>
              o.k === "claimGroup"
                ? m.core.groupClaimDmaOwner(g, c)
                : m.core.deviceClaimDmaOwner(dev, c),
            o.fail,
          );
          return;
        }
        case "releaseGroup":
        case "releaseDevice": {
          if (g === null) return;
          const st = ownerOf(g);
          const p =
            o.k === "releaseGroup"
              ? model.releaseFull(st, observed(g))
              : model.releaseDevice(st, observed(g));
          ownership(
            g,
            p,
            () => {
              if (o.k === "releaseGroup") m.core.groupReleaseDmaOwner(g);
              else m.core.deviceReleaseDmaOwner(dev);
              return undefined;
            },
            null,
          );
          return;
        }
        case "attach":
        case "attachHandle":
        case "replaceHandle": {
          if (g === null) return;
          // Group handles are iommufd's, which always owns the group first.
          if (o.k !== "attach" && g.owner === null) return;
          const d = poolDomain(o.s, o.d);
          if (d === null) return;
          armFor(drv, "attach_dev", o.fail, d);
          const before = g.domain;
          const r =
            o.k === "attach"
              ? m.core.attachGroup(d, g)
              : o.k === "attachHandle"
                ? m.core.attachGroupHandle(d, g, new IommuAttachHandle())
                : m.core.replaceGroupHandle(g, d, new IommuAttachHandle());
          expect(g.domain).toBe(r.ok ? d : before);
          return;
        }
        case "detach":
        case "detachHandle": {
          if (g === null || g.domain === null) return;
          if (o.k === "detachHandle" && g.owner === null) return;
          // iommu_detach_group under a group handle is caller misuse (iommufd uses the handle API).
          if (o.k === "detach" && g.pasidArray.load(0) !== undefined) return;
          if (o.k === "detach") m.core.detachGroup(null, g);
          else m.core.detachGroupHandle(null, g);
          expect(g.domain).toBe(g.owner !== null ? g.blockingDomain : g.defaultDomain);
          return;
        }
        case "attachPasid":
        case "replacePasid": {
          if (g === null) return;
          const d = poolDomain(o.s, o.d);
          if (d === null) return;
          armFor(drv, "set_dev_pasid", o.fail, d);
          const before = g.pasidArray.load(o.p);
          const h = o.k === "attachPasid" && !o.handle ? null : new IommuAttachHandle();
          const r =
            o.k === "attachPasid"
              ? m.core.attachDevicePasid(d, dev, o.p, h)
              : m.core.replaceDevicePasid(d, dev, o.p, h);
          if (!r.ok) expect(g.pasidArray.load(o.p)).toBe(before);
          return;
        }
        case "detachPasid": {
          if (g === null) return;
          const e = g.pasidArray.load(o.p);
          if (e === undefined) return;
          m.core.detachDevicePasid(e.kind === "domain" ? e.domain : e.handle.domain!, dev, o.p);
          return;
        }
        case "map": {
          if (g === null) return;
          const d = poolDomain(o.s, o.d);
          if (d === null) return;
          armFor(drv, "map_pages", o.fail, d);
          const pfns = (d as MockPagingDomain).pfns;
          const before = pfns.size;
          let free = true;
          for (let i = 0; i < o.n && free; i++) free = !pfns.has(o.page + i);
          const r = m.core.mapPfn(d, o.page, o.page + 0x1000, o.n, IOMMU_READ);
          // A failed map over a free range leaves nothing behind (the core unwinds it).
          if (!r.ok && free) expect(pfns.size).toBe(before);
          if (r.ok && free) expect(pfns.size).toBe(before + o.n);
          return;
        }
        case "unmap": {
          if (g === null) return;
          const d = poolDomain(o.s, o.d);
          if (d === null) return;
          m.core.unmapPfn(d, o.page, o.n);
          return;
        }
        case "storeType": {
          if (g === null) return;
          const before = g.defaultDomain;
          const r = m.core.groupStoreType(g, o.t);
          if (!r.ok) expect(g.defaultDomain).toBe(before);
          if (r.ok || r.errno !== "EPERM") return;
          expect(g.ownerCnt).toBeGreaterThan(0);
          return;
        }
      }
    }
  }
}

test.prop([fc.array(opArb, { minLength: 1, maxLength: 40 })], { numRuns: 250 })(
  "random call sequences keep every invariant and agree with the DMA-ownership model",
  (ops) => {
    run(ops);
  },
);

test.prop([fc.array(opArb, { minLength: 20, maxLength: 120 })], { numRuns: 40 })(
  "long call sequences keep every invariant",
  (ops) => {
    run(ops);
  },
);
