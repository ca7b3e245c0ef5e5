// The CPU-side, device-DMA, SVA and IOPF vocabulary on real machines: validation of the new
// parameter and value forms (bytes, memory maps, failure codes, driver restrictions) and runs
// whose every outcome is checked.

import { describe, expect, it } from "vitest";
import { InputError } from "../../src/base/errors.js";
import { InputErrors } from "../../src/machine/input/diagnostics.js";
import { loadScenario } from "../../src/scenario/load.js";
import { machineHost } from "../../src/scenario/machine-host.js";
import { formatScenarioResult, scenarioResultJSON } from "../../src/scenario/report.js";
import { applicableDrivers, runScenario } from "../../src/scenario/run.js";

function errorsOf(text: string): string[] {
  try {
    loadScenario(text, "v.yaml", machineHost);
  } catch (e) {
    if (e instanceof InputErrors) return e.errors.map((x) => x.format());
    if (e instanceof InputError) return [e.format()];
    throw e;
  }
  throw new Error("expected the scenario to be rejected");
}

const load = (text: string) => loadScenario(text, "v.yaml", machineHost);
const run = (text: string, driver?: string) =>
  runScenario(load(text), machineHost, driver === undefined ? {} : { driver });

/** A riscv scenario on the default machine with process p1 and 4 pages mapped at 0x40000000. */
function withProcess(steps: readonly string[]): string {
  return [
    "machine: default",
    "drivers: [riscv]",
    "steps:",
    "  - spawn: {comm: app}",
    "    as: p1",
    "  - mmap: {task: p1, addr: 0x40000000, len: 0x4000, prot: [PROT_READ, PROT_WRITE], flags: [MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED]}",
    "    returns: 0x40000000",
    ...steps,
  ].join("\n");
}

function expectPass(text: string, driver?: string): void {
  const r = run(text, driver);
  if (r.status !== "pass") expect.fail(formatScenarioResult(r));
}

describe("validation of the new calls", () => {
  it("rejects bad parameter types of process, CPU and DMA calls at their positions", () => {
    expect(
      errorsOf(
        [
          "machine: default",
          "drivers: [riscv]",
          "steps:",
          "  - spawn: {comm: 5}",
          "    as: p1",
          "  - mmap: {task: p1, addr: -1, len: 0x1000, prot: PROT_RAED, flags: [MAP_PRIVATE, 3]}",
          "  - cpu_load: {task: p1, addr: 0x1000, size: 3}",
          "  - cpu_write: {task: p1, addr: 0x1000, data: [1, 256]}",
          "  - cpu_write: {task: p1, addr: 0x1000, data: {hex: abc}}",
          "  - cpu_write: {task: p1, addr: 0x1000, data: {fill: 300, len: 2}}",
          "  - device_dma_read: {dev: dsa0, addr: 0, len: 0, pasid: 0x100000}",
          "  - device_dma_write: {dev: nic9, addr: 0, data: 7}",
          "  - cpu_read: {task: nic0, addr: 0, len: 1}",
        ].join("\n"),
      ),
    ).toEqual([
      "v.yaml:4:19: steps[0].spawn.comm: expected text, got the number 5",
      "v.yaml:6:28: steps[1].mmap.addr: expected a 64-bit unsigned value, got the number -1",
      'v.yaml:6:51: steps[1].mmap.prot: unknown flag "PROT_RAED" (did you mean "PROT_READ"?); flags: PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC',
      "v.yaml:6:83: steps[1].mmap.flags[1]: expected a flag name (MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE, MAP_POPULATE, MAP_FIXED_NOREPLACE), got the number 3",
      "v.yaml:7:46: steps[2].cpu_load.size: expected an access size of 1, 2, 4 or 8 bytes, got the number 3",
      "v.yaml:8:51: steps[3].cpu_write.data[1]: expected a byte (0..255), got the number 256",
      'v.yaml:9:53: steps[4].cpu_write.data.hex: expected pairs of hex digits, got the string "abc"',
      "v.yaml:10:54: steps[5].cpu_write.data.fill: expected a byte (0..255), got the number 300",
      "v.yaml:11:48: steps[6].device_dma_read.len: expected a length in bytes, got the number 0",
      "v.yaml:11:58: steps[6].device_dma_read.pasid: expected a 20-bit PASID, got the number 1048576",
      'v.yaml:12:29: steps[7].device_dma_write.dev: unknown device "nic9" (did you mean "nic0"?)',
      'v.yaml:12:50: steps[7].device_dma_write.data: expected bytes: a list of byte values, text, {hex: "de ad be ef"} or {fill: 0xaa, len: 4096}, got the number 7',
      'v.yaml:13:22: steps[8].cpu_read.task: "nic0" is a device of the machine, expected a process',
    ]);
  });

  it("error: names a signal or a DMA abort code for those calls, an errno for the others", () => {
    expect(
      errorsOf(
        withProcess([
          "  - cpu_read: {task: p1, addr: 0, len: 1}",
          "    error: SIGSEV",
          "  - cpu_read: {task: p1, addr: 0, len: 1}",
          "    error: EFAULT",
          "  - device_dma_read: {dev: acc0, addr: 0, len: 1}",
          "    error: read_page_fult",
          "  - munmap: {task: p1, addr: 1, len: 0x1000}",
          "    error: SIGSEGV",
        ]),
      ).map((e) => e.replace(/; one of .*/, "")),
    ).toEqual([
      'v.yaml:9:12: steps[2].error: expected a signal (SIGSEGV, SIGBUS) or its si_code: unknown code "SIGSEV" (did you mean "SIGSEGV"?)',
      'v.yaml:11:12: steps[3].error: expected a signal (SIGSEGV, SIGBUS) or its si_code: unknown code "EFAULT"',
      'v.yaml:13:12: steps[4].error: expected a DMA abort: the IOMMU fault cause, or why the fabric or device refused it: unknown code "read_page_fult" (did you mean "read_page_fault"?)',
      'v.yaml:15:12: steps[5].error: unknown errno "SIGSEGV"',
    ]);
  });

  it("DSA calls: opcodes, commands, flags and their failure codes", () => {
    expect(
      errorsOf(
        [
          "machine: default",
          "steps:",
          "  - dsa_wq_enable: {dev: dsa0, wq: 16, mode: shard}",
          "  - dsa_submit: {dev: dsa0, wq: 0, opcode: memcopy, flags: [IDXD_OP_FLAG_BOFF]}",
          "  - dsa_command: {dev: dsa0, command: drain_pasids}",
          "    error: pasid_enn",
          "  - dsa_submit: {dev: dsa0, wq: 0, opcode: noop}",
          "    error: EAGAIN",
        ].join("\n"),
      ).map((e) => e.replace(/; (expected one of|flags:|one of) .*/, "")),
    ).toEqual([
      "v.yaml:3:36: steps[0].dsa_wq_enable.wq: expected a work queue index (0..15), got the number 16",
      'v.yaml:3:46: steps[0].dsa_wq_enable.mode: unknown value "shard" (did you mean "shared"?)',
      'v.yaml:4:44: steps[1].dsa_submit.opcode: unknown value "memcopy"',
      'v.yaml:4:61: steps[1].dsa_submit.flags[0]: unknown flag "IDXD_OP_FLAG_BOFF" (did you mean "IDXD_OP_FLAG_BOF"?)',
      'v.yaml:5:39: steps[2].dsa_command.command: unknown value "drain_pasids" (did you mean "drain_pasid"?)',
      'v.yaml:6:12: steps[2].error: expected a command error of CMDSTS (wq_mode, pasid_en, dev_noten, …): unknown code "pasid_enn" (did you mean "pasid_en"?)',
      'v.yaml:8:12: steps[3].error: expected retry (ENQCMD: the shared WQ refused the descriptor): unknown code "EAGAIN"',
    ]);
  });

  it("DMA API calls: directions, gfp, attrs, coherent buffers and their fields", () => {
    expect(
      errorsOf(
        [
          "machine: default",
          "steps:",
          "  - dma_map_single: {dev: acc0, ptr: 0x80000000, size: 0x1000, dir: DMA_TO_DEV}",
          "  - dma_alloc_coherent: {dev: acc0, size: 0x1000, gfp: GFP_NOWAIT}",
          "    as: cb",
          "  - dma_free_coherent: {dev: acc0, size: 0x1000, cpu_addr: cb, dma_handle: cb.dma_handel}",
          "  - dma_map_single: {dev: acc0, ptr: 0, size: 1, dir: 0, attrs: [DMA_ATTR_PRIVILEDGED]}",
          "  - phys_store: {addr: 0x80000000, value: 1, size: 3}",
          "  - iowrite32: {dev: nic0, bar: 6, offset: 0x3818, value: 0x100000000}",
        ].join("\n"),
      ).map((e) => e.replace(/; (expected one of|flags:) .*/, "")),
    ).toEqual([
      'v.yaml:3:69: steps[0].dma_map_single.dir: unknown constant "DMA_TO_DEV" (did you mean "DMA_TO_DEVICE"?)',
      'v.yaml:4:56: steps[1].dma_alloc_coherent.gfp: unknown value "GFP_NOWAIT"',
      'v.yaml:6:76: steps[2].dma_free_coherent.dma_handle: a coherent DMA buffer has no field "dma_handel" (did you mean "dma_handle"?); fields: dma_handle, cpu_addr',
      'v.yaml:7:66: steps[3].dma_map_single.attrs[0]: unknown flag "DMA_ATTR_PRIVILEDGED" (did you mean "DMA_ATTR_PRIVILEGED"?)',
      "v.yaml:8:52: steps[4].phys_store.size: expected an access size of 1, 2, 4 or 8 bytes, got the number 3",
      "v.yaml:9:33: steps[5].iowrite32.bar: expected a BAR number 0..5, got the number 6",
      "v.yaml:9:59: steps[5].iowrite32.value: expected a 32-bit unsigned integer, got the number 4294967296",
    ]);
  });

  it("memory expectations take addresses to bytes or null", () => {
    expect(
      errorsOf(
        withProcess([
          "  - expect: {task: p1, memory: {here: [1], 0x1000: 5}}",
          "  - expect: {mm: p1, memory: 3}",
        ]),
      ),
    ).toEqual([
      'v.yaml:8:33: steps[2].expect.memory.here: expected a 64-bit address as the key, got "here"',
      'v.yaml:8:52: steps[2].expect.memory."4096": expected bytes: a list of byte values, text, {hex: "de ad be ef"} or {fill: 0xaa, len: 4096}, got the number 5',
      "v.yaml:9:30: steps[3].expect.memory: expected a map from addresses to bytes (or null), got the number 3",
    ]);
  });

  it("calls that need DMA hardware run on riscv only; mock test ops on the mock only", () => {
    expect(
      errorsOf(
        [
          "machine: default",
          "drivers: [mock, riscv]",
          "steps:",
          "  - device_dma_read: {dev: acc0, addr: 0, len: 1}",
          "    error: abort",
          "  - trigger_iopf: {dev: acc0, pasid: 1, grpid: 0, perm: IOMMU_FAULT_PERM_READ, addr: 0}",
        ].join("\n"),
      ),
    ).toEqual([
      'v.yaml:4:5: steps[0].device_dma_read: device_dma_read runs on the riscv driver only, not on mock; declare "drivers: [riscv]"',
      'v.yaml:6:5: steps[1].trigger_iopf: trigger_iopf runs on the mock driver only, not on riscv; declare "drivers: [mock]"',
    ]);
    // Without drivers: the machine's (default: riscv); forcing another driver skips it.
    const s = load(
      "machine: default\nsteps:\n  - device_dma_read: {dev: acc0, addr: 0, len: 1}\n    error: abort\n",
    );
    expect(s.onlyDrivers).toEqual(["riscv"]);
    expect(applicableDrivers(s, machineHost)).toEqual(["riscv"]);
    expect(
      applicableDrivers(
        load(
          "machine: {extends: default, iommus: {iommu0: {driver: mock}, iommu1: {driver: mock}}}\nsteps: []\n",
        ),
        machineHost,
      ),
    ).toEqual(["mock"]);
  });
});

describe("value bindings", () => {
  it("as: binds a returned number; later steps compute with it", () => {
    expectPass(
      withProcess([
        "  - mmap: {task: p1, addr: 0, len: 0x2000, prot: [PROT_READ, PROT_WRITE], flags: [MAP_PRIVATE, MAP_ANONYMOUS]}",
        "    as: buf",
        "  - cpu_write: {task: p1, addr: buf + 0x1ffe, data: [1, 2]}",
        "  - cpu_load: {task: p1, addr: buf+0x1ffe, size: 2}",
        "    returns: 0x201",
        "  - mmap: {task: p1, addr: buf, len: 0x1000, prot: PROT_READ, flags: [MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE]}",
        "    error: EEXIST",
        "  - munmap: {task: p1, addr: buf, len: 0x2000}",
        "  - mmap: {task: p1, addr: 0, len: 0x1000, prot: PROT_READ, flags: [MAP_PRIVATE, MAP_ANONYMOUS]}",
        "    returns: $buf + 0x1000",
        "    note: top-down placement takes the highest free gap again",
      ]),
    );
  });

  it("expressions are checked: unbound names, objects without fields, unknown fields", () => {
    expect(
      errorsOf(
        withProcess([
          "  - mmap: {task: p1, addr: 0, len: 0x1000, prot: PROT_READ, flags: [MAP_PRIVATE, MAP_ANONYMOUS]}",
          "    as: buf",
          "  - cpu_read: {task: p1, addr: bfu + 1, len: 1}",
          "  - cpu_read: {task: p1, addr: p1, len: 1}",
          "  - cpu_read: {task: p1, addr: buf.start, len: 1}",
          "  - cpu_read: {task: p1, addr: buff, len: 1}",
          "  - cpu_read: {task: p1, addr: 0, len: buf}",
          "    note: a number binding works where an integer is expected",
          "  - iommu_sva_unbind_device: {handle: b9}",
          "    as: x",
        ]),
      ),
    ).toEqual([
      'v.yaml:10:32: steps[3].cpu_read.addr: "bfu" is not bound (no earlier step has "as: bfu") (did you mean "buf"?)',
      'v.yaml:11:32: steps[4].cpu_read.addr: "p1" is a process, not a number',
      'v.yaml:12:32: steps[5].cpu_read.addr: "buf" is a number: it has no field "start"',
      'v.yaml:13:32: steps[6].cpu_read.addr: expected a 64-bit unsigned value, got the string "buff"',
      'v.yaml:16:39: steps[8].iommu_sva_unbind_device.handle: "b9" is not bound (no earlier step has "as: b9")',
      "v.yaml:17:5: steps[8].as: iommu_sva_unbind_device returns no object or number to bind",
    ]);
  });
});

describe("runs", () => {
  it("processes, memory, CPU faults and their signal codes", () => {
    expectPass(
      withProcess([
        "  - cpu_write: {task: p1, addr: 0x40002000, data: 'é€😀'}",
        "  - cpu_read: {task: p1, addr: 0x40002000, len: 9}",
        "    returns: [0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80]",
        "  - cpu_write: {task: p1, addr: 0x40000ffe, data: {hex: 'de ad be ef'}}",
        "  - expect: {task: p1, memory: {0x40000ffe: [0xde, 0xad, 0xbe, 0xef], 0x40001002: [0, 0], 0x40003000: null}}",
        "  - cpu_load: {task: p1, addr: 0x40000ffe, size: 4}",
        "    returns: 0xefbeadde",
        "  - cpu_store: {task: p1, addr: 0x40003000, value: 0x1122334455667788}",
        "  - cpu_load: {task: p1, addr: 0x40003004, size: 2}",
        "    returns: 0x3344",
        "  - cpu_read: {task: p1, addr: 0x40003000, len: 2}",
        "    returns: [0x88, 0x77]",
        "  - mprotect: {task: p1, start: 0x40003000, len: 0x1000, prot: PROT_READ}",
        "  - cpu_store: {task: p1, addr: 0x40003000, value: 1, size: 1}",
        "    error: SEGV_ACCERR",
        "  - cpu_store: {task: p1, addr: 0x40003000, value: 1, size: 1}",
        "    error: SIGSEGV",
        "  - cpu_read: {task: p1, addr: 0x50000000, len: 1}",
        "    error: SEGV_MAPERR",
        "  - fork: {task: p1}",
        "    as: c1",
        "  - expect: {task: c1, pid: 2, memory: {0x40003000: [0x88, 0x77]}}",
        "  - cpu_write: {task: c1, addr: 0x40000000, data: child}",
        "  - expect: {task: p1, memory: {0x40000000: [0, 0, 0, 0, 0]}}",
        "  - exit: {task: c1, code: 3}",
        "  - expect: {task: c1, state: zombie, exit_code: 3, mm: null}",
        "  - wait: {task: p1, pid: c1}",
        "    returns: {pid: 2, code: 3}",
        "  - expect: {task: c1, state: reaped}",
      ]),
    );
  });

  it("a failed expectation of a signal reports what happened", () => {
    const r = run(
      withProcess(["  - cpu_read: {task: p1, addr: 0x40000000, len: 1}", "    error: SIGBUS"]),
    );
    expect(r.status).toBe("fail");
    const f = r.steps[2]!;
    expect(f.failure?.message).toBe("cpu_read succeeded, expected SIGBUS");
    const r2 = run(withProcess(["  - cpu_read: {task: p1, addr: 0x10000, len: 1}"]));
    const g = r2.steps[2]!;
    expect(g.failure?.message).toBe("cpu_read failed with SEGV_MAPERR, expected success");
    expect(g.failure?.actual).toEqual({ signal: "SIGSEGV", code: "SEGV_MAPERR", addr: "0x10000" });
    expect(formatScenarioResult(r2)).toContain(
      "cpu_read(task=p1, addr=0x10000, len=1) = SEGV_MAPERR",
    );
    expect(scenarioResultJSON(r2)).toMatchObject({
      steps: [{}, {}, { errno: "SEGV_MAPERR", fault: { code: "SEGV_MAPERR", addr: "0x10000" } }],
    });
  });

  it("device DMA is translated: faults carry the IOMMU's cause and land in its fault queue", () => {
    expectPass(
      withProcess([
        "  - device_dma_read: {dev: acc0, addr: 0x1000, len: 8}",
        "    error: read_page_fault",
        "  - device_dma_write: {dev: acc0, addr: 0x1000, data: [1]}",
        "    error: abort",
        "  - device_dma_read: {dev: acc0, addr: 0x1000, len: 8, pasid: 3}",
        "    error: transaction_type_disallowed",
        "  - device_dma_read: {dev: legacy0, addr: 0x1000, len: 8, pasid: 3}",
        "    error: refused",
        "  - settle: {}",
        "  - expect: {iommu: iommu1, fault_count: 3, faults: [{code: read_page_fault, cause: 13, ttyp: untranslated_read, device: acc0, pasid: null, iotval: 0x1000}, {code: write_page_fault, cause: 15, ttyp: untranslated_write}, {code: transaction_type_disallowed, pasid: 3}]}",
        "  - expect: {iommu: iommu0, faults: []}",
        "  - expect: {dev: acc0, pasid_enabled: true, ats_enabled: true, engine: {kind: test-device, counters: {failures: 3}}}",
      ]),
    );
  });

  it("SVA: bind, DMA at the process's addresses, PASID kept until the final mmdrop", () => {
    expectPass(
      withProcess([
        // idxd holds PASID 1 on dsa0 (its system PASID): the process gets 2.
        "  - cpu_write: {task: p1, addr: 0x40000010, data: hello}",
        "  - iommu_sva_bind_device: {dev: dsa0, mm: p1}",
        "    as: b1",
        "  - iommu_sva_bind_device: {dev: dsa0, mm: p1}",
        "    returns: $b1",
        "  - expect: {sva: b1, users: 2, pasid: 2, dev: dsa0}",
        "  - iommu_sva_get_pasid: {handle: b1}",
        "    returns: 2",
        "  - mm_get_enqcmd_pasid: {mm: p1}",
        "    returns: 2",
        "  - expect: {task: p1, pasid: 2}",
        "  - device_dma_read: {dev: dsa0, addr: 0x40000010, len: 5, pasid: 2}",
        "    returns: hello",
        "  - device_dma_write: {dev: dsa0, addr: 0x40000020, data: dev, pasid: 2}",
        "  - cpu_read: {task: p1, addr: 0x40000020, len: 3}",
        "    returns: dev",
        "  - get_task_mm: {task: p1}",
        "    as: m1",
        "  - exit: {task: p1}",
        "  - expect: {mm: m1, state: live, users: 1, pasid: 2}",
        "  - mmput: {mm: m1}",
        "  - expect: {mm: m1, state: exited, users: 0, pasid: 2, notifiers: 0}",
        "  - iommu_sva_unbind_device: {handle: b1}",
        "  - expect: {mm: m1, state: exited}",
        "  - iommu_sva_unbind_device: {handle: b1}",
        "  - expect: {mm: m1, state: freed, pasid: 0xffffffff}",
        "  - expect: {machine: {global_pasids: [1]}}",
      ]),
    );
  });

  it("IOPF on the mock: TRIGGER_IOPF through the SVA handler, responses recorded", () => {
    expectPass(
      [
        "machine: single-mock",
        "drivers: [mock]",
        "steps:",
        "  - spawn: {comm: app}",
        "    as: p1",
        "  - mmap: {task: p1, addr: 0x40000000, len: 0x2000, prot: [PROT_READ, PROT_WRITE], flags: [MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED]}",
        "  - iommu_sva_bind_device: {dev: dev0, mm: p1}",
        "    as: b1",
        "  - trigger_iopf: {dev: dev0, pasid: 1, grpid: 7, perm: [IOMMU_FAULT_PERM_READ, IOMMU_FAULT_PERM_WRITE], addr: 0x40001000}",
        "  - expect: {mm: p1, memory: {0x40001000: null}}",
        "  - iopf_queue_flush_dev: {dev: dev0}",
        "  - expect: {mm: p1, memory: {0x40001000: [0, 0]}}",
        "  - trigger_iopf: {dev: dev0, pasid: 1, grpid: 8, perm: IOMMU_FAULT_PERM_READ, addr: 0x50000000}",
        "  - settle: {}",
        "  - trigger_iopf: {dev: dev0, pasid: 9, grpid: 9, perm: IOMMU_FAULT_PERM_READ, addr: 0x40000000}",
        "    error: EINVAL",
        "  - expect: {iommu: iommu0, page_requests: 3, page_responses: [{dev: dev0, pasid: 1, grpid: 7, code: SUCCESS}, {grpid: 8, code: INVALID}, {pasid: 9, code: INVALID}]}",
        "  - iommu_report_device_fault: {dev: dev0, flags: [IOMMU_FAULT_PAGE_REQUEST_PASID_VALID], pasid: 1, grpid: 3, perm: IOMMU_FAULT_PERM_READ, addr: 0x40000000}",
        "  - iopf_queue_discard_partial: {queue: iommu0}",
        "  - iopf_queue_discard_partial: {queue: null}",
        "    error: EINVAL",
        "  - iopf_queue_alloc: {name: extra}",
        "    as: q2",
        "  - iopf_queue_add_device: {queue: q2, dev: dev0}",
        "    error: EBUSY",
        "  - iopf_queue_free: {queue: q2}",
        "  - iommu_sva_unbind_device: {handle: b1}",
        "  - expect: {invariants: clean}",
      ].join("\n"),
    );
  });

  it("reserved regions of a device and of its group: {start, end, type, prot} with hex addresses", () => {
    const text = [
      "machine: default",
      "steps:",
      "  - iommu_get_resv_regions: {dev: gpu0}",
      "    returns: [{start: 0xa0000000, end: 0xa00fffff, type: direct, prot: 3}]",
      "  - iommu_get_group_resv_regions: {group: gpu0}",
      "    returns: [{start: 0xa0000000, end: 0xa00fffff, type: direct, prot: 3}]",
      "  - iommu_get_resv_regions: {dev: nic0}",
      "    returns: []",
    ].join("\n");
    for (const driver of ["riscv", "mock"]) expectPass(text, driver);
    const region = { start: "0xa0000000", end: "0xa00fffff", type: "direct", prot: 3 };
    expect(scenarioResultJSON(run(text, "riscv"))).toMatchObject({
      steps: [{ result: [region] }, { result: [region] }, { result: [] }],
    });
  });

  it("phys_store writes the value's low size bytes little-endian (default 8)", () => {
    expectPass(
      [
        "machine: default",
        "steps:",
        "  - __get_free_pages: {}",
        "    as: page",
        "  - phys_write: {addr: page, data: {fill: 0xee, len: 12}}",
        "  - phys_store: {addr: page, value: 0x1122334455667788, size: 2}",
        "  - phys_read: {addr: page, len: 3}",
        "    returns: [0x88, 0x77, 0xee]",
        "  - phys_store: {addr: page + 2, value: 0x1122334455667788}",
        "  - phys_read: {addr: page, len: 12}",
        "    returns: [0x88, 0x77, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xee, 0xee]",
      ].join("\n"),
    );
  });

  it("scatter-gather tables: fields, segment counts, and entries past the table", () => {
    expect(
      errorsOf(
        [
          "machine: default",
          "steps:",
          "  - sg_alloc_table: {nents: 0}",
          "  - sg_alloc_table: {nents: 2}",
          "    as: sgt",
          "  - dma_map_sg: {dev: acc0, sg: sgt, nents: sgt.nentz, dir: DMA_TO_DEVICE}",
        ].join("\n"),
      ),
    ).toEqual([
      "v.yaml:3:29: steps[0].sg_alloc_table.nents: expected an entry count, got the number 0",
      'v.yaml:6:45: steps[2].dma_map_sg.nents: a scatter-gather table has no field "nentz" (did you mean "nents"?); fields: nents, orig_nents',
    ]);
    const steps = [
      "machine: default",
      "drivers: [riscv]",
      "steps:",
      "  - dma_set_mask_and_coherent: {dev: acc0, mask: 0xffffffffffffffff}",
      "  - __get_free_pages: {order: 1}",
      "    as: buf",
      "  - sg_alloc_table: {nents: 2}",
      "    as: sgt",
      "  - sg_set_buf: {sgt: sgt, i: 0, buf: buf, buflen: 0x1000}",
      "  - sg_set_buf: {sgt: sgt, i: 1, buf: buf + 0x1000, buflen: 0x1000}",
      "  - dma_map_sg: {dev: acc0, sg: sgt, nents: sgt.orig_nents, dir: DMA_TO_DEVICE}",
      "    returns: 1",
      "  - dma_unmap_sg: {dev: acc0, sg: sgt, nents: sgt.orig_nents, dir: DMA_TO_DEVICE}",
      "  - dma_map_sgtable: {dev: acc0, sgt: sgt, dir: DMA_TO_DEVICE}",
      "  - sg_dma_len: {sgt: sgt, i: sgt.nents - 1}",
      "    returns: 0x2000",
      "  - sg_set_buf: {sgt: sgt, i: 2, buf: buf, buflen: 1}",
    ];
    const r = run(steps.join("\n"));
    expect(r.steps.map((s) => s.status)).toEqual([...Array(9).fill("pass"), "fail"]);
    expect(formatScenarioResult(r)).toContain("sg_set_buf: entry 2 is past the table's 2 entries");
  });

  it("pci_resource_start: a PCI function's BAR as programmed; not for platform devices", () => {
    const r = run(
      [
        "machine: default",
        "steps:",
        "  - pci_resource_start: {dev: legacy0}",
        "    as: bar",
        "  - pci_resource_start: {dev: legacy0, bar: 0}",
        "    returns: $bar",
      ].join("\n"),
      "riscv",
    );
    if (r.status !== "pass") expect.fail(formatScenarioResult(r));
    const view = scenarioResultJSON(r) as { steps: { result?: string }[] };
    expect(view.steps[0]?.result).toMatch(/^0x[0-9a-f]+$/);
    expect(view.steps[0]?.result).not.toBe("0x0");
    const plat = run(
      ["machine: platform-mock", "steps:", "  - pci_resource_start: {dev: plat0}"].join("\n"),
    );
    expect(plat.status).toBe("fail");
    expect(formatScenarioResult(plat)).toContain("pci_resource_start: plat0 is not a PCI device");
  });
});
