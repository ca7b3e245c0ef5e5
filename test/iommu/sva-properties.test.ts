// Property tests for SVA and I/O page faults on the mock driver: random sequences of spawn, fork,
// exit, bind, unbind, page requests (last or partial, inside or outside the mappings, for bound
// or foreign PASIDs), IOPF work running one item at a time or flushed, binds with a driver
// failure injected, and an iommufd-like handler that keeps its groups, answers them late (or
// twice) and may lose its PASID (and its device's IOPF queue slot) while groups are pending. After every step every invariant holds (§1.10 #6–#8 among them), each bond's
// users equal the binds a reference model counts for its (device, mm), an mm's PASID never
// changes while the mm lives, and no request is answered twice; once the work has run every
// request owed an answer got exactly one. At the end, unbinding everything and reaping every
// process frees every PASID and SVA domain.

import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { OK, unwrap } from "../../src/base/result.js";
import type { TraceRecord } from "../../src/base/trace.js";
import type { Device } from "../../src/bus/device.js";
import { checkCore } from "../../src/check/invariants.js";
import { IOMMU_DOMAIN_SVA, IOMMU_PASID_INVALID } from "../../src/iommu/constants.js";
import { IommuAttachHandle, type IopfGroup } from "../../src/iommu/domain.js";
import {
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
} from "../../src/iommu/fault.js";
import type { IommuSva } from "../../src/iommu/sva.js";
import type { MmStruct } from "../../src/mm/mm-types.js";
import type { Process } from "../../src/mm/process.js";
import { svaBed, UADDR } from "./sva-setup.js";

const DEVICES = 4;
const PROCS = 4;

type Op =
  | { k: "spawn" }
  | { k: "fork"; p: number }
  | { k: "exit"; p: number }
  | { k: "bind"; d: number; p: number; fail: "set_dev_pasid" | "domain_alloc_sva" | null }
  | { k: "unbind"; d: number; p: number }
  | {
      k: "fault";
      d: number;
      p: number;
      /** Pick a live bond (its device and mm) instead of the device and process slots. */
      bound: boolean;
      page: number;
      write: boolean;
      last: boolean;
      grpid: number;
    }
  | { k: "foreignFault"; d: number; pasid: number; grpid: number }
  | { k: "runOne" }
  | { k: "flush"; d: number }
  | { k: "keeperAttach" }
  | { k: "keeperDetach" }
  | { k: "keeperFault"; grpid: number; last: boolean }
  | { k: "keeperAnswer"; g: number; code: 0 | 1 | 2 }
  | { k: "keeperFree"; g: number };

const dev = fc.nat({ max: DEVICES - 1 });
const proc = fc.nat({ max: PROCS - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant("spawn" as const) }),
  fc.record({ k: fc.constant("fork" as const), p: proc }),
  fc.record({ k: fc.constant("exit" as const), p: proc }),
  {
    arbitrary: fc.record({
      k: fc.constant("bind" as const),
      d: dev,
      p: proc,
      fail: fc.constantFrom(
        null,
        null,
        null,
        null,
        "set_dev_pasid" as const,
        "domain_alloc_sva" as const,
      ),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ k: fc.constant("unbind" as const), d: dev, p: proc }), weight: 3 },
  {
    arbitrary: fc.record({
      k: fc.constant("fault" as const),
      d: dev,
      p: proc,
      bound: fc.boolean(),
      page: fc.nat({ max: 5 }),
      write: fc.boolean(),
      last: fc.boolean(),
      grpid: fc.nat({ max: 3 }),
    }),
    weight: 4,
  },
  fc.record({
    k: fc.constant("foreignFault" as const),
    d: dev,
    pasid: fc.integer({ min: 1, max: 9 }),
    grpid: fc.nat({ max: 3 }),
  }),
  { arbitrary: fc.record({ k: fc.constant("runOne" as const) }), weight: 2 },
  fc.record({ k: fc.constant("flush" as const), d: dev }),
  fc.record({ k: fc.constant("keeperAttach" as const) }),
  fc.record({ k: fc.constant("keeperDetach" as const) }),
  {
    arbitrary: fc.record({
      k: fc.constant("keeperFault" as const),
      grpid: fc.nat({ max: 3 }),
      last: fc.boolean(),
    }),
    weight: 2,
  },
  fc.record({
    k: fc.constant("keeperAnswer" as const),
    g: fc.nat({ max: 7 }),
    code: fc.constantFrom<0 | 1 | 2>(0, 1, 2),
  }),
  fc.record({ k: fc.constant("keeperFree" as const), g: fc.nat({ max: 7 }) }),
);

/** The PASID of the keeper domain: a fault-capable domain whose handler holds its groups. */
const KEEPER_PASID = 900;

test.prop([fc.array(opArb, { minLength: 1, maxLength: 40 })], { numRuns: 300 })(
  "random SVA/IOPF sequences keep every invariant, the bind counts and one answer per request",
  (ops) => {
    const b = svaBed();
    const devices: Device[] = [];
    for (let i = 0; i < DEVICES; i++) {
      devices.push(b.pdev(`d${i}`, { instance: i === DEVICES - 1 ? 1 : 0 }));
    }
    const procs: Process[] = [];
    const binds = new Map<string, { bond: IommuSva; count: number; mm: MmStruct }>();
    const pasids = new Map<MmStruct, number>();
    // Answers owed: last requests reported, and partial ones refused at once.
    let owed = 0;
    let answered = 0;
    b.ctx.trace.subscribe((r: TraceRecord) => {
      if (r.event === "iommu_core:iopf_report") {
        const f = r.fields as { last: boolean; result: string };
        if (f.last || f.result !== "0") owed++;
      } else if (r.event === "iommu_core:iopf_response") {
        answered++;
      }
    });
    const key = (d: Device, mm: MmStruct) => `${d.name}/${mm.id}`;
    // An iommufd-like handler on device 0: it keeps groups and answers (or not) when told.
    const held: IopfGroup[] = [];
    const keeper = unwrap(b.core.pagingDomainAlloc(devices[0]!));
    keeper.iopfHandler = (g) => {
      held.push(g);
      return OK;
    };
    let keeperOn = false;
    const live = (i: number): Process | undefined => {
      const p = procs[i % Math.max(procs.length, 1)];
      return p?.state === "running" ? p : undefined;
    };
    const mmOf = new Map<Process, MmStruct>();
    const add = (p: Process) => {
      procs.push(p);
      mmOf.set(p, p.mm!);
    };
    const spawn = () => {
      if (procs.length < PROCS * 2) add(b.spawn(`p${procs.length}`, 6));
    };
    spawn();

    const check = (step: string) => {
      expect(checkCore(b.core, { drivers: [b.mock] }), step).toEqual([]);
      expect(b.ctx.warnings.list(), step).toEqual([]);
      for (const [k, v] of binds) {
        expect(v.bond.users, `${step}: users of ${k}`).toBe(v.count);
      }
      for (const [mm, pasid] of pasids) {
        if (mm.state !== "freed") expect(b.core.mmGetPasid(mm), step).toBe(pasid);
      }
      expect(answered, step).toBeLessThanOrEqual(owed);
      expect(b.mock.pageResponses.length, step).toBe(answered);
    };

    for (const [i, op] of ops.entries()) {
      const step = `step ${i} ${JSON.stringify(op)}`;
      switch (op.k) {
        case "spawn":
          spawn();
          break;
        case "fork": {
          const p = live(op.p);
          if (p) {
            const c = unwrap(b.procs.fork(p));
            expect(c.mm!.iommuMm, step).toBeNull();
            add(c);
          }
          break;
        }
        case "exit": {
          const p = live(op.p);
          if (p) b.procs.exit(p);
          break;
        }
        case "bind": {
          const p = live(op.p);
          if (!p) break;
          const d = devices[op.d]!;
          if (op.fail) {
            b.mock.faults.arm({ op: op.fail, nth: 1, errno: "ENOMEM", filter: (x) => x.dev === d });
          }
          const r = b.core.svaBindDevice(d, p.mm!);
          b.mock.faults.disarmAll();
          const k = key(d, p.mm!);
          if (r.ok) {
            const entry = binds.get(k);
            if (entry) {
              expect(r.value, step).toBe(entry.bond);
              entry.count++;
            } else {
              binds.set(k, { bond: r.value, count: 1, mm: p.mm! });
            }
            const pasid = b.core.svaGetPasid(r.value);
            expect(pasid, step).not.toBe(IOMMU_PASID_INVALID);
            if (!pasids.has(p.mm!)) pasids.set(p.mm!, pasid);
          } else {
            expect(op.fail, `${step}: -${r.errno}`).not.toBeNull();
            expect(binds.get(k)?.count ?? 0, step).toBe(0);
          }
          break;
        }
        case "unbind": {
          const entries = [...binds.entries()];
          const pick = entries[(op.d * PROCS + op.p) % Math.max(entries.length, 1)];
          if (!pick) break;
          const [k, v] = pick;
          b.core.svaUnbindDevice(v.bond);
          if (--v.count === 0) binds.delete(k);
          break;
        }
        case "fault": {
          // Exited processes too: their mm may live on, bound, without users.
          const bonds = [...binds.values()];
          const pick = op.bound ? bonds[op.p % Math.max(bonds.length, 1)] : undefined;
          const p = procs[op.p % procs.length];
          const mm = pick?.mm ?? (p === undefined ? undefined : mmOf.get(p));
          const target = pick?.bond.dev ?? devices[op.d]!;
          if (mm === undefined || mm.state === "freed") break;
          const pasid = b.core.mmGetPasid(mm);
          if (pasid === IOMMU_PASID_INVALID) break;
          const perm = IOMMU_FAULT_PERM_READ | (op.write ? IOMMU_FAULT_PERM_WRITE : 0);
          b.mock.triggerIopf(target, {
            pasid,
            grpid: op.grpid,
            perm,
            addr: UADDR + BigInt(op.page) * 0x1000n,
            last: op.last,
          });
          break;
        }
        case "foreignFault":
          b.mock.triggerIopf(devices[op.d]!, {
            pasid: op.pasid + 100,
            grpid: op.grpid,
            perm: IOMMU_FAULT_PERM_READ,
            addr: UADDR,
          });
          break;
        case "runOne":
          b.mock.iopfQueue!.wq.runOne();
          break;
        case "flush":
          if (devices[op.d]!.iommu!.faultParam !== null) b.core.iopfQueueFlushDev(devices[op.d]!);
          break;
        case "keeperAttach":
          if (!keeperOn) {
            const h = new IommuAttachHandle("keeper");
            expect(b.core.attachDevicePasid(keeper, devices[0]!, KEEPER_PASID, h), step).toEqual(
              OK,
            );
            keeperOn = true;
          }
          break;
        case "keeperDetach":
          if (keeperOn) b.core.detachDevicePasid(keeper, devices[0]!, KEEPER_PASID);
          keeperOn = false;
          break;
        case "keeperFault":
          b.mock.triggerIopf(devices[0]!, {
            pasid: KEEPER_PASID,
            grpid: op.grpid,
            perm: IOMMU_FAULT_PERM_READ,
            addr: UADDR,
            last: op.last,
          });
          break;
        case "keeperAnswer": {
          const g = held[op.g % Math.max(held.length, 1)];
          if (g) b.core.iopfGroupResponse(g, op.code);
          break;
        }
        case "keeperFree": {
          const g = held[op.g % Math.max(held.length, 1)];
          if (g) {
            // Like iommufd's auto-response: whatever is still owed goes out before the free.
            b.core.iopfGroupResponse(g, IOMMU_PAGE_RESP_INVALID);
            b.core.iopfFreeGroup(g);
            held.splice(held.indexOf(g), 1);
          }
          break;
        }
      }
      check(step);
    }

    b.ctx.scheduler.settle();
    // The keeper answers what it still holds (a group answered already stays answered once).
    for (const g of held.splice(0)) {
      b.core.iopfGroupResponse(g, IOMMU_PAGE_RESP_SUCCESS);
      b.core.iopfFreeGroup(g);
    }
    check("settled");
    expect(answered).toBe(owed);
    if (keeperOn) b.core.detachDevicePasid(keeper, devices[0]!, KEEPER_PASID);
    // Tear everything down: every PASID and SVA domain goes with the last reference.
    for (const v of binds.values())
      for (let n = v.count; n > 0; n--) b.core.svaUnbindDevice(v.bond);
    for (const p of procs) if (p.state === "running") b.procs.exit(p);
    b.ctx.scheduler.settle();
    expect(b.core.toJSON()).toMatchObject({ global_pasids: [], sva_mms: [] });
    expect(b.core.domains().filter((d) => d.type === IOMMU_DOMAIN_SVA)).toEqual([]);
    expect(b.core.iopfGroups()).toEqual([]);
    expect(b.sys.liveMms()).toEqual([]);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
    expect(b.ctx.warnings.list()).toEqual([]);
  },
);
