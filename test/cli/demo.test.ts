// `iommu-sim demo` (npm start): the story runs green, says what it shows, is the same on every
// run, stays well within a generous time bound, and its JSON and trace forms hold what they
// promise.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { demo } from "../../src/cli/demo.js";
import type { CliIo } from "../../src/cli/io.js";
import { runCli } from "../../src/cli/program.js";
import { machineHost } from "../../src/scenario/machine-host.js";

const ROOT = join(import.meta.dirname, "../..");
const TSX = join(ROOT, "node_modules/.bin/tsx");
const dir = mkdtempSync(join(tmpdir(), "iommu-sim-demo-"));

/** The real CLI in-process: real files, captured output. */
async function cli(...argv: string[]) {
  let out = "";
  let errOut = "";
  const io: CliIo = {
    stdout: (t) => {
      out += t;
    },
    stderr: (t) => {
      errOut += t;
    },
    readFile: (p) => readFileSync(p, "utf8"),
    writeFile: (p, t) => writeFileSync(p, t),
    progress: () => null,
  };
  const code = await runCli(argv, io, { host: machineHost, demo });
  return { code, stdout: out, stderr: errOut };
}

describe("iommu-sim demo", () => {
  it("npm start's command runs the story to the end, identically twice, well within 20 s", () => {
    const runOnce = () => {
      const t0 = performance.now();
      const r = spawnSync(TSX, [join(ROOT, "src/cli/main.ts")], { cwd: dir, encoding: "utf8" });
      return { ...r, ms: performance.now() - t0 };
    };
    const a = runOnce();
    const b = runOnce();
    expect(a.status).toBe(0);
    expect(a.stderr).toBe("");
    expect(a.stdout).toBe(b.stdout);
    expect(a.ms).toBeLessThan(20_000);
    expect(b.ms).toBeLessThan(20_000);
  });

  it("tells the six acts with their kernel calls and results, then the report", async () => {
    const r = await cli("demo");
    expect(r.code).toBe(0);
    const out = r.stdout;
    const acts = [...out.matchAll(/^(\d)\. (.+)$/gm)].map((m) => m[2]);
    expect(acts).toEqual([
      "Kernel drivers bind and DMA through the DMA API",
      "A user-space framework (VFIO) takes a device group",
      "Two processes share the DSA engine through SVA",
      "I/O page faults: the device touches pages first",
      "A process exits and its PASID goes at the final mm drop",
      "Lazy versus strict invalidation",
    ]);
    // Calls and results, refusals with the kernel's errnos.
    expect(out).toContain('→ ndo_start_xmit(dev=nic0, data="hello, wire") = NETDEV_TX_OK');
    expect(out).toContain(
      "→ vfio_group_ioctl_set_container(group=legacy0, container=container) = -EPERM",
    );
    expect(out).toContain(
      "→ vfio_group_ioctl_set_container(group=gpu0, container=container) = -EINVAL",
    );
    expect(out).toContain("→ idxd_cdev_open(dev=dsa0, task=app2) = {fd: 0, pasid: 3}");
    expect(out).toMatch(/device_dma_read\(dev=acc0, addr=iova2, len=6\) = "secret"\n.*lazy/);
    expect(out).toContain("✓ All ");
    // What the machine is, in counts that agree with the report below.
    expect(out).toContain(
      'Machine "default": 2 RISC-V IOMMUs; 6 devices and 8 PCI bridges/ports in 12 IOMMU groups\n',
    );
    expect(out.match(/^ {2}group \d+ +[a-z]/gm)).toHaveLength(12);
    // Each call carries its step number (what inspect --step takes) and the name `as:` gave it,
    // so later calls that use the name can be followed.
    expect(out).toMatch(/^ {2}8 → __get_free_pages\(order=0\) = 0x[0-9a-f]+ \(as src\)$/m);
    expect(out).toMatch(/^ {1}10 → phys_write\(addr=src, /m);
    expect(out).toMatch(
      /→ idxd_cdev_open\(dev=dsa0, task=app1\) = \{fd: 0, pasid: 2\} \(as wq1\)\n/,
    );
    // A check's note is told where the check stands.
    expect(out).toMatch(
      /→ close\(task=app1, fd=wq1\.fd\)\n {5}✓ app1 has unbound, but its PASID stays with its mm/,
    );
    const [, calls, checks] = /✓ All (\d+) calls .* all (\d+) checks/.exec(out)!;
    const numbered = out.match(/^ {0,2}\d+ [→✗·] /gm)!;
    expect(numbered).toHaveLength(Number(calls));
    const perAct = [...out.matchAll(/✓ (\d+) checks? of the machine's state held/g)];
    expect(perAct.reduce((n, m) => n + Number(m[1]), 0)).toBe(Number(checks));
    // The report: topology and groups, domains, PASIDs, DMA, IOTLB, faults, oracle, trace.
    expect(out).toContain("group 8   br0, legacy0, legacy1");
    expect(out).toMatch(/domain 7 +DMA +iommu0 +group 5 \(nic0\) as default \[\d+ mappings\]/);
    expect(out).toContain("group 3 (dsa0): 1 → domain 5 (DMA)");
    expect(out).toMatch(/flush-queue flushes: 1 \(1 by timer, 0 full\)/);
    expect(out).toMatch(/iommu0 \(riscv\):\n {2}IOTLB \d+\.\d% hits/);
    expect(out).toContain("faults: 3 (ddt_entry_not_valid ×1, read_page_fault ×2)");
    expect(out).toContain("page requests: 2; responses: SUCCESS ×2");
    expect(out).toContain("NOT isolated: 1 finding");
    expect(out).toContain("stale-iotlb: lazy flush window");
    expect(out).toContain("Trace: not recorded");
  });

  it("--json: the same run as data, identical across runs", async () => {
    const a = await cli("demo", "--json");
    const b = await cli("demo", "--json");
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const doc = JSON.parse(a.stdout);
    expect(Object.keys(doc)).toEqual([
      "demo",
      "story",
      "machine",
      "seed",
      "status",
      "steps",
      "acts",
      "report",
      "trace",
    ]);
    expect(doc).toMatchObject({ machine: "default", seed: 1, status: "pass", trace: null });
    expect(doc.acts).toHaveLength(7);
    expect(doc.acts[0]).toMatchObject({
      title: "",
      calls: [{ call: "attach_isolation_oracle()" }],
    });
    expect(doc.acts[2].calls).toContainEqual(
      expect.objectContaining({ errno: "EPERM", status: "pass" }),
    );
    // The same facts as the text: step numbers, names, check notes, the totals.
    expect(doc.acts[1].calls).toContainEqual(
      expect.objectContaining({ step: 8, call: "__get_free_pages(order=0)", as: "src" }),
    );
    expect(doc.acts[5].check_notes).toEqual([
      { step: 64, note: "app1 has unbound, but its PASID stays with its mm while it lives" },
    ]);
    const text = (await cli("demo")).stdout;
    expect(text).toContain(
      `✓ All ${doc.steps.calls} calls returned what the kernel returns and all ${doc.steps.checks} checks`,
    );
    const calls = doc.acts.reduce((n: number, a: { calls: unknown[] }) => n + a.calls.length, 0);
    expect(calls).toBe(doc.steps.calls);
    expect(Object.keys(doc.report)).toEqual([
      "topology",
      "groups",
      "domains",
      "pasids",
      "statistics",
      "isolation",
      "warnings",
    ]);
    expect(doc.report.statistics.iommus.map((i: { name: string }) => i.name)).toEqual([
      "iommu0",
      "iommu1",
    ]);
    expect(doc.report.statistics.iommus[0].iotlb).toHaveProperty("hit_rate");
    expect(doc.report.isolation.verdict).toMatchObject({ isolated: false, findings: 1 });
    expect(doc.report.pasids.global).toEqual([1, 2]);
  });

  it("--trace writes the whole run (boot included) as Perfetto JSON or ftrace text", async () => {
    const json = join(dir, "demo.json");
    const r = await cli("demo", "--trace", json, "--seed", "1");
    expect(r.code).toBe(0);
    const m = /Trace: (\d+) events written to (\S+) \(open it in ui\.perfetto\.dev\)\./.exec(
      r.stdout,
    );
    expect(m?.[2]).toBe(json);
    const doc = JSON.parse(readFileSync(json, "utf8"));
    const instants = doc.traceEvents.filter((e: { ph: string }) => e.ph === "i");
    expect(instants).toHaveLength(Number(m![1]));
    // The boot is in it: devices joining their groups, inside the boot's slice.
    const spans = doc.traceEvents.filter((e: { ph: string }) => e.ph === "X");
    const boot = spans.find((e: { name: string }) => e.name === "boot");
    const added = instants.filter((e: { name: string }) => e.name === "iommu:add_device_to_group");
    expect(added.length).toBeGreaterThan(0);
    for (const e of added) {
      expect(e.ts).toBeGreaterThan(boot.ts);
      expect(e.ts).toBeLessThan(boot.ts + boot.dur);
    }
    expect(spans.map((e: { name: string }) => e.name)).toContain("Lazy versus strict invalidation");
    // Every slice has a length; the timeline never stands still.
    expect(spans.every((e: { dur: number }) => e.dur > 0)).toBe(true);
    const timeline = doc.traceEvents.filter((e: { ph: string }) => e.ph !== "M");
    for (let i = 1; i < timeline.length; i++) {
      expect(timeline[i].ts).toBeGreaterThan(timeline[i - 1].ts);
    }
    // IOMMUs and devices are named tracks of their own processes.
    const names = new Map<number, string>();
    for (const e of doc.traceEvents) if (e.name === "process_name") names.set(e.pid, e.args.name);
    const tracks = (process: string) =>
      doc.traceEvents
        .filter(
          (e: { name: string; pid: number }) =>
            e.name === "thread_name" && names.get(e.pid) === process,
        )
        .map((e: { args: { name: string } }) => e.args.name);
    expect(tracks("IOMMUs")).toEqual(["iommu0", "iommu1"]);
    // Each device is one track, by its description name with its kernel name alongside: the
    // core's tracepoints (kernel name) and the device model's events (description name) on it.
    const devices: string[] = tracks("devices");
    const nic = devices.filter((t) => t.includes("nic0") || t.includes("0000:04:00.0"));
    expect(nic).toEqual(["nic0 (0000:04:00.0)"]);
    expect(devices).toContain("dsa0 (0000:03:00.0)");
    for (const t of devices)
      expect(t).toMatch(/^[a-z][a-z0-9]* \([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\)$/);
    const tidOf = (name: string) =>
      doc.traceEvents.find(
        (e: { name: string; args: { name: string } }) =>
          e.name === "thread_name" && e.args.name === name,
      ).tid;
    const onNic = new Set(
      instants
        .filter((e: { tid: number }) => e.tid === tidOf(nic[0]!))
        .map((e: { name: string }) => e.name),
    );
    for (const event of [
      "iommu:add_device_to_group",
      "iommu:attach_device_to_domain",
      "device:packet",
    ])
      expect(onNic).toContain(event);
    const text = join(dir, "demo.txt");
    expect((await cli("demo", "--trace", text)).code).toBe(0);
    const lines = readFileSync(text, "utf8").trimEnd().split("\n");
    expect(lines).toHaveLength(Number(m![1]));
    expect(lines.some((l) => / map: IOMMU: iova=0x[0-9a-f]{16} - /.test(l))).toBe(true);
    // Every line is a trace-cmd report line (the lazy flush queue's `domain N` track included).
    for (const l of lines) {
      expect(l).toMatch(/^\s*\S+-\d+\s+\[\d{3}\]\s+\d+\.\d{6}: [a-z_0-9]+(:[a-z_0-9]+)?: /);
    }
    expect(lines.some((l) => /^ *domain_\d+-\d+ /.test(l))).toBe(true);
    // nic0 is one task there too, whether the line names it `nic0` or `0000:04:00.0`.
    const nicTasks = new Set(
      lines
        .filter((l) =>
          /device:packet: |(add_device_to_group|attach_device_to_domain): .*device=0000:04:00\.0$/.test(
            l,
          ),
        )
        .map((l) => l.trimStart().split(" ")[0]),
    );
    expect([...nicTasks]).toEqual([expect.stringMatching(/^nic0_\(0000:04:00\.0\)-\d+$/)]);
  });
});
