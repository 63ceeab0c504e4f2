// Replica promotion under load, on private servers of scripts/servers/postgres.sh: a primary and a
// streaming replica. Sixteen workers claim and complete fresh keys on the primary; then a loss
// window opens the way a real failover can have one (the primary's WAL sender frozen with SIGSTOP,
// so the replica receives nothing more, for up to 100 more completions or 500 ms), the primary is
// SIGKILLed with its backends, the replica promoted, and every acknowledged key claimed again there:
//   double executions: a key acknowledged as claimed that the promoted server hands out again;
//   forgotten completions: a completion acknowledged that the promoted server does not answer.
// With synchronous replication (synchronous_standby_names = '*') both must be zero: a commit is
// acknowledged only once the replica has it, and a frozen sender holds every commit back. Without
// it the counts are printed (the README's failover table) and nothing is asserted that it does not promise.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expectLease, sleep } from '@idem/conformance/testing';
import { tempDir } from '@idem/test-fixtures';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresStore } from '../src/index.js';
import { findPostgres } from './server.js';

const url = await findPostgres();
const script = fileURLToPath(new URL('../../../scripts/servers/postgres.sh', import.meta.url));
const started: string[] = [];
const server = (verb: string, dir: string, ...rest: string[]) => {
  if (verb === 'start' || verb === 'replica') started.push(dir);
  return execFileSync('bash', [script, verb, dir, ...rest], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
};
const urlOf = (printed: string) => /export IDEM_TEST_POSTGRES_URL=(\S+)/.exec(printed)![1]!;

afterAll(() => {
  for (const dir of started) server('stop', dir);
});

/** Polls `ready` (an event, not a duration) a bounded number of times. */
async function until(what: string, ready: () => Promise<boolean> | boolean, tries = 600): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await ready()) return;
    await sleep(50);
  }
  throw new Error(`${what}: not reached`);
}

async function failover(synchronous: boolean) {
  const primaryDir = tempDir('idem-pg-primary-');
  const replicaDir = tempDir('idem-pg-replica-');
  const primary = urlOf(server('start', primaryDir));
  const setup = await createPostgresStore({ url: primary, createSchema: true });
  await setup.close();
  const promoted = urlOf(server('replica', replicaDir, primaryDir));
  const admin = new pg.Client({ connectionString: primary });
  await admin.connect();
  if (synchronous) {
    await admin.query(`ALTER SYSTEM SET synchronous_standby_names = '*'`);
    await admin.query('SELECT pg_reload_conf()');
  }
  const state = synchronous ? 'sync' : 'async';
  await until(`replica ${state}`, async () => (await admin.query('SELECT sync_state FROM pg_stat_replication')).rows.some((r) => r.sync_state === state));
  const sender = Number((await admin.query('SELECT pid FROM pg_stat_replication')).rows[0].pid);
  await admin.end();

  const store = await createPostgresStore({ url: primary, timeoutMs: 3000, poolSize: 16 });
  const claims = new Set<string>();
  const completed = new Set<string>();
  const failures: unknown[] = [];
  const workers = Promise.all(
    Array.from({ length: 16 }, async (_, w) => {
      for (let i = 0; ; i++) {
        const key = `fo-${w}-${i}`;
        try {
          const lease = expectLease(await store.claim(key, { leaseMs: 600_000 }));
          claims.add(key);
          await store.complete(lease, { result: key });
          completed.add(key);
        } catch (error) {
          failures.push(error);
          return; // the primary is gone
        }
      }
    }),
  );
  await until('100 completions', () => completed.size >= 100);
  process.kill(sender, 'SIGSTOP'); // a process of the private server this test started
  const before = completed.size;
  // The loss window: up to 100 more completions (none come when each waits for the frozen replica).
  await until('the loss window', () => completed.size >= before + 100, 10).catch(() => {});
  server('kill', primaryDir);
  await workers;
  await store.close();
  server('promote', replicaDir);
  for (const f of failures) expect(f).toMatchObject({ code: 'BACKEND_UNAVAILABLE' });

  const after = await createPostgresStore({ url: promoted });
  let doubles = 0;
  let forgotten = 0;
  for (const key of claims) {
    const outcome = await after.claim(key, { runId: 'after-failover', leaseMs: 600_000 });
    if (outcome.outcome === 'acquired' || outcome.outcome === 'adopted') doubles++;
    if (completed.has(key) && outcome.outcome !== 'completed') forgotten++;
  }
  await after.close();
  const row = {
    replication: synchronous ? 'synchronous' : 'asynchronous',
    claims: claims.size,
    completions: completed.size,
    inWindow: completed.size - before,
    doubles,
    forgotten,
  };
  console.log(`postgres failover: ${JSON.stringify(row)}`);
  return row;
}

describe.skipIf(!url)('postgres: a replica promoted after the primary is SIGKILLed under load', () => {
  it('with synchronous replication: no double execution, no forgotten completion', async () => {
    const row = await failover(true);
    expect(row.claims).toBeGreaterThanOrEqual(100);
    expect(row).toMatchObject({ doubles: 0, forgotten: 0 });
  });

  it('without it: counted (writes acknowledged while the replica received nothing are lost)', async () => {
    const row = await failover(false);
    expect(row.claims).toBeGreaterThanOrEqual(100);
  });
});
