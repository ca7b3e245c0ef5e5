// The README's example scenario is real: it must validate and pass as written; its commands run
// as shown; the files it points to exist.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { demo } from "../src/cli/demo.js";
import { inspect } from "../src/cli/inspect.js";
import { runCli } from "../src/cli/program.js";
import { loadScenario } from "../src/scenario/load.js";
import { machineHost } from "../src/scenario/machine-host.js";
import { formatScenarioResult } from "../src/scenario/report.js";
import { applicableDrivers, runScenario } from "../src/scenario/run.js";

const ROOT = join(import.meta.dirname, "..");
const readme = readFileSync(join(ROOT, "README.md"), "utf8");

/** `dir/*.yaml` as the shell expands it (the README's globs are of that one form). */
function expand(arg: string): string[] {
  const glob = /^([\w/-]+)\/\*(\.\w+)$/.exec(arg);
  if (glob === null) return [arg];
  return readdirSync(join(ROOT, glob[1]!))
    .filter((f) => f.endsWith(glob[2]!))
    .sort()
    .map((f) => `${glob[1]}/${f}`);
}

async function iommuSim(argv: string[]) {
  let out = "";
  let err = "";
  const written: string[] = [];
  const code = await runCli(
    argv,
    {
      stdout: (t) => {
        out += t;
      },
      stderr: (t) => {
        err += t;
      },
      readFile: (p) => readFileSync(resolve(ROOT, p), "utf8"),
      writeFile: (p) => {
        written.push(p);
      },
      progress: () => null,
    },
    { host: machineHost, demo, inspect },
  );
  return { code, out, err, written };
}

describe("README", () => {
  it("keeps its two set-up commands", () => {
    expect(readme).toContain("    npm ci && npm start\n");
    expect(readme).toContain("    npm ci && npm test\n");
  });

  it("every `npx iommu-sim` command it shows runs as shown, exit 0", async () => {
    const commands = [...readme.matchAll(/^ {4}npx iommu-sim (.*?)(?: {2,}#.*)?$/gm)].map((m) =>
      m[1]!.trim().split(/\s+/).flatMap(expand),
    );
    expect(commands.length).toBeGreaterThanOrEqual(8);
    for (const argv of commands) {
      const r = await iommuSim(argv);
      expect(r.err, argv.join(" ")).toBe("");
      expect(r.code, argv.join(" ")).toBe(0);
      if (argv.includes("--trace")) expect(r.written).toEqual(["out.json"]);
      if (argv[0] === "inspect") {
        // The step and the domain it names still show a page table with something in it.
        expect(r.out).toMatch(/\nDomain 14 \(UNMANAGED\): the domain's page table.*\n {2}0x/);
        expect(r.out).toMatch(
          /^scenarios\/demo\/story\.yaml \[riscv\] after step 30 of \d+: cpu_read/,
        );
      }
    }
  });

  it("the folders and documents it lists exist", () => {
    const paths = [...readme.matchAll(/^\| `([\w./-]+)` \|/gm)].map((m) => m[1]!);
    expect(paths.length).toBeGreaterThan(20);
    expect(paths.filter((p) => !existsSync(join(ROOT, p)))).toEqual([]);
  });

  it("its example scenario passes on every driver it applies to", () => {
    const yaml = /```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(yaml).toBeDefined();
    const scenario = loadScenario(yaml!, "README.md", machineHost);
    const drivers = applicableDrivers(scenario, machineHost);
    expect(drivers.length).toBeGreaterThan(0);
    for (const driver of drivers) {
      const r = runScenario(scenario, machineHost, { driver });
      expect(r.status, formatScenarioResult(r)).toBe("pass");
      expect(r.steps.length).toBe(5);
    }
  });
});
