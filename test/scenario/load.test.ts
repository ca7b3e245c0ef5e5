import { describe, expect, it } from "vitest";
import { InputError } from "../../src/base/errors.js";
import { InputErrors } from "../../src/machine/input/diagnostics.js";
import { loadScenario } from "../../src/scenario/load.js";
import { fakeHost } from "./fake-world.js";

/** The formatted errors of loading `text`, one string per error (fails if it loads). */
function errorsOf(text: string): string[] {
  try {
    loadScenario(text, "t.yaml", fakeHost);
  } catch (e) {
    if (e instanceof InputErrors) return e.errors.map((x) => x.format());
    if (e instanceof InputError) return [e.format()];
    throw e;
  }
  throw new Error("expected the scenario to be rejected");
}

const ok = (steps: string) => `machine: two\nsteps:\n${steps}`;

describe("scenario validation reports every problem with file:line:column", () => {
  it("accepts a valid scenario and compiles its steps", () => {
    const s = loadScenario(
      ok(
        [
          "  - fake_domain_alloc: {dev: a}",
          "    as: d1",
          "  - fake_attach: {domain: d1, dev: a}",
          "  - fake_attach: {domain: d1, dev: b}",
          "    error: EBUSY",
          "    note: b's group is busy",
          "  - expect: {dev: a, domain: d1}",
        ].join("\n"),
      ),
      "t.yaml",
      fakeHost,
    );
    expect(s.name).toBe("t");
    expect(s.seed).toBe(1);
    expect(s.steps.map((x) => x.kind)).toEqual(["call", "call", "call", "expect"]);
    const call = s.steps[2]!;
    expect(call.kind === "call" && call.error).toBe("EBUSY");
    expect(call.loc).toEqual({ file: "t.yaml", line: 6, column: 5 });
    expect(s.steps[0]!.kind === "call" && s.steps[0]!.text).toBe("fake_domain_alloc(dev=a)");
  });

  it("an unknown function, with a suggestion", () => {
    expect(errorsOf(ok("  - fake_atach: {domain: d1, dev: a}"))).toEqual([
      't.yaml:3:5: steps[0].fake_atach: unknown function "fake_atach" (did you mean "fake_attach"?)',
    ]);
  });

  it("unknown and missing parameters", () => {
    expect(errorsOf(ok("  - fake_domain_alloc: {device: a}"))).toEqual([
      't.yaml:3:24: steps[0].fake_domain_alloc: missing parameter "dev"',
      't.yaml:3:25: steps[0].fake_domain_alloc.device: fake_domain_alloc has no parameter "device" (did you mean "dev"?); parameters: dev, type',
    ]);
  });

  it("wrong types: integer range, u64, enum, flags, bool, object names", () => {
    const errs = errorsOf(
      ok(
        [
          "  - fake_add: {a: 101, b: -1, f: [READ, EXEC], on: 1}",
          "  - fake_domain_alloc: {dev: a, type: DMX}",
          "  - fake_domain_alloc: {dev: zz}",
          "  - fake_domain_alloc: {dev: [a]}",
        ].join("\n"),
      ),
    );
    expect(errs).toEqual([
      "t.yaml:3:19: steps[0].fake_add.a: expected an integer in 0..100, got the number 101",
      "t.yaml:3:27: steps[0].fake_add.b: expected a 64-bit unsigned value, got the number -1",
      't.yaml:3:41: steps[0].fake_add.f[1]: unknown flag "EXEC"; flags: READ, WRITE',
      "t.yaml:3:52: steps[0].fake_add.on: expected true or false, got the number 1",
      't.yaml:4:39: steps[1].fake_domain_alloc.type: unknown value "DMX" (did you mean "DMA"?); expected one of DMA, UNMANAGED',
      't.yaml:5:30: steps[2].fake_domain_alloc.dev: unknown device "zz"',
      "t.yaml:6:30: steps[3].fake_domain_alloc.dev: expected a device name, got a list",
    ]);
  });

  it("a binding used before `as:` defines it, and a binding of the wrong kind", () => {
    const errs = errorsOf(
      ok(
        [
          "  - fake_attach: {domain: d1, dev: a}",
          "  - fake_domain_alloc: {dev: a}",
          "    as: d1",
          "  - fake_attach: {domain: d1, dev: d1}",
        ].join("\n"),
      ),
    );
    expect(errs).toEqual([
      't.yaml:3:27: steps[0].fake_attach.domain: "d1" is not bound (no earlier step has "as: d1")',
      't.yaml:6:36: steps[2].fake_attach.dev: "d1" is a domain, expected a device',
    ]);
  });

  it("a result bound in a step is not visible to its own arguments or returns", () => {
    const errs = errorsOf(ok("  - fake_domain_alloc: {dev: a}\n    as: d1\n    returns: $d1"));
    expect(errs).toEqual([
      't.yaml:5:14: steps[0].returns: "$d1" refers to nothing: "d1" is not bound and names nothing in the machine',
    ]);
  });

  it("$name in expected values: a malformed name, or one naming nothing, typed or inside JSON", () => {
    const errs = errorsOf(
      ok(
        [
          "  - fake_domain_alloc: {dev: a}",
          "    returns: $2y",
          "  - fake_view: {dev: b}",
          "    returns: {domains: [$d9, $1x]}",
          "  - expect: {dev: a, domain: $a}",
        ].join("\n"),
      ),
    );
    expect(errs).toEqual([
      't.yaml:4:14: steps[0].returns: "$2y" is not a valid reference',
      't.yaml:6:25: steps[1].returns.domains[0]: "$d9" refers to nothing: "d9" is not bound and names nothing in the machine',
      't.yaml:6:30: steps[1].returns.domains[1]: "$1x" is not a valid reference',
    ]);
  });

  it("unknown errno names, error: on a call that cannot fail, as: on void", () => {
    const errs = errorsOf(
      ok(
        [
          "  - fake_attach: {domain: x, dev: a}",
          "    error: EBUSYY",
          "  - fake_detach: {domain: x, dev: a}",
          "    error: EINVAL",
          "  - fake_tick: {ns: 5}",
          "    as: t",
        ].join("\n"),
      ),
    );
    expect(errs).toEqual([
      't.yaml:3:27: steps[0].fake_attach.domain: "x" is not bound (no earlier step has "as: x")',
      't.yaml:4:12: steps[0].error: unknown errno "EBUSYY" (did you mean "EBUSY"?)',
      't.yaml:5:27: steps[1].fake_detach.domain: "x" is not bound (no earlier step has "as: x")',
      "t.yaml:6:5: steps[1].error: fake_detach cannot fail (the kernel declares it void)",
      "t.yaml:8:5: steps[2].as: fake_tick returns no object or number to bind",
    ]);
  });

  it("as:/returns: together with error:, and two calls in one step", () => {
    const errs = errorsOf(
      ok(
        [
          "  - fake_domain_alloc: {dev: a}",
          "    as: d1",
          "    error: ENOMEM",
          "    returns: {type: DMA}",
          "  - fake_get_domain: {dev: a}",
          "    fake_tick: {ns: 1}",
        ].join("\n"),
      ),
    );
    expect(errs).toEqual([
      't.yaml:4:5: steps[0].as: a step expecting an error binds nothing: drop "as:" or "error:"',
      't.yaml:6:5: steps[0].returns: a step expecting an error returns nothing: drop "returns:" or "error:"',
      't.yaml:8:5: steps[1].fake_tick: one call per step: "fake_get_domain" already is this step\'s call',
    ]);
  });

  it("expect: unknown subject, unknown property, bad expected value, nothing to check", () => {
    const errs = errorsOf(
      ok(
        [
          "  - expect: {devv: a}",
          "  - expect: {dev: a, domian: default}",
          "  - expect: {group: a, owner_cnt: many}",
          "  - expect: {dev: a}",
          "  - expect: {dev: a, domain: nope}",
          "  - expect: {dev: a, domain: default}",
          "    as: x",
        ].join("\n"),
      ),
    );
    expect(errs).toEqual([
      't.yaml:3:14: steps[0].expect.devv: unknown expect subject "devv" (did you mean "dev"?); the first key names the subject: dev, group, warnings, machine',
      't.yaml:4:22: steps[1].expect.domian: dev has no property "domian" (did you mean "domain"?); properties: domain',
      't.yaml:5:35: steps[2].expect.owner_cnt: expected an integer in 0..1073741824, got the string "many"',
      "t.yaml:6:13: steps[3].expect: nothing to check on dev: add one of domain",
      't.yaml:7:30: steps[4].expect.domain: "nope" is not bound (no earlier step has "as: nope")',
      't.yaml:9:5: steps[5].as: "as:" belongs to calls, not to expect:',
    ]);
  });

  it("structure: not a map, missing machine and steps, unknown top-level field, bad step", () => {
    expect(errorsOf("- a\n- b\n")).toEqual([
      't.yaml:1:1: a scenario is a map with "machine:" and "steps:", got a list',
    ]);
    expect(errorsOf("nmae: x\n")).toEqual([
      't.yaml:1:1: nmae: unknown field (did you mean "name"?); expected one of name, description, drivers, seed, boot_log, machine, steps',
      't.yaml:1:1: missing field "machine" (a built-in machine name or a description)',
      't.yaml:1:1: missing field "steps"',
    ]);
    expect(errorsOf("machine: two\nsteps: {a: 1}\n")).toEqual([
      "t.yaml:2:8: steps: expected a list of steps, got a map",
    ]);
    expect(errorsOf(ok("  - just text\n  - note: alone"))).toEqual([
      't.yaml:3:5: steps[0]: a step is a map like "iommu_attach_device: {domain: d1, dev: nic0}", got the string "just text"',
      "t.yaml:4:5: steps[1]: a step needs a function to call, an expect: or a section:",
    ]);
  });

  it("machine errors come from the host, and names are not checked against a broken machine", () => {
    const errs = errorsOf("machine: three\nsteps:\n  - fake_domain_alloc: {dev: anything}\n");
    expect(errs).toEqual(['t.yaml:1:10: machine: expected "two" or {groups: [...]}']);
  });

  it("YAML syntax errors and duplicate keys carry positions", () => {
    expect(errorsOf("machine: two\nsteps:\n  - fake_tick: {ns: 1\n")).toEqual([
      "t.yaml:4:1: YAML syntax: flow map in block collection must be sufficiently indented and end with a }",
    ]);
    expect(errorsOf("machine: two\nmachine: two\nsteps: []\n")).toEqual([
      "t.yaml:2:1: duplicate key (each key may appear once in a map)",
    ]);
  });

  it("reports all errors of a file at once, in source order, each once", () => {
    const errs = errorsOf(
      [
        "machine: two",
        "drivers: [mock, nope]",
        "steps:",
        "  - fake_attach: {domain: d9, dev: a}",
        "  - fake_attach: {domain: d9, dev: a}",
        "  - bogus: {}",
        "    error: ENOPE",
      ].join("\n"),
    );
    expect(errs).toHaveLength(5);
    expect(errs.map((e) => e.split(": ")[0])).toEqual([
      "t.yaml:2:17",
      "t.yaml:4:27",
      "t.yaml:5:27",
      "t.yaml:6:5",
      "t.yaml:7:12",
    ]);
  });

  it("creatable kinds: a new handle name defines a binding usable later", () => {
    const s = loadScenario(
      ok(
        [
          "  - fake_use_handle: {handle: h1, pasid: 1}",
          "  - fake_use_handle: {handle: h1, pasid: 2}",
          "    returns: $h1",
          "  - fake_claim: {group: b, owner: vfio}",
          "  - expect: {group: c, owner: vfio}",
        ].join("\n"),
      ),
      "t.yaml",
      fakeHost,
    );
    expect(s.steps).toHaveLength(4);
    expect(
      errorsOf(
        ok(
          "  - fake_domain_alloc: {dev: a}\n    as: h1\n  - fake_use_handle: {handle: h1, pasid: 1}",
        ),
      ),
    ).toEqual([
      't.yaml:5:31: steps[1].fake_use_handle.handle: "h1" is a domain, expected a handle',
    ]);
  });

  it("a binding may not take a machine name", () => {
    expect(errorsOf(ok("  - fake_domain_alloc: {dev: a}\n    as: b"))).toEqual([
      't.yaml:4:9: steps[0].as: "b" already names a device of the machine',
    ]);
  });

  it("JSON files are YAML and get positions too", () => {
    try {
      loadScenario('{"machine": "two", "steps": [{"fake_tick": {"ns": "x"}}]}', "t.json", fakeHost);
      expect.unreachable();
    } catch (e) {
      expect((e as InputError).format()).toBe(
        't.json:1:51: steps[0].fake_tick.ns: expected an integer in 0..1000000000, got the string "x"',
      );
    }
  });
});
