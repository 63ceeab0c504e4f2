// Valkey bench: the adapter against raw ioredis SET NX PX on the same server, in one run.
// Prints figures and ratios; never asserts (speed is measured here, not in tests).
// Server: IDEM_TEST_REDIS_URL, else one started (and stopped) by scripts/servers/redis.sh.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { serializeRecord } from '@idem/core/adapter';
import { createValkeyStore } from '@idem/valkey';

const quick = process.argv.includes('--quick');
const N = quick ? 5_000 : 20_000;
const IN_FLIGHT = 64;
const ROUNDS = quick ? 1 : 3;

let url = process.env.IDEM_TEST_REDIS_URL;
let stop = () => undefined;
if (!url) {
  const script = fileURLToPath(new URL('../../../scripts/servers/redis.sh', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'idem-bench-redis-'));
  const out = execFileSync('bash', [script, 'start', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  url = /IDEM_TEST_REDIS_URL=(\S+)/.exec(out)[1];
  stop = () => {
    execFileSync('bash', [script, 'stop', dir], { stdio: 'inherit' });
    rmSync(dir, { recursive: true, force: true });
  };
}

const run = `${Date.now().toString(36)}`;
const record = (k) =>
  serializeRecord({ v: 1, key: k, status: 'in_flight', runId: crypto.randomUUID(), fence: 1, attempt: 1, claimedAt: Date.now(), leaseExpiresAt: Date.now() + 300_000 });

/** ops/s of `op(i)` for `total` distinct i with `inFlight` concurrent callers. */
async function throughput(op, inFlight, total) {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) await op(next++);
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

/** Server CPU seconds so far (INFO cpu), to split each op's cost between client and server. */
const serverCpu = async () => {
  const info = await admin.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)[1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)[1]);
};

/** Throughput plus client and server CPU microseconds per op. */
async function measure(op) {
  const c0 = process.cpuUsage();
  const s0 = await serverCpu();
  const rate = await throughput(op, IN_FLIGHT, N);
  const c = process.cpuUsage(c0);
  const s = (await serverCpu()) - s0;
  return { rate, client: (c.user + c.system) / N, server: (s * 1e6) / N };
}

// Same client settings on both sides: what createValkeyStore uses for a URL.
const raw = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 5000, commandTimeout: 5000 });
const store = await createValkeyStore({ url, prefix: `bench:${run}:` });
const admin = new Redis(url);

// Warm both paths (connections, script cache, JIT).
await throughput((i) => raw.set(`bench:${run}:warm:{${i}}`, record(`w${i}`), 'PX', 300_000, 'NX'), IN_FLIGHT, 2_000);
await throughput((i) => store.claim(`warm-${i}`, { leaseMs: 300_000 }), IN_FLIGHT, 2_000);
await store.complete((await store.claim('warm-finish')).lease); // the finish script is loaded too

// Alternate the two sides so that a noisy neighbour hurts both alike; report the median round.
const rawRuns = [];
const idemRuns = [];
for (let r = 0; r < ROUNDS; r++) {
  rawRuns.push(await measure((i) => raw.set(`bench:${run}:raw${r}:{${i}}`, record(`k${i}`), 'PX', 300_000, 'NX')));
  idemRuns.push(await measure((i) => store.claim(`r${r}-k${i}`, { leaseMs: 300_000 })));
}
const median = (runs) => [...runs].sort((a, b) => a.rate - b.rate)[Math.floor(runs.length / 2)];
const rawM = median(rawRuns);
const idemM = median(idemRuns);

// Round trips, seen at the server through MONITOR: commands from clients, not the ones scripts run.
const mon = await admin.monitor();
const seen = [];
mon.on('monitor', (_t, args, source) => {
  if (source !== 'lua') seen.push(String(args[0]).toUpperCase());
});
// MONITOR lines trail the replies: wait until none came for 200 ms.
const settle = async () => {
  for (let n = -1; n !== seen.length; ) {
    n = seen.length;
    await new Promise((r) => setTimeout(r, 200));
  }
  return seen.splice(0).length;
};
const M = 100;
await settle();
const leases = [];
for (let i = 0; i < M; i++) leases.push((await store.claim(`rt-${i}`)).lease);
const perClaim = (await settle()) / M;
for (let i = 0; i < M; i++) await store.claim(`rt-${i}`);
const perDuplicate = (await settle()) / M;
for (const lease of leases) await store.complete(lease, { result: { ok: true } });
const perComplete = (await settle()) / M;
mon.disconnect();

const version = (await admin.info('server')).match(/redis_version:(\S+)/)?.[1];
console.log(`@idem/valkey bench (Redis ${version}, ${IN_FLIGHT} in flight, ${N} claims per round, median of ${ROUNDS})`);
const row = (label, m, runs) =>
  console.log(`  ${label} ${m.rate.toFixed(0).padStart(7)} claims/s  CPU per claim: client ${m.client.toFixed(1)} us, server ${m.server.toFixed(1)} us   [rounds: ${runs.map((x) => x.rate.toFixed(0)).join(', ')}]`);
row('raw ioredis SET NX PX:', rawM, rawRuns);
row('idem claim (Lua):     ', idemM, idemRuns);
console.log(`  ratio idem/raw:          ${(idemM.rate / rawM.rate).toFixed(2)}   (goal >= 0.9)`);
console.log(`  round trips per uncontended claim / duplicate claim / complete: ${perClaim} / ${perDuplicate} / ${perComplete}   (goal 1 / 1 / 1)`);

// Leave the server as found: the bench's keys go.
for (const prefix of [`bench:${run}:*`]) {
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', prefix, 'COUNT', 1000);
    if (keys.length) await admin.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}
await store.close();
raw.disconnect();
admin.disconnect();
stop();
