import { cpSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deriveKey } from '@idem/core';
import { BAD_KEYS, tempDir } from '@idem/test-fixtures';
import { describe, expect, it } from 'vitest';
import { BIN, idem } from './helpers.js';

const K = ['--key', 'k'];
const RUN = (...flags: string[]) => ['run', ...flags, '--', 'true'];

// [argv, code, exit]; each runs in an empty directory with the default store (./.idem).
const BAD: [string[], string, number][] = [
  [['frobnicate'], 'USAGE', 64],
  [RUN(...K, '--bogus'), 'USAGE', 64],
  [RUN(...K, '--json=yes'), 'USAGE', 64],
  [RUN(), 'USAGE', 64],
  [['run', ...K], 'USAGE', 64],
  [['run', ...K, '--'], 'USAGE', 64],
  [['run', ...K, 'true'], 'USAGE', 64],
  [RUN(...K, '--lease', '5 minutes'), 'INVALID_ARGUMENT', 64],
  [RUN(...K, '--lease', '0'), 'INVALID_ARGUMENT', 64],
  [RUN(...K, '--lease', '4000d'), 'INVALID_ARGUMENT', 64],
  [RUN(...K, '--lease', '1.5s'), 'INVALID_ARGUMENT', 64],
  [RUN(...K, '--retention', 'forever'), 'INVALID_ARGUMENT', 64],
  [RUN(...K, '--wait-timeout', '-1s'), 'USAGE', 64],
  [RUN(...K, '--dedup-on', 'never'), 'USAGE', 64],
  [RUN(...K, '--on-in-flight', 'queue'), 'USAGE', 64],
  [RUN(...K, '--skip-exit-code', '256'), 'USAGE', 64],
  [RUN(...K, '--skip-exit-code', 'x'), 'USAGE', 64],
  [RUN(...K, '--fingerprint', ''), 'INVALID_ARGUMENT', 64],
  [RUN(...K, '--store', ''), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'db'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'http://example.invalid/x'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'lmdb://host/x'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'lmdb:'), 'INVALID_STORE_URL', 64],
  // Refused by the URL layer, before the SDK looks for a region or makes a request.
  [RUN(...K, '--store', 's3://bucket..x/p'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 's3://bucket/a%0Ab'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'lmdb:db?durability=never'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'lmdb:db?mode=x'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'redis://'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'redis://127.0.0.1:99999'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'redis://127.0.0.1/db1'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'valkey://127.0.0.1?cluster=maybe'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'redis://127.0.0.1?nodes=a:1'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 's3://'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 's3://Bad_Bucket/x'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 's3://user:secret@bucket/x'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 's3://bucket/x?endpoint=ftp://h'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'gs://b/x?project=p'), 'INVALID_STORE_URL', 64],
  [RUN(...K, '--store', 'gs://-bucket'), 'INVALID_STORE_URL', 64],
  [['run', ...K, '--', 'idem-no-such-command'], 'SPAWN_FAILED', 127],
  [['status'], 'USAGE', 64],
  [['status', 'a', 'b'], 'USAGE', 64],
  [['status', ''], 'INVALID_KEY', 64],
  [['list', '--status', 'running'], 'USAGE', 64],
  [['list', 'extra'], 'USAGE', 64],
  [['check', '--grace', 'soon'], 'INVALID_ARGUMENT', 64],
  [['sweep', '--store', 'nope://x'], 'INVALID_STORE_URL', 64],
  [['release', 'k'], 'USAGE', 64],
  [['release', '--force'], 'USAGE', 64],
  [['key'], 'USAGE', 64],
  [['key', 'a', 'b'], 'USAGE', 64],
  [['key', 'n', '--param', 'novalue'], 'USAGE', 64],
  [['key', 'n', '--param', '=v'], 'USAGE', 64],
  [['key', 'n', '--param', 'a=1', '--param', 'a=2'], 'USAGE', 64],
  [['key', 'n', '--namespace', ''], 'INVALID_ARGUMENT', 64],
];

function expectOneErrorLine(stderr: string, code: string) {
  const all = stderr.split('\n').filter(Boolean);
  expect(all, stderr).toHaveLength(1);
  expect(all[0]).toMatch(new RegExp(`^idem: ${code}: \\S`));
}

describe('bad input fails before any I/O, with one line and its code', () => {
  it.each(BAD)('idem %j -> %s (exit %i)', async (argv, code, exit) => {
    const cwd = tempDir('idem-cli-bad-');
    const r = await idem(argv, { cwd });
    expect(r.code).toBe(exit);
    expect(r.stdout).toBe('');
    expectOneErrorLine(r.stderr, code);
    expect(readdirSync(cwd)).toEqual([]); // not even ./.idem was created
  });

  it.each(BAD_KEYS.filter(([, k]) => typeof k === 'string' && k.isWellFormed()))('a bad key (%s) is INVALID_KEY', async (_, key) => {
    const cwd = tempDir('idem-cli-bad-');
    const r = await idem(['run', '--key', key as string, '--', 'true'], { cwd });
    expect(r.code).toBe(64);
    expectOneErrorLine(r.stderr, 'INVALID_KEY');
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('a bad IDEM_STORE or empty IDEM_KEY fails the same way', async () => {
    const cwd = tempDir('idem-cli-bad-');
    const store = await idem(['run', ...K, '--', 'true'], { cwd, env: { IDEM_STORE: 'mysql://db' } });
    expect(store.code).toBe(64);
    expectOneErrorLine(store.stderr, 'INVALID_STORE_URL');
    const key = await idem(['run', '--', 'true'], { cwd, env: { IDEM_KEY: '' } });
    expectOneErrorLine(key.stderr, 'INVALID_KEY');
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('does not echo a password from a store URL', async () => {
    const r = await idem(['status', 'k', '--store', 'redis://user:hunter2@127.0.0.1/x']);
    expect(r.code).toBe(64);
    expect(r.stderr).not.toContain('hunter2');
  });
});

describe('--help', () => {
  it.each(['run', 'status', 'list', 'check', 'sweep', 'release', 'key'])('idem %s --help', async (command) => {
    const cwd = tempDir('idem-cli-help-');
    const r = await idem([command, '--help'], { cwd });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: idem ${command} `));
    expect(r.stderr).toBe('');
    expect(readdirSync(cwd)).toEqual([]);
    expect((await idem(['help', command])).stdout).toBe(r.stdout);
  });

  it('idem --help lists the commands; idem alone is a usage error', async () => {
    const help = await idem(['--help']);
    expect(help.code).toBe(0);
    for (const c of ['run', 'status', 'list', 'check', 'sweep', 'release', 'key']) expect(help.stdout).toContain(`  ${c} `);
    expect((await idem([])).code).toBe(64);
    expect((await idem(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

describe('colour', () => {
  it('only when asked or on a terminal, and never under NO_COLOR', async () => {
    const store = `lmdb:${tempDir('idem-cli-color-')}/db`;
    const plain = await idem(['run', ...K, '--store', store, '--', 'true'], { env: { NO_COLOR: undefined, FORCE_COLOR: undefined } });
    expect(plain.stderr).not.toContain('\u001b[');
    const forced = await idem(['run', ...K, '--store', store, '--', 'true'], { env: { NO_COLOR: undefined, FORCE_COLOR: '1' } });
    expect(forced.stderr).toContain('\u001b[');
    // NO_COLOR wins over FORCE_COLOR (Node itself warns about the pair on stderr).
    const both = await idem(['run', '--bogus'], { env: { NO_COLOR: '1', FORCE_COLOR: '1' } });
    expect(both.stderr).toMatch(/^idem: USAGE: /m);
    expect(both.stderr).not.toContain('\u001b[');
    const error = await idem(['run', '--bogus'], { env: { NO_COLOR: '1' } });
    expect(error.stderr).toMatch(/^idem: USAGE: [^\n]*\n$/);
  });
});

describe('idem key', () => {
  it('is deterministic and matches deriveKey', async () => {
    const a = await idem(['key', 'load-day', '--param', 'day=2024-05-01', '--param', 'region=eu']);
    const b = await idem(['key', 'load-day', '-p', 'region=eu', '-p', 'day=2024-05-01']);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(`${deriveKey('default', 'load-day', { day: '2024-05-01', region: 'eu' })}\n`);
    expect(b.stdout).toBe(a.stdout);
    const other = await idem(['key', 'load-day', '--param', 'day=2024-05-02', '--param', 'region=eu']);
    expect(other.stdout).not.toBe(a.stdout);
    const ns = await idem(['key', 'load-day', '--namespace', 'etl', '--param', 'day=2024-05-01', '--param', 'region=eu']);
    expect(ns.stdout).toBe(`${deriveKey('etl', 'load-day', { day: '2024-05-01', region: 'eu' })}\n`);
    const env = await idem(['key', 'load-day', '--json', '--param', 'day=2024-05-01', '--param', 'region=eu'], { env: { IDEM_NAMESPACE: 'etl' } });
    expect(env.json).toEqual({ schema: 'idem.key/1', key: ns.stdout.trim(), namespace: 'etl', name: 'load-day', params: { day: '2024-05-01', region: 'eu' } });
    // A value may hold "=": only the first one splits.
    const eq = await idem(['key', 'q', '--param', 'expr=a=b']);
    expect(eq.stdout).toBe(`${deriveKey('default', 'q', { expr: 'a=b' })}\n`);
  });
});

describe('a scheme whose adapter is not installed', () => {
  it('says which package to install (ADAPTER_MISSING, exit 78: the setup must change)', async () => {
    // A copy of the CLI next to @idem/core and @idem/lmdb only, as after `npm install @idem/cli`.
    const app = tempDir('idem-cli-app-');
    const here = dirname(fileURLToPath(import.meta.url));
    mkdirSync(join(app, 'node_modules', '@idem'), { recursive: true });
    for (const name of ['core', 'lmdb']) symlinkSync(join(here, '..', '..', name), join(app, 'node_modules', '@idem', name), 'dir');
    cpSync(dirname(BIN), join(app, 'cli', 'dist'), { recursive: true });
    writeFileSync(join(app, 'cli', 'package.json'), JSON.stringify({ name: '@idem/cli', type: 'module' }));
    const bin = join(app, 'cli', 'dist', 'bin.js');

    const redis = await idem(['run', ...K, '--store', 'redis://127.0.0.1:1', '--', 'true'], { bin });
    expect(redis.code).toBe(78);
    expectOneErrorLine(redis.stderr, 'ADAPTER_MISSING');
    expect(redis.stderr).toContain('npm install @idem/valkey ioredis');
    const s3 = await idem(['status', 'k', '--store', 's3://bucket/p'], { bin });
    expect(s3.code).toBe(78);
    expect(s3.stderr).toContain('npm install @idem/s3 @aws-sdk/client-s3');
    const gs = await idem(['list', '--store', 'gs://bucket/p', '--json'], { bin });
    expect(gs.code).toBe(78);
    expect(gs.stderr).toContain('npm install @idem/gcs @google-cloud/storage');
    // LMDB still works in that install.
    const cwd = tempDir('idem-cli-app-cwd-');
    expect((await idem(['run', ...K, '--', 'true'], { bin, cwd })).code).toBe(0);
  });
});

describe('a backend the CLI has never heard of', () => {
  it('is served by @idem/<scheme>/url with no CLI or core edit (x: and x+y: convention)', async () => {
    // An install with @idem/core, @idem/lmdb and a third-party @idem/memtest whose handler
    // keeps its records in an LMDB directory: the CLI finds it by the scheme's name alone.
    const app = tempDir('idem-cli-app-');
    const here = dirname(fileURLToPath(import.meta.url));
    const scope = join(app, 'node_modules', '@idem');
    mkdirSync(join(scope, 'memtest'), { recursive: true });
    for (const name of ['core', 'lmdb']) symlinkSync(join(here, '..', '..', name), join(scope, name), 'dir');
    writeFileSync(join(scope, 'memtest', 'package.json'), JSON.stringify({ name: '@idem/memtest', type: 'module', exports: { './url': './url.js' } }));
    writeFileSync(
      join(scope, 'memtest', 'url.js'),
      [
        "import * as lmdb from '@idem/lmdb/url';",
        "export const schemes = ['memtest', 'memtest+dir'];",
        // biome-ignore lint/suspicious/noTemplateCurlyInString: source text of a module the test writes
        "export const parse = (url, context) => lmdb.parse(`lmdb:${url.slice(url.indexOf(':') + 1)}`, context);",
        'export const redact = (url) => url;',
        'export const mayExist = lmdb.mayExist;',
        'export const open = lmdb.open;',
      ].join('\n'),
    );
    cpSync(dirname(BIN), join(app, 'cli', 'dist'), { recursive: true });
    writeFileSync(join(app, 'cli', 'package.json'), JSON.stringify({ name: '@idem/cli', type: 'module' }));
    const bin = join(app, 'cli', 'dist', 'bin.js');
    const cwd = tempDir('idem-cli-app-cwd-');

    const first = await idem(['run', ...K, '--store', 'memtest+dir:db', '--json', '--', 'true'], { bin, cwd });
    expect(first.json).toMatchObject({ status: 'succeeded', store: 'memtest+dir:db' });
    const again = await idem(['run', ...K, '--store', 'memtest:db', '--json', '--', 'true'], { bin, cwd });
    expect(again.json).toMatchObject({ status: 'skipped_idempotent', skipped_by_run_id: first.json.run_id });
    expect(readdirSync(join(cwd, 'db'))).toContain('idem.mdb');
    const other = await idem(['run', ...K, '--store', 'othertest:db', '--', 'true'], { bin, cwd });
    expect(other.code).toBe(64);
    expect(other.stderr).toContain('@idem/othertest');
  });
});
