// The example pipeline CLI, spawned as its users run it: a replay is skipped
// and the step's side effect happens once, on the embedded store and on Redis.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findServer, tempDir } from '@idem/test-fixtures';
import { describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const redis = await findServer({ label: 'valkey standalone', env: ['IDEM_TEST_REDIS_URL'] });

function pipeline(args: string[], sink: string, cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, PIPELINE_SINK: sink };
    for (const name of Object.keys(env)) if (name.startsWith('IDEM_') || name === 'PIPELINE_STATE_STORE') delete env[name];
    const child = spawn(process.execPath, [CLI, ...args], { env, ...(cwd ? { cwd } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const stores: Array<[string, () => string]> = [['lmdb', () => `lmdb:${join(tempDir('idem-example-'), 'state')}`]];
if (redis) stores.push(['redis', () => redis.IDEM_TEST_REDIS_URL!]);

describe.each(stores)('example pipeline CLI on %s', (_name, storeUrl) => {
  it('runs the step once; the replay is skipped_idempotent with the first run id', async () => {
    const sink = join(tempDir('idem-example-sink-'), 'export.log');
    const key = `export:${process.pid}:${Date.now()}`;
    const args = ['run', 'export', '--idempotency-key', key, '--state-store', storeUrl(), '--json'];
    const first = await pipeline(args, sink);
    expect(first.code).toBe(0);
    const report = JSON.parse(first.stdout);
    expect(report).toMatchObject({ status: 'succeeded', key, exit_code: 0 });
    const again = await pipeline(args, sink);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ status: 'skipped_idempotent', skipped_by_run_id: report.run_id });
    expect(readFileSync(sink, 'utf8').trim().split('\n')).toHaveLength(1);
  });
});

describe('example pipeline CLI: bad input', () => {
  it('a bad store URL is a report with INVALID_STORE_URL and exit 64, and no secret is printed', async () => {
    const sink = join(tempDir('idem-example-sink-'), 'export.log');
    const got = await pipeline(['run', 'export', '--state-store', 'redis://user:Sekr3tPw@host:notaport', '--json'], sink);
    expect(got.code).toBe(64);
    expect(JSON.parse(got.stdout)).toMatchObject({ status: 'error', error: { code: 'INVALID_STORE_URL' } });
    expect(got.stdout + got.stderr).not.toContain('Sekr3tPw');
  });
});

describe('example pipeline CLI: the project idem.toml configures it too', () => {
  /** A repository holding idem.toml, and a subdirectory to run in. */
  function project(toml: string) {
    const root = tempDir('idem-example-project-');
    mkdirSync(join(root, '.git'));
    mkdirSync(join(root, 'jobs'));
    writeFileSync(join(root, 'idem.toml'), toml);
    return { root, sub: join(root, 'jobs') };
  }

  it('without --state-store, the store comes from idem.toml (relative to the file)', async () => {
    const { root, sub } = project('store = "lmdb:state"\nlease = "30s"\n');
    const sink = join(tempDir('idem-example-sink-'), 'export.log');
    const args = ['run', 'export', '--idempotency-key', 'export:toml', '--json'];
    expect((await pipeline(args, sink, sub)).code).toBe(0);
    expect(JSON.parse((await pipeline(args, sink, sub)).stdout)).toMatchObject({ status: 'skipped_idempotent' });
    expect(existsSync(join(root, 'state'))).toBe(true);
    expect(readFileSync(sink, 'utf8').trim().split('\n')).toHaveLength(1);
  });

  it('a broken idem.toml is exit 64 naming the file and line', async () => {
    const { root, sub } = project('store = "lmdb:state"\nlease = "soon"\n');
    const got = await pipeline(['run', 'export', '--json'], join(tempDir('idem-example-sink-'), 'export.log'), sub);
    expect(got.code).toBe(64);
    expect(JSON.parse(got.stdout).error.message).toContain(`${join(root, 'idem.toml')}:2: lease`);
    expect(existsSync(join(root, 'state'))).toBe(false);
  });
});
