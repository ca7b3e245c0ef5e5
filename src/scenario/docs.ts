// Markdown reference generated from the vocabulary tables: every callable function with its
// kernel parameters, result and TypeScript form, and every expect form. docs/scenario-language.md
// embeds it; test/scenario/docs.test.ts fails when the document is stale.

import { SimError } from "../base/errors.js";
import type { Machine } from "../machine/machine.js";
import { SUBJECTS } from "./vocabulary/expect.js";
import { VOCABULARY_AREAS } from "./vocabulary/index.js";
import { KINDS } from "./vocabulary/kinds.js";
import type { ParamSpec, ReturnSpec, SubjectSpec, ValueType } from "./vocabulary/types.js";

export function typeText(t: ValueType): string {
  switch (t.kind) {
    case "object":
      return KINDS[t.object]?.label ?? t.object;
    case "int":
      return t.what.replace(/^an? /, "");
    case "u64":
      return "u64";
    case "bool":
      return "bool";
    case "enum":
      return t.values.length > 6 ? "enum" : t.values.join(" \\| ");
    case "flags":
      return `flags (${Object.keys(t.bits).join(", ")})`;
    case "constant":
      return `constant (${Object.keys(t.values).join(", ")})`;
    case "errno":
      return "errno";
    case "text":
      return "text";
    case "bytes":
      return "bytes";
    case "memory":
      return "address → bytes";
    case "json":
      return "JSON";
  }
}

function paramText(name: string, p: ParamSpec): string {
  const mods = [p.optional ? "optional" : "", p.nullable ? "nullable" : ""].filter(Boolean);
  return `\`${name}\`: ${typeText(p.type)}${mods.length ? ` (${mods.join(", ")})` : ""}`;
}

function returnText(r: ReturnSpec): string {
  const fails = r.failures ? r.failures.what : "errno";
  if (r.type === "void") return r.fallible ? `0 or ${fails}` : "void";
  return r.fallible ? `${typeText(r.type)} or ${fails}` : typeText(r.type);
}

function cell(s: string): string {
  return s.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** One table per area: kernel name, parameters, result, TypeScript form, what it does. */
export function vocabularyMarkdown(): string {
  const out: string[] = [];
  for (const area of VOCABULARY_AREAS) {
    out.push(`### ${area.title}`, "");
    out.push("| Kernel name | Parameters | Returns | TypeScript | What it does |");
    out.push("|---|---|---|---|---|");
    for (const f of area.functions) {
      const params = Object.entries(f.params)
        .map(([n, p]) => paramText(n, p))
        .join("<br>");
      out.push(
        `| \`${f.name}\` | ${cell(params || "—")} | ${cell(returnText(f.returns))} | \`${cell(f.ts)}\` | ${cell(f.doc)} |`,
      );
    }
    out.push("");
  }
  return out.join("\n");
}

function subjectMarkdown(s: SubjectSpec<Machine>): string[] {
  const out: string[] = [];
  if (s.self) {
    out.push(`| \`${s.name}: …\` | ${cell(typeText(s.self.type))} | ${cell(s.doc)} |`);
    return out;
  }
  for (const [name, p] of Object.entries(s.props ?? {})) {
    const words = p.words ? ` (words: ${Object.keys(p.words).join(", ")})` : "";
    out.push(
      `| \`${s.name}: X, ${name}: …\` | ${cell(typeText(p.type) + words)} | ${cell(p.doc)} |`,
    );
  }
  return out;
}

/** The expect forms: subject, property, expected value type, meaning. */
export function expectMarkdown(): string {
  const out = ["| Form | Expected value | Meaning |", "|---|---|---|"];
  for (const s of SUBJECTS) out.push(...subjectMarkdown(s));
  return `${out.join("\n")}\n`;
}

/** How names of each object kind are resolved. */
export function kindsMarkdown(): string {
  const out = ["| Kind | Named by |", "|---|---|"];
  for (const [name, k] of Object.entries(KINDS))
    out.push(`| ${k.label ?? name} | ${cell(k.doc)} |`);
  return `${out.join("\n")}\n`;
}

/** Replaces the text between `<!-- BEGIN GENERATED: id -->` and `<!-- END GENERATED: id -->`. */
export function replaceGenerated(doc: string, id: string, content: string): string {
  const begin = `<!-- BEGIN GENERATED: ${id} -->`;
  const end = `<!-- END GENERATED: ${id} -->`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i < 0 || j < i) throw new SimError(`the document has no generated section "${id}"`);
  return `${doc.slice(0, i + begin.length)}\n${content}${doc.slice(j)}`;
}
