// The real command line, spawned as a process: exit codes, output streams, no stack traces for
// user mistakes, identical --json output across runs.

import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");
const TSX = join(ROOT, "node_modules/.bin/tsx");
const dir = mkdtempSync(join(tmpdir(), "iommu-sim-cli-"));

function cli(...args: string[]) {
  const r = spawnSync(TSX, [join(ROOT, "src/cli/main.ts"), ...args], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const PASS = `machine: single-mock
steps:
  - iommu_paging_domain_alloc: {dev: dev0}
    as: d
  - iommu_attach_device: {domain: d, dev: dev0}
  - expect: {dev: dev0, domain: d}
`;

describe("iommu-sim (spawned)", () => {
  it("the demo boots the default machine and reports it, exit 0", () => {
    const r = cli();
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Machine "default" (IOMMU driver: riscv)');
    expect(r.stdout).toMatch(/iommu0 +riscv driver, 20-bit PASIDs; DDT 3LVL, Sv57 paging/);
    expect(r.stdout).toContain("group 8   br0, legacy0, legacy1");
  });

  it("run: 0 on success, 1 on a failed expectation, 2 on invalid input, never a stack trace", () => {
    const ok = cli("run", file("ok.yaml", PASS));
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^PASS .*ok\.yaml \[mock\]/);

    const failing = file(
      "fail.yaml",
      PASS.replace(
        "    as: d\n",
        "    as: d\n  - iommu_attach_device: {domain: d, dev: dev0}\n    error: EBUSY\n",
      ),
    );
    const f = cli("run", failing);
    expect(f.code).toBe(1);
    expect(f.stdout).toContain("iommu_attach_device succeeded, expected -EBUSY");

    const bad = cli(
      "run",
      file(
        "bad.yaml",
        "machine: single-mock\nsteps:\n  - iommu_attach_device: {domain: d, dev: dev9}\n",
      ),
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      'bad.yaml:3:35: steps[0].iommu_attach_device.domain: "d" is not bound',
    );
    expect(bad.stderr).toContain(
      'bad.yaml:3:43: steps[0].iommu_attach_device.dev: unknown device "dev9" (did you mean "dev0"?)',
    );
    expect(bad.stderr).not.toMatch(/\n\s+at /);

    const missing = cli("validate", "nope.yaml");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(
      "nope.yaml: cannot read the file: no such file\n1 error; nothing was run\n",
    );

    const usage = cli("run", "--frobnicate", "x.yaml");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toBe("error: unknown option '--frobnicate'\n(add --help for usage)\n");
  });

  it("a reader that stops early (| head) ends the output quietly: no EPIPE stack, the run's exit code", () => {
    // One write per scenario: most of them come after head has exited.
    const r = spawnSync(
      "bash",
      [
        "-c",
        `"${TSX}" src/cli/main.ts run -v scenarios/core/*.yaml | head -n 1; exit \${PIPESTATUS[0]}`,
      ],
      { cwd: ROOT, encoding: "utf8" },
    );
    expect(r.stdout).toMatch(/^PASS scenarios\/core\/alloc-domains\.yaml \[mock\] .*\n$/);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("run --json is identical across runs of the same scenario", () => {
    const p = file("det.yaml", PASS);
    const a = cli("run", "--json", p);
    const b = cli("run", "--json", p);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const doc = JSON.parse(a.stdout);
    expect(doc.results[0].steps[0]).toMatchObject({
      step: 1,
      call: "iommu_paging_domain_alloc(dev=dev0)",
      status: "pass",
      result: { type: "UNMANAGED" },
    });
  });
});
