// Every store URL scheme against its real server (scripts/servers.sh start
// prints the variables). A missing server is a loud skip, and a failure under CI=true.
import { join } from 'node:path';
import { findServer, tempDir } from '@idem/test-fixtures';
import { describe, expect, it } from 'vitest';
import { freshStore, idem, lines, sleep, start, type Options } from './helpers.js';

const redis = await findServer({ label: 'idem CLI on redis://', env: ['IDEM_TEST_REDIS_URL'] });
const redisCluster = await findServer({ label: 'idem CLI on redis:// cluster', env: ['IDEM_TEST_REDIS_CLUSTER'] });
const s3 = await findServer({
  label: 'idem CLI on s3://',
  env: ['IDEM_TEST_S3_ENDPOINT', 'IDEM_TEST_S3_ACCESS_KEY', 'IDEM_TEST_S3_SECRET_KEY', 'IDEM_TEST_S3_BUCKET', 'IDEM_TEST_S3_REGION'],
});
const versitygw = await findServer({
  label: 'idem CLI on s3:// (versitygw)',
  env: [
    'IDEM_TEST_VERSITYGW_ENDPOINT',
    'IDEM_TEST_VERSITYGW_ACCESS_KEY',
    'IDEM_TEST_VERSITYGW_SECRET_KEY',
    'IDEM_TEST_VERSITYGW_BUCKET',
    'IDEM_TEST_VERSITYGW_REGION',
  ],
});
const gcs = await findServer({ label: 'idem CLI on gs://', env: ['STORAGE_EMULATOR_HOST', 'IDEM_TEST_GCS_BUCKET'] });
const postgres = await findServer({ label: 'idem CLI on postgres://', env: ['IDEM_TEST_POSTGRES_URL'] });

const work = tempDir('idem-cli-backends-');
const unique = () => `cli-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/** The same story on every backend: run once, skip, fail and retry, race, inspect. */
function scheme(name: string, url: () => string, options: () => Options) {
  // About 15 idem processes in a row: a loaded machine gets the time it needs (no speed is asserted).
  it(`${name}: runs once, skips the replay, retries a failure, one winner of a race`, async () => {
    const store = url();
    const o = options();
    const file = join(work, unique());
    const cmd = (tag: string, exit = 0) => ['sh', '-c', `echo ${tag} >> "$1"; sleep 0.3; exit ${exit}`, 'sh', file];

    const first = await idem(['run', '--key', 'job', '--store', store, '--json', '--', ...cmd('first')], o);
    expect(first.stderr).not.toMatch(/idem: [A-Z_]+:/);
    expect(first.json).toMatchObject({ status: 'succeeded', outcome: 'acquired', exit_code: 0 });
    const replay = await idem(['run', '--key', 'job', '--store', store, '--json', '--', ...cmd('replay')], o);
    expect(replay.json).toMatchObject({ status: 'skipped_idempotent', skipped_by_run_id: first.json.run_id });

    const failed = await idem(['run', '--key', 'flaky', '--store', store, '--json', '--', ...cmd('fail', 5)], o);
    expect(failed.json).toMatchObject({ status: 'failed', exit_code: 5 });
    const retried = await idem(['run', '--key', 'flaky', '--store', store, '--json', '--', ...cmd('retry')], o);
    expect(retried.json).toMatchObject({ status: 'succeeded', attempt: 2 });

    const race = await Promise.all([1, 2, 3].map(() => idem(['run', '--key', 'race', '--store', store, '--json', '--', ...cmd('race')], o)));
    expect(race.filter((r) => r.json.status === 'succeeded')).toHaveLength(1);
    expect(lines(file)).toEqual(['first', 'fail', 'retry', 'race']);

    const status = await idem(['status', 'job', '--store', store, '--json'], o);
    expect(status.json.record).toMatchObject({ key: 'job', status: 'succeeded', run_id: first.json.run_id });
    const list = await idem(['list', '--store', store, '--json'], o);
    expect(list.json.records.map((r: { key: string }) => r.key).sort()).toEqual(['flaky', 'job', 'race']);
    expect((await idem(['check', '--store', store], o)).code).toBe(0);
    expect((await idem(['sweep', '--store', store], o)).code).toBe(0);
    expect((await idem(['release', 'job', '--force', '--store', store], o)).code).toBe(0);
    const rerun = await idem(['run', '--key', 'job', '--store', store, '--json', '--', 'true'], o);
    expect(rerun.json).toMatchObject({ status: 'succeeded', outcome: 'acquired' });
  });
}

/** Who holds a claim, labels you can query, claims older than an age: the same on every backend. */
function operability(name: string, url: () => string, options: () => Options) {
  it(`${name}: status names the holder; list finds by label, age and host`, async () => {
    const store = url();
    const o = options();
    // A run in progress: its record names this idem process and the command's basename only.
    const running = start(['run', '--key', 'held', '--store', store, '--label', 'team=data', '--', 'sh', '-c', 'exec sleep 60', 'secret-arg'], o);
    let status: Awaited<ReturnType<typeof idem>> | undefined;
    for (let i = 0; status?.json?.record?.status !== 'in_flight' && i < 600; i++) {
      status = await idem(['status', 'held', '--store', store, '--json'], o);
      if (status.json?.record?.status !== 'in_flight') await sleep(100);
    }
    expect(status!.json.record).toMatchObject({ status: 'in_flight', holder: { pid: running.child.pid, program: 'sh' }, labels: { team: 'data' } });
    expect(status!.json.record.holder.host).toBeTypeOf('string');
    expect(JSON.stringify(status!.json)).not.toContain('secret-arg');
    // idem forwards SIGTERM to the command (sleep, exec'd by sh) and gives the claim back.
    running.child.kill('SIGTERM');
    await running.exited;

    await idem(['run', '--key', 'tagged-1', '--store', store, '--label', 'team=data', '--label', 'night=2026-12-07', '--', 'true'], o);
    await idem(['run', '--key', 'tagged-2', '--store', store, '--label', 'team=data', '--', 'true'], o);
    await idem(['run', '--key', 'other', '--store', store, '--label', 'team=web', '--', 'true'], o);
    const data = await idem(['list', '--store', store, '--label', 'team=data', '--json'], o);
    expect(data.json.records.map((r: { key: string }) => r.key).sort()).toEqual(['tagged-1', 'tagged-2']);
    const both = await idem(['list', '--store', store, '--label', 'team=data', '--label', 'night=2026-12-07', '--json'], o);
    expect(both.json.records.map((r: { key: string }) => r.key)).toEqual(['tagged-1']);
    const host = status!.json.record.holder.host;
    const here = await idem(['list', '--store', store, '--host', host, '--json'], o);
    expect(here.json.count).toBe(3);
    const elsewhere = await idem(['list', '--store', store, '--host', `not-${host}`, '--json'], o);
    expect(elsewhere.json.count).toBe(0);

    // --older-than D lists claims made before (the list's now - D). With a gap G between the three
    // runs above and a fresh one, D = (issue time - fresh claim) + G/2 lists exactly the three
    // whenever the list reads its clock within G/2 of being issued; a run slower than that proves
    // nothing either way and is tried again (the premise is checked, not assumed).
    const gap = 6_000;
    await sleep(gap);
    await idem(['run', '--key', 'fresh', '--store', store, '--', 'true'], o);
    const freshAt = Date.parse((await idem(['status', 'fresh', '--store', store, '--json'], o)).json.record.claimed_at);
    let judged = false;
    for (let i = 0; i < 20 && !judged; i++) {
      const issued = Date.now();
      const old = await idem(['list', '--store', store, '--older-than', `${issued - freshAt + gap / 2}ms`, '--json'], o);
      if (Date.now() - issued > gap / 2) continue;
      judged = true;
      expect(old.json.records.map((r: { key: string }) => r.key).sort()).toEqual(['other', 'tagged-1', 'tagged-2']);
    }
    expect(judged, 'a list answered within 3 s at least once in 20 tries').toBe(true);
  });
}

describe('lmdb: (embedded)', () => {
  operability('lmdb', freshStore, () => ({}));
});

describe.skipIf(!redis)('redis:// (Valkey/Redis standalone)', () => {
  const url = () => `${redis!.IDEM_TEST_REDIS_URL}?prefix=${unique()}:`;
  operability('redis', url, () => ({}));
  scheme('redis', url, () => ({}));
  it('valkey:// is the same store', async () => {
    const prefix = `${unique()}:`;
    const redisUrl = `${redis!.IDEM_TEST_REDIS_URL}?prefix=${prefix}`;
    const valkeyUrl = redisUrl.replace(/^redis/, 'valkey');
    const first = await idem(['run', '--key', 'k', '--store', redisUrl, '--json', '--', 'true']);
    const second = await idem(['run', '--key', 'k', '--store', valkeyUrl, '--json', '--', 'true']);
    expect(second.json).toMatchObject({ status: 'skipped_idempotent', skipped_by_run_id: first.json.run_id });
  });
  it('an unreachable server is BACKEND_UNAVAILABLE (exit 69), retryable', async () => {
    const r = await idem(['run', '--key', 'k', '--store', 'redis://127.0.0.1:1', '--json', '--', 'true']);
    expect(r.code).toBe(69);
    expect(r.json).toMatchObject({ status: 'error', error: { code: 'BACKEND_UNAVAILABLE' } });
  });
});

describe.skipIf(!redisCluster)('redis:// cluster (cluster=true&nodes=...)', () => {
  const url = () => {
    const [first, ...rest] = redisCluster!.IDEM_TEST_REDIS_CLUSTER!.split(',');
    return `redis://${first}?cluster=true${rest.length ? `&nodes=${rest.join(',')}` : ''}&prefix=${unique()}:`;
  };
  scheme('redis cluster', url, () => ({}));
  operability('redis cluster', url, () => ({}));
});

describe.skipIf(!s3)('s3:// (MinIO)', () => {
  const url = () => `s3://${s3!.IDEM_TEST_S3_BUCKET}/${unique()}?endpoint=${encodeURIComponent(s3!.IDEM_TEST_S3_ENDPOINT!)}&region=${s3!.IDEM_TEST_S3_REGION}`;
  const options = () => ({ env: { AWS_ACCESS_KEY_ID: s3!.IDEM_TEST_S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: s3!.IDEM_TEST_S3_SECRET_KEY } });
  // MinIO ignores If-Match on DELETE: sweep needs the explicit opt-in (the s3 README's compatibility table).
  scheme('s3', () => `${url()}&unconditional_sweep=true`, options);
  operability('s3', url, options);
  it('sweep refuses without unconditional_sweep=true, and says why (UNSAFE_BACKEND, exit 78)', async () => {
    const r = await idem(['sweep', '--store', url(), '--json'], options());
    expect(r.code).toBe(78);
    expect(r.json).toMatchObject({ error: { code: 'UNSAFE_BACKEND' } });
    expect(r.stderr + JSON.stringify(r.json ?? {})).toContain('If-Match');
  });
});

describe.skipIf(!versitygw)('s3:// (versitygw)', () => {
  const url = () =>
    `s3://${versitygw!.IDEM_TEST_VERSITYGW_BUCKET}/${unique()}?endpoint=${encodeURIComponent(versitygw!.IDEM_TEST_VERSITYGW_ENDPOINT!)}&region=${versitygw!.IDEM_TEST_VERSITYGW_REGION}`;
  const options = () => ({
    env: { AWS_ACCESS_KEY_ID: versitygw!.IDEM_TEST_VERSITYGW_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: versitygw!.IDEM_TEST_VERSITYGW_SECRET_KEY },
  });
  scheme('s3 versitygw', url, options);
  operability('s3 versitygw', url, options);
});

describe.skipIf(!gcs)('gs:// (fake-gcs-server)', () => {
  const url = () => `gs://${gcs!.IDEM_TEST_GCS_BUCKET}/${unique()}`;
  const options = () => ({ env: { STORAGE_EMULATOR_HOST: gcs!.STORAGE_EMULATOR_HOST } });
  scheme('gcs', url, options);
  operability('gcs', url, options);
});

describe.skipIf(!postgres)('postgres:// (PostgreSQL)', () => {
  // A table of its own per story, created at open (create_schema=true).
  const url = () => `${postgres!.IDEM_TEST_POSTGRES_URL}?table=${unique().replaceAll('-', '_')}&create_schema=true`;
  scheme('postgres', url, () => ({}));
  operability('postgres', url, () => ({}));
  it('postgresql:// is the same store', async () => {
    const pgUrl = url();
    const first = await idem(['run', '--key', 'k', '--store', pgUrl, '--json', '--', 'true']);
    const second = await idem(['run', '--key', 'k', '--store', pgUrl.replace(/^postgres:/, 'postgresql:'), '--json', '--', 'true']);
    expect(second.json).toMatchObject({ status: 'skipped_idempotent', skipped_by_run_id: first.json.run_id });
  });
  it('an unreachable server is BACKEND_UNAVAILABLE (exit 69), retryable; the password is never shown', async () => {
    const r = await idem(['run', '--key', 'k', '--store', 'postgres://idem:hunter2-secret@127.0.0.1:1/db', '--json', '--', 'true']);
    expect(r.code).toBe(69);
    expect(r.json).toMatchObject({ status: 'error', error: { code: 'BACKEND_UNAVAILABLE' } });
    expect(r.stdout + r.stderr).not.toContain('hunter2-secret');
  });
});
