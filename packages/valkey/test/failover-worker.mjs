// One load process of the failover tests: claims and completes keys in
// rounds (keys shared by every worker, and keys of its own) until its stdin
// closes, and prints one JSON line per event for the test to count:
//   {e:'claim', o, k, t}  a claim answered (o: its outcome)
//   {e:'exec', k, f, t}   a claim acknowledged as ours: we "run" the key
//   {e:'done', k, t}      our completion acknowledged
//   {e:'lost', k, t}      our completion refused (LEASE_LOST: someone else holds the key)
//   {e:'err', c, t}       an operation failed with error code c (it is retried)
// A key's claim is retried with the same runId until it is answered, so a
// claim that landed although it was reported as failed is found again as ours.
import { Redis } from 'ioredis';
import { createValkeyStore } from '@idem/valkey';

const config = JSON.parse(process.argv[2]);
const { id, shared, own, pause } = config;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const emit = (event) => process.stdout.write(`${JSON.stringify({ ...event, t: Date.now() })}\n`);

let stopping = false;
process.stdin.on('end', () => (stopping = true));
process.stdin.resume();

let userClient;
const target = { ...config.store };
if (config.userSentinelClient) {
  // A caller's own ioredis Sentinel client, with ioredis's defaults: the store bounds each call itself.
  userClient = new Redis({ sentinels: config.userSentinelClient.sentinels, name: config.userSentinelClient.name, failoverDetector: true });
  userClient.on('error', () => undefined);
  delete target.url;
  target.client = userClient;
}

/** Runs `fn` until it answers; failures are reported and retried (given up 10 s after a stop). */
async function answered(fn) {
  let stopAt;
  const giveUp = () => stopping && Date.now() > (stopAt ??= Date.now() + 10_000);
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      const code = error?.code ?? 'UNTYPED';
      if (code === 'LEASE_LOST') throw error;
      emit({ e: 'err', c: code });
      if (code !== 'BACKEND_UNAVAILABLE' || giveUp()) return undefined;
      await sleep(pause);
    }
  }
}

// Opened with retries too: the test starts its faults once the workers together have answered
// enough, so under load a slow worker's open (the fsync check's WAITAOF included) may meet the first
// fault. Only BACKEND_UNAVAILABLE is retried; anything else (a bad option) fails the worker.
async function openStore() {
  let stopAt;
  for (;;) {
    try {
      return await createValkeyStore({ leaseMs: 300_000, ...target });
    } catch (error) {
      if (error?.code !== 'BACKEND_UNAVAILABLE') throw error;
      emit({ e: 'err', c: error.code });
      if (stopping && Date.now() > (stopAt ??= Date.now() + 10_000)) return undefined;
      await sleep(pause);
    }
  }
}
const store = await openStore();
if (!store) {
  userClient?.disconnect();
  process.exit(0); // stopped before the store could open: nothing was claimed
}

function shuffle(list) {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}

for (let round = 0; !stopping; round++) {
  const keys = shuffle([...Array.from({ length: shared }, (_, i) => `s:${round}:${i}`), ...Array.from({ length: own }, (_, i) => `d:${id}:${round}:${i}`)]);
  for (const k of keys) {
    const got = await answered(() => store.claim(k, { runId: `${id}/${k}` }));
    if (!got) continue;
    emit({ e: 'claim', o: got.outcome, k });
    if (got.outcome !== 'acquired' && got.outcome !== 'adopted') continue;
    emit({ e: 'exec', k, f: got.lease.fence });
    try {
      const done = await answered(() => store.complete(got.lease, { result: { by: id } }));
      if (done) emit({ e: 'done', k });
    } catch (error) {
      if (error?.code !== 'LEASE_LOST') throw error;
      emit({ e: 'lost', k });
    }
  }
}
await store.close();
userClient?.disconnect();
// Whatever a client library may still hold open (timers, sentinel connections), this worker is done.
process.exit(0);
