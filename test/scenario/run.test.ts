import { describe, expect, it } from "vitest";
import { loadScenario } from "../../src/scenario/load.js";
import { formatScenarioResult, scenarioResultJSON } from "../../src/scenario/report.js";
import { runScenario, type ScenarioResult } from "../../src/scenario/run.js";
import { fakeHost } from "./fake-world.js";

function run(steps: string[], opts: { keepTrace?: boolean } = {}): ScenarioResult {
  const s = loadScenario(`machine: two\nsteps:\n${steps.join("\n")}\n`, "r.yaml", fakeHost);
  return runScenario(s, fakeHost, opts);
}

function failureOf(r: ScenarioResult) {
  const f = r.steps.find((s) => s.status === "fail");
  return f && { step: f.step, line: f.line, ...f.failure };
}

describe("running scenarios", () => {
  it("passes when every call and expectation holds, binding results with as:", () => {
    const r = run([
      "  - fake_domain_alloc: {dev: a}",
      "    as: d1",
      "  - fake_attach: {domain: d1, dev: a}",
      "  - fake_get_domain: {dev: a}",
      "    returns: $d1",
      "  - expect: {dev: a, domain: d1}",
      "  - expect: {dev: b, domain: default}",
      "  - fake_attach: {domain: d1, dev: a}",
      "    error: EBUSY",
    ]);
    expect(r.status).toBe("pass");
    expect(r.steps.map((s) => s.status)).toEqual(["pass", "pass", "pass", "pass", "pass", "pass"]);
    expect(r.steps[0]!.result).toEqual({ id: 2, type: "UNMANAGED", pgsize: "0x1000" });
    expect(r.steps[5]!.errno).toBe("EBUSY");
  });

  it("an unexpected errno fails the step with expected and actual, and skips the rest", () => {
    const r = run([
      "  - fake_domain_alloc: {dev: b}",
      "    as: d1",
      "  - fake_attach: {domain: d1, dev: b}",
      "  - fake_attach: {domain: d1, dev: c}",
      "  - expect: {warnings: 0}",
    ]);
    expect(r.status).toBe("fail");
    expect(r.steps.map((s) => s.status)).toEqual(["pass", "pass", "fail", "skipped"]);
    expect(failureOf(r)).toEqual({
      step: 3,
      line: 6,
      message: "fake_attach failed with -EBUSY, expected success",
      expected: "success",
      actual: "-EBUSY",
    });
  });

  it("a wrong errno and an unexpected success both fail", () => {
    const wrong = run(["  - fake_claim: {group: a, owner: null}", "    error: EPERM"]);
    expect(failureOf(wrong)).toMatchObject({ expected: "-EPERM", actual: "-EINVAL" });
    const succeeded = run(["  - fake_claim: {group: a, owner: o1}", "    error: EPERM"]);
    expect(failureOf(succeeded)).toMatchObject({
      message: "fake_claim succeeded, expected -EPERM",
      expected: "-EPERM",
      actual: "0",
    });
  });

  it("returns: compares scalars exactly, whatever their representation", () => {
    expect(run(["  - fake_add: {a: 1, b: 0x10, f: [READ, WRITE]}", "    returns: 20"]).status).toBe(
      "pass",
    );
    expect(run(["  - fake_add: {a: 1, b: 0x10}", "    returns: 0x11"]).status).toBe("pass");
    const r = run(["  - fake_add: {a: 1, b: 2}", "    returns: 4"]);
    expect(failureOf(r)).toMatchObject({ expected: "0x4", actual: "0x3" });
  });

  it("returns: $name means the very object, not an equal-looking one", () => {
    const r = run([
      "  - fake_use_handle: {handle: h1, pasid: 1}",
      "  - fake_use_handle: {handle: h2, pasid: 1}",
      "    returns: $h1",
    ]);
    expect(r.steps[0]!.status).toBe("pass");
    expect(failureOf(r)).toMatchObject({
      step: 2,
      message: "fake_use_handle returned an unexpected value",
      expected: { h1: { handle: "h1" } },
      actual: { handle: "h2" },
    });
    const same = run([
      "  - fake_use_handle: {handle: h1, pasid: 1}",
      "  - fake_use_handle: {handle: h1, pasid: 2}",
      "    returns: $h1",
    ]);
    expect(same.status).toBe("pass");
  });

  it("objects match partially against their JSON view; lists match item by item", () => {
    expect(run(["  - fake_domain_alloc: {dev: a}", "    returns: {type: UNMANAGED}"]).status).toBe(
      "pass",
    );
    const r = run([
      "  - fake_domain_alloc: {dev: a, type: DMA}",
      "    returns: {type: UNMANAGED, id: 2}",
    ]);
    expect(failureOf(r)).toMatchObject({
      message: "fake_domain_alloc returned an unexpected value (at type)",
      expected: "UNMANAGED",
      actual: "DMA",
    });
    const missing = run(["  - fake_domain_alloc: {dev: a}", "    returns: {flavour: x}"]);
    expect(failureOf(missing)).toMatchObject({ expected: "x", actual: "(missing)" });
    expect(run(["  - expect: {group: b, view: {devices: [b, c]}}"]).status).toBe("pass");
    const short = run(["  - expect: {group: b, view: {devices: [b]}}"]);
    expect(failureOf(short)).toMatchObject({ expected: ["b"], actual: ["b", "c"] });
  });

  it("$name inside plain data compares with the live object, or with its id inside JSON views", () => {
    const r = run([
      "  - fake_domain_alloc: {dev: b}",
      "    as: d1",
      "  - fake_attach: {domain: d1, dev: c}",
      "  - fake_view: {dev: b}",
      "    returns: {domains: [{type: DMA}, $d1], count: 2}",
      "  - expect: {group: c, view: {domain: $d1}}",
      "  - expect: {machine: {groups: [{id: 0}, {domain: $d1, owner_cnt: 0}]}}",
    ]);
    expect(r.status).toBe("pass");
    const bad = run([
      "  - fake_domain_alloc: {dev: b}",
      "    as: d1",
      "  - expect: {group: c, view: {domain: $d1}}",
    ]);
    expect(failureOf(bad)).toMatchObject({
      message: "unexpected view of group (at domain)",
      actual: 1,
    });
  });

  it("groups resolve from device names; creatable objects are created once per name", () => {
    const r = run([
      "  - fake_claim: {group: b, owner: vfio}",
      "  - expect: {group: c, owner_cnt: 1, owner: vfio}",
      "  - fake_claim: {group: c, owner: other}",
      "    error: EPERM",
      "  - expect: {group: a, owner_cnt: 0, owner: null}",
    ]);
    expect(r.status).toBe("pass");
    const other = run([
      "  - fake_claim: {group: b, owner: vfio}",
      "  - fake_claim: {group: a, owner: x}",
      "  - expect: {group: c, owner: x}",
    ]);
    expect(failureOf(other)).toMatchObject({
      step: 3,
      message: "unexpected owner of group",
      actual: "vfio",
    });
  });

  it("warns: checks the WARN sites a step raised", () => {
    const ok = run([
      "  - fake_domain_alloc: {dev: a}",
      "    as: d",
      "  - fake_detach: {domain: d, dev: a}",
      "    warns: [fake_detach]",
    ]);
    expect(ok.status).toBe("pass");
    expect(ok.steps[1]!.warnings).toEqual(["fake_detach"]);
    const none = run([
      "  - fake_domain_alloc: {dev: a}",
      "    as: d",
      "  - fake_detach: {domain: d, dev: a}",
      "    warns: 0",
    ]);
    expect(failureOf(none)).toMatchObject({
      message: "expected 0 kernel WARN(s), got 1",
      actual: ["fake_detach"],
    });
    const count = run([
      "  - fake_domain_alloc: {dev: a}",
      "    as: d",
      "  - fake_detach: {domain: d, dev: a}",
      "  - expect: {warnings: 1}",
    ]);
    expect(count.status).toBe("pass");
  });

  it("invariants are checked after every step, and can be switched off", () => {
    const s = loadScenario(
      "machine: two\nsteps:\n  - fake_corrupt: {}\n  - fake_tick: {ns: 1}\n",
      "i.yaml",
      fakeHost,
    );
    const r = runScenario(s, fakeHost);
    expect(failureOf(r)).toMatchObject({
      step: 1,
      message: "invariant violated after this step: fake invariant broken",
    });
    expect(runScenario(s, fakeHost, { checkInvariants: false }).status).toBe("pass");
  });

  it("a boot log that differs from boot_log: fails step 0 and skips every step", () => {
    const text = "machine: {groups: [[a, broken]]}\nsteps:\n  - fake_tick: {ns: 1}\n";
    const r = runScenario(loadScenario(text, "b.yaml", fakeHost), fakeHost);
    expect(r.steps.map((s) => [s.step, s.status])).toEqual([
      [0, "fail"],
      [1, "skipped"],
    ]);
    expect(r.steps[0]!.failure).toEqual({
      message: 'the boot log differs from the scenario\'s "boot_log:"',
      expected: [],
      actual: ["device broken failed to probe"],
    });
    const declared = `boot_log: [device broken failed to probe]\n${text}`;
    expect(runScenario(loadScenario(declared, "b.yaml", fakeHost), fakeHost).status).toBe("pass");
  });

  it("records virtual time and trace events per step, and the trace when asked", () => {
    const r = run(
      ["  - fake_tick: {ns: 1500}", "  - fake_domain_alloc: {dev: a}", "  - fake_tick: {ns: 0}"],
      {
        keepTrace: true,
      },
    );
    expect(r.steps.map((s) => [s.durationNs, s.traceEvents])).toEqual([
      [1500, 0],
      [0, 1],
      [0, 0],
    ]);
    expect(r.trace?.map((t) => [t.event, t.ts])).toEqual([["iommu_core:domain_alloc", 1500]]);
  });

  it("the same scenario gives identical JSON output on every run; the seed is reported", () => {
    const steps = [
      "  - fake_domain_alloc: {dev: a}",
      "    as: d1",
      "  - fake_attach: {domain: d1, dev: a}",
      "  - fake_tick: {ns: 10}",
      "  - fake_attach: {domain: d1, dev: a}",
      "    error: EBUSY",
    ];
    const a = JSON.stringify(scenarioResultJSON(run(steps)));
    const b = JSON.stringify(scenarioResultJSON(run(steps)));
    expect(a).toBe(b);
    expect(JSON.parse(a)).toMatchObject({
      file: "r.yaml",
      seed: 1,
      status: "pass",
      steps: [
        {
          step: 1,
          line: 3,
          call: "fake_domain_alloc(dev=a)",
          status: "pass",
          duration_ns: 0,
          trace_events: 1,
        },
        { step: 2, call: "fake_attach(domain=d1, dev=a)" },
        { step: 3, duration_ns: 10 },
        { step: 4, errno: "EBUSY" },
      ],
    });
  });

  it("the text report shows the failing step with its location, call, expected and actual", () => {
    const r = run(["  - fake_add: {a: 1, b: 2}", "    returns: 4", "  - fake_tick: {ns: 1}"]);
    expect(formatScenarioResult(r)).toBe(
      [
        "FAIL r.yaml [mock] r — 0/2 steps",
        '  ✗ step 1 (r.yaml:3:5): fake_add(a=1, b=2) = "0x3"',
        "      fake_add returned an unexpected value",
        '      expected: "0x4"',
        '      actual:   "0x3"',
      ].join("\n"),
    );
  });
});

describe("sections and run hooks", () => {
  const STEPS = [
    "  - section: setup",
    "    note: a domain",
    "  - fake_domain_alloc: {dev: a}",
    "    as: d1",
    "  - section: attach",
    "  - fake_attach: {domain: d1, dev: a}",
  ];

  it("a section step calls nothing and reports its title", () => {
    const r = run(STEPS);
    expect(r.status).toBe("pass");
    expect(r.steps.map((s) => s.section ?? s.call)).toEqual([
      "setup",
      "fake_domain_alloc(dev=a)",
      "attach",
      "fake_attach(domain=d1, dev=a)",
    ]);
    expect(r.steps[0]).toMatchObject({ status: "pass", traceEvents: 0, note: "a domain" });
    expect(formatScenarioResult(r, { verbose: true })).toContain("  § attach");
    expect((scenarioResultJSON(r) as { steps: { section?: string }[] }).steps[2]!.section).toBe(
      "attach",
    );
  });

  it("onBoot sees the machine before step 1, onStep every result, stopAfter ends the run early", () => {
    const s = loadScenario(`machine: two\nsteps:\n${STEPS.join("\n")}\n`, "r.yaml", fakeHost);
    const seen: string[] = [];
    const r = runScenario(s, fakeHost, {
      stopAfter: 2,
      onBoot: (m) => seen.push(`boot ${m.ctx.clock.now}`),
      onStep: (x) => seen.push(`${x.step} ${x.status}`),
    });
    expect(seen).toEqual(["boot 0", "1 pass", "2 pass"]);
    expect(r.steps).toHaveLength(2);
    expect(r.status).toBe("pass");
    expect(runScenario(s, fakeHost, { stopAfter: 0 }).steps).toEqual([]);
  });
});
