// The reference documents stay in step with the code: the generated sections of
// docs/scenario-language.md, every kernel function of docs/vocabulary-core.md, every field of a
// machine description. `UPDATE_DOCS=1` rewrites the generated sections instead of failing.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { demo } from "../../src/cli/demo.js";
import { inspect } from "../../src/cli/inspect.js";
import { runCli } from "../../src/cli/program.js";
import { IOMMU_DOMAIN_DMA } from "../../src/iommu/constants.js";
import { buildMachine } from "../../src/machine/build.js";
import { DESCRIPTION_FIELDS } from "../../src/machine/description.js";
import { DRIVER_OPTION_FIELDS } from "../../src/machine/iommu-options.js";
import {
  expectMarkdown,
  kindsMarkdown,
  replaceGenerated,
  vocabularyMarkdown,
} from "../../src/scenario/docs.js";
import { loadScenario } from "../../src/scenario/load.js";
import { machineHost } from "../../src/scenario/machine-host.js";
import { formatScenarioResult } from "../../src/scenario/report.js";
import { applicableDrivers, runScenario } from "../../src/scenario/run.js";
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

/** A doc's example files: a `` `name.yaml`: `` line, a blank line, then the file's yaml block. */
function exampleFiles(doc: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const m of doc.matchAll(/^`([\w./-]+\.yaml)`:\n\n```yaml\n([\s\S]*?)```/gm))
    files[m[1]!] = m[2]!;
  return files;
}

/** Runs `iommu-sim ARGS` in-process on the doc's files; stderr then stdout, as a terminal shows. */
async function transcript(argv: string[], files: Record<string, string>): Promise<string> {
  let out = "";
  let err = "";
  await runCli(
    argv,
    {
      stdout: (t) => {
        out += t;
      },
      stderr: (t) => {
        err += t;
      },
      readFile: (p) => {
        if (!(p in files)) throw Object.assign(new Error(p), { code: "ENOENT" });
        return files[p]!;
      },
      writeFile: () => {},
      progress: () => null,
    },
    { host: machineHost, demo, inspect },
  );
  return err + out;
}

/** Runs a ```ts example of a doc: its imports must exist, its statements must run. */
async function runTsExample(block: string, yamlText: string): Promise<void> {
  const names: string[] = [];
  const values: unknown[] = [];
  for (const m of block.matchAll(/^import \{ ([^}]+) \} from "\.\/(src\/[\w/-]+)\.js";$/gm)) {
    const mod = (await import(join(ROOT, `${m[2]}.ts`))) as Record<string, unknown>;
    for (const name of m[1]!.split(",").map((n) => n.trim())) {
      expect(mod[name], `${m[2]} exports ${name}`).toBeDefined();
      names.push(name);
      values.push(mod[name]);
    }
  }
  const body = block.replace(/^import .*$/gm, "");
  const logged: unknown[] = [];
  new Function(...names, "yamlText", "console", body)(...values, yamlText, {
    log: (x: unknown) => logged.push(x),
  });
}

describe("the docs' examples", () => {
  const language = read("docs/scenario-language.md");

  it("docs/scenario-language.md: the opening example passes on every driver it applies to", () => {
    const yaml = /```yaml\n(name:[\s\S]*?)```/.exec(language)![1]!;
    const scenario = loadScenario(yaml, "example.yaml", machineHost);
    for (const driver of applicableDrivers(scenario, machineHost)) {
      const r = runScenario(scenario, machineHost, { driver });
      expect(r.status, formatScenarioResult(r)).toBe("pass");
    }
  });

  it("docs/scenario-language.md: each `$ iommu-sim …` transcript is what the command prints", async () => {
    const files = exampleFiles(language);
    expect(Object.keys(files)).toEqual(["t.yaml", "scenarios/x.yaml"]);
    const shown = [...language.matchAll(/^```\n\$ iommu-sim (.*)\n([\s\S]*?)```/gm)];
    expect(shown).toHaveLength(2);
    for (const [, args, output] of shown) {
      expect(await transcript(args!.split(" "), files)).toBe(output);
    }
  });

  it("docs/scenario-language.md: every expect form shown validates after the steps it names", () => {
    const block = /### Expectations\n\n```yaml\n([\s\S]*?)```/.exec(language)![1]!;
    const forms = block.split("\n").filter((l) => l.startsWith("- expect:"));
    expect(forms.length).toBeGreaterThan(8);
    const yaml = [
      "machine: default",
      "steps:",
      "  - iommu_paging_domain_alloc: {dev: dsa0}",
      "    as: d1",
      "  - iommu_group_claim_dma_owner: {group: nic0, owner: vfio}",
      "  - iommu_attach_device_pasid: {domain: d1, dev: dsa0, pasid: 5, handle: h1}",
      ...forms.map((l) => `  ${l}`),
    ].join("\n");
    expect(loadScenario(yaml, "expect-forms.yaml", machineHost).steps).toHaveLength(
      3 + forms.length,
    );
  });

  it("the TypeScript examples of scenario-language.md and machine-description.md run", async () => {
    const opening = /```yaml\n(name:[\s\S]*?)```/.exec(language)![1]!;
    await runTsExample(/```ts\n([\s\S]*?)```/.exec(language)![1]!, opening);
    const machines = read("docs/machine-description.md");
    await runTsExample(
      /```ts\n([\s\S]*?)```/.exec(machines)![1]!,
      "name: box\niommus:\n  iommu0: {driver: mock}\ndevices:\n  dev0: {pasid_bits: 8}\n",
    );
  });
});

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

  it("the JSON views the docs list hold every key the objects' toJSON() gives", () => {
    const m = buildMachine("default");
    const keysOf = (x: unknown) => Object.keys(JSON.parse(JSON.stringify(x)) as object);
    // The paragraph or bullet that documents a view, and the keys it must name.
    const para = (doc: string, start: string) => {
      const from = doc.indexOf(start);
      expect(from, start).toBeGreaterThan(-1);
      return doc.slice(from, doc.indexOf("\n\n", from));
    };
    const named = (text: string, keys: string[]) =>
      keys.filter((k) => !new RegExp(`[{\\s\`]${k}[:,}?]`).test(text));
    const machineDoc = read("docs/machine-description.md");
    expect(named(para(machineDoc, "`Machine.toJSON()`"), keysOf(m))).toEqual([]);
    const language = read("docs/scenario-language.md");
    const dsa = m.device("dsa0")!;
    const riscvDomain = m.core.domains().find((d) => d.type === IOMMU_DOMAIN_DMA)!;
    const views = para(language, "- **Domain**");
    expect(named(views, keysOf(riscvDomain))).toEqual([]);
    expect(named(views, keysOf(m.core.groups()[3]))).toEqual([]);
    expect(named(views, keysOf(dsa))).toEqual([]);
    expect(named(views, keysOf((dsa.toJSON() as { pci: object }).pci))).toEqual([]);
    const core = read("docs/vocabulary-core.md");
    const instance = (m.core.toJSON() as { iommus: object[] }).iommus[0];
    expect(named(para(core, "- **IOMMU instance**"), keysOf(instance))).toEqual([]);
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
