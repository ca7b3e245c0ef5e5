// The JSON views' key rule (docs/conventions.md "Traces and views"): every key is snake_case,
// after the kernel's or the spec's field names (owner_cnt, min_flt, device_id, s1_perm…), never
// camelCase. Checked on everything a busy run of the default machine shows: the machine's own
// view, the inspect, statistics, topology and activity views, the run's results, and what the
// CLI prints for `inspect --json`, `run --json` and `demo --json`.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { Json } from "../src/base/json.js";
import { demo } from "../src/cli/demo.js";
import { inspect } from "../src/cli/inspect.js";
import type { CliIo } from "../src/cli/io.js";
import { runCli } from "../src/cli/program.js";
import { inspectJSON } from "../src/machine/inspect.js";
import type { Machine } from "../src/machine/machine.js";
import { activityJSON, topologyJSON } from "../src/machine/report.js";
import { machineStatistics, statisticsJSON } from "../src/machine/statistics.js";
import { loadScenario } from "../src/scenario/load.js";
import { machineHost } from "../src/scenario/machine-host.js";
import { scenarioResultJSON } from "../src/scenario/report.js";
import { runScenario } from "../src/scenario/run.js";

const STORY = "scenarios/demo/story.yaml";

const CAMEL = /[a-z][A-Z]/;

/**
 * Maps whose keys are data, not field names: their keys are not checked (their values are).
 * Only names the user chooses are exempt; the model's own vocabularies (finding kinds, fault
 * causes, response codes) used as keys must follow the rule like any key.
 */
const DATA_KEYS: Readonly<Record<string, string>> = {
  // The isolation oracle's counts per device: keyed by the machine description's device names.
  by_device: "device names from the machine description",
  // A firmware node's properties (Device.toJSON().fw): keyed by the property names the machine
  // description gives (DT/ACPI style, e.g. pasid-num-bits).
  properties: "firmware property names from the machine description",
};

interface Walk {
  /** Every key visited (to show the walk covered the views). */
  readonly keys: Set<string>;
  /** `path.key` of each camelCase key. */
  readonly camel: Set<string>;
}

function walk(v: Json, path: string, out: Walk): Walk {
  if (Array.isArray(v)) {
    for (const x of v) walk(x, `${path}[]`, out);
  } else if (v !== null && typeof v === "object") {
    const data = path.split(".").at(-1)! in DATA_KEYS;
    for (const [k, x] of Object.entries(v)) {
      if (!data) {
        out.keys.add(k);
        if (CAMEL.test(k)) out.camel.add(`${path}.${k}`);
      }
      walk(x, data ? `${path}.<${k}>` : `${path}.${k}`, out);
    }
  }
  return out;
}

/** The views as printed: through JSON text, so toJSON() and bigints resolve as the CLI shows. */
function plain(v: unknown): Json {
  return JSON.parse(
    JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `0x${x.toString(16)}` : x)),
  );
}

async function cliJSON(...argv: string[]): Promise<Json> {
  let out = "";
  const io: CliIo = {
    stdout: (t) => {
      out += t;
    },
    stderr: () => {},
    readFile: (p) => readFileSync(p, "utf8"),
    writeFile: () => {},
    progress: () => null,
  };
  const code = await runCli(argv, io, { host: machineHost, demo, inspect });
  expect(code, `iommu-sim ${argv.join(" ")}`).toBe(0);
  return JSON.parse(out);
}

describe("JSON view keys", () => {
  it("the walk finds camelCase keys, and skips only the keys of data maps", () => {
    const w = walk(
      plain({
        a: [{ fooBar: 1, ok_key: { innerKey: 2 } }],
        by_device: { myDev: { nestedKey: 3 } },
        fw: { properties: { "pasid-num-bits": 20, someProp: 1 } },
        PSCID: 1,
        s1_perm: "rw",
      }),
      "v",
      { keys: new Set(), camel: new Set() },
    );
    // Keys inside a data map's values are still checked.
    expect([...w.camel]).toEqual([
      "v.a[].fooBar",
      "v.a[].ok_key.innerKey",
      "v.by_device.<myDev>.nestedKey",
    ]);
  });

  it("a busy default machine shows no camelCase key in any view", async () => {
    let machine: Machine | null = null;
    const scenario = loadScenario(readFileSync(STORY, "utf8"), STORY, machineHost);
    const result = runScenario(scenario, machineHost, {
      onBoot: (m) => {
        machine = m;
      },
    });
    expect(result.status).toBe("pass");
    const m = machine as unknown as Machine;
    // A domain with a filled page table, so inspect's page_table view is walked too.
    const mapped = m.core.domains().find((d) => {
      const v = d.toJSON() as { mappings?: unknown };
      return typeof v.mappings === "number" && v.mappings > 0;
    });
    expect(mapped).toBeDefined();
    const views: Record<string, Json> = {
      machine: plain(m.toJSON()),
      inspect: plain(inspectJSON(m, { domain: mapped!.id })),
      statistics: plain(statisticsJSON(machineStatistics(m))),
      topology: plain(topologyJSON(m)),
      activity: plain(activityJSON(m)),
      result: plain(scenarioResultJSON(result)),
      "cli inspect --json": await cliJSON(
        "inspect",
        STORY,
        "--json",
        "--domain",
        String(mapped!.id),
      ),
      // Mid-story the PDT cache holds the engine's PASID context (gone by the end).
      "cli inspect --json --step 20": await cliJSON("inspect", STORY, "--json", "--step", "20"),
      "cli run --json": await cliJSON("run", STORY, "--json"),
      "cli demo --json": await cliJSON("demo", "--json"),
    };
    const w: Walk = { keys: new Set(), camel: new Set() };
    for (const [name, v] of Object.entries(views)) walk(v, name, w);
    expect([...w.camel]).toEqual([]);
    // The walk reached the views whose keys were once camelCase: processes, address spaces,
    // IOTLB and context-cache entries, device models, the PCI tree and the page-table ranges.
    for (const k of [
      "exit_code",
      "min_flt",
      "map_count",
      "iommu_mm",
      "s1_perm",
      "device_id",
      "process_id",
      "pending_work",
      "root_bus",
      "translation_agent",
      "leaf_size",
      "frames_in_use",
    ]) {
      expect(w.keys, k).toContain(k);
    }
    expect(w.keys.size).toBeGreaterThan(300);
  });
});
