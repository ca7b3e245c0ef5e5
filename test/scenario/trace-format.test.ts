// The trace exports on real runs: every kernel tracepoint in its TP_printk format on
// trace-cmd-style lines a parser can split, and Chrome/Perfetto JSON that follows the trace-event
// format (metadata naming and ordering every process and thread, instants and complete events)
// on a display timeline that keeps the events apart, in order, with their steps around them; a
// device named by the kernel (`0000:04:00.0`) and by the description (`nic0`) is one track.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { SimError } from "../../src/base/errors.js";
import type { TraceRecord } from "../../src/base/trace.js";
import type { Machine } from "../../src/machine/machine.js";
import { loadScenario } from "../../src/scenario/load.js";
import { machineHost } from "../../src/scenario/machine-host.js";
import { runScenario, type ScenarioResult } from "../../src/scenario/run.js";
import {
  DISPLAY_TICK_NS,
  formatTraceText,
  ftraceComm,
  ftraceTimestamp,
  type TraceRun,
  type TraceStep,
  traceRunOf,
  traceToChromeJSON,
} from "../../src/scenario/trace-format.js";
import { addDeviceNames, type DeviceNames, trackNamer } from "../../src/scenario/trace-tracks.js";
import { ROOT } from "./scenario-files.js";

/** Hits every kernel tracepoint of include/trace/events/iommu.h on the riscv driver. */
const SCENARIO = `
machine: default
drivers: [riscv]
steps:
  - section: map and unmap
  - iommu_paging_domain_alloc: {dev: acc0}
    as: d
  - iommu_group_claim_dma_owner: {group: acc0, owner: me}
  - iommu_attach_group: {domain: d, group: acc0}
  - iommu_map: {domain: d, iova: 0x10000, paddr: 0x80400000, size: 0x2000, prot: [IOMMU_READ, IOMMU_WRITE]}
  - iommu_unmap: {domain: d, iova: 0x10000, size: 0x2000}
    returns: 0x2000
  - report_iommu_fault: {domain: d, dev: acc0, iova: 0x10000, flags: 0}
    error: ENOSYS
  - section: time passes, a device leaves
  - advance: {ns: 1500000}
  - iommu_detach_group: {domain: d, group: acc0}
  - iommu_group_release_dma_owner: {group: acc0}
  - iommu_domain_free: {domain: d}
  - hot_add: {dev: tb0}
  - hot_remove: {dev: tb0}
`;

/** A lazy DMA domain's flush queue traces on the `domain 12` track; PRI on a process's mm. */
const FILES = ["scenarios/devices/dma-api-lazy.yaml", "scenarios/iopf/pri-flow.yaml"];

function run(text = SCENARIO, file = "t.yaml"): ScenarioResult {
  const s = loadScenario(text, file, machineHost);
  const r = runScenario(s, machineHost, { keepTrace: true });
  expect(r.status).toBe("pass");
  return r;
}

function runFile(file: string): ScenarioResult {
  return run(readFileSync(join(ROOT, file), "utf8"), file);
}

const KERNEL_FORMATS: Readonly<Record<string, RegExp>> = {
  add_device_to_group: /^IOMMU: groupID=\d+ device=\S+$/,
  remove_device_from_group: /^IOMMU: groupID=\d+ device=\S+$/,
  attach_device_to_domain: /^IOMMU: device=\S+$/,
  map: /^IOMMU: iova=0x[0-9a-f]{16} - 0x[0-9a-f]{16} paddr=0x[0-9a-f]{16} size=\d+$/,
  unmap: /^IOMMU: iova=0x[0-9a-f]{16} - 0x[0-9a-f]{16} size=\d+ unmapped_size=\d+$/,
  io_page_fault: /^IOMMU:\S+ \S+ iova=0x[0-9a-f]{16} flags=0x[0-9a-f]{4}$/,
};

/**
 * A trace-cmd report line as parsers split it: `TASK-PID [CPU] SECS.USECS: EVENT: BODY` (this
 * format has no latency-flags column; the simulator's events are `system:name`).
 */
const TRACE_CMD_LINE =
  /^\s*(\S+)-(\d+)\s+\[(\d{3})\]\s+(\d+)\.(\d{6}): ([a-z_0-9]+(?::[a-z_0-9]+)?): (.*)$/;

describe("trace-cmd text", () => {
  it("prints every kernel tracepoint in its TP_printk format, one ftrace line per record", () => {
    const r = run();
    const text = formatTraceText(r.trace!);
    const lines = text.trimEnd().split("\n");
    expect(lines).toHaveLength(r.trace!.length);
    const seen = new Set<string>();
    for (const [i, line] of lines.entries()) {
      const m = TRACE_CMD_LINE.exec(line);
      expect(m, line).not.toBeNull();
      const [, task, , , secs, usecs, event, body] = m!;
      const rec = r.trace![i]!;
      expect(task).toBe(ftraceComm(rec.track));
      expect(`${secs}.${usecs}`).toBe(ftraceTimestamp(rec.ts).trim());
      const format = KERNEL_FORMATS[event!];
      if (rec.event.startsWith("iommu:")) {
        expect(format, event).toBeDefined();
        expect(body).toMatch(format!);
        seen.add(event!);
      } else {
        expect(event).toBe(rec.event);
        expect(body).toMatch(/^(\w+=\S*( |$))*/);
      }
    }
    expect([...seen].sort()).toEqual(Object.keys(KERNEL_FORMATS).sort());
    // The map line's range and size are the call's.
    expect(text).toMatch(
      /map: IOMMU: iova=0x0000000000010000 - 0x0000000000012000 paddr=0x0000000080400000 size=8192\n/,
    );
  });

  it.each(FILES)("%s: every line parses, one task per pid, time never goes back", (file) => {
    const r = runFile(file);
    const lines = formatTraceText(r.trace!).trimEnd().split("\n");
    expect(lines).toHaveLength(r.trace!.length);
    const pidOf = new Map<string, string>();
    const taskOf = new Map<string, string>();
    let last = -1;
    for (const [i, line] of lines.entries()) {
      const m = TRACE_CMD_LINE.exec(line);
      expect(m, line).not.toBeNull();
      const [, task, pid, cpu, secs, usecs] = m!;
      expect(cpu).toBe("000");
      // The task column splits back into the record's track (blanks as `_`) and one pid.
      expect(task).toBe(ftraceComm(r.trace![i]!.track));
      expect(pidOf.get(task!) ?? pid).toBe(pid);
      expect(taskOf.get(pid!) ?? task).toBe(task);
      pidOf.set(task!, pid!);
      taskOf.set(pid!, task!);
      const us = Number(secs) * 1_000_000 + Number(usecs);
      expect(us).toBeGreaterThanOrEqual(last);
      expect(us).toBe(Math.floor(r.trace![i]!.ts / 1000));
      last = us;
    }
    expect(pidOf.size).toBe(new Set(r.trace!.map((x) => x.track)).size);
  });

  it("a track with a blank in its name prints as one word (`domain 12` → `domain_12`)", () => {
    const r = runFile(FILES[0]!);
    const flush = r.trace!.find((x) => x.event === "dma:flush_queue")!;
    expect(flush.track).toMatch(/^domain \d+$/);
    const line = formatTraceText([flush]);
    expect(line).toMatch(/^ *domain_\d+-1 \[000\] +\d+\.\d{6}: dma:flush_queue: domain=\d+ /);
    expect(ftraceComm("a\tb c")).toBe("a_b_c");
    expect(ftraceComm("")).toBe("<none>");
  });

  it("tracks keep one id each; timestamps are seconds and microseconds", () => {
    const recs: TraceRecord[] = [
      {
        seq: 0,
        ts: 1_500_123_456,
        event: "pci:hotplug",
        track: "pci0",
        fields: { op: "add", port: "rp2", device: "tb0" },
      },
      {
        seq: 1,
        ts: 1_500_123_999,
        event: "iommu:attach_device_to_domain",
        track: "core",
        fields: { device: "0000:05:00.0" },
      },
      {
        seq: 2,
        ts: 2_000_000_000,
        event: "pci:hotplug",
        track: "pci0",
        fields: { op: "remove", port: "rp2", device: "tb0" },
      },
    ];
    expect(formatTraceText(recs)).toBe(
      [
        "          pci0-1 [000]     1.500123: pci:hotplug: op=add port=rp2 device=tb0",
        "          core-2 [000]     1.500123: attach_device_to_domain: IOMMU: device=0000:05:00.0",
        "          pci0-1 [000]     2.000000: pci:hotplug: op=remove port=rp2 device=tb0",
        "",
      ].join("\n"),
    );
  });
});

interface ChromeEvent {
  name: string;
  ph: string;
  pid: number;
  tid: number;
  ts: number;
  dur?: number;
  cat?: string;
  s?: string;
  args: Record<string, unknown>;
}

interface Checked {
  /** Non-metadata events, in file order. */
  events: ChromeEvent[];
  processes: Map<number, { name: string; sort: number }>;
  /** By `pid/tid`. */
  threads: Map<string, { name: string; sort: number; pid: number }>;
}

const isPlainObject = (x: unknown) => typeof x === "object" && x !== null && !Array.isArray(x);

/** Checks a document against the Chrome trace-event format as this exporter uses it. */
function checkChrome(doc: unknown): Checked {
  expect(isPlainObject(doc)).toBe(true);
  const { traceEvents, displayTimeUnit } = doc as { traceEvents: unknown; displayTimeUnit: string };
  expect(displayTimeUnit).toBe("ns");
  expect(Array.isArray(traceEvents)).toBe(true);
  const all = traceEvents as ChromeEvent[];
  const processes = new Map<number, { name: string; sort: number }>();
  const threads = new Map<string, { name: string; sort: number; pid: number }>();
  const events: ChromeEvent[] = [];
  let metaDone = false;
  for (const e of all) {
    expect(typeof e.name === "string" && e.name.length > 0, JSON.stringify(e)).toBe(true);
    expect(["M", "X", "i"]).toContain(e.ph);
    expect(Number.isInteger(e.pid) && e.pid > 0).toBe(true);
    expect(Number.isInteger(e.tid) && e.tid >= 0).toBe(true);
    expect(isPlainObject(e.args)).toBe(true);
    if (e.ph === "M") {
      // Metadata first, then the timeline.
      expect(metaDone).toBe(false);
      const key = `${e.pid}/${e.tid}`;
      switch (e.name) {
        case "process_name":
          expect(e.tid).toBe(0);
          expect(typeof e.args.name).toBe("string");
          expect(processes.has(e.pid)).toBe(false);
          processes.set(e.pid, { name: e.args.name as string, sort: Number.NaN });
          break;
        case "process_sort_index":
          expect(Number.isInteger(e.args.sort_index)).toBe(true);
          processes.get(e.pid)!.sort = e.args.sort_index as number;
          break;
        case "thread_name":
          expect(e.tid).toBeGreaterThan(0);
          expect(typeof e.args.name).toBe("string");
          expect(threads.has(key)).toBe(false);
          threads.set(key, { name: e.args.name as string, sort: Number.NaN, pid: e.pid });
          break;
        case "thread_sort_index":
          expect(Number.isInteger(e.args.sort_index)).toBe(true);
          threads.get(key)!.sort = e.args.sort_index as number;
          break;
        default:
          throw new Error(`unexpected metadata event ${e.name}`);
      }
      continue;
    }
    metaDone = true;
    expect(Number.isFinite(e.ts) && e.ts >= 0).toBe(true);
    expect(typeof e.cat).toBe("string");
    expect(e.tid).toBeGreaterThan(0);
    if (e.ph === "X") {
      expect(Number.isFinite(e.dur) && e.dur! > 0, JSON.stringify(e)).toBe(true);
    } else {
      expect(e.s).toBe("t");
      expect(e.dur).toBeUndefined();
    }
    // Every track is named, and so is its process.
    expect(processes.has(e.pid)).toBe(true);
    expect(threads.get(`${e.pid}/${e.tid}`)?.pid).toBe(e.pid);
    expect(typeof e.args.virtual_ns).toBe("number");
    events.push(e);
  }
  for (const p of processes.values()) expect(Number.isInteger(p.sort)).toBe(true);
  for (const t of threads.values()) expect(Number.isInteger(t.sort)).toBe(true);
  // Sort indices order processes, and threads within a process, without ties.
  expect(new Set([...processes.values()].map((p) => p.sort)).size).toBe(processes.size);
  const byProcess = new Map<number, number[]>();
  for (const t of threads.values()) byProcess.set(t.pid, [...(byProcess.get(t.pid) ?? []), t.sort]);
  for (const sorts of byProcess.values()) expect(new Set(sorts).size).toBe(sorts.length);
  return { events, processes, threads };
}

/** The threads of process `name`, in their sort order. */
function tracksOf(c: Checked, name: string): string[] {
  const pid = [...c.processes].find(([, p]) => p.name === name)?.[0];
  return [...c.threads.values()]
    .filter((t) => t.pid === pid)
    .sort((a, b) => a.sort - b.sort)
    .map((t) => t.name);
}

/**
 * The timeline of one run: strictly increasing display time; the instants are the records in
 * order with their exact virtual time; each step's slice holds exactly its own records.
 */
function checkTimeline(c: Checked, run: TraceRun): void {
  const { events } = c;
  for (let i = 1; i < events.length; i++) {
    expect(events[i]!.ts).toBeGreaterThan(events[i - 1]!.ts);
  }
  const instants = events.filter((e) => e.ph === "i");
  expect(instants).toHaveLength(run.records.length);
  instants.forEach((e, i) => {
    const rec = run.records[i]!;
    expect(e.name).toBe(rec.event);
    expect(e.cat).toBe(rec.event.split(":")[0]);
    expect(e.args.virtual_ns).toBe(rec.ts);
    // Display time runs ahead of virtual time by a whole number of ticks, at least one.
    const ahead = Math.round(e.ts * 1000) - rec.ts;
    expect(ahead).toBeGreaterThanOrEqual(DISPLAY_TICK_NS);
    expect(ahead % DISPLAY_TICK_NS).toBe(0);
    // The record's track is a thread of that name (a device's under both of its names).
    expect(c.threads.get(`${e.pid}/${e.tid}`)!.name).toBe(trackNamer(run.devices)(rec.track));
  });
  if (run.steps === undefined) return;
  const steps = run.steps.filter((s) => !s.section);
  const stepTrack = events.find(
    (e) => e.ph === "X" && c.threads.get(`${e.pid}/${e.tid}`)!.name === "steps",
  );
  const slices = events.filter(
    (e) => e.ph === "X" && stepTrack !== undefined && e.tid === stepTrack.tid,
  );
  const boot = run.records.length - steps.reduce((n, s) => n + s.records, 0);
  expect(slices.map((e) => e.name)).toEqual([
    ...(boot > 0 ? ["boot"] : []),
    ...steps.map((s) => s.name),
  ]);
  const owned = [...(boot > 0 ? [boot] : []), ...steps.map((s) => s.records)];
  slices.forEach((x, k) => {
    const inside = instants.filter((e) => e.ts > x.ts && e.ts < x.ts + x.dur!);
    expect(inside).toHaveLength(owned[k]!);
  });
  steps.forEach((s, k) => {
    const x = slices[k + (boot > 0 ? 1 : 0)]!;
    expect(x.args.virtual_ns).toBe(s.startNs);
    expect(x.args.virtual_dur_ns).toBe(s.endNs - s.startNs);
  });
  // A section's slice covers the step slices up to the next section, and no other.
  const sections = events.filter(
    (e) => e.ph === "X" && c.threads.get(`${e.pid}/${e.tid}`)!.name === "sections",
  );
  expect(sections.map((e) => e.name)).toEqual(
    run.steps.filter((s) => s.section).map((s) => s.name),
  );
  let k = boot > 0 ? 1 : 0;
  let open = -1;
  for (const s of run.steps) {
    if (s.section) {
      open++;
      continue;
    }
    const x = slices[k++]!;
    if (open < 0) continue;
    const sec = sections[open]!;
    expect(x.ts).toBeGreaterThan(sec.ts);
    expect(x.ts + x.dur!).toBeLessThanOrEqual(sec.ts + sec.dur! + 1e-9);
    const after = sections[open + 1];
    if (after !== undefined) expect(x.ts + x.dur!).toBeLessThan(after.ts);
  }
}

describe("Chrome / Perfetto JSON", () => {
  it("follows the trace-event format; steps are slices around their events; time is apart", () => {
    const r = run();
    const traceRun = traceRunOf(r, "t");
    const c = checkChrome(traceToChromeJSON([traceRun]));
    checkTimeline(c, traceRun);
    expect([...c.processes.values()].sort((a, b) => a.sort - b.sort).map((p) => p.name)).toEqual([
      "scenario",
      "IOMMUs",
      "devices",
      "groups",
      "PCI",
      "kernel",
    ]);
    expect(tracksOf(c, "scenario")).toEqual(["sections", "steps"]);
    expect(tracksOf(c, "IOMMUs")).toEqual(["iommu0", "iommu1"]);
    expect(tracksOf(c, "devices")).toContain("acc0");
    expect(tracksOf(c, "kernel")).toEqual(["core"]);
    // Consecutive events of one virtual instant stand exactly one tick apart.
    let pairs = 0;
    c.events.forEach((e, i) => {
      const prev = c.events[i - 1];
      if (prev?.ph !== "i" || e.ph !== "i" || prev.args.virtual_ns !== e.args.virtual_ns) return;
      pairs++;
      expect(e.ts - prev.ts).toBeCloseTo(DISPLAY_TICK_NS / 1000, 9);
    });
    expect(pairs).toBeGreaterThan(100);
    // The 1.5 ms advance still shows as a gap of (at least) 1.5 ms.
    const advance = c.events.find((e) => e.ph === "X" && e.name.startsWith("advance"))!;
    expect(advance.args.virtual_dur_ns).toBe(1_500_000);
    expect(advance.dur).toBeGreaterThan(1500);
    // Step results and errnos are the slices' args.
    const fault = c.events.find((e) => e.ph === "X" && e.name.startsWith("report_iommu_fault"))!;
    expect(fault.args).toMatchObject({ status: "pass", errno: "ENOSYS" });
  });

  it.each(FILES)("%s: valid trace, IOMMUs, devices, groups, domains and mms as tracks", (file) => {
    const r = runFile(file);
    const traceRun = traceRunOf(r, file);
    const c = checkChrome(traceToChromeJSON([traceRun]));
    checkTimeline(c, traceRun);
    expect(tracksOf(c, "IOMMUs")).toEqual(["iommu0", "iommu1"]);
    const groups = tracksOf(c, "groups");
    expect(groups).toEqual([...groups].sort((a, b) => Number(a.slice(5)) - Number(b.slice(5))));
    expect(groups.indexOf("group2")).toBeLessThan(groups.indexOf("group10"));
    const devices = tracksOf(c, "devices");
    expect(devices).toContain("0000:00:01.0");
    // Every record's track is one thread, outside the scenario's process.
    const scenarioPid = [...c.processes].find(([, p]) => p.name === "scenario")![0];
    const trackThreads = [...c.threads.values()].filter((t) => t.pid !== scenarioPid);
    expect(trackThreads.map((t) => t.name).sort()).toEqual(
      [...new Set(r.trace!.map((x) => x.track))].sort(),
    );
    if (file.includes("lazy"))
      expect(tracksOf(c, "domains")).toEqual([expect.stringMatching(/^domain \d+$/)]);
    else expect(tracksOf(c, "processes")).toContain("mm1");
  });

  it("the same run gives the same bytes", () => {
    const a = JSON.stringify(traceToChromeJSON([traceRunOf(runFile(FILES[1]!), "a")]));
    const b = JSON.stringify(traceToChromeJSON([traceRunOf(runFile(FILES[1]!), "a")]));
    expect(a).toBe(b);
  });

  it("display time: virtual time plus one tick per event and per step boundary", () => {
    const rec = (seq: number, ts: number): TraceRecord => ({
      seq,
      ts,
      event: "iommu_core:pasid_free",
      track: "core",
      fields: { pasid: seq },
    });
    const records = [rec(0, 0), rec(1, 0), rec(2, 5000), rec(3, 5000)];
    const T = DISPLAY_TICK_NS;
    const plain = checkChrome(traceToChromeJSON([{ label: "p", records }])).events;
    expect(plain.map((e) => e.ts * 1000)).toEqual([0 + T, 0 + 2 * T, 5000 + 3 * T, 5000 + 4 * T]);
    // A step owning the last two records: each slice takes a tick at its start and at its end.
    const steps: TraceStep[] = [{ name: "s", records: 2, startNs: 0, endNs: 5000 }];
    const c = checkChrome(traceToChromeJSON([{ label: "s", records, steps }])).events;
    expect(c.map((e) => [e.name, e.ts * 1000, (e.dur ?? 0) * 1000])).toEqual([
      ["boot", T, 4 * T - T],
      ["iommu_core:pasid_free", 2 * T, 0],
      ["iommu_core:pasid_free", 3 * T, 0],
      ["s", 5 * T, 5000 + 8 * T - 5 * T],
      ["iommu_core:pasid_free", 5000 + 6 * T, 0],
      ["iommu_core:pasid_free", 5000 + 7 * T, 0],
    ]);
  });

  it("several runs get processes of their own", () => {
    const rec: TraceRecord = {
      seq: 0,
      ts: 0,
      event: "iommu_core:pasid_free",
      track: "core",
      fields: { pasid: 1 },
    };
    const doc = traceToChromeJSON([
      { label: "a", records: [rec], steps: [] },
      { label: "b", records: [rec] },
    ]);
    const c = checkChrome(doc);
    expect([...c.processes.values()].map((p) => p.name)).toEqual([
      "scenario — a",
      "kernel — a",
      "kernel — b",
    ]);
  });

  it("refuses steps that claim more records than the run has", () => {
    expect(() =>
      traceToChromeJSON([
        { label: "x", records: [], steps: [{ name: "s", records: 1, startNs: 0, endNs: 0 }] },
      ]),
    ).toThrow(SimError);
  });

  /** Arbitrary runs: a boot, then steps and sections, with time advancing now and then. */
  const arbRun = fc
    .record({
      boot: fc.nat({ max: 4 }),
      steps: fc.array(
        fc.record({
          section: fc.boolean(),
          records: fc.nat({ max: 4 }),
          wait: fc.constantFrom(0, 0, 1, 999, 1000, 1_000_000),
          track: fc.constantFrom(
            "iommu0",
            "domain 3",
            "group10",
            "group2",
            "mm1",
            "0000:00:01.0",
            "nic0",
          ),
        }),
        { maxLength: 12 },
      ),
      named: fc.boolean(),
    })
    .map(({ boot, steps, named }): TraceRun => {
      let now = 0;
      const records: TraceRecord[] = [];
      const add = (track: string) =>
        records.push({
          seq: records.length,
          ts: now,
          event: track.startsWith("mm") ? "mm:mmap" : "iommu_core:pasid_free",
          track,
          fields: { pasid: records.length },
        } as TraceRecord);
      for (let i = 0; i < boot; i++) add("core");
      const out: TraceStep[] = [];
      for (const s of steps) {
        const startNs = now;
        const n = s.section ? 0 : s.records;
        for (let i = 0; i < n; i++) {
          if (i === 1) now += s.wait;
          add(s.track);
        }
        if (!s.section) now += s.wait;
        out.push({
          name: `step ${out.length}`,
          section: s.section,
          records: n,
          startNs,
          endNs: now,
        });
      }
      const devices = new Map([["0000:00:01.0", "nic0"]]);
      return { label: "r", records, steps: out, ...(named ? { devices } : {}) };
    });

  test.prop([arbRun])(
    "any run: a valid trace, events in order and apart, slices around them",
    (r) => {
      const c = checkChrome(traceToChromeJSON([r]));
      checkTimeline(c, r);
      expect(JSON.stringify(traceToChromeJSON([r]))).toBe(JSON.stringify(traceToChromeJSON([r])));
      // With the names, the device is one thread under both; without, as emitted.
      const names = [...c.threads.values()].map((t) => t.name);
      const used = new Set(r.records.map((x) => x.track));
      const both = used.has("nic0") || used.has("0000:00:01.0");
      expect(names.filter((n) => n === "nic0 (0000:00:01.0)")).toHaveLength(
        r.devices !== undefined && both ? 1 : 0,
      );
      if (r.devices !== undefined) {
        expect(names).not.toContain("nic0");
        expect(names).not.toContain("0000:00:01.0");
      }
    },
  );
});

/**
 * acc0, a PCI function of the default machine, in the IOMMU core's tracepoints (by its kernel
 * name) and in its IO bridge's and device model's events (by its description name); tb0 is
 * plugged in and out, so its kernel name exists only between two steps.
 */
const DEVICE_SCENARIO = `
machine: default
drivers: [riscv]
steps:
  - iommu_paging_domain_alloc: {dev: acc0}
    as: d
  - iommu_group_claim_dma_owner: {group: acc0, owner: me}
  - iommu_attach_group: {domain: d, group: acc0}
  - iommu_map: {domain: d, iova: 0x10000, paddr: 0x80400000, size: 0x1000, prot: [IOMMU_READ]}
  - device_dma_read: {dev: acc0, addr: 0x10000, len: 4}
  - device_dma_read: {dev: acc0, addr: 0x20000, len: 4}
    error: read_page_fault
  - hot_add: {dev: tb0}
  - hot_remove: {dev: tb0}
`;

/** Runs a scenario learning its devices' names as the CLI does: at boot and after every step. */
function runNamed(text = DEVICE_SCENARIO): {
  r: ScenarioResult;
  devices: DeviceNames;
  kernel: string;
} {
  const names = new Map<string, string>();
  let machine: Machine | undefined;
  const r = runScenario(loadScenario(text, "d.yaml", machineHost), machineHost, {
    keepTrace: true,
    onBoot: (m) => {
      machine = m;
      addDeviceNames(m, names);
    },
    onStep: () => addDeviceNames(machine!, names),
  });
  expect(r.status).toBe("pass");
  return { r, devices: names, kernel: machine!.device("acc0")!.name };
}

const PCI_NAME = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

describe("one track per device", () => {
  it("the machine's names: kernel name → description name, PCI functions and bridges", () => {
    const { devices, kernel } = runNamed();
    expect(kernel).toMatch(PCI_NAME);
    expect(devices.get(kernel)).toBe("acc0");
    for (const [k, d] of devices) {
      expect(k).toMatch(PCI_NAME);
      expect(d).not.toMatch(PCI_NAME);
    }
    // The root ports are there; tb0, though unplugged by the end, too.
    expect([...devices.values()]).toEqual(expect.arrayContaining(["rp0", "nic0", "tb0"]));
  });

  it("Perfetto: the core's and the device's records are one thread named by both names", () => {
    const { r, devices, kernel } = runNamed();
    const own = r.trace!.filter((x) => x.track === kernel || x.track === "acc0");
    // Both kinds are there: the core's tracepoints by kernel name, the bridge's by description.
    const kernelEvents = new Set(own.filter((x) => x.track === kernel).map((x) => x.event));
    const modelEvents = new Set(own.filter((x) => x.track === "acc0").map((x) => x.event));
    expect([...kernelEvents]).toEqual(
      expect.arrayContaining(["iommu:add_device_to_group", "iommu:attach_device_to_domain"]),
    );
    expect([...modelEvents]).toContain("device:dma");

    const run = traceRunOf(r, "d", devices);
    const c = checkChrome(traceToChromeJSON([run]));
    checkTimeline(c, run);
    const name = `acc0 (${kernel})`;
    const threads = [...c.threads].filter(
      ([, t]) => t.name.includes("acc0") || t.name.includes(kernel),
    );
    expect(threads.map(([, t]) => t.name)).toEqual([name]);
    expect(tracksOf(c, "devices")).toContain(name);
    // On it, every record of either name, in order, events and fields as emitted.
    const key = threads[0]![0];
    const on = c.events.filter((e) => e.ph === "i" && `${e.pid}/${e.tid}` === key);
    expect(on.map((e) => e.name)).toEqual(own.map((x) => x.event));
    for (const e of on.filter((x) => x.name.startsWith("iommu:"))) {
      expect(e.args.device).toBe(kernel);
    }
    // tb0's kernel name was only known between hot_add and hot_remove.
    const tb0 = [...devices].find(([, d]) => d === "tb0")![0];
    expect(tracksOf(c, "devices")).toContain(`tb0 (${tb0})`);
    // Without the names the same run shows acc0 twice, as two unrelated threads.
    const plain = checkChrome(traceToChromeJSON([traceRunOf(r, "d")]));
    expect(tracksOf(plain, "devices")).toEqual(expect.arrayContaining(["acc0", kernel]));
    expect(tracksOf(plain, "devices")).not.toContain(name);
  });

  it("ftrace text: one task and pid per device; the lines are otherwise unchanged", () => {
    const { r, devices, kernel } = runNamed();
    const named = formatTraceText(r.trace!, devices).trimEnd().split("\n");
    const plain = formatTraceText(r.trace!).trimEnd().split("\n");
    const tasks = new Set<string>();
    const pidOf = new Map<string, string>();
    const taskOf = new Map<string, string>();
    named.forEach((line, i) => {
      const m = TRACE_CMD_LINE.exec(line);
      expect(m, line).not.toBeNull();
      const [, task, pid] = m!;
      expect(pidOf.get(task!) ?? pid).toBe(pid);
      expect(taskOf.get(pid!) ?? task).toBe(task);
      pidOf.set(task!, pid!);
      taskOf.set(pid!, task!);
      const rec = r.trace![i]!;
      if (rec.track === kernel || rec.track === "acc0") tasks.add(task!);
      // Past the task column, the line is the one without names (kernel's device name kept).
      expect(line.slice(line.indexOf(" [000] "))).toBe(
        plain[i]!.slice(plain[i]!.indexOf(" [000] ")),
      );
    });
    expect([...tasks]).toEqual([ftraceComm(`acc0 (${kernel})`)]);
    expect(named.join("\n")).toContain(`attach_device_to_domain: IOMMU: device=${kernel}\n`);
  });

  it("the same run with its names gives the same bytes", () => {
    const a = runNamed();
    const b = runNamed();
    expect(JSON.stringify(traceToChromeJSON([traceRunOf(a.r, "a", a.devices)]))).toBe(
      JSON.stringify(traceToChromeJSON([traceRunOf(b.r, "a", b.devices)])),
    );
    expect(formatTraceText(a.r.trace!, a.devices)).toBe(formatTraceText(b.r.trace!, b.devices));
  });

  it("names a track by either of a device's names; other tracks as they are", () => {
    const name = trackNamer(
      new Map([
        ["0000:04:00.0", "nic0"],
        ["0000:05:00.0", "tb0"],
        ["0000:06:00.0", "tb0"],
        ["legacy0", "legacy0"],
      ]),
    );
    expect(name("0000:04:00.0")).toBe("nic0 (0000:04:00.0)");
    expect(name("nic0")).toBe("nic0 (0000:04:00.0)");
    // Plugged in again below another port: both kernel names.
    expect(name("tb0")).toBe("tb0 (0000:05:00.0, 0000:06:00.0)");
    expect(name("0000:06:00.0")).toBe("tb0 (0000:05:00.0, 0000:06:00.0)");
    expect(name("legacy0")).toBe("legacy0");
    expect(name("core")).toBe("core");
    expect(name("0000:07:00.0")).toBe("0000:07:00.0");
    expect(trackNamer()("nic0")).toBe("nic0");
    expect(trackNamer(new Map())("0000:04:00.0")).toBe("0000:04:00.0");
  });

  it("the machines of other hosts teach no names", () => {
    const names = new Map<string, string>();
    addDeviceNames(
      { ctx: undefined as never, bootLog: [], checkInvariants: () => [], toJSON: () => null },
      names,
    );
    expect(names.size).toBe(0);
  });
});
