// The project's scenario files, for the suites that run every one of them.

import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

/** The repository's root folder. */
export const ROOT = join(import.meta.dirname, "../..");

/** Every .yaml/.yml/.json file under scenarios/, as paths relative to ROOT, in sorted order. */
export function scenarioFiles(dir: string = join(ROOT, "scenarios")): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...scenarioFiles(full));
    else if (/\.(ya?ml|json)$/.test(name)) out.push(relative(ROOT, full));
  }
  return out;
}
