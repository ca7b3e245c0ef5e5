// Property: whatever the traffic — frames sent (MAC loopback or onto the wire), frames arriving
// from the wire, polls, the machine running, time passing — the NIC reaches only pages the driver
// has mapped for it at that moment (rings and buffers), its DMA never faults, and every frame
// handed up is a frame that was sent or arrived. On strict, lazy and identity default domains.

import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { IOVA_DEFAULT_FQ_TIMEOUT } from "../../../src/dma/flush-queue.js";
import { frame, nicMachine } from "./fixture.js";

const op = fc.oneof(
  fc.record({ kind: fc.constant("xmit" as const), len: fc.integer({ min: 1, max: 3000 }) }),
  fc.record({ kind: fc.constant("wire" as const), len: fc.integer({ min: 1, max: 3000 }) }),
  fc.record({ kind: fc.constant("run" as const) }),
  fc.record({ kind: fc.constant("poll" as const) }),
  fc.record({ kind: fc.constant("advance" as const) }),
);

const BOOTS = [{}, { "iommu.strict": 0 }, { "iommu.passthrough": 1 }];

test.prop(
  [
    fc.constantFrom(0, 1, 2),
    fc.boolean(),
    fc.constantFrom(2048, 1024, 256),
    fc.array(op, { minLength: 1, maxLength: 40 }),
  ],
  { numRuns: 40 },
)("NIC DMA stays inside the buffers mapped at the time", (boot, loopback, bsize, ops) => {
  const r = nicMachine({
    boot: BOOTS[boot]!,
    nic: { loopback, rxBufferSize: bsize as 2048 | 1024 | 256, txDescs: 16, rxDescs: 16 },
  });
  const accessed: number[] = [];
  r.hw.dma.status.pages = accessed;
  const sent: string[] = [];
  let seed = 0;
  const mappedPages = () =>
    new Set(
      r.adapter
        .mappedBuffers()
        .flatMap((b) => Array.from({ length: b.pages }, (_, k) => b.ppn + k)),
    );
  for (const o of ops) {
    switch (o.kind) {
      case "xmit": {
        const f = frame(o.len, seed++);
        if (r.adapter.xmit(f) === "NETDEV_TX_OK") sent.push(f.join());
        break;
      }
      case "wire": {
        const f = frame(o.len, seed++);
        if (r.hw.receive(f)) sent.push(f.join());
        break;
      }
      case "run": {
        const allowed = mappedPages();
        accessed.length = 0;
        r.m.settle();
        for (const p of accessed) expect(allowed.has(p)).toBe(true);
        break;
      }
      case "poll":
        r.adapter.poll();
        break;
      case "advance":
        r.m.advance(IOVA_DEFAULT_FQ_TIMEOUT * 1_000_000);
        break;
    }
    expect(r.hw.lastError).toBeNull();
  }
  // Drain: run and poll until nothing moves.
  for (let i = 0; i < 40; i++) {
    const allowed = mappedPages();
    accessed.length = 0;
    r.m.settle();
    for (const p of accessed) expect(allowed.has(p)).toBe(true);
    const done = r.adapter.poll();
    if (done.tx === 0 && done.rx === 0 && r.hw.rxPending === 0) break;
  }
  expect(r.hw.lastError).toBeNull();
  const pool = new Map<string, number>();
  for (const s of sent) pool.set(s, (pool.get(s) ?? 0) + 1);
  for (const f of r.adapter.received) {
    const key = f.join();
    expect(pool.get(key) ?? 0).toBeGreaterThan(0);
    pool.set(key, pool.get(key)! - 1);
  }
  r.invariants();
});
