// idem.toml, the project config file: found from the working directory up to
// the repository root, flag > environment > file > default, ${NAME} in the
// store URL, `idem config` with sources, errors with file:line (exit 64) before
// any store is opened, and no secret from the file in any output.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${NAME} in plain strings is idem.toml's own syntax, tested here
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SECRET, SECRET_URLS, tempDir, USER } from '@idem/test-fixtures';
import { describe, expect, it } from 'vitest';
import { freshKey, idem } from './helpers.js';
import { loadIdemConfig } from '../src/config.js';

/** A repository (a directory with .git) holding idem.toml, and a subdirectory to run in. */
function project(toml: string): { root: string; file: string; sub: string } {
  const root = tempDir('idem-cli-config-');
  mkdirSync(join(root, '.git'));
  const sub = join(root, 'a', 'b');
  mkdirSync(sub, { recursive: true });
  const file = join(root, 'idem.toml');
  writeFileSync(file, toml);
  return { root, file, sub };
}

const leaked = (text: string) => [SECRET, USER].filter((s) => text.toLowerCase().includes(s.toLowerCase()));

describe('idem.toml drives the CLI', () => {
  it('a run with no flags takes store, lease, retention, dedup_on and labels from the file (found from a subdirectory)', async () => {
    const { root, sub } = project(
      [
        '# the project settings',
        'store = "lmdb:state/db"',
        'lease = "7s"',
        'retention = "2d"',
        'dedup_on = "any"',
        '',
        '[labels]',
        'team = "data"',
        'tier = "gold"',
        '',
      ].join('\n'),
    );
    const key = freshKey('file');
    const first = await idem(['run', '--key', key, '--json', '--', 'false'], { cwd: sub });
    expect(first.code).toBe(1);
    // The relative lmdb: path is the file's directory's, not the working directory's.
    expect(existsSync(join(root, 'state', 'db'))).toBe(true);
    expect(existsSync(join(sub, 'state'))).toBe(false);
    // dedup_on = "any": the failure is final.
    const again = await idem(['run', '--key', key, '--json', '--', 'true'], { cwd: sub });
    expect(again.json).toMatchObject({ status: 'skipped_idempotent' });
    const status = await idem(['status', key, '--json'], { cwd: sub });
    expect(status.json.record).toMatchObject({ status: 'failed', labels: { team: 'data', tier: 'gold' } });
    const lease = Date.parse(status.json.record.expires_at) - Date.parse(status.json.record.completed_at);
    expect(lease).toBe(2 * 86_400_000);
  });

  it('a flag overrides the file, and --label wins per name over [labels]', async () => {
    const { sub } = project('store = "lmdb:state/db"\ndedup_on = "any"\n[labels]\nteam = "data"\ntier = "gold"\n');
    const other = join(tempDir('idem-cli-config-flag-'), 'db');
    const key = freshKey('flag');
    const first = await idem(['run', '--key', key, '--store', `lmdb:${other}`, '--dedup-on', 'success', '--label', 'team=ops', '--', 'false'], { cwd: sub });
    expect(first.code).toBe(1);
    const status = await idem(['status', key, '--store', `lmdb:${other}`, '--json'], { cwd: sub });
    expect(status.json.record).toMatchObject({ status: 'failed', labels: { team: 'ops', tier: 'gold' } });
    // --dedup-on success: the failure is retried.
    const retry = await idem(['run', '--key', key, '--store', `lmdb:${other}`, '--dedup-on', 'success', '--json', '--', 'true'], { cwd: sub });
    expect(retry.json).toMatchObject({ status: 'succeeded' });
  });

  it('the environment overrides the file', async () => {
    const { sub } = project('store = "lmdb:state/db"\nlease = "7s"\n');
    const dir = tempDir('idem-cli-config-env-');
    const env = { IDEM_STORE: `lmdb:${join(dir, 'db')}`, IDEM_LEASE: '9s' };
    const got = await idem(['config', '--json'], { cwd: sub, env });
    expect(got.code).toBe(0);
    expect(got.json.store).toEqual({ value: `lmdb:${join(dir, 'db')}`, source: { from: 'env', name: 'IDEM_STORE' } });
    expect(got.json.lease).toMatchObject({ value: '9s', ms: 9000, source: { from: 'env', name: 'IDEM_LEASE' } });
    const run = await idem(['run', '--key', freshKey('env'), '--', 'true'], { cwd: sub, env });
    expect(run.code).toBe(0);
    expect(existsSync(join(dir, 'db'))).toBe(true);
  });

  it('idem config shows each setting and its source: flag, env, file:line, default', async () => {
    const { file, sub } = project('namespace = "billing"\n\nlease = "10m"\non_in_flight = "wait"\n[labels]\nteam = "data"\n');
    const args = ['config', '--retention', '40d', '--label', 'run=nightly'];
    const env = { IDEM_DEDUP_ON: 'any' };
    const human = await idem(args, { cwd: sub, env });
    expect(human.code).toBe(0);
    const rows = Object.fromEntries(
      human.stdout
        .trim()
        .split('\n')
        .map((line) => line.split(/\s{2,}/))
        .map(([name, ...rest]) => [name, rest]),
    );
    expect(rows).toEqual({
      file: [file],
      store: ['lmdb:.idem', 'default'],
      namespace: ['billing', `${file}:1`],
      lease: ['10m', `${file}:3`],
      retention: ['40d', '--retention'],
      dedup_on: ['any', 'env IDEM_DEDUP_ON'],
      on_in_flight: ['wait', `${file}:4`],
      'labels.run': ['nightly', '--label'],
      'labels.team': ['data', `${file}:6`],
    });
    const json = await idem([...args, '--json'], { cwd: sub, env });
    expect(json.json).toEqual({
      schema: 'idem.config/1',
      file,
      store: { value: 'lmdb:.idem', source: { from: 'default' } },
      namespace: { value: 'billing', source: { from: 'file', path: file, line: 1 } },
      lease: { value: '10m', ms: 600_000, source: { from: 'file', path: file, line: 3 } },
      retention: { value: '40d', ms: 40 * 86_400_000, source: { from: 'flag', name: '--retention' } },
      dedup_on: { value: 'any', source: { from: 'env', name: 'IDEM_DEDUP_ON' } },
      on_in_flight: { value: 'wait', source: { from: 'file', path: file, line: 4 } },
      labels: { run: { value: 'nightly', source: { from: 'flag', name: '--label' } }, team: { value: 'data', source: { from: 'file', path: file, line: 6 } } },
    });
    // The file's namespace is idem key's; --namespace and IDEM_NAMESPACE still win.
    const key = await idem(['key', 'load', '--json'], { cwd: sub });
    expect(key.json).toMatchObject({ namespace: 'billing' });
    const flagged = await idem(['key', 'load', '--json'], { cwd: sub, env: { IDEM_NAMESPACE: 'ops' } });
    expect(flagged.json).toMatchObject({ namespace: 'ops' });
  });

  it('the search stops at the repository root; without a file, idem config says so and shows the defaults', async () => {
    const outer = tempDir('idem-cli-config-outer-');
    writeFileSync(join(outer, 'idem.toml'), 'lease = "9m"\n');
    const repo = join(outer, 'repo');
    mkdirSync(join(repo, '.git'), { recursive: true });
    const got = await idem(['config', '--json'], { cwd: repo });
    expect(got.json).toMatchObject({ file: null, lease: { value: '5m', source: { from: 'default' } } });
    const human = await idem(['config'], { cwd: repo });
    expect(human.stdout).toMatch(/^file\s+\(none/);
  });
});

describe('a broken idem.toml: file:line and the key, exit 64, no store opened', () => {
  const cases: [string, string, RegExp][] = [
    ['malformed TOML', 'store = "lmdb:state/db"\nlease = \n', /idem\.toml:2:\d+: not valid TOML: /],
    ['an unknown key', 'store = "lmdb:state/db"\n\nleese = "5m"\n', /idem\.toml:3: unknown key "leese"/],
    ['a kebab-case key', 'store = "lmdb:state/db"\ndedup-on = "any"\n', /idem\.toml:2: unknown key "dedup-on" \(did you mean dedup_on\?\)/],
    ['a bad duration', 'store = "lmdb:state/db"\nretention = "forever"\n', /idem\.toml:2: retention must look like/],
    ['a number for a duration', 'store = "lmdb:state/db"\nlease = 300\n', /idem\.toml:2: lease must be a string such as "5m"/],
    ['a lease under 1s', 'store = "lmdb:state/db"\nlease = "10ms"\n', /idem\.toml:2: lease must be at least 1s/],
    ['a bad dedup_on', 'store = "lmdb:state/db"\ndedup_on = "always"\n', /idem\.toml:2: dedup_on must be success, any/],
    ['a bad label name', 'store = "lmdb:state/db"\n[labels]\nteam = "a"\n"bad name" = "x"\n', /idem\.toml:4: labels\.bad name: label name/],
    ['a nested label', 'store = "lmdb:state/db"\n[labels]\nteam = "a"\nx.y = "b"\n', /idem\.toml:4: labels\.x must be a string, got a table/],
    ['a bad value overridden by a flag', 'store = "lmdb:state/db"\non_in_flight = "maybe"\n', /idem\.toml:2: on_in_flight must be skip, wait, fail/],
    ['a bad store URL', 'lease = "1m"\nstore = "redis://h:notaport"\n', /idem\.toml:2: store: /],
  ];
  it.each(cases)('%s', async (_what, toml, message) => {
    const { root, sub } = project(toml);
    const run = await idem(['run', '--key', 'k', '--on-in-flight', 'skip', '--', 'true'], { cwd: sub });
    expect(run.code).toBe(64);
    expect(run.stderr).toMatch(/^idem: (USAGE|INVALID_ARGUMENT|INVALID_STORE_URL): /);
    expect(run.stderr).toContain(join(root, 'idem.toml'));
    expect(run.stderr).toMatch(message);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(join(root, 'state'))).toBe(false);
    // Every command that reads the file fails the same way.
    const status = await idem(['status', 'k'], { cwd: sub });
    expect([status.code, status.stderr]).toEqual([64, run.stderr]);
    const config = await idem(['config'], { cwd: sub });
    expect([config.code, config.stderr]).toEqual([64, run.stderr]);
    expect(existsSync(join(root, 'state'))).toBe(false);
  });

  it('retention shorter than lease names both sources', async () => {
    const { file, sub } = project('lease = "10m"\n');
    const run = await idem(['run', '--key', 'k', '--retention', '1m', '--', 'true'], { cwd: sub });
    expect(run.code).toBe(64);
    expect(run.stderr).toContain(`retention (1m, --retention) must be at least lease (10m, ${file}:1)`);
  });
});

describe('${NAME} in the store URL', () => {
  it('is expanded from the environment when the store is used', async () => {
    const dir = tempDir('idem-cli-config-var-');
    const { sub } = project('store = "lmdb:${STATE_DIR}/db"\n');
    const run = await idem(['run', '--key', freshKey('var'), '--', 'true'], { cwd: sub, env: { STATE_DIR: dir } });
    expect(run.code).toBe(0);
    expect(existsSync(join(dir, 'db'))).toBe(true);
  });

  it('a missing or empty variable is an error naming it, and commands that need no store do not fail for it', async () => {
    const { file, sub } = project('store = "redis://:${REDIS_PASSWORD}@127.0.0.1:1"\n');
    for (const env of [{}, { REDIS_PASSWORD: '' }]) {
      const run = await idem(['run', '--key', 'k', '--', 'true'], { cwd: sub, env });
      expect(run.code).toBe(64);
      expect(run.stderr).toBe(`idem: USAGE: ${file}:1: store: the environment variable REDIS_PASSWORD is not set (or empty)\n`);
    }
    expect((await idem(['key', 'x'], { cwd: sub })).code).toBe(0);
    // A flag's store is used instead: the file's is not expanded.
    expect((await idem(['config', '--store', 'lmdb:x'], { cwd: sub })).code).toBe(0);
  });

  it('a malformed reference is an error that does not quote it', async () => {
    const { file, sub } = project(`store = "redis://:\${${SECRET}@127.0.0.1:1"\n`);
    const got = await idem(['config'], { cwd: sub });
    expect(got.code).toBe(64);
    expect(got.stderr).toContain(`${file}:1: store: "\${" must start a reference`);
    expect(leaked(got.stdout + got.stderr)).toEqual([]);
  });
});

describe('secrets in the file are never printed', () => {
  /** Credentials for the SDKs' own chains, so that none goes looking for a metadata server. */
  const env = {
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
    STORAGE_EMULATOR_HOST: undefined,
  };

  it('a password in the file, or expanded into it, appears in no output of config or run', async () => {
    for (const [toml, vars] of [
      [`store = "redis://${USER}:${SECRET}@127.0.0.1:1/3"\n`, {}],
      ['store = "redis://${REDIS_USER}:${REDIS_PASSWORD}@127.0.0.1:1/3"\n', { REDIS_USER: USER, REDIS_PASSWORD: SECRET }],
    ] as const) {
      const { sub } = project(toml);
      const all = { ...env, ...vars };
      const outputs = [
        await idem(['config'], { cwd: sub, env: all }),
        await idem(['config', '--json'], { cwd: sub, env: all }),
        await idem(['run', '--key', 'k', '--json', '--', 'true'], { cwd: sub, env: all }),
      ];
      expect(outputs[0]!.stdout).toMatch(/^store\s+redis:\/\/\*\*\*@127\.0\.0\.1:1\/3\s/m);
      expect(outputs[2]!.json).toMatchObject({ status: 'error', store: 'redis://***@127.0.0.1:1/3', error: { code: 'BACKEND_UNAVAILABLE' } });
      for (const got of outputs) expect(leaked(got.stdout + got.stderr)).toEqual([]);
    }
  });

  it('the secret-URL corpus in idem.toml: nothing secret from idem config', async () => {
    for (const url of SECRET_URLS) {
      const { sub } = project(`store = ${JSON.stringify(url)}\n`);
      const got = await idem(['config'], { cwd: sub, env });
      expect(leaked(got.stdout + got.stderr), url).toEqual([]);
    }
  });
});

describe('loadIdemConfig (for embedders)', () => {
  it('gives the same settings and sources as idem config, and the store URL to open', async () => {
    const { root, file, sub } = project('store = "lmdb:${STATE}"\nlease = "2m"\n[labels]\nteam = "data"\n');
    const config = await loadIdemConfig({ cwd: sub, env: { STATE: 'here', IDEM_RETENTION: '3d' }, flags: { lease: '3m' } });
    expect(config.file).toBe(file);
    expect(config.store).toMatchObject({ value: 'lmdb:${STATE}', cwd: root, source: { from: 'file', path: file, line: 1 } });
    expect(config.store.url()).toBe('lmdb:here');
    expect(config.lease).toEqual({ value: '3m', ms: 180_000, source: { from: 'flag', name: '--lease' } });
    expect(config.retention).toEqual({ value: '3d', ms: 3 * 86_400_000, source: { from: 'env', name: 'IDEM_RETENTION' } });
    expect(config.labels).toEqual({ team: { value: 'data', source: { from: 'file', path: file, line: 4 } } });
    expect(() => config.store.url.call(config.store)).not.toThrow();
  });
});
