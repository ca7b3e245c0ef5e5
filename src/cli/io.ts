// What the command line touches of the host, behind one small interface so tests can run the CLI
// in-process with captured output and an in-memory file system.

import { readFileSync, writeFileSync } from "node:fs";

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** The file's text; throws a NodeJS error (ENOENT, EISDIR, …) when it cannot be read. */
  readFile(path: string): string;
  writeFile(path: string, text: string): void;
}

export function nodeIo(): CliIo {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    readFile: (p) => readFileSync(p, "utf8"),
    writeFile: (p, t) => writeFileSync(p, t),
  };
}
