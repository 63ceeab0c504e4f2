// Stress for the cross-process guarantee (not a test: long, and meant to run
// beside load). Each round, 8 processes open one new store at once and claim
// the same 50 keys while 2 CPU hogs run; a round fails if a key has two
// winners or none, or a process fails to open. Usage:
//   node bench/stress.mjs [rounds=50] [new|existing] [module=@idem/lmdb]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const rounds = Number(process.argv[2] ?? 50);
const existing = process.argv[3] === 'existing';
const module = process.argv[4] ?? '@idem/lmdb';
const { createLmdbStore } = await import(module);
const script = `
  const { createLmdbStore } = await import(${JSON.stringify(import.meta.resolve(module))});
  const store = await createLmdbStore({ path: process.argv[1] });
  const won = [];
  for (let i = 0; i < 50; i++) if ((await store.claim('k' + i, { leaseMs: 600000 })).outcome === 'acquired') won.push(i);
  await store.close();
  process.stdout.write(JSON.stringify(won));`;
const root = mkdtempSync(join(tmpdir(), 'idem-stress-'));
const hogs = [0, 1].map(() => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
const failed = { twoWinners: 0, noWinner: 0, openFailures: 0 };
try {
  for (let round = 0; round < rounds; round++) {
    const path = join(root, `r${round}`);
    if (existing) await (await createLmdbStore({ path })).close();
    const results = await Promise.all(
      Array.from(
        { length: 8 },
        () =>
          new Promise((resolve) => {
            const child = spawn(process.execPath, ['--input-type=module', '-e', script, path], { stdio: ['ignore', 'pipe', 'pipe'] });
            let out = '';
            let err = '';
            child.stdout.on('data', (d) => (out += d));
            child.stderr.on('data', (d) => (err += d));
            child.once('exit', (code) => {
              if (code !== 0) console.log(`round ${round}: a process exited ${code}: ${err.slice(0, 300)}`);
              resolve(code === 0 ? JSON.parse(out) : undefined);
            });
          }),
      ),
    );
    const counts = new Map();
    for (const i of results.filter(Boolean).flat()) counts.set(i, (counts.get(i) ?? 0) + 1);
    if (results.includes(undefined)) failed.openFailures++;
    else if (counts.size !== 50) failed.noWinner++, console.log(`round ${round}: a key without winner`);
    if ([...counts.values()].some((c) => c > 1)) failed.twoWinners++, console.log(`round ${round}: a key with two winners`);
    rmSync(path, { recursive: true, force: true });
  }
} finally {
  for (const hog of hogs) hog.kill();
  rmSync(root, { recursive: true, force: true });
}
console.log(JSON.stringify({ rounds, store: existing ? 'existing' : 'new', ...failed }));
