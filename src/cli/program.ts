// The `iommu-sim` commands. `runCli` parses the arguments with commander and returns the exit
// code instead of exiting, so tests drive it in-process:
//   0 everything passed, 1 a scenario failed, 2 bad input (scenario, description, arguments).
// User mistakes print one clear message each and no stack trace.

import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { InputError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import { BUILTIN_MACHINES } from "../machine/builtin.js";
import { InputErrors } from "../machine/input/diagnostics.js";
import type { MachinePlan, ScenarioHost, ScenarioMachine } from "../scenario/host.js";
import { loadScenario, type Scenario } from "../scenario/load.js";
import { formatScenarioResult, scenarioResultJSON } from "../scenario/report.js";
import { applicableDrivers, runScenario, type ScenarioResult } from "../scenario/run.js";
import { type TraceRun, traceRunOf } from "../scenario/trace-format.js";
import { addDeviceNames } from "../scenario/trace-tracks.js";
import type { CliIo } from "./io.js";
import { writeTraceFile } from "./trace-file.js";

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_INPUT = 2;
/** A bug in the simulator itself (EX_SOFTWARE): the only case that prints a stack trace. */
export const EXIT_INTERNAL = 70;

// biome-ignore lint/suspicious/noExplicitAny: the CLI drives any host (the real one or a test fake)
type AnyHost = ScenarioHost<any, any>;

/** Options of the `demo` command. */
export interface DemoCommandOptions {
  readonly json?: boolean;
  readonly trace?: string;
  readonly seed?: number;
}

/** Options of the `inspect` command. */
export interface InspectOpts {
  readonly step?: number;
  readonly domain?: number;
  readonly driver?: string;
  readonly json?: boolean;
}

export interface CliDeps {
  readonly host: AnyHost;
  /** `inspect`: runs one loaded scenario up to a step and returns what to print and the exit code. */
  readonly inspect?: (
    scenario: AnyScenario,
    opts: InspectOpts,
  ) => { readonly text: string; readonly code: number };
  /** The `demo` command: boots the default machine and tells its story. */
  readonly demo: (io: CliIo, opts: DemoCommandOptions) => number;
  /** What `--version` prints (the package's version). */
  readonly version?: string;
}

interface RunOpts {
  readonly json?: boolean;
  readonly trace?: string;
  readonly driver?: string;
  readonly seed?: number;
  readonly check: boolean;
  readonly verbose?: boolean;
}

export async function runCli(argv: readonly string[], io: CliIo, deps: CliDeps): Promise<number> {
  let code = EXIT_OK;
  const program = new Command()
    .name("iommu-sim")
    .description("An executable model of the Linux IOMMU subsystem on a simulated RISC-V IOMMU")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout(s),
      writeErr: (s) => io.stderr(s),
    })
    .showSuggestionAfterError(true)
    .showHelpAfterError("(add --help for usage)")
    .addHelpText(
      "after",
      `
With no command, iommu-sim runs the demo (npm start does the same).

Examples:
  iommu-sim run scenarios/core/ownership-user.yaml
  iommu-sim run scenarios/sva/*.yaml --driver all
  iommu-sim inspect scenarios/demo/story.yaml --step 30 --domain 14
  iommu-sim demo --trace out.json        (open out.json in ui.perfetto.dev)

Exit codes: 0 everything passed; 1 a scenario failed; 2 bad input (a scenario or machine
that does not validate, an unreadable file, bad arguments); 70 a bug in the simulator.
Scenario language: docs/scenario-language.md; machines: docs/machine-description.md.
`,
    );
  if (deps.version !== undefined) program.version(deps.version, "-V, --version");

  program
    .command("demo")
    .description(
      "boot the built-in default machine and tell its story: kernel drivers, VFIO, SVA, page faults, lazy vs strict (the default command)",
    )
    .option("--json", "print the story and the report as JSON")
    .option(
      "--trace <file>",
      "write the whole run's trace, boot included (.json: Chrome/Perfetto, else ftrace-style text)",
    )
    .addOption(new Option("--seed <n>", "the machine's random seed").argParser(parseSeed))
    .action((opts: DemoCommandOptions) => {
      code = deps.demo(io, opts);
    });

  program
    .command("run")
    .description("run scenario files and check every expectation")
    .argument("<files...>", "scenario files (YAML or JSON)")
    .option("--json", "print machine-readable results")
    .option(
      "--trace <file>",
      "write the trace of every run (.json: Chrome/Perfetto, else ftrace-style text)",
    )
    .option(
      "--driver <name>",
      `run every IOMMU with this driver: ${deps.host.availableDrivers.join(", ")}, or "all" (each driver the scenario applies to)`,
    )
    .addOption(new Option("--seed <n>", "override the scenarios' seeds").argParser(parseSeed))
    .option("--no-check", "do not check the machine invariants after every step")
    .option("-v, --verbose", "list every step, not only failures")
    .action((files: string[], opts: RunOpts) => {
      code = runFiles(files, opts, io, deps.host);
    });

  program
    .command("inspect")
    .description("run a scenario up to a step and show the machine then")
    .argument("<file>", "scenario file (YAML or JSON)")
    .addOption(
      new Option(
        "--step <n>",
        "stop after step N, counting every step of the file (default: the last; 0: just booted)",
      ).argParser(parseCount),
    )
    .addOption(
      new Option(
        "--domain <id>",
        "also show this domain's page table (an ID from the Domains list)",
      ).argParser(parseCount),
    )
    .option(
      "--driver <name>",
      `run every IOMMU with this driver: ${deps.host.availableDrivers.join(", ")}`,
    )
    .option("--json", "print machine-readable JSON")
    .action((file: string, opts: InspectOpts) => {
      code = inspectFile(file, opts, io, deps);
    });

  program
    .command("validate")
    .description("parse and validate scenario files without running them")
    .argument("<files...>", "scenario files (YAML or JSON)")
    .option("--json", "print machine-readable results")
    .action((files: string[], opts: { json?: boolean }) => {
      code = validateFiles(files, opts, io, deps.host);
    });

  program
    .command("machines")
    .description("list the built-in machines")
    .action(() => {
      io.stdout(machinesText());
    });

  try {
    await program.parseAsync(argv.length === 0 ? ["demo"] : [...argv], { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit cleanly; any other parse problem is a usage error.
      return e.code === "commander.helpDisplayed" ||
        e.code === "commander.version" ||
        e.code === "commander.help"
        ? EXIT_OK
        : EXIT_INPUT;
    }
    if (e instanceof InputError) {
      io.stderr(`${e.format()}\n`);
      return EXIT_INPUT;
    }
    const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
    io.stderr(`iommu-sim: internal error (a bug in the simulator, please report it):\n${detail}\n`);
    return EXIT_INTERNAL;
  }
  return code;
}

// Commander prefixes these messages with the option and the value it refused.
function parseCount(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 0x7fff_ffff) {
    throw new InvalidArgumentError("expected a non-negative integer.");
  }
  return Number(v);
}

/** `machines`: each built-in machine's name, then its description wrapped beside it. */
function machinesText(): string {
  const names = Object.keys(BUILTIN_MACHINES);
  const indent = Math.max(...names.map((n) => n.length)) + 2;
  let out = "";
  for (const [name, m] of Object.entries(BUILTIN_MACHINES)) {
    wrapWords(m.doc, 96 - indent).forEach((l, i) => {
      out += `${(i === 0 ? name : "").padEnd(indent)}${l}\n`;
    });
  }
  return `${out}\nA scenario names one with \`machine: NAME\` (docs/machine-description.md).\n`;
}

function wrapWords(text: string, width: number): string[] {
  const lines: string[] = [];
  let cur = "";
  for (const w of text.trim().split(/\s+/)) {
    if (cur !== "" && cur.length + 1 + w.length > width) {
      lines.push(cur);
      cur = w;
    } else {
      cur = cur === "" ? w : `${cur} ${w}`;
    }
  }
  if (cur !== "") lines.push(cur);
  return lines;
}

function inspectFile(file: string, opts: InspectOpts, io: CliIo, deps: CliDeps): number {
  if (deps.inspect === undefined) throw new InputError("inspect needs real machines");
  const { scenarios, errors } = loadAll([file], io, deps.host);
  if (opts.driver !== undefined && !deps.host.availableDrivers.includes(opts.driver)) {
    errors.push(
      new InputError(
        `--driver: unknown driver "${opts.driver}"; available: ${deps.host.availableDrivers.join(", ")}`,
      ),
    );
  }
  if (errors.length > 0) return reportInputErrors(errors, opts.json, io);
  const r = deps.inspect(scenarios[0]!, opts);
  io.stdout(r.text);
  return r.code;
}

function parseSeed(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 0xffff_ffff) {
    throw new InvalidArgumentError("expected an integer 0..4294967295.");
  }
  return Number(v);
}

// biome-ignore lint/suspicious/noExplicitAny: scenarios of any host
type AnyScenario = Scenario<any, any>;

/** Loads every file; all problems of all files are collected before reporting. */
function loadAll(
  files: readonly string[],
  io: CliIo,
  host: AnyHost,
): { scenarios: AnyScenario[]; errors: InputError[] } {
  const scenarios: AnyScenario[] = [];
  const errors: InputError[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = io.readFile(file);
    } catch (e) {
      errors.push(new InputError(`cannot read the file: ${readErrorText(e)}`, { file }));
      continue;
    }
    try {
      scenarios.push(loadScenario(text, file, host));
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      errors.push(...(e instanceof InputErrors ? e.errors : [e]));
    }
  }
  return { scenarios, errors };
}

function readErrorText(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EISDIR") return "it is a directory";
  if (code === "EACCES") return "permission denied";
  return e instanceof Error ? e.message : String(e);
}

function reportInputErrors(
  errors: readonly InputError[],
  json: boolean | undefined,
  io: CliIo,
): number {
  if (json) {
    const list: Json[] = errors.map((e) => ({
      file: e.location.file ?? null,
      line: e.location.line ?? null,
      column: e.location.column ?? null,
      message: e.message,
    }));
    io.stdout(`${JSON.stringify({ status: "invalid", errors: list }, null, 2)}\n`);
  } else {
    for (const e of errors) io.stderr(`${e.format()}\n`);
    io.stderr(`${errors.length} error${errors.length === 1 ? "" : "s"}; nothing was run\n`);
  }
  return EXIT_INPUT;
}

function validateFiles(
  files: readonly string[],
  opts: { json?: boolean },
  io: CliIo,
  host: AnyHost,
): number {
  const { scenarios, errors } = loadAll(files, io, host);
  if (errors.length > 0) return reportInputErrors(errors, opts.json, io);
  if (opts.json) {
    const list = scenarios.map((s) => ({ file: s.file, name: s.name, steps: s.steps.length }));
    io.stdout(`${JSON.stringify({ status: "valid", scenarios: list }, null, 2)}\n`);
  } else {
    for (const s of scenarios) io.stdout(`valid ${s.file}: ${s.name} (${s.steps.length} steps)\n`);
  }
  return EXIT_OK;
}

function runFiles(files: readonly string[], opts: RunOpts, io: CliIo, host: AnyHost): number {
  const { scenarios, errors } = loadAll(files, io, host);
  if (
    opts.driver !== undefined &&
    opts.driver !== "all" &&
    !host.availableDrivers.includes(opts.driver)
  ) {
    errors.push(
      new InputError(
        `--driver: unknown driver "${opts.driver}"; available: ${host.availableDrivers.join(", ")}, all`,
      ),
    );
  }
  if (errors.length > 0) return reportInputErrors(errors, opts.json, io);

  const results: ScenarioResult[] = [];
  const traceRuns: TraceRun[] = [];
  const skipped: string[] = [];
  const bootErrors: InputError[] = [];
  const total = scenarios.reduce((n, s) => n + driversFor(s, opts.driver, host).length, 0);
  const progress = total > 1 ? io.progress(total, "scenarios") : null;
  for (const s of scenarios) {
    for (const driver of driversFor(s, opts.driver, host)) {
      progress?.tick(`${s.file}${driver ? ` [${driver}]` : ""}`);
      if (driver === null) {
        const drivers = s.onlyDrivers ?? s.drivers ?? [];
        skipped.push(
          `${s.file}: ${s.onlyDrivers ? "runs only on" : "declares"} drivers ${drivers.join(", ")}; not run with --driver ${opts.driver}`,
        );
        continue;
      }
      try {
        // For the trace: each device's kernel name, learnt at boot and after every step (a
        // hot-plugged device has one only while present).
        const names = new Map<string, string>();
        let machine: ScenarioMachine | undefined;
        const r = runScenario(s, host, {
          ...(driver === undefined ? {} : { driver }),
          ...(opts.seed === undefined ? {} : { seed: opts.seed }),
          checkInvariants: opts.check,
          keepTrace: opts.trace !== undefined,
          ...(opts.trace === undefined
            ? {}
            : {
                onBoot: (m: ScenarioMachine) => {
                  machine = m;
                  addDeviceNames(m, names);
                },
                onStep: () => addDeviceNames(machine!, names),
              }),
        });
        results.push(r);
        if (opts.trace !== undefined)
          traceRuns.push(traceRunOf(r, `${r.file} [${r.driver}]`, names));
      } catch (e) {
        if (!(e instanceof InputError)) throw e;
        bootErrors.push(...(e instanceof InputErrors ? e.errors : [e]));
      }
    }
  }
  progress?.stop();
  if (bootErrors.length > 0) return reportInputErrors(bootErrors, opts.json, io);

  if (opts.trace !== undefined) {
    writeTraceFile(opts.trace, traceRuns, io);
  }
  const failed = results.filter((r) => r.status === "fail").length;
  if (opts.json) {
    const doc = {
      status: failed > 0 ? "fail" : "pass",
      summary: {
        runs: results.length,
        passed: results.length - failed,
        failed,
        skipped: skipped.length,
      },
      results: results.map(scenarioResultJSON),
    };
    io.stdout(`${JSON.stringify(doc, null, 2)}\n`);
  } else {
    for (const r of results)
      io.stdout(`${formatScenarioResult(r, { verbose: opts.verbose ?? false })}\n`);
    for (const s of skipped) io.stdout(`SKIP ${s}\n`);
    io.stdout(
      `${results.length} run${results.length === 1 ? "" : "s"}: ${results.length - failed} passed, ${failed} failed${skipped.length ? `, ${skipped.length} skipped` : ""}\n`,
    );
  }
  return failed > 0 ? EXIT_FAILED : EXIT_OK;
}

/** undefined = the machine's own drivers; null = the scenario does not apply to the forced one. */
function driversFor(
  s: AnyScenario,
  forced: string | undefined,
  host: AnyHost,
): (string | undefined | null)[] {
  if (forced === undefined) return [undefined];
  if (forced === "all") return applicableDrivers(s, host);
  if (s.onlyDrivers !== undefined && !s.onlyDrivers.includes(forced)) return [null];
  const declared = (s.drivers ?? (s.machine as MachinePlan).drivers) as readonly string[];
  return declared.includes(forced) || s.drivers === undefined ? [forced] : [null];
}
