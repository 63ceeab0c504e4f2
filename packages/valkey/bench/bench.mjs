// @idem/valkey bench: idem against its peers (Powertools idempotency, node-idempotency) and the raw
// floors, in one process on one server, rounds interleaved with the order rotated; then the
// replica option (minReplicas) against none; then round trips per call, counted at the server.
// It prints figures and ratios and never asserts speed; it fails only when a scenario is broken
// (a one-key race that idem runs twice, a first execution that did not run, a duplicate that did).
//
//   pnpm --filter @idem/valkey bench [--quick] [--rounds=N] [--ops=N] [--only=peers|replicas] [--servers=valkey,redis7]
//
// Servers: Valkey 8 (IDEM_TEST_REDIS_URL and IDEM_TEST_REDIS_SENTINEL when set by scripts/servers.sh
// start, else started here), then Debian's Redis 7.0 (started here): each a standalone server and a
// primary with one replica, and a primary and replica with appendfsync always for the fsync rows.
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { createValkeyStore } from '@idem/valkey';
import { load, measure, median, rotate, serverStats, servers, summarise, table, unlinkMatching, versionOf } from './harness.mjs';
// The claim script itself (not exported by the package): for its duplicate fast path against its full path.
import { CLAIM_LUA } from '../dist/lua.js';
import { CLIENT_FLOOR, FLOOR, GUARANTEE_FLOORS, openVariants, OWN_WORK, PLAIN_CLAIM, DESIGN_CLIENTS, TIMED_GET_FLOOR } from './variants.mjs';
import { replicaBench } from './replicas.mjs';

const arg = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const quick = process.argv.includes('--quick');
const only = arg('only');
if (only !== undefined && only !== 'peers' && only !== 'replicas') throw new Error(`--only must be peers or replicas, got ${only}`);
const ROUNDS = Number(arg('rounds') ?? (quick ? 3 : 5));
const OPS = Number(arg('ops') ?? (quick ? 640 : 10_240)); // per pass at 64 in flight
const OPS_1 = Math.max(50, Math.round(OPS / 5)); // per pass at 1 in flight: each call waits for the last
const RACE_KEYS = quick ? 5 : 40; // keys per round of the one-key race, 64 calls each
const IN_FLIGHT = 64;
if (!(ROUNDS >= 1 && OPS >= IN_FLIGHT)) throw new Error('--rounds must be >= 1 and --ops >= 64');

const SCENARIOS = [
  { id: 'first1', kind: 'first', inFlight: 1, ops: OPS_1, title: 'First execution (claim -> no-op -> complete), 1 in flight' },
  { id: 'first64', kind: 'first', inFlight: IN_FLIGHT, ops: OPS, title: `First execution, ${IN_FLIGHT} in flight` },
  { id: 'dup1', kind: 'dup', inFlight: 1, ops: OPS_1, title: 'Duplicate (key already completed), 1 in flight' },
  { id: 'dup64', kind: 'dup', inFlight: IN_FLIGHT, ops: OPS, title: `Duplicate, ${IN_FLIGHT} in flight` },
  {
    id: 'race',
    kind: 'race',
    inFlight: IN_FLIGHT,
    ops: RACE_KEYS * IN_FLIGHT,
    title: `One key, ${IN_FLIGHT} concurrent calls (${RACE_KEYS} keys a round): executions per key must be 1`,
  },
];

// Every server kind in one run, one after the other (--servers=valkey,redis7 by default): each
// figure is printed under the server that gave it, and BENCH_JSON names it.
const kinds = (arg('servers') ?? 'valkey,redis7').split(',');
for (const kind of kinds) if (kind !== 'valkey' && kind !== 'redis7') throw new Error(`--servers takes valkey and redis7, got ${kind}`);
for (const kind of kinds) await benchOn(kind);

async function benchOn(kind) {
  const srv = await servers({ needReplica: only !== 'peers', kind });
  const cleanup = [];
  try {
    const run = Date.now().toString(36);
    const base = `bench:${run}:`;
    const admin = new Redis(srv.url);
    cleanup.push(async () => {
      await unlinkMatching(admin, `${base}*`); // leave the server as found
      admin.disconnect();
    });
    const info = await admin.info('server');
    // Valkey answers redis_version too (7.2.4, for compatibility): its own version is valkey_version.
    const valkeyVersion = /valkey_version:(\S+)/.exec(info)?.[1];
    const server = valkeyVersion ? `Valkey ${valkeyVersion}` : `Redis ${/redis_version:(\S+)/.exec(info)?.[1]}`;
    const versions = {
      server,
      node: process.version,
      ioredis: versionOf('ioredis'),
      '@aws-lambda-powertools/idempotency': versionOf('@aws-lambda-powertools/idempotency'),
      '@redis/client': versionOf('@redis/client'),
      '@valkey/valkey-glide': versionOf('@valkey/valkey-glide'),
      '@node-idempotency/core': versionOf('@node-idempotency/core'),
      '@node-idempotency/storage-adapter-redis': versionOf('@node-idempotency/storage-adapter-redis'),
      // The redis@4 that node-idempotency's adapter depends on (its own copy, not ours).
      'redis (node-idempotency)': versionOf('redis', fileURLToPath(import.meta.resolve('@node-idempotency/storage-adapter-redis'))),
    };
    const loadStart = load();
    console.log(`\n=== @idem/valkey bench on ${server}${quick ? ' (--quick: few ops, figures indicative only)' : ''} ===`);
    console.log(
      `  ${Object.entries(versions)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    console.log(`  load average at start: ${loadStart}; ${ROUNDS} rounds, median of each column; ${OPS} ops per pass at ${IN_FLIGHT} in flight, ${OPS_1} at 1`);
    const summary = { versions, loadStart, rounds: ROUNDS, ops: OPS, ops1: OPS_1, quick, scenarios: {}, goals: {}, race: {} };

    if (only !== 'replicas') {
      const { variants, close, completed } = await openVariants(srv.url);
      cleanup.unshift(close);
      // Each variant's two namespaces: work keys (deleted after every round) and completed keys for the duplicates.
      for (const v of variants) {
        v.work = await v.open(`${base}w:${v.name.replace(/\W+/g, '-')}:`);
        if (v.scenarios.includes('dup')) v.pool = await v.open(`${base}pool:${v.name.replace(/\W+/g, '-')}:`);
      }
      // Warm up every path (connections, scripts, JIT) and complete the keys duplicates will find.
      const poolKeys = Array.from({ length: OPS }, (_, i) => `done-${i}`);
      for (const v of variants) {
        await measure(admin, (i) => v.work(`warm-${i}`), { ops: Math.min(OPS, 1000), inFlight: IN_FLIGHT });
        const poolKey = (k) => `${base}pool:${v.name.replace(/\W+/g, '-')}:${k}`;
        if (v.pool && v.group === 'floor') await Promise.all(poolKeys.map((k) => admin.set(poolKey(k), 'x', 'PX', 3_600_000)));
        // The claim designs find a completed record of another run, as idem's claim script reads it.
        else if (v.pool && v.group === 'design') await Promise.all(poolKeys.map((k) => admin.set(poolKey(k), completed(poolKey(k)), 'PX', 3_600_000)));
        else if (v.pool) await measure(admin, (i) => v.pool(poolKeys[i]), { ops: OPS, inFlight: IN_FLIGHT });
      }
      await unlinkMatching(admin, `${base}w:*`);

      const runs = new Map(); // `${scenario}\0${variant}` -> per-round measurements
      const raceExec = new Map(); // variant -> executions per raced key, all rounds
      const raceStatuses = new Map();
      const repeats = new Map(); // `${scenario}\0${variant}` -> handler runs on completed keys (a peer's)
      for (let r = 0; r < ROUNDS; r++) {
        for (const s of SCENARIOS) {
          for (const v of rotate(
            variants.filter((x) => x.scenarios.includes(s.kind)),
            r,
          )) {
            const before = v.counter?.executions ?? 0;
            let m;
            if (s.kind === 'race') {
              const perKey = new Array(RACE_KEYS).fill(0);
              m = await measure(
                admin,
                async (i) => {
                  const status = await v.work(`r${r}:race:${Math.floor(i / IN_FLIGHT)}`);
                  if (status === 'executed') perKey[Math.floor(i / IN_FLIGHT)]++;
                  return status;
                },
                { ops: s.ops, inFlight: IN_FLIGHT, groups: true },
              );
              raceExec.set(v.name, [...(raceExec.get(v.name) ?? []), ...perKey]);
              const acc = raceStatuses.get(v.name) ?? {};
              for (const [k, n] of Object.entries(m.statuses)) acc[k] = (acc[k] ?? 0) + n;
              raceStatuses.set(v.name, acc);
              if (perKey.some((n) => n === 0)) throw new Error(`broken scenario: ${v.name} ran no call of a raced key (${JSON.stringify(m.statuses)})`);
              // idem's promise: one execution per key, whatever the concurrency.
              if (v.group === 'idem' && perKey.some((n) => n !== 1))
                throw new Error(
                  `BROKEN: ${v.name} executed one key ${Math.max(...perKey)} times in a ${IN_FLIGHT}-call race (executions per key: ${perKey.join(',')})`,
                );
            } else {
              const op = s.kind === 'first' ? (i) => v.work(`r${r}:${s.id}:${i}`) : (i) => v.pool(poolKeys[i % poolKeys.length]);
              m = await measure(admin, op, { ops: s.ops, inFlight: s.inFlight });
            }
            const executions = (v.counter?.executions ?? 0) - before;
            // What the calls said must match what the handler saw (the bench reads each library right).
            if (v.counter && executions !== (m.statuses.executed ?? 0))
              throw new Error(`broken bench: ${v.name} ran the handler ${executions} times but ${m.statuses.executed ?? 0} calls said so`);
            // A first execution must run the handler every time, a duplicate never.
            if (v.counter && s.kind === 'first' && (executions !== s.ops || m.statuses.executed !== s.ops))
              throw new Error(`broken scenario: ${v.name} ran ${executions} of ${s.ops} first executions (${JSON.stringify(m.statuses)})`);
            if (v.counter && s.kind === 'dup' && executions !== 0) {
              if (v.group === 'idem')
                throw new Error(`BROKEN: ${v.name} ran the handler ${executions} times on ${s.ops} completed keys (${JSON.stringify(m.statuses)})`);
              // A peer that runs duplicates again is reported, not a reason to stop the bench.
              const a = repeats.get(`${s.id}\0${v.name}`) ?? { executions: 0, ops: 0 };
              repeats.set(`${s.id}\0${v.name}`, { executions: a.executions + executions, ops: a.ops + s.ops });
            }
            // A claim design must take every new key (and its finish hit the fast path), and find every completed one.
            const want = s.kind === 'dup' ? 'found' : v.name.includes('finish') ? 'finished' : 'set';
            if (v.group === 'design' && s.kind !== 'race' && m.statuses[want] !== s.ops)
              throw new Error(`broken scenario: ${v.name} answered ${JSON.stringify(m.statuses)} on ${s.ops} ${s.kind === 'dup' ? 'completed' : 'new'} keys`);
            if (v.group === 'idem-claim' && m.statuses.acquired !== s.ops)
              throw new Error(`broken scenario: ${v.name} acquired ${m.statuses.acquired ?? 0} of ${s.ops} new keys`);
            const key = `${s.id}\0${v.name}`;
            runs.set(key, [...(runs.get(key) ?? []), m]);
          }
        }
        await unlinkMatching(admin, `${base}w:*`);
      }

      // A peer that ran a completed key again, or a raced key more than once, does not deduplicate:
      // it is shown, but never taken as the best peer to beat.
      const unsafe = new Set([...repeats.keys()].map((k) => k.split('\0')[1]));
      for (const [name, per] of raceExec) if (per.some((n) => n > 1)) unsafe.add(name);
      summary.unsafePeers = [...unsafe];
      const results = {};
      for (const s of SCENARIOS) {
        const rows = variants
          .filter((v) => v.scenarios.includes(s.kind))
          .map((v) => ({ name: v.name, group: v.group, m: summarise(runs.get(`${s.id}\0${v.name}`)) }));
        const peers = rows.filter((x) => x.group === 'peer' && !unsafe.has(x.name));
        const best = peers.reduce((a, b) => (b.m.rate > a.m.rate ? b : a), peers[0]);
        const floor = rows.find((x) => x.name === FLOOR[s.kind]);
        for (const row of rows) {
          const rep = repeats.get(`${s.id}\0${row.name}`);
          if (rep) {
            row.note = `RAN DUPLICATES AGAIN: ${rep.executions} handler runs on ${rep.ops} calls of completed keys`;
            summary.repeats = { ...summary.repeats, [`${s.id} ${row.name}`]: rep };
          }
        }
        if (s.kind === 'race') {
          for (const row of rows) {
            const per = raceExec.get(row.name);
            const counts = {};
            for (const n of per) counts[n] = (counts[n] ?? 0) + 1;
            row.note = `executions per key: ${Object.entries(counts)
              .map(([n, k]) => `${n} x${k}`)
              .join(', ')}; calls: ${Object.entries(raceStatuses.get(row.name))
              .map(([k, n]) => `${k} ${n}`)
              .join(', ')}`;
            summary.race[row.name] = { executionsPerKey: counts, statuses: raceStatuses.get(row.name) };
          }
        }
        for (const row of rows) if (unsafe.has(row.name) && !row.note) row.note = 'does not deduplicate (see duplicates / race): not taken as best peer';
        table(s.title, rows, { best, floor });
        results[s.id] = { rows, best, floor };
        summary.scenarios[s.id] = Object.fromEntries(rows.map((x) => [x.name, round(x.m)]));
      }

      // The speed goals, read off the tables above.
      const get = (id, name) => results[id].rows.find((x) => x.name === name)?.m;
      const lowest = (id, k) => Math.min(...results[id].rows.filter((x) => x.group === 'peer' && !unsafe.has(x.name)).map((x) => x.m[k]));
      const goals = [];
      const goal = (label, value, target) => {
        goals.push({ label, value: Number(value.toFixed(2)), target });
        console.log(`  ${label.padEnd(72)} ${value.toFixed(2).padStart(6)}   (goal ${target})`);
      };
      // Per goal, the idem row that does best on it (highest rate, lowest CPU), named in the label.
      const bestIdem = (id, group, k, lower = false) =>
        results[id].rows.filter((x) => x.group === group).reduce((a, b) => ((lower ? b.m[k] < a.m[k] : b.m[k] > a.m[k]) ? b : a)).name;
      const goalsFor = (pick, claimPick) => {
        const idem = (id, k, lower) => pick ?? bestIdem(id, 'idem', k, lower);
        for (const id of ['first1', 'first64'])
          goal(
            `first execution, ${id === 'first1' ? 1 : IN_FLIGHT} in flight: ${idem(id, 'rate')} / best peer (${results[id].best.name})`,
            get(id, idem(id, 'rate')).rate / results[id].best.m.rate,
            '>= 1',
          );
        for (const id of ['dup1', 'dup64'])
          goal(
            `duplicate, ${id === 'dup1' ? 1 : IN_FLIGHT} in flight: ${idem(id, 'rate')} / best peer (${results[id].best.name})`,
            get(id, idem(id, 'rate')).rate / results[id].best.m.rate,
            id === 'dup1' ? '> 1' : '>= 1',
          );
        for (const [k, what, target] of [
          ['client', 'client', '<= 1.5'],
          ['serverCpu', 'server CPU', '<= 1.3'],
          ['serverCmd', 'server cmd time', '-'],
        ]) {
          goal(
            `CPU per first execution (${IN_FLIGHT}): ${idem('first64', k, true)} ${what} / lowest peer's`,
            get('first64', idem('first64', k, true))[k] / lowest('first64', k),
            target,
          );
        }
        const claim = claimPick ?? bestIdem('first64', 'idem-claim', 'rate');
        goal(`claim alone, ${IN_FLIGHT} in flight: ${claim} / ${FLOOR.first}`, get('first64', claim).rate / results.first64.floor.m.rate, '>= 0.9');
      };
      console.log('\nGoals (ratios in this run): idem on ioredis (its own client, then yours), then on your @redis/client');
      goalsFor('idem runOnce (own client, URL)', 'idem claim (own client, URL)');
      goalsFor('idem runOnce (your ioredis)', 'idem claim (your ioredis)');
      goalsFor('idem runOnce (your @redis/client)', 'idem claim (your @redis/client)');
      console.log('Goals: the best idem variant of each line (any client)');
      goalsFor(undefined, undefined);
      // The server's least cost of a first execution with each guarantee, from the floors: what the
      // server goal is up against. Fenced: SET NX PX, then a scripted compare-and-set. Fenced and
      // judged by the server's clock (idem): both steps scripts that read TIME.
      const [cas, timedClaim, timedCas] = Object.keys(GUARANTEE_FLOORS).map((name) => get('first64', name).serverCmd);
      const peerCmd = lowest('first64', 'serverCmd');
      const serverClock = timedClaim + timedCas;
      goal(
        `server cmd time, least fenced first execution (SET NX PX + scripted CAS) / lowest peer's`,
        (get('first64', FLOOR.first).serverCmd + cas) / peerCmd,
        'floor',
      );
      goal(`server cmd time, least fenced first execution on the server's clock (2 scripts with TIME) / lowest peer's`, serverClock / peerCmd, 'floor');
      const idemCmd = Math.min(...results.first64.rows.filter((x) => x.group === 'idem').map((x) => x.m.serverCmd));
      goal(`server cmd time, idem runOnce (lowest of its rows) / that least fenced first execution on the server's clock`, idemCmd / serverClock, '-');
      // The client's side of the same question: two scripts per first execution on @redis/client.
      const clientFloor = get('first64', CLIENT_FLOOR).client;
      goal(`client CPU per first execution (64): two timed scripts on @redis/client / lowest peer's`, clientFloor / lowest('first64', 'client'), 'floor');
      goal(
        `client CPU per first execution (64): idem runOnce (your @redis/client) / those two scripts`,
        get('first64', 'idem runOnce (your @redis/client)').client / clientFloor,
        '-',
      );
      goal(
        `client CPU per first execution (64): idem's own work (runOnce, no I/O) / lowest peer's`,
        get('first64', OWN_WORK).client / lowest('first64', 'client'),
        '-',
      );
      const idemDup = Math.min(...results.dup64.rows.filter((x) => x.group === 'idem').map((x) => x.m.serverCmd));
      goal(
        `server cmd time per duplicate (64): least read on the server's clock (TIME + GET script) / lowest peer's`,
        get('dup64', TIMED_GET_FLOOR).serverCmd / lowest('dup64', 'serverCmd'),
        'floor',
      );
      goal(
        `server cmd time per duplicate (64): idem runOnce (lowest of its rows) / that least read on the server's clock`,
        idemDup / get('dup64', TIMED_GET_FLOOR).serverCmd,
        '-',
      );
      // A claim without a script (RESULTS.md): each design's server share, sent raw, against the peers.
      for (const on of DESIGN_CLIENTS) {
        const d = PLAIN_CLAIM(on);
        console.log(`Claim designs (raw on ${on}, no library work): against the best peer / lowest peer`);
        for (const name of [d.claimFinish, d.multiFinish, d.scriptFinish]) {
          goal(`${name}: server CPU per first execution (64) / lowest peer's`, get('first64', name).serverCpu / lowest('first64', 'serverCpu'), '<= 1.3');
          goal(`${name}: server cmd time per first execution (64) / lowest peer's`, get('first64', name).serverCmd / lowest('first64', 'serverCmd'), '-');
          for (const id of ['first1', 'first64']) goal(`${name}: ops/s, ${id} / best peer`, get(id, name).rate / results[id].best.m.rate, '-');
        }
        // The fenced finish alone (a script on Redis 7.0 and Valkey 8.0, which have no conditional SET), taken
        // out of the cheapest design: if it already costs more than the goal allows a whole first execution,
        // no claim design meets the server goal while finishes stay fenced and stamped by the server's clock.
        goal(
          `idem's finish script alone (${d.claimFinish} less the claim): server CPU / lowest peer's per first execution`,
          (get('first64', d.claimFinish).serverCpu - get('first64', d.claim).serverCpu) / lowest('first64', 'serverCpu'),
          'floor',
        );
        for (const name of [d.claim, d.multi, d.script]) {
          goal(
            `${name}: server CPU per claim (64) / per first execution of the lowest peer`,
            get('first64', name).serverCpu / lowest('first64', 'serverCpu'),
            '-',
          );
          goal(`${name}: server CPU per duplicate (64) / lowest peer's`, get('dup64', name).serverCpu / lowest('dup64', 'serverCpu'), '-');
          goal(`${name}: ops/s, duplicate 64 / best peer`, get('dup64', name).rate / results.dup64.best.m.rate, '-');
        }
      }
      summary.goals = goals;
    }

    if (only !== 'peers')
      summary.replicas = await replicaBench({
        url: srv.url,
        ha: srv.ha,
        haLabel: srv.haLabel,
        durable: srv.durable,
        base,
        rounds: ROUNDS,
        ops: OPS,
        ops1: OPS_1,
      });

    if (only !== 'replicas') summary.roundTrips = await roundTrips(srv.url, `${base}rt:`);
    if (only !== 'replicas') summary.claimPaths = await claimPaths(srv.url, `${base}cp:`);

    summary.loadEnd = load();
    console.log(`\n  load average at end: ${summary.loadEnd}`);
    console.log(`BENCH_JSON ${JSON.stringify(summary)}`);
  } catch (error) {
    process.exitCode = 1;
    console.error(error);
  } finally {
    for (const c of cleanup) {
      try {
        await c();
      } catch (error) {
        console.error('bench cleanup failed:', error); // reported, and the servers below still stop
      }
    }
    srv.stop();
  }
}

function round(m) {
  const out = {};
  for (const [k, v] of Object.entries(m)) out[k] = typeof v === 'number' ? Number(v.toFixed(v >= 100 ? 0 : 1)) : v;
  return out;
}

/**
 * Server time of one claim script on a duplicate (`INFO commandstats` evalsha usec per call, 64 in
 * flight): the duplicate fast path (patterns, no decode) against the full path on the same record
 * (the script's test-only mode 'full'), rounds interleaved, median. For a completed key and for a
 * live claim of another run (the one-key race); the store's own record layout in both.
 */
async function claimPaths(url, prefix) {
  const admin = new Redis(url);
  const TTL = 3_600_000;
  try {
    const sha = await admin.script('LOAD', CLAIM_LUA);
    const [sec] = await admin.time();
    const now = Number(sec) * 1000;
    const keys = { completed: `${prefix}{done}`, in_flight: `${prefix}{live}` };
    await admin.set(
      keys.completed,
      `{"v":1,"key":"done","status":"succeeded","runId":"other","fence":${now},"attempt":1,"claimedAt":${now},"completedAt":${now},"expiresAt":${now + TTL},"result":{"ok":true}}`,
      'PX',
      TTL,
    );
    await admin.set(
      keys.in_flight,
      `{"v":1,"key":"live","status":"in_flight","runId":"other","fence":${now},"attempt":1,"claimedAt":${now},"leaseExpiresAt":${now + TTL}}`,
      'PX',
      TTL,
    );
    const pass = async (rk, mode) => {
      const head = `{"v":1,"key":"k","status":"in_flight","runId":"me","fence":`;
      const s0 = await serverStats(admin);
      for (let i = 0; i < OPS; i += IN_FLIGHT)
        await Promise.all(Array.from({ length: IN_FLIGHT }, () => admin.evalsha(sha, 1, rk, head, '', '', 'me', 30_000, 60_000, '0', 'success', mode)));
      const s1 = await serverStats(admin);
      const d = (s) => s.cmd.get('evalsha') ?? { calls: 0, usec: 0 };
      return (d(s1).usec - d(s0).usec) / (d(s1).calls - d(s0).calls);
    };
    const out = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, rk] of rotate(Object.entries(keys), r)) {
        for (const [path, mode] of rotate(
          [
            ['fast', ''],
            ['full', 'full'],
          ],
          r,
        ))
          (out[`${name} ${path}`] ??= []).push(await pass(rk, mode));
      }
    }
    const res = Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Number(median(v).toFixed(1))]));
    console.log(
      `\nClaim script on a duplicate, server cmd µs per call (${IN_FLIGHT} in flight, median of ${ROUNDS}): completed ${res['completed fast']} fast path / ${res['completed full']} full path; in_flight ${res['in_flight fast']} / ${res['in_flight full']}`,
    );
    return res;
  } finally {
    await unlinkMatching(admin, `${prefix}*`);
    admin.disconnect();
  }
}

/** Round trips per uncontended claim, duplicate claim and complete, seen at the server through MONITOR. */
async function roundTrips(url, prefix) {
  const store = await createValkeyStore({ url, prefix });
  const admin = new Redis(url);
  try {
    await store.complete((await store.claim('warm')).lease); // both scripts loaded before counting
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
    const claim = (await settle()) / M;
    for (let i = 0; i < M; i++) await store.claim(`rt-${i}`);
    const duplicate = (await settle()) / M;
    for (const lease of leases) await store.complete(lease, { result: { ok: true } });
    const complete = (await settle()) / M;
    mon.disconnect();
    console.log(`\nRound trips (commands seen by MONITOR, own client): uncontended claim ${claim}, duplicate claim ${duplicate}, complete ${complete}`);
    return { claim, duplicate, complete };
  } finally {
    await store.close();
    admin.disconnect();
  }
}
