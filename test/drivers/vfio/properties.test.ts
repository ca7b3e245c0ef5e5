// Property: through any sequence of VFIO type1 maps and unmaps, the device reaches exactly the
// process pages mapped at each IOVA page (and faults everywhere else), and every call returns
// what a reference model of vfio_dma_do_map / vfio_dma_do_unmap predicts (EEXIST on overlap,
// EINVAL for a range that cuts a mapping, the bytes unmapped otherwise).

import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { err, ok, unwrap } from "../../../src/base/result.js";
import { VFIO_TYPE1v2_IOMMU } from "../../../src/drivers/vfio/group.js";
import {
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
} from "../../../src/drivers/vfio/type1.js";
import { BUF_PAGES, BUF_VA, vfioMachine } from "./fixture.js";

const X = 0x4_0000_0000n;
const WINDOW = 16;
const RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

const op = fc.oneof(
  fc.record({
    kind: fc.constant("map" as const),
    iovaPage: fc.integer({ min: 0, max: WINDOW - 1 }),
    vaPage: fc.integer({ min: 0, max: BUF_PAGES - 1 }),
    pages: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({
    kind: fc.constant("unmap" as const),
    iovaPage: fc.integer({ min: 0, max: WINDOW - 1 }),
    pages: fc.integer({ min: 1, max: 8 }),
  }),
);

interface Mapping {
  start: number;
  pages: number;
  vaPage: number;
}

test.prop([fc.array(op, { minLength: 1, maxLength: 25 })], { numRuns: 30 })(
  "type1 mappings: the device reaches exactly the mapped pages",
  (ops) => {
    const r = vfioMachine();
    const vdev = r.bindVfio("acc0");
    unwrap(vdev.group.open());
    const c = r.vfio.openContainer();
    unwrap(vdev.group.setContainer(c));
    unwrap(c.setIommu(VFIO_TYPE1v2_IOMMU));
    const mm = r.proc.mm!;
    // Each process page holds its own index, so the device can tell which page it reached.
    for (let p = 0; p < BUF_PAGES; p++) {
      expect(r.m.cpu.store(mm, BUF_VA + BigInt(p) * 4096n, Uint8Array.of(0x40 + p)).ok).toBe(true);
    }
    const dev = r.endpoint("acc0");
    let model: Mapping[] = [];
    const at = (page: number) => model.find((m) => page >= m.start && page < m.start + m.pages);
    for (const o of ops) {
      const iova = X + BigInt(o.iovaPage) * 4096n;
      if (o.kind === "map") {
        const pages = Math.min(o.pages, BUF_PAGES - o.vaPage);
        const overlap = model.some(
          (m) => m.start < o.iovaPage + pages && o.iovaPage < m.start + m.pages,
        );
        const got = c.mapDma(
          r.proc,
          BUF_VA + BigInt(o.vaPage) * 4096n,
          iova,
          BigInt(pages) * 4096n,
          RW,
        );
        expect(got).toEqual(overlap ? err("EEXIST") : ok(undefined));
        if (!overlap) model.push({ start: o.iovaPage, pages, vaPage: o.vaPage });
      } else {
        const last = o.iovaPage + o.pages - 1;
        const head = at(o.iovaPage);
        const tail = at(last);
        const cuts =
          (head !== undefined && head.start !== o.iovaPage) ||
          (tail !== undefined && tail.start + tail.pages - 1 !== last);
        const got = c.unmapDma(iova, BigInt(o.pages) * 4096n);
        if (cuts) {
          expect(got).toEqual(err("EINVAL"));
        } else {
          const gone = model.filter((m) => m.start >= o.iovaPage && m.start + m.pages - 1 <= last);
          expect(got).toEqual(ok(BigInt(gone.reduce((n, m) => n + m.pages, 0)) * 4096n));
          model = model.filter((m) => !gone.includes(m));
        }
      }
      for (let p = 0; p < WINDOW; p++) {
        const m = at(p);
        const read = dev.read(X + BigInt(p) * 4096n, 1);
        if (m === undefined) expect(read.ok).toBe(false);
        else
          expect(read).toMatchObject({
            ok: true,
            data: Uint8Array.of(0x40 + m.vaPage + p - m.start),
          });
      }
    }
    vdev.group.close();
    expect(r.groupOf(vdev.dev).domain).toBe(r.groupOf(vdev.dev).defaultDomain);
    r.invariants();
  },
);
