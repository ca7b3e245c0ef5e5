// The reference documents stay in step with the code: the generated sections of
// docs/scenario-language.md, every kernel function of docs/vocabulary-core.md, every field of a
// machine description. `UPDATE_DOCS=1` rewrites the generated sections instead of failing.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DESCRIPTION_FIELDS } from "../../src/machine/description.js";
import { DRIVER_OPTION_FIELDS } from "../../src/machine/iommu-options.js";
import {
  expectMarkdown,
  kindsMarkdown,
  replaceGenerated,
  vocabularyMarkdown,
} from "../../src/scenario/docs.js";
import { MACHINE_VOCABULARY } from "../../src/scenario/vocabulary/index.js";

const ROOT = join(import.meta.dirname, "../..");
const read = (p: string) => readFileSync(join(ROOT, p), "utf8");

/** Kernel functions of docs/vocabulary-core.md a scenario cannot call, and why. */
const NOT_CALLABLE: Readonly<Record<string, string>> = {
  iommu_def_domain_type: "a variable (expect: {machine: {policy: …}})",
  iommu_dma_strict: "a variable (expect: {machine: {policy: …}})",
  iommu_device_register: "needs a driver's ops object; machines register their IOMMUs at boot",
  iommu_device_register_bus: "iommufd selftest registration on a private bus",
  iommu_device_unregister_bus: "iommufd selftest registration on a private bus",
  iommu_mock_device_add: "iommufd selftest device creation on a private bus",
  iommu_group_for_each_dev: "takes a callback",
  device_add: "machine action hot_add",
  device_del: "machine action hot_remove",
  driver_register: "machine action bind_driver registers drivers",
  driver_unregister: "machine action unbind_driver",
  device_driver_attach: "machine action bind_driver",
  device_release_driver: "machine action unbind_driver",
  driver_deferred_probe_trigger: "machine action settle runs deferred probes",
  ioasid_register_allocator: "takes allocator callbacks",
  ioasid_unregister_allocator: "takes allocator callbacks",
  iommu_pasid_for_each: "takes a callback",
  iopf_group_response:
    "takes an iopf_group handed to a fault handler; the SVA handler answers its own groups",
  iopf_free_group: "takes an iopf_group handed to a fault handler; the SVA handler frees its own",
};

describe("docs", () => {
  it("docs/scenario-language.md holds the current generated tables", () => {
    const path = "docs/scenario-language.md";
    const doc = read(path);
    let fresh = replaceGenerated(doc, "kinds", kindsMarkdown());
    fresh = replaceGenerated(fresh, "vocabulary", vocabularyMarkdown());
    fresh = replaceGenerated(fresh, "expect", expectMarkdown());
    if (process.env.UPDATE_DOCS && fresh !== doc) writeFileSync(join(ROOT, path), fresh);
    else expect(doc).toBe(fresh);
  });

  it("every kernel function of docs/vocabulary-core.md is callable from a scenario (or excused)", () => {
    const doc = read("docs/vocabulary-core.md");
    const kernelNames = [...doc.matchAll(/^\| `([a-z_][a-z0-9_]*)`/gm)].map((m) => m[1]!);
    expect(kernelNames.length).toBeGreaterThan(40);
    const callable = new Set(MACHINE_VOCABULARY.functions.map((f) => f.name));
    const missing = kernelNames.filter((n) => !callable.has(n) && !(n in NOT_CALLABLE));
    expect(missing).toEqual([]);
  });

  it("every vocabulary function has a unique name, a doc line and typed parameters", () => {
    const names = MACHINE_VOCABULARY.functions.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
    for (const f of MACHINE_VOCABULARY.functions) {
      expect(f.doc.length, f.name).toBeGreaterThan(10);
      expect(f.ts.length, f.name).toBeGreaterThan(3);
      for (const p of Object.values(f.params)) {
        if (p.type.kind === "object")
          expect(MACHINE_VOCABULARY.kinds[p.type.object], f.name).toBeDefined();
      }
    }
  });

  it("docs/machine-description.md documents every field of a description", () => {
    const doc = read("docs/machine-description.md");
    const fields = { ...DESCRIPTION_FIELDS, ...DRIVER_OPTION_FIELDS };
    const undocumented = Object.entries(fields).flatMap(([part, list]) =>
      list.filter((f) => !doc.includes(`| \`${f}\``)).map((f) => `${part}.${f}`),
    );
    expect(undocumented).toEqual([]);
  });
});
