// @idem/valkey on a node-redis client the app installed itself: one claim, a duplicate, a complete.
import { createClient } from '@redis/client';
import { createValkeyStore } from '@idem/valkey';

const client = await createClient({ url: process.env.IDEM_TEST_REDIS_URL }).connect();
try {
  const store = await createValkeyStore({ client, prefix: `outside-view:${process.pid}:${Date.now()}:` });
  const claim = await store.claim('outside');
  if (claim.outcome !== 'acquired') throw new Error(`claim: ${claim.outcome}`);
  if ((await store.claim('outside')).outcome !== 'in_flight') throw new Error('duplicate: not in_flight');
  const done = await store.complete(claim.lease, { result: { ok: true } });
  if (done.status !== 'succeeded') throw new Error(`complete: ${done.status}`);
  await store.delete('outside');
  await store.close();
  console.log('claim, duplicate, complete on @redis/client: ok');
} finally {
  await client.close();
}
