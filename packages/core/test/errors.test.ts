// Error checks across two copies of @idem/core (an adapter's next to the app's):
// the built dist is copied to a directory of its own and imported from there.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import * as core from '../src/adapter.js';

const dir = mkdtempSync(join(tmpdir(), 'idem-core-copy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function secondCopy(): Promise<typeof core> {
  cpSync(new URL('../dist', import.meta.url), join(dir, 'dist'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'idem-core-copy', type: 'module' }));
  return (await import(pathToFileURL(join(dir, 'dist', 'adapter.js')).href)) as typeof core;
}

describe('typed errors', () => {
  it('instanceof and isIdemError hold across two copies of @idem/core', async () => {
    const other = await secondCopy();
    expect(other.IdemError).not.toBe(core.IdemError); // really another copy
    const foreign = new other.LeaseLostError('k', undefined);
    expect(foreign).toBeInstanceOf(core.IdemError);
    expect(foreign).toBeInstanceOf(core.LeaseLostError);
    expect(foreign).not.toBeInstanceOf(core.KeyReuseError);
    expect(foreign).toBeInstanceOf(Error);
    expect(core.isIdemError(foreign)).toBe(true);
    expect(core.isIdemError(foreign, 'LEASE_LOST')).toBe(true);
    expect(core.isIdemError(foreign, 'IN_FLIGHT')).toBe(false);
    const local = new core.BackendRefusedError('no');
    expect(local).toBeInstanceOf(other.BackendRefusedError);
    expect(local).not.toBeInstanceOf(other.BackendUnavailableError);
    expect(other.isIdemError(local, 'BACKEND_REFUSED')).toBe(true);
    for (const notOurs of [new Error('x'), null, undefined, 'IdemError', { code: 'LEASE_LOST' }]) {
      expect(notOurs instanceof core.IdemError).toBe(false);
      expect(core.isIdemError(notOurs)).toBe(false);
    }
  });

  it('the brand stays out of JSON and enumeration', () => {
    const e = new core.InvalidArgumentError('bad');
    expect(Object.keys(e).sort()).toEqual(['code', 'name', 'retryable']);
    expect(Object.getOwnPropertySymbols(e).every((s) => !Object.getOwnPropertyDescriptor(e, s)!.enumerable)).toBe(true);
    expect(e.name).toBe('InvalidArgumentError');
  });

  it('backendError: one mapping, refused is not retryable, unavailable is', () => {
    const refused = core.backendError(Object.assign(new Error('Access Denied'), { status: 403 }), 'PUT x', true);
    expect(refused).toBeInstanceOf(core.BackendRefusedError);
    expect(refused).toMatchObject({ code: 'BACKEND_REFUSED', retryable: false });
    expect(refused.message).toBe('PUT x: refused (Error: Access Denied)');
    const down = core.backendError(new Error('ECONNRESET'), 'GET y', false);
    expect(down).toBeInstanceOf(core.BackendUnavailableError);
    expect(down.retryable).toBe(true);
    const typed = new core.LeaseLostError('k', undefined);
    expect(core.backendError(typed, 'z', true)).toBe(typed);
    const hostile = {
      toString: () => {
        throw new Error('no');
      },
    };
    expect(core.backendError(hostile, 'w', false).message).toMatch(/unprintable/);
  });
});
