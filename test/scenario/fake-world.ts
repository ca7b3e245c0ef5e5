// A tiny fake "kernel" for testing the scenario engine on its own: devices in groups, paging
// domains, an ownership counter, a WARN, an invariant and a trace event. Nothing here models
// Linux faithfully; it only gives the parser, validator and runner something to drive.

import { createContext, type SimContext } from "../../src/base/context.js";
import { type Json, jsonValue } from "../../src/base/json.js";
import { err, OK, ok } from "../../src/base/result.js";
import type { Diagnostics } from "../../src/machine/input/diagnostics.js";
import type { InputNode } from "../../src/machine/input/node.js";
import { listOf, name } from "../../src/machine/input/schema.js";
import type { MachinePlan, ScenarioHost, ScenarioMachine } from "../../src/scenario/host.js";
import {
  BOOL,
  enumOf,
  flags,
  int,
  JSON_VALUE,
  object,
  param,
  returnsResult,
  returnsValue,
  U64,
  VOID,
  type Vocabulary,
} from "../../src/scenario/vocabulary/types.js";

export class FakeDomain {
  constructor(
    readonly id: number,
    readonly type: string,
  ) {}
  toJSON(): Json {
    return { id: this.id, type: this.type, pgsize: "0x1000" };
  }
}

export class FakeGroup {
  domain: FakeDomain;
  ownerCnt = 0;
  owner: object | null = null;
  readonly devices: FakeDevice[] = [];
  constructor(
    readonly id: number,
    readonly defaultDomain: FakeDomain,
  ) {
    this.domain = defaultDomain;
  }
  toJSON(): Json {
    return {
      id: this.id,
      devices: this.devices.map((d) => d.name),
      domain: this.domain.id,
      owner_cnt: this.ownerCnt,
    };
  }
}

export class FakeDevice {
  constructor(
    readonly name: string,
    readonly group: FakeGroup,
  ) {}
  toJSON(): Json {
    return { name: this.name, group: this.group.id };
  }
}

export class FakeHandle {
  constructor(readonly label: string) {}
  toJSON(): Json {
    return { handle: this.label };
  }
}

export class FakeOwner {
  constructor(readonly name: string) {}
  toJSON(): Json {
    return this.name;
  }
}

export class FakeMachine implements ScenarioMachine {
  readonly ctx: SimContext;
  readonly devices = new Map<string, FakeDevice>();
  readonly groups: FakeGroup[] = [];
  #nextDomain = 0;
  /** A test switch: makes checkInvariants report a violation. */
  broken = false;
  readonly bootLog: string[] = [];

  constructor(groups: readonly (readonly string[])[], seed: number) {
    this.ctx = createContext({ seed });
    for (const members of groups) {
      const g = new FakeGroup(this.groups.length, this.newDomain("DMA"));
      this.groups.push(g);
      for (const n of members) {
        const dev = new FakeDevice(n, g);
        g.devices.push(dev);
        this.devices.set(n, dev);
      }
    }
  }

  newDomain(type: string): FakeDomain {
    return new FakeDomain(this.#nextDomain++, type);
  }

  checkInvariants(): readonly string[] {
    const out: string[] = [];
    for (const g of this.groups) {
      if (g.ownerCnt === 0 && g.owner !== null)
        out.push(`group ${g.id}: owner set with owner_cnt 0`);
    }
    if (this.broken) out.push("fake invariant broken");
    return out;
  }

  toJSON(): Json {
    return { groups: this.groups.map((g) => g.toJSON()), devices: [...this.devices.keys()] };
  }
}

export interface FakePlan extends MachinePlan {
  readonly groups: readonly (readonly string[])[];
}

const devArg = param(object("device"));

export const fakeVocabulary: Vocabulary<FakeMachine> = {
  kinds: {
    device: { doc: "a device", lookup: (m, n) => m.devices.get(n) },
    group: { doc: "a group", via: { kind: "device", map: (_m, d) => (d as FakeDevice).group } },
    domain: { doc: "a domain" },
    handle: { doc: "a handle", create: (_m, n) => new FakeHandle(n) },
    owner: { doc: "an owner cookie", create: (_m, n) => new FakeOwner(n) },
  },
  functions: [
    {
      name: "fake_domain_alloc",
      area: "domains",
      params: { dev: devArg, type: param(enumOf(["DMA", "UNMANAGED"]), { optional: true }) },
      returns: returnsResult(object("domain")),
      ts: "fake.domainAlloc(dev)",
      doc: "allocates a domain",
      call: (m, a) => {
        m.ctx.trace.emit("iommu_core:domain_alloc", "core", { domain: 0, type: "x", device: "y" });
        return ok(m.newDomain((a.type as string | undefined) ?? "UNMANAGED"));
      },
    },
    {
      name: "fake_attach",
      area: "attach",
      params: { domain: param(object("domain")), dev: devArg },
      returns: returnsResult("void"),
      ts: "fake.attach(domain, dev)",
      doc: "attaches; EBUSY when the group is on a non-default domain",
      call: (_m, a) => {
        const g = (a.dev as FakeDevice).group;
        if (g.domain !== g.defaultDomain) return err("EBUSY");
        g.domain = a.domain as FakeDomain;
        return OK;
      },
    },
    {
      name: "fake_detach",
      area: "attach",
      params: { domain: param(object("domain")), dev: devArg },
      returns: VOID,
      ts: "fake.detach(domain, dev)",
      doc: "detaches; WARNs if the domain is not the current one",
      call: (m, a) => {
        const g = (a.dev as FakeDevice).group;
        if (m.ctx.warnings.on(g.domain !== a.domain, "fake_detach", "not attached")) return;
        g.domain = g.defaultDomain;
      },
    },
    {
      name: "fake_get_domain",
      area: "attach",
      params: { dev: devArg },
      returns: returnsValue(object("domain")),
      ts: "fake.getDomain(dev)",
      doc: "current domain",
      call: (_m, a) => (a.dev as FakeDevice).group.domain,
    },
    {
      name: "fake_claim",
      area: "ownership",
      params: { group: param(object("group")), owner: param(object("owner"), { nullable: true }) },
      returns: returnsResult("void"),
      ts: "fake.claim(group, owner)",
      doc: "claims",
      call: (_m, a) => {
        const g = a.group as FakeGroup;
        if (a.owner === null) return err("EINVAL");
        if (g.ownerCnt > 0) return err("EPERM");
        g.ownerCnt = 1;
        g.owner = a.owner as object;
        return OK;
      },
    },
    {
      name: "fake_corrupt",
      area: "ownership",
      params: {},
      returns: VOID,
      ts: "fake.corrupt()",
      doc: "breaks an invariant",
      call: (m) => {
        m.broken = true;
      },
    },
    {
      name: "fake_use_handle",
      area: "pasid",
      params: {
        handle: param(object("handle")),
        pasid: param(int(0, 1 << 20)),
        addr: param(U64, { optional: true }),
      },
      returns: returnsValue(object("handle")),
      ts: "fake.useHandle(handle, pasid)",
      doc: "returns the handle it was given",
      call: (_m, a) => a.handle,
    },
    {
      name: "fake_add",
      area: "misc",
      params: {
        a: param(int(0, 100)),
        b: param(U64),
        f: param(flags({ READ: 1, WRITE: 2 }), { optional: true }),
        on: param(BOOL, { optional: true }),
      },
      returns: returnsValue(U64),
      ts: "fake.add(a, b)",
      doc: "a + b (+ flags)",
      call: (_m, a) =>
        BigInt(a.a as number) + (a.b as bigint) + BigInt((a.f as number | undefined) ?? 0),
    },
    {
      name: "fake_tick",
      area: "machine",
      params: { ns: param(int(0, 1_000_000_000)) },
      returns: VOID,
      ts: "ctx.clock.advance(ns)",
      doc: "advances the clock",
      call: (m, a) => m.ctx.clock.advance(a.ns as number),
    },
    {
      name: "fake_view",
      area: "misc",
      params: { dev: devArg },
      returns: returnsValue(JSON_VALUE),
      ts: "fake.view(dev)",
      doc: "a plain JSON structure holding live objects",
      call: (_m, a) => {
        const d = a.dev as FakeDevice;
        return { group: d.group, domains: [d.group.defaultDomain, d.group.domain], count: 2 };
      },
    },
  ],
  subjects: [
    {
      name: "dev",
      doc: "a device",
      arg: param(object("device")),
      props: {
        domain: {
          type: object("domain"),
          doc: "current domain",
          words: { default: (_m, s) => (s as FakeDevice).group.defaultDomain },
          get: (_m, s) => (s as FakeDevice).group.domain,
        },
      },
    },
    {
      name: "group",
      doc: "a group",
      arg: param(object("group")),
      props: {
        owner_cnt: {
          type: int(0, 1 << 30),
          doc: "owner count",
          get: (_m, s) => (s as FakeGroup).ownerCnt,
        },
        owner: { type: object("owner"), doc: "owner", get: (_m, s) => (s as FakeGroup).owner },
        view: { type: JSON_VALUE, doc: "JSON view", get: (_m, s) => (s as FakeGroup).toJSON() },
      },
    },
    {
      name: "warnings",
      doc: "WARN count",
      self: { type: int(0, 1 << 30), doc: "count", get: (m) => m.ctx.warnings.count },
    },
    {
      name: "machine",
      doc: "machine view",
      self: { type: JSON_VALUE, doc: "view", get: (m) => jsonValue(m.toJSON()) },
    },
  ],
};

/** `machine:` is `two` (groups [a], [b, c]) or `{groups: [[names…], …]}`. */
export const fakeHost: ScenarioHost<FakeMachine, FakePlan> = {
  vocabulary: fakeVocabulary,
  availableDrivers: ["mock"],
  readMachine(node: InputNode, path: string, d: Diagnostics): FakePlan | undefined {
    if (node.kind === "scalar" && node.value === "two") {
      return { groups: [["a"], ["b", "c"]], names: { device: ["a", "b", "c"] }, drivers: ["mock"] };
    }
    if (node.kind === "map" && node.entries[0]?.key === "groups") {
      const groups = listOf(listOf(name()))(node.entries[0].value, `${path}.groups`, d);
      if (!groups) return undefined;
      return { groups, names: { device: groups.flat() }, drivers: ["mock"] };
    }
    d.error(node.loc, path, 'expected "two" or {groups: [...]}');
    return undefined;
  },
  boot(plan: FakePlan, opts: { seed: number; driver?: string }): FakeMachine {
    const m = new FakeMachine(plan.groups, opts.seed);
    if (plan.groups.flat().includes("broken")) m.bootLog.push("device broken failed to probe");
    return m;
  },
};
