import { describe, expect, it } from "vitest";
import {
  checkArchitecture,
  findCycles,
  importsOf,
  layerOf,
  readSourceTree,
  SRC_DIR,
} from "../tools/architecture.js";

describe("architecture", () => {
  it("the source tree keeps every import rule of DESIGN.md and has no import cycle", () => {
    const files = readSourceTree(SRC_DIR);
    expect(files.length).toBeGreaterThan(5);
    expect(checkArchitecture(files)).toEqual([]);
  });

  it("finds layer violations", () => {
    const v = checkArchitecture([
      { path: "hw/pgtable/walk.ts", text: 'import { x } from "../../iommu/core.js";' },
      { path: "iommu/core.ts", text: "export const x = 1;" },
    ]);
    expect(v).toEqual([
      {
        file: "hw/pgtable/walk.ts",
        message: 'layer hw/pgtable may not import iommu ("../../iommu/core.js")',
      },
    ]);
  });

  it("finds the IOMMU core importing drivers or IOMMU hardware", () => {
    const v = checkArchitecture([
      {
        path: "iommu/a.ts",
        text: 'import type { R } from "../hw/riscv-iommu/regs.js";\nimport "../drivers/mock/mock.js";',
      },
      { path: "hw/riscv-iommu/regs.ts", text: "export type R = number;" },
      { path: "drivers/mock/mock.ts", text: "" },
    ]);
    expect(v.map((x) => x.message)).toEqual([
      'layer iommu may not import hw/riscv-iommu ("../hw/riscv-iommu/regs.js")',
      'layer iommu may not import drivers ("../drivers/mock/mock.js")',
    ]);
  });

  it("finds cycles, including type-only ones", () => {
    const v = checkArchitecture([
      { path: "iommu/a.ts", text: 'import type { B } from "./b.js";' },
      { path: "iommu/b.ts", text: 'export { a } from "./a.js";' },
    ]);
    expect(v).toEqual([
      { file: "iommu/a.ts", message: "import cycle: iommu/a.ts → iommu/b.ts → iommu/a.ts" },
    ]);
    expect(findCycles(new Map([["x", ["x"]]]))).toEqual([["x"]]);
    expect(
      findCycles(
        new Map([
          ["x", ["y"]],
          ["y", []],
        ]),
      ),
    ).toEqual([]);
  });

  it("finds host use outside cli/ and allows it inside", () => {
    const v = checkArchitecture([
      { path: "scenario/run.ts", text: 'import { readFileSync } from "node:fs";\nconsole.log(1);' },
      { path: "cli/main.ts", text: 'import { readFileSync } from "node:fs";\nprocess.exit(0);' },
    ]);
    expect(v.map((x) => `${x.file}: ${x.message}`)).toEqual([
      'scenario/run.ts: imports host module "node:fs"',
      "scenario/run.ts: uses the host (process/console/DOM) outside cli/",
    ]);
  });

  it("reads every import form and ignores commented ones", () => {
    const text = [
      'import a from "./a.js";',
      'import { b, type c } from "./b.js";',
      'import type { D } from "./d.js";',
      'export * as e from "./e.js";',
      'import "./side.js";',
      'const m = await import("./lazy.js");',
      '// import { z } from "./commented.js";',
      "import {\n  multi,\n  line,\n} from './multi.js';",
    ].join("\n");
    expect(importsOf(text)).toEqual([
      "./a.js",
      "./b.js",
      "./d.js",
      "./e.js",
      "./side.js",
      "./lazy.js",
      "./multi.js",
    ]);
  });

  it("maps paths to layers", () => {
    expect(layerOf("hw/memory.ts")).toBe("hw/memory");
    expect(layerOf("hw/riscv-iommu/cq.ts")).toBe("hw/riscv-iommu");
    expect(layerOf("iommu/sva.ts")).toBe("iommu");
    expect(layerOf("index.ts")).toBe("index");
  });
});
