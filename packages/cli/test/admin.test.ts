import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { storageName } from '@idem/core';
import { createLmdbStore } from '@idem/lmdb';
import { GOOD_KEYS, tempDir } from '@idem/test-fixtures';
import { describe, expect, it } from 'vitest';
import { freshKey, freshStore, idem, lines, sleep, start, until } from './helpers.js';

const work = tempDir('idem-cli-admin-');

describe('operator commands', () => {
  it('status, list and check on a store that does not exist yet create nothing', async () => {
    const dir = tempDir('idem-cli-none-');
    const store = `lmdb:${join(dir, 'db')}`;
    const status = await idem(['status', 'k', '--store', store, '--json']);
    expect(status.code).toBe(1);
    expect(status.json).toMatchObject({ key: 'k', found: false, record: null });
    expect((await idem(['list', '--store', store, '--json'])).json).toMatchObject({ count: 0, records: [] });
    expect((await idem(['check', '--store', store])).code).toBe(0);
    expect((await idem(['sweep', '--store', store, '--json'])).json).toMatchObject({ expired: 0, dead_leases: 0 });
    expect((await idem(['release', 'k', '--force', '--store', store, '--json'])).json).toMatchObject({ released: false });
    expect(existsSync(join(dir, 'db'))).toBe(false);
  });

  it('list and check name a corrupt record, show the others and exit 74', async () => {
    const store = freshStore();
    await idem(['run', '--key', 'fine', '--store', store, '--', 'true']);
    const lmdb = await createLmdbStore({ path: store.slice('lmdb:'.length) });
    await lmdb.driver.writeRaw!(storageName('broken'), 'not json');
    await lmdb.close();
    const listed = await idem(['list', '--store', store, '--json']);
    expect(listed.code).toBe(74);
    expect(listed.json.records.map((r: { key: string }) => r.key)).toEqual(['fine']);
    expect(listed.json.corrupt).toEqual([{ name: storageName('broken'), reason: expect.stringContaining('JSON') }]);
    const human = await idem(['list', '--store', store]);
    expect(human.code).toBe(74);
    expect(human.stdout).toContain(storageName('broken'));
    expect(human.stdout).toContain('"fine"');
    const checked = await idem(['check', '--store', store, '--json']);
    expect(checked.code).toBe(74);
    expect(checked.json.corrupt).toHaveLength(1);
  });

  it('a store URL with verify=true reads the whole LMDB tree first: a damaged page is CORRUPT_RECORD, exit 74, no signal', async () => {
    const store = freshStore();
    await idem(['run', '--key', 'fine', '--store', store, '--', 'true']);
    expect((await idem(['check', '--store', `${store}?verify=true`])).code).toBe(0);
    // Every leaf value's size pushed 2 GB past its page (layout in packages/lmdb/src/files.ts): a reader would die by SIGSEGV.
    const file = join(store.slice('lmdb:'.length), 'idem.mdb');
    const bytes = readFileSync(file);
    for (let o = 2 * 4096; o + 4096 <= bytes.length; o += 4096) {
      if ((bytes.readUInt16LE(o + 18) & 2) === 0) continue;
      for (let i = 0; i < bytes.readUInt16LE(o + 20) / 2; i++) bytes.writeUInt16LE(0x7fff, o + 24 + bytes.readUInt16LE(o + 24 + 2 * i) + 2);
    }
    writeFileSync(file, bytes);
    const checked = await idem(['check', '--store', `${store}?verify=true`]);
    expect(checked.signal).toBeNull();
    expect(checked.code).toBe(74);
    expect(checked.stderr).toMatch(/^idem: CORRUPT_RECORD: .*idem\.mdb.*page \d+ is damaged/m);
    expect(readFileSync(file)).toEqual(bytes);
  });

  it('status and list show what runs did', async () => {
    const store = freshStore();
    const ok = await idem(['run', '--key', 'a', '--store', store, '--json', '--', 'true']);
    await idem(['run', '--key', 'b', '--store', store, '--', 'false']);
    const status = await idem(['status', 'a', '--store', store, '--json']);
    expect(status.code).toBe(0);
    expect(status.json.record).toMatchObject({ key: 'a', status: 'succeeded', run_id: ok.json.run_id, fence: 1, attempt: 1, lease_dead: null, error: null });
    const human = await idem(['status', 'b', '--store', store]);
    expect(human.stdout).toMatch(/^status\s+failed$/m);
    expect(human.stdout).toMatch(/^error\s+CommandFailed: exit code 1$/m);

    const all = await idem(['list', '--store', store, '--json']);
    expect(all.json.count).toBe(2);
    expect(all.json.records.map((r: { key: string }) => r.key).sort()).toEqual(['a', 'b']);
    const failed = await idem(['list', '--status', 'failed', '--store', store, '--json']);
    expect(failed.json.records.map((r: { key: string }) => r.key)).toEqual(['b']);
    const text = await idem(['list', '--store', store]);
    expect(text.stdout.trim().split('\n')).toHaveLength(2);
  });

  // A 10 s lease: on a loaded machine the first check must still find it live (no speed is asserted).
  it('check exits 1 on a dead lease; sweep removes it', async () => {
    const store = freshStore();
    const key = freshKey('dead');
    const file = join(work, key);
    const victim = start(['run', '--key', key, '--store', store, '--lease', '10s', '--', 'sh', '-c', 'echo $$ > "$1"; exec sleep 20', 'sh', file]);
    await until(() => lines(file).length === 1, 15_000, 'the command to start');
    victim.child.kill('SIGKILL');
    await victim.exited;
    process.kill(Number(lines(file)[0]), 'SIGKILL'); // the orphaned command

    expect((await idem(['check', '--store', store])).code).toBe(0); // lease still live
    const owner = (await idem(['status', key, '--store', store, '--json'])).json.record;
    await sleep(Date.parse(owner.lease_expires_at) - Date.now() + 50);
    const check = await idem(['check', '--store', store, '--json']);
    expect(check.code).toBe(1);
    expect(check.json).toMatchObject({ ok: false, in_flight: 1, dead: [{ key, status: 'in_flight', lease_dead: true }] });
    expect((await idem(['check', '--store', store, '--grace', '1h'])).code).toBe(0);
    const human = await idem(['check', '--store', store]);
    expect(human.stderr).toContain('1 dead lease');

    const sweep = await idem(['sweep', '--store', store, '--json']);
    expect(sweep.json).toMatchObject({ expired: 0, dead_leases: 1, native_expiry: false });
    expect((await idem(['check', '--store', store])).code).toBe(0);
    expect((await idem(['status', key, '--store', store])).code).toBe(1);
  });

  it('release --force makes a succeeded key run again', async () => {
    const store = freshStore();
    const key = freshKey('rel');
    const file = join(work, key);
    await idem(['run', '--key', key, '--store', store, '--', 'sh', '-c', 'echo one >> "$1"', 'sh', file]);
    const released = await idem(['release', key, '--force', '--store', store, '--json']);
    expect(released.json).toMatchObject({ key, released: true, previous: { status: 'succeeded' } });
    const again = await idem(['run', '--key', key, '--store', store, '--json', '--', 'sh', '-c', 'echo two >> "$1"', 'sh', file]);
    expect(again.json).toMatchObject({ status: 'succeeded', outcome: 'acquired', fence: 3 });
    expect(lines(file)).toEqual(['one', 'two']);
  });

  it('release --force fences out a live owner: its command is stopped and it exits 76', async () => {
    const store = freshStore();
    const key = freshKey('fence');
    const file = join(work, key);
    const owner = start([
      'run',
      '--key',
      key,
      '--store',
      store,
      '--lease',
      '1s',
      '--json',
      '--',
      'sh',
      '-c',
      'echo started >> "$1"; exec sleep 20',
      'sh',
      file,
    ]);
    await until(() => lines(file).length === 1, 15_000, 'the command to start');
    expect((await idem(['release', key, '--force', '--store', store])).code).toBe(0);
    const r = await owner.done; // the next heartbeat (a third of the lease) finds the lease lost
    expect(r.code).toBe(76);
    expect(r.json).toMatchObject({ status: 'error', error: { code: 'LEASE_LOST' } });
    expect(r.json.timings.command_ms).toBeLessThan(10_000);
    expect((await idem(['status', key, '--store', store])).code).toBe(1);
  });

  it.each(GOOD_KEYS.filter(([, k]) => !k.includes('\u0000')))('a key with %s is stored verbatim', async (_, key) => {
    const store = freshStore();
    expect((await idem(['run', '--key', key, '--store', store, '--', 'true'])).code).toBe(0);
    const status = await idem(['status', key, '--store', store, '--json']);
    expect(status.json.record.key).toBe(key);
  });
});
