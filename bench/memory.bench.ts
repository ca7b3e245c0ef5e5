import { PhysicalMemory } from "../src/hw/memory.js";
import type { BenchSuite } from "./harness.js";

export const suite: BenchSuite = {
  title: "memory",
  build(bench) {
    const mem = new PhysicalMemory([{ base: 0x8000_0000n, size: 64n << 20n }]);
    const ppn = 0x80000 + 17;
    mem.writablePageU32(ppn)![5] = 42;
    let sink = 0;
    bench.add("pageU32 read (hot path)", () => {
      sink ^= mem.pageU32(ppn)![5]!;
    });
    bench.add("read64 (bigint API)", () => {
      sink ^= Number(mem.read64(0x8001_1010n) & 1n);
    });
    if (sink === -1) throw new Error("unreachable");
  },
};
