// Measuring for the Valkey bench: servers, one timed pass of an operation, medians and tables.
// Nothing here asserts speed: it measures and prints. It throws only when a scenario is broken.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * The servers of one kind: 'valkey' (Valkey 8) or 'redis7' (Debian's Redis 7.0). For Valkey,
 * IDEM_TEST_REDIS_URL (+ IDEM_TEST_REDIS_SENTINEL for the replica part) when set (scripts/servers.sh
 * start runs Valkey 8); else, and always for Redis 7.0, the bench starts what it needs itself: a
 * standalone server, and a primary with one replica (the replica part then uses the primary's
 * plain URL: WAIT needs a replica, not Sentinel). The replica part also gets a primary and replica
 * of its own with `appendonly yes` and `appendfsync always` (`durable`), for the fsync option.
 * `stop()` stops only what was started here.
 */
export async function servers({ needReplica, kind }) {
  const env = process.env;
  const binary = kind === 'valkey' ? valkeyServer() : redisServer();
  const dir = mkdtempSync(join(tmpdir(), `idem-bench-${kind}-`));
  const children = [];
  const stop = () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); // nothing to keep (the AOF pair's files go with dir)
    children.length = 0;
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stop); // also when the bench dies early
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      stop();
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    });
  }
  const start = async (name, extra = []) => {
    const port = await freePort();
    mkdirSync(join(dir, name));
    const child = spawn(binary, ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', join(dir, name), ...extra], {
      stdio: 'ignore',
    });
    children.push(child);
    await waitFor(`${binary} ${name} on ${port}`, () => ping(port));
    return port;
  };
  const pair = async (name, extra = []) => {
    const primary = await start(`${name}primary`, ['--repl-diskless-sync-delay', '0', ...extra]);
    const replica = await start(`${name}replica`, ['--replicaof', '127.0.0.1', String(primary), ...extra]);
    await waitFor('the replica in sync', async () => /master_link_status:up/.test(await info(replica, 'replication')));
    // With an AOF, the replica rewrites its file after the first sync: its fsynced offset (WAITAOF's) waits for that.
    for (const port of [primary, replica])
      await waitFor('no AOF rewrite pending', async () => !/aof_rewrite_(in_progress|scheduled):1/.test(await info(port, 'persistence')));
    return `redis://127.0.0.1:${primary}`;
  };
  try {
    const durable = needReplica ? await pair('aof-', ['--appendonly', 'yes', '--appendfsync', 'always']) : undefined;
    if (kind === 'valkey' && env.IDEM_TEST_REDIS_URL && (!needReplica || env.IDEM_TEST_REDIS_SENTINEL))
      return { url: env.IDEM_TEST_REDIS_URL, ha: env.IDEM_TEST_REDIS_SENTINEL, haLabel: 'Sentinel primary', durable, stop };
    const standalone = await start('standalone');
    const ha = needReplica ? await pair('') : undefined;
    return { url: `redis://127.0.0.1:${standalone}`, ha, haLabel: 'primary', durable, stop };
  } catch (error) {
    stop(); // half-started servers must not outlive the bench
    throw error;
  }
}

/** Valkey 8's valkey-server: the tests' (IDEM_TEST_REDIS_SERVER_BIN), else installed into the cache by valkey-install.sh. */
function valkeyServer() {
  if (process.env.IDEM_TEST_REDIS_SERVER_BIN) return process.env.IDEM_TEST_REDIS_SERVER_BIN;
  const bin = execFileSync('bash', [join(here, '../../../scripts/servers/valkey-install.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return join(bin.trim(), 'valkey-server');
}

/** Debian's Redis 7.0 redis-server, installed by scripts/servers/redis.sh when missing. */
function redisServer() {
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    const script = join(here, '../../../scripts/servers/redis.sh');
    const dir = mkdtempSync(join(tmpdir(), 'idem-bench-install-'));
    execFileSync('bash', [script, 'start', dir, 'redis7'], { stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync('bash', [script, 'stop', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
    rmSync(dir, { recursive: true, force: true });
  }
  return 'redis-server';
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
const info = async (port, section) => {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => undefined); // the same error rejects connect() below, where the caller judges it
  try {
    await r.connect();
    return await r.info(section);
  } finally {
    r.disconnect();
  }
};
const ping = async (port) => {
  try {
    return (await info(port, 'server')).includes('redis_version');
  } catch (error) {
    if (error.code === 'ECONNREFUSED' || /Connection is closed/.test(error.message)) return false; // not listening yet
    throw error;
  }
};
async function waitFor(what, check, ms = 30_000) {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not ready in ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Installed version of a package the bench loads (from this package's node_modules, or from `from`'s). */
export function versionOf(name, from = join(here, 'package.json')) {
  const require = createRequire(from);
  try {
    return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')).version;
  } catch (error) {
    // Some packages hide package.json behind "exports": walk up from their entry point instead.
    let dir = dirname(require.resolve(name));
    for (;;) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
        if (pkg.name === name) return pkg.version;
      } catch (inner) {
        if (inner.code !== 'ENOENT') throw inner;
      }
      const up = dirname(dir);
      if (up === dir) throw error;
      dir = up;
    }
  }
}

export const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

// Commands whose INFO commandstats time already includes the commands they ran inside (a script
// counts its inner GET/SET both in its own usec and in theirs), or that only ride with them.
const TOP_LEVEL = /^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro|wait|waitaof|script\|load)$/;

/** Server CPU seconds and per-command usec so far, read in one INFO call on the admin connection. */
export async function serverStats(admin) {
  const info = await admin.call('INFO', 'cpu', 'commandstats');
  const num = (name) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? NaN);
  const cmd = new Map();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) cmd.set(m[1], { calls: Number(m[2]), usec: Number(m[3]) });
  return { cpu: num('used_cpu_user') + num('used_cpu_sys'), cmd };
}

/** Server-side µs between two snapshots: CPU (user+sys) and command time, each per op. */
function serverDelta(s0, s1, ops) {
  const delta = [];
  for (const [name, v] of s1.cmd) {
    if (name === 'info') continue; // the bench's own snapshots
    const before = s0.cmd.get(name) ?? { calls: 0, usec: 0 };
    if (v.calls > before.calls) delta.push({ name, usec: v.usec - before.usec });
  }
  const scripted = delta.some((d) => /^(eval|fcall)/.test(d.name));
  const usec = delta.filter((d) => !scripted || TOP_LEVEL.test(d.name)).reduce((a, d) => a + d.usec, 0);
  return { serverCpu: ((s1.cpu - s0.cpu) * 1e6) / ops, serverCmd: usec / ops };
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

/**
 * One timed pass: `ops` calls of `op(i)` with `inFlight` callers at a time (or, with `groups`, the
 * calls in groups of `inFlight` started together, each group awaited whole: the one-key race).
 * Returns ops/s, latency percentiles (µs), client CPU µs/op (process.cpuUsage: the bench runs
 * alone in its process, one pass at a time), server µs/op, and how many calls ended in each status.
 */
export async function measure(admin, op, { ops, inFlight, groups = false }) {
  const lat = new Float64Array(ops);
  const statuses = {};
  const s0 = await serverStats(admin);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const one = async (i) => {
    const a = performance.now();
    const status = await op(i);
    lat[i] = performance.now() - a;
    statuses[status] = (statuses[status] ?? 0) + 1;
  };
  if (groups) {
    for (let g = 0; g < ops; g += inFlight) {
      const batch = [];
      for (let i = g; i < Math.min(ops, g + inFlight); i++) batch.push(one(i));
      await Promise.all(batch);
    }
  } else {
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < ops) await one(next++);
      }),
    );
  }
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const s1 = await serverStats(admin);
  lat.sort();
  return {
    rate: ops / (wall / 1000),
    p50: percentile(lat, 0.5) * 1000,
    p99: percentile(lat, 0.99) * 1000,
    client: (c.user + c.system) / ops,
    ...serverDelta(s0, s1, ops),
    statuses,
  };
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Each column's median over the rounds (rates kept per round too, to show the spread). */
export function summarise(runs) {
  const col = (k) => median(runs.map((r) => r[k]));
  return {
    rate: col('rate'),
    p50: col('p50'),
    p99: col('p99'),
    client: col('client'),
    serverCpu: col('serverCpu'),
    serverCmd: col('serverCmd'),
    rounds: runs.map((r) => Math.round(r.rate)),
  };
}

/** Rotates a list by `n`: round r starts with the r-th entry, so no side always goes first. */
export const rotate = (list, n) => list.map((_, i) => list[(i + n) % list.length]);

/** Deletes every key matching `pattern` (SCAN + UNLINK), outside any timed pass. */
export async function unlinkMatching(admin, pattern) {
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', pattern, 'COUNT', 2000);
    if (keys.length) await admin.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

const fmt = (x, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : '-');

/**
 * A table of `rows` ({ name, m, note? }): ops/s, p50, p99, client/server µs per op, and each
 * row's ops/s as a ratio to `best` (best peer) and `floor` (the raw floor), when given.
 */
export function table(title, rows, { best, floor, floorLabel = 'x floor', cpu = true } = {}) {
  const head = ['', 'ops/s', 'p50 µs', 'p99 µs', 'client µs/op'];
  if (cpu) head.push('srv CPU µs/op', 'srv cmd µs/op');
  head.push(best ? 'x best peer' : '', floor ? floorLabel : '', 'ops/s per round', '');
  const lines = rows.map(({ name, m, note = '' }) => {
    const cells = [name, fmt(m.rate), fmt(m.p50), fmt(m.p99), fmt(m.client, 1)];
    if (cpu) cells.push(fmt(m.serverCpu, 1), fmt(m.serverCmd, 1));
    cells.push(best ? ratio(m.rate, best.m.rate) : '', floor ? ratio(m.rate, floor.m.rate) : '', m.rounds.join(' '), note);
    return cells;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => String(l[i]).length)));
  const show = (cells) =>
    cells
      .map((c, i) => (i === 0 || i >= cells.length - 2 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i])))
      .join('  ')
      .trimEnd();
  console.log(`\n${title}`);
  const about = [best && `x best peer = to ${best.name}`, floor && `${floorLabel} = to ${floor.name}`].filter(Boolean);
  if (about.length) console.log(`  ratios of ops/s: ${about.join('; ')}`);
  console.log(`  ${show(head)}`);
  for (const l of lines) console.log(`  ${show(l)}`);
}
