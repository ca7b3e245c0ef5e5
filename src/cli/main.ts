// The command-line front end. The only layer that touches the host (process, console, files).

import { machineHost } from "../scenario/machine-host.js";
import { demo } from "./demo.js";
import { inspect } from "./inspect.js";
import { nodeIo } from "./io.js";
import { runCli } from "./program.js";

process.exitCode = await runCli(process.argv.slice(2), nodeIo(), {
  host: machineHost,
  demo,
  inspect,
});
