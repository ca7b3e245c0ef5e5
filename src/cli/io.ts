// What the command line touches of the host, behind one small interface so tests can run the CLI
// in-process with captured output and an in-memory file system.

import { readFileSync, writeFileSync } from "node:fs";
import cliProgress from "cli-progress";

/** A progress bar for a long run; `tick` advances it by one unit of work. */
export interface Progress {
  tick(label: string): void;
  stop(): void;
}

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** The file's text; throws a NodeJS error (ENOENT, EISDIR, …) when it cannot be read. */
  readFile(path: string): string;
  writeFile(path: string, text: string): void;
  /** A progress bar on stderr for `total` units, or null (stderr is not a terminal). */
  progress(total: number, what: string): Progress | null;
}

export function nodeIo(): CliIo {
  // A reader that stops early (`iommu-sim run … | head`) closes the pipe: the rest of the output
  // is dropped quietly, as cat does, and the run still ends with its own exit code.
  let stdoutClosed = false;
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE" && !stdoutClosed) throw e;
    stdoutClosed = true;
  });
  return {
    stdout: (t) => {
      if (!stdoutClosed) process.stdout.write(t);
    },
    stderr: (t) => process.stderr.write(t),
    readFile: (p) => readFileSync(p, "utf8"),
    writeFile: (p, t) => writeFileSync(p, t),
    progress: (total, what) => (process.stderr.isTTY ? progressBar(total, what) : null),
  };
}

function progressBar(total: number, what: string): Progress {
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${what} [{bar}] {value}/{total} {label}`,
      clearOnComplete: true,
      hideCursor: true,
      barsize: 24,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { label: "" });
  return {
    tick: (label) => bar.increment(1, { label }),
    stop: () => bar.stop(),
  };
}
