// The command-line front end. The only layer that touches the host (process, console, files).

import { buildMachine } from "../machine/build.js";
import { machineReport } from "../machine/report.js";
import { machineHost } from "../scenario/machine-host.js";
import { type CliIo, nodeIo } from "./io.js";
import { runCli } from "./program.js";

/** `demo`: boots the built-in default machine (RISC-V IOMMUs) and reports what it holds. */
function demo(io: CliIo): number {
  const m = buildMachine("default");
  io.stdout(`${machineReport(m)}\n`);
  return 0;
}

process.exitCode = await runCli(process.argv.slice(2), nodeIo(), { host: machineHost, demo });
