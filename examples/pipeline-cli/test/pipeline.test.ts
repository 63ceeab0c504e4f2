// The example pipeline CLI, spawned as its users run it: a replay is skipped
// and the step's side effect happens once, on the embedded store and on Redis.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findServer, tempDir } from '@idem/test-fixtures';
import { describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const redis = await findServer({ label: 'valkey standalone', env: ['IDEM_TEST_REDIS_URL'] });

function pipeline(args: string[], sink: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, PIPELINE_SINK: sink } });
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
