// LMDB-specific promises beyond the shared suite: durability under kill -9,
// atomicity across worker threads, schema guard, and validation before disk I/O.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { open } from 'lmdb';
import { describe, expect, it } from 'vitest';
import { tempDir } from '@idem/test-fixtures';
import { createLmdbStore } from '../src/index.js';

const openStore = new URL('./open-store.mjs', import.meta.url).href;

describe('@idem/lmdb', () => {
  it('an acknowledged claim survives kill -9 of the process that made it', async () => {
    const path = tempDir();
    const script = `
      const { default: open } = await import(${JSON.stringify(openStore)});
      const store = await open({ path: ${JSON.stringify(path)}, durability: 'commit' });
      const got = await store.claim('survivor', { runId: 'victim', leaseMs: 600000 });
      process.stdout.write(got.outcome + '\\n');
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const said = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString())));
    expect(said.trim()).toBe('acquired');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const store = await createLmdbStore({ path });
    expect(await store.get('survivor')).toMatchObject({ status: 'in_flight', runId: 'victim' });
    expect((await store.claim('survivor')).outcome).toBe('in_flight');
    await store.close();
  });

  it('4 worker threads racing over 100 keys: exactly one winner per key', async () => {
    const path = tempDir();
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      (async () => {
        const { default: open } = await import(workerData.openStore);
        const store = await open({ path: workerData.path });
        const won = [];
        await Promise.all(Array.from({ length: 100 }, async (_, i) => {
          const got = await store.claim('k' + i, { leaseMs: 600000 });
          if (got.outcome === 'acquired') won.push(i);
        }));
        await store.close();
        parentPort.postMessage(won);
      })();`;
    const results = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<number[]>((resolve, reject) => {
            const w = new Worker(code, { eval: true, workerData: { path, openStore } });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      ),
    );
    const wins = results.flat().sort((a, b) => a - b);
    expect(wins).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  // The race that found lost claims (docs/decisions/lmdb-write-turns.md);
  // bench/stress.mjs runs it hundreds of times beside CPU hogs. Three rounds here.
  it('8 processes creating one store at once: all open it, and each key has one winner', async () => {
    const script = `
      const { default: open } = await import(${JSON.stringify(openStore)});
      const store = await open({ path: process.argv[1] });
      const won = [];
      for (let i = 0; i < 50; i++) if ((await store.claim('k' + i, { leaseMs: 600000 })).outcome === 'acquired') won.push(i);
      await store.close();
      process.stdout.write(JSON.stringify(won));`;
    for (let round = 0; round < 3; round++) {
      const path = join(tempDir(), 'fresh');
      const runs = Array.from({ length: 8 }, () => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        return new Promise<number[]>((resolve, reject) =>
          child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as number[]) : reject(new Error(`opener exited ${code}`)))),
        );
      });
      const wins = (await Promise.all(runs)).flat().sort((a, b) => a - b);
      expect(wins).toEqual(Array.from({ length: 50 }, (_, i) => i));
    }
  });

  it('refuses a store written with another schema version, and leaves it alone', async () => {
    const path = tempDir();
    const env = open({ path: join(path, 'idem.mdb') });
    await env.openDB({ name: 'meta' }).put('schema', 2);
    await env.close();
    await expect(createLmdbStore({ path })).rejects.toMatchObject({ code: 'CORRUPT_RECORD' });
    const again = open({ path: join(path, 'idem.mdb') });
    expect(again.openDB({ name: 'meta' }).get('schema')).toBe(2);
    await again.close();
  });

  it('rejects bad options before touching the disk', async () => {
    const path = join(tempDir(), 'never-created');
    await expect(createLmdbStore({ path, leaseMs: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(createLmdbStore({ path, durability: 'maybe' as 'flush' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(createLmdbStore({ path: '' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(existsSync(path)).toBe(false);
  });
});
