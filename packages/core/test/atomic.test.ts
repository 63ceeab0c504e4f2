// casUpdate against an in-memory compare-and-swap store with injected faults.
// A mock on purpose: the faults it injects (a write that lands but whose reply
// is lost, a rival write between our read and our write) happen at an exact
// instant that a real server cannot be made to hit on demand.
import { describe, expect, it } from 'vitest';
import {
  BackendUnavailableError,
  casUpdate,
  claimWith,
  CONFLICT,
  finishWith,
  parseRecord,
  type CasPrimitives,
  type ClaimInput,
  type Conflict,
  type DriverContext,
  type Lease,
} from '../src/adapter.js';

type Fault = 'lost-reply' | 'not-landed' | 'rival-write' | undefined;

/** Versions count writes; `faults` is consumed one per conditional write. */
class FaultyCas implements CasPrimitives {
  readonly objects = new Map<string, { body: string; version: string }>();
  readonly calls: string[] = [];
  faults: Fault[] = [];
  private versions = 0;

  async read(name: string) {
    this.calls.push('read');
    const o = this.objects.get(name);
    return o && { record: parseRecord(name, o.body), version: o.version };
  }
  create = (name: string, body: string) => this.write('create', name, body, undefined);
  replace = (name: string, body: string, version: string) => this.write('replace', name, body, version);

  private async write(kind: string, name: string, body: string, expected: string | undefined): Promise<string | Conflict> {
    this.calls.push(kind);
    const fault = this.faults.shift();
    if (fault === 'not-landed') throw new BackendUnavailableError('timed out before the server got it');
    if (fault === 'rival-write') this.put(name, this.objects.get(name)?.body ?? body.replace('"runId":"', '"runId":"rival-'));
    const current = this.objects.get(name);
    if (current?.version !== expected) return CONFLICT;
    const version = this.put(name, body);
    if (fault === 'lost-reply') throw new BackendUnavailableError('connection reset after the write landed');
    return version;
  }
  private put(name: string, body: string): string {
    const version = `v${++this.versions}`;
    this.objects.set(name, { body, version });
    return version;
  }
}

const ctx: DriverContext = { now: () => 1_000_000, clockSkewMs: 0 };
const input = (runId = 'me'): ClaimInput => ({ key: 'k', recordKey: 'k', name: 'n', runId, leaseMs: 1_000, force: false, dedupOn: 'success' });
const leaseFrom = (o: Awaited<ReturnType<typeof claimWith>>): Lease => {
  if (o.outcome !== 'acquired' && o.outcome !== 'adopted') throw new Error(`expected a lease, got ${o.outcome}`);
  return o.lease;
};

describe('casUpdate', () => {
  it('an uncontended claim is one create on the guess "absent"; a finish one replace on the lease\'s version', async () => {
    const cas = new FaultyCas();
    const update = casUpdate(cas);
    const lease = leaseFrom(await claimWith(update, input(), ctx));
    expect(lease.version).toBe('v1');
    expect(cas.calls).toEqual(['create']);
    await finishWith(update, lease, { op: 'complete', retentionMs: 10_000, result: 1 }, ctx);
    expect(cas.calls).toEqual(['create', 'replace']);
    expect(JSON.parse(cas.objects.get('n')!.body)).toMatchObject({ status: 'succeeded', result: 1 });
  });

  it('a wrong guess is never trusted: a claim that finds a record reads the truth and decides on it', async () => {
    const cas = new FaultyCas();
    const update = casUpdate(cas);
    await claimWith(update, input('owner'), ctx);
    cas.calls.length = 0;
    const dup = await claimWith(update, input('second'), ctx);
    expect(dup.outcome).toBe('in_flight');
    expect(cas.calls).toEqual(['create', 'read']);
  });

  it('a decision that throws on a guess (stale lease record) is retaken on the truth', async () => {
    const cas = new FaultyCas();
    const update = casUpdate(cas);
    const lease = leaseFrom(await claimWith(update, input(), ctx));
    // Our lease still carries version v1, but the record changed since (a renewal by a retry we lost track of).
    await finishWith(update, { ...lease, version: 'stale' }, { op: 'renew', leaseMs: 5_000 }, ctx);
    expect(cas.calls).toEqual(['create', 'replace', 'read', 'replace']);
  });

  it('an ambiguous write that landed is recognised on read-back by its exact body', async () => {
    const cas = new FaultyCas();
    cas.faults = ['lost-reply'];
    const update = casUpdate(cas);
    const got = await claimWith(update, input(), ctx);
    expect(got.outcome).toBe('acquired');
    expect(cas.calls).toEqual(['create', 'read']);
    expect(leaseFrom(got).version).toBe('v1');
  });

  it('an ambiguous write that did not land is decided again on what is there', async () => {
    const cas = new FaultyCas();
    cas.faults = ['not-landed'];
    const got = await claimWith(casUpdate(cas), input(), ctx);
    expect(got.outcome).toBe('acquired');
    expect(cas.calls).toEqual(['create', 'read', 'create']);
    expect(leaseFrom(got).fence).toBe(1);
  });

  it('a rival write between our read and our write is a conflict: re-read, decide again, and lose fairly', async () => {
    const cas = new FaultyCas();
    cas.faults = ['rival-write'];
    const got = await claimWith(casUpdate(cas), input(), ctx);
    expect(got).toMatchObject({ outcome: 'in_flight', record: { runId: 'rival-me' } });
    expect(cas.calls).toEqual(['create', 'read']);
  });

  it('a finish losing its replace to a rival renewal retries on the new version', async () => {
    const cas = new FaultyCas();
    const update = casUpdate(cas);
    const lease = leaseFrom(await claimWith(update, input(), ctx));
    cas.faults = ['rival-write'];
    const done = await finishWith(update, lease, { op: 'complete', retentionMs: 10_000 }, ctx);
    expect(done.record?.status).toBe('succeeded');
    expect(cas.calls).toEqual(['create', 'replace', 'read', 'replace']);
  });

  it('gives up with BACKEND_UNAVAILABLE after 32 conflicting writes, and never reports a false success', async () => {
    const cas = new FaultyCas();
    const update = casUpdate(cas);
    const lease = leaseFrom(await claimWith(update, input(), ctx));
    cas.faults = Array(40).fill('rival-write');
    const error = await finishWith(update, lease, { op: 'complete', retentionMs: 10_000 }, ctx).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as BackendUnavailableError).retryable).toBe(true);
    expect(cas.calls.filter((c) => c === 'replace')).toHaveLength(32);
    expect(JSON.parse(cas.objects.get('n')!.body).status).toBe('in_flight');
  });
});
