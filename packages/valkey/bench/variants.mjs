// What the bench runs side by side: idem, the peers (each on its stock client and on ioredis) and
// the raw floors. Each variant gives `open(prefix)`, an operation on its own namespace of keys:
// one namespace for the timed work (deleted after each round) and one for the keys that the
// duplicate scenario finds already completed (kept for the whole run).
import { CachePersistenceLayer } from '@aws-lambda-powertools/idempotency/cache';
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { runOnce } from '@idem/core';
import { createValkeyStore } from '@idem/valkey';
import nodeIdempotency from '@node-idempotency/core';
import nodeIdempotencyRedis from '@node-idempotency/storage-adapter-redis';
import { createClient } from '@redis/client';
import { GlideClient } from '@valkey/valkey-glide';
import { Redis } from 'ioredis';
// idem's own scripts (not exported by the package): sent raw, for the plain-command claim's comparison.
import { CLAIM_LUA, FINISH_LUA } from '../dist/lua.js';

const { Idempotency, IdempotencyError, IdempotencyErrorCodes } = nodeIdempotency;
const { RedisStorageAdapter } = nodeIdempotencyRedis;

/** What every no-op handler returns: a small result each library stores and hands to duplicates. */
const RESULT = { ok: true };
/** A raw floor's value: about the size of an idem record, built once (the floor does no work per op). */
const VALUE = JSON.stringify({
  v: 1,
  status: 'in_flight',
  runId: '2f1d6c1e-6c43-4c55-8f3b-0b8f0e4b8d61',
  fence: 1,
  attempt: 1,
  claimedAt: 1_750_000_000_000,
  leaseExpiresAt: 1_750_000_300_000,
});
const TTL_MS = 3_600_000;

/**
 * Statuses an operation returns: "executed" (the handler ran), "replayed" (a duplicate answered
 * from the stored result), "in_flight" (another call holds the key), or a raw command's reply.
 * `executions` counts handler runs, so that a scenario can check what each library really did.
 */
function counter() {
  const c = { executions: 0 };
  c.noop = async () => {
    c.executions++;
    return RESULT;
  };
  return c;
}

/**
 * Powertools' CachePersistenceLayer calls `get(key)`, `set(key, value, { EX, NX })` and
 * `del([keys])`: the @redis/client signatures. ioredis has other ones, so on ioredis it gets this
 * shim (the layer takes any client of that shape; it has no ioredis support of its own).
 */
const powertoolsIoredisShim = (r) => ({
  get: (key) => r.get(key),
  set: (key, value, { EX, NX }) => (NX ? r.set(key, value, 'EX', EX, 'NX') : r.set(key, value, 'EX', EX)),
  del: (keys) => r.del(...keys),
});

/**
 * node-idempotency's storage contract (setIfNotExists / set / get, TTL in ms). Its Redis adapter
 * opens its own redis@4 client from options and cannot take an ioredis client: on ioredis, the
 * library gets this storage, written the way its Redis adapter is (SET NX PX, SET PX, GET).
 */
const nodeIdempotencyIoredisStorage = (r) => ({
  setIfNotExists: async (key, value, { ttl } = {}) => (await r.set(key, value, 'PX', ttl, 'NX')) === 'OK',
  set: async (key, value, { ttl }) => {
    await r.set(key, value, 'PX', ttl);
  },
  get: async (key) => (await r.get(key)) ?? undefined,
});

/** The Lambda context Powertools reads its in-progress expiry from (it warns on every call without one). */
const lambdaContext = { getRemainingTimeInMillis: () => 300_000 };

/**
 * Every variant, opened on `url`. `group` is idem / peer / floor; `scenarios` lists where it runs:
 * first (claim -> no-op -> complete on a new key), dup (a completed key), race (64 calls, one key).
 */
export async function openVariants(url) {
  const closers = [];
  const ioredis = (options = {}) => {
    const r = new Redis(url, options);
    closers.push(() => r.quit());
    return r;
  };
  const variants = [];
  const add = (v) => variants.push({ scenarios: ['first', 'dup', 'race'], ...v });

  // idem on a store that opens its own client (URL), on a caller's plain ioredis client, and on a
  // caller's node-redis client (each its own connection): what the client alone buys, against the
  // peers on their stock @redis/client and redis@4.
  const idemClientRedis = ioredis();
  const idemNodeRedis = await createClient({ url }).connect();
  closers.push(() => idemNodeRedis.close());
  const stores = [
    ['own client, URL', (prefix) => createValkeyStore({ url, prefix })],
    ['your ioredis', (prefix) => createValkeyStore({ client: idemClientRedis, prefix })],
    ['your @redis/client', (prefix) => createValkeyStore({ client: idemNodeRedis, prefix })],
  ];
  // The store `make(prefix)` gives, closed with the bench (a no-op for a caller's client).
  const opened = async (make, prefix) => {
    const store = await make(prefix);
    closers.push(() => store.close());
    return store;
  };
  for (const [on, make] of stores) {
    const c = counter();
    add({
      name: `idem runOnce (${on})`,
      group: 'idem',
      counter: c,
      open: async (prefix) => {
        const store = await opened(make, prefix);
        return async (key) => (await runOnce(store, key, c.noop)).status;
      },
    });
  }
  // idem's own work, with no client and no server: runOnce on a stand-in client that answers each
  // script at once as the server's fast paths do (a claim and a finish each get a server time).
  // Only its client column means anything: idem's own CPU per first execution.
  let instantNow = Date.now();
  const answer = async () => ++instantNow;
  const instant = { call: answer, callBuffer: answer, quit: async () => undefined };
  const own = counter();
  add({
    name: OWN_WORK,
    group: 'idem-own',
    scenarios: ['first'],
    counter: own,
    open: async (prefix) => {
      const store = await opened((p) => createValkeyStore({ client: instant, prefix: p }), prefix);
      return async (key) => (await runOnce(store, key, own.noop)).status;
    },
  });
  // Claim alone (no finish): the figure to hold against one raw SET NX PX.
  for (const [on, make] of stores) {
    add({
      name: `idem claim (${on})`,
      group: 'idem-claim',
      scenarios: ['first'],
      open: async (prefix) => {
        const store = await opened(make, prefix);
        return async (key) => (await store.claim(key)).outcome;
      },
    });
  }

  // Powertools for AWS Lambda idempotency, cache persistence layer.
  const powertools = (name, client) => {
    const c = counter();
    add({
      name,
      group: 'peer',
      counter: c,
      open: async (prefix) => {
        // One layer per namespace: a layer keeps the key prefix it was configured with.
        const persistenceStore = new CachePersistenceLayer({ client });
        // Which calls ran the handler: marked by their event object, which must not change (the
        // layer hashes it again after the handler, to write the result under the same key).
        const ran = new WeakSet();
        const handler = makeIdempotent(
          async (event, _context) => {
            ran.add(event);
            return c.noop();
          },
          { persistenceStore, config: new IdempotencyConfig({}), keyPrefix: prefix },
        );
        return async (key) => {
          const event = { key };
          try {
            await handler(event, lambdaContext);
          } catch (error) {
            if (error?.name === 'IdempotencyAlreadyInProgressError') return 'in_flight';
            throw error;
          }
          return ran.has(event) ? 'executed' : 'replayed';
        };
      },
    });
  };
  const redisClient = await createClient({ url }).connect();
  closers.push(() => redisClient.close());
  powertools('Powertools (@redis/client)', redisClient);
  powertools('Powertools (ioredis)', powertoolsIoredisShim(ioredis()));
  // Glide passed straight in, as the layer's own documentation shows. Glide's set() takes
  // { conditionalSet, expiry }, not { NX, EX }: the layer's options are ignored, so every SET
  // overwrites and never expires. The bench reports what that does (it is not a fault of the bench).
  const u = new URL(url);
  const glide = await GlideClient.createClient({ addresses: [{ host: u.hostname, port: Number(u.port) }] });
  closers.push(() => glide.close());
  powertools('Powertools (Glide, as documented)', glide);

  // node-idempotency, driven as its README shows: onRequest, the handler, onResponse.
  const nodeIdem = (name, storage) => {
    const c = counter();
    add({
      name,
      group: 'peer',
      counter: c,
      open: async (prefix) => {
        const ni = new Idempotency(storage, { cacheKeyPrefix: prefix });
        return async (key) => {
          const req = { method: 'POST', path: '/bench', headers: { 'idempotency-key': key } };
          try {
            if ((await ni.onRequest(req)) !== undefined) return 'replayed';
          } catch (error) {
            if (error instanceof IdempotencyError && error.code === IdempotencyErrorCodes.REQUEST_IN_PROGRESS) return 'in_flight';
            throw error;
          }
          await ni.onResponse(req, await c.noop());
          return 'executed';
        };
      },
    });
  };
  const niRedis = new RedisStorageAdapter({ url });
  await niRedis.connect();
  closers.push(() => niRedis.disconnect());
  nodeIdem('node-idempotency (redis@4)', niRedis);
  nodeIdem('node-idempotency (ioredis)', nodeIdempotencyIoredisStorage(ioredis()));

  // Raw floors: one command, one round trip, nothing decided.
  const plain = ioredis();
  const piped = ioredis({ enableAutoPipelining: true });
  const floor = (name, make) => add({ name, group: 'floor', scenarios: ['first', 'dup'], open: async (prefix) => make(prefix) });
  floor('raw SET NX PX (ioredis)', (p) => (key) => plain.set(p + key, VALUE, 'PX', TTL_MS, 'NX'));
  floor('raw SET NX PX (ioredis, auto-pipelined)', (p) => (key) => piped.set(p + key, VALUE, 'PX', TTL_MS, 'NX'));
  floor('raw GET (ioredis)', (p) => (key) => plain.get(p + key).then((v) => (v === null ? 'nil' : 'value')));
  floor('raw GET (ioredis, auto-pipelined)', (p) => (key) => piped.get(p + key).then((v) => (v === null ? 'nil' : 'value')));
  floor('raw SET NX PX (@redis/client)', (p) => (key) => redisClient.set(p + key, VALUE, { PX: TTL_MS, NX: true }));
  floor('raw SET NX PX (redis@4)', (p) => (key) => niRedis.client.set(p + key, VALUE, { PX: TTL_MS, NX: true }));
  // A duplicate judged by the server's clock: GET and TIME in one script (the peers' is a plain GET).
  const timedGet = await plain.script('LOAD', TIMED_GET);
  floor(TIMED_GET_FLOOR, (p) => (key) => plain.evalsha(timedGet, 1, p + key).then(([, v]) => (v === null ? 'nil' : 'value')));
  // What the guarantees cost the server at the least, on Redis 7.0, which has neither a
  // conditional SET nor the time outside a script. A fenced finish is a script that reads, compares
  // and writes (the peers' finish is a plain SET, unfenced); a claim or finish stamped with the
  // server's clock is a script that reads TIME. Summed per first execution under the goals.
  const floorShas = {};
  for (const [name, lua] of Object.entries(GUARANTEE_FLOORS)) {
    const sha = (floorShas[name] = await plain.script('LOAD', lua));
    add({ name, group: 'floor', scenarios: ['first'], open: async (prefix) => (key) => plain.evalsha(sha, 1, prefix + key, VALUE, VALUE, TTL_MS) });
  }
  // The client's least work for a first execution made of two scripts, on idem's fastest client:
  // the two timed floors above in turn, with a record's bytes each way, sent as raw commands
  // (sendCommand, as idem sends them: less work than the typed evalSha). Only its client column
  // is a floor (the finish compares against bytes it does not hold, so the server skips the write).
  const [, timedClaim, timedCas] = Object.values(floorShas);
  const ttl = String(TTL_MS);
  add({
    name: CLIENT_FLOOR,
    group: 'floor',
    scenarios: ['first'],
    open: async (p) => async (key) => {
      await redisClient.sendCommand(['EVALSHA', timedClaim, '1', p + key, VALUE, VALUE, ttl]);
      return redisClient.sendCommand(['EVALSHA', timedCas, '1', p + key, VALUE, VALUE, ttl]);
    },
  });

  // A claim without a script, the design question of RESULTS.md ("A claim without a script"), against
  // idem's own two scripts, all sent raw, on two clients that write a tick's commands in one write
  // as idem does: @redis/client (which batches by itself; its MULTI through its transaction builder)
  // and ioredis corked per tick as idem corks it (MULTI as five raw commands). No library work on the
  // client: the server columns are what each design costs the server.
  // The finish is idem's real script on its fast path (the stored bytes compared, then TIME + SET).
  //  - one plain SET NX PX GET: the least a claim can cost; its bytes can carry no server time, so
  //    it cannot start a fence from the server's clock nor judge a returned record's retention;
  //  - MULTI (SET NX PX GET, PEXPIRETIME, TIME) EXEC: plain commands that do keep the server's
  //    clock (the fence and claim time read off the key's expiry, the returned record judged by TIME).
  const linger = 60_000;
  const lease = 300_000;
  const claimTtl = String(lease + linger);
  const finishSha = await plain.script('LOAD', FINISH_LUA);
  const claimSha = await plain.script('LOAD', CLAIM_LUA);
  const RUN = '2f1d6c1e-6c43-4c55-8f3b-0b8f0e4b8d61';
  const head = (key) => `{"v":1,"key":${JSON.stringify(key)},"status":"in_flight","runId":"${RUN}","fence":`;
  // The in_flight bytes a plain claim stores (no server time in them: a real design would read its
  // fence and claim time off the key's expiry), and the script's, stamped with the server's time `at`.
  const plainBytes = (key) => `${head(key)}1,"attempt":1,"claimedAt":1,"leaseExpiresAt":2}`;
  const stampedBytes = (key, at) => `${head(key)}${at},"attempt":1,"claimedAt":${at},"leaseExpiresAt":${at + lease}}`;
  // The finish's fast path answers the server's time; anything else means the bench compared the wrong bytes.
  const finished = (reply) => (typeof reply === 'number' ? 'finished' : `finish missed its fast path: ${JSON.stringify(reply)}`);
  const corkedRedis = ioredis();
  await corkedRedis.ping();
  let corkPending = false;
  const cork = () => {
    if (corkPending) return;
    corkPending = true;
    corkedRedis.stream.cork();
    process.nextTick(() => {
      corkPending = false;
      corkedRedis.stream.uncork();
    });
  };
  const clients = {
    '@redis/client': {
      send: (args) => redisClient.sendCommand(args),
      multi: (cmds) => cmds.reduce((m, c) => m.addCommand(c), redisClient.multi()).exec(),
    },
    'ioredis, corked': {
      send: (args) => {
        cork();
        return corkedRedis.call(...args);
      },
      multi: (cmds) => {
        cork();
        // MULTI's OK and each QUEUED are not awaited: EXEC fails (EXECABORT) if any of them did.
        for (const c of ['MULTI', ...cmds]) corkedRedis.call(...(Array.isArray(c) ? c : [c])).catch(() => undefined);
        return corkedRedis.call('EXEC');
      },
    },
  };
  for (const [on, { send, multi }] of Object.entries(clients)) {
    const names = PLAIN_CLAIM(on);
    // idem's finish on its fast path: the key still holds `stored`, the finished record goes around its two times.
    const finishRaw = (key, stored, at) => {
      const before = `${head(key).replace('"in_flight"', '"succeeded"')}${at},"attempt":1,"claimedAt":${at},"completedAt":`;
      const args = ['complete', RUN, String(at), '0', String(TTL_MS), String(linger), '{"ok":true}', stored, before, ',"result":{"ok":true}}'];
      return send(['EVALSHA', finishSha, '1', key, ...args]);
    };
    const plainClaim = (key) => send(['SET', key, plainBytes(key), 'NX', 'PX', claimTtl, 'GET']);
    const multiClaim = (key) => multi([['SET', key, plainBytes(key), 'NX', 'PX', claimTtl, 'GET'], ['PEXPIRETIME', key], ['TIME']]);
    const scriptClaim = (key) => send(['EVALSHA', claimSha, '1', key, head(key), '', '', RUN, String(lease), String(linger), '0', 'success', '', '', '']);
    const design = (name, scenarios, op) => add({ name, group: 'design', scenarios, open: async (p) => (key) => op(p + key) });
    design(names.claim, ['first', 'dup'], async (k) => ((await plainClaim(k)) === null ? 'set' : 'found'));
    design(names.multi, ['first', 'dup'], async (k) => ((await multiClaim(k))[0] === null ? 'set' : 'found'));
    design(names.script, ['first', 'dup'], async (k) => (typeof (await scriptClaim(k)) === 'number' ? 'set' : 'found'));
    design(names.claimFinish, ['first'], async (k) => {
      await plainClaim(k);
      return finished(await finishRaw(k, plainBytes(k), 1));
    });
    design(names.multiFinish, ['first'], async (k) => {
      const [, expireAt] = await multiClaim(k);
      return finished(await finishRaw(k, plainBytes(k), Number(expireAt) - Number(claimTtl)));
    });
    design(names.scriptFinish, ['first'], async (k) => {
      const at = await scriptClaim(k);
      return finished(await finishRaw(k, stampedBytes(k, at), at));
    });
  }
  /** A completed record of another run, as the duplicate scenario's keys of these designs hold (bench.mjs writes them). */
  const completed = (key) => {
    const at = Date.now();
    return `{"v":1,"key":${JSON.stringify(key)},"status":"succeeded","runId":"0b8f0e4b-8d61-4c55-8f3b-2f1d6c1e6c43","fence":${at},"attempt":1,"claimedAt":${at},"completedAt":${at},"expiresAt":${at + TTL_MS},"result":{"ok":true}}`;
  };

  const close = async () => {
    for (const c of closers.reverse()) await c();
  };
  return { variants, close, value: VALUE, completed };
}

/**
 * Least scripts for each guarantee (ARGV: expected bytes, new bytes, PX). compare-and-SET: written
 * if absent or holding the expected bytes, the core of a fenced finish. The TIME forms stamp the
 * written value with the server's clock, as idem's claim and finish do.
 */
const CAS = "if v == false or v == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2] .. now, 'PX', ARGV[3]) end return false";
const NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)";
const TIMED_GET = "local t = redis.call('TIME') return { t[1] * 1000 + math.floor(t[2] / 1000), redis.call('GET', KEYS[1]) }";
export const TIMED_GET_FLOOR = 'raw scripted TIME + GET (ioredis)';
export const CLIENT_FLOOR = 'raw two timed scripts (@redis/client)';
export const OWN_WORK = 'idem runOnce (no I/O: a client that answers at once)';
/** In this order (bench.mjs reads them so): fenced finish, claim on the server's clock, fenced finish on it. */
export const GUARANTEE_FLOORS = {
  'raw scripted compare-and-SET (ioredis)': `local now = '' local v = redis.call('GET', KEYS[1]) ${CAS}`,
  'raw scripted TIME + SET NX PX (ioredis)': `${NOW} return redis.call('SET', KEYS[1], ARGV[2] .. now, 'NX', 'PX', ARGV[3])`,
  'raw scripted TIME + compare-and-SET (ioredis)': `${NOW} local v = redis.call('GET', KEYS[1]) ${CAS}`,
};

/** The claim designs compared (group 'design') on a client: names, for bench.mjs's goals block. */
export const PLAIN_CLAIM = (on) => ({
  claim: `design: plain SET NX PX GET claim (${on})`,
  multi: `design: MULTI SET NX PX GET, PEXPIRETIME, TIME claim (${on})`,
  script: `design: idem's claim script (${on})`,
  claimFinish: `design: plain SET NX PX GET + idem's finish script (${on})`,
  multiFinish: `design: MULTI claim + idem's finish script (${on})`,
  scriptFinish: `design: idem's claim script + idem's finish script (${on})`,
});
/** The clients the designs run on. */
export const DESIGN_CLIENTS = ['@redis/client', 'ioredis, corked'];

/** The floor each scenario's ratios are taken against: one plain round trip doing the least. */
export const FLOOR = { first: 'raw SET NX PX (ioredis)', dup: 'raw GET (ioredis)' };
