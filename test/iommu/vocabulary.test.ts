// docs/vocabulary-core.md stays in step with the IommuCore class: every public method, getter
// and field of the core appears in it as `core.<name>`.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { IommuCore } from "../../src/iommu/core.js";
import { bed } from "./setup.js";

const doc = readFileSync(join(import.meta.dirname, "../../docs/vocabulary-core.md"), "utf8");

/** Members that are not calls: the class plumbing and the internal state (`@internal`). */
const NOT_API = new Set(["constructor", "toJSON", "s"]);

describe("docs/vocabulary-core.md", () => {
  it("lists every public call of the core", () => {
    const core = bed().core;
    const names = [...Object.getOwnPropertyNames(IommuCore.prototype), ...Object.keys(core)].filter(
      (n) => !NOT_API.has(n) && !n.startsWith("#"),
    );
    expect(names.length).toBeGreaterThan(80);
    expect(names).toContain("unmapFastPfn");
    const missing = names.filter((n) => !new RegExp(`core\\.${n}\\b`).test(doc));
    expect(missing).toEqual([]);
  });
});
