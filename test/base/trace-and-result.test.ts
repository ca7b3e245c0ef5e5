import { describe, expect, it } from "vitest";
import { createContext } from "../../src/base/context.js";
import { InputError } from "../../src/base/errors.js";
import { err, formatResult, kernelReturn, OK, ok, unwrap } from "../../src/base/result.js";

describe("Result", () => {
  it("carries values and errno names, and prints like the kernel", () => {
    expect(kernelReturn(OK)).toBe(0);
    expect(kernelReturn(err("EBUSY"))).toBe(-16);
    expect(kernelReturn(err("EPROBE_DEFER"))).toBe(-517);
    expect(formatResult(err("ENOSPC"))).toBe("-ENOSPC");
    expect(err("EINVAL")).toBe(err("EINVAL"));
    expect(unwrap(ok(5))).toBe(5);
    expect(() => unwrap(err("ENOMEM"), "alloc")).toThrow("alloc failed unexpectedly with -ENOMEM");
  });
});

describe("TraceBus and Warnings", () => {
  it("records nothing while idle and stamps virtual time while recording", () => {
    const ctx = createContext();
    ctx.trace.emit("iommu:attach_device_to_domain", "core", { device: "lost" });
    expect(ctx.trace.enabled).toBe(false);
    const rec = ctx.trace.record();
    ctx.clock.advance(7);
    ctx.trace.emit("iommu:add_device_to_group", "core", { gid: 0, device: "dsa0" });
    ctx.warnings.warn("iommu_detach_device", "domain is not the group's domain");
    const records = rec.stop();
    expect(ctx.trace.enabled).toBe(false);
    expect(records.map((r) => [r.seq, r.ts, r.event])).toEqual([
      [0, 7, "iommu:add_device_to_group"],
      [1, 7, "iommu_core:warning"],
    ]);
    expect(ctx.warnings.on(false, "x", "y")).toBe(false);
    expect(ctx.warnings.on(true, "site", "msg")).toBe(true);
    expect(ctx.warnings.take().map((w) => w.site)).toEqual(["iommu_detach_device", "site"]);
    expect(ctx.warnings.count).toBe(0);
  });
});

describe("InputError", () => {
  it("formats file:line:column", () => {
    expect(
      new InputError("unknown function", { file: "a.yaml", line: 3, column: 5 }).format(),
    ).toBe("a.yaml:3:5: unknown function");
    expect(new InputError("bad flag").format()).toBe("bad flag");
  });
});
