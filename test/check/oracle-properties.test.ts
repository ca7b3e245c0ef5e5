// Properties of the isolation oracle over random DMA-API traffic of two devices in separate
// groups (acc0 with ATS, gpu0 without) behind one RISC-V IOMMU: buffers mapped and unmapped,
// device reads and writes (Untranslated or through the ATC) at any IOVA either device was ever
// given, time passing.
// - strict invalidation: the oracle finds nothing;
// - lazy invalidation: every finding is a stale access in the lazy window, at an IOVA of that
//   device unmapped since the last flush-queue flush;
// - either way, attaching the oracle changes nothing the machine does.

import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { pciDevId } from "../../src/bus/pci.js";
import type { PciDev } from "../../src/bus/pci-dev.js";
import { attachOracle } from "../../src/check/oracle.js";
import { DMA_BIDIRECTIONAL } from "../../src/dma/constants.js";
import type { TestDevice } from "../../src/hw/endpoints/test-device.js";
import { buildMachine } from "../../src/machine/build.js";
import { machineDescription } from "../../src/machine/load.js";
import type { Machine } from "../../src/machine/machine.js";

const DEVICES = ["acc0", "gpu0"] as const;
type Name = (typeof DEVICES)[number];

const op = fc.oneof(
  fc.record({ kind: fc.constant("map" as const), dev: fc.constantFrom(...DEVICES) }),
  fc.record({
    kind: fc.constant("unmap" as const),
    dev: fc.constantFrom(...DEVICES),
    pick: fc.nat(),
  }),
  fc.record({
    kind: fc.constant("dma" as const),
    dev: fc.constantFrom(...DEVICES),
    pick: fc.nat(),
    write: fc.boolean(),
    ats: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("advance" as const),
    ns: fc.integer({ min: 0, max: 12_000_000 }),
  }),
);

type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

/** The outcome of every DMA, and what the machine looks like at the end. */
interface Run {
  readonly results: string[];
  readonly machine: string;
}

function boot(lazy: boolean): Machine {
  const boot = lazy ? { "iommu.strict": 0 } : {};
  return buildMachine(machineDescription({ extends: "default", boot }), { driver: "riscv" });
}

/**
 * Runs `ops` on `m`; `afterDma(dev, pending)` is called after each DMA with the pages of `dev`
 * unmapped since the last flush-queue flush (lazy mode), to judge the findings that DMA made.
 */
function run(
  m: Machine,
  ops: readonly Op[],
  afterDma?: (dev: Name, pending: Set<number>) => void,
): Run {
  const dev = (n: Name) => m.device(n) as PciDev;
  const model = (n: Name) => m.endpoints.model(n) as TestDevice;
  const live = new Map<Name, bigint[]>(DEVICES.map((n) => [n, []]));
  const ever: bigint[] = [];
  const pending = new Map<Name, Set<number>>(DEVICES.map((n) => [n, new Set()]));
  const results: string[] = [];
  const flushes = () => {
    const f = (m.dma.toJSON() as { stats: { fq_flushes: { full: number; timeout: number } } }).stats
      .fq_flushes;
    return f.full + f.timeout;
  };
  let seen = flushes();
  // A flush (timer or full ring) invalidates every IOVA queued before it.
  const noteFlush = () => {
    const now = flushes();
    if (now !== seen) for (const s of pending.values()) s.clear();
    seen = now;
  };
  let fill = 1;
  for (const o of ops) {
    switch (o.kind) {
      case "map": {
        const pa = BigInt(m.frames.alloc()) << 12n;
        m.memory.writeBytes(pa, new Uint8Array(8).fill(fill++ & 0xff));
        const iova = m.dma.mapSingle(dev(o.dev), pa, 0x1000n, DMA_BIDIRECTIONAL);
        expect(m.dma.mappingError(dev(o.dev), iova).ok).toBe(true);
        live.get(o.dev)!.push(iova);
        pending.get(o.dev)!.delete(Number(iova >> 12n));
        ever.push(iova);
        break;
      }
      case "unmap": {
        const l = live.get(o.dev)!;
        if (l.length === 0) break;
        const [iova] = l.splice(o.pick % l.length, 1);
        m.dma.unmapSingle(dev(o.dev), iova!, 0x1000n, DMA_BIDIRECTIONAL);
        noteFlush();
        if (m.dma.cookieOf(m.core.getDmaDomain(dev(o.dev))!)?.mode === "lazy") {
          pending.get(o.dev)!.add(Number(iova! >> 12n));
        }
        break;
      }
      case "dma": {
        if (ever.length === 0) break;
        const iova = ever[o.pick % ever.length]! + BigInt((o.pick % 8) * 8);
        const d = model(o.dev);
        const opts = { ats: o.ats && d.dma.usesAts };
        const r = o.write
          ? d.write(iova, new Uint8Array([o.pick & 0xff]), opts)
          : d.read(iova, 8, opts);
        results.push(`${o.dev} ${r.result} ${r.ok ? r.data.join(",") : ""}`);
        afterDma?.(o.dev, pending.get(o.dev)!);
        break;
      }
      case "advance":
        m.advance(o.ns);
        noteFlush();
        break;
    }
  }
  // The machine's view without its own report of an oracle (what is compared is the rest).
  const { isolation: _, ...view } = m.toJSON() as Record<string, unknown>;
  return { results, machine: JSON.stringify(view) };
}

test.prop([fc.array(op, { minLength: 1, maxLength: 60 })], { numRuns: 40 })(
  "strict: random map/unmap/DMA traffic gives no finding, and the oracle changes nothing",
  (ops) => {
    const m = boot(false);
    const oracle = attachOracle(m);
    const watched = run(m, ops);
    expect(oracle.findings()).toEqual([]);
    expect(oracle.verdict().isolated).toBe(true);
    const s = oracle.stats();
    expect(s.checked).toBe(s.agreed + s.expectedFaults);
    expect(s.pages).toBeGreaterThanOrEqual(watched.results.length);
    expect(s.unchecked).toEqual({});
    expect(watched).toEqual(run(boot(false), ops));
  },
);

test.prop([fc.array(op, { minLength: 1, maxLength: 60 })], { numRuns: 40 })(
  "lazy: every finding is a lazy-window stale access to an IOVA of that device unmapped and not yet flushed",
  (ops) => {
    const m = boot(true);
    const oracle = attachOracle(m);
    let judged = 0;
    const watched = run(m, ops, (dev, pending) => {
      const found = oracle.findings();
      for (const f of found.slice(judged)) {
        expect(f.kind).toBe("stale");
        expect(f.category).toMatch(/^stale-(iotlb|atc): lazy flush window$/);
        expect(f.device).toBe(dev);
        expect(f.rid).toBe((1 << 16) | pciDevId((m.device(dev) as PciDev).fn));
        expect(pending.has(Number(f.iova >> 12n))).toBe(true);
        expect(f.expected).toBeNull();
      }
      judged = found.length;
    });
    expect(oracle.verdict().findings).toBe(judged);
    expect(watched).toEqual(run(boot(true), ops));
  },
);
