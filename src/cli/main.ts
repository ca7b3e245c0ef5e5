// The command-line front end. The only layer that touches the host (process, console, files).

import { readFileSync } from "node:fs";
import { machineHost } from "../scenario/machine-host.js";
import { demo } from "./demo.js";
import { inspect } from "./inspect.js";
import { nodeIo } from "./io.js";
import { runCli } from "./program.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

process.exitCode = await runCli(process.argv.slice(2), nodeIo(), {
  host: machineHost,
  demo,
  inspect,
  version: pkg.version,
});
