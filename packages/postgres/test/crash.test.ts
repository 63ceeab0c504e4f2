// A private PostgreSQL (scripts/servers/postgres.sh in a run directory of its own) shut down
// cleanly, then SIGKILLed with its backends, while claims and completions are under way: every
// claim and completion the store acknowledged is there after the restart (synchronous_commit on).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { IdempotencyStore } from '@idem/core';
import { expectLease } from '@idem/conformance/testing';
import { tempDir } from '@idem/test-fixtures';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresStore } from '../src/index.js';
import { findPostgres } from './server.js';

const url = await findPostgres();
const script = fileURLToPath(new URL('../../../scripts/servers/postgres.sh', import.meta.url));
const rundir = tempDir('idem-pg-crash-');
const server = (verb: string) => execFileSync('bash', [script, verb, rundir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

afterAll(() => {
  if (url) server('stop');
});

interface Acked {
  claims: Map<string, { runId: string; fence: number }>;
  completed: Set<string>;
}

/** Workers claiming and completing fresh keys until the server goes away; what the store acknowledged. */
async function load(store: IdempotencyStore, tag: string, workers: number, stopAfter: number, fault: () => void): Promise<Acked> {
  const acked: Acked = { claims: new Map(), completed: new Set() };
  let n = 0;
  let faulted = false;
  const failures: unknown[] = [];
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; ; i++) {
        const key = `${tag}-${w}-${i}`;
        try {
          const lease = expectLease(await store.claim(key, { leaseMs: 600_000 }));
          acked.claims.set(key, { runId: lease.runId, fence: lease.fence });
          await store.complete(lease, { result: key });
          acked.completed.add(key);
        } catch (error) {
          failures.push(error);
          return; // the server is gone: this worker stops
        }
        // The fault strikes while every other worker is mid-operation.
        if (++n === stopAfter && !faulted) {
          faulted = true;
          fault();
        }
      }
    }),
  );
  expect(faulted).toBe(true);
  for (const f of failures) expect(f).toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
  return acked;
}

async function expectKept(target: string, acked: Acked): Promise<void> {
  const store = await createPostgresStore({ url: target });
  for (const [key, { runId, fence }] of acked.claims) {
    const record = await store.get(key);
    expect(record, key).toMatchObject({ runId, fence });
    if (acked.completed.has(key)) expect(record, key).toMatchObject({ status: 'succeeded', result: key });
  }
  await store.close();
}

describe.skipIf(!url)('postgres: restart and SIGKILL under load', () => {
  it('loses no acknowledged claim or completion', async () => {
    const target = /export IDEM_TEST_POSTGRES_URL=(\S+)/.exec(server('start'))![1]!;
    const setup = await createPostgresStore({ url: target, createSchema: true });
    await setup.close();
    for (const [tag, fault] of [
      ['shutdown', 'shutdown'],
      ['sigkill', 'kill'],
    ] as const) {
      const store = await createPostgresStore({ url: target, timeoutMs: 2000 });
      const acked = await load(store, tag, 16, 200, () => server(fault));
      await store.close();
      server('restart');
      expect(acked.claims.size).toBeGreaterThanOrEqual(200);
      await expectKept(target, acked);
    }
  });
});
