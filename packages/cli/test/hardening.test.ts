// Regression tests for the CLI items of the hardening review: bad bytes in keys,
// prototype names, long leases, store faults, spawn failures, a failing stderr,
// terminal escapes, and signals. Each spawns the built binary against real stores.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deriveKey } from '@idem/core';
import { tempDir } from '@idem/test-fixtures';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, freshKey, freshStore, idem, lines, RUN_REPORT_KEYS, start, until, type Result } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const work = tempDir('idem-cli-hard-');
/** Each test spawns idem several times; a loaded machine gets the time it needs (no speed is asserted). */
const sh = (script: string, ...args: string[]) => ['sh', '-c', script, 'sh', ...args];

/** Runs idem through `sh -c`, so that argv and env can hold bytes a JS string cannot (printf '\351'). */
function idemSh(script: string, env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], {
      cwd: tempDir('idem-cli-hard-cwd-'),
      env: { PATH: process.env.PATH, NO_COLOR: '1', NODE: process.execPath, BIN, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      let json: unknown;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch (error) {
        if (!(error instanceof SyntaxError)) throw error;
      }
      resolve({ code, signal, stdout, stderr, json });
    });
  });
}

function oneErrorLine(stderr: string, code: string) {
  const all = stderr.split('\n').filter(Boolean);
  expect(all, stderr).toHaveLength(1);
  expect(all[0]).toMatch(new RegExp(`^idem: ${code}: \\S`));
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
};

describe('keys idem cannot read exactly are refused (issue 9 item 1)', () => {
  it('--key with invalid UTF-8 is INVALID_KEY (exit 64), so caf\\xe9 and caf\\xe8 never alias', async () => {
    const store = freshStore();
    for (const byte of ['351', '350']) {
      const r = await idemSh(`exec "$NODE" "$BIN" run --key "$(printf 'caf\\${byte}')" --store ${store} --json -- true`);
      expect(r.code).toBe(64);
      oneErrorLine(r.stderr, 'INVALID_KEY');
      expect(r.stderr).toContain('idem key');
      expect(r.stdout).toBe('');
    }
    const eq = await idemSh(`exec "$NODE" "$BIN" status "--key=$(printf 'caf\\351')" --store ${store}`);
    expect(eq.code).toBe(64);
    const pos = await idemSh(`exec "$NODE" "$BIN" status "$(printf 'caf\\351')" --store ${store}`);
    expect(pos.code).toBe(64);
    oneErrorLine(pos.stderr, 'INVALID_KEY');
    // A real U+FFFD (valid UTF-8, EF BF BD) is an ordinary character: the raw bytes show it.
    const real = await idemSh(`exec "$NODE" "$BIN" run --key "$(printf 'caf\\357\\277\\275')" --store ${store} --json -- true`);
    expect(real.code).toBe(0);
    expect(real.json).toMatchObject({ status: 'succeeded', key: 'caf\uFFFD' });
  });

  it('IDEM_KEY with invalid UTF-8 is INVALID_KEY too; a real U+FFFD in it is accepted', async () => {
    const store = freshStore();
    const bad = await idemSh(`IDEM_KEY="$(printf 'caf\\351')" exec "$NODE" "$BIN" run --store ${store} --json -- true`);
    expect(bad.code).toBe(64);
    oneErrorLine(bad.stderr, 'INVALID_KEY');
    expect(bad.stderr).toContain('IDEM_KEY');
    const real = await idemSh(`IDEM_KEY="$(printf 'caf\\357\\277\\275')" exec "$NODE" "$BIN" run --store ${store} --json -- true`);
    expect(real.code).toBe(0);
    expect(real.json.key).toBe('caf\uFFFD');
  });

  it('idem key refuses invalid UTF-8 in a name or param (the derived keys would alias)', async () => {
    const name = await idemSh(`exec "$NODE" "$BIN" key "$(printf 'job\\351')"`);
    expect(name.code).toBe(64);
    oneErrorLine(name.stderr, 'INVALID_ARGUMENT');
    const param = await idemSh(`exec "$NODE" "$BIN" key job --param "id=$(printf '\\377')"`);
    expect(param.code).toBe(64);
    const hex = await idemSh(`exec "$NODE" "$BIN" key job --param "id=$(printf '\\377' | od -An -tx1 | tr -d ' \\n')"`);
    expect(hex.code).toBe(0);
    expect(hex.stdout).toBe(`${deriveKey('default', 'job', { id: 'ff' })}\n`);
  });
});

describe('idem key --param (issue 9 item 2)', () => {
  it('__proto__ is a parameter like any other (a null-prototype map), and a repeated name is a usage error', async () => {
    const plain = await idem(['key', 'job']);
    const proto = await idem(['key', 'job', '--param', '__proto__=a', '--json']);
    expect(proto.code).toBe(0);
    const params: Record<string, string> = Object.create(null);
    // biome-ignore lint/complexity/useLiteralKeys: the key under test, spelled as the CLI receives it
    // biome-ignore lint/suspicious/noProto: a null-prototype map, where __proto__ is an ordinary key
    params['__proto__'] = 'a';
    expect(proto.json.key).toBe(deriveKey('default', 'job', params));
    expect(proto.json.key).not.toBe(plain.stdout.trim());
    expect(Object.keys(proto.json.params)).toEqual(['__proto__']);
    const other = await idem(['key', 'job', '--param', '__proto__=b']);
    expect(other.stdout.trim()).not.toBe(proto.json.key);
    const twice = await idem(['key', 'job', '--param', '__proto__=a', '--param', '__proto__=b']);
    expect(twice.code).toBe(64);
    oneErrorLine(twice.stderr, 'USAGE');
  });
});

describe('leases longer than a Node timer (issue 9 item 3)', () => {
  it('--lease 75d does not renew in a loop (renewals counted by the stored lease deadline)', async () => {
    const store = freshStore();
    const key = freshKey('long');
    const file = join(work, key);
    const run = start([
      'run',
      '--key',
      key,
      '--store',
      store,
      '--lease',
      '75d',
      '--retention',
      '90d',
      '--json',
      '--',
      ...sh('echo started >> "$1"; sleep 1.5', file),
    ]);
    await until(() => lines(file).length === 1, 15_000, 'the command to start');
    // Every renewal moves lease_expires_at; a timer overflow renews every millisecond.
    const deadlines = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const s = await idem(['status', key, '--store', store, '--json']);
      if (s.json.record.status === 'in_flight') deadlines.add(s.json.record.lease_expires_at);
    }
    const r = await run.done;
    expect(r.json).toMatchObject({ status: 'succeeded', exit_code: 0 });
    expect(r.stderr).not.toContain('TimeoutOverflowWarning');
    expect(deadlines.size).toBeLessThanOrEqual(1);
    const record = (await idem(['status', key, '--store', store, '--json'])).json.record;
    expect(record.status).toBe('succeeded');
  });
});

describe('store faults end in the report (issue 9 item 8)', () => {
  it('an untyped store error at commit (ENOSPC, plus a stray rejection) is BACKEND_UNAVAILABLE with the JSON report', async () => {
    const store = freshStore();
    const key = freshKey('enospc');
    const r = await idem(['run', '--key', key, '--store', store, '--json', '--', 'true'], {
      nodeArgs: ['--import', join(here, 'fixtures', 'store-fault.mjs')],
    });
    expect(r.code).toBe(69);
    expect(Object.keys(r.json).sort()).toEqual(RUN_REPORT_KEYS);
    expect(r.json).toMatchObject({ status: 'error', exit_code: 69, outcome: 'acquired', error: { code: 'BACKEND_UNAVAILABLE' } });
    expect(r.json.error.message).toContain('No space left on device');
    expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
    expect(r.stderr).toMatch(/^idem: BACKEND_UNAVAILABLE: /m);
  });

  // A real full disk: a 2 MiB tmpfs in a private mount namespace, filled up after the first run.
  const canMount =
    process.platform === 'linux' &&
    spawnSync('unshare', ['--user', '--map-root-user', '--mount', 'sh', '-c', 'mount -t tmpfs -o size=64k none /mnt']).status === 0;
  if (!canMount) console.warn('idem CLI: unshare/tmpfs unavailable here: the real ENOSPC test is skipped (the fault-injection test above still runs)');
  it.skipIf(!canMount)('a real full disk (tmpfs) under --json: BACKEND_UNAVAILABLE, exit 69, the report, no stack trace', async () => {
    const mnt = tempDir('idem-cli-tmpfs-');
    const script = [
      `mount -t tmpfs -o size=2m none ${mnt}`,
      `"$NODE" "$BIN" run --key a --store lmdb:${mnt}/db -- true >/dev/null 2>&1 || exit 90`,
      `dd if=/dev/zero of=${mnt}/fill bs=4k 2>/dev/null`,
      `exec "$NODE" "$BIN" run --key b --store lmdb:${mnt}/db --json -- echo ran`,
    ].join('\n');
    const r = await idemSh(`exec unshare --user --map-root-user --mount sh -c '${script}'`);
    expect(r.code).toBe(69);
    expect(r.json).toMatchObject({ status: 'error', exit_code: 69, error: { code: 'BACKEND_UNAVAILABLE' } });
    // lmdb-js prints the native error itself (console.error); what must not appear is a crash of idem.
    expect(r.stderr).not.toContain('Node.js v');
    expect(r.stderr).toMatch(/^idem: BACKEND_UNAVAILABLE: /m);
    expect(r.stdout).not.toContain('ran');
  });
});

describe('commands that cannot start leave the key unclaimed (issue 9 item 9)', () => {
  it('a missing command and a script whose #! interpreter is missing: 127, key released, a later run executes', async () => {
    const store = freshStore();
    const key = freshKey('interp');
    const script = join(work, `${key}.sh`);
    writeFileSync(script, '#!/nonexistent/interp\necho never\n');
    chmodSync(script, 0o755);
    const file = join(work, key);

    const interp = await idem(['run', '--key', key, '--store', store, '--dedup-on', 'any', '--json', '--', script]);
    expect(interp.code).toBe(127);
    expect(interp.json).toMatchObject({ status: 'failed', exit_code: 127, error: { code: 'SPAWN_FAILED' } });
    expect(interp.stderr).toMatch(/^idem: SPAWN_FAILED: .*interpreter/m);
    expect((await idem(['status', key, '--store', store])).code).toBe(1); // released: no record

    const missing = await idem(['run', '--key', key, '--store', store, '--dedup-on', 'any', '--json', '--', 'idem-no-such-command']);
    expect(missing.code).toBe(127);
    expect(missing.json).toMatchObject({ status: 'failed', exit_code: 127, outcome: null, error: { code: 'SPAWN_FAILED' } });
    expect((await idem(['status', key, '--store', store])).code).toBe(1);

    // Under --dedup-on any a recorded failure would be final: the key must still run.
    const ok = await idem(['run', '--key', key, '--store', store, '--dedup-on', 'any', '--json', '--', ...sh('echo ran >> "$1"', file)]);
    expect(ok.json).toMatchObject({ status: 'succeeded' });
    expect(lines(file)).toEqual(['ran']);
  });
});

describe("idem's own stderr failing (issue 9 item 10)", () => {
  it('2>/dev/full: the command runs and the run succeeds', async () => {
    const store = freshStore();
    const key = freshKey('full');
    const marker = join(work, key);
    const full = openSync('/dev/full', 'w');
    let code: number | null;
    let stdout = '';
    try {
      const child = spawn(process.execPath, [BIN, 'run', '--key', key, '--store', store, '--json', '--', 'touch', marker], {
        cwd: work,
        env: { ...process.env, NO_COLOR: '1' },
        stdio: ['ignore', 'pipe', full],
      });
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      code = await new Promise((resolve) => child.once('close', (c) => resolve(c)));
    } finally {
      closeSync(full);
    }
    expect(code).toBe(0);
    expect(existsSync(marker)).toBe(true);
    expect(JSON.parse(stdout)).toMatchObject({ status: 'succeeded', exit_code: 0 });
    expect((await idem(['status', key, '--store', store, '--json'])).json.record.status).toBe('succeeded');
  });
});

describe('human output escapes control characters', () => {
  it('status, list and run lines never print a stored ESC sequence raw', async () => {
    const store = freshStore();
    const key = `clear\u001b[2J\u009b31m\u202eme`;
    const run = await idem(['run', '--key', key, '--store', store, '--fingerprint', 'fp\u001b]0;title\u0007', '--', 'true']);
    expect(run.code).toBe(0);
    for (const args of [['status', key], ['list'], ['release', key, '--force']]) {
      const r = await idem([...args, '--store', store]);
      for (const text of [r.stdout, r.stderr, run.stderr]) {
        // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what must not appear
        expect(text).not.toMatch(/[\u001b\u0007\u009b\u202e]/);
      }
    }
    const status = await idem(['status', key, '--store', store, '--json']);
    expect(status.code).toBe(1); // released above
    const again = await idem(['run', '--key', key, '--store', store, '--fingerprint', 'fp\u001b]0;title\u0007', '--', 'true']);
    const human = await idem(['status', key, '--store', store]);
    expect(again.code).toBe(0);
    expect(human.stdout).toContain('clear\\u001b[2J\\u009b31m\\u202eme');
    expect(human.stdout).toMatch(/^fingerprint\s+fp\\u001b\]0;title\\u0007$/m);
    // JSON keeps the exact key.
    expect((await idem(['status', key, '--store', store, '--json'])).json.record.key).toBe(key);
  });
});

describe('--lease lower bound and retention against lease', () => {
  it.each([
    [['--lease', '500ms']],
    [['--lease', '1']],
    [['--lease', '10m', '--retention', '5m']],
    [['--retention', '1m']], // shorter than the default 5m lease
  ])('idem run %j is a usage error before any I/O', async (flags) => {
    const cwd = tempDir('idem-cli-hard-bad-');
    const r = await idem(['run', '--key', 'k', ...flags, '--', 'true'], { cwd });
    expect(r.code).toBe(64);
    oneErrorLine(r.stderr, 'USAGE');
    expect(existsSync(join(cwd, '.idem'))).toBe(false);
  });
});

describe('operator commands when the store fails', () => {
  it('status, list, check, sweep and release --json print one JSON error object on stdout (exit 69)', async () => {
    // An LMDB "directory" that is a regular file: the store exists but cannot be opened.
    const file = join(work, `not-a-dir-${process.pid}`);
    writeFileSync(file, 'x');
    const store = `lmdb:${file}`;
    const runs = await Promise.all([
      idem(['status', 'k', '--store', store, '--json']),
      idem(['list', '--store', store, '--json']),
      idem(['check', '--store', store, '--json']),
      idem(['sweep', '--store', store, '--json']),
      idem(['release', 'k', '--force', '--store', store, '--json']),
    ]);
    for (const r of runs) {
      expect(r.code, r.stderr).toBe(69);
      expect(r.json).toMatchObject({ store: `lmdb://${file}`, error: { code: 'BACKEND_UNAVAILABLE' } });
      expect(r.stdout.trim().split('\n')).toHaveLength(1);
      oneErrorLine(r.stderr, 'BACKEND_UNAVAILABLE');
    }
    expect(runs[0]!.json).toMatchObject({ key: 'k', found: null, record: null });
  });

  it('sweep against an unreachable Redis exits 69', async () => {
    const r = await idem(['sweep', '--store', 'redis://127.0.0.1:1', '--json']);
    expect(r.code).toBe(69);
    expect(r.json).toMatchObject({ error: { code: 'BACKEND_UNAVAILABLE' } });
  });
});

describe('signals', () => {
  const orphans: number[] = [];
  afterAll(() => {
    for (const pid of orphans) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });

  it('SIGUSR1 opens no inspector: it is passed on to the command and the run goes on', async () => {
    const store = freshStore();
    const key = freshKey('usr1');
    const file = join(work, key);
    const run = start([
      'run',
      '--key',
      key,
      '--store',
      store,
      '--json',
      '--',
      ...sh('trap "echo usr1 >> \\"$1\\"" USR1; echo started >> "$1"; sleep 2 & wait; wait', file),
    ]);
    await until(() => lines(file).length === 1, 15_000, 'the command to start');
    run.child.kill('SIGUSR1');
    const r = await run.done;
    expect(r.stderr).not.toMatch(/inspector|Debugger/i);
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({ status: 'succeeded' });
    expect(lines(file)).toEqual(['started', 'usr1']);
  });

  it('SIGQUIT is forwarded like SIGTERM: the command stops, the claim is released, nothing is orphaned', async () => {
    const store = freshStore();
    const key = freshKey('quit');
    const file = join(work, key);
    const run = start(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo $$ >> "$1"; exec sleep 20', file)]);
    await until(() => lines(file).length === 1, 15_000, 'the command to start');
    const pid = Number(lines(file)[0]);
    orphans.push(pid);
    run.child.kill('SIGQUIT');
    const r = await run.done;
    expect(r.signal).toBeNull();
    expect(r.code).toBe(131);
    expect(r.json).toMatchObject({ status: 'cancelled', exit_code: 131, signal: 'SIGQUIT' });
    await until(() => !alive(pid), 15_000, 'the command to be gone');
    expect((await idem(['status', key, '--store', store])).code).toBe(1);
  });

  it('SIGTERM while the store does not answer ends the run as cancelled (143), not BACKEND_UNAVAILABLE', async () => {
    // A server that accepts connections and never answers: idem waits on the store.
    const sockets: Socket[] = [];
    let connected = 0;
    const server = createServer((socket) => {
      connected++;
      sockets.push(socket);
      socket.on('data', () => undefined);
      socket.on('error', () => undefined); // idem going away resets the connection
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const run = start(['run', '--key', 'k', '--store', `redis://127.0.0.1:${port}`, '--json', '--', 'true']);
      await until(() => connected > 0, 15_000, 'idem to connect');
      run.child.kill('SIGTERM');
      const r = await run.done;
      expect(r.code).toBe(143);
      expect(r.json).toMatchObject({ status: 'cancelled', exit_code: 143, signal: 'SIGTERM', error: null });
      expect(r.stderr).toContain('cancelled');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('packaging', () => {
  it('--version is the version in package.json', async () => {
    // A copy of the CLI whose package.json says another version, as a release bump would.
    const app = tempDir('idem-cli-version-');
    mkdirSync(join(app, 'node_modules', '@idem'), { recursive: true });
    for (const name of ['core', 'lmdb']) symlinkSync(join(here, '..', '..', name), join(app, 'node_modules', '@idem', name), 'dir');
    cpSync(dirname(BIN), join(app, 'cli', 'dist'), { recursive: true });
    writeFileSync(join(app, 'cli', 'package.json'), JSON.stringify({ name: '@idem/cli', version: '9.8.7', type: 'module' }));
    const r = await idem(['--version'], { bin: join(app, 'cli', 'dist', 'bin.js') });
    expect(r.stdout).toBe('9.8.7\n');
    const own = JSON.parse(readFileSync(join(here, '..', 'package.json'), 'utf8')).version;
    expect((await idem(['--version'])).stdout).toBe(`${own}\n`);
  });

  // tsc takes seconds of CPU: a loaded machine gets the time it needs (no speed is asserted).
  it('the shipped .d.ts files typecheck under skipLibCheck: false and exactOptionalPropertyTypes', async () => {
    const root = join(here, '..', '..', '..');
    const dir = tempDir('idem-cli-dts-');
    const dts = (pkg: string) =>
      spawnSync('sh', ['-c', `ls ${join(root, 'packages', pkg, 'dist')}/*.d.ts`], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter(Boolean);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          exactOptionalPropertyTypes: true,
          skipLibCheck: false,
          noEmit: true,
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2024',
          lib: ['ES2024'],
          types: ['node'],
          typeRoots: [join(root, 'node_modules', '@types')],
        },
        // errors.d.ts re-exports @idem/core/report, so core's report types are checked too.
        files: dts('cli'),
      }),
    );
    const tsc = await idem(['-p', dir], { bin: join(root, 'node_modules', 'typescript', 'bin', 'tsc') });
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.code).toBe(0);
  });
});
