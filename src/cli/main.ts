// The command-line front end. The only layer that touches the host (process, console, files).

import { Command } from "commander";
import { formatSize } from "../base/bits.js";
import { FrameAllocator, PhysicalMemory } from "../hw/memory.js";

const program = new Command()
  .name("iommu-sim")
  .description("An executable model of the Linux IOMMU subsystem on a simulated RISC-V IOMMU");

program
  .command("demo", { isDefault: true })
  .description("boot the built-in default machine and tell its story")
  .action(() => {
    const ram = { base: 0x8000_0000n, size: 256n << 20n };
    const memory = new PhysicalMemory([ram]);
    const frames = new FrameAllocator(memory);
    const ppn = frames.alloc();
    memory.write64(BigInt(ppn) << 12n, 0x1234n);
    console.log(`iommu-sim: ${formatSize(ram.size)} of RAM at 0x${ram.base.toString(16)}`);
    console.log(`frames in use: ${frames.framesInUse} of ${frames.totalFrames}`);
  });

await program.parseAsync(process.argv);
