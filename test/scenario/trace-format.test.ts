// The trace exports on real runs: every kernel tracepoint in its TP_printk format on
// trace-cmd-style lines a parser can split, and Chrome/Perfetto JSON that follows the trace-event
// format (metadata naming and ordering every process and thread, instants and complete events)
// on a display timeline that keeps the events apart, in order, with their steps around them.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { TraceRecord } from "../../src/base/trace.js";
import { loadScenario } from "../../src/scenario/load.js";
import { machineHost } from "../../src/scenario/machine-host.js";
import { runScenario, type ScenarioResult } from "../../src/scenario/run.js";
import {
  formatTraceText,
  ftraceComm,
  ftraceTimestamp,
  traceToChromeJSON,
} from "../../src/scenario/trace-format.js";
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
  ts?: number;
  dur?: number;
  cat?: string;
  s?: string;
  args?: Record<string, unknown>;
}

describe("Chrome / Perfetto JSON", () => {
  it("names every process and thread, keeps time monotonic per track, has a process per subsystem", () => {
    const r = run();
    const doc = traceToChromeJSON([
      {
        label: "t",
        records: r.trace!,
        spans: [{ name: "boot", track: "steps", ts: 0, dur: 5000 }],
      },
    ]) as unknown as { traceEvents: ChromeEvent[]; displayTimeUnit: string };
    expect(doc.displayTimeUnit).toBe("ns");
    const events = doc.traceEvents;
    const processes = new Map<number, string>();
    const threads = new Map<string, string>();
    for (const e of events.filter((x) => x.ph === "M")) {
      if (e.name === "process_name") processes.set(e.pid, e.args!.name as string);
      if (e.name === "thread_name") threads.set(`${e.pid}/${e.tid}`, e.args!.name as string);
    }
    const last = new Map<string, number>();
    let instants = 0;
    for (const e of events.filter((x) => x.ph !== "M")) {
      expect(["i", "X"]).toContain(e.ph);
      for (const k of ["name", "cat", "ts", "pid", "tid", "args"] as const)
        expect(e).toHaveProperty(k);
      expect(Number.isInteger(e.pid) && Number.isInteger(e.tid)).toBe(true);
      if (e.ph === "i") {
        instants++;
        expect(e.s).toBe("t");
      } else {
        expect(e.dur).toBeGreaterThanOrEqual(0);
      }
      // Every track has metadata naming it and its process.
      expect(processes.has(e.pid)).toBe(true);
      const key = `${e.pid}/${e.tid}`;
      expect(threads.has(key)).toBe(true);
      expect(e.ts!).toBeGreaterThanOrEqual(last.get(key) ?? 0);
      last.set(key, e.ts!);
      // The process is the event's subsystem.
      expect(processes.get(e.pid)).toBe(e.cat);
    }
    expect(instants).toBe(r.trace!.length);
    // One process per subsystem; IOMMU instances and devices are tracks of their own.
    const systems = new Set(r.trace!.map((x) => x.event.split(":")[0]));
    expect(new Set(processes.values())).toEqual(new Set([...systems, "scenario"]));
    const riscv = [...processes].find(([, n]) => n === "riscv_iommu")![0];
    const riscvTracks = [...threads].filter(([k]) => k.startsWith(`${riscv}/`)).map(([, n]) => n);
    expect(riscvTracks).toContain("iommu1");
    // Virtual time in µs: the 1.5 ms advance shows.
    expect(
      Math.max(...events.filter((e) => e.ph === "i").map((e) => e.ts!)),
    ).toBeGreaterThanOrEqual(1500);
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
      { label: "a", records: [rec] },
      { label: "b", records: [rec] },
    ]) as unknown as { traceEvents: ChromeEvent[] };
    const names = doc.traceEvents.filter((e) => e.name === "process_name").map((e) => e.args!.name);
    expect(names).toEqual(["iommu_core — a", "iommu_core — b"]);
  });
});
