import { describe, expect, it } from "vitest";
import type { CliIo } from "../../src/cli/io.js";
import { type CliDeps, runCli } from "../../src/cli/program.js";
import { machineHost } from "../../src/scenario/machine-host.js";
import { fakeHost } from "../scenario/fake-world.js";

/** An in-memory CLI: files in a map, output captured. */
function cli(
  files: Record<string, string> = {},
  host: CliDeps["host"] = fakeHost,
  version?: string,
) {
  const out: string[] = [];
  const errOut: string[] = [];
  const written: Record<string, string> = {};
  const io: CliIo = {
    stdout: (t) => out.push(t),
    stderr: (t) => errOut.push(t),
    readFile: (p) => {
      if (!(p in files)) throw Object.assign(new Error(`ENOENT: ${p}`), { code: "ENOENT" });
      return files[p]!;
    },
    writeFile: (p, t) => {
      written[p] = t;
    },
    progress: () => null,
  };
  const deps: CliDeps = {
    host,
    demo: (o) => {
      o.stdout("demo ran\n");
      return 0;
    },
    ...(version === undefined ? {} : { version }),
  };
  return {
    run: (...argv: string[]) => runCli(argv, io, deps),
    stdout: () => out.join(""),
    stderr: () => errOut.join(""),
    written,
  };
}

const PASS =
  "machine: two\nsteps:\n  - fake_domain_alloc: {dev: a}\n    as: d1\n  - fake_attach: {domain: d1, dev: a}\n";
const FAIL =
  "machine: two\nsteps:\n  - fake_domain_alloc: {dev: b}\n    as: d1\n  - fake_attach: {domain: d1, dev: b}\n  - fake_attach: {domain: d1, dev: c}\n";
const BAD = "machine: two\nsteps:\n  - fake_attach: {domain: nope, dev: a}\n  - fake_tik: {}\n";

describe("driver restrictions on the command line (real machines)", () => {
  const DMA = [
    "machine: default",
    "steps:",
    "  - device_dma_read: {dev: acc0, addr: 0x1000, len: 4}",
    "    error: read_page_fault",
    "",
  ].join("\n");

  it("a scenario whose calls need the riscv driver is skipped for --driver mock", async () => {
    const c = cli({ "dma.yaml": DMA }, machineHost);
    expect(await c.run("run", "dma.yaml", "--driver", "mock")).toBe(0);
    expect(c.stdout()).toBe(
      "SKIP dma.yaml: runs only on drivers riscv; not run with --driver mock\n0 runs: 0 passed, 0 failed, 1 skipped\n",
    );
    const all = cli({ "dma.yaml": DMA }, machineHost);
    expect(await all.run("run", "dma.yaml", "--driver", "all")).toBe(0);
    expect(all.stdout()).toBe("PASS dma.yaml [riscv] dma — 1/1 steps\n1 run: 1 passed, 0 failed\n");
  });
});

describe("--trace on real machines: one track per device", () => {
  /** acc0 in the core's tracepoints and through its IO bridge; tb0 present for one step. */
  const DEVICES = [
    "machine: default",
    "drivers: [riscv]",
    "steps:",
    "  - iommu_paging_domain_alloc: {dev: acc0}",
    "    as: d",
    "  - iommu_group_claim_dma_owner: {group: acc0, owner: me}",
    "  - iommu_attach_group: {domain: d, group: acc0}",
    "  - device_dma_read: {dev: acc0, addr: 0x10000, len: 4}",
    "    error: read_page_fault",
    "  - hot_add: {dev: tb0}",
    "  - hot_remove: {dev: tb0}",
    "",
  ].join("\n");
  const PCI = "[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]";

  it("names each device's thread and task by both of its names, hot-plugged ones too", async () => {
    const c = cli({ "d.yaml": DEVICES }, machineHost);
    expect(await c.run("run", "--trace", "t.json", "d.yaml")).toBe(0);
    const doc = JSON.parse(c.written["t.json"]!);
    const threads: { tid: number; name: string }[] = doc.traceEvents
      .filter((e: { name: string }) => e.name === "thread_name")
      .map((e: { tid: number; args: { name: string } }) => ({ tid: e.tid, name: e.args.name }));
    const acc0 = threads.filter((t) => /acc0/.test(t.name));
    expect(acc0.map((t) => t.name)).toEqual([
      expect.stringMatching(new RegExp(`^acc0 \\(${PCI}\\)$`)),
    ]);
    const kernel = acc0[0]!.name.slice("acc0 (".length, -1);
    // No thread of a bare PCI name is left: every function's two names are one thread.
    expect(threads.filter((t) => new RegExp(`^${PCI}$`).test(t.name))).toEqual([]);
    expect(threads.map((t) => t.name)).toContainEqual(
      expect.stringMatching(new RegExp(`^tb0 \\(${PCI}\\)$`)),
    );
    // acc0's thread holds the core's tracepoints (the kernel's device name in their args) and
    // the bridge's DMA.
    const on = doc.traceEvents.filter(
      (e: { ph: string; tid: number }) => e.ph === "i" && e.tid === acc0[0]!.tid,
    );
    const attach = on.filter((e: { name: string }) => e.name === "iommu:attach_device_to_domain");
    expect(attach.length).toBeGreaterThan(0);
    for (const e of attach) expect(e.args.device).toBe(kernel);
    expect(on.map((e: { name: string }) => e.name)).toContain("device:dma");

    expect(await c.run("run", "--trace", "t.txt", "d.yaml")).toBe(0);
    const tasks = new Set(
      c.written["t.txt"]!.split("\n")
        .filter(
          (l) =>
            / device:dma: /.test(l) ||
            l.endsWith(`attach_device_to_domain: IOMMU: device=${kernel}`),
        )
        .map((l) => l.trimStart().split(" ")[0]),
    );
    expect([...tasks]).toEqual([expect.stringMatching(new RegExp(`^acc0_\\(${kernel}\\)-\\d+$`))]);
  });
});

describe("the iommu-sim command line", () => {
  it("demo is the default command", async () => {
    const c = cli();
    expect(await c.run()).toBe(0);
    expect(c.stdout()).toBe("demo ran\n");
  });

  it("run: exit 0 when every scenario passes", async () => {
    const c = cli({ "p.yaml": PASS });
    expect(await c.run("run", "p.yaml")).toBe(0);
    expect(c.stdout()).toBe("PASS p.yaml [mock] p — 2/2 steps\n1 run: 1 passed, 0 failed\n");
    expect(c.stderr()).toBe("");
  });

  it("run: exit 1 on a failed expectation, naming step, file:line, call, expected and actual", async () => {
    const c = cli({ "p.yaml": PASS, "f.yaml": FAIL });
    expect(await c.run("run", "p.yaml", "f.yaml")).toBe(1);
    expect(c.stdout()).toBe(
      [
        "PASS p.yaml [mock] p — 2/2 steps",
        "FAIL f.yaml [mock] f — 2/3 steps",
        "  ✗ step 3 (f.yaml:6:5): fake_attach(domain=d1, dev=c) = -EBUSY",
        "      fake_attach failed with -EBUSY, expected success",
        '      expected: "success"',
        '      actual:   "-EBUSY"',
        "2 runs: 1 passed, 1 failed",
        "",
      ].join("\n"),
    );
  });

  it("run: exit 2 with every validation error of every file, and nothing runs", async () => {
    const c = cli({ "p.yaml": PASS, "b.yaml": BAD });
    expect(await c.run("run", "p.yaml", "b.yaml", "missing.yaml")).toBe(2);
    expect(c.stdout()).toBe("");
    expect(c.stderr()).toBe(
      [
        'b.yaml:3:27: steps[0].fake_attach.domain: "nope" is not bound (no earlier step has "as: nope")',
        'b.yaml:4:5: steps[1].fake_tik: unknown function "fake_tik" (did you mean "fake_tick"?)',
        "missing.yaml: cannot read the file: no such file",
        "3 errors; nothing was run",
        "",
      ].join("\n"),
    );
  });

  it("run --json: per-step results, identical across runs", async () => {
    const a = cli({ "f.yaml": FAIL });
    expect(await a.run("run", "--json", "f.yaml")).toBe(1);
    const doc = JSON.parse(a.stdout());
    expect(doc).toMatchObject({
      status: "fail",
      summary: { runs: 1, passed: 0, failed: 1, skipped: 0 },
      results: [
        {
          file: "f.yaml",
          driver: "mock",
          seed: 1,
          status: "fail",
          steps: [
            {
              step: 1,
              call: "fake_domain_alloc(dev=b)",
              status: "pass",
              duration_ns: 0,
              trace_events: 1,
            },
            { step: 2, status: "pass" },
            {
              step: 3,
              status: "fail",
              errno: "EBUSY",
              failure: { expected: "success", actual: "-EBUSY" },
            },
          ],
        },
      ],
    });
    const b = cli({ "f.yaml": FAIL });
    await b.run("run", "--json", "f.yaml");
    expect(b.stdout()).toBe(a.stdout());
  });

  it("validate: exit 0 for valid files, 2 with JSON errors for invalid ones", async () => {
    const ok = cli({ "p.yaml": PASS });
    expect(await ok.run("validate", "p.yaml")).toBe(0);
    expect(ok.stdout()).toBe("valid p.yaml: p (2 steps)\n");
    const bad = cli({ "b.yaml": BAD });
    expect(await bad.run("validate", "--json", "b.yaml")).toBe(2);
    expect(JSON.parse(bad.stdout())).toEqual({
      status: "invalid",
      errors: [
        {
          file: "b.yaml",
          line: 3,
          column: 27,
          message:
            'steps[0].fake_attach.domain: "nope" is not bound (no earlier step has "as: nope")',
        },
        {
          file: "b.yaml",
          line: 4,
          column: 5,
          message: 'steps[1].fake_tik: unknown function "fake_tik" (did you mean "fake_tick"?)',
        },
      ],
    });
  });

  it("bad command-line arguments are reported clearly with exit 2", async () => {
    const c = cli({ "p.yaml": PASS });
    expect(await c.run("run")).toBe(2);
    expect(c.stderr()).toBe("error: missing required argument 'files'\n(add --help for usage)\n");
    const d = cli({ "p.yaml": PASS });
    expect(await d.run("run", "--sede", "3", "p.yaml")).toBe(2);
    expect(d.stderr()).toBe(
      "error: unknown option '--sede'\n(Did you mean --seed?)\n(add --help for usage)\n",
    );
    const e = cli({ "p.yaml": PASS });
    expect(await e.run("run", "--seed", "x", "p.yaml")).toBe(2);
    expect(e.stderr()).toBe(
      "error: option '--seed <n>' argument 'x' is invalid. expected an integer 0..4294967295.\n(add --help for usage)\n",
    );
    const f = cli({ "p.yaml": PASS });
    expect(await f.run("runn")).toBe(2);
    expect(f.stderr()).toContain("unknown command 'runn'");
    const g = cli({ "p.yaml": PASS });
    expect(await g.run("run", "--driver", "nope", "p.yaml")).toBe(2);
    expect(g.stderr()).toBe(
      '--driver: unknown driver "nope"; available: mock, all\n1 error; nothing was run\n',
    );
  });

  it("--help exits 0 and names the exit codes; --version prints the version", async () => {
    const c = cli();
    expect(await c.run("--help")).toBe(0);
    expect(c.stdout()).toContain("Usage: iommu-sim");
    expect(c.stdout()).toContain(
      "Exit codes: 0 everything passed; 1 a scenario failed; 2 bad input",
    );
    const v = cli({}, fakeHost, "1.2.3");
    expect(await v.run("--version")).toBe(0);
    expect(v.stdout()).toBe("1.2.3\n");
  });

  it("machines: every built-in machine, its description wrapped in one column", async () => {
    const c = cli();
    expect(await c.run("machines")).toBe(0);
    const lines = c.stdout().split("\n");
    // The longest name (platform-mock) still leaves two spaces before its description.
    expect(lines).toContain(
      "platform-mock  One mock IOMMU and platform devices: one with pasid-num-bits 20, one with",
    );
    for (const name of ["default", "single-mock", "pci-no-acs", "multi-iommu"]) {
      expect(lines.some((l) => l.startsWith(`${name.padEnd(15)}`))).toBe(true);
    }
    expect(lines.every((l) => l.length <= 96)).toBe(true);
    expect(lines.filter((l) => /^\S/.test(l) && !l.startsWith("A scenario")).length).toBe(5);
  });

  it("--trace writes text or Chrome JSON", async () => {
    const c = cli({ "p.yaml": PASS });
    expect(await c.run("run", "--trace", "t.txt", "p.yaml")).toBe(0);
    expect(c.written["t.txt"]).toBe(
      "          core-1 [000]     0.000000: iommu_core:domain_alloc: domain=0 type=x device=y\n",
    );
    expect(await c.run("run", "--trace", "t.json", "p.yaml")).toBe(0);
    const trace = JSON.parse(c.written["t.json"]!);
    // Display time: a µs tick per record and per step boundary; virtual time in the args.
    expect(trace.traceEvents).toEqual([
      { name: "process_name", ph: "M", pid: 1, tid: 0, args: { name: "scenario" } },
      { name: "process_sort_index", ph: "M", pid: 1, tid: 0, args: { sort_index: 1 } },
      { name: "thread_name", ph: "M", pid: 1, tid: 1, args: { name: "steps" } },
      { name: "thread_sort_index", ph: "M", pid: 1, tid: 1, args: { sort_index: 1 } },
      { name: "process_name", ph: "M", pid: 2, tid: 0, args: { name: "kernel" } },
      { name: "process_sort_index", ph: "M", pid: 2, tid: 0, args: { sort_index: 2 } },
      { name: "thread_name", ph: "M", pid: 2, tid: 2, args: { name: "core" } },
      { name: "thread_sort_index", ph: "M", pid: 2, tid: 2, args: { sort_index: 0 } },
      {
        name: "fake_domain_alloc(dev=a)",
        cat: "scenario",
        ph: "X",
        ts: 1,
        dur: 2,
        pid: 1,
        tid: 1,
        args: {
          step: 1,
          status: "pass",
          result: { id: 2, pgsize: "0x1000", type: "UNMANAGED" },
          virtual_ns: 0,
          virtual_dur_ns: 0,
        },
      },
      {
        name: "iommu_core:domain_alloc",
        cat: "iommu_core",
        ph: "i",
        s: "t",
        ts: 2,
        pid: 2,
        tid: 2,
        args: { domain: 0, type: "x", device: "y", virtual_ns: 0 },
      },
      {
        name: "fake_attach(domain=d1, dev=a)",
        cat: "scenario",
        ph: "X",
        ts: 4,
        dur: 1,
        pid: 1,
        tid: 1,
        args: { step: 2, status: "pass", virtual_ns: 0, virtual_dur_ns: 0 },
      },
    ]);
  });

  it("-v lists every step; a passing step's long result is cut short, a failure's is not", async () => {
    const c = cli(
      {
        "v.yaml":
          "machine: single-mock\nsteps:\n  - iommu_paging_domain_alloc: {dev: dev0}\n    as: d\n  - expect: {domain: d, type: IDENTITY}\n",
      },
      machineHost,
    );
    expect(await c.run("run", "-v", "v.yaml")).toBe(1);
    const lines = c.stdout().split("\n");
    const alloc = lines.find((l) => l.includes("✓ step 1 "))!;
    expect(alloc).toMatch(/= \{"id":\d+,"type":"UNMANAGED",.*…$/);
    expect(alloc.length).toBeLessThan(200);
    expect(lines.find((l) => l.startsWith("      actual:"))).toMatch(/UNMANAGED/);
  });

  it("--seed overrides the scenario seed, --driver all runs each applicable driver", async () => {
    const c = cli({ "p.yaml": PASS });
    expect(await c.run("run", "--json", "--seed", "7", "--driver", "all", "p.yaml")).toBe(0);
    const doc = JSON.parse(c.stdout());
    expect(doc.results.map((r: { seed: number; driver: string }) => [r.seed, r.driver])).toEqual([
      [7, "mock"],
    ]);
  });
});

describe("internal errors", () => {
  it("a bug (not an input error) exits 70 with the stack on stderr", async () => {
    const io = { out: "", err: "" };
    const code = await runCli(
      ["demo"],
      {
        stdout: (t) => {
          io.out += t;
        },
        stderr: (t) => {
          io.err += t;
        },
        readFile: () => "",
        writeFile: () => {},
        progress: () => null,
      },
      {
        host: fakeHost,
        demo: () => {
          throw new TypeError("boom");
        },
      },
    );
    expect(code).toBe(70);
    expect(io.err).toMatch(
      /^iommu-sim: internal error \(a bug in the simulator, please report it\):\nTypeError: boom\n\s+at /,
    );
  });
});

describe("progress", () => {
  it("runs of several scenarios tick a progress bar the io provides (a TTY's stderr)", async () => {
    const ticks: string[] = [];
    let stopped = 0;
    const io: CliIo = {
      stdout: () => {},
      stderr: () => {},
      readFile: (p) => ({ "a.yaml": PASS, "b.yaml": PASS })[p] ?? "",
      writeFile: () => {},
      progress: (total, what) => {
        ticks.push(`${what}/${total}`);
        return { tick: (l) => ticks.push(l), stop: () => void stopped++ };
      },
    };
    const deps: CliDeps = { host: fakeHost, demo: () => 0 };
    expect(await runCli(["run", "a.yaml", "b.yaml"], io, deps)).toBe(0);
    expect(ticks).toEqual(["scenarios/2", "a.yaml", "b.yaml"]);
    expect(stopped).toBe(1);
    // One run draws nothing.
    ticks.length = 0;
    expect(await runCli(["run", "a.yaml"], io, deps)).toBe(0);
    expect(ticks).toEqual([]);
  });
});
