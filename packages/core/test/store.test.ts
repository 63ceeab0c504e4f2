// Core's store built from in-memory parts (test/memory.ts) through createStore,
// the path every adapter takes: options, results, leases, fences, listing and sweep.
import { describe, expect, it } from 'vitest';
import { createStore, IdempotencyStore, isIdemError, runOnce, serializeRecord, storageName, type IdemRecord, type StoreOptions } from '../src/adapter.js';
import { PartsBackend } from './parts-backend.js';

async function expectCode(p: Promise<unknown> | (() => unknown), code: string) {
  let error: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    error = e;
  }
  expect(isIdemError(error, code as never), `expected ${code}, got ${String(error)}`).toBe(true);
}

const open = (options: StoreOptions = {}, mode: 'transactional' | 'cas' = 'transactional') => {
  const backend = new PartsBackend();
  return createStore(options, () => backend[mode]()).then((store) => ({ store, backend }));
};

const lease = async (store: IdempotencyStore, key: string, options = {}) => {
  const got = await store.claim(key, options);
  if (got.outcome !== 'acquired' && got.outcome !== 'adopted') throw new Error(`expected a lease, got ${got.outcome}`);
  return got.lease;
};

describe('createStore', () => {
  it('checks options before the adapter opens anything, once', async () => {
    let opened = 0;
    const openIt = () => {
      opened++;
      return new PartsBackend().transactional();
    };
    await expectCode(createStore({ leaseMs: 0 }, openIt), 'INVALID_ARGUMENT');
    await expectCode(createStore({ maxResultBytes: 1.5 }, openIt), 'INVALID_ARGUMENT');
    expect(opened).toBe(0);
    const store = await createStore({ leaseMs: 1000 }, openIt);
    expect(opened).toBe(1);
    expect(store.leaseMs).toBe(1000);
  });

  it('says maxResultBytes is a size, not milliseconds', async () => {
    await expect(createStore({ maxResultBytes: 0 }, () => new PartsBackend().transactional())).rejects.toThrow(/bytes/);
  });

  for (const mode of ['transactional', 'cas'] as const) {
    it(`composes ${mode} parts into a working store`, async () => {
      const { store, backend } = await open({}, mode);
      const l = await lease(store, 'k');
      if (mode === 'cas') expect([backend.calls.create, backend.calls.read]).toEqual([1, undefined]); // one create-if-absent, no read
      expect((await store.claim('k')).outcome).toBe('in_flight');
      expect((await store.complete(l, { result: { ok: [1, 'two'] } })).result).toEqual({ ok: [1, 'two'] });
      expect((await store.claim('k')).outcome).toBe('completed');
      expect(await store.delete('k')).toBe(true);
      expect(await store.delete('k')).toBe(false);
    });
  }

  it('keeps `new IdempotencyStore(driver, options)` working', async () => {
    const { store } = await open();
    const again = new IdempotencyStore(store.driver, { leaseMs: 2000 });
    expect((await again.claim('x')).outcome).toBe('acquired');
  });
});

describe('results that JSON cannot give back exactly are refused before any I/O', () => {
  class Point {
    x = 1;
  }
  // biome-ignore lint/suspicious/noSparseArray: the hole is what this case tests
  const sparse = [1, , 3];
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  const bad: [string, unknown][] = [
    ['NaN', Number.NaN],
    ['Infinity in an object', { a: Infinity }],
    ['-Infinity', -Infinity],
    ['undefined in an array', [undefined]],
    ['a function in an array', [() => 1]],
    ['a symbol in an array', [Symbol('s')]],
    ['Map', new Map([[1, 2]])],
    ['Set', new Set([1])],
    ['an undefined property', { a: undefined }],
    ['-0', -0],
    ['-0 nested', { n: [-0] }],
    ['Date', new Date(0)],
    ['2^53', 2 ** 53],
    ['-(2^53)', -(2 ** 53)],
    ['1e300', 1e300],
    ['class instance', new Point()],
    ['BigInt', 1n],
    ['sparse array', sparse],
    ['symbol key', { [Symbol('k')]: 1 }],
    ['circular', circular],
    ['undefined alone', undefined],
  ];
  it.each(bad.filter(([name]) => name !== 'undefined alone'))('%s', async (_, value) => {
    const { store, backend } = await open();
    const l = await lease(store, 'r');
    const writes = backend.calls.update;
    await expectCode(store.complete(l, { result: value }), 'INVALID_ARGUMENT');
    expect(backend.calls.update).toBe(writes); // nothing reached the backend
    expect((await store.get('r'))?.status).toBe('in_flight');
  });

  it('accepts exact JSON: safe integers, fractions, nested plain data, null-prototype objects', async () => {
    const { store } = await open();
    const good = { n: 2 ** 53 - 1, m: -(2 ** 53 - 1), f: 0.1, z: 0, s: '\u0000é🦄', a: [null, true, [{}]], o: Object.assign(Object.create(null), { k: 1 }) };
    const l = await lease(store, 'ok');
    expect((await store.complete(l, { result: good })).result).toEqual(JSON.parse(JSON.stringify(good)));
  });

  it('runOnce records a run whose value cannot be stored as failed instead of leaving it in flight', async () => {
    const { store } = await open();
    await expectCode(
      runOnce(store, 'nan', () => Number.NaN),
      'INVALID_ARGUMENT',
    );
    expect((await store.get('nan'))?.status).toBe('failed');
  });
});

describe('leases', () => {
  it(`are at least 100 ms (store option, claim, renew, runOnce)`, async () => {
    await expectCode(open({ leaseMs: 99 }), 'INVALID_ARGUMENT');
    const { store } = await open();
    await expectCode(store.claim('k', { leaseMs: 1 }), 'INVALID_ARGUMENT');
    const l = await lease(store, 'k', { leaseMs: 100 });
    await expectCode(store.renew(l, 50), 'INVALID_ARGUMENT');
    await expectCode(
      runOnce(store, 'k2', () => 1, { leaseMs: 10 }),
      'INVALID_ARGUMENT',
    );
  });

  it('a retention shorter than the lease is allowed (it counts from the finish)', async () => {
    const { store } = await open({ leaseMs: 60_000, retentionMs: 1 });
    expect(store.retentionMs).toBe(1);
  });

  it('a 75-day lease is not renewed every millisecond (Node timers stop at 2^31-1 ms)', async () => {
    // Real timers: before the clamp, Node turned the 25-day heartbeat into a 1 ms one.
    const { store } = await open();
    let renewals = 0;
    const renew = store.renew.bind(store);
    store.renew = (l, ms) => {
      renewals++;
      return renew(l, ms);
    };
    const run = await runOnce(store, 'long', () => new Promise((r) => setTimeout(() => r('done'), 300)), { leaseMs: 75 * 86_400_000 });
    expect(run.status).toBe('executed');
    expect(renewals).toBe(0);
  });

  it("a result whose getter throws is INVALID_ARGUMENT, not the getter's error; complete keeps the claim, runOnce records a failure", async () => {
    const { store } = await open();
    const result = {
      get total(): never {
        throw new Error('getter');
      },
    };
    const l = await lease(store, 'getter');
    const refused = await store.complete(l, { result }).catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/\$\.total has a getter that throws Error/) });
    expect((refused as Error).cause).toMatchObject({ message: 'getter' });
    expect(await store.get('getter')).toMatchObject({ status: 'in_flight' });
    await expect(runOnce(store, 'getter-run', async () => result)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // runOnce records the refusal as the run's failure: retryable under dedupOn "success", never left in flight.
    expect(await store.get('getter-run')).toMatchObject({ status: 'failed', error: expect.stringMatching(/^InvalidArgumentError: result \$\.total/) });
  });

  it('an Error whose message getter throws is recorded as a failure, not left in flight', async () => {
    const { store } = await open();
    const hostile = new Error('x');
    Object.defineProperty(hostile, 'message', {
      get() {
        throw new Error('no message for you');
      },
    });
    await expect(runOnce(store, 'hostile', () => Promise.reject(hostile))).rejects.toBe(hostile);
    const record = await store.get('hostile');
    expect(record?.status).toBe('failed');
    expect(record?.error).toMatch(/unprintable/);
    const noString = Object.create(null); // String(noString) throws
    const l = await lease(store, 'null-proto');
    expect(
      (
        await store.fail(l, {
          error: Object.assign(noString, {
            toJSON: () => {
              throw new Error('no');
            },
          }),
        })
      ).status,
    ).toBe('failed');
  });

  it("runOnce's ctx carries what RunContext says and nothing of runOnce's own", async () => {
    const { store } = await open();
    let seen: Record<string, unknown> = {};
    await runOnce(store, 'ctx', (ctx) => {
      const names = new Set<string>([...Object.keys(ctx), ...Object.getOwnPropertyNames(Object.getPrototypeOf(ctx))]);
      names.delete('constructor');
      seen = { names: [...names].sort(), outcome: ctx.outcome, key: ctx.lease.key, aborted: ctx.signal.aborted, previous: ctx.previous };
    });
    expect(seen).toEqual({ names: ['lease', 'outcome', 'previous', 'signal'], outcome: 'acquired', key: 'ctx', aborted: false, previous: undefined });
  });
});

describe('fences', () => {
  it('a record at fence 2^53-1 refuses the next claim before anyone runs, and is kept', async () => {
    const { store, backend } = await open();
    const top: IdemRecord = {
      v: 1,
      key: 'top',
      status: 'failed',
      runId: 'r',
      fence: Number.MAX_SAFE_INTEGER,
      attempt: 3,
      claimedAt: 1,
      completedAt: 2,
      expiresAt: Date.now() + 60_000,
    };
    await backend.transactional().writeRaw!(storageName('top'), serializeRecord(top));
    let ran = false;
    await expectCode(
      runOnce(store, 'top', () => (ran = true)),
      'CORRUPT_RECORD',
    );
    await expectCode(store.claim('top', { force: true }), 'CORRUPT_RECORD');
    expect(ran).toBe(false);
    expect(await store.get('top')).toEqual(top);
  });
});

describe('list and sweep by scanning', () => {
  const seed = async (store: IdempotencyStore, n: number) => {
    for (let i = 0; i < n; i++) await store.complete(await lease(store, `k${i}`), { result: i });
  };

  it('pages through every record once, the cursor being the last name returned', async () => {
    const { store } = await open({}, 'cas');
    await seed(store, 7);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.list({ limit: 3, ...(cursor !== undefined ? { cursor } : {}) });
      seen.push(...page.records.map((r) => r.key));
      if (page.cursor !== undefined) expect(page.cursor).toBe(storageName(page.records.at(-1)!.key));
      cursor = page.cursor;
    } while (cursor !== undefined);
    expect(seen.sort()).toEqual(Array.from({ length: 7 }, (_, i) => `k${i}`).sort());
    await expectCode(store.list({ cursor: 'not-a-cursor' }), 'INVALID_ARGUMENT');
  });

  it('one corrupt record hides no other: the listing names it and goes on', async () => {
    const { store, backend } = await open();
    await seed(store, 5);
    const parts = backend.transactional();
    await parts.writeRaw!(storageName('bad1'), '{"v":1,"key":');
    await parts.writeRaw!(storageName('bad2'), JSON.stringify({ v: 99 }));
    const all = await store.list();
    expect(all.records.map((r) => r.key).sort()).toEqual(['k0', 'k1', 'k2', 'k3', 'k4']);
    expect(all.corrupt?.map((c) => c.name).sort()).toEqual([storageName('bad1'), storageName('bad2')].sort());
    expect(all.corrupt?.find((c) => c.name === storageName('bad2'))?.reason).toMatch(/schema version/);
    // Paged, each corrupt record is named on exactly one page.
    const named: string[] = [];
    const listed: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.list({ limit: 2, ...(cursor !== undefined ? { cursor } : {}) });
      named.push(...(page.corrupt ?? []).map((c) => c.name));
      listed.push(...page.records.map((r) => r.key));
      cursor = page.cursor;
    } while (cursor !== undefined);
    expect(named.sort()).toEqual([storageName('bad1'), storageName('bad2')].sort());
    expect(listed).toHaveLength(5);
  });

  it('skips names that are not storage names', async () => {
    const { store, backend } = await open();
    await seed(store, 2);
    await backend.transactional().writeRaw!('README', 'not ours');
    const page = await store.list();
    expect(page.records).toHaveLength(2);
    expect(page.corrupt).toBeUndefined();
  });

  it('sweep tallies expired records and dead leases, keeps live and corrupt ones', async () => {
    let now = 1_000_000;
    const { store, backend } = await open({ clock: () => now, retentionMs: 1000, leaseMs: 1000 }, 'cas');
    await seed(store, 3); // expire at now + 1000
    await store.claim('dead'); // lease dies at now + 1000
    now += 500;
    await store.claim('live', { leaseMs: 60_000 });
    await backend.cas().writeRaw!(storageName('corrupt'), 'garbage');
    now += 1000;
    expect(await store.sweep()).toEqual({ expired: 3, deadLeases: 1 });
    expect([...backend.objects.keys()].sort()).toEqual([storageName('corrupt'), storageName('live')].sort());
    expect(await store.sweep()).toEqual({ expired: 0, deadLeases: 0 });
  });
});
