import { describe, expect, it } from "vitest";
import { Cpu } from "../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/flags.js";
import { mmput } from "../../src/mm/fork.js";
import { vmMmap } from "../../src/mm/mmap.js";
import { machine, must, newMm } from "./helpers.js";

const A = 0x40_0000n;

describe("VMA lookups", () => {
  it("find_vma gives the first VMA ending above the address, vma_lookup only a containing one", () => {
    const mm = newMm(machine().sys);
    must(vmMmap(mm, A, 0x2000n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED));
    must(vmMmap(mm, A + 0x8000n, 0x1000n, PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED));
    expect(mm.findVma(0n)!.start).toBe(A);
    expect(mm.findVma(A + 0x1fffn)!.start).toBe(A);
    expect(mm.findVma(A + 0x2000n)!.start).toBe(A + 0x8000n);
    expect(mm.findVma(A + 0x9000n)).toBeNull();
    expect(mm.vmaLookup(A + 0x2000n)).toBeNull();
    expect(mm.vmaLookup(A + 0x8fffn)!.start).toBe(A + 0x8000n);
    expect(mm.findVmaIntersection(A + 0x2000n, A + 0x8000n)).toBeNull();
    expect(mm.findVmaIntersection(A + 0x2000n, A + 0x8001n)!.start).toBe(A + 0x8000n);
  });
});

describe("JSON views", () => {
  it("shows an mm with its VMAs, RSS, page-table pages and placeholders", () => {
    const { sys } = machine();
    const mm = newMm(sys);
    must(vmMmap(mm, A, 0x2000n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED));
    must(
      vmMmap(
        mm,
        A + 0x2000n,
        0x1000n,
        PROT_READ | PROT_EXEC,
        MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED,
      ),
    );
    const cpu = new Cpu(sys);
    cpu.store64(mm, A, 1n);
    cpu.load64(mm, A + 0x2000n);
    expect(mm.toJSON()).toEqual({
      id: mm.id,
      pid: null,
      state: "live",
      users: 1,
      count: 1,
      mode: "Sv48",
      pgd: `0x${(mm.pgdPpn * 4096).toString(16)}`,
      map_count: 2,
      vmas: [
        {
          start: "0x400000",
          end: "0x402000",
          perms: "rw-p",
          flags: "0x100073",
          pgoff: "0x400",
          shmem: null,
          anon_vma: 1,
        },
        {
          start: "0x402000",
          end: "0x403000",
          perms: "r-xs",
          flags: "0xfd",
          pgoff: "0x0",
          shmem: 1,
          anon_vma: null,
        },
      ],
      rss: { anon: 1, shmem: 1, total: 2 },
      pgtable_pages: 4,
      notifiers: 0,
      iommu_mm: null,
    });
    mm.iommuMm = {};
    expect((mm.toJSON() as { iommu_mm: unknown }).iommu_mm).toBe("set");
    mmput(mm);
    expect(mm.toJSON()).toMatchObject({ state: "freed", pgd: null, vmas: [], pgtable_pages: 0 });
    expect(() => mm.onFinalDrop(() => {})).toThrow(/freed/);
  });

  it("shows the subsystem", () => {
    const { sys } = machine();
    const mm = newMm(sys);
    expect(sys.toJSON()).toEqual({
      zero_page: `0x${(sys.zeroPfn * 4096).toString(16)}`,
      mmap_min_addr: "0x1000",
      max_map_count: 65530,
      live_mms: [mm.id],
      pgfault: 0,
      pages: { pinned_frames: 0, orphaned_frames: 0 },
    });
  });
});
