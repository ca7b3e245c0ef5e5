// Entry points for machine descriptions: from YAML/JSON text, from plain data, or by the name of
// a built-in machine. All of them validate completely and throw one InputErrors listing every
// problem (with file:line:column for text).

import { builtinMachineNames, builtinMachineNode } from "./builtin.js";
import { type BuiltinResolver, type MachineDescription, readDescription } from "./description.js";
import { fromPlain, type InputNode } from "./input/node.js";
import { parseYaml } from "./input/yaml.js";

/** Resolves `extends:` and bare names against the built-in machines. */
export const BUILTIN_RESOLVER: BuiltinResolver = {
  resolveBuiltin: builtinMachineNode,
  builtinNames: builtinMachineNames(),
};

/** A description from YAML (or JSON) text; `file` names it in messages. */
export function parseMachineDescription(text: string, file: string): MachineDescription {
  return readDescription(parseYaml(text, file), BUILTIN_RESOLVER);
}

/**
 * A description from plain data (a TS object or parsed JSON), or a built-in machine's name;
 * `file` names the source in messages.
 */
export function machineDescription(input: unknown, file?: string): MachineDescription {
  return readDescription(fromPlain(input, file), BUILTIN_RESOLVER);
}

/** A description node already parsed (e.g. the `machine:` section of a scenario). */
export function readMachineDescription(node: InputNode): MachineDescription {
  return readDescription(node, BUILTIN_RESOLVER);
}
