// Faults of the files and the process around a store (issue #9): unusable paths,
// damaged data files, a full disk, read-only use, a writer killed in its turn,
// and the host's signal handling. Real files and real processes throughout;
// the filesystem cases mount a small tmpfs, which needs root.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { inCI, tempDir } from '@idem/test-fixtures';
import { expectLease } from '@idem/conformance/testing';
import { createLmdbStore, verifyLmdbStore } from '../src/index.js';

const lmdb = new URL('../dist/index.js', import.meta.url).href;

/** Runs an ES module snippet in a fresh node process; `idem` is the built @idem/lmdb. */
function node(code: string, args: string[] = [], options: { onOutput?: (out: string, child: ReturnType<typeof spawn>) => void; setpriv?: string[] } = {}) {
  const script = `const idem = await import(${JSON.stringify(lmdb)});\n${code}`;
  const argv = [process.execPath, '--input-type=module', '-e', script, ...args];
  const [cmd, ...rest] = options.setpriv ? ['setpriv', ...options.setpriv, ...argv] : argv;
  const child = spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    options.onOutput?.(stdout, child);
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
}

/** A store with `n` claimed keys, closed. */
async function storeWith(n: number): Promise<string> {
  const path = tempDir();
  const store = await createLmdbStore({ path });
  for (let i = 0; i < n; i++) await store.claim(`k${i}`, { leaseMs: 600_000 });
  await store.close();
  return path;
}

const mounts: string[] = [];
/** A tmpfs of `size` mounted at a fresh directory, or undefined (loudly) when this user may not mount. */
function tmpfs(size: string): string | undefined {
  const dir = tempDir('idem-tmpfs-');
  const done = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (done.status !== 0) {
    const why = `cannot mount a tmpfs (${(done.stderr || done.error?.message || '').trim()}): this test needs root`;
    if (inCI) throw new Error(`CI=true and ${why}`);
    console.warn(`\n!!! SKIPPING: ${why} !!!\n`);
    return undefined;
  }
  mounts.push(dir);
  return dir;
}
const remountReadOnly = (dir: string) => expect(spawnSync('mount', ['-o', 'remount,ro', dir]).status).toBe(0);
afterAll(() => {
  for (const dir of mounts) spawnSync('umount', ['-l', dir]); // lazy: a store a failed test left open must not keep it mounted
});

describe('@idem/lmdb: unusable paths fail fast with a typed error', () => {
  it('/proc/x, a file where a directory is expected, a file as parent', async () => {
    const file = join(tempDir(), 'plain');
    writeFileSync(file, 'not a directory');
    for (const path of ['/proc/x', '/proc/x/y', file, join(file, 'below'), '/dev/null']) {
      await expect(createLmdbStore({ path }), path).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    }
  });

  it('a read-only filesystem refuses a writable open, before LMDB is reached', async (ctx) => {
    const dir = tmpfs('1m');
    if (!dir) return ctx.skip();
    mkdirSync(join(dir, 'store'));
    remountReadOnly(dir);
    await expect(createLmdbStore({ path: join(dir, 'store') })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: /EROFS/ });
    await expect(createLmdbStore({ path: join(dir, 'new') })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: /EROFS/ });
  });
});

describe('@idem/lmdb: a damaged data file is CORRUPT_RECORD, never a crash, never overwritten', () => {
  const damages: Record<string, (file: string) => void> = {
    'random bytes': (file) => writeFileSync(file, randomBytes(64 * 1024)),
    truncated: (file) => truncateSync(file, 2 * 4096), // the meta pages only: every tree page is gone
    'zeroed meta pages': (file) => {
      const bytes = readFileSync(file);
      bytes.fill(0, 0, 2 * 4096);
      writeFileSync(file, bytes);
    },
    'second meta page zeroed': (file) => {
      const bytes = readFileSync(file);
      bytes.fill(0, 4096, 2 * 4096);
      writeFileSync(file, bytes);
    },
    'symlinked to a text file': (file) => {
      const text = join(tempDir(), 'notes.txt');
      writeFileSync(text, 'hello\n');
      writeFileSync(file, ''); // replaced below
      spawnSync('rm', [file]);
      symlinkSync(text, file);
    },
    empty: (file) => writeFileSync(file, ''),
    'a directory': (file) => {
      spawnSync('rm', [file]);
      mkdirSync(file);
    },
  };
  for (const [name, damage] of Object.entries(damages)) {
    it(name, async () => {
      const path = await storeWith(20);
      const file = join(path, 'idem.mdb');
      damage(file);
      const before = existsSync(file) ? readdirSync(path).map((f) => [f, safeRead(join(path, f))]) : [];
      // In a child: before the fix these killed the process (SIGSEGV, SIGBUS).
      const got = await node(
        `try { await idem.createLmdbStore({ path: process.argv[1] }); console.log('opened'); }
         catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`,
        [path],
      );
      expect(got.signal).toBeNull();
      expect(got.code).toBe(0);
      const answer = JSON.parse(got.stdout) as { code: string; message: string };
      expect(answer.code).toBe('CORRUPT_RECORD');
      expect(answer.message).toContain(file);
      expect(readdirSync(path).map((f) => [f, safeRead(join(path, f))])).toEqual(before);
    });
  }
});

describe('@idem/lmdb: damage inside the B-tree is found by verifyLmdbStore, by reads, never a crash', () => {
  // Page layout as in src/files.ts: 24-byte header (flags at 18, lower at 20), u16 node offsets
  // from 24, offsets counted from 24; a node is lo, hi, flags, ksize, key, data.
  const PSIZE = 4096;
  /** Applies `change` to every node of every page whose flags have `kind` (1 branch, 2 leaf). */
  const nodes = (kind: number, change: (b: Buffer, node: number) => void) => (file: string) => {
    const b = readFileSync(file);
    for (let o = 2 * PSIZE; o + PSIZE <= b.length; o += PSIZE) {
      if ((b.readUInt16LE(o + 18) & kind) === 0) continue;
      for (let i = 0; i < b.readUInt16LE(o + 20) / 2; i++) change(b, o + 24 + b.readUInt16LE(o + 24 + 2 * i));
    }
    writeFileSync(file, b);
  };
  const damages: Record<string, (file: string) => void> = {
    // A reader copying this value runs 2 GB past the page: SIGSEGV, or SIGBUS past the file's end.
    "a value's size beyond its page": nodes(2, (b, node) => b.writeUInt16LE(0x7fff, node + 2)),
    'a child page past the end of the file': nodes(1, (b, node) => b.writeUInt16LE(0x7fff, node + 2)),
    'node offsets out of their page': (file) => {
      const b = readFileSync(file);
      for (let o = 2 * PSIZE; o + PSIZE <= b.length; o += PSIZE) if (b.readUInt16LE(o + 20) > 0) b.writeUInt16LE(0xfff0, o + 24);
      writeFileSync(file, b);
    },
  };
  it('a sound store passes, large values and deleted records included', async () => {
    const path = await storeWith(300);
    const store = await createLmdbStore({ path });
    for (let i = 0; i < 40; i++) await store.complete(expectLease(await store.claim(`big${i}`)), { result: 'x'.repeat(20_000) });
    for (let i = 0; i < 300; i += 3) await store.delete(`k${i}`);
    await store.close();
    expect((await verifyLmdbStore(path)).pages).toBeGreaterThan(40);
  });
  for (const [name, damage] of Object.entries(damages)) {
    it(name, async () => {
      const path = await storeWith(300);
      const file = join(path, 'idem.mdb');
      damage(file);
      const before = readFileSync(file).toString('base64');
      const got = await node(
        `try { await idem.verifyLmdbStore(process.argv[1]); console.log('{"code":"none"}'); }
         catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`,
        [path],
      );
      expect(got.signal).toBeNull();
      const answer = JSON.parse(got.stdout) as { code: string; message: string };
      expect(answer).toMatchObject({ code: 'CORRUPT_RECORD', message: expect.stringMatching(/page \d+ is damaged/) });
      expect(answer.message).toContain(file);
      expect(readFileSync(file).toString('base64')).toBe(before);
    });
  }
});

function safeRead(file: string): string {
  try {
    return readFileSync(file).toString('base64');
  } catch (error) {
    return `unreadable: ${(error as NodeJS.ErrnoException).code}`; // a directory or a dangling link: compared by name
  }
}

describe('@idem/lmdb: a full disk', () => {
  it('ENOSPC on commit is BACKEND_UNAVAILABLE, the process lives on, and earlier records are intact', async (ctx) => {
    const dir = tmpfs('256k');
    if (!dir) return ctx.skip();
    const path = join(dir, 'store');
    const got = await node(
      `const store = await idem.createLmdbStore({ path: process.argv[1] });
       let n = 0, error;
       try { for (;; n++) await store.claim('key-' + n, { leaseMs: 600000 }); } catch (e) { error = e; }
       const burst = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => store.claim('burst-' + i)));
       await new Promise((r) => setTimeout(r, 50)); // an unhandled rejection would end the process here
       console.log(JSON.stringify({ n, code: error.code, message: error.message, burst: burst.map((r) => r.reason?.code ?? r.value.outcome) }));
       await store.close();`,
      [path],
    );
    expect(got.signal).toBeNull();
    expect(got.code).toBe(0);
    const answer = JSON.parse(got.stdout) as { n: number; code: string; message: string; burst: string[] };
    expect(answer.n).toBeGreaterThan(10);
    expect(answer.code).toBe('BACKEND_UNAVAILABLE');
    // ENOSPC, or EIO when the full tmpfs fails a page's write-back (where the disk fills depends on the records' size).
    expect(answer.message).toMatch(/No space left on device|Input\/output error/);
    expect(new Set(answer.burst)).toEqual(new Set(['BACKEND_UNAVAILABLE']));
    const store = await createLmdbStore({ path, readOnly: true });
    for (let i = 0; i < answer.n; i++) expect(await store.get(`key-${i}`)).toMatchObject({ status: 'in_flight' });
    expect(await store.get(`key-${answer.n}`)).toBeUndefined();
    await store.close();
  });
});

describe('@idem/lmdb: readOnly', () => {
  it('reads a directory with no store as empty, and creates nothing', async () => {
    const parent = tempDir();
    const empty = join(parent, 'empty');
    mkdirSync(empty);
    for (const path of [empty, join(parent, 'missing')]) {
      const store = await createLmdbStore({ path, readOnly: true });
      expect(await store.get('k')).toBeUndefined();
      expect((await store.list()).records).toEqual([]);
      await expect(store.claim('k')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await store.close();
    }
    expect(readdirSync(empty)).toEqual([]);
    expect(existsSync(join(parent, 'missing'))).toBe(false);
  });

  it('reads a store on a read-only filesystem; writes are INVALID_ARGUMENT', async (ctx) => {
    const dir = tmpfs('4m');
    if (!dir) return ctx.skip();
    const path = join(dir, 'store');
    const writer = await createLmdbStore({ path });
    const claim = await writer.claim('job', { leaseMs: 600_000 });
    if (claim.outcome !== 'acquired') throw new Error('expected to acquire');
    await writer.complete(claim.lease, { result: 42 });
    await writer.close();
    remountReadOnly(dir);
    const store = await createLmdbStore({ path, readOnly: true });
    expect(await store.get('job')).toMatchObject({ status: 'succeeded', result: 42 });
    expect((await store.list()).records).toHaveLength(1);
    await expect(store.claim('other')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.sweep()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await store.close();
  });

  it('reads a store without write permission on its directory and data file', async () => {
    const path = await storeWith(3);
    chmodSync(join(path, 'idem.mdb'), 0o444);
    chmodSync(join(path, 'idem.mdb-lock'), 0o666); // LMDB registers readers there (see README)
    chmodSync(path, 0o555);
    try {
      // root without CAP_DAC_OVERRIDE obeys the mode bits like any user
      const drop = ['--inh-caps=-all', '--bounding-set=-dac_override,-dac_read_search', '--'];
      const got = await node(
        `const store = await idem.createLmdbStore({ path: process.argv[1], readOnly: true });
         const records = (await store.list()).records.length;
         const write = await idem.createLmdbStore({ path: process.argv[1] }).then(() => 'opened', (e) => e.code);
         console.log(JSON.stringify({ records, write }));`,
        [path],
        { setpriv: drop },
      );
      expect(got.stderr).toBe('');
      expect(JSON.parse(got.stdout)).toEqual({ records: 3, write: 'BACKEND_UNAVAILABLE' });
    } finally {
      chmodSync(path, 0o755);
    }
  });
});

describe('@idem/lmdb: processes', () => {
  // Before: the write turn was a lock directory, taken over only once 5 s stale.
  it('a writer killed with SIGKILL in the middle of its writes does not hold up the next process', async () => {
    const path = await storeWith(1);
    for (let round = 0; round < 3; round++) {
      await node(
        `const store = await idem.createLmdbStore({ path: process.argv[1] });
         let n = 0, done = 0;
         await Promise.all(Array.from({ length: 16 }, async () => {
           for (;;) { await store.claim('r${round}-' + n++); if (++done === 200) console.log('busy'); }
         }));`,
        [path],
        { onOutput: (out, child) => out.includes('busy') && child.kill('SIGKILL') },
      );
      const t0 = performance.now();
      const store = await createLmdbStore({ path });
      expect((await store.claim(`after-${round}`)).outcome).toBe('acquired');
      await store.close();
      // Not a speed figure: a stale-lock wait is at least 5 s, whatever the machine's load.
      expect(performance.now() - t0).toBeLessThan(4_000);
    }
  });

  it("importing and using @idem/lmdb leaves the host's signal handling alone", async () => {
    const path = tempDir();
    const got = await node(
      // The app's handler comes first, as an app sets it up at start: signal-exit@3 (pulled in by
      // proper-lockfile) re-raised the signal once it saw itself as the last listener, killing the app.
      `let store, got;
       process.once('SIGINT', async () => {
         await store.release(got.lease);
         await store.close();
         console.log('released');
         process.exit(0);
       });
       store = await idem.createLmdbStore({ path: process.argv[1] });
       got = await store.claim('job', { leaseMs: 600000 });
       await store.claim('other'); // a second write turn
       console.log('ready');
       setInterval(() => {}, 1000);`,
      [path],
      { onOutput: (out, child) => out === 'ready\n' && child.kill('SIGINT') },
    );
    expect(got).toMatchObject({ code: 0, signal: null });
    expect(got.stdout).toBe('ready\nreleased\n');
    const store = await createLmdbStore({ path });
    expect((await store.claim('job')).outcome).toBe('acquired');
    await store.close();
  });
});
