// `iommu-sim inspect`: each view of the machine at a step, page tables read from the real
// tables, and clear errors for a bad step or domain.

import { readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { demo } from "../../src/cli/demo.js";
import { inspect } from "../../src/cli/inspect.js";
import type { CliIo } from "../../src/cli/io.js";
import { runCli } from "../../src/cli/program.js";
import { machineHost } from "../../src/scenario/machine-host.js";

const STORY = "scenarios/demo/story.yaml";

async function cli(files: Record<string, string>, ...argv: string[]) {
  let out = "";
  let errOut = "";
  const io: CliIo = {
    stdout: (t) => {
      out += t;
    },
    stderr: (t) => {
      errOut += t;
    },
    readFile: (p) => files[p] ?? readFileSync(p, "utf8"),
    writeFile: (p, t) => writeFileSync(p, t),
    progress: () => null,
  };
  const code = await runCli(argv, io, { host: machineHost, demo, inspect });
  return { code, stdout: out, stderr: errOut };
}

const MOCK = `machine: single-mock
steps:
  - iommu_paging_domain_alloc: {dev: dev0}
    as: d
  - iommu_map: {domain: d, iova: 0x1000000, paddr: 0x80000000, size: 0x4000, prot: [IOMMU_READ, IOMMU_WRITE]}
  - iommu_map: {domain: d, iova: 0x1004000, paddr: 0x90000000, size: 0x1000, prot: IOMMU_READ}
  - iommu_attach_device: {domain: d, dev: dev0}
  - iommu_attach_device: {domain: d, dev: dev0}
    error: EBUSY
`;

describe("iommu-sim inspect", () => {
  it("shows groups, domains, PASIDs, IOMMU caches and queues, processes at the end of a scenario", async () => {
    const r = await cli({}, "inspect", STORY);
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/^scenarios\/demo\/story\.yaml \[riscv\] after step 84 of 84: /);
    expect(out).toContain("\nVirtual clock: 10000000 ns\n\nGroups:\n");
    expect(out).toMatch(
      /group 8 +br0, legacy0, legacy1 +domain 10 DMA \(default\); no DMA owner\n/,
    );
    expect(out).toMatch(
      /group 3 +dsa0 +domain 5 DMA \(default\); 1 kernel driver on the DMA API; PASIDs 1→5\n/,
    );
    // Counts agree in number; static domains say what they do instead of nothing.
    expect(out).toMatch(/domain 5 +DMA +iommu0, PSCID \d+, Sv57, 1 mapping\n/);
    expect(out).toContain("domain 0   IDENTITY   IOVA = physical address\n");
    expect(out).toContain("domain 1   BLOCKED    no DMA gets through\n");
    expect(out).toMatch(/domain 12 +DMA_FQ +iommu1, PSCID \d+, Sv57/);
    expect(out).toContain("dsa0 as programmed: RID → domain 5; PASID 1 → domain 5");
    expect(out).toMatch(/iommu0 \(riscv\):\n {2}IOTLB: \d+ entr/);
    // Context caches read like the rest: table addresses (not PPNs), no raw JSON.
    expect(out).toMatch(/DDT cache: \d+ entr/);
    expect(out).toMatch(
      /device_id 0x300: process directory PD20 at 0x[0-9a-f]+000\n|device_id 0x400: Sv57 page table at 0x[0-9a-f]+000, PSCID \d+\n/,
    );
    expect(out).toMatch(/PDT cache: \d+ entr/);
    const early = (await cli({}, "inspect", STORY, "--step", "20")).stdout;
    expect(early).toMatch(
      / {4}device_id 0x300 PASID 1: Sv57 page table at 0x[0-9a-f]+000, PSCID \d+\n/,
    );
    expect(early).not.toMatch(/[{"]deviceId/);
    // The three queues with their registers and their latest records from queue memory.
    expect(out).toMatch(
      /command queue: 8192 entries at 0x[0-9a-f]+; head (\d+), tail \1; \1 records so far, the latest 8:/,
    );
    expect(out).toMatch(/\] IOFENCE\.C raw=00000002 /);
    expect(out).toMatch(
      /fault queue: 4096 entries at 0x[0-9a-f]+; head 3, tail 3; 3 records so far, the latest 3:\n +\[0\] cause=ddt_entry_not_valid/,
    );
    expect(out).toContain("[1] device_id=0x300 pasid=2 addr=0x50001000 access=rw prgi=0 last=true");
    expect(out).toContain("pid 2 app1 (running), mm 2; no open files");
    expect(out).toMatch(
      /mm 2 of pid 2 \(live, mm_users 1, .*\): 2 VMAs, \d+ pages resident, PASID 2/,
    );
  });

  it("--step N stops there (0: just booted)", async () => {
    const r = await cli({}, "inspect", STORY, "--step", "0");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^scenarios\/demo\/story\.yaml \[riscv\]: just booted \(step 0 of 84\)/,
    );
    expect(r.stdout).toContain("Processes:\n  none\n\nAddress spaces:\n  none\n");
    const mid = await cli({}, "inspect", STORY, "--step", "16", "--json");
    const doc = JSON.parse(mid.stdout);
    expect(doc).toMatchObject({ step: 16, steps: 84, status: "pass" });
    expect(doc.state.groups[8]).toMatchObject({ devices: ["br0", "legacy0", "legacy1"] });
  });

  it("--domain: a RISC-V domain's mappings as ranges read from its page table", async () => {
    const r = await cli({}, "inspect", STORY, "--step", "1", "--domain", "13");
    expect(r.stdout).toContain("Domain 13 (DMA): the domain's page table");
    // gpu0's firmware direct region, mapped 1:1 by the core (IOMMU_RESV_DIRECT).
    expect(r.stdout).toMatch(
      /0x0000a0000000-0x0000a0100000 rw-u-a- +1 MiB +→ 0x0000a0000000 \(256 × 4 KiB\)/,
    );
  });

  it("--domain: an SVA domain shows the bound process's page table", async () => {
    const at = (await cli({}, "inspect", STORY, "--step", "52", "--json")).stdout;
    const sva = JSON.parse(at).state.domains.find((d: { type: string }) => d.type === "SVA");
    const r = await cli({}, "inspect", STORY, "--step", "52", "--domain", String(sva.id), "--json");
    const t = JSON.parse(r.stdout).state.page_table;
    expect(t.source).toMatch(/^the page table of mm \d \(SVA\)$/);
    // MAP_POPULATE gave the process its four pages at 0x40000000, user-accessible.
    expect(t.ranges[0]).toMatchObject({ iova: "0x40000000", end: "0x40004000" });
    expect(t.ranges[0].perm).toMatch(/^rw-u/);
  });

  it("the mock driver: its mappings, no hardware", async () => {
    const r = await cli({ "m.yaml": MOCK }, "inspect", "m.yaml", "--step", "4", "--domain", "4");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Domain 4 (UNMANAGED): the mock driver's mappings");
    expect(r.stdout).toMatch(/0x000001000000-0x000001004000 rw +16 KiB +→ 0x000080000000\n/);
    expect(r.stdout).toMatch(/0x000001004000-0x000001005000 r- +4 KiB +→ 0x000090000000/);
    expect(r.stdout).toContain("no hardware (the mock driver has no caches or queues)");
  });

  it("clear errors: a step past the end, an unknown domain, a failing step", async () => {
    const past = await cli({ "m.yaml": MOCK }, "inspect", "m.yaml", "--step", "9");
    expect(past.code).toBe(2);
    expect(past.stderr).toBe(
      "m.yaml: --step: 9 is past the end; the scenario has 5 steps (0 = just booted)\n",
    );
    const bad = await cli({ "m.yaml": MOCK }, "inspect", "m.yaml", "--domain", "42");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe("--domain: no live domain 42; the live domains are 0, 1, 2, 3, 4\n");
    const neg = await cli({ "m.yaml": MOCK }, "inspect", "m.yaml", "--step", "-1");
    expect(neg.code).toBe(2);
    expect(neg.stderr).toBe(
      "error: option '--step <n>' argument '-1' is invalid. expected a non-negative integer.\n(add --help for usage)\n",
    );
    const failing = MOCK.replace("    error: EBUSY\n", "");
    const f = await cli({ "f.yaml": failing }, "inspect", "f.yaml");
    expect(f.code).toBe(1);
    expect(f.stdout).toContain(
      "step 5 failed: iommu_attach_device failed with -EBUSY, expected success — the machine is shown as that step left it",
    );
  });
});
