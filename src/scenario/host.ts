// What the scenario engine needs from the world it drives. The real host (machine-host.ts) boots
// machines of src/machine; tests drive the same parser, validator and runner with small fakes.

import type { SimContext } from "../base/context.js";
import type { Json } from "../base/json.js";
import type { Diagnostics } from "../machine/input/diagnostics.js";
import type { InputNode } from "../machine/input/node.js";
import type { Vocabulary } from "./vocabulary/types.js";

/** A booted machine as the runner sees it. */
export interface ScenarioMachine {
  readonly ctx: SimContext;
  /** What failed during boot and was only logged (e.g. an IOMMU that did not register). */
  readonly bootLog: readonly string[];
  /** Broken invariants, one message each; empty when the machine state is consistent. */
  checkInvariants(): readonly string[];
  toJSON(): Json;
}

/** A validated `machine:` section, before boot. */
export interface MachinePlan {
  /** Names the machine itself defines, per object kind (e.g. `device` → every device name). */
  readonly names: Readonly<Record<string, readonly string[]>>;
  /** The IOMMU drivers the description uses. */
  readonly drivers: readonly string[];
}

export interface ScenarioHost<M extends ScenarioMachine, P extends MachinePlan> {
  readonly vocabulary: Vocabulary<M>;
  /** Drivers a scenario can run against today. */
  readonly availableDrivers: readonly string[];
  /** Validates a `machine:` node, reporting into `d` under `path`. */
  readMachine(node: InputNode, path: string, d: Diagnostics): P | undefined;
  /**
   * Boots the planned machine; `driver` replaces the driver of every IOMMU instance. Throws an
   * InputError when the plan cannot run on that driver.
   */
  boot(
    plan: P,
    opts: {
      readonly seed: number;
      readonly driver?: string;
      /** Called with the machine's context before it boots (to trace the boot too). */
      readonly onContext?: (ctx: SimContext) => void;
    },
  ): M;
}
