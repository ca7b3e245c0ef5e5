// The import rules of DESIGN.md, as data, and a checker over the source tree.
// test/architecture.test.ts runs it; it fails on any import cycle or broken layer rule.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, posix, relative, resolve } from "node:path";

const HW = ["hw/memory", "hw/pgtable", "hw/pci", "hw/riscv-iommu", "hw/endpoints"];
/** Everything below the machine: what `check/` may read. */
const BELOW_MACHINE = ["base", ...HW, "bus", "mm", "iommu", "dma", "drivers"];

/**
 * Layer of a file (path relative to src/, posix separators) → layers it may import from.
 * Every layer may import from itself. `hw/*` sub-layers are layers of their own.
 */
export const ALLOWED: Record<string, readonly string[]> = {
  base: [],
  "hw/memory": ["base"],
  "hw/pgtable": ["base", "hw/memory"],
  "hw/pci": ["base", "hw/memory"],
  "hw/riscv-iommu": ["base", "hw/memory", "hw/pgtable", "hw/pci"],
  "hw/endpoints": ["base", "hw/memory", "hw/pgtable", "hw/pci"],
  bus: ["base", "hw/memory", "hw/pci"],
  mm: ["base", "hw/memory", "hw/pgtable"],
  iommu: ["base", "bus", "mm", "hw/memory", "hw/pgtable", "hw/pci"],
  // IOMMU drivers (riscv, mock) and device drivers (DMA API and SVA users) alike.
  drivers: ["base", ...HW, "bus", "mm", "iommu", "dma"],
  dma: ["base", "iommu", "bus", "mm", "hw/memory", "hw/pgtable", "hw/pci"],
  check: BELOW_MACHINE,
  machine: [...BELOW_MACHINE, "check"],
  scenario: [...BELOW_MACHINE, "check", "machine"],
  cli: [...BELOW_MACHINE, "check", "machine", "scenario"],
  index: [...BELOW_MACHINE, "check", "machine", "scenario"],
};

/** Only these layers may use the host: Node modules, process, console, the DOM. */
export const HOST_LAYERS: readonly string[] = ["cli"];

export interface SourceFile {
  /** Path relative to src/, posix separators, e.g. `hw/pgtable/walk.ts`. */
  readonly path: string;
  readonly text: string;
}

export interface Violation {
  readonly file: string;
  readonly message: string;
}

export function layerOf(path: string): string {
  if (path === "index.ts") return "index";
  const parts = path.split("/");
  if (parts[0] === "hw") {
    const sub = parts[1]!.replace(/\.ts$/, "");
    return `hw/${sub}`;
  }
  return parts[0]!;
}

const IMPORT_RE =
  /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^"'`;]*?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/** Module specifiers imported by a source text (static, re-export and dynamic imports). */
export function importsOf(text: string): string[] {
  const noComments = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'])\/\/.*$/gm, "$1");
  const out: string[] = [];
  for (const m of noComments.matchAll(IMPORT_RE)) out.push((m[1] ?? m[2])!);
  return out;
}

const HOST_USE = /\b(?:process\.|console\.|require\(|document\.|window\.|globalThis\.process)/;

/** Checks layer rules, host use and import cycles over a set of source files. */
export function checkArchitecture(files: readonly SourceFile[]): Violation[] {
  const violations: Violation[] = [];
  const known = new Set(files.map((f) => f.path));
  const graph = new Map<string, string[]>();

  for (const f of files) {
    const layer = layerOf(f.path);
    const allowed = ALLOWED[layer];
    if (!allowed) {
      violations.push({ file: f.path, message: `file is in no known layer ("${layer}")` });
      continue;
    }
    const edges: string[] = [];
    for (const spec of importsOf(f.text)) {
      if (!spec.startsWith(".")) {
        if (!HOST_LAYERS.includes(layer) && (spec.startsWith("node:") || NODE_BUILTINS.has(spec))) {
          violations.push({ file: f.path, message: `imports host module "${spec}"` });
        }
        continue;
      }
      const target = posix
        .normalize(posix.join(posix.dirname(f.path), spec))
        .replace(/\.js$/, ".ts");
      if (!known.has(target)) {
        violations.push({ file: f.path, message: `imports "${spec}", which is not a source file` });
        continue;
      }
      edges.push(target);
      const tl = layerOf(target);
      if (tl !== layer && !allowed.includes(tl)) {
        violations.push({
          file: f.path,
          message: `layer ${layer} may not import ${tl} ("${spec}")`,
        });
      }
    }
    graph.set(f.path, edges);
    if (!HOST_LAYERS.includes(layer) && HOST_USE.test(stripStringsAndComments(f.text))) {
      violations.push({
        file: f.path,
        message: "uses the host (process/console/DOM) outside cli/",
      });
    }
  }
  for (const cycle of findCycles(graph)) {
    violations.push({
      file: cycle[0]!,
      message: `import cycle: ${[...cycle, cycle[0]].join(" → ")}`,
    });
  }
  return violations;
}

/** Strongly connected components with more than one file, or a file importing itself. */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, idx.get(w)!));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(comp.reverse());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
  return out;
}

function stripStringsAndComments(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\/\/.*$/gm, "")
    .replace(/`(?:\\.|[^`\\])*`|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'/g, '""');
}

const NODE_BUILTINS = new Set([
  "fs",
  "path",
  "os",
  "process",
  "child_process",
  "url",
  "util",
  "events",
  "stream",
  "crypto",
  "worker_threads",
  "readline",
  "tty",
  "net",
  "http",
  "https",
]);

/** Every .ts file under `srcDir`. */
export function readSourceTree(srcDir: string): SourceFile[] {
  const out: SourceFile[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith(".ts") || name.endsWith(".tsx")) {
        out.push({
          path: relative(srcDir, full).split("\\").join("/"),
          text: readFileSync(full, "utf8"),
        });
      }
    }
  };
  walk(resolve(srcDir));
  return out;
}

export const SRC_DIR = resolve(dirname(new URL(import.meta.url).pathname), "../src");
