// Model-based tests: random command sequences run against the real store and
// against the model (core's pure decision functions) side by side; every
// answer and every stored record must agree. Client-clock stores move the
// injected clock; server-clock stores keep leases long, drop absolute times
// from the comparison and run fewer, shorter sequences.
import { relative } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decideClaim,
  decideFinish,
  IdemError,
  isExpired,
  isSweepable,
  storageName,
  type ClaimInput,
  type ClaimOutcome,
  type DedupOn,
  type FinishOp,
  type IdempotencyStore,
  type IdemRecord,
  type JsonValue,
  type Labels,
  type Lease,
  type Status,
  PROCESS_HOLDER,
} from '@idem/core/adapter';
import type { Suite } from '../context.js';
import { TestClock } from '../testing.js';

interface Model {
  client: boolean;
  nativeExpiry: boolean;
  skew: number;
  retentionMs: number;
  dedupOn: DedupOn;
  now(): number;
  /** By key: what the model says is stored, past retention included. */
  records: Map<string, IdemRecord>;
  /** Every lease handed out, model's and store's side by side; stale ones stay, to be tried again. */
  leases: Array<{ model: Lease; real: Lease }>;
  /**
   * By key: model fence → the store's fence. Only order is specified, not
   * values (Valkey starts a key's fences at its clock), so fences are
   * compared through this map, and each new one must exceed the last.
   */
  fences: Map<string, Map<number, number>>;
}
interface Real {
  store: IdempotencyStore;
  clock: TestClock;
}
type Cmd = fc.AsyncCommand<Model, Real>;

const KEYS = ['k1', 'k2', 'K1'];
const TIMES = ['claimedAt', 'leaseExpiresAt', 'completedAt', 'expiresAt'] as const;

/** A record as compared: fence translated to the store's; absolute times dropped on a server clock. */
function view(m: Model, key: string, record: IdemRecord | undefined, real: boolean): Record<string, unknown> | undefined {
  if (record === undefined) return undefined;
  const out: Record<string, unknown> = { ...record };
  if (!real) {
    const fence = m.fences.get(key)?.get(record.fence);
    if (fence === undefined) throw new Error(`model: no store fence known for model fence ${record.fence} of ${key}`);
    out.fence = fence;
  }
  if (!m.client) for (const t of TIMES) if (t in out) out[t] = 'time';
  return out;
}

const live = (m: Model, key: string) => {
  const r = m.records.get(key);
  return r !== undefined && !isExpired(r, m.now()) ? r : undefined;
};

async function settle<T>(p: Promise<T>): Promise<{ ok: T } | { error: unknown }> {
  return p.then(
    (ok) => ({ ok }),
    (error: unknown) => ({ error }),
  );
}

/** Either both raised the same IdemError code, or neither raised. Returns true when both raised. */
function sameFailure(want: unknown, got: { ok: unknown } | { error: unknown }): boolean {
  if (want instanceof IdemError) {
    if (!('error' in got)) throw new Error(`model raised ${want.code}, the store answered ${JSON.stringify(got.ok)}`);
    expect(got.error).toBeInstanceOf(IdemError);
    expect((got.error as IdemError).code).toBe(want.code);
    return true;
  }
  if (want !== undefined) throw want; // a bug in the model's own use
  if ('error' in got) throw got.error;
  return false;
}

async function checkKey(m: Model, r: Real, key: string): Promise<void> {
  expect(view(m, key, await r.store.get(key), true), `stored record of ${key}`).toEqual(view(m, key, live(m, key), false));
}

class Claim implements Cmd {
  constructor(
    readonly key: string,
    readonly runId: string,
    readonly leaseMs: number,
    readonly force: boolean,
    readonly fingerprint: string | undefined,
    readonly dedupOn: DedupOn | undefined,
    readonly labels: Labels | undefined,
    readonly program: string | undefined,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const { key } = this;
    const current = m.records.get(key);
    const input: ClaimInput = {
      key,
      recordKey: key,
      name: storageName(key),
      runId: this.runId,
      leaseMs: this.leaseMs,
      force: this.force,
      dedupOn: this.dedupOn ?? m.dedupOn,
      // Who claims: this process, as the store writes it.
      holder: this.program !== undefined ? { ...PROCESS_HOLDER, program: this.program } : PROCESS_HOLDER,
      ...(this.fingerprint !== undefined ? { fingerprint: this.fingerprint } : {}),
      ...(this.labels !== undefined ? { labels: this.labels } : {}),
    };
    let step: ReturnType<typeof decideClaim> | undefined;
    let raised: unknown;
    try {
      step = decideClaim(current, input, m.now(), m.skew);
    } catch (error) {
      raised = error;
    }
    const got = await settle(
      r.store.claim(key, {
        runId: this.runId,
        leaseMs: this.leaseMs,
        force: this.force,
        ...(this.fingerprint !== undefined ? { fingerprint: this.fingerprint } : {}),
        ...(this.dedupOn !== undefined ? { dedupOn: this.dedupOn } : {}),
        ...(this.labels !== undefined ? { labels: this.labels } : {}),
        ...(this.program !== undefined ? { program: this.program } : {}),
      }),
    );
    if (sameFailure(raised, got)) return;
    const want = step!.value;
    const real = (got as { ok: ClaimOutcome }).ok;
    expect(real.outcome).toBe(want.outcome);
    if (step!.write !== undefined) {
      // A new record: the store's fence must exceed every fence the key had (unless it had no trace left).
      if (current === undefined || !m.fences.has(key)) m.fences.set(key, new Map());
      const fences = m.fences.get(key)!;
      const lease = (real as { lease: Lease }).lease;
      const before = Math.max(0, ...fences.values());
      expect(lease.fence, 'fence of a new claim').toBeGreaterThan(before);
      fences.set(step!.write.fence, lease.fence);
      m.records.set(key, step!.write);
    }
    if (want.outcome === 'acquired' || want.outcome === 'adopted') {
      const lease = (real as typeof want).lease;
      expect(view(m, key, lease.record, true)).toEqual(view(m, key, want.lease.record, false));
      expect(lease.runId).toBe(want.lease.runId);
      expect(lease.fence).toBe(m.fences.get(key)!.get(want.lease.fence));
      if (m.client) expect(lease.leaseExpiresAt).toBe(want.lease.leaseExpiresAt);
      expect(view(m, key, (real as { previous?: IdemRecord }).previous, true)).toEqual(view(m, key, want.previous, false));
      m.leases.push({ model: want.lease, real: lease });
    } else {
      expect(view(m, key, (real as typeof want).record, true)).toEqual(view(m, key, want.record, false));
    }
    await checkKey(m, r, key);
  }
  toString = () =>
    `claim(${JSON.stringify(this.key)}, ${this.runId}, ${this.leaseMs}ms${this.force ? ', force' : ''}${this.fingerprint ? `, fp ${this.fingerprint}` : ''}${this.dedupOn ? `, ${this.dedupOn}` : ''}${this.labels ? `, labels ${JSON.stringify(this.labels)}` : ''}${this.program ? `, program ${this.program}` : ''})`;
}

class Finish implements Cmd {
  constructor(
    readonly index: number,
    readonly op: FinishOp,
  ) {}
  check = (m: Readonly<Model>) => m.leases.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    const pair = m.leases[this.index % m.leases.length]!;
    const key = pair.model.key;
    const current = m.records.get(key);
    // A lease from before its key was deleted or swept, met by a new claim with the same runId that
    // the model numbered with the same fence: a store may start fences again after forgetting (then
    // this lease still matches) or continue them (then it is stale, LEASE_LOST); §6 of the spec
    // allows both. The store's own fences say which one it did.
    const restarted =
      current !== undefined &&
      current.fence === pair.model.fence &&
      current.runId === pair.model.runId &&
      m.fences.get(key)?.get(current.fence) !== pair.real.fence;
    const lease: Lease = restarted ? { ...pair.model, fence: -1 } : pair.model;
    let step: ReturnType<typeof decideFinish> | undefined;
    let raised: unknown;
    try {
      // The store applies its own retention to complete and fail; the model does the same.
      const op: FinishOp = this.op.op === 'complete' || this.op.op === 'fail' ? { ...this.op, retentionMs: m.retentionMs } : this.op;
      step = decideFinish(current, lease, op, m.now());
    } catch (error) {
      raised = error;
    }
    const op = this.op;
    const got = await settle<unknown>(
      op.op === 'complete'
        ? r.store.complete(pair.real, op.result === undefined ? {} : { result: op.result })
        : op.op === 'fail'
          ? r.store.fail(pair.real, op.error === undefined ? {} : { error: op.error })
          : op.op === 'renew'
            ? r.store.renew(pair.real, op.leaseMs)
            : r.store.release(pair.real),
    );
    if (!sameFailure(raised, got)) {
      const real = (got as { ok: unknown }).ok;
      if (step!.write !== undefined) m.records.set(key, step!.write);
      if (op.op === 'complete' || op.op === 'fail') expect(view(m, key, real as IdemRecord, true)).toEqual(view(m, key, step!.value.record, false));
      if (op.op === 'renew') {
        const lease = real as Lease;
        expect(view(m, key, lease.record, true)).toEqual(view(m, key, step!.value.lease!.record, false));
        if (m.client) expect(lease.leaseExpiresAt).toBe(step!.value.lease!.leaseExpiresAt);
        m.leases.push({ model: step!.value.lease!, real: lease });
      }
    }
    await checkKey(m, r, key);
  }
  toString = () =>
    `${this.op.op}(lease #${this.index}${'result' in this.op ? `, ${JSON.stringify(this.op.result)}` : ''}${this.op.op === 'renew' ? `, ${this.op.leaseMs}ms` : ''})`;
}

class Advance implements Cmd {
  constructor(readonly ms: number) {}
  check = (m: Readonly<Model>) => m.client;
  async run(m: Model, r: Real): Promise<void> {
    r.clock.advance(this.ms);
    for (const key of KEYS) await checkKey(m, r, key);
  }
  toString = () => `advance(${this.ms}ms)`;
}

class Sweep implements Cmd {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const counts = await r.store.sweep();
    const want = { expired: 0, deadLeases: 0 };
    if (!m.nativeExpiry) {
      const now = m.now();
      for (const [key, record] of m.records) {
        if (!isSweepable(record, now)) continue;
        m.records.delete(key);
        if (isExpired(record, now)) want.expired++;
        else want.deadLeases++;
      }
    }
    expect(counts).toEqual(want);
    for (const key of KEYS) await checkKey(m, r, key);
  }
  toString = () => 'sweep()';
}

class List implements Cmd {
  constructor(readonly status: Status | undefined) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const seen = new Set<string>();
    let cursor: string | undefined;
    for (let page = 0; ; page++) {
      if (page > 20) throw new Error('list did not end within 20 pages of 2 over 3 keys');
      const got = await r.store.list({ limit: 2, ...(this.status ? { status: this.status } : {}), ...(cursor !== undefined ? { cursor } : {}) });
      for (const record of got.records) {
        seen.add(record.key);
        expect(view(m, record.key, record, true)).toEqual(view(m, record.key, live(m, record.key), false));
      }
      cursor = got.cursor;
      if (cursor === undefined) break;
    }
    const want = KEYS.filter((k) => live(m, k) !== undefined && (this.status === undefined || live(m, k)!.status === this.status));
    expect([...seen].sort()).toEqual(want.sort());
  }
  toString = () => `list(${this.status ?? ''})`;
}

class Delete implements Cmd {
  constructor(readonly key: string) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const removed = await r.store.delete(this.key);
    // A record past retention may be gone already (native expiry) or still there: either answer.
    if (live(m, this.key) !== undefined) expect(removed).toBe(true);
    else if (!m.records.has(this.key)) expect(removed).toBe(false);
    m.records.delete(this.key);
    await checkKey(m, r, this.key);
  }
  toString = () => `delete(${JSON.stringify(this.key)})`;
}

export function modelTests(s: Suite): void {
  const settings = s.opts.model;
  describe.skipIf(settings === false)('model-based: random command sequences against core decisions', () => {
    it('every answer and every stored record agree with the model', async () => {
      const probe = await s.open();
      const client = probe.capabilities.clock === 'client';
      const nativeExpiry = probe.capabilities.nativeExpiry;
      const envRuns = Number(process.env.IDEM_MODEL_RUNS);
      const { runs, steps } = settings || {};
      const numRuns = Number.isSafeInteger(envRuns) && envRuns > 0 ? envRuns : (runs ?? (client ? 25 : 6));
      const maxCommands = steps ?? (client ? 30 : 15);
      const seed = process.env.IDEM_MODEL_SEED !== undefined ? Number(process.env.IDEM_MODEL_SEED) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
      const path = process.env.IDEM_MODEL_PATH;
      const replayPath = process.env.IDEM_MODEL_REPLAY;
      // Server clocks cannot be moved: leases that outlive the run, retention too.
      const leases = client ? [1_000, 5_000, 60_000] : [60_000];
      const retentionMs = client ? 20_000 : 3_600_000;
      const json: fc.Arbitrary<JsonValue | undefined> = fc.constantFrom(undefined, 0, false, '', null, 'r', { n: 1 }, [1, 'a']);
      const commands = [
        fc
          .tuple(
            fc.constantFrom(...KEYS),
            fc.constantFrom('a', 'b', 'c'),
            fc.constantFrom(...leases),
            fc.constantFrom(false, false, false, true),
            fc.constantFrom(undefined, undefined, 'fp1', 'fp2'),
            fc.constantFrom<DedupOn | undefined>(undefined, undefined, 'success', 'any'),
            fc.constantFrom<Labels | undefined>(undefined, undefined, { team: 'a' }, { env: 'x/y', team: 'b' }),
            fc.constantFrom(undefined, 'prog'),
          )
          .map(([k, runId, ms, force, fp, dedup, labels, program]) => new Claim(k, runId, ms, force, fp, dedup, labels, program)),
        fc
          .tuple(
            fc.nat(20),
            fc.oneof(
              // retentionMs 0 is a placeholder: the store applies its own, and so does the model.
              json.map((result): FinishOp => (result === undefined ? { op: 'complete', retentionMs: 0 } : { op: 'complete', retentionMs: 0, result })),
              fc.constantFrom<FinishOp>({ op: 'fail', retentionMs: 0 }, { op: 'fail', retentionMs: 0, error: 'boom' }),
              fc.constantFrom(...leases).map((leaseMs): FinishOp => ({ op: 'renew', leaseMs })),
              fc.constant<FinishOp>({ op: 'release' }),
            ),
          )
          .map(([i, op]) => new Finish(i, op)),
        fc.constantFrom(1, 999, 1_000, 4_000, 5_000, 20_000, 60_000).map((ms) => new Advance(ms)),
        fc.constant(new Sweep()),
        fc.constantFrom<Status | undefined>(undefined, 'in_flight', 'succeeded', 'failed').map((st) => new List(st)),
        fc.constantFrom(...KEYS).map((k) => new Delete(k)),
      ];
      const property = fc.asyncProperty(
        fc.constantFrom(0, client ? 2_000 : 0),
        fc.constantFrom<DedupOn>('success', 'any'),
        fc.commands(commands, { maxCommands, ...(replayPath ? { replayPath } : {}) }),
        async (skew, dedupOn, cmds) => {
          const clock = new TestClock();
          const store = await s.open({ clock: clock.now, retentionMs, dedupOn, ...(skew ? { clockSkewMs: skew } : {}) });
          const model: Model = {
            client,
            nativeExpiry,
            skew,
            retentionMs,
            dedupOn,
            now: client ? clock.now : Date.now,
            records: new Map(),
            leases: [],
            fences: new Map(),
          };
          await fc.asyncModelRun(() => ({ model, real: { store, clock } }), cmds);
        },
      );
      try {
        await fc.assert(property, { seed, numRuns, includeErrorInReport: true, ...(path ? { path, endOnFailure: true } : {}) });
      } catch (error) {
        const text = error instanceof Error ? error.message : String(error);
        const found = /seed: (-?\d+), path: "([^"]*)"/.exec(text);
        const replay = /replayPath="([^"]*)"/.exec(text);
        // The whole command, so that the counterexample is one paste away (the seed alone replays every run before it too).
        const file = expect.getState().testPath;
        const pathVar = found ? ` IDEM_MODEL_PATH=${found[2]}` : '';
        const replayVar = replay ? ` IDEM_MODEL_REPLAY='${replay[1]}'` : '';
        const env = `IDEM_MODEL_SEED=${found?.[1] ?? seed}${pathVar}${replayVar}`;
        throw new Error(
          `model-based test failed on ${s.opts.name} (seed ${found?.[1] ?? seed}); replay it with\n` +
            `  ${env} vitest run ${file ? relative(process.cwd(), file) : '<this test file>'} -t 'agree with the model'\n${text}`,
          { cause: error },
        );
      }
    }, 600_000);
  });
}
