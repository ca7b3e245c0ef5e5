import { createContext } from "../src/base/context.js";
import { FrameAllocator, PhysicalMemory } from "../src/hw/memory.js";
import { Cpu } from "../src/mm/cpu.js";
import {
  FAULT_FLAG_WRITE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_POPULATE,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../src/mm/flags.js";
import { dupMm, mmAlloc, mmput } from "../src/mm/fork.js";
import { handleMmFault } from "../src/mm/memory.js";
import { MmSubsystem } from "../src/mm/mm-types.js";
import { vmMmap, vmMunmap } from "../src/mm/mmap.js";
import { doMprotect } from "../src/mm/mprotect.js";
import type { BenchSuite } from "./harness.js";

const A = 0x40_0000n;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

export const suite: BenchSuite = {
  title: "mm",
  build(bench) {
    const memory = new PhysicalMemory([{ base: 0x8000_0000n, size: 256n << 20n }]);
    const sys = new MmSubsystem(createContext(), memory, new FrameAllocator(memory));
    const made = mmAlloc(sys);
    if (!made.ok) throw new Error(made.errno);
    const mm = made.value;
    const cpu = new Cpu(sys);
    if (!vmMmap(mm, A, 64n << 12n, RW, ANON | MAP_POPULATE).ok) throw new Error("mmap");
    let sink = 0n;
    bench.add("cpu.load64, page present (walk + copy)", () => {
      const r = cpu.load64(mm, A + 0x1008n);
      if (r.ok) sink ^= r.value;
    });
    bench.add("cpu.store64, page present", () => {
      cpu.store64(mm, A + 0x2010n, 5n);
    });
    const B = 0x1000_0000n;
    bench.add("mmap 1 page + write fault + munmap", () => {
      vmMmap(mm, B, 4096n, RW, ANON);
      handleMmFault(mm.vmaLookup(B)!, B, FAULT_FLAG_WRITE);
      vmMunmap(mm, B, 4096n);
    });
    bench.add("mprotect 64 populated pages RO then RW", () => {
      doMprotect(mm, A, 64n << 12n, PROT_READ);
      doMprotect(mm, A, 64n << 12n, RW);
    });
    const C = 0x2000_0000n;
    bench.add(
      "munmap 64 populated pages",
      () => {
        vmMunmap(mm, C, 64n << 12n);
      },
      {
        beforeEach() {
          vmMmap(mm, C, 64n << 12n, RW, ANON | MAP_POPULATE);
        },
      },
    );
    const D = 0x3000_0000n;
    bench.add(
      "write fault on the zero page (wp_page_copy), the table's only PTE",
      () => {
        handleMmFault(mm.vmaLookup(D)!, D, FAULT_FLAG_WRITE);
      },
      {
        beforeEach() {
          vmMmap(mm, D, 4096n, RW, ANON);
          handleMmFault(mm.vmaLookup(D)!, D, 0);
        },
        afterEach() {
          vmMunmap(mm, D, 4096n);
        },
      },
    );
    bench.add("fork (64 private pages) + exit of the child", () => {
      const child = dupMm(mm);
      if (child.ok) mmput(child.value);
    });
    if (sink === -1n) throw new Error("unreachable");
  },
};
