import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { InFlightError, KeyReuseError, type IdemRecord, type Lease } from '../src/index.js';
import { buildRunReport, errorCodeOf, EXIT_CODES, exitCodeOfError, RUN_STATUSES, signalExitCode } from '../src/report.js';

const base = { key: 'k', runId: 'r2', store: 'lmdb:///x' };
const record = (over: Partial<IdemRecord>): IdemRecord =>
  ({ v: 1, key: 'k', status: 'succeeded', runId: 'r1', fence: 1, attempt: 1, claimedAt: 0, completedAt: 5, ...over }) as IdemRecord;

describe('the run report (@idem/core/report)', () => {
  it('reports an executed run with how the key was obtained', () => {
    const done = record({ runId: 'r2', fence: 3, attempt: 2 });
    const lease = { key: 'k', name: 'n', runId: 'r2', fence: 3, leaseExpiresAt: 9, record: done } as Lease;
    const report = buildRunReport({
      ...base,
      end: { kind: 'result', result: { status: 'executed', value: undefined, outcome: 'adopted', lease, record: done } },
      timings: { open_ms: 1 },
    });
    expect(report).toEqual({
      schema: 'idem.run/1',
      status: 'succeeded',
      key: 'k',
      run_id: 'r2',
      skipped_by_run_id: null,
      exit_code: 0,
      store: 'lmdb:///x',
      outcome: 'adopted',
      fence: 3,
      attempt: 2,
      previous_status: null,
      signal: null,
      error: null,
      timings: { open_ms: 1, claim_ms: 0, command_ms: 0, finish_ms: 0, total_ms: 0 },
    });
  });

  it('reports skips with the run that holds or finished the key, and the skip exit code', () => {
    const done = buildRunReport({ ...base, end: { kind: 'result', result: { status: 'completed', record: record({}), result: undefined }, skipExitCode: 3 } });
    expect(done).toMatchObject({ status: 'skipped_idempotent', skipped_by_run_id: 'r1', previous_status: 'succeeded', exit_code: 3, outcome: null });
    const busy = record({ status: 'in_flight', leaseExpiresAt: 10 });
    expect(buildRunReport({ ...base, end: { kind: 'result', result: { status: 'in_flight', record: busy } } })).toMatchObject({
      status: 'skipped_in_flight',
      exit_code: 0,
    });
    expect(buildRunReport({ ...base, end: { kind: 'error', error: new InFlightError(busy) } })).toMatchObject({
      status: 'skipped_in_flight',
      skipped_by_run_id: 'r1',
      exit_code: 75,
      error: { code: 'IN_FLIGHT' },
    });
  });

  it('reports failures, cancellations and errors with their exit codes', () => {
    const claim = { outcome: 'acquired' as const, fence: 1, attempt: 1 };
    expect(buildRunReport({ ...base, claim, end: { kind: 'command_failed', exitCode: 3, signal: null } })).toMatchObject({
      status: 'failed',
      exit_code: 3,
      outcome: 'acquired',
    });
    expect(buildRunReport({ ...base, claim, end: { kind: 'command_failed', exitCode: 143, signal: 'SIGTERM', cancelledBy: 'SIGTERM' } })).toMatchObject({
      status: 'cancelled',
      exit_code: 143,
      signal: 'SIGTERM',
    });
    expect(buildRunReport({ ...base, end: { kind: 'cancelled', signal: 'SIGINT' } })).toMatchObject({ status: 'cancelled', exit_code: 130, signal: 'SIGINT' });
    const reuse = buildRunReport({ ...base, end: { kind: 'error', error: new KeyReuseError(record({ fingerprint: 'a' }), 'b') } });
    expect(reuse).toMatchObject({ status: 'error', exit_code: 65, error: { code: 'KEY_REUSE_MISMATCH' } });
    const bug = buildRunReport({ ...base, end: { kind: 'error', error: new Error('two\nlines') } });
    expect(bug).toMatchObject({ status: 'error', exit_code: 70, error: { code: 'INTERNAL', message: 'two lines' } });
    const spawn = Object.assign(new Error('not found'), { code: 'SPAWN_FAILED', exitCode: 126 });
    expect(buildRunReport({ ...base, end: { kind: 'error', error: spawn } })).toMatchObject({ status: 'failed', exit_code: 126 });
    const hostile = {
      get message(): string {
        throw new Error('no');
      },
    };
    Object.setPrototypeOf(hostile, Error.prototype);
    expect(buildRunReport({ ...base, end: { kind: 'error', error: hostile } }).error?.message).toMatch(/unprintable/);
  });

  it('names the vocabulary', () => {
    expect(RUN_STATUSES).toEqual(['succeeded', 'failed', 'skipped_idempotent', 'skipped_in_flight', 'cancelled', 'error']);
    expect(EXIT_CODES).toMatchObject({ USAGE: 64, UNAVAILABLE: 69, INTERNAL: 70, IN_FLIGHT: 75, LEASE_LOST: 76 });
    expect(errorCodeOf({ code: 'ENOSPC' })).toBe('INTERNAL');
    expect(exitCodeOfError({ code: 'BACKEND_UNAVAILABLE' })).toBe(69);
    // Fix the setup, do not retry: EX_CONFIG, apart from the retryable 69.
    for (const code of ['BACKEND_REFUSED', 'UNSAFE_BACKEND', 'ADAPTER_MISSING']) expect(exitCodeOfError({ code }), code).toBe(78);
    expect(signalExitCode('SIGKILL')).toBe(137);
  });

  it('is a light subpath: importing it loads no store, runner or adapter code', () => {
    const hook = `import{registerHooks}from'node:module';registerHooks({load(u,c,n){if(u.includes('/core/'))process.stdout.write(u.split('/').pop()+'\\n');return n(u,c)}})`;
    const r = spawnSync(
      process.execPath,
      ['--import', `data:text/javascript,${encodeURIComponent(hook)}`, '--input-type=module', '-e', "await import('@idem/core/report')"],
      {
        cwd: new URL('..', import.meta.url),
        encoding: 'utf8',
      },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n').filter(Boolean)).toEqual(['report.js']);
  });
});
